//! The signer checks before it signs: a checkpoint is signed only for a tree
//! that extends the latest checkpoint kept outside the database; a rewritten,
//! truncated or forked history is refused and quarantines the ledger.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use futures_executor::block_on;
use invario_core::checkpoint::Checkpoint;
use invario_core::ledger::checkpoints::{SignError, SignOutcome};
use invario_core::note::{ALGORITHM_ED25519, SignerKey};
use invario_core::{IngestError, Ledger, MemoryLedger, Timestamp, Transaction};

const ORIGIN: &str = "ledger.example.com/payments";

fn key() -> SignerKey {
    SignerKey::from_seed(ORIGIN, ALGORITHM_ED25519, [42; 32]).unwrap()
}

fn at(second: i64) -> Timestamp {
    Timestamp::from_unix_micros(1_700_000_000_000_000 + second * 1_000_000).unwrap()
}

fn append(ledger: &Ledger<MemoryLedger>, ids: std::ops::RangeInclusive<u128>, amount: &str) {
    let batch = ids
        .map(|n| {
            Transaction::from_json(&serde_json::json!({
                "transaction_id": uuid::Uuid::from_u128(n).to_string(), "amount": amount, "currency": "EUR",
            }))
            .unwrap()
        })
        .collect();
    block_on(ledger.ingest(batch, at(1))).unwrap();
}

fn signed(outcome: SignOutcome) -> (Checkpoint, String) {
    match outcome {
        SignOutcome::Signed { checkpoint, note } => (checkpoint, note),
        SignOutcome::Unchanged(checkpoint) => {
            panic!("expected a new signature, the tree stayed at {}", checkpoint.head.size)
        }
    }
}

#[test]
fn a_growing_ledger_is_signed_and_an_unchanged_one_is_not_signed_again() {
    let ledger = Ledger::new(MemoryLedger::new());
    let (empty, first_note) = signed(block_on(ledger.sign_checkpoint(&key(), None)).unwrap());
    assert_eq!(empty.head.size, 0);
    append(&ledger, 1..=5, "1.00");
    let (five, note) = signed(block_on(ledger.sign_checkpoint(&key(), Some(first_note.as_bytes()))).unwrap());
    assert_eq!((five.head.size, five.head.root), (5, block_on(ledger.tree_head()).unwrap().root));
    let (verified, _) = Checkpoint::verify(note.as_bytes(), &key().verifier()).unwrap();
    assert_eq!(verified, five);
    assert_eq!(
        block_on(ledger.sign_checkpoint(&key(), Some(note.as_bytes()))).unwrap(),
        SignOutcome::Unchanged(five)
    );
    append(&ledger, 6..=300, "2.00");
    let (grown, _) = signed(block_on(ledger.sign_checkpoint(&key(), Some(note.as_bytes()))).unwrap());
    assert_eq!(grown.head.size, 300);
}

