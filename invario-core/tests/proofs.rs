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
        assert_eq!(head.size, 300);
        assert_eq!(head.root, root_of_leaves(&leaves));
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

#[test]
fn a_client_refuses_every_altered_inclusion_response() {
    use invario_core::audit::{AuditError, TrustedTree, check_inclusion};
    let ledger = ledger_of(40, 7);
    let response = block_on(ledger.inclusion_proof_at(13, Some(33))).unwrap().to_json();
    let proven = check_inclusion(&response, None).unwrap();
    assert_eq!((proven.entry.sequence_number, proven.tree.size), (13, 33));
    let pinned = TrustedTree { size: 33, root: proven.tree.root };
    assert!(check_inclusion(&response, Some(pinned)).is_ok());

    let altered = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut copy = response.clone();
        edit(&mut copy);
        check_inclusion(&copy, Some(pinned)).expect_err("an altered response must be refuted")
    };
    assert!(matches!(
        altered(&|r| r["receipt"]["amount"] = "13.01".into()),
        AuditError::EntryHashMismatch { .. }
    ));
    assert!(matches!(
        altered(&|r| r["receipt"]["metadata"] = serde_json::json!({"x": "y"})),
        AuditError::EntryHashMismatch { .. }
    ));
    assert!(matches!(
        altered(&|r| r["receipt"]["recorded_at"] = "2023-11-14T22:13:33Z".into()),
        AuditError::EntryHashMismatch { .. }
    ));
    assert!(matches!(altered(&|r| r["leaf_index"] = 13.into()), AuditError::WrongLeaf { .. }));
    assert!(matches!(altered(&|r| r["tree_size"] = 34.into()), AuditError::NotTheTrustedTree { .. }));
    assert!(matches!(
        altered(&|r| r["root_hash"] = "00".repeat(32).into()),
        AuditError::NotTheTrustedTree { .. }
    ));
    assert!(matches!(
        altered(&|r| r["inclusion"][0] = r["inclusion"][0].as_str().unwrap()[1..].into()),
        AuditError::Malformed { field, .. } if field == "inclusion[0]"
    ));
    assert!(matches!(
        altered(&|r| {
            r["inclusion"].as_array_mut().unwrap().swap(0, 1);
        }),
        AuditError::Proof(_)
    ));
    assert!(matches!(
        altered(&|r| {
            r["inclusion"].as_array_mut().unwrap().pop();
        }),
        AuditError::Proof(_)
    ));
    assert!(matches!(
        altered(&|r| {
            r["inclusion"].as_array_mut().unwrap().push("11".repeat(32).into());
        }),
        AuditError::Proof(_)
    ));
    assert!(matches!(
        altered(&|r| r["inclusion"] = serde_json::json!(vec!["11".repeat(32); 65])),
        AuditError::Proof(invario_core::ProofError::TooLong(65))
    ));
    assert!(matches!(altered(&|r| r["receipt"]["entry_hash"] = "zz".into()), AuditError::Malformed { .. }));
    assert!(matches!(
        altered(&|r| {
            r.as_object_mut().unwrap().remove("inclusion");
        }),
        AuditError::Malformed { .. }
    ));
    // A forged receipt whose stated hash matches its forged fields still fails: its leaf is not in the tree.
    let mut forged = response.clone();
    forged["receipt"]["amount"] = "13.01".into();
    let AuditError::EntryHashMismatch { recomputed, .. } =
        check_inclusion(&forged, Some(pinned)).unwrap_err()
    else {
        unreachable!()
    };
    forged["receipt"]["entry_hash"] = recomputed.to_hex().into();
    assert!(matches!(check_inclusion(&forged, Some(pinned)), Err(AuditError::Proof(_))));
}

#[test]
fn a_client_refuses_an_altered_consistency_response() {
    use invario_core::audit::{TrustedTree, check_consistency};
    let ledger = ledger_of(40, 7);
    let response = block_on(ledger.consistency_proof(11, Some(37))).unwrap().to_json();
    let (first, second) = check_consistency(&response, None, None).unwrap();
    assert_eq!((first.size, second.size), (11, 37));
    let mut other_root = response.clone();
    other_root["first_root"] = "00".repeat(32).into();
    assert!(check_consistency(&other_root, None, None).is_err());
    let mut other_size = response.clone();
    other_size["first"] = 12.into();
    assert!(check_consistency(&other_size, None, None).is_err());
    let untrusted = TrustedTree { size: 37, root: first.root };
    assert!(check_consistency(&response, None, Some(untrusted)).is_err());
    let mut shortened = response.clone();
    shortened["consistency"].as_array_mut().unwrap().pop();
    assert!(check_consistency(&shortened, None, None).is_err());
}

/// A log key for tests, named as the checkpoint origin.
fn log_key(seed: u8) -> invario_core::note::SignerKey {
    invario_core::note::SignerKey::from_seed(
        "ledger.example.com/test",
        invario_core::note::ALGORITHM_ED25519,
        [seed; 32],
    )
    .unwrap()
}

