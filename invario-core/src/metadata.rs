//! Bounded, flat string → string metadata attached to a transaction.

use std::collections::BTreeMap;

/// Most keys a transaction's metadata may hold.
pub const MAX_METADATA_KEYS: usize = 32;
/// Longest key, in characters.
pub const MAX_METADATA_KEY_CHARS: usize = 64;
/// Longest value, in characters.
pub const MAX_METADATA_VALUE_CHARS: usize = 512;
/// Most bytes of keys and values together.
pub const MAX_METADATA_BYTES: usize = 4096;

/// Why metadata was refused. Messages name `metadata` or the offending `metadata.<key>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// Not a JSON object.
    #[error("metadata must be a JSON object of string values, such as {{\"order\": \"A-17\"}}")]
    NotAnObject,
    /// More than [`MAX_METADATA_KEYS`] keys.
    #[error("metadata may hold at most {max} keys (got {0})", max = MAX_METADATA_KEYS)]
    TooManyKeys(usize),
    /// An empty key.
    #[error("metadata keys must not be empty")]
    EmptyKey,
    /// A key longer than [`MAX_METADATA_KEY_CHARS`].
    #[error("metadata key {0:?} is longer than {max} characters", max = MAX_METADATA_KEY_CHARS)]
    KeyTooLong(String),
    /// A key with characters outside `[A-Za-z0-9_.-]`.
    #[error("metadata key {0:?} may only use the characters A-Z a-z 0-9 _ . -")]
    KeyCharacters(String),
    /// The same key twice.
    #[error("metadata key {0:?} appears more than once")]
    DuplicateKey(String),
    /// A value that is not a JSON string.
    #[error("metadata.{0} must be a JSON string")]
    ValueNotAString(String),
    /// A value longer than [`MAX_METADATA_VALUE_CHARS`].
    #[error("metadata.{key} may be at most {max} characters long (got {chars})", max = MAX_METADATA_VALUE_CHARS)]
    ValueTooLong {
        /// The key whose value is too long.
        key: String,
        /// Its length in characters.
        chars: usize,
    },
    /// A value holding U+0000, which PostgreSQL text cannot store.
    #[error("metadata.{0} must not contain the NUL character (U+0000)")]
    ValueContainsNul(String),
    /// Keys and values together above [`MAX_METADATA_BYTES`].
    #[error("metadata may hold at most {max} bytes of keys and values together (got {0})", max = MAX_METADATA_BYTES)]
    TooLarge(usize),
}

impl MetadataError {
    /// The field an API client should look at: `metadata` or `metadata.<key>`.
    pub fn field(&self) -> String {
        match self {
            MetadataError::ValueNotAString(key)
            | MetadataError::ValueTooLong { key, .. }
            | MetadataError::ValueContainsNul(key) => format!("metadata.{key}"),
            _ => "metadata".to_owned(),
        }
    }
}

/// Validated metadata, kept in key byte order (the order it is hashed in).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    /// No metadata.
    pub fn empty() -> Self {
        Metadata::default()
    }

    /// Builds metadata from pairs in any order; a repeated key is an error.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self, MetadataError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let mut map = BTreeMap::new();
        for (key, value) in pairs {
            let key = key.into();
            if map.contains_key(&key) {
                return Err(MetadataError::DuplicateKey(key));
            }
            map.insert(key, value.into());
        }
        Self::from_map(map)
    }

    /// Checks every rule on a map.
    pub fn from_map(map: BTreeMap<String, String>) -> Result<Self, MetadataError> {
        if map.len() > MAX_METADATA_KEYS {
            return Err(MetadataError::TooManyKeys(map.len()));
        }
        let mut total_bytes = 0;
        for (key, value) in &map {
            check_key(key)?;
            check_value(key, value)?;
            total_bytes += key.len() + value.len();
        }
        if total_bytes > MAX_METADATA_BYTES {
            return Err(MetadataError::TooLarge(total_bytes));
        }
        Ok(Metadata(map))
    }

    /// Parses a JSON object of string values.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, MetadataError> {
        let object = value.as_object().ok_or(MetadataError::NotAnObject)?;
        let pairs = object.iter().map(|(key, value)| match value {
            serde_json::Value::String(text) => Ok((key.clone(), text.clone())),
            _ => Err(MetadataError::ValueNotAString(key.clone())),
        });
        Self::from_pairs(pairs.collect::<Result<Vec<_>, _>>()?)
    }

    /// The entries in key byte order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.0.iter().map(|(key, value)| (key.as_str(), value.as_str()))
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The underlying sorted map.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

