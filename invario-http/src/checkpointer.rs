//! Signs checkpoints of the tree as it grows, into the sink outside the
//! database, after the core's guard proved the tree consistent with the
//! sink's latest; an inconsistency is an integrity break (gauge 0,
//! `checkpoint_inconsistent`, quarantine), exactly like a hash mismatch.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use invario_core::checkpoint::Checkpoint;
use invario_core::ledger::checkpoints::{SignError, SignOutcome};
use invario_core::note::SignerKey;
use invario_core::{Ledger, LedgerName, LedgerStore};
use tokio::sync::watch;

use crate::config::{ConfigError, Setting, check_range};
use crate::metrics::{
    CHECKPOINT_AGE, CHECKPOINT_COSIGNATURES, CHECKPOINT_REFUSALS_TOTAL, CHECKPOINT_TREE_SIZE,
    CHECKPOINTS_SIGNED_TOTAL, INTEGRITY_STATUS, WITNESS_QUORUM,
};
use crate::sink::Sink;
pub use crate::witness_client::WitnessTarget;
use crate::witness_client::{WitnessSizes, cosign, cosign_with, submissions};

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
    /// Witnesses each new checkpoint is submitted to (C2SP tlog-witness).
    pub witnesses: Vec<WitnessTarget>,
    /// Cosignatures a checkpoint should gather; fewer is logged loudly, never a stop.
    /// (With a `policy`, the fewest cosignatures that can meet its rule.)
    pub quorum: usize,
    /// A C2SP tlog-policy whose quorum rule a checkpoint's cosignatures
    /// should meet, instead of a count (`serve --witness-policy`).
    pub policy: Option<invario_core::policy::Policy>,
    /// Longest a write asking `Prefer: wait=signed|witnessed` waits for its
    /// checkpoint before it is answered 503 (its entries stay recorded).
    pub proof_wait: Duration,
}

/// The witness quorum rule: a policy's, else at least `quorum` cosignatures.
pub(crate) fn quorum_met(
    policy: Option<&invario_core::policy::Policy>,
    quorum: usize,
    served: &str,
    cosignatures: usize,
) -> bool {
    match policy {
        Some(policy) => invario_core::note::Note::parse(served.as_bytes())
            .is_ok_and(|note| policy.check_cosignatures(&note).is_ok()),
        None => cosignatures >= quorum,
    }
}

/// How long a write asking for a proof waits by default.
pub const DEFAULT_PROOF_WAIT: Duration = Duration::from_secs(10);
/// Longest proof wait accepted.
pub const MAX_PROOF_WAIT: Duration = Duration::from_secs(300);

impl CheckpointSettings {
    /// Whether `served` (the log's note with the cosignature lines gathered,
    /// `cosignatures` of them) meets the witness quorum: the policy's rule, or the count.
    pub fn quorum_met(&self, served: &str, cosignatures: usize) -> bool {
        quorum_met(self.policy.as_ref(), self.quorum, served, cosignatures)
    }

    /// Refuses an interval outside its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_checkpoint_interval(self.interval)?;
        check_range(Setting::ProofWait, self.proof_wait, Duration::from_millis(100), MAX_PROOF_WAIT)
    }
}

/// A signing interval within [`MIN_CHECKPOINT_INTERVAL`]..=[`MAX_CHECKPOINT_INTERVAL`].
pub fn check_checkpoint_interval(interval: Duration) -> Result<(), ConfigError> {
    check_range(Setting::CheckpointInterval, interval, MIN_CHECKPOINT_INTERVAL, MAX_CHECKPOINT_INTERVAL)
}

/// The latest checkpoint this service signed or found in its sink, as served,
/// and a signal for writers waiting for one to cover their entries.
#[derive(Debug, Clone, Default)]
pub(crate) struct LatestCheckpoint(Arc<LatestInner>);

/// The latest checkpoint as published.
#[derive(Debug)]
struct Published {
    size: u64,
    /// The log's own note (as in the sink).
    note: String,
    /// The cosignature lines gathered, in order.
    lines: Vec<String>,
    at: Instant,
}

