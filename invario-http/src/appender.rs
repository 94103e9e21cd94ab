//! Group commit: concurrent single-transaction requests are funnelled into one
//! task that appends them together in one database transaction, answering each
//! caller only after its entry is durable.

use std::sync::Arc;
use std::time::Duration;

use invario_core::{
    IngestError, ItemProblem, KeyEpoch, Ledger, LedgerName, LedgerStore, MAX_BATCH_SIZE, Receipt, StoreError,
    Transaction,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::clock::now;
use crate::config::{ConfigError, Setting, check_range};

/// Default most transactions per group commit.
pub const DEFAULT_GROUP_COMMIT_MAX: usize = 1_000;
/// Longest group-commit window accepted: past it a lone burst waits visibly.
pub const MAX_GROUP_COMMIT_WINDOW: Duration = Duration::from_secs(1);
/// Deepest appender queue accepted.
pub const MAX_QUEUE_DEPTH: usize = 100_000;
/// Longest a request may wait for room in a full queue before a 503.
pub const MAX_QUEUE_WAIT: Duration = Duration::from_secs(60);

// A group commit is one batch append, so it obeys the batch limit.
const _: () = assert!(DEFAULT_GROUP_COMMIT_MAX <= MAX_BATCH_SIZE);

/// Why a request's append did not happen: the core's own error, shared by
/// every caller of the group (it is not `Clone`), or the appender's. Only
/// `error.rs` maps it to an answer.
#[derive(Debug, Clone)]
pub(crate) enum AppendFailure {
    /// The core refused or the store failed; the same error for every caller of the group.
    Ingest(Arc<IngestError>),
    /// The queue stayed full for the whole allowed wait.
    Busy,
    /// The appender is gone (the server is stopping); nothing was written.
    Stopped(&'static str),
}

impl AppendFailure {
    /// The write carried a key epoch that no longer holds (or could not be
    /// checked): nothing was written, and the caller authenticates again from
    /// the key table before appending without an epoch.
    pub(crate) fn keys_changed(&self) -> bool {
        matches!(self, AppendFailure::Ingest(error) if matches!(**error, IngestError::Store(StoreError::KeysChanged)))
    }

    /// The database is unreachable or full: requests queued behind this one
    /// would fail the same way.
    fn database_down(&self) -> bool {
        matches!(
            self,
            AppendFailure::Ingest(error)
                if matches!(**error, IngestError::Store(StoreError::Unavailable(_) | StoreError::OutOfSpace(_)))
        )
    }
}

/// One caller's answer.
pub(crate) type AppendOutcome = Result<Result<Receipt, ItemProblem>, AppendFailure>;

struct Job {
    transaction: Transaction,
    /// The key epoch the request was authenticated at from the cache, for the
    /// write to check; `None` when its key was read from the table.
    keys: Option<KeyEpoch>,
    reply: oneshot::Sender<AppendOutcome>,
}

/// Group-commit settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommit {
    /// How long the appender waits for more requests after the first, while
    /// more than one client is writing (0: take only what is queued).
    pub window: Duration,
    /// Most transactions per database transaction; 1 turns group commit off.
    pub max_batch: usize,
    /// Requests waiting for the appender before callers wait for room.
    pub queue_depth: usize,
    /// How long a caller waits for room in a full queue before it is
    /// answered 503 `unavailable` with `Retry-After`.
    pub queue_wait: Duration,
}

impl Default for GroupCommit {
    fn default() -> Self {
        GroupCommit {
            window: Duration::from_millis(1),
            max_batch: DEFAULT_GROUP_COMMIT_MAX,
            queue_depth: 10_000,
            queue_wait: Duration::from_secs(5),
        }
    }
}

impl GroupCommit {
    /// Refuses settings outside their ranges (nothing is clamped).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range(Setting::GroupCommitWindow, self.window, Duration::ZERO, MAX_GROUP_COMMIT_WINDOW)?;
        check_range(Setting::GroupCommitMax, self.max_batch, 1, MAX_BATCH_SIZE)?;
        check_range(Setting::QueueDepth, self.queue_depth, 1, MAX_QUEUE_DEPTH)?;
        check_range(Setting::QueueWait, self.queue_wait, Duration::from_millis(1), MAX_QUEUE_WAIT)
    }
}

/// The sending side; clone it into every request handler.
#[derive(Debug, Clone)]
pub(crate) struct Appender {
    jobs: mpsc::Sender<Job>,
    queue_wait: Duration,
}

