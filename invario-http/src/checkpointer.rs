//! Signs checkpoints of the tree as it grows, into the sink outside the
//! database, after the core's guard proved the tree consistent with the
//! sink's latest; an inconsistency is an integrity break (gauge 0,
//! `checkpoint_inconsistent`, quarantine), exactly like a hash mismatch.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use invario_core::note::SignerKey;
use invario_core::signer::{SignError, SignOutcome};
use invario_core::{Ledger, LedgerStore};
use tokio::sync::watch;

use crate::config::{ConfigError, Setting, check_range};
use crate::metrics::{
    CHECKPOINT_AGE, CHECKPOINT_REFUSALS_TOTAL, CHECKPOINT_TREE_SIZE, CHECKPOINTS_SIGNED_TOTAL,
    INTEGRITY_STATUS,
};
use crate::sink::Sink;

/// Shortest signing interval accepted.
pub const MIN_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(10);
/// Longest signing interval accepted.
pub const MAX_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(3600);

/// How the service signs checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSettings {
    /// The log's key; its name is the origin.
    pub signer: SignerKey,
    /// The sink: a directory the database's administrators cannot write.
    pub sink: Sink,
    /// How often the guard runs and, when the tree grew, a checkpoint is signed.
    pub interval: Duration,
}

impl CheckpointSettings {
    /// Refuses an interval outside its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_checkpoint_interval(self.interval)
    }
}

/// A signing interval within [`MIN_CHECKPOINT_INTERVAL`]..=[`MAX_CHECKPOINT_INTERVAL`].
pub fn check_checkpoint_interval(interval: Duration) -> Result<(), ConfigError> {
    check_range(Setting::CheckpointInterval, interval, MIN_CHECKPOINT_INTERVAL, MAX_CHECKPOINT_INTERVAL)
}

/// The latest checkpoint this service signed or found in its sink, as served.
#[derive(Debug, Clone, Default)]
pub(crate) struct LatestCheckpoint(Arc<RwLock<Option<(u64, String, Instant)>>>);

impl LatestCheckpoint {
    /// The note and its tree size.
    pub(crate) fn get(&self) -> Option<(u64, String)> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(size, note, _)| (*size, note.clone()))
    }

    fn set(&self, size: u64, note: String) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some((size, note, Instant::now()));
    }

    fn age(&self) -> Option<Duration> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).as_ref().map(|(_, _, at)| at.elapsed())
    }
}

/// One round: read the sink's latest, let the core check and sign, write the new note.
pub(crate) async fn sign_once<S: LedgerStore>(
    ledger: &Ledger<S>,
    settings: &CheckpointSettings,
    latest: &LatestCheckpoint,
) {
    let sink = settings.sink.clone();
    let stored = match tokio::task::spawn_blocking(move || sink.read_latest()).await {
        Ok(Ok(stored)) => stored,
        Ok(Err(error)) => return refuse("checkpoint_sink_unreadable", &error.to_string()),
        Err(error) => return refuse("checkpoint_sink_unreadable", &error.to_string()),
    };
    match ledger.sign_checkpoint(&settings.signer, stored.as_deref()).await {
        Ok(SignOutcome::Signed { checkpoint, note }) => {
            let sink = settings.sink.clone();
            let written = note.clone();
            let size = checkpoint.tree_size;
            match tokio::task::spawn_blocking(move || sink.write(size, &written)).await {
                Ok(Ok(())) => {
                    if let Err(error) = ledger.keep_checkpoint_copy(&checkpoint, &note).await {
                        tracing::warn!(event = "checkpoint_copy_failed", tree_size = size, error = %error);
                    }
                    latest.set(size, note);
                    metrics::counter!(CHECKPOINTS_SIGNED_TOTAL).increment(1);
                    metrics::gauge!(CHECKPOINT_TREE_SIZE).set(size as f64);
                    tracing::info!(
                        event = "checkpoint_signed",
                        tree_size = size,
                        root_hash = %checkpoint.root_hash,
                        origin = %checkpoint.origin,
                    );
                }
                Ok(Err(error)) => refuse("checkpoint_sink_unwritable", &error.to_string()),
                Err(error) => refuse("checkpoint_sink_unwritable", &error.to_string()),
            }
        }
        Ok(SignOutcome::Unchanged(checkpoint)) => {
            if latest.get().is_none()
                && let Some(note) = stored.and_then(|bytes| String::from_utf8(bytes).ok())
            {
                // A copy lost with a restored database is put back from the sink.
                if let Err(error) = ledger.keep_checkpoint_copy(&checkpoint, &note).await {
                    tracing::warn!(event = "checkpoint_copy_failed", tree_size = checkpoint.tree_size, error = %error);
                }
                latest.set(checkpoint.tree_size, note);
                metrics::gauge!(CHECKPOINT_TREE_SIZE).set(checkpoint.tree_size as f64);
            }
        }
        Err(SignError::Inconsistent(found)) => {
            metrics::counter!(CHECKPOINT_REFUSALS_TOTAL).increment(1);
            metrics::gauge!(INTEGRITY_STATUS).set(0.0);
            if let invario_core::IntegrityBreak::CheckpointInconsistent {
                checkpoint_size,
                checkpoint_root,
                tree_size,
                tree_root,
            } = &found
            {
                tracing::error!(
                    event = "checkpoint_inconsistent",
                    checkpoint_size,
                    checkpoint_root = %checkpoint_root,
                    tree_size,
                    tree_root = %tree_root,
                    error = %found,
                );
            }
        }
        // Quarantined already: the break was logged where it was found; signing stays off.
        Err(SignError::Quarantined(_)) => metrics::counter!(CHECKPOINT_REFUSALS_TOTAL).increment(1),
        Err(SignError::Sink(error)) => refuse("checkpoint_sink_untrusted", &error.to_string()),
        Err(SignError::Store(error)) => {
            tracing::warn!(event = "checkpoint_skipped", error = %error, "the ledger could not be read");
        }
    }
    if let Some(age) = latest.age() {
        metrics::gauge!(CHECKPOINT_AGE).set(age.as_secs_f64());
    }
}

fn refuse(event: &'static str, error: &str) {
    metrics::counter!(CHECKPOINT_REFUSALS_TOTAL).increment(1);
    tracing::error!(event, error, "no checkpoint was signed");
}

/// Signs on `settings.interval` until `stop` changes.
pub(crate) async fn run<S: LedgerStore>(
    ledger: Arc<Ledger<S>>,
    settings: CheckpointSettings,
    latest: LatestCheckpoint,
    mut stop: watch::Receiver<bool>,
) {
    // validate() keeps the interval above zero, which `interval` requires.
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = ticks.tick() => sign_once(&ledger, &settings, &latest).await,
        }
    }
}
