//! The integrity monitor: an incremental check on a short interval, a full
//! sweep on a longer one; breaks set the gauge to 0, are logged as
//! `integrity_check_failed`, and quarantine the ledger (in the core).

use std::sync::Arc;
use std::time::Duration;

use invario_core::{Ledger, LedgerStore, VerificationReport};
use tokio::sync::watch;

use crate::metrics::{HEAD_SEQUENCE, INTEGRITY_STATUS, LAST_VERIFIED_SEQUENCE};

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

/// Which kind of check ran.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Check {
    Full,
    Incremental,
}

/// Runs one check and publishes its outcome (gauges, log).
pub(crate) async fn check<S: LedgerStore>(ledger: &Ledger<S>, kind: Check) {
    let started = std::time::Instant::now();
    let result = match kind {
        Check::Full => ledger.verify_full(None, &mut |_| {}).await,
        Check::Incremental => ledger.verify_incremental().await,
    };
    let sweep = match kind {
        Check::Full => "full",
        Check::Incremental => "incremental",
    };
    match result {
        Ok(report) => publish(ledger, &report, sweep, started.elapsed()),
        Err(error) => tracing::warn!(
            event = "integrity_check_skipped",
            sweep,
            error = %error,
            "the integrity check could not read the ledger"
        ),
    }
}

fn publish<S: LedgerStore>(ledger: &Ledger<S>, report: &VerificationReport, sweep: &str, took: Duration) {
    let status = ledger.integrity();
    metrics::gauge!(INTEGRITY_STATUS).set(if status.is_healthy() { 1.0 } else { 0.0 });
    metrics::gauge!(HEAD_SEQUENCE).set(report.head.sequence_number as f64);
    if let Some(verified) = status.verified {
        metrics::gauge!(LAST_VERIFIED_SEQUENCE).set(verified.sequence_number as f64);
    }
    match &report.first_break {
        Some(found) => tracing::error!(
            event = "integrity_check_failed",
            sweep,
            kind = found.kind(),
            sequence = found.sequence(),
            error = %found,
            entries_checked = report.entries_checked,
        ),
        None => tracing::debug!(
            event = "integrity_check_passed",
            sweep,
            entries_checked = report.entries_checked,
            head_sequence = report.head.sequence_number,
            millis = took.as_millis() as u64,
        ),
    }
}

/// Runs checks on `schedule` until `stop` changes.
pub(crate) async fn run<S: LedgerStore>(
    ledger: Arc<Ledger<S>>,
    schedule: MonitorSchedule,
    mut stop: watch::Receiver<bool>,
) {
    let mut incremental = tokio::time::interval(schedule.incremental_interval.max(Duration::from_millis(10)));
    let mut full = tokio::time::interval(schedule.full_interval.max(Duration::from_millis(10)));
    // Both fire at once on the first tick; the start-up sweep already ran.
    incremental.tick().await;
    full.tick().await;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = full.tick() => check(&ledger, Check::Full).await,
            _ = incremental.tick() => check(&ledger, Check::Incremental).await,
        }
    }
}
