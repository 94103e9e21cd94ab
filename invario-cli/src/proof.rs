//! `invario proof`: fetch a proof from a running server (or read it from the
//! database) and check it with the core's audit rules, trusting nothing the
//! server computed. Exit 0 proven, 1 refuted (naming what failed), 2 could not run.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use invario_core::audit::{self, AuditError, TrustedTree};
use invario_core::note::VerifierKey;
use invario_core::proof::{MAX_TLOG_PROOF_BYTES, TlogProof};
use invario_core::{Ledger, LedgerCatalog, LedgerStore, TransactionId, TreeHash};
use serde_json::Value;

use crate::cli::ProofCommand;
use crate::database::{Schema, open, with_catalog};

pub(crate) async fn run(url: Option<&str>, command: ProofCommand) -> anyhow::Result<ExitCode> {
    match command {
        ProofCommand::Save { id, out, source } => {
            let id = TransactionId::parse(&id).with_context(|| format!("--id {id:?}"))?;
            let text = match &source.url {
                Some(base) => {
                    crate::remote::fetch_bytes(
                        base,
                        source.key.as_deref(),
                        &crate::remote::ledger_path(
                            &source.ledger,
                            &format!("/v1/transactions/{id}/proof?format=tlog-proof"),
                        ),
                    )
                    .await?
                }
                None => {
                    let backend = open(url, 2, Schema::Current).await?;
                    with_catalog!(backend, |catalog| Ledger::new(catalog.store(&source.ledger))
                        .tlog_proof_for(id)
                        .await
                        .map_err(|error| anyhow!("{error}"))?
                        .to_text()
                        .into_bytes())
                }
            };
            TlogProof::parse(&text).context("the server's answer is not a tlog-proof")?;
            save_new(&out, &text)?;
            println!("Saved the tlog-proof of transaction {id} to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        ProofCommand::Verify { proof, vkey, witness_vkeys, quorum, policy } => {
            let log_key = vkey.as_deref().map(VerifierKey::parse).transpose().context("--vkey")?;
            let witnesses = crate::audit::Witnesses::parse(&witness_vkeys, quorum, policy.as_deref())?;
            let bytes = read_proof(&proof)?;
            let checked = match (&witnesses.policy, &log_key) {
                (Some(policy), log_key) => {
                    audit::check_tlog_proof_under_policy(&bytes, log_key.as_ref(), policy)
                }
                (None, Some(log_key)) => {
                    audit::check_tlog_proof(&bytes, log_key, &witnesses.keys, witnesses.quorum)
                }
                // clap requires --vkey unless --policy is given.
                (None, None) => return Err(anyhow!("--vkey or --policy is required")),
            };
            Ok(match checked {
                Ok(proven) => {
                    let checkpoint = &proven.verified.checkpoint;
                    println!(
                        "✅ Proven: transaction {} is entry {} (leaf {}) of {}, in the checkpoint of size {} with root {} signed by the log{}",
                        proven.entry.transaction.transaction_id,
                        proven.entry.sequence_number,
                        proven.entry.sequence_number - 1,
                        checkpoint.origin,
                        checkpoint.head.size,
                        checkpoint.head.root,
                        match proven.verified.cosigners.as_slice() {
                            [] => String::new(),
                            names => format!(" and cosigned by {}", names.join(", ")),
                        }
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => refuted(&error),
            })
        }
        ProofCommand::Inclusion { id, tree_size, root, source } => {
            let id = TransactionId::parse(&id).with_context(|| format!("--id {id:?}"))?;
            let trusted = trusted(tree_size, root.as_deref(), "--root")?;
            let response = match &source.url {
                Some(base) => {
                    let query = tree_size.map(|size| format!("?tree_size={size}")).unwrap_or_default();
                    crate::remote::fetch_json(
                        base,
                        source.key.as_deref(),
                        &crate::remote::ledger_path(
                            &source.ledger,
                            &format!("/v1/transactions/{id}/proof{query}"),
                        ),
                    )
                    .await?
                }
                None => {
                    let backend = open(url, 2, Schema::Current).await?;
                    with_catalog!(backend, |catalog| inclusion_from_database(
                        Ledger::new(catalog.store(&source.ledger)),
                        id,
                        tree_size
                    )
                    .await?)
                }
            };
            Ok(match audit::check_inclusion(&response, trusted) {
                Ok(proven) => {
                    println!(
                        "✅ Proven: transaction {id} is entry {} (leaf {}) of the tree of size {} with root {}",
                        proven.entry.sequence_number,
                        proven.entry.sequence_number - 1,
                        proven.tree.size,
                        proven.tree.root
                    );
                    warn_if_unpinned(trusted.is_none());
                    ExitCode::SUCCESS
                }
                Err(error) => refuted(&error),
            })
        }
        ProofCommand::Consistency { first, second, first_root, second_root, source } => {
            let trusted_first = trusted(Some(first), first_root.as_deref(), "--first-root")?;
            let trusted_second = trusted(second, second_root.as_deref(), "--second-root")?;
            let response = match &source.url {
                Some(base) => {
                    let query = second.map(|size| format!("&second={size}")).unwrap_or_default();
                    crate::remote::fetch_json(
                        base,
                        source.key.as_deref(),
                        &crate::remote::ledger_path(
                            &source.ledger,
                            &format!("/v1/ledger/proof/consistency?first={first}{query}"),
                        ),
                    )
                    .await?
                }
                None => {
                    let backend = open(url, 2, Schema::Current).await?;
                    with_catalog!(backend, |catalog| Ledger::new(catalog.store(&source.ledger))
                        .consistency_proof(first, second)
                        .await
                        .map_err(|error| anyhow!("{error}"))?
                        .to_json())
                }
            };
            Ok(match audit::check_consistency(&response, trusted_first, trusted_second) {
                Ok((older, newer)) => {
                    println!(
                        "✅ Proven: the tree of size {} (root {}) is a prefix of the tree of size {} (root {})",
                        older.size, older.root, newer.size, newer.root
                    );
                    warn_if_unpinned(trusted_first.is_none() || trusted_second.is_none());
                    ExitCode::SUCCESS
                }
                Err(error) => refuted(&error),
            })
        }
    }
}

/// The proof file's bytes (`-`: standard input), refusing one larger than any proof.
fn read_proof(path: &Path) -> anyhow::Result<Vec<u8>> {
    let limit = MAX_TLOG_PROOF_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .take(limit)
            .read_to_end(&mut bytes)
            .context("reading the proof from standard input")?;
    } else {
        std::fs::File::open(path)
            .and_then(|file| file.take(limit).read_to_end(&mut bytes))
            .with_context(|| format!("--proof {}", path.display()))?;
    }
    Ok(bytes)
}

/// Writes a new file, never replacing one (a receipt kept for years is not overwritten by mistake).
fn save_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("--out {} (an existing file is never overwritten)", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

async fn inclusion_from_database<S: LedgerStore>(
    ledger: Ledger<S>,
    id: TransactionId,
    tree_size: Option<u64>,
) -> anyhow::Result<Value> {
    Ok(ledger.inclusion_proof_for(id, tree_size).await.map_err(|error| anyhow!("{error}"))?.to_json())
}

/// The tree the user pinned with a root flag, if any.
fn trusted(size: Option<u64>, root: Option<&str>, flag: &str) -> anyhow::Result<Option<TrustedTree>> {
    match (size, root) {
        (Some(size), Some(root)) => {
            let root = TreeHash::from_hex(root.trim()).with_context(|| format!("{flag} {root:?}"))?;
            Ok(Some(TrustedTree { size, root }))
        }
        _ => Ok(None),
    }
}

fn warn_if_unpinned(unpinned: bool) {
    if unpinned {
        println!(
            "⚠️  The root came from the server, unsigned: this proves the entry is in the tree the server showed you. \
             Pin a root you trust with --root / --first-root / --second-root."
        );
    }
}

fn refuted(error: &AuditError) -> ExitCode {
    println!("❌ Refuted: {error}");
    ExitCode::from(1)
}
