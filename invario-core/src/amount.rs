//! Exact decimal amounts whose text is kept exactly as the client sent it.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

/// Most digits after the decimal point an amount may carry.
pub const MAX_FRACTION_DIGITS: usize = 18;
/// Most significant digits (integer part without leading zero, plus fraction) an amount may carry.
pub const MAX_SIGNIFICANT_DIGITS: usize = 28;

/// Why a text is not an amount. Every message names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// The JSON value was a number (or anything else) instead of a string.
    #[error(
        "amount must be a JSON string such as \"100.50\"; numbers are refused so no float rounding can creep in"
    )]
    NotAString,
    /// The text was empty.
    #[error("amount must not be empty; send a decimal string such as \"100.50\"")]
    Empty,
    /// The text contained white space.
    #[error("amount must not contain spaces")]
    Whitespace,
    /// The text started with `+`.
    #[error("amount must not start with '+'; write \"100.50\" or \"-100.50\"")]
    PlusSign,
    /// The text used scientific notation.
    #[error("amount must not use an exponent such as \"1e3\"; write every digit, as in \"1000\"")]
    Exponent,
    /// The text held something other than digits, one leading `-` and one `.`.
    #[error("amount must hold only digits, an optional leading '-' and at most one '.' (got {0:?})")]
    InvalidCharacter(String),
    /// A `.` without digits on one of its sides.
    #[error("amount needs digits on both sides of '.', as in \"0.50\" (got {0:?})")]
    MissingDigits(String),
    /// The integer part started with a superfluous zero.
    #[error("amount must not have leading zeros (got {0:?})")]
    LeadingZero(String),
    /// The amount was zero.
    #[error("amount must not be zero")]
    Zero,
    /// More fraction digits than [`MAX_FRACTION_DIGITS`].
    #[error("amount may have at most {max} digits after '.' (got {0})", max = MAX_FRACTION_DIGITS)]
    TooManyFractionDigits(usize),
    /// More significant digits than [`MAX_SIGNIFICANT_DIGITS`].
    #[error("amount may have at most {max} significant digits (got {0})", max = MAX_SIGNIFICANT_DIGITS)]
    TooManySignificantDigits(usize),
}

/// A non-zero exact decimal amount in canonical text form: an optional `-`, no
/// leading zeros, and exactly as many fraction digits as it was given (its
/// scale). `"100.50"` and `"100.5"` are different amounts: the scale is content.
#[derive(Clone, Copy)]
pub struct Amount(Decimal);

impl Amount {
    /// Parses the canonical decimal text; refuses everything else (see [`AmountError`]).
    pub fn parse(text: &str) -> Result<Self, AmountError> {
        if text.is_empty() {
            return Err(AmountError::Empty);
        }
        if text.chars().any(char::is_whitespace) {
            return Err(AmountError::Whitespace);
        }
        if text.starts_with('+') {
            return Err(AmountError::PlusSign);
        }
        if text.contains(['e', 'E']) {
            return Err(AmountError::Exponent);
        }
        let unsigned = text.strip_prefix('-').unwrap_or(text);
        let (integer, fraction) = match unsigned.split_once('.') {
            Some((integer, fraction)) => (integer, Some(fraction)),
            None => (unsigned, None),
        };
        let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(integer) || !fraction.is_none_or(all_digits) {
            return Err(AmountError::InvalidCharacter(text.to_owned()));
        }
        if integer.is_empty() || fraction.is_some_and(str::is_empty) {
            return Err(AmountError::MissingDigits(text.to_owned()));
        }
        if integer.len() > 1 && integer.starts_with('0') {
            return Err(AmountError::LeadingZero(text.to_owned()));
        }
        let fraction = fraction.unwrap_or("");
        if fraction.len() > MAX_FRACTION_DIGITS {
            return Err(AmountError::TooManyFractionDigits(fraction.len()));
        }
        let integer_digits = if integer == "0" { 0 } else { integer.len() };
        let significant = integer_digits + fraction.len();
        if significant > MAX_SIGNIFICANT_DIGITS {
            return Err(AmountError::TooManySignificantDigits(significant));
        }
        if integer.bytes().chain(fraction.bytes()).all(|b| b == b'0') {
            return Err(AmountError::Zero);
        }
        // The grammar above admits at most 28 digits and scale 18, which always
        // fits Decimal's 96-bit mantissa, so this cannot fail; map it anyway.
        Decimal::from_str_exact(text)
            .map(Amount)
            .map_err(|_| AmountError::TooManySignificantDigits(significant))
    }

