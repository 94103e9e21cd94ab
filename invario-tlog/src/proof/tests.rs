//! tlog-proof: every proof of a small tree verifies, and every way a proof can
//! be wrong — a flipped byte anywhere, a truncated or reordered path, another
//! index, a missing cosignature, an oversized or malformed line — is refused.

use proptest::prelude::*;
use sha2::{Digest, Sha256};

use super::*;
use crate::merkle::TreeHead;
use crate::merkle::{LeafHashes, inclusion_proof, leaf_hash, root_of_leaves};
use crate::note::{ALGORITHM_COSIGNATURE, ALGORITHM_ED25519, SignerKey};
use crate::witness::cosign;

const ORIGIN: &str = "ledger.example.com/invario/prod";

fn seed(phrase: &str) -> [u8; 32] {
    Sha256::digest(phrase.as_bytes()).into()
}

fn log_key() -> SignerKey {
    SignerKey::from_seed(ORIGIN, ALGORITHM_ED25519, seed("proof test log - DO NOT USE")).unwrap()
}

fn witness_key(name: &str) -> SignerKey {
    SignerKey::from_seed(name, ALGORITHM_COSIGNATURE, seed(name)).unwrap()
}

fn leaves(count: u64) -> Vec<TreeHash> {
    (0..count).map(|n| leaf_hash(&n.to_be_bytes())).collect()
}

/// A proof for leaf `index` of a tree of `size`, its checkpoint cosigned by `witnesses`.
fn proof(index: u64, size: u64, witnesses: &[SignerKey]) -> (TlogProof, TreeHash) {
    let leaves = leaves(size);
    let checkpoint =
        Checkpoint { origin: ORIGIN.into(), head: TreeHead { size, root: root_of_leaves(&leaves) } };
    let mut note = checkpoint.sign(&log_key()).unwrap();
    for witness in witnesses {
        note.signatures.push(cosign(&note.text, witness, 1_767_225_600).unwrap());
    }
    let path = inclusion_proof(&LeafHashes(&leaves), index, size).unwrap();
    let proof = TlogProof {
        extra: Some(b"{\"what\":\"the leaf's content\"}".to_vec()),
        index,
        inclusion: path,
        checkpoint: note.to_text(),
    };
    (proof, leaves[index as usize])
}

fn verify_text(
    text: &[u8],
    leaf: &TreeHash,
    witnesses: &[SignerKey],
    quorum: usize,
) -> Result<VerifiedTlogProof, TlogProofError> {
    let trusted: Vec<_> = witnesses.iter().map(SignerKey::verifier).collect();
    TlogProof::parse(text)?.verify(leaf, &log_key().verifier(), &trusted, quorum)
}

#[test]
fn a_proof_reads_back_as_written_and_verifies_with_its_quorum() {
    let witnesses = [witness_key("w1.example"), witness_key("w2.example")];
    let (proof, leaf) = proof(5, 11, &witnesses);
    let text = proof.to_text();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra eyJ3aGF0Ijoi"), "{text}");
    assert!(text.contains("\nindex 5\n"), "{text}");
    assert_eq!(TlogProof::parse(text.as_bytes()).unwrap(), proof);
    let verified = verify_text(text.as_bytes(), &leaf, &witnesses, 2).unwrap();
    assert_eq!(verified.checkpoint.head.size, 11);
    assert_eq!(verified.cosigners, ["w1.example", "w2.example"]);
}

#[test]
fn the_spec_layout_without_extra_and_with_an_empty_path_is_read() {
    let (mut proof, leaf) = proof(0, 1, &[]);
    proof.extra = None;
    let text = proof.to_text();
    assert!(
        text.starts_with("c2sp.org/tlog-proof@v1\nindex 0\n\nledger.example.com/invario/prod\n1\n"),
        "{text}"
    );
    verify_text(text.as_bytes(), &leaf, &[], 0).unwrap();
}

#[test]
fn every_one_byte_change_is_refused() {
    let witnesses = [witness_key("w1.example")];
    let (proof, leaf) = proof(6, 9, &witnesses);
    let text = proof.to_text().into_bytes();
    for at in 0..text.len() {
        // The extra data is the verifier's to check (it is not authenticated here).
        let extra_line = text.iter().position(|&b| b == b'\n').unwrap() + 1;
        let index_line = extra_line + text[extra_line..].iter().position(|&b| b == b'\n').unwrap() + 1;
        if (extra_line..index_line).contains(&at) {
            continue;
        }
        let mut changed = text.clone();
        changed[at] ^= 0x01;
        assert!(
            verify_text(&changed, &leaf, &witnesses, 1).is_err(),
            "a change at byte {at} ({:?}) was accepted",
            text[at] as char
        );
    }
}

