//! The tree as the `Ledger` service serves it: heads, proofs at every past
//! size (each verifies with the core's verifiers and the reference root), range
//! errors naming the parameter, and the backfill of a ledger without a tree.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use futures_executor::block_on;
use invario_core::merkle::{entry_leaf_hash, root_of_leaves};
use invario_core::{
    Ledger, MemoryLedger, ProofRequestError, Timestamp, Transaction, TransactionId, verify_consistency,
    verify_inclusion,
};

fn at(second: i64) -> Timestamp {
    Timestamp::from_unix_micros(1_700_000_000_000_000 + second * 1_000_000).unwrap()
}

fn transaction(n: u128) -> Transaction {
    Transaction::from_json(&serde_json::json!({
        "transaction_id": uuid::Uuid::from_u128(n).to_string(), "amount": format!("{n}.00"), "currency": "EUR",
    }))
    .unwrap()
}

/// A ledger of `total` entries appended in batches of `batch`.
fn ledger_of(total: u128, batch: u128) -> Ledger<MemoryLedger> {
    let ledger = Ledger::new(MemoryLedger::new());
    block_on(async {
        let mut n = 1;
        while n <= total {
            let last = (n + batch - 1).min(total);
            ledger.ingest((n..=last).map(transaction).collect(), at(n as i64)).await.unwrap();
            n = last + 1;
        }
    });
    ledger
}

fn leaves(ledger: &Ledger<MemoryLedger>) -> Vec<invario_core::TreeHash> {
    block_on(ledger.entries_after(0, 1_000))
        .unwrap()
        .entries
        .iter()
        .map(|e| entry_leaf_hash(&e.entry_hash))
        .collect()
}

#[test]
fn every_served_proof_verifies_against_the_reference_root_at_every_size() {
    let ledger = ledger_of(300, 37);
    let leaves = leaves(&ledger);
    block_on(async {
        let head = ledger.tree_head().await.unwrap();
        assert_eq!(head.tree_size, 300);
        assert_eq!(head.root_hash, root_of_leaves(&leaves));
        for size in [1u64, 2, 3, 37, 255, 256, 257, 299, 300] {
            let root = root_of_leaves(&leaves[..size as usize]);
            for sequence in [1, size / 2 + 1, size] {
                let proof = ledger.inclusion_proof_at(sequence, Some(size)).await.unwrap();
                assert_eq!((proof.leaf_index, proof.tree_size, proof.root_hash), (sequence - 1, size, root));
                let leaf = entry_leaf_hash(&proof.entry.entry_hash);
                assert_eq!(verify_inclusion(sequence - 1, size, &leaf, &proof.hashes, &root), Ok(()));
                let by_id =
                    ledger.inclusion_proof_for(proof.entry.transaction_id(), Some(size)).await.unwrap();
                assert_eq!(by_id, proof);
            }
            for first in [0, 1, size / 2, size] {
                let proof = ledger.consistency_proof(first, Some(size)).await.unwrap();
                let first_root = root_of_leaves(&leaves[..first as usize]);
                assert_eq!((proof.first_root, proof.second_root), (first_root, root));
                assert_eq!(verify_consistency(first, size, &first_root, &root, &proof.hashes), Ok(()));
            }
        }
        let current = ledger.inclusion_proof_at(7, None).await.unwrap();
        assert_eq!(current.tree_size, 300);
        assert_eq!(ledger.consistency_proof(100, None).await.unwrap().second, 300);
    });
}

#[test]
fn sizes_and_indexes_outside_the_tree_are_refused_naming_the_parameter() {
    let ledger = ledger_of(10, 10);
    block_on(async {
        for (result, parameter, message) in [
            (
                ledger.inclusion_proof_at(1, Some(11)).await,
                "tree_size",
                "tree_size must be between 1 and 10 (got 11)",
            ),
            (
                ledger.inclusion_proof_at(1, Some(0)).await,
                "tree_size",
                "tree_size must be between 1 and 10 (got 0)",
            ),
            (
                ledger.inclusion_proof_at(0, None).await,
                "sequence_number",
                "sequence_number must be between 1 and 10 (got 0)",
            ),
            (
                ledger.inclusion_proof_at(6, Some(5)).await,
                "sequence_number",
                "sequence_number must be between 1 and 5 (got 6)",
            ),
            (
                ledger.inclusion_proof_for(transaction(8).transaction_id, Some(7)).await,
                "tree_size",
                "tree_size must be between 8 and 10 (got 7)",
            ),
        ] {
            let Err(ProofRequestError::OutOfRange { parameter: named, message: said }) = result else {
                panic!("expected a refusal naming {parameter}, got {result:?}")
            };
            assert_eq!((named, said.as_str()), (parameter, message));
        }
        for (result, parameter) in [
            (ledger.consistency_proof(3, Some(11)).await, "second"),
            (ledger.consistency_proof(6, Some(5)).await, "first"),
            (ledger.consistency_proof(11, None).await, "first"),
        ] {
            assert!(
                matches!(result, Err(ProofRequestError::OutOfRange { parameter: named, .. }) if named == parameter)
            );
        }
        let unknown = TransactionId::parse("00000000-0000-4000-8000-0000000000ff").unwrap();
        assert!(matches!(
            ledger.inclusion_proof_for(unknown, None).await,
            Err(ProofRequestError::NotFound(_))
        ));
        let empty = Ledger::new(MemoryLedger::new());
        assert!(matches!(empty.inclusion_proof_at(1, None).await, Err(ProofRequestError::OutOfRange { .. })));
        assert_eq!(empty.consistency_proof(0, None).await.unwrap().hashes, vec![]);
    });
}

#[test]
fn a_ledger_without_a_tree_is_built_resumably_and_verifies() {
    let ledger = ledger_of(25_000, 5_000);
    let expected = block_on(ledger.tree_head()).unwrap();
    ledger.store().forget_tree();
    block_on(async {
        let report = ledger.verify_full().await.unwrap();
        assert_eq!(report.first_break.unwrap().kind(), "tree_mismatch", "a tree behind the chain is a break");
        let refused = Ledger::new(ledger.store().clone()).ingest(vec![transaction(99_999)], at(99_999)).await;
        assert!(
            matches!(
                refused,
                Err(invario_core::IngestError::Tree(invario_core::TreeError::Behind {
                    tree_size: 0,
                    chain_size: 25_000
                }))
            ),
            "nothing is appended on top of a tree that is behind: {refused:?}"
        );

        let fresh = Ledger::new(ledger.store().clone());
        let mut seen = Vec::new();
        let added = fresh.build_tree(&mut |built, total| seen.push((built, total))).await.unwrap();
        assert_eq!(added, 25_000);
        assert_eq!(seen, vec![(0, 25_000), (10_000, 25_000), (20_000, 25_000), (25_000, 25_000)]);
        assert_eq!(fresh.tree_head().await.unwrap(), expected);
        assert!(fresh.verify_full().await.unwrap().is_intact());
        assert_eq!(fresh.build_tree(&mut |_, _| {}).await.unwrap(), 0, "a second run has nothing to do");
        fresh.ingest(vec![transaction(99_999)], at(99_999)).await.unwrap();
        assert!(fresh.verify_full().await.unwrap().is_intact());
    });
}
