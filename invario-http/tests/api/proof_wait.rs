//! `Prefer: wait=signed` / `wait=witnessed` on writes (RFC 7240): the answer
//! waits for a checkpoint covering the entries and carries each one's
//! tlog-proof; past the wait it is 503 with `Retry-After` and nothing is lost;
//! without the preference (or one this service cannot honour) nothing changes.

use std::time::Duration;

use invario_core::note::{ALGORITHM_ED25519, SignerKey};
use invario_http::{CheckpointSettings, ServiceConfig, Sink};
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, spawn_app_with, transaction};

fn signer() -> SignerKey {
    SignerKey::from_seed("ledger.example.com/wait-test", ALGORITHM_ED25519, [7; 32]).unwrap()
}

async fn signing_app(interval: Duration, proof_wait: Duration) -> TestApp {
    let sink = std::env::temp_dir().join(format!("invario-wait-{}", uuid::Uuid::new_v4()));
    let checkpoints = CheckpointSettings {
        signer: signer(),
        sink: Sink::open(&sink).unwrap(),
        interval,
        witnesses: Vec::new(),
        quorum: 0,
        policy: None,
        proof_wait,
    };
    spawn_app_with(ServiceConfig { checkpoints: Some(checkpoints), ..ServiceConfig::default() }).await
}

async fn post(app: &TestApp, path: &str, body: &Value, prefer: Option<&str>) -> reqwest::Response {
    let mut request = app.client.post(app.url(path)).bearer_auth(&app.write_key).json(body);
    if let Some(prefer) = prefer {
        request = request.header("Prefer", prefer);
    }
    request.send().await.unwrap()
}

fn verified_sequence(proof: &Value) -> u64 {
    let text = proof.as_str().expect("a proof string");
    let proven =
        invario_core::audit::check_tlog_proof(text.as_bytes(), &signer().verifier(), &[], 0).unwrap();
    proven.entry.sequence_number
}

#[tokio::test]
async fn a_write_preferring_wait_signed_carries_a_proof_that_verifies() {
    let app = signing_app(Duration::from_millis(50), Duration::from_secs(10)).await;

    let response = post(&app, "/v1/transactions", &transaction(1, "10.00"), Some("wait=signed")).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["preference-applied"], "wait=signed");
    let receipt: Value = response.json().await.unwrap();
    assert_eq!(verified_sequence(&receipt["proof"]), 1);
    assert_eq!(receipt["sequence_number"], 1, "the receipt's own fields are all there: {receipt}");

    // Among other preferences, in any case; a replay is answered the same way, with its proof.
    let response =
        post(&app, "/v1/transactions", &transaction(1, "10.00"), Some("respond-async, WAIT=\"Signed\""))
            .await;
    assert_eq!(response.status(), 200);
    let replayed: Value = response.json().await.unwrap();
    assert_eq!(verified_sequence(&replayed["proof"]), 1);

    let batch: Vec<Value> = (2..=6u128).map(|n| transaction(n, "1.00")).collect();
    let response =
        post(&app, "/v1/transactions/batch", &json!({ "transactions": batch }), Some("wait=signed")).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["preference-applied"], "wait=signed");
    let body: Value = response.json().await.unwrap();
    let sequences: Vec<u64> =
        body["entries"].as_array().unwrap().iter().map(|e| verified_sequence(&e["proof"])).collect();
    assert_eq!(sequences, [2, 3, 4, 5, 6]);

    // Without the preference, with a value that is not ours (RFC 7240's seconds), or
    // `witnessed` on a service with no witness: the plain receipt, at once.
    for prefer in [None, Some("wait=5"), Some("wait=witnessed"), Some("return=minimal")] {
        let response = post(&app, "/v1/transactions", &transaction(7, "1.00"), prefer).await;
        assert!(response.status().is_success(), "{prefer:?}");
        assert!(response.headers().get("preference-applied").is_none(), "{prefer:?}");
        let receipt: Value = response.json().await.unwrap();
        assert!(receipt.get("proof").is_none(), "{prefer:?}: {receipt}");
    }
}

#[tokio::test]
async fn past_the_wait_it_is_503_and_the_write_is_kept() {
    // Signing once an hour: no checkpoint comes within the 300 ms the service allows.
    let app = signing_app(Duration::from_secs(3600), Duration::from_millis(300)).await;
    let response = post(&app, "/v1/transactions", &transaction(1, "10.00"), Some("wait=signed")).await;
    assert!(response.headers().get("retry-after").is_some());
    let (status, code, body) = error_code(response).await;
    assert_eq!((status, code.as_str()), (503, "proof_not_ready"), "{body}");
    assert!(body.to_string().contains("nothing is lost"), "{body}");
    // Recorded all the same: readable, and a retry without the wait is a replay.
    assert_eq!(app.get(&format!("/v1/transactions/{}", uuid::Uuid::from_u128(1))).await.status(), 200);
    let retry = post(&app, "/v1/transactions", &transaction(1, "10.00"), None).await;
    assert_eq!(retry.status(), 200);
}

#[tokio::test]
async fn a_proof_wait_as_long_as_the_request_timeout_is_refused_at_start() {
    let checkpoints = CheckpointSettings {
        signer: signer(),
        sink: Sink::open(&std::env::temp_dir().join(format!("invario-wait-{}", uuid::Uuid::new_v4())))
            .unwrap(),
        interval: Duration::from_secs(1),
        witnesses: Vec::new(),
        quorum: 0,
        policy: None,
        proof_wait: Duration::from_secs(30),
    };
    let config = ServiceConfig { checkpoints: Some(checkpoints), ..ServiceConfig::default() };
    let error = config.validate().unwrap_err();
    assert_eq!(error.setting(), invario_http::Setting::RequestTimeout, "{error}");
    assert!(error.to_string().contains("checkpoints.proof_wait"), "{error}");
}
