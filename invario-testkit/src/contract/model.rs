//! The model-based and differential property: random histories of appends,
//! replays, conflicts, bad batches, group commits and a second writer,
//! answered identically by an adapter (from the writer's kept state, ids
//! presumed new, fenced) and by the memory model (looking ids up under the lock).

use std::future::Future;

use invario_core::strategies;
use invario_core::{
    IdempotencyStrategy, IngestError, Ledger, LedgerEntry, LedgerStore, MemoryLedger, ReceiptStatus,
    Transaction,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;

use super::{all_entries, at};

/// One step of the model-based test.
#[derive(Debug, Clone)]
pub enum Operation {
    /// Append new transactions.
    Append(Vec<Transaction>),
    /// Re-send transactions recorded earlier (by index into those recorded so far).
    Replay(Vec<prop::sample::Index>),
    /// Re-send a recorded id with other content, among new transactions.
    Conflict(prop::sample::Index, Vec<Transaction>),
    /// A batch holding one id twice.
    DuplicateInBatch(Vec<Transaction>),
    /// A batch with one invalid item.
    Invalid(Vec<Transaction>, serde_json::Value),
    /// Independent single requests committed together (group commit): new
    /// transactions, re-sent recorded ones, and a recorded id with other content.
    GroupCommit(Vec<prop::sample::Index>, Vec<Transaction>),
    /// New transactions appended by another writer on the same ledger (a
    /// second service): the adapter's next write finds its kept state fenced.
    OtherWriter(Vec<Transaction>),
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        4 => strategies::distinct_transactions(1..8).prop_map(Operation::Append),
        2 => prop::collection::vec(any::<prop::sample::Index>(), 1..4).prop_map(Operation::Replay),
        1 => (any::<prop::sample::Index>(), strategies::distinct_transactions(0..3))
            .prop_map(|(pick, fresh)| Operation::Conflict(pick, fresh)),
        1 => strategies::distinct_transactions(1..4).prop_map(Operation::DuplicateInBatch),
        1 => (strategies::distinct_transactions(0..3), strategies::invalid_transaction_json())
            .prop_map(|(valid, (invalid, _))| Operation::Invalid(valid, invalid)),
        2 => (prop::collection::vec(any::<prop::sample::Index>(), 0..3), strategies::distinct_transactions(0..4))
            .prop_map(|(picks, fresh)| Operation::GroupCommit(picks, fresh)),
        1 => strategies::distinct_transactions(1..3).prop_map(Operation::OtherWriter),
    ]
}

/// What one step answered, compared byte for byte between the two ledgers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// A batch's receipts.
    Receipts(Vec<(LedgerEntry, ReceiptStatus)>),
    /// A batch refused as a whole.
    Refused(String),
    /// A group commit's answer per request.
    Items(Vec<Result<(LedgerEntry, ReceiptStatus), String>>),
}

impl Outcome {
    /// The transactions this step created.
    fn created(self) -> Vec<Transaction> {
        let receipts = match self {
            Outcome::Receipts(receipts) => receipts,
            Outcome::Items(items) => items.into_iter().filter_map(Result::ok).collect(),
            Outcome::Refused(_) => Vec::new(),
        };
        receipts
            .into_iter()
            .filter(|(_, status)| *status == ReceiptStatus::Created)
            .map(|(entry, _)| entry.transaction)
            .collect()
    }
}

