//! The tlog-tiles read API: every resource of a signed tree is served as the
//! specification spells it and checks against the signed root; what the tree
//! has not reached is 404; a key is needed unless the server opts in.

use std::collections::BTreeMap;

use invario_core::signer::SignOutcome;
use invario_core::tiled::{TileResource, check_tiled_log, decode_bundle, resources_at};
use invario_core::{Ledger, LedgerCatalog, LedgerName};
use invario_http::{ServiceConfig, TlogAccess};
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, spawn_app, spawn_app_with, transaction};

const ENTRIES: u128 = 600;

/// Appends 600 entries and signs a checkpoint over them; the signed note.
async fn signed_tree(app: &TestApp) -> (String, Value) {
    let batch: Vec<Value> = (1..=ENTRIES).map(|n| transaction(n, "2.50")).collect();
    let response = app.post("/v1/transactions/batch", &json!({ "transactions": batch })).await;
    assert_eq!(response.status(), 201);
    let receipts: Value = response.json().await.unwrap();
    let signer = invario_core::note::SignerKey::from_seed(
        "ledger.example.com/tiles-test",
        invario_core::note::ALGORITHM_ED25519,
        [9; 32],
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
    (note, receipts)
}

#[tokio::test]
async fn every_resource_of_the_signed_tree_is_served_and_checks_against_its_root() {
    let app = spawn_app().await;
    let (note, receipts) = signed_tree(&app).await;

    for prefix in ["/v1/ledger/tlog", "/v1/ledgers/default/tlog"] {
        let response = app.get(&format!("{prefix}/checkpoint")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(response.headers()["cache-control"], "private, max-age=5");
        assert_eq!(response.text().await.unwrap(), note, "the checkpoint byte for byte");
    }
    let checkpoint = invario_core::checkpoint::Checkpoint::parse_text(&format!(
        "{}\n",
        note.split("\n\n").next().unwrap()
    ))
    .unwrap();
    assert_eq!(checkpoint.head.size, ENTRIES as u64);

    let mut served = BTreeMap::new();
    for resource in resources_at(checkpoint.head.size) {
        let response = app.get(&format!("/v1/ledgers/default/tlog/{}", resource.path())).await;
        assert_eq!(response.status(), 200, "{}", resource.path());
        assert_eq!(response.headers()["content-type"], "application/octet-stream");
        let expected_cache =
            if resource.is_full() { "private, max-age=31536000, immutable" } else { "private, max-age=300" };
        assert_eq!(response.headers()["cache-control"], expected_cache, "{}", resource.path());
        served.insert(resource, response.bytes().await.unwrap().to_vec());
    }
    check_tiled_log(&checkpoint.head, &served).unwrap();

    // The leaf data is each entry's entry_hash, in sequence order.
    let first_bundle = &served[&TileResource::Entries { index: 0, width: 256 }];
    let entries = decode_bundle(first_bundle).unwrap();
    for (entry, receipt) in entries.iter().zip(receipts["entries"].as_array().unwrap()) {
        assert_eq!(hex::encode(entry), receipt["entry_hash"].as_str().unwrap());
    }
    // A smaller width of a tile the tree has passed is a prefix of it (any signed size's partial).
    let prefix = app.get("/v1/ledger/tlog/tile/0/000.p/7").await.bytes().await.unwrap();
    let tile_0 = app.get("/v1/ledger/tlog/tile/0/000").await.bytes().await.unwrap();
    assert_eq!(&prefix[..], &tile_0[..7 * 32]);
}

#[tokio::test]
async fn what_the_tree_has_not_reached_or_no_path_names_is_404() {
    let app = spawn_app().await;
    let (status, code, body) = error_code(app.get("/v1/ledger/tlog/checkpoint").await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"), "no checkpoint yet: {body}");
    signed_tree(&app).await;
    // 600 entries: level 0 holds 2 full tiles and a partial of 88; level 1 a partial of 2.
    for path in [
        "tile/0/002",
        "tile/0/002.p/89",
        "tile/0/003.p/1",
        "tile/1/000",
        "tile/1/000.p/3",
        "tile/2/000.p/1",
        "tile/entries/002",
        "tile/entries/002.p/89",
        "tile/entries/x001/000",
        "tile/0/2",
        "tile/00/000",
        "tile/64/000",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/x000/000",
        "tile/entry/000",
    ] {
        let (status, code, body) = error_code(app.get(&format!("/v1/ledger/tlog/{path}")).await).await;
        assert_eq!((status, code.as_str()), (404, "not_found"), "{path}: {body}");
    }
    let (status, _, body) = error_code(app.get("/v1/ledgers/nothing/tlog/tile/0/000").await).await;
    assert_eq!(status, 404, "{body}");
    for path in ["tile/0/002.p/88", "tile/1/000.p/2", "tile/entries/002.p/88", "tile/0/001"] {
        assert_eq!(app.get(&format!("/v1/ledger/tlog/{path}")).await.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn the_tiles_need_a_read_key_unless_the_server_opts_in() {
    let app = spawn_app().await;
    signed_tree(&app).await;
    for path in ["/v1/ledger/tlog/checkpoint", "/v1/ledger/tlog/tile/0/000"] {
        let anonymous = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(anonymous.status(), 401, "{path}");
        let write_only = app.client.get(app.url(path)).bearer_auth(&app.write_key).send().await.unwrap();
        assert_eq!(write_only.status(), 403, "{path}");
    }

    let public =
        spawn_app_with(ServiceConfig { tlog_access: TlogAccess::Public, ..ServiceConfig::default() }).await;
    signed_tree(&public).await;
    for path in [
        "/v1/ledger/tlog/checkpoint",
        "/v1/ledgers/default/tlog/tile/0/000",
        "/v1/ledger/tlog/tile/entries/000",
    ] {
        let anonymous = public.client.get(public.url(path)).send().await.unwrap();
        assert_eq!(anonymous.status(), 200, "{path}");
        assert!(anonymous.headers()["cache-control"].to_str().unwrap().starts_with("public, "), "{path}");
    }
    // Only the tiles open: the content and the proofs still need a key.
    for path in [
        "/v1/ledger/tree",
        "/v1/ledger/checkpoint",
        "/v1/ledger/entries",
        "/v1/transactions/00000000-0000-0000-0000-000000000001",
    ] {
        let anonymous = public.client.get(public.url(path)).send().await.unwrap();
        assert_eq!(anonymous.status(), 401, "{path}");
    }
    let (status, _, _) = error_code(
        public.client.get(public.url("/v1/ledgers/nothing/tlog/checkpoint")).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, 404);
}