    /// Accepts a decimal read back from storage, checking it obeys the same rules.
    pub fn from_decimal(value: Decimal) -> Result<Self, AmountError> {
        Self::parse(&value.to_string())
    }

    /// The exact decimal value, for arithmetic by embedders.
    pub fn decimal(&self) -> Decimal {
        self.0
    }

    /// Number of digits after the decimal point, as sent.
    pub fn scale(&self) -> u32 {
        self.0.scale()
    }

    /// Canonical text, the bytes hashed into the chain.
    pub fn to_canonical_string(&self) -> String {
        self.0.to_string()
    }
}

impl PartialEq for Amount {
    /// Equal only with the same digits *and* scale: `100.5` ≠ `100.50`.
    fn eq(&self, other: &Self) -> bool {
        self.0.mantissa() == other.0.mantissa() && self.0.scale() == other.0.scale()
    }
}

impl Eq for Amount {}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({})", self.0)
    }
}

impl FromStr for Amount {
    type Err = AmountError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl serde::Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejects(text: &str) -> String {
        match Amount::parse(text) {
            Ok(amount) => panic!("{text:?} was accepted as {amount}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn keeps_the_scale_exactly_as_sent() {
        for text in ["100.50", "100.5", "-0.005", "1", "-1", "0.000000000000000001", "10"] {
            assert_eq!(Amount::parse(text).unwrap().to_canonical_string(), text);
        }
        assert_eq!(Amount::parse("100.50").unwrap().scale(), 2);
        assert_ne!(Amount::parse("100.50").unwrap(), Amount::parse("100.5").unwrap());
    }

    #[test]
    fn accepts_the_largest_amounts_allowed() {
        let twenty_eight_nines = "9".repeat(28);
        assert!(Amount::parse(&twenty_eight_nines).is_ok());
        let ten_and_eighteen = format!("{}.{}", "9".repeat(10), "9".repeat(18));
        assert!(Amount::parse(&ten_and_eighteen).is_ok());
        assert!(Amount::parse(&format!("-{ten_and_eighteen}")).is_ok());
    }

    #[test]
    fn every_rule_has_a_message_naming_the_field() {
        assert_eq!(rejects(""), "amount must not be empty; send a decimal string such as \"100.50\"");
        assert_eq!(rejects(" 1"), "amount must not contain spaces");
        assert_eq!(rejects("1 000"), "amount must not contain spaces");
        assert_eq!(rejects("+1"), "amount must not start with '+'; write \"100.50\" or \"-100.50\"");
        assert_eq!(
            rejects("1e3"),
            "amount must not use an exponent such as \"1e3\"; write every digit, as in \"1000\""
        );
        assert_eq!(rejects("1E3"), rejects("1e3"));
        assert_eq!(
            rejects("1,5"),
            "amount must hold only digits, an optional leading '-' and at most one '.' (got \"1,5\")"
        );
        for text in ["1.2.3", "--1", "NaN", "Infinity", "1_000", "0x10", "١٢"] {
            assert!(rejects(text).starts_with("amount must hold only digits"), "{text}");
        }
        assert_eq!(rejects(".5"), "amount needs digits on both sides of '.', as in \"0.50\" (got \".5\")");
        assert!(rejects("5.").starts_with("amount needs digits on both sides"));
        assert!(rejects("-").starts_with("amount needs digits on both sides"));
        assert_eq!(rejects("007"), "amount must not have leading zeros (got \"007\")");
        assert!(rejects("-00.5").starts_with("amount must not have leading zeros"));
        assert_eq!(rejects("0"), "amount must not be zero");
        assert_eq!(rejects("-0.00"), "amount must not be zero");
        assert_eq!(rejects("0.0000000000000000001"), "amount may have at most 18 digits after '.' (got 19)");
        assert_eq!(rejects(&"9".repeat(29)), "amount may have at most 28 significant digits (got 29)");
        assert!(rejects(&format!("{}.5", "9".repeat(28))).contains("(got 29)"));
    }

    #[test]
    fn reads_back_decimals_from_storage_with_their_scale() {
        let stored = Decimal::from_str_exact("100.50").unwrap();
        assert_eq!(Amount::from_decimal(stored).unwrap().to_string(), "100.50");
        assert_eq!(Amount::from_decimal(Decimal::ZERO), Err(AmountError::Zero));
    }
}
