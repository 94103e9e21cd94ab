//! `invario proof`: fetch a proof from a running server (or read it from the
//! database) and check it with the core's audit rules, trusting nothing the
//! server computed. Exit 0 proven, 1 refuted (naming what failed), 2 could not run.

use std::process::ExitCode;

use anyhow::{Context, anyhow};
use invario_core::audit::{self, AuditError, TrustedTree};
use invario_core::{Ledger, LedgerCatalog, LedgerStore, TransactionId, TreeHash};
use serde_json::Value;

use crate::cli::ProofCommand;
use crate::database::{Schema, open, with_catalog};

pub(crate) async fn run(url: Option<&str>, command: ProofCommand) -> anyhow::Result<ExitCode> {
    match command {
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
