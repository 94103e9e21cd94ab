//! Helpers shared by the end-to-end modules: a signing setup, witnesses, readers of /health and the served checkpoint.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use invario_core::Ledger;
use invario_postgres::PgLedger;
use invario_testkit::contract::{at, transaction};
use invario_testkit::harness::{TestDatabase, fresh_database};
use serde_json::{Value, json};

use crate::common::*;

pub(crate) async fn ledger_of(database: &TestDatabase, count: u128) {
    let ledger = Ledger::new(PgLedger::new(database.pool().clone()));
    ledger.ingest((1..=count).map(|n| transaction(n, "10.00")).collect(), at(1)).await.unwrap();
}

/// A fresh folder for the embedded default (SQLite) and a read-write key
/// created in it (the ledger file appears in the folder).
pub(crate) fn embedded_folder_with_key(prefix: &str) -> (std::path::PathBuf, String) {
    let folder = std::env::temp_dir().join(format!("{prefix}-{}", rand_id()));
    std::fs::create_dir_all(&folder).unwrap();
    let key = key_of(&folder, "ClientName", r#"{"write": true, "read": true}"#);
    (folder, key)
}

/// A key for `owner` with `scopes`, created by `invario create-key` in the
/// embedded folder.
pub(crate) fn key_of(folder: &std::path::Path, owner: &str, scopes: &str) -> String {
    created_key_for(&invario_in(folder, None, &["create-key", "--owner", owner, "--scopes", scopes]), owner)
}

/// GETs `url` with `key`; the answer must be 200 with a JSON body.
pub(crate) async fn get_json(client: &reqwest::Client, url: &str, key: &str) -> Value {
    let response = client.get(url).bearer_auth(key).send().await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|error| panic!("GET {url}: {error}: {body}"))
}

/// A PostgreSQL ledger served with its checkpoint key and sink in a temp folder.
pub(crate) struct SigningSetup {
    pub(crate) database: TestDatabase,
    pub(crate) folder: std::path::PathBuf,
    pub(crate) key: String,
}