impl Appender {
    /// Starts the appender task. It ends once every `Appender` clone is dropped
    /// and the queued requests are answered.
    pub(crate) fn start<S: LedgerStore + 'static>(
        name: LedgerName,
        ledger: Arc<Ledger<S>>,
        settings: GroupCommit,
    ) -> (Appender, tokio::task::JoinHandle<()>) {
        debug_assert!(settings.validate().is_ok(), "serve() validates the configuration first");
        // validate() keeps queue_depth at 1 or more, which `channel` requires.
        let (jobs, queue) = mpsc::channel(settings.queue_depth);
        let task = tokio::spawn(run(name, ledger, settings, queue));
        (Appender { jobs, queue_wait: settings.queue_wait }, task)
    }

    /// Appends one transaction with whatever else is queued, answering once
    /// durable; pushes back ([`AppendFailure::Busy`]) when the queue stays full.
    /// With `keys` (the request's key came from the cache at that epoch) the
    /// write checks the key table; if it moved, the answer is a failure whose
    /// [`AppendFailure::keys_changed`] holds and nothing was written. Without,
    /// that answer never comes.
    pub(crate) async fn append(&self, transaction: Transaction, keys: Option<KeyEpoch>) -> AppendOutcome {
        let (reply, answer) = oneshot::channel();
        self.jobs.send_timeout(Job { transaction, keys, reply }, self.queue_wait).await.map_err(|error| {
            match error {
                mpsc::error::SendTimeoutError::Timeout(_) => AppendFailure::Busy,
                mpsc::error::SendTimeoutError::Closed(_) => {
                    AppendFailure::Stopped("the appender has stopped")
                }
            }
        })?;
        answer.await.map_err(|_| AppendFailure::Stopped("the appender dropped the request"))?
    }
}

async fn run<S: LedgerStore>(
    name: LedgerName,
    ledger: Arc<Ledger<S>>,
    settings: GroupCommit,
    mut queue: mpsc::Receiver<Job>,
) {
    let max_batch = settings.max_batch;
    // The window only pays when others are writing too: a lone client would
    // wait it out on every request (measured: 285 instead of 644 tx/s), so
    // after a batch of one the next batch takes only what is already queued.
    let mut others_writing = false;
    while let Some(first) = queue.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if others_writing && !settings.window.is_zero() && jobs.len() < max_batch {
            let deadline = Instant::now() + settings.window;
            while jobs.len() < max_batch {
                match tokio::time::timeout_at(deadline, queue.recv()).await {
                    Ok(Some(job)) => jobs.push(job),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        others_writing = jobs.len() > 1;
        // The group checks the oldest epoch among its keys: it holds only if
        // every cached key in the group is current.
        let keys = jobs.iter().filter_map(|job| job.keys).min();
        // Kept in case the check fails: requests whose keys were read from
        // the table are then written on their own, at once.
        let unkeyed: Vec<(usize, Transaction)> = if keys.is_some() {
            jobs.iter()
                .enumerate()
                .filter(|(_, job)| job.keys.is_none())
                .map(|(index, job)| (index, job.transaction.clone()))
                .collect()
        } else {
            Vec::new()
        };
        let (transactions, replies): (Vec<_>, Vec<_>) =
            jobs.into_iter().map(|job| (job.transaction, job.reply)).unzip();
        let outcome = ledger.ingest_each_with_keys(transactions, now(), keys).await;
        crate::metrics::record_fences(&name, ledger.fenced_writes());
        if keys.is_some() && matches!(outcome, Err(IngestError::Store(StoreError::KeysChanged))) {
            let failure = AppendFailure::Ingest(Arc::new(IngestError::Store(StoreError::KeysChanged)));
            let mut unkeyed = unkeyed.into_iter().peekable();
            let (mut retry_replies, mut retry_transactions) = (Vec::new(), Vec::new());
            for (index, reply) in replies.into_iter().enumerate() {
                match unkeyed.next_if(|(unkeyed_index, _)| *unkeyed_index == index) {
                    Some((_, transaction)) => {
                        retry_replies.push(reply);
                        retry_transactions.push(transaction);
                    }
                    None => {
                        let _ = reply.send(Err(failure.clone()));
                    }
                }
            }
            if !retry_transactions.is_empty() {
                let outcome = ledger.ingest_each(retry_transactions, now()).await;
                crate::metrics::record_fences(&name, ledger.fenced_writes());
                answer(&name, retry_replies, outcome, &mut queue);
            }
            continue;
        }
        answer(&name, replies, outcome, &mut queue);
    }
}

/// Answers each caller of a group with its outcome.
fn answer(
    name: &LedgerName,
    replies: Vec<oneshot::Sender<AppendOutcome>>,
    outcome: Result<Vec<Result<Receipt, ItemProblem>>, IngestError>,
    queue: &mut mpsc::Receiver<Job>,
) {
    match outcome {
        Ok(outcomes) => {
            let created = outcomes
                .iter()
                .filter(|outcome| {
                    matches!(outcome, Ok(receipt) if receipt.status == invario_core::ReceiptStatus::Created)
                })
                .count();
            crate::metrics::record_append(name, created);
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(error) => {
            let failure = AppendFailure::Ingest(Arc::new(error));
            for reply in replies {
                let _ = reply.send(Err(failure.clone()));
            }
            // Requests queued while the database was found unreachable or
            // full would each wait out another connection timeout behind
            // this one (measured: 10 s answers during a crash); they get
            // the same retryable answer now. Nothing of theirs was written.
            if failure.database_down() {
                while let Ok(job) = queue.try_recv() {
                    let _ = job.reply.send(Err(failure.clone()));
                }
            }
        }
    }
}
