//! The golden cosignature, quorums, and every answer of `add-checkpoint`.

use sha2::{Digest, Sha256};

use super::*;
use crate::merkle::{LeafHashes, consistency_proof, leaf_hash, root_of_leaves};
use crate::note::ALGORITHM_ED25519;

const ORIGIN: &str = "ledger.example.com/invario/prod";
const WITNESS: &str = "witness.auditor.example/w1";
const GOLDEN: &str = "ledger.example.com/invario/prod\n7\n3bib5AOAnjJXUNPSY814kpwpQreUKjS3fhIslZSnTIw=\n\n\
\u{2014} ledger.example.com/invario/prod 2aQvKQy0Q1NUO+Yzi1Qljbd1iZ7PMSARWT67aqOetowLNm1HAqGToTZklW3pEPM9VfyjDoYINeQVdnCCWZN9liJ7tA4=\n\
\u{2014} witness.auditor.example/w1 4tZdxAAAAABpVbkA4XSwN4mlLKlw6xmQvdvZwwJ5zCOEbms4gVhpMf8wusPkfTu/KaImJLCnA4xmfYURREYxNiJDLNTmdQHZvP1IBw==\n";

fn log_key() -> SignerKey {
    let seed: [u8; 32] = Sha256::digest(b"invario example key - DO NOT USE").into();
    SignerKey::from_seed(ORIGIN, ALGORITHM_ED25519, seed).unwrap()
}

fn witness_key() -> SignerKey {
    let seed: [u8; 32] = Sha256::digest(b"invario example witness - DO NOT USE").into();
    SignerKey::from_seed(WITNESS, ALGORITHM_COSIGNATURE, seed).unwrap()
}

