//! Fault injection: a load driver that records every answer the service gave,
//! and a checker that holds the service to those answers after a fault.
//!
//! The driver posts singles from many concurrent clients and batches from a
//! few, each with fresh transaction ids, until stopped. Every request ends as
//! one [`Answer`]: acknowledged (2xx, with its receipts), refused (any other
//! status) or unanswered (the connection failed or timed out). After the fault,
//! [`History::check`] reads the whole ledger back over HTTP and asserts the
//! promise "a 2xx means durable":
//!
//! * every acknowledged transaction is present with a receipt equal to the one
//!   the client was given;
//! * no batch is partly written;
//! * every request that was refused or unanswered is wholly present or wholly
//!   absent, and re-sending it (same ids) converges: 200 or 201, never 409;
//! * afterwards the ledger holds exactly the transactions ever sent, numbered
//!   1..=N with no gap.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// How much load to drive.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Concurrent clients each posting one transaction at a time.
    pub single_clients: usize,
    /// Concurrent clients each posting batches.
    pub batch_clients: usize,
    /// Transactions per batch.
    pub batch_size: usize,
    /// A request without an answer after this long counts as unanswered.
    pub request_timeout: Duration,
}

impl Default for LoadPlan {
    fn default() -> Self {
        LoadPlan {
            single_clients: 16,
            batch_clients: 2,
            batch_size: 50,
            request_timeout: Duration::from_secs(15),
        }
    }
}

/// What the service answered one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A 2xx: the receipts it returned, in request order.
    Acknowledged {
        /// The status (201 created, 200 replayed).
        status: u16,
        /// One receipt per transaction of the request.
        receipts: Vec<Value>,
    },
    /// Any other status.
    Refused {
        /// The status.
        status: u16,
        /// The error body's `error.code`, if it had one.
        code: Option<String>,
        /// The `Retry-After` header, if sent.
        retry_after: Option<String>,
    },
    /// No answer: the connection was refused, reset or timed out.
    Unanswered {
        /// What the client saw.
        error: String,
    },
}

/// One request the driver sent, and its answer.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// `/v1/transactions` or `/v1/transactions/batch`.
    pub path: &'static str,
    /// The body sent (re-sent unchanged by the checker).
    pub body: Value,
    /// The transaction ids in it, in order.
    pub ids: Vec<Uuid>,
    /// The answer.
    pub answer: Answer,
    /// How long the answer took.
    pub elapsed: Duration,
    /// When it was sent, relative to the start of the load.
    pub sent_at: Duration,
}

/// Load running against a server; [`Load::stop`] returns what happened.
#[derive(Debug)]
pub struct Load {
    stop: watch::Sender<bool>,
    acknowledged: Arc<AtomicUsize>,
    refused: Refusals,
    clients: Vec<JoinHandle<Vec<Attempt>>>,
}

const SINGLE_PATH: &str = "/v1/transactions";
const BATCH_PATH: &str = "/v1/transactions/batch";
/// A client pauses this long after a failure, so a dead server is not hammered in a tight loop.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_millis(50);

impl Load {
    /// Starts `plan`'s clients against `base_url` (e.g. `http://127.0.0.1:8000`) with `key`.
    pub fn start(base_url: &str, key: &str, plan: &LoadPlan) -> Load {
        let (stop, stopped) = watch::channel(false);
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let refused = Refusals::default();
        let client = http_client(plan.request_timeout);
        let started = Instant::now();
        let kinds = std::iter::repeat_n(1, plan.single_clients)
            .chain(std::iter::repeat_n(plan.batch_size.max(1), plan.batch_clients));
        let clients = kinds
            .map(|size| {
                let client = Client {
                    http: client.clone(),
                    base_url: base_url.trim_end_matches('/').to_owned(),
                    key: key.to_owned(),
                    size,
                    acknowledged: Arc::clone(&acknowledged),
                    refused: refused.clone(),
                    started,
                };
                tokio::spawn(client.run(stopped.clone()))
            })
            .collect();
        Load { stop, acknowledged, refused, clients }
    }

    /// Requests refused with `status` so far.
    pub fn refused(&self, status: u16) -> usize {
        self.refused.0.lock().map_or(0, |counts| counts.get(&status).copied().unwrap_or(0))
    }