#[test]
fn a_truncated_reordered_or_padded_path_another_index_or_leaf_is_refused() {
    let (proof, leaf) = proof(6, 13, &[]);
    let refused = |proof: &TlogProof, leaf: &TreeHash| verify_text(proof.to_text().as_bytes(), leaf, &[], 0);
    let mut truncated = proof.clone();
    truncated.inclusion.pop();
    assert!(matches!(refused(&truncated, &leaf), Err(TlogProofError::Inclusion(_))));
    let mut reordered = proof.clone();
    reordered.inclusion.swap(0, 1);
    assert!(matches!(refused(&reordered, &leaf), Err(TlogProofError::Inclusion(_))));
    let mut padded = proof.clone();
    padded.inclusion.push(leaf);
    assert!(matches!(refused(&padded, &leaf), Err(TlogProofError::Inclusion(_))));
    let mut moved = proof.clone();
    moved.index = 7;
    assert!(matches!(refused(&moved, &leaf), Err(TlogProofError::Inclusion(_))));
    let mut outside = proof.clone();
    outside.index = 13;
    assert!(matches!(refused(&outside, &leaf), Err(TlogProofError::Inclusion(_))));
    assert!(matches!(refused(&proof, &leaf_hash(b"another")), Err(TlogProofError::Inclusion(_))));
    refused(&proof, &leaf).unwrap();
}

#[test]
fn a_missing_or_forged_cosignature_and_another_log_are_refused() {
    let (w1, w2) = (witness_key("w1.example"), witness_key("w2.example"));
    let (proof, leaf) = proof(2, 5, std::slice::from_ref(&w1));
    let text = proof.to_text();
    assert!(matches!(
        verify_text(text.as_bytes(), &leaf, &[w1.clone(), w2.clone()], 2),
        Err(TlogProofError::Witnesses(CosignatureError::NoQuorum { got: 1, quorum: 2 }))
    ));
    // A line claiming w2 that w2 never signed.
    let forged = text.replacen("\u{2014} w1.example ", "\u{2014} w2.example ", 1);
    assert!(verify_text(forged.as_bytes(), &leaf, &[w2], 1).is_err());
    let other_log = SignerKey::from_seed(ORIGIN, ALGORITHM_ED25519, seed("another log")).unwrap();
    let refused = TlogProof::parse(text.as_bytes()).unwrap().verify(&leaf, &other_log.verifier(), &[], 0);
    assert!(matches!(refused, Err(TlogProofError::Checkpoint(_))));
}

#[test]
fn malformed_and_oversized_proofs_are_refused_naming_the_part() {
    let (proof, _) = proof(3, 8, &[]);
    let text = proof.to_text();
    let part = |text: &str| match TlogProof::parse(text.as_bytes()) {
        Err(TlogProofError::Format { part, .. }) => part,
        other => panic!("{other:?} for {text:?}"),
    };
    assert_eq!(part(&text.replace("tlog-proof@v1", "tlog-proof@v2")), "header");
    assert_eq!(part(&text.replace("\nindex 3\n", "\nindex 03\n")), "index line");
    assert_eq!(part(&text.replace("\nindex 3\n", "\nindex -3\n")), "index line");
    assert_eq!(part(&text.replace("\nindex 3\n", "\n")), "index line");
    assert_eq!(part(&text.replace("\nextra ", "\nextra\t")), "extra line");
    assert_eq!(part(&text.replace("\nextra ", "\nextra !")), "extra line");
    let first_hash = text.lines().nth(3).unwrap();
    assert_eq!(
        part(&text.replace(first_hash, &first_hash[..first_hash.len() - 4])),
        "inclusion proof line 1"
    );
    assert_eq!(part(&text.replace(first_hash, &format!("{first_hash}AAAA"))), "inclusion proof line 1");
    assert_eq!(part(text.split("\n\n").next().unwrap()), "proof");
    assert_eq!(part(&format!("{}\n\n", text.split("\n\n").next().unwrap())), "checkpoint");
    let long_path: String = std::iter::repeat_n(format!("{first_hash}\n"), MAX_PROOF_HASHES + 1).collect();
    let too_long = text.replacen(&format!("{first_hash}\n"), &long_path, 1);
    assert_eq!(part(&too_long), "inclusion proof");
    let huge = format!("{text}{}", "x".repeat(MAX_TLOG_PROOF_BYTES));
    assert_eq!(part(&huge), "proof");
    let big_extra = TlogProof { extra: Some(vec![7; MAX_EXTRA_BYTES + 1]), ..proof.clone() };
    assert_eq!(part(&big_extra.to_text()), "extra line");
    assert!(matches!(TlogProof::parse(&[0xff, 0xfe]), Err(TlogProofError::Format { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_leaf_of_every_small_tree_has_a_proof_that_verifies_and_round_trips(
        size in 1u64..40,
        pick in any::<prop::sample::Index>(),
        extra in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
    ) {
        let index = pick.index(size as usize) as u64;
        let (mut proof, leaf) = proof(index, size, &[]);
        proof.extra = extra;
        let text = proof.to_text();
        prop_assert_eq!(TlogProof::parse(text.as_bytes()).unwrap(), proof.clone());
        prop_assert!(verify_text(text.as_bytes(), &leaf, &[], 0).is_ok());
        if size > 1 {
            let other = leaves(size)[((index + 1) % size) as usize];
            prop_assert!(verify_text(text.as_bytes(), &other, &[], 0).is_err());
        }
    }
}