/// Signs a checkpoint of the ledger as it stands and keeps the served copy,
/// with a witness's cosignature appended as the signing loop does.
fn sign_now(ledger: &Ledger<MemoryLedger>, witness: &invario_core::note::SignerKey) -> String {
    use invario_core::signer::SignOutcome;
    block_on(async {
        let latest = ledger.latest_checkpoint_copy().await.unwrap();
        let SignOutcome::Signed { checkpoint, note } =
            ledger.sign_checkpoint(&log_key(1), latest.as_deref().map(str::as_bytes)).await.unwrap()
        else {
            panic!("the tree grew: a new checkpoint is signed")
        };
        let text = invario_core::note::Note::parse(note.as_bytes()).unwrap().text;
        let cosignature = invario_core::witness::cosign(&text, witness, 1_767_225_600).unwrap();
        let served = format!("{note}{}", cosignature.line());
        ledger.keep_checkpoint_copy(&checkpoint, &served).await.unwrap();
        served
    })
}

#[test]
fn a_tlog_proof_is_made_only_against_a_signed_checkpoint_and_verifies_offline() {
    use invario_core::audit::{AuditError, check_tlog_proof};
    use invario_core::note::{ALGORITHM_COSIGNATURE, SignerKey};
    use invario_core::proof::{TlogProof, TlogProofError};

    let witness = SignerKey::from_seed("witness.example/w1", ALGORITHM_COSIGNATURE, [2; 32]).unwrap();
    let witnesses = [witness.verifier()];
    let ledger = ledger_of(30, 7);
    let id = |n: u128| TransactionId::from_uuid(uuid::Uuid::from_u128(n)).unwrap();
    assert!(matches!(
        block_on(ledger.tlog_proof_for(id(3))),
        Err(ProofRequestError::NotYetSigned { sequence_number: 3, signed_size: None })
    ));
    let served = sign_now(&ledger, &witness);
    block_on(ledger.ingest((31..=40).map(transaction).collect(), at(31))).unwrap();
    let refused = block_on(ledger.tlog_proof_for(id(35))).unwrap_err();
    assert!(
        matches!(refused, ProofRequestError::NotYetSigned { sequence_number: 35, signed_size: Some(30) }),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("the latest covers 30 entries"), "{refused}");

    let proof = block_on(ledger.tlog_proof_for(id(13))).unwrap();
    assert_eq!(proof, block_on(ledger.tlog_proof_at(13)).unwrap());
    assert_eq!(proof.index, 12);
    assert_eq!(proof.checkpoint, served, "the checkpoint as served, cosignatures included");
    let text = proof.to_text();
    let proven = check_tlog_proof(text.as_bytes(), &log_key(1).verifier(), &witnesses, 1).unwrap();
    assert_eq!((proven.entry.sequence_number, proven.verified.checkpoint.head.size), (13, 30));
    assert_eq!(proven.entry.transaction.transaction_id, id(13));
    assert_eq!(proven.verified.cosigners, ["witness.example/w1"]);

    // Any one-bit change anywhere is refused: the receipt in `extra` is re-hashed, never trusted.
    for at in 0..text.len() {
        let mut changed = text.clone().into_bytes();
        changed[at] ^= 0x01;
        assert!(
            check_tlog_proof(&changed, &log_key(1).verifier(), &witnesses, 1).is_err(),
            "a change at byte {at} was accepted"
        );
    }
    // Another log key, a missing cosignature, a receipt of another entry, no receipt at all.
    assert!(matches!(
        check_tlog_proof(text.as_bytes(), &log_key(9).verifier(), &witnesses, 1),
        Err(AuditError::TlogProof(TlogProofError::Checkpoint(_)))
    ));
    let uncosigned = TlogProof {
        checkpoint: served[..served.rfind("\u{2014} witness").unwrap()].to_owned(),
        ..proof.clone()
    };
    assert!(matches!(
        check_tlog_proof(uncosigned.to_text().as_bytes(), &log_key(1).verifier(), &witnesses, 1),
        Err(AuditError::TlogProof(TlogProofError::Witnesses(_)))
    ));
    let other_entry = block_on(ledger.tlog_proof_for(id(14))).unwrap();
    let swapped = TlogProof { extra: other_entry.extra.clone(), ..proof.clone() };
    assert!(matches!(
        check_tlog_proof(swapped.to_text().as_bytes(), &log_key(1).verifier(), &witnesses, 1),
        Err(AuditError::WrongLeaf { leaf_index: 12, sequence_number: 14 })
    ));
    // The receipt of entry 14 at its own index, with the path of entry 13.
    let moved = TlogProof { index: 13, ..swapped.clone() };
    assert!(check_tlog_proof(moved.to_text().as_bytes(), &log_key(1).verifier(), &witnesses, 1).is_err());
    for extra in [None, Some(b"[1]".to_vec()), Some(b"not json".to_vec())] {
        let bare = TlogProof { extra, ..proof.clone() };
        assert!(matches!(
            check_tlog_proof(bare.to_text().as_bytes(), &log_key(1).verifier(), &witnesses, 1),
            Err(AuditError::Malformed { field, .. }) if field == "extra"
        ));
    }
    // The next checkpoint covers the newer entries.
    sign_now(&ledger, &witness);
    let later = block_on(ledger.tlog_proof_for(id(35))).unwrap();
    let proven = check_tlog_proof(later.to_text().as_bytes(), &log_key(1).verifier(), &witnesses, 1).unwrap();
    assert_eq!(proven.verified.checkpoint.head.size, 40);
    assert!(matches!(
        block_on(ledger.tlog_proof_at(41)),
        Err(ProofRequestError::OutOfRange { parameter: "sequence_number", .. })
    ));
}
