//! The log's client of its witnesses (C2SP tlog-witness): submits a signed
//! checkpoint with a consistency proof from the size each witness last
//! cosigned, follows a 409 once, and keeps only cosignatures that verify under
//! the witness's key. Apart from the signing loop (`checkpointer`), which
//! calls [`cosign`] after each new checkpoint.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use invario_core::{Ledger, LedgerName, LedgerStore};

use crate::checkpointer::CheckpointSettings;
use crate::metrics::{WITNESS_COSIGNATURE_AGE, WITNESS_SUBMISSIONS_TOTAL};

/// A witness the log submits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessTarget {
    /// Its base URL (`POST <url>/add-checkpoint`).
    pub url: String,
    /// Its cosignature verifier key.
    pub vkey: invario_core::note::VerifierKey,
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
    pub(crate) fn publish_ages(&self, name: &LedgerName, witnesses: &[WitnessTarget]) {
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
pub(crate) async fn cosign<S: LedgerStore>(
    name: &LedgerName,
    ledger: &Ledger<S>,
    settings: &CheckpointSettings,
    sizes: &WitnessSizes,
    tree_size: u64,
    note: &str,
) -> Vec<String> {
    cosign_with(name, ledger, &settings.witnesses, sizes, tree_size, note).await
}

/// Submits `note` to each of `witnesses`; the cosignature lines returned.
pub(crate) async fn cosign_with<S: LedgerStore>(
    name: &LedgerName,
    ledger: &Ledger<S>,
    witnesses: &[WitnessTarget],
    sizes: &WitnessSizes,
    tree_size: u64,
    note: &str,
) -> Vec<String> {
    let mut lines = Vec::new();
    for witness in witnesses {
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
pub(crate) fn submissions(
    name: &LedgerName,
    witness: &WitnessTarget,
    outcome: &'static str,
) -> metrics::Counter {
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
