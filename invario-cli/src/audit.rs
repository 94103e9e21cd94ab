//! `invario audit`: an auditor that remembers. It fetches the server's signed
//! checkpoint, verifies the signature with the log's verifier key, proves it
//! consistent with the checkpoint it accepted last time (kept in its own state
//! directory, never the server's), optionally re-derives the whole tree from
//! the entries, and only then remembers the new one.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use invario_core::audit::{TrustedTree, check_consistency, entry_from_receipt};
use invario_core::checkpoint::Checkpoint;
use invario_core::merkle::{Frontier, entry_leaf_hash};
use invario_core::note::VerifierKey;
use invario_core::policy::Policy;
use invario_core::{ChainPosition, LedgerName, MAX_PAGE_SIZE};
use invario_http::{Sink, SinkError};

use crate::remote::{fetch_bytes, fetch_json, ledger_path};

/// The witnesses whose cosignatures a checkpoint must carry, and how many —
/// or the C2SP tlog-policy whose quorum rule it must meet.
#[derive(Debug)]
pub(crate) struct Witnesses {
    pub(crate) keys: Vec<VerifierKey>,
    pub(crate) quorum: usize,
    pub(crate) policy: Option<Policy>,
}

/// Reads a C2SP tlog-policy file (`--policy`).
pub(crate) fn read_policy(path: &Path) -> anyhow::Result<Policy> {
    let bytes = std::fs::read(path).with_context(|| format!("--policy {}", path.display()))?;
    Policy::parse(&bytes).with_context(|| format!("--policy {}", path.display()))
}

impl Witnesses {
    /// Whether the checkpoint `note` carries what is required: the quorum
    /// of the given witnesses, or the policy's quorum rule.
    pub(crate) fn check(&self, note: &invario_core::note::Note) -> Result<(), String> {
        match &self.policy {
            Some(policy) => policy.check_cosignatures(note).map(|_| ()).map_err(|error| error.to_string()),
            None if self.quorum > 0 => invario_core::witness::check_quorum(note, &self.keys, self.quorum)
                .map(|_| ())
                .map_err(|error| error.to_string()),
            None => Ok(()),
        }
    }