#[derive(Debug, Default)]
struct LatestInner {
    current: RwLock<Option<Published>>,
    changed: tokio::sync::Notify,
    /// When cosignatures missing from the latest were last asked for again.
    resubmitted: std::sync::Mutex<Option<Instant>>,
}

impl LatestCheckpoint {
    /// The note and its tree size.
    pub(crate) fn get(&self) -> Option<(u64, String)> {
        self.0
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|published| (published.size, published.note.clone()))
    }

    fn set(&self, size: u64, note: String, lines: Vec<String>) {
        *self.0.current.write().unwrap_or_else(PoisonError::into_inner) =
            Some(Published { size, note, lines, at: Instant::now() });
        self.0.changed.notify_waiters();
    }

    /// The latest's size, the log's note and the cosignature lines gathered.
    fn current(&self) -> Option<(u64, String, Vec<String>)> {
        self.0
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|published| (published.size, published.note.clone(), published.lines.clone()))
    }

    /// Adds cosignature lines gathered later to the latest, if it is still of `size`.
    fn add_cosignatures(&self, size: u64, more: Vec<String>) {
        let mut current = self.0.current.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(published) = current.as_mut()
            && published.size == size
        {
            published.lines.extend(more);
        }
        drop(current);
        self.0.changed.notify_waiters();
    }

    /// Whether it is time to ask again for missing cosignatures (at most once per `every`).
    fn due_for_resubmission(&self, every: Duration) -> bool {
        let mut last = self.0.resubmitted.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|at| at.elapsed() < every) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    fn age(&self) -> Option<Duration> {
        self.0
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|published| published.at.elapsed())
    }

    /// Waits up to `limit` for a checkpoint that `met` accepts, given its
    /// size, the note as served (with its cosignatures) and their number;
    /// whether one came.
    pub(crate) async fn wait_for(&self, met: impl Fn(u64, &str, usize) -> bool, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            // Registered before the check, so a checkpoint published in between still wakes it.
            let changed = self.0.changed.notified();
            let accepted =
                self.0.current.read().unwrap_or_else(PoisonError::into_inner).as_ref().is_some_and(
                    |published| {
                        let served: String = std::iter::once(published.note.as_str())
                            .chain(published.lines.iter().map(String::as_str))
                            .collect();
                        met(published.size, &served, published.lines.len())
                    },
                );
            if accepted {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return false;
            }
        }
    }
}

/// One round: read the sink's latest, let the core check and sign, publish
/// the new note (or report why not).
pub(crate) async fn sign_once<S: LedgerStore>(
    name: &LedgerName,
    ledger: &Ledger<S>,
    settings: &CheckpointSettings,
    latest: &LatestCheckpoint,
    witness_sizes: &WitnessSizes,
) {
    match read_sink(settings).await {
        Err(error) => refuse(name, "checkpoint_sink_unreadable", &error),
        Ok(stored) => match ledger.sign_checkpoint(&settings.signer, stored.as_deref()).await {
            Ok(SignOutcome::Signed { checkpoint, note }) => {
                publish(name, ledger, settings, latest, witness_sizes, &checkpoint, note).await;
            }
            Ok(SignOutcome::Unchanged(checkpoint)) => {
                restore_copy(name, ledger, latest, &checkpoint, stored).await;
                resubmit_missing(name, ledger, settings, latest, witness_sizes, &checkpoint).await;
            }
            Err(error) => report_refusal(name, error),
        },
    }
    if let Some(age) = latest.age() {
        metrics::gauge!(CHECKPOINT_AGE, "ledger" => name.to_string()).set(age.as_secs_f64());
    }
    witness_sizes.publish_ages(name, &settings.witnesses);
}

/// The sink's latest note, read off the async threads.
async fn read_sink(settings: &CheckpointSettings) -> Result<Option<Vec<u8>>, String> {
    let sink = settings.sink.clone();
    match tokio::task::spawn_blocking(move || sink.read_latest()).await {
        Ok(read) => read.map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    }
}

