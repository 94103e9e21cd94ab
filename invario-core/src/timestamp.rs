//! Instants at microsecond precision, the precision PostgreSQL stores.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};

/// Earliest instant accepted: 0001-01-01T00:00:00Z (RFC 3339 years have four digits).
const MIN_MICROS: i64 = -62_135_596_800_000_000;
/// Latest instant accepted: 9999-12-31T23:59:59.999999Z.
const MAX_MICROS: i64 = 253_402_300_799_999_999;

/// Why a value is not a timestamp. The caller names the field (see
/// [`crate::TransactionFieldError::OccurredAt`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// Not a JSON string.
    #[error("must be an RFC 3339 string such as \"2023-10-27T10:00:00Z\"")]
    NotAString,
    /// Not RFC 3339 (a missing offset is the usual cause).
    #[error("must be an RFC 3339 time with an offset, such as \"2023-10-27T10:00:00Z\" (got {0:?})")]
    Malformed(String),
    /// Outside years 0001–9999.
    #[error("must lie between years 0001 and 9999")]
    OutOfRange,
}

/// An instant in UTC, truncated to whole microseconds so that what is hashed is
/// what is stored. Limited to years 0001–9999.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);

    /// An instant from microseconds since the Unix epoch.
    pub fn from_unix_micros(micros: i64) -> Result<Self, TimestampError> {
        if (MIN_MICROS..=MAX_MICROS).contains(&micros) {
            Ok(Timestamp(micros))
        } else {
            Err(TimestampError::OutOfRange)
        }
    }

    /// Parses RFC 3339 with any offset; sub-microsecond digits are truncated.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimestampError> {
        let parsed =
            DateTime::parse_from_rfc3339(text).map_err(|_| TimestampError::Malformed(text.to_owned()))?;
        Self::from_datetime(parsed.with_timezone(&Utc))
    }

    /// An instant from a chrono time (what shells read off their clock), truncated to microseconds.
    pub fn from_datetime(time: DateTime<Utc>) -> Result<Self, TimestampError> {
        Self::from_unix_micros(time.timestamp_micros())
    }

    /// Microseconds since the Unix epoch, the value hashed into the chain.
    pub fn unix_micros(&self) -> i64 {
        self.0
    }

    /// The instant as a chrono time.
    pub fn to_datetime(&self) -> DateTime<Utc> {
        // The constructors keep the value inside years 0001–9999, which chrono
        // represents, so the fallback is never taken.
        DateTime::from_timestamp_micros(self.0).unwrap_or_default()
    }

    /// RFC 3339 in UTC with exactly six fraction digits, e.g. `2023-10-27T10:00:00.000000Z`.
    pub fn to_rfc3339(&self) -> String {
        self.to_datetime().to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    /// A stored µs value as RFC 3339, or as raw µs when a tampered row holds
    /// one outside years 0001–9999 (reports must still show it).
    pub fn describe_micros(micros: i64) -> String {
        Self::from_unix_micros(micros)
            .map_or_else(|_| format!("{micros} µs since the epoch"), |time| time.to_rfc3339())
    }

    /// This instant plus `micros`, or `None` when that leaves years 0001–9999.
    pub fn checked_add_micros(&self, micros: i64) -> Option<Self> {
        self.0.checked_add(micros).and_then(|sum| Self::from_unix_micros(sum).ok())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_rfc3339())
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_to_microseconds_and_normalises_to_utc() {
        let time = Timestamp::parse_rfc3339("2023-10-27T12:00:00.123456789+02:00").unwrap();
        assert_eq!(time.to_rfc3339(), "2023-10-27T10:00:00.123456Z");
        assert_eq!(time.unix_micros(), 1_698_400_800_123_456);
    }

    #[test]
    fn refuses_times_without_offset_or_out_of_range() {
        assert_eq!(
            Timestamp::parse_rfc3339("2023-10-27T10:00:00").unwrap_err().to_string(),
            "must be an RFC 3339 time with an offset, such as \"2023-10-27T10:00:00Z\" (got \"2023-10-27T10:00:00\")"
        );
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
        assert_eq!(Timestamp::from_unix_micros(i64::MIN), Err(TimestampError::OutOfRange));
        assert_eq!(Timestamp::from_unix_micros(MAX_MICROS + 1), Err(TimestampError::OutOfRange));
        assert_eq!(
            Timestamp::from_unix_micros(MIN_MICROS).unwrap().to_rfc3339(),
            "0001-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            Timestamp::from_unix_micros(MAX_MICROS).unwrap().to_rfc3339(),
            "9999-12-31T23:59:59.999999Z"
        );
    }
}