impl SigningSetup {
    pub(crate) async fn new(entries: u128) -> Self {
        let database = fresh_database().await;
        ledger_of(&database, entries).await;
        let folder = std::env::temp_dir().join(format!("invario-signing-{}", rand_id()));
        write_checkpoint_key(&folder);
        let key = created_key(&invario(
            &database,
            &["create-key", "--owner", "ClientName", "--scopes", r#"{"write": true, "read": true}"#],
        ));
        SigningSetup { database, folder, key }
    }

    pub(crate) async fn serve(&self) -> Server {
        self.serve_into(&self.folder.join("checkpoints")).await
    }

    /// Serves with the checkpoint directory `sink`.
    pub(crate) async fn serve_into(&self, sink: &std::path::Path) -> Server {
        let flags: Vec<std::ffi::OsString> = vec![
            "--checkpoint-key".into(),
            self.folder.join("checkpoint.key").into(),
            "--checkpoint-dir".into(),
            sink.into(),
            "--checkpoint-interval".into(),
            "50ms".into(),
            // The chain checks stay out of the way: what is tested is the checkpoint guard alone.
            "--integrity-interval".into(),
            "1h".into(),
            "--full-verify-interval".into(),
            "1h".into(),
        ];
        serve_with(&std::env::temp_dir(), Some(self.database.url()), &flags).await
    }

    pub(crate) fn vkey(&self) -> String {
        let key = std::fs::read_to_string(self.folder.join("checkpoint.key")).unwrap();
        invario_core::note::SignerKey::parse(&key).unwrap().verifier().to_string()
    }

    /// `invario verify --checkpoints <sink> --vkey <the key's vkey>`.
    pub(crate) fn verify_against_checkpoints(&self) -> Output {
        let sink = self.folder.join("checkpoints");
        invario(&self.database, &["verify", "--checkpoints", sink.to_str().unwrap(), "--vkey", &self.vkey()])
    }

    /// `docs/audit.py checkpoint --full` against `server`, with a state folder of its own.
    pub(crate) fn python_audit(&self, server: &Server) -> Output {
        self.python_audit_with(server, "python-auditor", &["--full"])
    }

    /// `docs/audit.py checkpoint … extra` against `server`, remembering in `state` (under the setup's folder).
    pub(crate) fn python_audit_with(&self, server: &Server, state: &str, extra: &[&str]) -> Output {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/audit.py");
        Command::new("python3")
            .arg(script)
            .args(["checkpoint", "--url", &server.address, "--key", &self.key, "--vkey", &self.vkey()])
            .args(extra)
            .arg("--state")
            .arg(self.folder.join(state))
            .output()
            .expect("python3 runs docs/audit.py")
    }

    /// `docs/audit.py checkpoint --full --ledger LEDGER` with verifier key `vkey`, remembering in `state`.
    pub(crate) fn python_audit_ledger(
        &self,
        server: &Server,
        vkey: &str,
        state: &str,
        ledger: &str,
    ) -> Output {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/audit.py");
        Command::new("python3")
            .arg(script)
            .args(["checkpoint", "--url", &server.address, "--key", &self.key, "--vkey", vkey])
            .args(["--full", "--ledger", ledger, "--state"])
            .arg(self.folder.join(state))
            .output()
            .expect("python3 runs docs/audit.py")
    }

    /// `invario audit` against `server`, remembering in the auditor's own folder.
    pub(crate) fn audit(&self, server: &Server, full: bool) -> Output {
        let state = self.folder.join("auditor");
        let mut args = vec!["audit", "--url", &server.address, "--key", &self.key];
        let vkey = self.vkey();
        args.extend(["--vkey", &vkey, "--state", state.to_str().unwrap()]);
        if full {
            args.push("--full");
        }
        invario_with_url(None, &args)
    }

    pub(crate) fn latest_size(&self) -> Option<u64> {
        let note = std::fs::read_to_string(self.folder.join("checkpoints/checkpoint")).ok()?;
        note.lines().nth(1)?.parse().ok()
    }
}

/// `/health`'s status and body.
pub(crate) async fn health_of(server: &Server) -> (u16, Value) {
    let response = reqwest::get(format!("{}/health", server.address)).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// The tree size of the default ledger's checkpoint the server has published, from
/// `/health`. The sink is written first, then the database's copy that is served,
/// then this: waiting on the sink alone races the served copy.
pub(crate) async fn published_checkpoint_size(server: &Server) -> Option<u64> {
    health_of(server).await.1["checkpoint_tree_size"].as_u64()
}

/// The checkpoint `server` serves for `ledger` (the default ledger's route when
/// `None`), or `None` while none is signed.
pub(crate) async fn served_checkpoint(server: &Server, key: &str, ledger: Option<&str>) -> Option<String> {
    let url = match ledger {
        Some(name) => format!("{}/v1/ledgers/{name}/checkpoint", server.address),
        None => format!("{}/v1/ledger/checkpoint", server.address),
    };
    let response = reqwest::Client::new().get(url).bearer_auth(key).send().await.unwrap();
    if response.status() == 200 { Some(response.text().await.unwrap()) } else { None }
}

/// Posts `ids` with `amount` through `server`, each answered 201.
pub(crate) async fn post_all(server: &Server, key: &str, ids: std::ops::RangeInclusive<u128>, amount: &str) {
    let client = reqwest::Client::new();
    for n in ids {
        let body = json!({"transaction_id": uuid::Uuid::from_u128(n).to_string(), "amount": amount, "currency": "BRL"});
        let response = client
            .post(format!("{}/v1/transactions", server.address))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
}

/// `invario witness serve` on a free port; killed when dropped.
pub(crate) async fn witness_serve(folder: &std::path::Path, log_vkey: &str) -> Server {
    witness_serve_for(folder, &[log_vkey]).await
}

/// A witness trusting every log key of `log_vkeys`.
pub(crate) async fn witness_serve_for(folder: &std::path::Path, log_vkeys: &[&str]) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    witness_serve_at(folder, log_vkeys, port).await
}

/// A witness trusting `log_vkeys`, listening on `port`.
pub(crate) async fn witness_serve_at(folder: &std::path::Path, log_vkeys: &[&str], port: u16) -> Server {
    let listen = format!("127.0.0.1:{port}");
    let logs = log_vkeys.iter().flat_map(|vkey| ["--log", vkey]);
    let child = Command::new(env!("CARGO_BIN_EXE_invario"))
        .args(["witness", "serve", "--listen", &listen])
        .args(logs)
        .arg("--key")
        .arg(folder.join("witness.key"))
        .arg("--state")
        .arg(folder.join("witness-state"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child, address: format!("http://{listen}") };
    for _ in 0..300 {
        if reqwest::Client::new().post(format!("{}/add-checkpoint", server.address)).send().await.is_ok() {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("invario witness serve did not come up on {listen}");
}

/// Every `invario_…` metric the alerts or the dashboard use is exported by a
/// live server (one that signs, submits to a witness and has appended).
pub(crate) async fn every_monitored_metric_is_exported(server: &Server) {
    let exported = reqwest::get(format!("{}/metrics", server.address)).await.unwrap().text().await.unwrap();
    let exported: std::collections::BTreeSet<&str> = exported
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut used = std::collections::BTreeSet::new();
    for file in ["deploy/prometheus/alerts.yml", "deploy/grafana/invario.json"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for (start, _) in text.match_indices("invario_") {
            let name: String = text[start..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            used.insert((file, name));
        }
    }
    assert!(used.len() > 10, "{used:?}");
    let missing: Vec<_> = used.iter().filter(|(_, name)| !exported.contains(name.as_str())).collect();
    assert!(
        missing.is_empty(),
        "named in the monitoring kit but not exported: {missing:?}\nexported: {exported:?}"
    );
}

/// `invario witness generate-key --name witness.test/w1 --out path`.
pub(crate) fn generate_witness_key(path: &std::path::Path) -> Output {
    invario_with_url(
        None,
        &["witness", "generate-key", "--name", "witness.test/w1", "--out", path.to_str().unwrap()],
    )
}
