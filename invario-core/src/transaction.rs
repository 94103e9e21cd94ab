//! The transaction a client submits, parsed field by field.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::amount::{Amount, AmountError};
use crate::currency::{Currency, CurrencyError};
use crate::metadata::{Metadata, MetadataError};
use crate::timestamp::{Timestamp, TimestampError};

/// The client-chosen transaction id; also the idempotency key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransactionId(Uuid);

/// Why a value is not a transaction id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionIdError {
    /// Not a JSON string.
    #[error("transaction_id must be a JSON string holding a UUID")]
    NotAString,
    /// Not a UUID.
    #[error("transaction_id must be a UUID such as \"0b6a5e0c-3f39-4c55-9c55-7e4c3f3d2a10\" (got {0:?})")]
    Malformed(String),
    /// The nil UUID, which is never a real id.
    #[error("transaction_id must not be the nil UUID")]
    Nil,
}

impl TransactionId {
    /// Parses a UUID in any of its usual spellings; the nil UUID is refused.
    pub fn parse(text: &str) -> Result<Self, TransactionIdError> {
        let uuid = Uuid::parse_str(text).map_err(|_| TransactionIdError::Malformed(text.to_owned()))?;
        Self::from_uuid(uuid)
    }

    /// Wraps a UUID; the nil UUID is refused.
    pub fn from_uuid(uuid: Uuid) -> Result<Self, TransactionIdError> {
        if uuid.is_nil() {
            return Err(TransactionIdError::Nil);
        }
        Ok(TransactionId(uuid))
    }

    /// The UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransactionId({})", self.0.hyphenated())
    }
}

impl FromStr for TransactionId {
    type Err = TransactionIdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl serde::Serialize for TransactionId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0.hyphenated())
    }
}

/// A valid transaction: everything a client sent, nothing the server adds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Transaction {
    /// Client-chosen id, the idempotency key.
    pub transaction_id: TransactionId,
    /// Exact amount, scale as sent.
    pub amount: Amount,
    /// ISO 4217 code.
    pub currency: Currency,
    /// When the client says it happened, if it said.
    pub occurred_at: Option<Timestamp>,
    /// Flat string → string metadata.
    pub metadata: Metadata,
}

