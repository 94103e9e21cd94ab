//! The shared tlog-proof vectors, `docs/vectors/tlog-proof.json`: for each of
//! the ten receipts of `docs/vectors/merkle.json`, its C2SP tlog-proof under
//! a checkpoint of the ten, signed with the example log key and cosigned by
//! the example witness (both as in `docs/vectors/checkpoint.json`; Ed25519 is
//! deterministic, so the file is byte-exact). `docs/audit.py
//! tlog-proof-vectors` checks the same file independently. Regenerate only
//! for a new section, with `INVARIO_WRITE_VECTORS=1 cargo test -p invario-core --test tlog_proof_vectors`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use invario_core::audit::{check_tlog_proof, entry_from_receipt};
use invario_core::checkpoint::Checkpoint;
use invario_core::merkle::{LeafHashes, TreeHead, entry_leaf_hash, inclusion_proof, root_of_leaves};
use invario_core::note::{ALGORITHM_COSIGNATURE, ALGORITHM_ED25519, SignerKey};
use invario_core::proof::TlogProof;
use invario_core::tlog_proof_extra;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const ORIGIN: &str = "ledger.example.com/invario/prod";
const WITNESS: &str = "witness.auditor.example/w1";
const COSIGNATURE_TIME: u64 = 1_767_225_600;

fn vector_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/vectors").join(name)
}

fn keys() -> (SignerKey, SignerKey) {
    let seed = |phrase: &str| -> [u8; 32] { Sha256::digest(phrase.as_bytes()).into() };
    (
        SignerKey::from_seed(ORIGIN, ALGORITHM_ED25519, seed("invario example key - DO NOT USE")).unwrap(),
        SignerKey::from_seed(WITNESS, ALGORITHM_COSIGNATURE, seed("invario example witness - DO NOT USE"))
            .unwrap(),
    )
}

fn vectors() -> Value {
    let merkle: Value =
        serde_json::from_str(&std::fs::read_to_string(vector_file("merkle.json")).unwrap()).unwrap();
    let entries: Vec<_> = merkle["invario"]["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| entry_from_receipt(r).unwrap())
        .collect();
    let leaves: Vec<_> = entries.iter().map(|entry| entry_leaf_hash(&entry.entry_hash)).collect();
    let (log, witness) = keys();
    let size = leaves.len() as u64;
    let checkpoint =
        Checkpoint { origin: ORIGIN.into(), head: TreeHead { size, root: root_of_leaves(&leaves) } };
    let mut note = checkpoint.sign(&log).unwrap();
    note.signatures.push(invario_core::witness::cosign(&note.text, &witness, COSIGNATURE_TIME).unwrap());
    let proofs: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let index = entry.sequence_number - 1;
            let proof = TlogProof {
                extra: Some(tlog_proof_extra(entry)),
                index,
                inclusion: inclusion_proof(&LeafHashes(&leaves), index, size).unwrap(),
                checkpoint: note.to_text(),
            };
            json!({"sequence_number": entry.sequence_number, "proof": proof.to_text()})
        })
        .collect();
    json!({
        "description": "c2sp.org/tlog-proof@v1 for each receipt of merkle.json's invario tree, under its checkpoint of 10 signed by the example log key and cosigned by the example witness. Never change published values.",
        "log_vkey": log.verifier().to_string(),
        "witness_vkey": witness.verifier().to_string(),
        "checkpoint": note.to_text(),
        "proofs": proofs,
    })
}

#[test]
fn the_shared_tlog_proof_vectors_are_what_the_code_computes_and_verify() {
    let path = vector_file("tlog-proof.json");
    let computed = vectors();
    if std::env::var_os("INVARIO_WRITE_VECTORS").is_some() {
        std::fs::write(&path, format!("{}\n", serde_json::to_string_pretty(&computed).unwrap())).unwrap();
    }
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(stored, computed, "docs/vectors/tlog-proof.json and the code disagree");
    let checkpoints: Value =
        serde_json::from_str(&std::fs::read_to_string(vector_file("checkpoint.json")).unwrap()).unwrap();
    assert_eq!(stored["log_vkey"], checkpoints["log_vkey"], "the example log key of checkpoint.json");
    assert_eq!(stored["witness_vkey"], checkpoints["witness_vkey"], "the example witness of checkpoint.json");

    let (log, witness) = keys();
    for (n, vector) in stored["proofs"].as_array().unwrap().iter().enumerate() {
        let text = vector["proof"].as_str().unwrap();
        let proven = check_tlog_proof(text.as_bytes(), &log.verifier(), &[witness.verifier()], 1).unwrap();
        assert_eq!(proven.entry.sequence_number, n as u64 + 1);
        assert_eq!(proven.verified.cosigners, [WITNESS]);
        // Any single changed character is refused.
        for position in
            (0..text.len()).step_by(7).filter(|p| text.is_char_boundary(*p) && text.is_char_boundary(p + 1))
        {
            let original = text.as_bytes()[position];
            let replacement = if original == b'A' { "B" } else { "A" };
            let mut altered = text.to_owned();
            altered.replace_range(position..position + 1, replacement);
            assert!(
                check_tlog_proof(altered.as_bytes(), &log.verifier(), &[witness.verifier()], 1).is_err(),
                "proof {} with byte {position} changed was accepted",
                n + 1
            );
        }
    }
}