#[test]
fn a_rewritten_or_truncated_history_is_refused_and_quarantines_the_ledger() {
    let original = Ledger::new(MemoryLedger::new());
    append(&original, 1..=10, "1.00");
    let (_, note) = signed(block_on(original.sign_checkpoint(&key(), None)).unwrap());

    // The same ids with another amount: a history rewritten from entry 1, tree and all.
    let rewritten = Ledger::new(MemoryLedger::new());
    append(&rewritten, 1..=12, "9.99");
    let refused = block_on(rewritten.sign_checkpoint(&key(), Some(note.as_bytes()))).unwrap_err();
    let SignError::Inconsistent(found) = refused else { panic!("expected an inconsistency, got {refused}") };
    assert_eq!(found.kind(), "checkpoint_inconsistent");
    assert!(found.to_string().contains("signed checkpoint at size 10"), "{found}");
    assert_eq!(rewritten.integrity().broken, Some(found.clone()), "the ledger is quarantined");
    let write = block_on(rewritten.ingest(vec![], at(2)));
    assert!(matches!(write, Err(IngestError::EmptyBatch | IngestError::Quarantined(_))));
    assert!(matches!(
        block_on(rewritten.sign_checkpoint(&key(), Some(note.as_bytes()))),
        Err(SignError::Quarantined(_))
    ));

    // Truncated: the first 7 of the same entries.
    let truncated = Ledger::new(MemoryLedger::new());
    append(&truncated, 1..=7, "1.00");
    assert!(matches!(
        block_on(truncated.sign_checkpoint(&key(), Some(note.as_bytes()))),
        Err(SignError::Inconsistent(_))
    ));

    // Equal size, other content: a fork.
    let forked = Ledger::new(MemoryLedger::new());
    append(&forked, 1..=10, "1.01");
    assert!(matches!(
        block_on(forked.sign_checkpoint(&key(), Some(note.as_bytes()))),
        Err(SignError::Inconsistent(_))
    ));

    // The honest prefix extended is fine.
    let extended = Ledger::new(MemoryLedger::new());
    append(&extended, 1..=10, "1.00");
    append(&extended, 11..=20, "3.00");
    assert!(block_on(extended.sign_checkpoint(&key(), Some(note.as_bytes()))).is_ok());
}

#[test]
fn a_sink_checkpoint_from_another_key_or_origin_is_not_trusted() {
    let ledger = Ledger::new(MemoryLedger::new());
    append(&ledger, 1..=3, "1.00");
    let stranger = SignerKey::from_seed(ORIGIN, ALGORITHM_ED25519, [7; 32]).unwrap();
    let (_, foreign) = signed(block_on(ledger.sign_checkpoint(&stranger, None)).unwrap());
    assert!(matches!(
        block_on(ledger.sign_checkpoint(&key(), Some(foreign.as_bytes()))),
        Err(SignError::Sink(_))
    ));
    let mut damaged = foreign.into_bytes();
    damaged[5] ^= 1;
    assert!(matches!(block_on(ledger.sign_checkpoint(&stranger, Some(&damaged))), Err(SignError::Sink(_))));
    assert!(
        ledger.integrity().broken.is_none(),
        "an untrusted sink file is the operator's problem, not a ledger break"
    );
}

#[test]
fn a_full_verification_checks_the_ledger_against_signed_tree_heads() {
    use invario_core::{Expectations, TreeHead};
    let ledger = Ledger::new(MemoryLedger::new());
    let mut heads = vec![block_on(ledger.tree_head()).unwrap()];
    for (first, last) in [(1, 3), (4, 4), (5, 260), (261, 300)] {
        append(&ledger, first..=last, "1.00");
        heads.push(block_on(ledger.tree_head()).unwrap());
    }
    let expect = Expectations { digest: None, signed_roots: heads.clone() };
    assert!(block_on(ledger.verify_full_with(&expect, &mut |_| {})).unwrap().is_intact());

    // The same ids with other amounts: every signed head after 0 is missed.
    let rewritten = Ledger::new(MemoryLedger::new());
    append(&rewritten, 1..=300, "2.00");
    let report = block_on(rewritten.verify_full_with(&expect, &mut |_| {})).unwrap();
    let found = report.first_break.unwrap();
    assert_eq!((found.kind(), found.sequence()), ("checkpoint_inconsistent", Some(3)));

    // A shorter ledger cannot pass through a head beyond its end.
    let truncated = Ledger::new(MemoryLedger::new());
    append(&truncated, 1..=3, "1.00");
    append(&truncated, 4..=4, "1.00");
    let report = block_on(truncated.verify_full_with(&expect, &mut |_| {})).unwrap();
    let found = report.first_break.unwrap();
    assert_eq!((found.kind(), found.sequence()), ("checkpoint_inconsistent", Some(260)));

    // A signed empty tree with another root is refused too.
    let bogus = Expectations { digest: None, signed_roots: vec![TreeHead { size: 0, root: heads[1].root }] };
    assert!(!block_on(ledger.verify_full_with(&bogus, &mut |_| {})).unwrap().is_intact());
}
