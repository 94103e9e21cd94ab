//! The Merkle tree over HTTP: proofs a client checks itself — recomputing each
//! entry hash from the receipt's fields, never trusting a hash the server sent.

use invario_core::audit::check_inclusion;
use invario_core::{TreeHash, verify_consistency};
use invario_testkit::tamper::{self, TransactionEdit};
use serde_json::{Value, json};

use crate::helpers::{error_code, log_lines_with, spawn_app, transaction};

fn hashes(value: &Value) -> Vec<TreeHash> {
    value.as_array().unwrap().iter().map(|hash| TreeHash::from_hex(hash.as_str().unwrap()).unwrap()).collect()
}

fn hash(value: &Value) -> TreeHash {
    TreeHash::from_hex(value.as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn inclusion_and_consistency_proofs_verify_from_the_receipts_alone() {
    let app = spawn_app().await;
    for n in 1..=5u128 {
        assert_eq!(app.post("/v1/transactions", &transaction(n, "3.10")).await.status(), 201);
    }
    let batch: Vec<Value> = (6..=300u128).map(|n| transaction(n, "7")).collect();
    assert_eq!(app.post("/v1/transactions/batch", &json!({ "transactions": batch })).await.status(), 201);

    let tree: Value = app.get("/v1/ledger/tree").await.json().await.unwrap();
    assert_eq!(tree["tree_size"], 300);
    let current_root = hash(&tree["root_hash"]);
    let mut roots = std::collections::BTreeMap::new();
    for (id, size) in [(1u128, 1u64), (3, 5), (5, 5), (6, 6), (200, 256), (257, 257), (299, 300), (42, 300)] {
        let id = uuid::Uuid::from_u128(id);
        let response = app.get(&format!("/v1/transactions/{id}/proof?tree_size={size}")).await;
        assert_eq!(response.status(), 200);
        let proof: Value = response.json().await.unwrap();
        assert_eq!(proof["tree_size"], size);
        // The client's own check: the entry hash recomputed from the receipt's fields, then the path.
        let proven = check_inclusion(&proof, None).unwrap();
        let index = proven.entry.sequence_number - 1;
        let root = proven.tree.root;
        roots.insert(size, root);
        let by_sequence: Value = app
            .get(&format!("/v1/ledger/proof/inclusion?sequence_number={}&tree_size={size}", index + 1))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(by_sequence, proof);
    }
    assert_eq!(roots[&300], current_root);
    let sizes: Vec<u64> = roots.keys().copied().collect();
    for (i, &first) in sizes.iter().enumerate() {
        for &second in &sizes[i..] {
            let proof: Value = app
                .get(&format!("/v1/ledger/proof/consistency?first={first}&second={second}"))
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(
                (hash(&proof["first_root"]), hash(&proof["second_root"])),
                (roots[&first], roots[&second])
            );
            verify_consistency(
                first,
                second,
                &roots[&first],
                &roots[&second],
                &hashes(&proof["consistency"]),
            )
            .unwrap();
        }
    }
    let latest: Value = app.get("/v1/ledger/proof/consistency?first=5").await.json().await.unwrap();
    assert_eq!(latest["second"], 300, "second defaults to the current size");
}

#[tokio::test]
async fn sizes_and_indexes_outside_the_tree_are_422_naming_the_parameter() {
    let app = spawn_app().await;
    for n in 1..=3u128 {
        app.post("/v1/transactions", &transaction(n, "1")).await;
    }
    let id = uuid::Uuid::from_u128(2);
    for (path, field, message) in [
        (
            format!("/v1/transactions/{id}/proof?tree_size=4"),
            "tree_size",
            "tree_size must be between 2 and 3 (got 4)",
        ),
        (
            format!("/v1/transactions/{id}/proof?tree_size=1"),
            "tree_size",
            "tree_size must be between 2 and 3 (got 1)",
        ),
        (
            format!("/v1/transactions/{id}/proof?tree_size=-1"),
            "tree_size",
            "tree_size must be a non-negative whole number (got \"-1\")",
        ),
        (
            "/v1/ledger/proof/inclusion?sequence_number=4".into(),
            "sequence_number",
            "sequence_number must be between 1 and 3 (got 4)",
        ),
        (
            "/v1/ledger/proof/inclusion?sequence_number=0".into(),
            "sequence_number",
            "sequence_number must be between 1 and 3 (got 0)",
        ),
        (
            "/v1/ledger/proof/inclusion".into(),
            "sequence_number",
            "sequence_number is required (a whole number)",
        ),
        (
            "/v1/ledger/proof/inclusion?sequence_number=1&tree_size=99".into(),
            "tree_size",
            "tree_size must be between 1 and 3 (got 99)",
        ),
        (
            "/v1/ledger/proof/consistency?first=1&second=4".into(),
            "second",
            "second must be between 0 and 3 (got 4)",
        ),
        (
            "/v1/ledger/proof/consistency?first=3&second=2".into(),
            "first",
            "first must be between 0 and 2 (got 3)",
        ),
        ("/v1/ledger/proof/consistency".into(), "first", "first is required (a whole number)"),
    ] {
        let (status, code, body) = error_code(app.get(&path).await).await;
        assert_eq!((status, code.as_str()), (422, "validation_failed"), "{path}: {body}");
        assert_eq!(body["error"]["details"][0]["field"], field, "{path}");
        assert_eq!(body["error"]["message"], message, "{path}");
    }
    let missing = uuid::Uuid::from_u128(9);
    let (status, code, _) = error_code(app.get(&format!("/v1/transactions/{missing}/proof")).await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let anonymous = app.client.get(app.url("/v1/ledger/tree")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401, "the tree needs a read key");
}

#[tokio::test]
async fn a_row_edited_behind_the_api_gets_a_500_never_a_proof() {
    let app = spawn_app().await;
    for n in 1..=4u128 {
        app.post("/v1/transactions", &transaction(n, "5.00")).await;
    }
    tamper::edit_transaction(app.database.pool(), 2, TransactionEdit::Amount("5000.00")).await.unwrap();
    let response = app
        .client
        .get(app.url(&format!("/v1/transactions/{}/proof", uuid::Uuid::from_u128(2))))
        .bearer_auth(&app.read_key)
        .header("x-correlation-id", "corr-proof-tampered")
        .send()
        .await
        .unwrap();
    let (status, code, body) = error_code(response).await;
    assert_eq!((status, code.as_str()), (500, "internal"), "{body}");
    let alarm = log_lines_with("corr-proof-tampered");
    let failed =
        alarm.iter().find(|line| line["event"] == "integrity_check_failed").expect("an integrity alarm");
    assert_eq!(failed["level"], "error");
    assert!(failed["error"].as_str().unwrap().contains("entry 2 does not hash"), "{failed}");
    // Untouched entries still prove.
    let fine = app.get(&format!("/v1/transactions/{}/proof", uuid::Uuid::from_u128(3))).await;
    assert_eq!(fine.status(), 200);
}

#[tokio::test]
async fn a_tlog_proof_is_served_only_under_a_signed_checkpoint_and_verifies_offline() {
    use invario_core::signer::SignOutcome;
    use invario_core::{Ledger, LedgerCatalog, LedgerName};

    let app = spawn_app().await;
    let batch: Vec<Value> = (1..=20u128).map(|n| transaction(n, "4.20")).collect();
    assert_eq!(app.post("/v1/transactions/batch", &json!({ "transactions": batch })).await.status(), 201);
    let id = uuid::Uuid::from_u128(7);
    let by_id = format!("/v1/transactions/{id}/proof?format=tlog-proof");
    let by_sequence = "/v1/ledger/proof/inclusion?sequence_number=7&format=tlog-proof";

    // Never against the unsigned current root: nothing is signed yet.
    for path in [by_id.as_str(), by_sequence] {
        let (status, code, body) = error_code(app.get(path).await).await;
        assert_eq!((status, code.as_str()), (409, "not_yet_signed"), "{body}");
        assert!(body.to_string().contains("none has been signed"), "{body}");
    }
    let (status, _, body) = error_code(app.get(&format!("{by_id}&tree_size=10")).await).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "tree_size", "{body}");
    let (status, _, body) =
        error_code(app.get(&format!("/v1/transactions/{id}/proof?format=xml")).await).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "format", "{body}");

    // A checkpoint signed (as the signing loop would) covers the 20 entries; 5 more are not covered.
    let signer = invario_core::note::SignerKey::from_seed(
        "ledger.example.com/api-test",
        invario_core::note::ALGORITHM_ED25519,
        [4; 32],
    )
    .unwrap();
    let ledger = Ledger::new(
        invario_postgres::PgCatalog::new(app.database.pool().clone())
            .store(&LedgerName::parse("default").unwrap()),
    );
    let SignOutcome::Signed { checkpoint, note } = ledger.sign_checkpoint(&signer, None).await.unwrap()
    else {
        panic!("a first checkpoint is signed")
    };
    ledger.keep_checkpoint_copy(&checkpoint, &note).await.unwrap();
    let batch: Vec<Value> = (21..=25u128).map(|n| transaction(n, "1")).collect();
    assert_eq!(app.post("/v1/transactions/batch", &json!({ "transactions": batch })).await.status(), 201);

    let response = app.get(&by_id).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
    let proof = response.text().await.unwrap();
    assert_eq!(app.get(by_sequence).await.text().await.unwrap(), proof);
    assert!(proof.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{proof}");
    assert!(proof.ends_with(&format!("\n\n{note}")), "the checkpoint verbatim: {proof}");
    let proven = invario_core::audit::check_tlog_proof(proof.as_bytes(), &signer.verifier(), &[], 0).unwrap();
    assert_eq!((proven.entry.sequence_number, proven.verified.checkpoint.head.size), (7, 20));
    let (status, code, body) =
        error_code(app.get("/v1/ledger/proof/inclusion?sequence_number=23&format=tlog-proof").await).await;
    assert_eq!((status, code.as_str()), (409, "not_yet_signed"), "{body}");
    assert!(body.to_string().contains("the latest covers 20 entries"), "{body}");
}
