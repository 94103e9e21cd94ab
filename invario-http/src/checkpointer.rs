//! Signs checkpoints of the tree as it grows, into the sink outside the
//! database, after the core's guard proved the tree consistent with the
//! sink's latest; an inconsistency is an integrity break (gauge 0,
//! `checkpoint_inconsistent`, quarantine), exactly like a hash mismatch.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use invario_core::note::SignerKey;
use invario_core::signer::{SignError, SignOutcome};
use invario_core::{Ledger, LedgerName, LedgerStore};
use tokio::sync::watch;

use crate::config::{ConfigError, Setting, check_range};
use crate::metrics::{
    CHECKPOINT_AGE, CHECKPOINT_COSIGNATURES, CHECKPOINT_REFUSALS_TOTAL, CHECKPOINT_TREE_SIZE,
    CHECKPOINTS_SIGNED_TOTAL, INTEGRITY_STATUS, WITNESS_COSIGNATURE_AGE, WITNESS_QUORUM,
    WITNESS_SUBMISSIONS_TOTAL,
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
    /// Witnesses each new checkpoint is submitted to (C2SP tlog-witness).
    pub witnesses: Vec<WitnessTarget>,
    /// Cosignatures a checkpoint should gather; fewer is logged loudly, never a stop.
    pub quorum: usize,
}

/// A witness the log submits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessTarget {
    /// Its base URL (`POST <url>/add-checkpoint`).
    pub url: String,
    /// Its cosignature verifier key.
    pub vkey: invario_core::note::VerifierKey,
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

/// What each witness is known to hold, by URL.
#[derive(Debug, Clone, Copy, Default)]
struct WitnessProgress {
    /// The tree size it last cosigned (or named in a 409), so a submission sends the right `old`.
    size: u64,
    /// When this process last received its cosignature.
    cosigned_at: Option<Instant>,
}

/// Each witness's progress. In memory only: after a restart the first
/// submission sends `old 0` and the witness's 409 names its size.
#[derive(Debug, Clone, Default)]
pub(crate) struct WitnessSizes(Arc<RwLock<std::collections::HashMap<String, WitnessProgress>>>);

impl WitnessSizes {
    fn get(&self, url: &str) -> u64 {
        self.0.read().unwrap_or_else(PoisonError::into_inner).get(url).map_or(0, |progress| progress.size)
    }

    fn set(&self, url: &str, size: u64) {
        self.0.write().unwrap_or_else(PoisonError::into_inner).entry(url.to_owned()).or_default().size = size;
    }

    fn cosigned(&self, url: &str, size: u64) {
        let mut progress = self.0.write().unwrap_or_else(PoisonError::into_inner);
        *progress.entry(url.to_owned()).or_default() =
            WitnessProgress { size, cosigned_at: Some(Instant::now()) };
    }

    /// Seconds since each witness last cosigned a checkpoint of ledger `name`, for those that have.
    fn publish_ages(&self, name: &LedgerName, witnesses: &[WitnessTarget]) {
        let progress = self.0.read().unwrap_or_else(PoisonError::into_inner);
        for witness in witnesses {
            if let Some(at) = progress.get(&witness.url).and_then(|progress| progress.cosigned_at) {
                let (ledger, witness) = (name.to_string(), witness.vkey.name().to_owned());
                metrics::gauge!(WITNESS_COSIGNATURE_AGE, "ledger" => ledger, "witness" => witness)
                    .set(at.elapsed().as_secs_f64());
            }
        }
    }
}

/// Submits a new checkpoint to every witness and returns the cosignature lines
/// that verified. A witness that is down or refuses is a warning and a metric.
async fn gather_cosignatures<S: LedgerStore>(
    name: &LedgerName,
    ledger: &Ledger<S>,
    settings: &CheckpointSettings,
    sizes: &WitnessSizes,
    tree_size: u64,
    note: &str,
) -> Vec<String> {
    let mut lines = Vec::new();
    for witness in &settings.witnesses {
        let outcome = submit(ledger, witness, sizes, tree_size, note).await;
        let label = match &outcome {
            Ok(_) => "cosigned",
            Err(_) => "failed",
        };
        submissions(name, witness, label).increment(1);
        match outcome {
            Ok(line) => lines.push(line),
            Err(reason) => tracing::warn!(
                event = "witness_submission_failed",
                ledger = %name,
                witness = witness.vkey.name(),
                url = %witness.url,
                tree_size,
                reason,
            ),
        }
    }
    lines
}

/// The counter of submissions of ledger `name`'s checkpoints to `witness` with `outcome` (`cosigned` or `failed`).
fn submissions(name: &LedgerName, witness: &WitnessTarget, outcome: &'static str) -> metrics::Counter {
    let (ledger, witness) = (name.to_string(), witness.vkey.name().to_owned());
    metrics::counter!(WITNESS_SUBMISSIONS_TOTAL, "ledger" => ledger, "witness" => witness, "outcome" => outcome)
}