/// Writes a new note to the sink, gathers cosignatures, keeps the served
/// copy (with them) in the database, and counts it — in that order: the sink
/// first, so nothing is served that the sink does not hold.
async fn publish<S: LedgerStore>(
    name: &LedgerName,
    ledger: &Ledger<S>,
    settings: &CheckpointSettings,
    latest: &LatestCheckpoint,
    witness_sizes: &WitnessSizes,
    checkpoint: &Checkpoint,
    note: String,
) {
    let size = checkpoint.head.size;
    let (sink, written) = (settings.sink.clone(), note.clone());
    let wrote = tokio::task::spawn_blocking(move || sink.write(size, &written)).await;
    if let Some(error) = match wrote {
        Ok(written) => written.err().map(|error| error.to_string()),
        Err(error) => Some(error.to_string()),
    } {
        return refuse(name, "checkpoint_sink_unwritable", &error);
    }
    let lines = cosign(name, ledger, settings, witness_sizes, size, &note).await;
    metrics::gauge!(CHECKPOINT_COSIGNATURES, "ledger" => name.to_string()).set(lines.len() as f64);
    // Served with the cosignatures gathered; the sink keeps the log's own note.
    let served: String = std::iter::once(note.as_str()).chain(lines.iter().map(String::as_str)).collect();
    if !settings.quorum_met(&served, lines.len()) {
        tracing::error!(
            event = "witness_quorum_missed", ledger = %name,
            tree_size = size,
            cosigned = lines.len(),
            quorum = settings.quorum,
        );
    }
    if let Err(error) = ledger.keep_checkpoint_copy(checkpoint, &served).await {
        tracing::warn!(event = "checkpoint_copy_failed", ledger = %name, tree_size = size, error = %error);
    }
    latest.set(size, note, lines);
    metrics::counter!(CHECKPOINTS_SIGNED_TOTAL, "ledger" => name.to_string()).increment(1);
    metrics::gauge!(CHECKPOINT_TREE_SIZE, "ledger" => name.to_string()).set(size as f64);
    tracing::info!(
        event = "checkpoint_signed", ledger = %name,
        tree_size = size,
        root_hash = %checkpoint.head.root,
        origin = %checkpoint.origin,
    );
}

/// Nothing new to sign: a copy lost with a restored database is put back from the sink.
async fn restore_copy<S: LedgerStore>(
    name: &LedgerName,
    ledger: &Ledger<S>,
    latest: &LatestCheckpoint,
    checkpoint: &Checkpoint,
    stored: Option<Vec<u8>>,
) {
    if latest.get().is_some() {
        return;
    }
    let Some(note) = stored.and_then(|bytes| String::from_utf8(bytes).ok()) else {
        return;
    };
    if let Err(error) = ledger.keep_checkpoint_copy(checkpoint, &note).await {
        tracing::warn!(event = "checkpoint_copy_failed", ledger = %name, tree_size = checkpoint.head.size, error = %error);
    }
    latest.set(checkpoint.head.size, note, Vec::new());
    metrics::gauge!(CHECKPOINT_TREE_SIZE, "ledger" => name.to_string()).set(checkpoint.head.size as f64);
}

/// Signing rounds between two requests for cosignatures the latest is missing.
const RESUBMIT_EVERY_ROUNDS: u32 = 10;

