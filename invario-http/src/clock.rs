//! The shell's clock: the only place the service reads the time for the core.

use invario_core::Timestamp;

/// Now, truncated to microseconds. The system clock always lies within years
/// 0001–9999, so the fallback (the epoch) is never taken.
pub(crate) fn now() -> Timestamp {
    Timestamp::from_datetime(chrono::Utc::now()).unwrap_or(Timestamp::UNIX_EPOCH)
}