    /// Waits until at least `count` requests were refused with `status` (panics after `within`).
    pub async fn wait_for_refused(&self, status: u16, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.refused(status) < count {
            assert!(
                Instant::now() < deadline,
                "only {} requests refused with {status} within {within:?}",
                self.refused(status)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Transactions acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.acknowledged.load(Ordering::Relaxed)
    }

    /// Waits until at least `count` transactions were acknowledged (panics after `within`).
    pub async fn wait_for_acknowledged(&self, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.acknowledged() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} transactions acknowledged within {within:?}",
                self.acknowledged()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the clients (each finishes its request in flight) and returns the history.
    pub async fn stop(self) -> History {
        let _ = self.stop.send(true);
        let mut attempts = Vec::new();
        for client in self.clients {
            attempts.extend(client.await.expect("a load client panicked"));
        }
        attempts.sort_by_key(|attempt| attempt.sent_at);
        History { attempts }
    }
}

fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().timeout(timeout).build().expect("an HTTP client")
}

/// Refusals so far by status, shared by the clients.
#[derive(Debug, Clone, Default)]
struct Refusals(Arc<std::sync::Mutex<BTreeMap<u16, usize>>>);

struct Client {
    http: reqwest::Client,
    base_url: String,
    key: String,
    size: usize,
    acknowledged: Arc<AtomicUsize>,
    refused: Refusals,
    started: Instant,
}

impl Client {
    async fn run(self, stop: watch::Receiver<bool>) -> Vec<Attempt> {
        let mut attempts = Vec::new();
        let mut number = 0u64;
        while !*stop.borrow() {
            number += 1;
            let ids: Vec<Uuid> = (0..self.size).map(|_| Uuid::new_v4()).collect();
            let items: Vec<Value> = ids
                .iter()
                .map(|id| {
                    json!({
                        "transaction_id": id,
                        "amount": format!("{}.{:02}", number % 1000 + 1, number % 100),
                        "currency": "BRL",
                        "metadata": {"driver": "faults"},
                    })
                })
                .collect();
            let (path, body) = if self.size == 1 {
                (SINGLE_PATH, items.into_iter().next().unwrap_or(Value::Null))
            } else {
                (BATCH_PATH, json!({ "transactions": items }))
            };
            let sent_at = self.started.elapsed();
            let began = Instant::now();
            let answer = post(&self.http, &self.base_url, &self.key, path, &body).await;
            let elapsed = began.elapsed();
            match &answer {
                Answer::Acknowledged { receipts, .. } => {
                    self.acknowledged.fetch_add(receipts.len(), Ordering::Relaxed);
                }
                Answer::Refused { status, .. } => {
                    if let Ok(mut counts) = self.refused.0.lock() {
                        *counts.entry(*status).or_insert(0) += 1;
                    }
                    tokio::time::sleep(PAUSE_AFTER_FAILURE).await;
                }
                Answer::Unanswered { .. } => tokio::time::sleep(PAUSE_AFTER_FAILURE).await,
            }
            attempts.push(Attempt { path, body, ids, answer, elapsed, sent_at });
        }
        attempts
    }
}

async fn post(http: &reqwest::Client, base_url: &str, key: &str, path: &str, body: &Value) -> Answer {
    let sent = http.post(format!("{base_url}{path}")).bearer_auth(key).json(body).send().await;
    let response = match sent {
        Ok(response) => response,
        Err(error) => return Answer::Unanswered { error: error_chain(&error) },
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let bytes = match response.bytes().await {
        Ok(bytes) => bytes,
        Err(error) => return Answer::Unanswered { error: format!("status {status}, body lost: {error}") },
    };
    let parsed: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        let receipts = if path == BATCH_PATH {
            parsed["entries"].as_array().cloned().unwrap_or_default()
        } else {
            vec![parsed]
        };
        Answer::Acknowledged { status, receipts }
    } else {
        let code = parsed["error"]["code"].as_str().map(str::to_owned);
        Answer::Refused { status, code, retry_after }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Every request the driver sent, in the order sent.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The requests and their answers.
    pub attempts: Vec<Attempt>,
}

/// What [`History::check`] found (it panics on any broken promise).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Requests sent.
    pub requests: usize,
    /// Transactions acknowledged with a 2xx.
    pub acknowledged: usize,
    /// Refused requests by status.
    pub refused: BTreeMap<u16, usize>,
    /// Requests that got no answer.
    pub unanswered: usize,
    /// Refused or unanswered requests found written before they were re-sent.
    pub written_without_answer: usize,
    /// Requests re-sent by the checker.
    pub resent: usize,
    /// Entries in the ledger afterwards.
    pub ledger_entries: usize,
}

impl std::fmt::Display for Report {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{} requests: {} transactions acknowledged, refused {:?}, {} unanswered ({} of the refused or unanswered were written anyway); {} re-sent; {} entries in the ledger; acknowledged but lost: 0, partial batches: 0",
            self.requests,
            self.acknowledged,
            self.refused,
            self.unanswered,
            self.written_without_answer,
            self.resent,
            self.ledger_entries
        )
    }
}

impl History {
    /// Transactions acknowledged.
    pub fn acknowledged(&self) -> usize {
        self.attempts
            .iter()
            .map(|attempt| match &attempt.answer {
                Answer::Acknowledged { receipts, .. } => receipts.len(),
                _ => 0,
            })
            .sum()
    }

    /// The refusals, as (status, error code, Retry-After) with how many of each.
    pub fn refusals(&self) -> BTreeMap<(u16, Option<String>, Option<String>), usize> {
        let mut refusals = BTreeMap::new();
        for attempt in &self.attempts {
            if let Answer::Refused { status, code, retry_after } = &attempt.answer {
                *refusals.entry((*status, code.clone(), retry_after.clone())).or_insert(0) += 1;
            }
        }
        refusals
    }