/// One problem with one field of a submitted transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionFieldError {
    /// The item was not a JSON object.
    #[error("a transaction must be a JSON object")]
    NotAnObject,
    /// A required field was absent or null.
    #[error("{0} is required")]
    Missing(&'static str),
    /// A field this API does not know.
    #[error(
        "{0} is not a transaction field (fields: transaction_id, amount, currency, occurred_at, metadata)"
    )]
    UnknownField(String),
    /// See [`TransactionIdError`].
    #[error(transparent)]
    TransactionId(#[from] TransactionIdError),
    /// See [`AmountError`].
    #[error(transparent)]
    Amount(#[from] AmountError),
    /// See [`CurrencyError`].
    #[error(transparent)]
    Currency(#[from] CurrencyError),
    /// See [`TimestampError`].
    #[error("occurred_at {0}")]
    OccurredAt(#[source] TimestampError),
    /// See [`MetadataError`].
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

impl TransactionFieldError {
    /// The field an API client should fix, as it spells it (`amount`, `metadata.order`, …).
    pub fn field(&self) -> String {
        match self {
            TransactionFieldError::NotAnObject => String::new(),
            TransactionFieldError::Missing(field) => (*field).to_owned(),
            TransactionFieldError::UnknownField(field) => field.clone(),
            TransactionFieldError::TransactionId(_) => "transaction_id".to_owned(),
            TransactionFieldError::Amount(_) => "amount".to_owned(),
            TransactionFieldError::Currency(_) => "currency".to_owned(),
            TransactionFieldError::OccurredAt(_) => "occurred_at".to_owned(),
            TransactionFieldError::Metadata(error) => error.field(),
        }
    }
}

/// Every problem found in one submitted transaction (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct TransactionErrors(pub Vec<TransactionFieldError>);

const FIELDS: [&str; 5] = ["transaction_id", "amount", "currency", "occurred_at", "metadata"];

impl Transaction {
    /// Parses the JSON a client sends, reporting every bad field at once.
    ///
    /// `occurred_at` and `metadata` may be absent or null; unknown fields are refused
    /// so a misspelt optional field is not silently dropped. Deserialising the JSON text
    /// straight into a [`SubmittedTransaction`] reaches the same verdict without the tree.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, TransactionErrors> {
        use serde_json::Value;
        let Some(object) = value.as_object() else {
            return Err(TransactionErrors(vec![TransactionFieldError::NotAnObject]));
        };
        let field = |name: &str| match object.get(name) {
            None | Some(Value::Null) => FieldValue::Absent,
            Some(Value::String(text)) => FieldValue::Text(text),
            Some(_) => FieldValue::NotText,
        };
        SubmittedFields {
            unknown: object.keys().filter(|name| !FIELDS.contains(&name.as_str())).cloned().collect(),
            transaction_id: field("transaction_id"),
            amount: field("amount"),
            currency: field("currency"),
            occurred_at: field("occurred_at"),
            metadata: object.get("metadata").filter(|value| !value.is_null()).map(Metadata::from_json),
        }
        .check()
    }
}

/// One field's JSON value, as far as the transaction rules look at it.
enum FieldValue<'a> {
    /// Absent or null.
    Absent,
    Text(&'a str),
    /// Any other JSON value: a number, a boolean, an array or an object.
    NotText,
}

/// A submitted object's fields, before any rule is checked: the one place the rules
/// are applied, whichever way the JSON was read.
struct SubmittedFields<'a> {
    /// Names that are not transaction fields, in the order they came.
    unknown: Vec<String>,
    transaction_id: FieldValue<'a>,
    amount: FieldValue<'a>,
    currency: FieldValue<'a>,
    occurred_at: FieldValue<'a>,
    /// `None` when absent or null.
    metadata: Option<Result<Metadata, MetadataError>>,
}

impl SubmittedFields<'_> {
    fn check(self) -> Result<Transaction, TransactionErrors> {
        let mut errors: Vec<_> = self.unknown.into_iter().map(TransactionFieldError::UnknownField).collect();
        let transaction_id = match self.transaction_id {
            FieldValue::Absent => Err(TransactionFieldError::Missing("transaction_id")),
            FieldValue::Text(text) => TransactionId::parse(text).map_err(Into::into),
            FieldValue::NotText => Err(TransactionIdError::NotAString.into()),
        };
        let amount = match self.amount {
            FieldValue::Absent => Err(TransactionFieldError::Missing("amount")),
            FieldValue::Text(text) => Amount::parse(text).map_err(Into::into),
            FieldValue::NotText => Err(AmountError::NotAString.into()),
        };
        let currency = match self.currency {
            FieldValue::Absent => Err(TransactionFieldError::Missing("currency")),
            FieldValue::Text(text) => Currency::parse(text).map_err(Into::into),
            FieldValue::NotText => Err(CurrencyError::NotAString.into()),
        };
        let occurred_at = match self.occurred_at {
            FieldValue::Absent => Ok(None),
            FieldValue::Text(text) => Timestamp::parse_rfc3339(text).map(Some),
            FieldValue::NotText => Err(TimestampError::NotAString),
        }
        .map_err(TransactionFieldError::OccurredAt);
        let metadata =
            self.metadata.transpose().map(Option::unwrap_or_default).map_err(TransactionFieldError::from);

        fn take<T>(
            errors: &mut Vec<TransactionFieldError>,
            result: Result<T, TransactionFieldError>,
        ) -> Option<T> {
            result.map_err(|error| errors.push(error)).ok()
        }
        let parsed = (
            take(&mut errors, transaction_id),
            take(&mut errors, amount),
            take(&mut errors, currency),
            take(&mut errors, occurred_at),
            take(&mut errors, metadata),
        );
        match parsed {
            (Some(transaction_id), Some(amount), Some(currency), Some(occurred_at), Some(metadata))
                if errors.is_empty() =>
            {
                Ok(Transaction { transaction_id, amount, currency, occurred_at, metadata })
            }
            _ => Err(TransactionErrors(errors)),
        }
    }
}

/// A transaction as a client sent it in JSON: parsed, or every problem found in it.
///
/// Deserialising into this reads the JSON text once, without building a
/// `serde_json::Value` tree, and reaches exactly the verdict [`Transaction::from_json`]
/// reaches on the same text. Any JSON value deserialises (a non-object is refused
/// inside, as [`TransactionFieldError::NotAnObject`]), so only malformed JSON text is a
/// deserialisation error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmittedTransaction(pub Result<Transaction, TransactionErrors>);

impl<'de> serde::Deserialize<'de> for SubmittedTransaction {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SubmittedVisitor)
    }
}

