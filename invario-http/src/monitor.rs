//! The integrity monitor: an incremental check on a short interval, a full
//! sweep on a longer one; breaks set the gauge to 0, are logged as
//! `integrity_check_failed`, and quarantine the ledger (in the core).

use std::sync::Arc;
use std::time::Duration;

use invario_core::{Ledger, LedgerName, LedgerStore, VerificationReport};
use tokio::sync::watch;

use crate::config::{ConfigError, Setting, check_not_shorter, check_range};
use crate::metrics::{HEAD_SEQUENCE, INTEGRITY_STATUS, LAST_VERIFIED_SEQUENCE};

/// Shortest check interval accepted: below it the monitor would spin on the database.
pub const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(10);
/// Longest check interval accepted: a week without a check is no monitoring.
pub const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);

/// How often the monitor checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorSchedule {
    /// Between incremental checks (entries added since the last verified one).
    pub incremental_interval: Duration,
    /// Between full sweeps (every row again: old rows can be edited too).
    pub full_interval: Duration,
}

impl Default for MonitorSchedule {
    fn default() -> Self {
        MonitorSchedule {
            incremental_interval: Duration::from_secs(30),
            full_interval: Duration::from_secs(300),
        }
    }
}

impl MonitorSchedule {
    /// Refuses intervals outside their ranges, and a full sweep scheduled more
    /// often than the incremental check it supersedes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range(
            Setting::IncrementalInterval,
            self.incremental_interval,
            MIN_CHECK_INTERVAL,
            MAX_CHECK_INTERVAL,
        )?;
        check_range(Setting::FullInterval, self.full_interval, MIN_CHECK_INTERVAL, MAX_CHECK_INTERVAL)?;
        check_not_shorter(
            Setting::FullInterval,
            self.full_interval,
            Setting::IncrementalInterval,
            self.incremental_interval,
        )
    }
}

/// Which kind of check ran.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Check {
    Full,
    Incremental,
}

/// Runs one check and publishes its outcome (gauges, log).
pub(crate) async fn check<S: LedgerStore>(name: &LedgerName, ledger: &Ledger<S>, kind: Check) {
    let started = std::time::Instant::now();
    let result = match kind {
        Check::Full => ledger.verify_full().await,
        Check::Incremental => ledger.verify_incremental().await,
    };
    let sweep = match kind {
        Check::Full => "full",
        Check::Incremental => "incremental",
    };
    match result {
        Ok(report) => publish(name, ledger, &report, sweep, started.elapsed()),
        Err(error) => tracing::warn!(
            event = "integrity_check_skipped",
            ledger = %name,
            sweep,
            error = %error,
            "the integrity check could not read the ledger"
        ),
    }
}

fn publish<S: LedgerStore>(
    name: &LedgerName,
    ledger: &Ledger<S>,
    report: &VerificationReport,
    sweep: &str,
    took: Duration,
) {
    let status = ledger.integrity();
    let label = name.to_string();
    metrics::gauge!(INTEGRITY_STATUS, "ledger" => label.clone()).set(if status.is_healthy() {
        1.0
    } else {
        0.0
    });
    metrics::gauge!(HEAD_SEQUENCE, "ledger" => label.clone()).set(report.head.sequence_number as f64);
    if let Some(verified) = status.verified {
        metrics::gauge!(LAST_VERIFIED_SEQUENCE, "ledger" => label).set(verified.sequence_number as f64);
    }
    match &report.first_break {
        Some(found) => tracing::error!(
            event = "integrity_check_failed",
            ledger = %name,
            sweep,
            kind = found.kind(),
            sequence = found.sequence(),
            error = %found,
            entries_checked = report.entries_checked,
        ),
        None => tracing::debug!(
            event = "integrity_check_passed",
            ledger = %name,
            sweep,
            entries_checked = report.entries_checked,
            head_sequence = report.head.sequence_number,
            millis = took.as_millis() as u64,
        ),
    }
}

/// Runs checks on `schedule` until `stop` changes.
pub(crate) async fn run<S: LedgerStore>(
    name: LedgerName,
    ledger: Arc<Ledger<S>>,
    schedule: MonitorSchedule,
    mut stop: watch::Receiver<bool>,
) {
    // validate() keeps both intervals above zero, which `interval` requires.
    let mut incremental = tokio::time::interval(schedule.incremental_interval);
    let mut full = tokio::time::interval(schedule.full_interval);
    // Both fire at once on the first tick; the start-up sweep already ran.
    incremental.tick().await;
    full.tick().await;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = full.tick() => check(&name, &ledger, Check::Full).await,
            _ = incremental.tick() => check(&name, &ledger, Check::Incremental).await,
        }
    }
}