/// The tree has not grown: a witness that missed the latest checkpoint (down,
/// or refusing, when it was signed) is asked again, every few rounds, so an
/// idle ledger does not keep an uncosigned latest; what it returns is added
/// to the served copy.
async fn resubmit_missing<S: LedgerStore>(
    name: &LedgerName,
    ledger: &Ledger<S>,
    settings: &CheckpointSettings,
    latest: &LatestCheckpoint,
    witness_sizes: &WitnessSizes,
    checkpoint: &Checkpoint,
) {
    let Some((size, note, lines)) = latest.current().filter(|(size, _, _)| *size == checkpoint.head.size)
    else {
        return;
    };
    let served: String = std::iter::once(note.as_str()).chain(lines.iter().map(String::as_str)).collect();
    let Ok(parsed) = invario_core::note::Note::parse(served.as_bytes()) else {
        return;
    };
    let missing: Vec<WitnessTarget> = settings
        .witnesses
        .iter()
        .filter(|witness| {
            !parsed
                .signatures
                .iter()
                .any(|line| line.name == witness.vkey.name() && line.key_id == witness.vkey.id())
        })
        .cloned()
        .collect();
    if missing.is_empty() || !latest.due_for_resubmission(settings.interval * RESUBMIT_EVERY_ROUNDS) {
        return;
    }
    let more = cosign_with(name, ledger, &missing, witness_sizes, size, &note).await;
    if more.is_empty() {
        return;
    }
    let gathered = lines.len() + more.len();
    let extended: String = std::iter::once(served.as_str()).chain(more.iter().map(String::as_str)).collect();
    if let Err(error) = ledger.keep_checkpoint_copy(checkpoint, &extended).await {
        tracing::warn!(event = "checkpoint_copy_failed", ledger = %name, tree_size = size, error = %error);
    }
    latest.add_cosignatures(size, more);
    metrics::gauge!(CHECKPOINT_COSIGNATURES, "ledger" => name.to_string()).set(gathered as f64);
    tracing::info!(event = "checkpoint_cosigned_later", ledger = %name, tree_size = size, cosignatures = gathered);
}

/// Why the core signed nothing: an inconsistency is an integrity break.
fn report_refusal(name: &LedgerName, error: SignError) {
    match error {
        SignError::Inconsistent(found) => {
            metrics::counter!(CHECKPOINT_REFUSALS_TOTAL, "ledger" => name.to_string()).increment(1);
            metrics::gauge!(INTEGRITY_STATUS, "ledger" => name.to_string()).set(0.0);
            if let invario_core::IntegrityBreak::CheckpointInconsistent {
                checkpoint_size,
                checkpoint_root,
                tree_size,
                tree_root,
            } = &found
            {
                tracing::error!(
                    event = "checkpoint_inconsistent", ledger = %name,
                    checkpoint_size,
                    checkpoint_root = %checkpoint_root,
                    tree_size,
                    tree_root = %tree_root,
                    error = %found,
                );
            }
        }
        // Quarantined already: the break was logged where it was found; signing stays off.
        SignError::Quarantined(_) => {
            metrics::counter!(CHECKPOINT_REFUSALS_TOTAL, "ledger" => name.to_string()).increment(1)
        }
        SignError::Sink(error) => refuse(name, "checkpoint_sink_untrusted", &error.to_string()),
        SignError::Store(error) => {
            tracing::warn!(event = "checkpoint_skipped", ledger = %name, error = %error, "the ledger could not be read");
        }
    }
}

fn refuse(name: &LedgerName, event: &'static str, error: &str) {
    metrics::counter!(CHECKPOINT_REFUSALS_TOTAL, "ledger" => name.to_string()).increment(1);
    tracing::error!(event, ledger = %name, error, "no checkpoint was signed");
}

/// Signs on `settings.interval` until `stop` changes.
pub(crate) async fn run<S: LedgerStore>(
    name: LedgerName,
    ledger: Arc<Ledger<S>>,
    settings: CheckpointSettings,
    latest: LatestCheckpoint,
    witness_sizes: WitnessSizes,
    mut stop: watch::Receiver<bool>,
) {
    metrics::gauge!(WITNESS_QUORUM, "ledger" => name.to_string()).set(settings.quorum as f64);
    for witness in &settings.witnesses {
        for outcome in ["cosigned", "failed"] {
            submissions(&name, witness, outcome).increment(0);
        }
    }
    // validate() keeps the interval above zero, which `interval` requires.
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = ticks.tick() => sign_once(&name, &ledger, &settings, &latest, &witness_sizes).await,
        }
    }
}