struct SubmittedVisitor;

impl SubmittedVisitor {
    fn not_an_object<E>(self) -> Result<SubmittedTransaction, E> {
        Ok(SubmittedTransaction(Err(TransactionErrors(vec![TransactionFieldError::NotAnObject]))))
    }
}

impl<'de> serde::de::Visitor<'de> for SubmittedVisitor {
    type Value = SubmittedTransaction;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a transaction")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        self.not_an_object()
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        self.not_an_object()
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        self.not_an_object()
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        self.not_an_object()
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        self.not_an_object()
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        self.not_an_object()
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        self.not_an_object()
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut unknown: Vec<String> = Vec::new();
        let (mut transaction_id, mut amount, mut currency, mut occurred_at) =
            (JsonText::Absent, JsonText::Absent, JsonText::Absent, JsonText::Absent);
        let mut metadata = None;
        // A repeated name keeps its last value, as serde_json's own object does.
        // JSON names are always strings, so a name is always `Text`.
        while let Some(name) = map.next_key::<JsonText<'de>>()? {
            match name.field() {
                FieldValue::Text("transaction_id") => transaction_id = map.next_value()?,
                FieldValue::Text("amount") => amount = map.next_value()?,
                FieldValue::Text("currency") => currency = map.next_value()?,
                FieldValue::Text("occurred_at") => occurred_at = map.next_value()?,
                FieldValue::Text("metadata") => metadata = map.next_value::<Option<serde_json::Value>>()?,
                other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    if let FieldValue::Text(name) = other
                        && !unknown.iter().any(|seen| seen == name)
                    {
                        unknown.push(name.to_owned());
                    }
                }
            }
        }
        Ok(SubmittedTransaction(
            SubmittedFields {
                unknown,
                transaction_id: transaction_id.field(),
                amount: amount.field(),
                currency: currency.field(),
                occurred_at: occurred_at.field(),
                metadata: metadata.as_ref().map(Metadata::from_json),
            }
            .check(),
        ))
    }
}

/// A JSON value read only as far as the rules look: a string (borrowed from the body
/// when it holds no escapes), null, or something else, skipped.
enum JsonText<'de> {
    Absent,
    Borrowed(&'de str),
    Owned(String),
    NotText,
}

impl JsonText<'_> {
    fn field(&self) -> FieldValue<'_> {
        match self {
            JsonText::Absent => FieldValue::Absent,
            JsonText::NotText => FieldValue::NotText,
            JsonText::Borrowed(text) => FieldValue::Text(text),
            JsonText::Owned(text) => FieldValue::Text(text),
        }
    }
}

impl<'de> serde::Deserialize<'de> for JsonText<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonTextVisitor)
    }
}

struct JsonTextVisitor;