    /// Parses `--witness-vkey`s (a quorum above their number cannot be met), or `--policy`.
    pub(crate) fn parse(vkeys: &[String], quorum: usize, policy: Option<&Path>) -> anyhow::Result<Self> {
        if let Some(path) = policy {
            return Ok(Witnesses { keys: Vec::new(), quorum: 0, policy: Some(read_policy(path)?) });
        }
        let keys = vkeys
            .iter()
            .map(|text| VerifierKey::parse(text).with_context(|| format!("--witness-vkey {text}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if quorum > keys.len() {
            anyhow::bail!("--quorum {quorum} needs at least that many --witness-vkey (got {})", keys.len());
        }
        Ok(Witnesses { keys, quorum, policy: None })
    }
}

pub(crate) async fn run(
    url: &str,
    ledger: &LedgerName,
    key: &str,
    vkey: &str,
    state: &Path,
    full: bool,
    witnesses: &Witnesses,
) -> anyhow::Result<ExitCode> {
    let log_key = VerifierKey::parse(vkey).context("--vkey")?;
    let memory = Sink::open(state)?;
    let remembered = match memory.read_latest()? {
        Some(note) => Some(Checkpoint::verify(&note, &log_key).with_context(|| {
            format!("the remembered checkpoint in {} does not verify with --vkey", state.display())
        })?),
        None => None,
    };
    let served = fetch_bytes(url, Some(key), &ledger_path(ledger, "/v1/ledger/checkpoint")).await?;
    let (checkpoint, note) = match Checkpoint::verify(&served, &log_key) {
        Ok(verified) => verified,
        Err(error) => {
            return Ok(inconsistent(
                &format!("the served checkpoint does not verify: {error}"),
                &served,
                None,
            ));
        }
    };
    if let Err(error) = witnesses.check(&note) {
        return Ok(inconsistent(&format!("witnesses: {error}"), &served, None));
    }
    let new = TrustedTree { size: checkpoint.head.size, root: checkpoint.head.root };

    if let Some((old, old_note)) = &remembered {
        let old_tree = TrustedTree { size: old.head.size, root: old.head.root };
        if old.head.size > checkpoint.head.size {
            let reason = format!("the log shrank from {} to {} entries", old.head.size, checkpoint.head.size);
            return Ok(inconsistent(&reason, &served, Some(&old_note.to_text())));
        }
        let path = ledger_path(
            ledger,
            &format!("/v1/ledger/proof/consistency?first={}&second={}", old.head.size, checkpoint.head.size),
        );
        let response = fetch_json(url, Some(key), &path).await?;
        if let Err(error) = check_consistency(&response, Some(old_tree), Some(new)) {
            return Ok(inconsistent(&error.to_string(), &served, Some(&old_note.to_text())));
        }
    }
    if full && let Err(reason) = rebuild(url, ledger, key, &checkpoint).await? {
        return Ok(inconsistent(
            &reason,
            &served,
            remembered.as_ref().map(|(_, note)| note.to_text()).as_deref(),
        ));
    }
    let note = String::from_utf8(served.clone()).context("the checkpoint is not UTF-8")?;
    match memory.write(checkpoint.head.size, &note) {
        Ok(()) => {}
        Err(SinkError::Equivocation { path, .. }) => {
            let other = std::fs::read_to_string(&path).unwrap_or_default();
            let reason = format!("two different checkpoints for tree size {}", checkpoint.head.size);
            return Ok(inconsistent(&reason, &served, Some(&other)));
        }
        Err(error) => return Err(error.into()),
    }
    match &remembered {
        Some((old, _)) => println!(
            "✅ Consistent: the checkpoint at tree size {} (root {}) extends the one remembered at size {}",
            checkpoint.head.size, checkpoint.head.root, old.head.size
        ),
        None => println!(
            "✅ Verified the checkpoint at tree size {} (root {}); remembered in {}",
            checkpoint.head.size,
            checkpoint.head.root,
            state.display()
        ),
    }
    if full {
        println!(
            "✅ Every entry up to {} recomputed: the chain and the tree match the checkpoint",
            checkpoint.head.size
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Pages through the entries up to the checkpoint's size, recomputing each
/// hash from its fields and the tree from the hashes. `Err(reason)` when they
/// do not give the checkpoint's root.
async fn rebuild(
    url: &str,
    ledger: &LedgerName,
    key: &str,
    checkpoint: &Checkpoint,
) -> anyhow::Result<Result<(), String>> {
    let mut position = ChainPosition::GENESIS;
    let mut tree = Frontier::EMPTY;
    while tree.size() < checkpoint.head.size {
        let path = ledger_path(
            ledger,
            &format!("/v1/ledger/entries?after={}&limit={MAX_PAGE_SIZE}", position.sequence_number),
        );
        let page = fetch_json(url, Some(key), &path).await?;
        let receipts = page["entries"].as_array().context("the entries page has no entries list")?;
        if receipts.is_empty() {
            return Ok(Err(format!(
                "the server has {} entries, the checkpoint says {}",
                tree.size(),
                checkpoint.head.size
            )));
        }
        for receipt in receipts {
            let entry = match entry_from_receipt(receipt) {
                Ok(entry) => entry,
                Err(error) => return Ok(Err(format!("entry after {}: {error}", position.sequence_number))),
            };
            if entry.sequence_number != position.sequence_number + 1 || entry.prev_hash != position.entry_hash
            {
                return Ok(Err(format!(
                    "entry {} does not follow entry {}",
                    entry.sequence_number, position.sequence_number
                )));
            }
            if tree.size() == checkpoint.head.size {
                break;
            }
            tree.push(entry_leaf_hash(&entry.entry_hash), |_| {});
            position = entry.position();
        }
    }
    if tree.root() != checkpoint.head.root {
        return Ok(Err(format!(
            "the entries give root {} at size {}, the checkpoint signs {}",
            tree.root(),
            tree.size(),
            checkpoint.head.root
        )));
    }
    Ok(Ok(()))
}

/// Prints the evidence and returns exit status 1.
fn inconsistent(reason: &str, served: &[u8], remembered: Option<&str>) -> ExitCode {
    println!("❌ INCONSISTENT: {reason}");
    if let Some(remembered) = remembered {
        println!("--- the checkpoint remembered from an earlier run:\n{remembered}");
    }
    println!("--- the checkpoint the server serves now:\n{}", String::from_utf8_lossy(served));
    ExitCode::from(1)
}