fn leaves(count: usize) -> Vec<TreeHash> {
    (0..count as u64).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

fn signed(size: usize, leaves: &[TreeHash]) -> Vec<u8> {
    let checkpoint = Checkpoint {
        origin: ORIGIN.into(),
        head: TreeHead { size: size as u64, root: root_of_leaves(&leaves[..size]) },
    };
    checkpoint.sign(&log_key()).unwrap().to_text().into_bytes()
}

#[test]
fn the_golden_cosignature_is_reproduced_and_checked() {
    let mut note = Note::parse(GOLDEN.as_bytes()).unwrap();
    let golden_line = note.signatures.pop().unwrap();
    let line = cosign(&note.text, &witness_key(), 1_767_225_600).unwrap();
    assert_eq!(line, golden_line, "byte for byte");
    assert!(cosign(&note.text, &log_key(), 1).is_err(), "a log key is not a witness key");
    let golden = Note::parse(GOLDEN.as_bytes()).unwrap();
    let trusted = [witness_key().verifier()];
    let cosigners = verified_cosigners(&golden, &trusted).unwrap();
    assert_eq!(cosigners.len(), 1);
    assert_eq!(cosigners[0].1, 1_767_225_600);
}

#[test]
fn a_quorum_counts_distinct_trusted_witnesses_and_a_bad_line_rejects() {
    let golden = Note::parse(GOLDEN.as_bytes()).unwrap();
    let witness = witness_key().verifier();
    assert_eq!(check_quorum(&golden, std::slice::from_ref(&witness), 1), Ok(1));
    assert_eq!(
        check_quorum(&golden, std::slice::from_ref(&witness), 2),
        Err(CosignatureError::NoQuorum { got: 1, quorum: 2 })
    );
    let stranger = SignerKey::from_seed("other.witness/w2", ALGORITHM_COSIGNATURE, [5; 32]).unwrap();
    assert_eq!(
        check_quorum(&golden, &[stranger.verifier()], 1),
        Err(CosignatureError::NoQuorum { got: 0, quorum: 1 })
    );
    let mut twice = golden.clone();
    twice.signatures.push(twice.signatures[1].clone());
    assert_eq!(
        check_quorum(&twice, std::slice::from_ref(&witness), 2),
        Err(CosignatureError::NoQuorum { got: 1, quorum: 2 }),
        "one witness counts once"
    );
    // A cosignature moved to another time no longer verifies.
    let mut retimed = golden.clone();
    retimed.signatures[1].payload[7] ^= 1;
    assert!(matches!(
        check_quorum(&retimed, std::slice::from_ref(&witness), 1),
        Err(CosignatureError::BadCosignature(_))
    ));
    let mut truncated = golden;
    truncated.signatures[1].payload.truncate(40);
    assert!(matches!(check_quorum(&truncated, &[witness], 1), Err(CosignatureError::BadCosignature(_))));
}

#[test]
fn add_checkpoint_follows_the_tlog_witness_protocol() {
    let all = leaves(300);
    let logs = [log_key().verifier()];
    let stored = |state: Option<TreeHead>| move |_: &str| state;
    let request = |old: usize, new: usize| AddCheckpoint {
        old_size: old as u64,
        proof: consistency_proof(&LeafHashes(&all), old as u64, new as u64).unwrap(),
        note: signed(new, &all),
    };
    // First submission (old 0, no proof), then growth with a proof.
    let first = add_checkpoint(&request(0, 10), &logs, stored(None), &witness_key(), 100).unwrap();
    assert_eq!(first.state, TreeHead { size: 10, root: root_of_leaves(&all[..10]) });
    assert!(first.line.starts_with("\u{2014} witness.auditor.example/w1 "));
    let grown =
        add_checkpoint(&request(10, 257), &logs, stored(Some(first.state)), &witness_key(), 101).unwrap();
    assert_eq!(grown.state.size, 257);
    // The body round-trips.
    assert_eq!(AddCheckpoint::parse(&request(10, 257).to_body()).unwrap(), request(10, 257));
    // A stale old: 409 with the size the witness knows.
    let stale = add_checkpoint(&request(0, 257), &logs, stored(Some(first.state)), &witness_key(), 102);
    assert_eq!(stale.unwrap_err(), WitnessRefusal::Conflict(10));
    // A bad proof: 422.
    let mut bad = request(10, 257);
    bad.proof[0].0[0] ^= 1;
    assert_eq!(
        add_checkpoint(&bad, &logs, stored(Some(first.state)), &witness_key(), 103).unwrap_err().status(),
        422
    );
    // The same size with another root: refused (the evidence is the note itself).
    let forged_leaves: Vec<TreeHash> = all.iter().rev().copied().collect();
    let fork = AddCheckpoint { old_size: 10, proof: vec![], note: signed(10, &forged_leaves) };
    assert_eq!(
        add_checkpoint(&fork, &logs, stored(Some(first.state)), &witness_key(), 104).unwrap_err().status(),
        422
    );
    // Unknown origin: 404; not signed by the trusted key: 403; old beyond the size: 400.
    let elsewhere = SignerKey::from_seed("elsewhere.example/log", ALGORITHM_ED25519, [3; 32]).unwrap();
    let foreign =
        Checkpoint { origin: "elsewhere.example/log".into(), head: TreeHead { size: 1, root: all[0] } }
            .sign(&elsewhere)
            .unwrap();
    let unknown = AddCheckpoint { old_size: 0, proof: vec![], note: foreign.to_text().into_bytes() };
    assert_eq!(add_checkpoint(&unknown, &logs, stored(None), &witness_key(), 105).unwrap_err().status(), 404);
    let impostor = SignerKey::from_seed(ORIGIN, ALGORITHM_ED25519, [4; 32]).unwrap();
    let forged =
        Checkpoint { origin: ORIGIN.into(), head: TreeHead { size: 10, root: root_of_leaves(&all[..10]) } }
            .sign(&impostor)
            .unwrap();
    let untrusted = AddCheckpoint { old_size: 0, proof: vec![], note: forged.to_text().into_bytes() };
    assert_eq!(
        add_checkpoint(&untrusted, &logs, stored(None), &witness_key(), 106).unwrap_err().status(),
        403
    );
    let beyond = AddCheckpoint { old_size: 11, proof: vec![], note: signed(10, &all) };
    assert_eq!(add_checkpoint(&beyond, &logs, stored(None), &witness_key(), 107).unwrap_err().status(), 400);
    for body in [&b"old 01\n\nx"[..], b"old 1\nnot-base64\n\nx", b"older 1\n\nx", b"old 1\n"] {
        assert_eq!(
            AddCheckpoint::parse(body).unwrap_err().status(),
            400,
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
}
