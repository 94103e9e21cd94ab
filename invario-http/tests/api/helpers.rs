//! `spawn_app()`: a server on port 0 over a fresh database, with keys, a client and captured logs.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use invario_core::{KeyAdmin, Timestamp};
use invario_http::{GroupCommit, LogFormat, MonitorSchedule, ServiceConfig};
use invario_postgres::{PgCatalog, PgKeyStore};
use invario_testkit::harness::{TestDatabase, fresh_database};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// Every log line the test process wrote, write by write.
#[derive(Clone, Default)]
pub(crate) struct CapturedLogs(Arc<Mutex<Vec<Vec<u8>>>>);

impl Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().push(bytes.to_vec());
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(crate) fn logs() -> &'static CapturedLogs {
    static LOGS: OnceLock<CapturedLogs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = CapturedLogs::default();
        let sink = logs.clone();
        invario_http::init_logging(LogFormat::Json, "info", move || sink.clone()).unwrap();
        logs
    })
}

/// Log lines (parsed) that mention `needle`.
pub(crate) fn log_lines_with(needle: &str) -> Vec<Value> {
    all_logs()
        .lines()
        .filter(|line| line.contains(needle))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}")))
        .collect()
}

/// All captured log text.
pub(crate) fn all_logs() -> String {
    String::from_utf8(logs().0.lock().unwrap().concat()).unwrap()
}

/// The captured writes (each one `write` call's text) that mention `needle`.
pub(crate) fn log_writes_with(needle: &str) -> Vec<String> {
    let writes = logs().0.lock().unwrap().clone();
    writes
        .into_iter()
        .map(|bytes| String::from_utf8(bytes).unwrap())
        .filter(|text| text.contains(needle))
        .collect()
}

pub(crate) struct TestApp {
    pub(crate) address: String,
    pub(crate) client: reqwest::Client,
    pub(crate) database: TestDatabase,
    pub(crate) write_key: String,
    pub(crate) read_key: String,
    pub(crate) keys: KeyAdmin<PgKeyStore>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

pub(crate) fn now() -> Timestamp {
    Timestamp::from_datetime(chrono::Utc::now()).unwrap()
}

pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(ServiceConfig::default()).await
}

pub(crate) fn fast_monitor() -> ServiceConfig {
    ServiceConfig {
        group_commit: GroupCommit::default(),
        monitor: MonitorSchedule {
            incremental_interval: Duration::from_millis(100),
            full_interval: Duration::from_millis(200),
        },
        ..ServiceConfig::default()
    }
}

pub(crate) async fn spawn_app_with(config: ServiceConfig) -> TestApp {
    logs();
    let database = fresh_database().await;
    let keys = KeyAdmin::new(PgKeyStore::new(database.pool().clone()));
    let mut rng = rand::rngs::OsRng.unwrap_err();
    let (write, _) = keys.create_key(&mut rng, "writer", r#"{"write": true}"#, None, now()).await.unwrap();
    let (read, _) = keys.create_key(&mut rng, "reader", r#"{"read": true}"#, None, now()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let (shutdown, stop) = oneshot::channel::<()>();
    let ledger = PgCatalog::new(database.pool().clone());
    let key_store = PgKeyStore::new(database.pool().clone());
    let server = tokio::spawn(async move {
        invario_http::serve(listener, ledger, key_store, config, async {
            let _ = stop.await;
        })
        .await
        .unwrap();
    });
    TestApp {
        address,
        client: reqwest::Client::new(),
        database,
        write_key: write.expose().to_owned(),
        read_key: read.expose().to_owned(),
        keys,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

use rand::TryRngCore;

impl TestApp {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client.post(self.url(path)).bearer_auth(&self.write_key).json(body).send().await.unwrap()
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).bearer_auth(&self.read_key).send().await.unwrap()
    }

    /// Stops the server gracefully and waits for it.
    pub(crate) async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
    }
}

pub(crate) fn transaction(n: u128, amount: &str) -> Value {
    json!({
        "transaction_id": uuid::Uuid::from_u128(n).to_string(),
        "amount": amount,
        "currency": "BRL",
        "occurred_at": "2023-10-27T10:00:00Z",
        "metadata": {"order": format!("A-{n}")},
    })
}

pub(crate) async fn error_code(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["error"]["code"].as_str().unwrap_or_default().to_owned(), body)
}

/// Holds the append lock (the head row) in another session until dropped or rolled back.
pub(crate) async fn hold_the_append_lock(app: &TestApp) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut blocker = app.database.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM ledger_head WHERE ledger_id = 'default' FOR UPDATE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    blocker
}