fn check_key(key: &str) -> Result<(), MetadataError> {
    if key.is_empty() {
        return Err(MetadataError::EmptyKey);
    }
    if !key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return Err(MetadataError::KeyCharacters(key.to_owned()));
    }
    // Only ASCII remains, so bytes are characters.
    if key.len() > MAX_METADATA_KEY_CHARS {
        return Err(MetadataError::KeyTooLong(key.to_owned()));
    }
    Ok(())
}

fn check_value(key: &str, value: &str) -> Result<(), MetadataError> {
    if value.contains('\0') {
        return Err(MetadataError::ValueContainsNul(key.to_owned()));
    }
    let chars = value.chars().count();
    if chars > MAX_METADATA_VALUE_CHARS {
        return Err(MetadataError::ValueTooLong { key: key.to_owned(), chars });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refusal(value: serde_json::Value) -> (String, String) {
        let error = Metadata::from_json(&value).unwrap_err();
        (error.field(), error.to_string())
    }

    #[test]
    fn keeps_keys_in_byte_order_whatever_the_input_order() {
        let metadata = Metadata::from_pairs([("b", "2"), ("B", "1"), ("a", "3"), ("_", "4")]).unwrap();
        let keys: Vec<_> = metadata.iter().map(|(key, _)| key).collect();
        assert_eq!(keys, ["B", "_", "a", "b"]);
    }

    #[test]
    fn accepts_the_limits_exactly() {
        let key = "k".repeat(64);
        let value = "é".repeat(512);
        assert!(Metadata::from_pairs([(key, value)]).is_ok());
        let many = (0..32).map(|i| (format!("key{i}"), "v".to_owned()));
        assert!(Metadata::from_pairs(many).is_ok());
    }

    #[test]
    fn every_rule_names_the_field() {
        assert_eq!(
            refusal(json!("x")),
            (
                "metadata".into(),
                "metadata must be a JSON object of string values, such as {\"order\": \"A-17\"}".into()
            )
        );
        let many: serde_json::Map<_, _> = (0..33).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert_eq!(refusal(many.into()).1, "metadata may hold at most 32 keys (got 33)");
        assert_eq!(refusal(json!({"": "v"})).1, "metadata keys must not be empty");
        assert_eq!(
            refusal(json!({"a b": "v"})).1,
            "metadata key \"a b\" may only use the characters A-Z a-z 0-9 _ . -"
        );
        assert!(refusal(json!({"clé": "v"})).1.contains("may only use the characters"));
        assert!(refusal(json!({"k".repeat(65): "v"})).1.ends_with("is longer than 64 characters"));
        assert_eq!(
            refusal(json!({"n": 5})),
            ("metadata.n".into(), "metadata.n must be a JSON string".into())
        );
        assert_eq!(
            refusal(json!({"n": "x".repeat(513)})),
            ("metadata.n".into(), "metadata.n may be at most 512 characters long (got 513)".into())
        );
        assert_eq!(
            refusal(json!({"n": "a\u{0}b"})),
            ("metadata.n".into(), "metadata.n must not contain the NUL character (U+0000)".into())
        );
        let big: serde_json::Map<_, _> = (0..9).map(|i| (format!("k{i}"), json!("v".repeat(500)))).collect();
        assert_eq!(
            refusal(big.into()).1,
            "metadata may hold at most 4096 bytes of keys and values together (got 4518)"
        );
        assert_eq!(
            Metadata::from_pairs([("a", "1"), ("a", "2")]).unwrap_err().to_string(),
            "metadata key \"a\" appears more than once"
        );
    }
}
