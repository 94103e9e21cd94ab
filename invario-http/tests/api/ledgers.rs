//! Many ledgers over HTTP: created and listed with the admin scope, each with
//! its own chain, proofs and quarantine; keys limited to some ledgers.

use std::time::Duration;

use invario_core::LedgerName;
use invario_core::audit::check_inclusion;
use invario_testkit::tamper::{self, TransactionEdit};
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, fast_monitor, now, spawn_app, spawn_app_with, transaction};

async fn key(app: &TestApp, owner: &str, scopes: &str) -> String {
    let mut rng = rand::rngs::OsRng.unwrap_err();
    let (secret, _) = app.keys.create_key(&mut rng, owner, scopes, None, now()).await.unwrap();
    secret.expose().to_owned()
}

async fn send(
    app: &TestApp,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let request = app.client.request(method, app.url(path)).bearer_auth(key);
    let request = match body {
        Some(body) => request.json(body),
        None => request,
    };
    request.send().await.unwrap()
}

use rand::TryRngCore;
use reqwest::Method;

#[tokio::test]
async fn ledgers_are_created_with_the_admin_scope_and_listed() {
    let app = spawn_app().await;
    let admin = key(&app, "ops", r#"{"admin": true}"#).await;
    let created = send(&app, &admin, Method::POST, "/v1/ledgers", Some(&json!({"name": "acme"}))).await;
    assert_eq!(created.status(), 201);
    let body: Value = created.json().await.unwrap();
    assert_eq!(body["name"], "acme");
    assert!(body["created_at"].is_string());
    let again = send(&app, &admin, Method::POST, "/v1/ledgers", Some(&json!({"name": "acme"}))).await;
    assert_eq!(again.status(), 200, "creating a ledger that exists changes nothing");
    for (body, message) in [
        (json!({"name": "Acme"}), "ledger name \"Acme\" is not allowed"),
        (json!({"name": 7}), "name is required"),
        (json!({}), "name is required"),
    ] {
        let (status, code, error) =
            error_code(send(&app, &admin, Method::POST, "/v1/ledgers", Some(&body)).await).await;
        assert_eq!((status, code.as_str()), (422, "validation_failed"), "{error}");
        assert_eq!(error["error"]["details"][0]["field"], "name", "{error}");
        assert!(error["error"]["message"].as_str().unwrap().contains(message), "{error}");
    }
    // Writing keys are not admins.
    let (status, code, _) = error_code(
        send(&app, &app.write_key, Method::POST, "/v1/ledgers", Some(&json!({"name": "x"}))).await,
    )
    .await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    let listed: Value = send(&app, &admin, Method::GET, "/v1/ledgers", None).await.json().await.unwrap();
    let names: Vec<&str> =
        listed["ledgers"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["acme", "default"]);
    // A limited admin creates and sees only its own ledgers.
    let limited_admin = key(&app, "acme-ops", r#"{"admin": true, "ledgers": ["acme", "acme-eu"]}"#).await;
    let (status, ..) = error_code(
        send(&app, &limited_admin, Method::POST, "/v1/ledgers", Some(&json!({"name": "books"}))).await,
    )
    .await;
    assert_eq!(status, 403);
    let eu = send(&app, &limited_admin, Method::POST, "/v1/ledgers", Some(&json!({"name": "acme-eu"}))).await;
    assert_eq!(eu.status(), 201);
    let listed: Value =
        send(&app, &limited_admin, Method::GET, "/v1/ledgers", None).await.json().await.unwrap();
    let names: Vec<&str> =
        listed["ledgers"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["acme", "acme-eu"]);
}

#[tokio::test]
async fn the_same_id_in_two_ledgers_is_two_transactions_with_their_own_proofs() {
    let app = spawn_app().await;
    let admin = key(&app, "ops", r#"{"admin": true}"#).await;
    send(&app, &admin, Method::POST, "/v1/ledgers", Some(&json!({"name": "acme"}))).await;
    for n in 1..=3 {
        assert_eq!(app.post("/v1/transactions", &transaction(n, "10.00")).await.status(), 201);
    }
    let in_acme = app.post("/v1/ledgers/acme/transactions", &transaction(2, "99.00")).await;
    assert_eq!(in_acme.status(), 201, "not a conflict: another ledger");
    let id = uuid::Uuid::from_u128(2);
    assert_eq!(
        in_acme.headers()["location"].to_str().unwrap(),
        format!("/v1/ledgers/acme/transactions/{id}")
    );
    let receipt: Value = in_acme.json().await.unwrap();
    assert_eq!(receipt["sequence_number"], 1, "each ledger's chain starts at 1");
    let batch = json!({"transactions": [transaction(7, "1"), transaction(8, "2")]});
    assert_eq!(app.post("/v1/ledgers/acme/transactions/batch", &batch).await.status(), 201);

    let default_copy: Value = app.get(&format!("/v1/transactions/{id}")).await.json().await.unwrap();
    let acme_copy: Value =
        app.get(&format!("/v1/ledgers/acme/transactions/{id}")).await.json().await.unwrap();
    assert_eq!(
        (default_copy["amount"].as_str(), acme_copy["amount"].as_str()),
        (Some("10.00"), Some("99.00"))
    );
    let default_via_path: Value =
        app.get(&format!("/v1/ledgers/default/transactions/{id}")).await.json().await.unwrap();
    assert_eq!(default_via_path, default_copy, "/v1/ledgers/default/… is the same ledger as /v1/…");
    let head: Value = app.get("/v1/ledgers/acme/head").await.json().await.unwrap();
    assert_eq!(head["sequence_number"], 3);
    let entries: Value = app.get("/v1/ledgers/acme/entries").await.json().await.unwrap();
    assert_eq!(entries["entries"].as_array().unwrap().len(), 3);

    // Proofs: each ledger's against its own tree; never one's against the other's root.
    let acme_tree: Value = app.get("/v1/ledgers/acme/tree").await.json().await.unwrap();
    let default_tree: Value = app.get("/v1/ledger/tree").await.json().await.unwrap();
    assert_eq!((acme_tree["tree_size"].as_u64(), default_tree["tree_size"].as_u64()), (Some(3), Some(3)));
    assert_ne!(acme_tree["root_hash"], default_tree["root_hash"]);
    let proof: Value =
        app.get(&format!("/v1/ledgers/acme/transactions/{id}/proof")).await.json().await.unwrap();
    let proven = check_inclusion(&proof, None).unwrap();
    assert_eq!(proven.tree.root.to_string(), acme_tree["root_hash"].as_str().unwrap());
    assert_ne!(proven.tree.root.to_string(), default_tree["root_hash"].as_str().unwrap());
    for path in
        ["/v1/ledgers/acme/proof/inclusion?sequence_number=1", "/v1/ledgers/acme/proof/consistency?first=1"]
    {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }

    // Unknown and impossible ledgers are 404 naming them.
    for (path, named) in [
        ("/v1/ledgers/nope/head", "\"nope\""),
        ("/v1/ledgers/Nope/head", "\"Nope\""),
        ("/v1/ledgers/nope/transactions", "\"nope\""),
    ] {
        let response = if path.ends_with("transactions") {
            app.post(path, &transaction(1, "1")).await
        } else {
            app.get(path).await
        };
        let (status, code, body) = error_code(response).await;
        assert_eq!((status, code.as_str()), (404, "not_found"), "{path}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(named), "{path}: {body}");
    }
}

#[tokio::test]
async fn a_key_limited_to_one_ledger_cannot_read_or_write_another() {
    let app = spawn_app().await;
    let admin = key(&app, "ops", r#"{"admin": true}"#).await;
    send(&app, &admin, Method::POST, "/v1/ledgers", Some(&json!({"name": "acme"}))).await;
    let acme_only = key(&app, "acme-client", r#"{"write": true, "read": true, "ledgers": ["acme"]}"#).await;
    let written =
        send(&app, &acme_only, Method::POST, "/v1/ledgers/acme/transactions", Some(&transaction(1, "5")))
            .await;
    assert_eq!(written.status(), 201);
    assert_eq!(send(&app, &acme_only, Method::GET, "/v1/ledgers/acme/head", None).await.status(), 200);
    for (method, path) in [
        (Method::POST, "/v1/transactions"),
        (Method::POST, "/v1/ledgers/default/transactions"),
        (Method::GET, "/v1/ledger/head"),
        (Method::GET, "/v1/ledgers/default/head"),
        (Method::GET, "/v1/ledgers/other/head"),
    ] {
        let body = (method == Method::POST).then(|| transaction(2, "5"));
        let (status, code, error) =
            error_code(send(&app, &acme_only, method.clone(), path, body.as_ref()).await).await;
        assert_eq!((status, code.as_str()), (403, "forbidden"), "{method} {path}: {error}");
        assert!(error["error"]["message"].as_str().unwrap().contains("may not use ledger"), "{error}");
    }
    let default_head: Value = app.get("/v1/ledger/head").await.json().await.unwrap();
    assert_eq!(default_head["sequence_number"], 0, "nothing reached the default ledger");
}

#[tokio::test]
async fn a_tampered_ledger_is_quarantined_alone() {
    let mut app = spawn_app_with(fast_monitor()).await;
    let admin = key(&app, "ops", r#"{"admin": true}"#).await;
    // A name of its own: the integrity gauge is process-wide, labelled by ledger.
    let name = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    send(&app, &admin, Method::POST, "/v1/ledgers", Some(&json!({"name": name}))).await;
    for n in 1..=3 {
        assert_eq!(
            app.post(&format!("/v1/ledgers/{name}/transactions"), &transaction(n, "1.00")).await.status(),
            201
        );
        assert_eq!(app.post("/v1/transactions", &transaction(n, "1.00")).await.status(), 201);
    }
    let ledger = LedgerName::parse(&name).unwrap();
    tamper::edit_transaction(
        tamper::Target::ledger(app.database.pool(), &ledger),
        2,
        TransactionEdit::Amount("5.00"),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;

    let (status, code, _) =
        error_code(app.post(&format!("/v1/ledgers/{name}/transactions"), &transaction(9, "1")).await).await;
    assert_eq!((status, code.as_str()), (503, "ledger_quarantined"));
    assert_eq!(app.post("/v1/transactions", &transaction(9, "1")).await.status(), 201, "the others write on");
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the default ledger is intact");
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["ledgers"][&name], "corrupted", "{health}");
    assert_eq!(health["ledgers"]["default"], "ok", "{health}");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let broken = format!("invario_ledger_integrity_status{{ledger=\"{name}\"}} 0");
    assert!(metrics.lines().any(|line| line == broken), "{metrics}");
    app.stop().await;
}

#[tokio::test]
async fn ledgers_written_concurrently_each_keep_an_intact_chain() {
    use invario_core::{Ledger, LedgerCatalog};
    let app = spawn_app().await;
    let admin = key(&app, "ops", r#"{"admin": true}"#).await;
    let names = ["north", "south", "east", "west"];
    for name in names {
        send(&app, &admin, Method::POST, "/v1/ledgers", Some(&json!({"name": name}))).await;
    }
    // 4 ledgers × 30 single requests, all in flight together, plus a batch each.
    let singles = names.iter().flat_map(|name| (1..=30u128).map(move |n| (*name, n))).map(|(name, n)| {
        let app = &app;
        async move {
            app.post(&format!("/v1/ledgers/{name}/transactions"), &transaction(n, "1.00")).await.status()
        }
    });
    let batches = names.iter().map(|name| {
        let app = &app;
        let batch =
            json!({"transactions": (31..=40u128).map(|n| transaction(n, "2.00")).collect::<Vec<_>>()});
        async move { app.post(&format!("/v1/ledgers/{name}/transactions/batch"), &batch).await.status() }
    });
    let (singles, batches) = futures_util::future::join(
        futures_util::future::join_all(singles),
        futures_util::future::join_all(batches),
    )
    .await;
    assert!(singles.iter().chain(&batches).all(|status| status.as_u16() == 201), "{singles:?} {batches:?}");
    let catalog = invario_postgres::PgCatalog::new(app.database.pool().clone());
    for name in names {
        let head: Value = app.get(&format!("/v1/ledgers/{name}/head")).await.json().await.unwrap();
        assert_eq!(head["sequence_number"], 40, "{name}");
        let ledger = Ledger::new(catalog.store(&LedgerName::parse(name).unwrap()));
        assert!(ledger.verify_full().await.unwrap().is_intact(), "{name}");
    }
}