async fn apply<S: LedgerStore>(
    ledger: &Ledger<S>,
    operation: &Operation,
    recorded: &[Transaction],
    step: i64,
) -> Outcome {
    if let Operation::GroupCommit(picks, fresh) = operation {
        let mut singles: Vec<Transaction> = fresh.clone();
        for pick in picks {
            if !recorded.is_empty() {
                singles.push(recorded[pick.index(recorded.len())].clone());
            }
        }
        if let Some(pick) = picks.first().filter(|_| !recorded.is_empty()) {
            let mut changed = strategies::to_request_json(&recorded[pick.index(recorded.len())]);
            changed["metadata"] = json!({"tampered": "by client"});
            singles.push(Transaction::from_json(&changed).expect("a valid changed transaction"));
        }
        let answers = ledger.ingest_each(singles, at(step)).await.expect("a group commit");
        return Outcome::Items(
            answers
                .into_iter()
                .map(|answer| answer.map(|r| (r.entry, r.status)).map_err(|problem| format!("{problem:?}")))
                .collect(),
        );
    }
    let items: Vec<serde_json::Value> = match operation {
        Operation::Append(batch) | Operation::OtherWriter(batch) => {
            batch.iter().map(strategies::to_request_json).collect()
        }
        Operation::Replay(picks) if !recorded.is_empty() => {
            let mut seen = std::collections::HashSet::new();
            picks
                .iter()
                .map(|pick| &recorded[pick.index(recorded.len())])
                .filter(|t| seen.insert(t.transaction_id))
                .map(strategies::to_request_json)
                .collect()
        }
        Operation::Replay(_) => vec![],
        Operation::Conflict(pick, fresh) if !recorded.is_empty() => {
            let mut changed = strategies::to_request_json(&recorded[pick.index(recorded.len())]);
            changed["metadata"] = json!({"tampered": "by client"});
            fresh.iter().map(strategies::to_request_json).chain([changed]).collect()
        }
        Operation::Conflict(_, fresh) => fresh.iter().map(strategies::to_request_json).collect(),
        Operation::DuplicateInBatch(batch) => {
            batch.iter().chain(batch.first()).map(strategies::to_request_json).collect()
        }
        Operation::Invalid(valid, invalid) => {
            valid.iter().map(strategies::to_request_json).chain([invalid.clone()]).collect()
        }
        Operation::GroupCommit(..) => unreachable!("answered above"),
    };
    match ledger.ingest_json(&items, at(step)).await {
        Ok(receipts) => Outcome::Receipts(receipts.into_iter().map(|r| (r.entry, r.status)).collect()),
        Err(IngestError::Rejected(rejection)) => Outcome::Refused(format!("{:?}", rejection.items)),
        Err(IngestError::EmptyBatch) => Outcome::Refused("empty".into()),
        Err(other) => panic!("unexpected ingest failure: {other}"),
    }
}

/// Model-based and differential property: random appends, replays, conflicts,
/// bad batches, group commits and appends by a second writer give identical
/// answers and identical chains on the adapter — writing from its kept state
/// under a fence, presuming ids new, falling back on a unique key or a fence
/// (issue 27's fast path) — and on the memory model looking ids up first
/// under the lock (the pessimistic path).
pub fn model_based_agreement<S, G, Fut>(fresh: impl Fn() -> Fut, cases: u32)
where
    S: LedgerStore + Clone,
    Fut: Future<Output = (S, G)>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let result = runner.run(&prop::collection::vec(operation(), 1..12), |operations| {
        runtime.block_on(async {
            let (store, _guard) = fresh().await;
            let other_writer = Ledger::new(store.clone());
            let adapter = Ledger::new(store).with_idempotency(IdempotencyStrategy::Optimistic);
            let model = Ledger::new(MemoryLedger::new()).with_idempotency(IdempotencyStrategy::LookupFirst);
            let mut recorded: Vec<Transaction> = Vec::new();
            for (step, operation) in (1..).zip(&operations) {
                let expected = apply(&model, operation, &recorded, step).await;
                let writer =
                    if matches!(operation, Operation::OtherWriter(_)) { &other_writer } else { &adapter };
                let actual = apply(writer, operation, &recorded, step).await;
                prop_assert_eq!(&actual, &expected, "step {} {:?}", step, operation);
                recorded.extend(expected.created());
            }
            prop_assert_eq!(adapter.head().await.expect("head"), model.head().await.expect("head"));
            prop_assert_eq!(all_entries(&adapter).await, all_entries(&model).await);
            let tree = model.tree_head().await.expect("tree");
            prop_assert_eq!(adapter.tree_head().await.expect("tree"), tree);
            for size in 1..=tree.size {
                for sequence in [1, size / 2 + 1, size] {
                    prop_assert_eq!(
                        adapter.inclusion_proof_at(sequence, Some(size)).await.expect("proof"),
                        model.inclusion_proof_at(sequence, Some(size)).await.expect("proof")
                    );
                }
                prop_assert_eq!(
                    adapter.consistency_proof(size, None).await.expect("proof"),
                    model.consistency_proof(size, None).await.expect("proof")
                );
            }
            let report = adapter.verify_full().await.expect("verify");
            prop_assert!(report.is_intact(), "{}", report);
            Ok(())
        })
    });
    if let Err(failure) = result {
        panic!("the adapter disagrees with the memory model: {failure}");
    }
}