impl<'de> serde::de::Visitor<'de> for JsonTextVisitor {
    type Value = JsonText<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(JsonText::Borrowed(text))
    }

    fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
        Ok(JsonText::Owned(text.to_owned()))
    }

    fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
        Ok(JsonText::Owned(text))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(JsonText::Absent)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(JsonText::NotText)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(JsonText::NotText)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(JsonText::NotText)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(JsonText::NotText)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(JsonText::NotText)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
        Ok(JsonText::NotText)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(value: serde_json::Value) -> Vec<(String, String)> {
        Transaction::from_json(&value)
            .unwrap_err()
            .0
            .iter()
            .map(|error| (error.field(), error.to_string()))
            .collect()
    }

    #[test]
    fn parses_a_full_transaction() {
        let transaction = Transaction::from_json(&json!({
            "transaction_id": "0B6A5E0C-3F39-4C55-9C55-7E4C3F3D2A10",
            "amount": "100.50",
            "currency": "BRL",
            "occurred_at": "2023-10-27T10:00:00Z",
            "metadata": {"order": "A-17"},
        }))
        .unwrap();
        assert_eq!(transaction.transaction_id.to_string(), "0b6a5e0c-3f39-4c55-9c55-7e4c3f3d2a10");
        assert_eq!(transaction.amount.to_string(), "100.50");
        assert_eq!(transaction.occurred_at.unwrap().to_rfc3339(), "2023-10-27T10:00:00.000000Z");
        assert_eq!(transaction.metadata.get("order"), Some("A-17"));
    }

    #[test]
    fn optional_fields_may_be_absent_or_null() {
        let transaction = Transaction::from_json(&json!({
            "transaction_id": "0b6a5e0c-3f39-4c55-9c55-7e4c3f3d2a10",
            "amount": "-1", "currency": "USD", "occurred_at": null, "metadata": null,
        }))
        .unwrap();
        assert_eq!(transaction.occurred_at, None);
        assert!(transaction.metadata.is_empty());
    }

    #[test]
    fn reports_every_bad_field_with_its_name() {
        assert_eq!(
            problems(json!({"amount": 100.5, "currency": "usd", "occurred_at": "now", "extra": 1})),
            vec![
                (
                    "extra".to_owned(),
                    "extra is not a transaction field (fields: transaction_id, amount, currency, occurred_at, metadata)"
                        .to_owned()
                ),
                ("transaction_id".to_owned(), "transaction_id is required".to_owned()),
                (
                    "amount".to_owned(),
                    "amount must be a JSON string such as \"100.50\"; numbers are refused so no float rounding can creep in"
                        .to_owned()
                ),
                (
                    "currency".to_owned(),
                    "currency must be three upper-case letters (ISO 4217), such as \"BRL\" (got \"usd\")".to_owned()
                ),
                (
                    "occurred_at".to_owned(),
                    "occurred_at must be an RFC 3339 time with an offset, such as \"2023-10-27T10:00:00Z\" (got \"now\")"
                        .to_owned()
                ),
            ]
        );
        assert_eq!(
            problems(json!([1])),
            vec![(String::new(), "a transaction must be a JSON object".to_owned())]
        );
        assert_eq!(
            problems(
                json!({"transaction_id": "00000000-0000-0000-0000-000000000000", "amount": "1", "currency": "BRL"})
            ),
            vec![("transaction_id".to_owned(), "transaction_id must not be the nil UUID".to_owned())]
        );
        assert_eq!(
            problems(json!({"transaction_id": "abc", "amount": "1", "currency": "BRL"}))[0].1,
            "transaction_id must be a UUID such as \"0b6a5e0c-3f39-4c55-9c55-7e4c3f3d2a10\" (got \"abc\")"
        );
        assert_eq!(
            problems(json!({"transaction_id": 7, "amount": "1", "currency": 1}))
                .into_iter()
                .map(|(_, message)| message)
                .collect::<Vec<_>>(),
            [
                "transaction_id must be a JSON string holding a UUID",
                "currency must be a JSON string holding an ISO 4217 code such as \"BRL\""
            ]
        );
    }
}
