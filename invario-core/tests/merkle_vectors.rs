//! The shared Merkle vector file, `docs/vectors/merkle.json`: the RFC 6962
//! reference leaves with their roots and every proof up to 8 leaves, and an
//! Invario tree built from real receipts. `docs/audit.py vectors` checks the
//! same file with an independent implementation, so two implementations must
//! agree. The file never changes once published; regenerate it only for a new
//! section, with `INVARIO_WRITE_VECTORS=1 cargo test -p invario-core --test merkle_vectors`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use invario_core::merkle::{
    LeafHashes, TreeHash, consistency_proof, entry_leaf_hash, inclusion_proof, leaf_hash, root_of_leaves,
    verify_consistency, verify_inclusion,
};
use invario_core::{ChainPosition, LedgerEntry, Timestamp, Transaction};
use serde_json::{Value, json};

const REFERENCE_LEAVES: [&str; 8] =
    ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];

fn hex_list(hashes: &[TreeHash]) -> Vec<String> {
    hashes.iter().map(TreeHash::to_hex).collect()
}

/// Every inclusion proof of every tree of `leaves`' prefixes, and every consistency proof between them.
fn proofs(leaves: &[TreeHash]) -> (Vec<Value>, Vec<Value>) {
    let source = LeafHashes(leaves);
    let mut inclusion = Vec::new();
    let mut consistency = Vec::new();
    for n in 1..=leaves.len() as u64 {
        for m in 0..n {
            let path = inclusion_proof(&source, m, n).unwrap();
            verify_inclusion(m, n, &leaves[m as usize], &path, &root_of_leaves(&leaves[..n as usize]))
                .unwrap();
            inclusion.push(json!({"leaf_index": m, "tree_size": n, "path": hex_list(&path)}));
        }
        for m in 1..n {
            let proof = consistency_proof(&source, m, n).unwrap();
            let (first_root, second_root) =
                (root_of_leaves(&leaves[..m as usize]), root_of_leaves(&leaves[..n as usize]));
            verify_consistency(m, n, &first_root, &second_root, &proof).unwrap();
            consistency.push(json!({"first": m, "second": n, "proof": hex_list(&proof)}));
        }
    }
    (inclusion, consistency)
}

/// Ten receipts chained from genesis: the leaf inputs of an Invario tree.
fn receipts() -> Vec<LedgerEntry> {
    let currencies = ["BRL", "USD", "EUR", "JPY", "GBP"];
    let mut position = ChainPosition::GENESIS;
    (1..=10u32)
        .map(|n| {
            let mut request = json!({
                "transaction_id": format!("00000000-0000-4000-8000-{n:012}"),
                "amount": format!("{n}.{:02}", n * 7 % 100),
                "currency": currencies[n as usize % 5],
            });
            if n % 2 == 0 {
                request["occurred_at"] = json!(format!("2026-01-01T00:00:{n:02}.5Z"));
                request["metadata"] = json!({"invoice": format!("INV-{n}"), "desk": "treasury"});
            }
            let transaction = Transaction::from_json(&request).unwrap();
            let recorded = Timestamp::parse_rfc3339(&format!("2026-01-01T00:01:{n:02}Z")).unwrap();
            let entry = LedgerEntry::next(position, transaction, recorded).unwrap();
            position = entry.position();
            entry
        })
        .collect()
}

fn vectors() -> Value {
    let reference: Vec<TreeHash> =
        REFERENCE_LEAVES.iter().map(|input| leaf_hash(&hex::decode(input).unwrap())).collect();
    let (reference_inclusion, reference_consistency) = proofs(&reference);
    let entries = receipts();
    let leaves: Vec<TreeHash> = entries.iter().map(|entry| entry_leaf_hash(&entry.entry_hash)).collect();
    let (invario_inclusion, invario_consistency) = proofs(&leaves);
    json!({
        "description": "RFC 9162 Merkle tree vectors shared by the Rust tests and docs/audit.py. Never change published values.",
        "rfc6962": {
            "leaf_inputs": REFERENCE_LEAVES,
            "empty_root": root_of_leaves(&[]).to_hex(),
            "roots": (1..=8).map(|n| root_of_leaves(&reference[..n]).to_hex()).collect::<Vec<_>>(),
            "inclusion": reference_inclusion,
            "consistency": reference_consistency,
        },
        "invario": {
            "about": "leaf i is the entry with sequence_number i + 1; its leaf input is the entry_hash, recomputed from the receipt",
            "receipts": entries.iter().map(LedgerEntry::receipt_json).collect::<Vec<_>>(),
            "roots": (1..=leaves.len()).map(|n| root_of_leaves(&leaves[..n]).to_hex()).collect::<Vec<_>>(),
            "inclusion": invario_inclusion,
            "consistency": invario_consistency,
        },
    })
}

#[test]
fn the_shared_vector_file_is_what_the_code_computes() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/vectors/merkle.json");
    let computed = vectors();
    if std::env::var_os("INVARIO_WRITE_VECTORS").is_some() {
        std::fs::write(&path, format!("{}\n", serde_json::to_string_pretty(&computed).unwrap())).unwrap();
    }
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(stored, computed, "docs/vectors/merkle.json and the code disagree");
    assert_eq!(
        stored["rfc6962"]["roots"][7], "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        "the RFC 6962 reference root of 8 leaves"
    );
}
