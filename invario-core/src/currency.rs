//! ISO 4217 currency codes, checked against a maintained table (`iso_currency`).

use std::fmt;
use std::str::FromStr;

/// Why a text is not an active currency code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CurrencyError {
    /// The JSON value was not a string.
    #[error("currency must be a JSON string holding an ISO 4217 code such as \"BRL\"")]
    NotAString,
    /// Not three upper-case ASCII letters.
    #[error("currency must be three upper-case letters (ISO 4217), such as \"BRL\" (got {0:?})")]
    Malformed(String),
    /// Well-formed, but no ISO 4217 currency has this code.
    #[error("currency {0:?} is not an ISO 4217 currency code")]
    Unknown(String),
    /// A code ISO 4217 has withdrawn.
    #[error("currency {code:?} was withdrawn from ISO 4217; use {replacement:?}")]
    Withdrawn {
        /// The code that was sent.
        code: String,
        /// The code that replaced it.
        replacement: &'static str,
    },
}

/// An active ISO 4217 alphabetic currency code.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    /// Parses a code such as `"BRL"`; lower case, unknown and withdrawn codes are refused.
    pub fn parse(code: &str) -> Result<Self, CurrencyError> {
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(CurrencyError::Malformed(code.to_owned()));
        }
        let currency =
            iso_currency::Currency::from_code(code).ok_or_else(|| CurrencyError::Unknown(code.to_owned()))?;
        if let Some(replacement) = currency.is_superseded() {
            return Err(CurrencyError::Withdrawn { code: code.to_owned(), replacement: replacement.code() });
        }
        Ok(Currency(currency))
    }

    /// The three-letter code, the bytes hashed into the chain.
    pub fn code(&self) -> &'static str {
        self.0.code()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.code())
    }
}

impl FromStr for Currency {
    type Err = CurrencyError;
    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Self::parse(code)
    }
}

impl serde::Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_active_codes() {
        for code in ["BRL", "USD", "EUR", "JPY", "SLE", "XAU"] {
            assert_eq!(Currency::parse(code).unwrap().code(), code);
        }
    }

    #[test]
    fn refuses_with_a_message_naming_the_field_and_rule() {
        let message = |code: &str| Currency::parse(code).unwrap_err().to_string();
        assert_eq!(
            message("brl"),
            "currency must be three upper-case letters (ISO 4217), such as \"BRL\" (got \"brl\")"
        );
        assert!(message("US").starts_with("currency must be three upper-case letters"));
        assert!(message("USDT").starts_with("currency must be three upper-case letters"));
        assert!(message("ÉUR").starts_with("currency must be three upper-case letters"));
        assert_eq!(message("ABC"), "currency \"ABC\" is not an ISO 4217 currency code");
        assert_eq!(message("HRK"), "currency \"HRK\" was withdrawn from ISO 4217; use \"EUR\"");
    }
}
