//! Configuration is validated at start-up, never clamped: a setting outside
//! its range is an error naming the setting and the range.

use std::fmt;
use std::time::Duration;

/// A tunable setting of the service, named in configuration errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// [`GroupCommit::window`](crate::GroupCommit::window).
    GroupCommitWindow,
    /// [`GroupCommit::max_batch`](crate::GroupCommit::max_batch).
    GroupCommitMax,
    /// [`GroupCommit::queue_depth`](crate::GroupCommit::queue_depth).
    QueueDepth,
    /// [`GroupCommit::queue_wait`](crate::GroupCommit::queue_wait).
    QueueWait,
    /// [`MonitorSchedule::incremental_interval`](crate::MonitorSchedule::incremental_interval).
    IncrementalInterval,
    /// [`MonitorSchedule::full_interval`](crate::MonitorSchedule::full_interval).
    FullInterval,
    /// [`CheckpointSettings::interval`](crate::CheckpointSettings::interval).
    CheckpointInterval,
    /// [`HttpLimits::max_connections`](crate::HttpLimits::max_connections).
    MaxConnections,
    /// [`HttpLimits::header_read_timeout`](crate::HttpLimits::header_read_timeout).
    HeaderReadTimeout,
    /// [`HttpLimits::request_timeout`](crate::HttpLimits::request_timeout).
    RequestTimeout,
    /// [`HttpLimits::shutdown_timeout`](crate::HttpLimits::shutdown_timeout).
    ShutdownTimeout,
    /// [`KeyCacheSettings::capacity`](crate::KeyCacheSettings::capacity).
    KeyCacheCapacity,
    /// [`CheckpointSettings::proof_wait`](crate::CheckpointSettings::proof_wait).
    ProofWait,
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Setting::GroupCommitWindow => "group_commit.window",
            Setting::GroupCommitMax => "group_commit.max_batch",
            Setting::QueueDepth => "group_commit.queue_depth",
            Setting::QueueWait => "group_commit.queue_wait",
            Setting::IncrementalInterval => "monitor.incremental_interval",
            Setting::FullInterval => "monitor.full_interval",
            Setting::CheckpointInterval => "checkpoints.interval",
            Setting::MaxConnections => "http.max_connections",
            Setting::HeaderReadTimeout => "http.header_read_timeout",
            Setting::RequestTimeout => "http.request_timeout",
            Setting::ShutdownTimeout => "http.shutdown_timeout",
            Setting::KeyCacheCapacity => "key_cache.capacity",
            Setting::ProofWait => "checkpoints.proof_wait",
        })
    }
}

/// A configuration the service refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value outside its allowed range.
    #[error("{setting} must be between {min} and {max} (got {got})")]
    OutOfRange {
        /// Which setting.
        setting: Setting,
        /// Smallest allowed value, as text.
        min: String,
        /// Largest allowed value, as text.
        max: String,
        /// The value given, as text.
        got: String,
    },
    /// A setting that must not be smaller than another.
    #[error("{setting} must not be shorter than {other} ({got} < {other_value})")]
    ShorterThan {
        /// The setting that is too small.
        setting: Setting,
        /// Its value, as text.
        got: String,
        /// The setting it must not undercut.
        other: Setting,
        /// That setting's value, as text.
        other_value: String,
    },
}

impl ConfigError {
    /// The setting to fix.
    pub fn setting(&self) -> Setting {
        match self {
            ConfigError::OutOfRange { setting, .. } | ConfigError::ShorterThan { setting, .. } => *setting,
        }
    }
}

/// A value shown in a configuration error: durations in human form.
pub(crate) trait ConfigValue: PartialOrd + Copy {
    fn describe(self) -> String;
}

impl ConfigValue for usize {
    fn describe(self) -> String {
        self.to_string()
    }
}

impl ConfigValue for Duration {
    fn describe(self) -> String {
        if self.is_zero() { "0s".to_owned() } else { format!("{self:?}") }
    }
}

/// `value` within `min..=max`, or the error naming `setting` and the range.
pub(crate) fn check_range<T: ConfigValue>(
    setting: Setting,
    value: T,
    min: T,
    max: T,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::OutOfRange {
            setting,
            min: min.describe(),
            max: max.describe(),
            got: value.describe(),
        });
    }
    Ok(())
}

/// `value` not below `floor`, the value of the setting `other`.
pub(crate) fn check_not_shorter(
    setting: Setting,
    value: Duration,
    other: Setting,
    floor: Duration,
) -> Result<(), ConfigError> {
    if value < floor {
        return Err(ConfigError::ShorterThan {
            setting,
            got: value.describe(),
            other,
            other_value: floor.describe(),
        });
    }
    Ok(())
}