    /// Requests that got no answer.
    pub fn unanswered(&self) -> impl Iterator<Item = &Attempt> {
        self.attempts.iter().filter(|attempt| matches!(attempt.answer, Answer::Unanswered { .. }))
    }

    /// Holds the service at `base_url` to every answer it gave (see the module
    /// docs), for a ledger that was empty when the load started; panics naming
    /// the first broken promise. Re-sends refused and
    /// unanswered requests, retrying a 503 for up to `converge_within`.
    pub async fn check(&self, base_url: &str, key: &str, converge_within: Duration) -> Report {
        let base_url = base_url.trim_end_matches('/');
        let http = http_client(Duration::from_secs(30));
        let before = read_ledger(&http, base_url, key).await;
        let mut report = Report { requests: self.attempts.len(), ..Report::default() };
        let mut to_resend = Vec::new();
        for attempt in &self.attempts {
            match &attempt.answer {
                Answer::Acknowledged { receipts, .. } => {
                    report.acknowledged += receipts.len();
                    assert_eq!(receipts.len(), attempt.ids.len(), "a 2xx without a receipt per transaction");
                    for (id, receipt) in attempt.ids.iter().zip(receipts) {
                        let stored = before.get(id).unwrap_or_else(|| {
                            panic!("transaction {id} was acknowledged ({receipt}) but is not in the ledger")
                        });
                        assert_eq!(
                            stored, receipt,
                            "transaction {id}: the stored receipt differs from the one acknowledged"
                        );
                    }
                }
                other => {
                    match other {
                        Answer::Refused { status, .. } => *report.refused.entry(*status).or_insert(0) += 1,
                        _ => report.unanswered += 1,
                    }
                    let present = attempt.ids.iter().filter(|id| before.contains_key(id)).count();
                    assert!(
                        present == 0 || present == attempt.ids.len(),
                        "a partial batch: {present} of {} transactions written ({other:?})",
                        attempt.ids.len()
                    );
                    if present > 0 {
                        report.written_without_answer += 1;
                    }
                    to_resend.push(attempt);
                }
            }
        }
        for attempt in to_resend {
            let receipts = resend(&http, base_url, key, attempt, converge_within).await;
            for (id, receipt) in attempt.ids.iter().zip(&receipts) {
                if let Some(stored) = before.get(id) {
                    assert_eq!(
                        stored, receipt,
                        "transaction {id}: the replayed receipt differs from the stored one"
                    );
                }
            }
            report.resent += 1;
        }
        let after = read_ledger(&http, base_url, key).await;
        let sent: usize = self.attempts.iter().map(|attempt| attempt.ids.len()).sum();
        assert_eq!(after.len(), sent, "the ledger holds {} transactions, {sent} were sent", after.len());
        for (id, receipt) in &before {
            assert_eq!(after.get(id), Some(receipt), "transaction {id} changed or vanished during the check");
        }
        report.ledger_entries = after.len();
        report
    }
}

/// Re-sends `attempt` unchanged until it is acknowledged (200 or 201); a 503
/// or no answer is retried until `within` has passed; anything else panics.
async fn resend(
    http: &reqwest::Client,
    base_url: &str,
    key: &str,
    attempt: &Attempt,
    within: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let answer = post(http, base_url, key, attempt.path, &attempt.body).await;
        match answer {
            Answer::Acknowledged { status: 200 | 201, receipts } => return receipts,
            Answer::Refused { status: 503, .. } | Answer::Unanswered { .. } if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!(
                "re-sending {} {} (first answered {:?}) did not converge: {other:?}",
                attempt.path, attempt.ids[0], attempt.answer
            ),
        }
    }
}

/// Every receipt in the ledger by transaction id, checking the sequence numbers run 1..=N.
async fn read_ledger(http: &reqwest::Client, base_url: &str, key: &str) -> HashMap<Uuid, Value> {
    let mut receipts = HashMap::new();
    let mut after = 0u64;
    loop {
        let url = format!("{base_url}/v1/ledger/entries?after={after}&limit=1000");
        let response = http.get(&url).bearer_auth(key).send().await.expect("the entries are readable");
        assert_eq!(response.status(), 200, "GET {url}");
        let page: Value = response.json().await.expect("an entries page");
        let entries = page["entries"].as_array().expect("an entries list");
        if entries.is_empty() {
            return receipts;
        }
        for entry in entries {
            let sequence = entry["sequence_number"].as_u64().expect("a sequence number");
            assert_eq!(sequence, after + 1, "the sequence numbers have a gap after {after}");
            after = sequence;
            let id = entry["transaction_id"].as_str().and_then(|id| Uuid::parse_str(id).ok()).expect("an id");
            receipts.insert(id, entry.clone());
        }
    }
}