/// One HTTP client for every submission (its connection pool and TLS setup are built once).
fn witness_client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: std::sync::OnceLock<Result<reqwest::Client, String>> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|error| error.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// One witness: submit from the size it last cosigned; after a 409, once more
/// from the size it names.
async fn submit<S: LedgerStore>(
    ledger: &Ledger<S>,
    witness: &WitnessTarget,
    sizes: &WitnessSizes,
    tree_size: u64,
    note: &str,
) -> Result<String, String> {
    let client = witness_client()?;
    for _attempt in 0..2 {
        let old = sizes.get(&witness.url).min(tree_size);
        let proof =
            ledger.consistency_proof(old, Some(tree_size)).await.map_err(|error| error.to_string())?;
        let body = invario_core::witness::AddCheckpoint {
            old_size: old,
            proof: proof.hashes,
            note: note.as_bytes().to_vec(),
        };
        let response = client
            .post(format!("{}/add-checkpoint", witness.url.trim_end_matches('/')))
            .body(body.to_body())
            .send()
            .await
            .map_err(|error| error.to_string())?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|error| error.to_string())?;
        match status {
            200 => {
                let cosigned = invario_core::note::Note::parse(format!("{note}{text}").as_bytes())
                    .map_err(|error| format!("the answer is not a cosignature line: {error}"))?;
                let verified =
                    invario_core::witness::verified_cosigners(&cosigned, std::slice::from_ref(&witness.vkey))
                        .map_err(|error| error.to_string())?;
                if verified.is_empty() {
                    return Err("the answer holds no cosignature from this witness's key".into());
                }
                sizes.cosigned(&witness.url, tree_size);
                return Ok(text);
            }
            409 => {
                let known =
                    text.trim().parse::<u64>().map_err(|_| format!("409 without a size: {text:?}"))?;
                sizes.set(&witness.url, known);
            }
            other => return Err(format!("answered {other}: {}", text.trim())),
        }
    }
    Err("the witness kept answering 409".into())
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
    name: &LedgerName,
    ledger: &Ledger<S>,
    settings: &CheckpointSettings,
    latest: &LatestCheckpoint,
    witness_sizes: &WitnessSizes,
) {
    let sink = settings.sink.clone();
    let stored = match tokio::task::spawn_blocking(move || sink.read_latest()).await {
        Ok(Ok(stored)) => stored,
        Ok(Err(error)) => return refuse(name, "checkpoint_sink_unreadable", &error.to_string()),
        Err(error) => return refuse(name, "checkpoint_sink_unreadable", &error.to_string()),
    };
    match ledger.sign_checkpoint(&settings.signer, stored.as_deref()).await {
        Ok(SignOutcome::Signed { checkpoint, note }) => {
            let sink = settings.sink.clone();
            let written = note.clone();
            let size = checkpoint.head.size;
            match tokio::task::spawn_blocking(move || sink.write(size, &written)).await {
                Ok(Ok(())) => {
                    let lines = gather_cosignatures(name, ledger, settings, witness_sizes, size, &note).await;
                    metrics::gauge!(CHECKPOINT_COSIGNATURES, "ledger" => name.to_string())
                        .set(lines.len() as f64);
                    if lines.len() < settings.quorum {
                        tracing::error!(
                            event = "witness_quorum_missed", ledger = %name,
                            tree_size = size,
                            cosigned = lines.len(),
                            quorum = settings.quorum,
                        );
                    }
                    // Served with the cosignatures gathered; the sink keeps the log's own note.
                    let served: String =
                        std::iter::once(note.as_str()).chain(lines.iter().map(String::as_str)).collect();
                    if let Err(error) = ledger.keep_checkpoint_copy(&checkpoint, &served).await {
                        tracing::warn!(event = "checkpoint_copy_failed", ledger = %name, tree_size = size, error = %error);
                    }
                    latest.set(size, note);
                    metrics::counter!(CHECKPOINTS_SIGNED_TOTAL, "ledger" => name.to_string()).increment(1);
                    metrics::gauge!(CHECKPOINT_TREE_SIZE, "ledger" => name.to_string()).set(size as f64);
                    tracing::info!(
                        event = "checkpoint_signed", ledger = %name,
                        tree_size = size,
                        root_hash = %checkpoint.head.root,
                        origin = %checkpoint.origin,
                    );
                }
                Ok(Err(error)) => refuse(name, "checkpoint_sink_unwritable", &error.to_string()),
                Err(error) => refuse(name, "checkpoint_sink_unwritable", &error.to_string()),
            }
        }
        Ok(SignOutcome::Unchanged(checkpoint)) => {
            if latest.get().is_none()
                && let Some(note) = stored.and_then(|bytes| String::from_utf8(bytes).ok())
            {
                // A copy lost with a restored database is put back from the sink.
                if let Err(error) = ledger.keep_checkpoint_copy(&checkpoint, &note).await {
                    tracing::warn!(event = "checkpoint_copy_failed", ledger = %name, tree_size = checkpoint.head.size, error = %error);
                }
                latest.set(checkpoint.head.size, note);
                metrics::gauge!(CHECKPOINT_TREE_SIZE, "ledger" => name.to_string())
                    .set(checkpoint.head.size as f64);
            }
        }
        Err(SignError::Inconsistent(found)) => {
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
        Err(SignError::Quarantined(_)) => {
            metrics::counter!(CHECKPOINT_REFUSALS_TOTAL, "ledger" => name.to_string()).increment(1)
        }
        Err(SignError::Sink(error)) => refuse(name, "checkpoint_sink_untrusted", &error.to_string()),
        Err(SignError::Store(error)) => {
            tracing::warn!(event = "checkpoint_skipped", ledger = %name, error = %error, "the ledger could not be read");
        }
    }
    if let Some(age) = latest.age() {
        metrics::gauge!(CHECKPOINT_AGE, "ledger" => name.to_string()).set(age.as_secs_f64());
    }
    witness_sizes.publish_ages(name, &settings.witnesses);
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
