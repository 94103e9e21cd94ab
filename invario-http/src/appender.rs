//! Group commit: concurrent requests are funnelled into one task per ledger
//! that appends them together in one database transaction, answering each
//! caller only after its entries are durable. Single transactions are grouped
//! with single transactions (each succeeds or fails alone), batches with
//! batches (each all or nothing, joined up to [`MAX_JOINED_ROWS`] rows).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use invario_core::{
    BatchRequest, GroupAnswer, IngestError, ItemProblem, KeyEpoch, Ledger, LedgerName, LedgerStore,
    MAX_BATCH_SIZE, MAX_JOINED_ROWS, Receipt, ReceiptStatus, SingleGroup, SinglesAnswer, StoreError,
    Transaction, joins,
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

/// A batch's answer: its receipts, or why the core refused it (it alone), or
/// why nothing of its group was written.
pub(crate) type BatchOutcome = Result<Result<Vec<Receipt>, IngestError>, AppendFailure>;

/// One queued request.
enum Job {
    One(Single),
    Batch(Batch),
}

struct Single {
    transaction: Transaction,
    /// The key epoch the request was authenticated at from the cache, for the
    /// write to check; `None` when its key was read from the table.
    keys: Option<KeyEpoch>,
    reply: oneshot::Sender<AppendOutcome>,
}

struct Batch {
    request: BatchRequest,
    reply: oneshot::Sender<BatchOutcome>,
}

impl Job {
    /// Answers the caller with a failure of the whole write.
    fn fail(self, failure: AppendFailure) {
        // A caller that gave up waiting needs no answer.
        match self {
            Job::One(single) => drop(single.reply.send(Err(failure))),
            Job::Batch(batch) => drop(batch.reply.send(Err(failure))),
        }
    }
}

/// The requests written together: singles, or batches.
enum Group {
    Singles(Vec<Single>),
    Batches { batches: Vec<Batch>, rows: usize },
}

impl Group {
    fn starting(job: Job) -> Group {
        match job {
            Job::One(single) => Group::Singles(vec![single]),
            Job::Batch(batch) => {
                Group::Batches { rows: batch.request.transactions.len(), batches: vec![batch] }
            }
        }
    }

    /// Whether another request may still join.
    fn has_room(&self, max_singles: usize) -> bool {
        match self {
            Group::Singles(singles) => singles.len() < max_singles,
            Group::Batches { rows, .. } => *rows < MAX_JOINED_ROWS,
        }
    }

    /// Adds `job`, or hands it back when it is of the other kind or does not
    /// fit (it then starts the next group).
    fn join(&mut self, job: Job, max_singles: usize) -> Result<(), Job> {
        match (self, job) {
            (Group::Singles(singles), Job::One(single)) if singles.len() < max_singles => {
                singles.push(single);
                Ok(())
            }
            (Group::Batches { batches, rows }, Job::Batch(batch))
                if joins(*rows, batch.request.transactions.len()) =>
            {
                *rows += batch.request.transactions.len();
                batches.push(batch);
                Ok(())
            }
            (_, job) => Err(job),
        }
    }

    fn len(&self) -> usize {
        match self {
            Group::Singles(singles) => singles.len(),
            Group::Batches { batches, .. } => batches.len(),
        }
    }
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
        self.queue(Job::One(Single { transaction, keys, reply })).await?;
        answer.await.map_err(|_| AppendFailure::Stopped("the appender dropped the request"))?
    }

    /// Appends one batch, all or nothing, with whatever other batches are
    /// queued ([`Ledger::ingest_batches`]), answering once durable; pushes
    /// back like [`append`](Self::append). `transactions` must be a valid
    /// batch ([`invario_core::valid_batch`]).
    pub(crate) async fn append_batch(&self, transactions: Vec<Transaction>) -> BatchOutcome {
        let (reply, answer) = oneshot::channel();
        // Batch requests authenticate from the key table (no epoch to check):
        // a stale epoch would need the batch kept to be sent again.
        let request = BatchRequest { transactions, keys: None };
        self.queue(Job::Batch(Batch { request, reply })).await?;
        answer.await.map_err(|_| AppendFailure::Stopped("the appender dropped the request"))?
    }

    async fn queue(&self, job: Job) -> Result<(), AppendFailure> {
        self.jobs.send_timeout(job, self.queue_wait).await.map_err(|error| match error {
            mpsc::error::SendTimeoutError::Timeout(_) => AppendFailure::Busy,
            mpsc::error::SendTimeoutError::Closed(_) => AppendFailure::Stopped("the appender has stopped"),
        })
    }
}

async fn run<S: LedgerStore>(
    name: LedgerName,
    ledger: Arc<Ledger<S>>,
    settings: GroupCommit,
    jobs: mpsc::Receiver<Job>,
) {
    let mut queue = Queue { jobs, held: None, max_singles: settings.max_batch };
    let mut gathering = Gathering::new(settings.window);
    while let Some(first) = queue.next().await {
        let mut group = Group::starting(first);
        gathering.fill(&mut group, &mut queue, false).await;
        let down = match group {
            Group::Singles(singles) => {
                write_single_groups(&name, &ledger, singles, &mut queue, &mut gathering).await
            }
            Group::Batches { batches, .. } => write_batch_groups(&name, &ledger, batches, &mut queue).await,
        };
        // Requests queued while the database was found unreachable or full
        // would each wait out another connection timeout behind this one
        // (measured: 10 s answers during a crash); they get the same
        // retryable answer now. Nothing of theirs was written.
        if let Some(failure) = down {
            queue.fail_waiting(&failure);
        }
        gathering.written(&queue);
    }
}

/// The appender's queue, and a request that did not fit the last group (it
/// starts the next).
struct Queue {
    jobs: mpsc::Receiver<Job>,
    held: Option<Job>,
    max_singles: usize,
}

impl Queue {
    /// The next request, waiting for one; `None` once the queue is closed and empty.
    async fn next(&mut self) -> Option<Job> {
        match self.held.take() {
            Some(job) => Some(job),
            None => self.jobs.recv().await,
        }
    }

    /// A group started by the next request if that is a single (`singles`)
    /// or a batch, waiting for one; a request of the other kind is held for
    /// the next group and ends the run of groups (`None`).
    async fn next_group_of(&mut self, singles: bool) -> Option<Group> {
        let job = self.next().await?;
        if matches!(job, Job::One(_)) == singles {
            Some(Group::starting(job))
        } else {
            self.held = Some(job);
            None
        }
    }

    /// Adds to `group` the requests queued already, until one does not fit
    /// (it is held for the next group) or none is queued.
    fn take_queued(&mut self, group: &mut Group) {
        while self.held.is_none() && group.has_room(self.max_singles) {
            match self.jobs.try_recv() {
                Ok(job) => self.add(group, job),
                Err(_) => break,
            }
        }
    }

    /// Adds `job` to `group`, or holds it for the next group when it does not fit.
    fn add(&mut self, group: &mut Group, job: Job) {
        self.held = group.join(job, self.max_singles).err();
    }

    /// Requests waiting, the held one included.
    fn waiting(&self) -> usize {
        self.jobs.len() + usize::from(self.held.is_some())
    }

    /// Answers every waiting request with `failure`; nothing of theirs is written.
    fn fail_waiting(&mut self, failure: &AppendFailure) {
        for job in self.held.take().into_iter().chain(std::iter::from_fn(|| self.jobs.try_recv().ok())) {
            job.fail(failure.clone());
        }
    }
}

/// How the appender gathers a group of singles.
struct Gathering {
    window: Duration,
    /// The window only pays when others are writing too: a lone client would
    /// wait it out on every request (measured: 285 instead of 644 tx/s), so
    /// after a group of one the next group takes only what is already queued.
    others_writing: bool,
    /// The window is waited out only until the requests expected have come:
    /// those of the callers just answered (each sends its next soon) and
    /// those queued while that group was written. Waiting longer only idles
    /// the database (measured: SQLite and PostgreSQL, 16 clients); waiting
    /// for them lets the groups of many clients merge (256 clients).
    expected: usize,
    /// The size of the last group gathered.
    last: usize,
}

impl Gathering {
    fn new(window: Duration) -> Self {
        Gathering { window, others_writing: false, expected: 0, last: 0 }
    }

    /// Adds to `group` what is queued and — unless the group goes `behind` a
    /// write in flight, to be sent at once — while others are writing and
    /// fewer requests than expected have come, waits up to the window for more.
    async fn fill(&mut self, group: &mut Group, queue: &mut Queue, behind: bool) {
        queue.take_queued(group);
        if !behind && self.others_writing && !self.window.is_zero() && group.len() < self.expected {
            let deadline = Instant::now() + self.window;
            while queue.held.is_none() && group.has_room(queue.max_singles) && group.len() < self.expected {
                match tokio::time::timeout_at(deadline, queue.jobs.recv()).await {
                    Ok(Some(job)) => queue.add(group, job),
                    Ok(None) | Err(_) => break,
                }
            }
            queue.take_queued(group);
        }
        if !behind {
            self.others_writing = group.len() > 1 || queue.held.is_some();
        }
        self.last = group.len();
    }

    /// The last group was written and answered: the next expects its callers
    /// back, and what is waiting.
    fn written(&mut self, queue: &Queue) {
        self.expected = self.last + queue.waiting();
    }
}

/// Writes a group of singles and then the groups of singles queued while
/// writes are in flight, answering each caller once its group is durable
/// ([`Ledger::ingest_single_groups`]: where the ledgers share commits, a
/// ledger's next group joins the commit after its write's instead of missing
/// it). Ends at the first batch (`held` for the next group) or when the queue
/// closes; `Some` when the database was found down.
async fn write_single_groups<S: LedgerStore>(
    name: &LedgerName,
    ledger: &Ledger<S>,
    first: Vec<Single>,
    queue: &mut Queue,
    gathering: &mut Gathering,
) -> Option<AppendFailure> {
    let down: Mutex<Option<AppendFailure>> = Mutex::new(None);
    // Groups handed to the core and not answered yet: asked for the next
    // group while one is, the core sends it behind that write at once.
    let unanswered = AtomicUsize::new(0);
    let groups =
        futures_util::stream::unfold((Some(first), queue, gathering), |(first, queue, gathering)| {
            let (down, unanswered) = (&down, &unanswered);
            async move {
                let singles = match first {
                    Some(singles) => singles,
                    None => {
                        // After a failure that says the database is down the
                        // requests still queued are answered at once.
                        if lock(down).is_some() {
                            return None;
                        }
                        let behind = unanswered.load(Ordering::Relaxed) > 0;
                        if !behind {
                            gathering.written(queue);
                        }
                        let mut group = queue.next_group_of(true).await?;
                        gathering.fill(&mut group, queue, behind).await;
                        match group {
                            Group::Singles(singles) => singles,
                            // A group started by a single holds singles only.
                            Group::Batches { .. } => return None,
                        }
                    }
                };
                unanswered.fetch_add(1, Ordering::Relaxed);
                Some((singles_group(singles), (None, queue, gathering)))
            }
        });
    ledger
        .ingest_single_groups(Box::pin(groups), |tag, outcome| {
            unanswered.fetch_sub(1, Ordering::Relaxed);
            crate::metrics::record_fences(name, ledger.fenced_writes());
            if let Some(failure) = answer_singles(name, tag, outcome) {
                *lock(&down) = Some(failure);
            }
        })
        .await;
    down.into_inner().unwrap_or_else(PoisonError::into_inner)
}

/// A group of singles as the core takes it: each transaction with the key
/// epoch its request was authenticated at, written now; the callers' replies.
fn singles_group(jobs: Vec<Single>) -> SingleGroup<Vec<oneshot::Sender<AppendOutcome>>> {
    let (items, replies): (Vec<_>, Vec<_>) =
        jobs.into_iter().map(|job| ((job.transaction, job.keys), job.reply)).unzip();
    (items, now(), replies)
}

/// Answers each caller of a group of singles with its outcome; `Some` when
/// the database was found down.
fn answer_singles(
    name: &LedgerName,
    replies: Vec<oneshot::Sender<AppendOutcome>>,
    outcome: SinglesAnswer,
) -> Option<AppendFailure> {
    match outcome {
        Ok(outcomes) => {
            let created = outcomes
                .iter()
                .filter(
                    |outcome| matches!(outcome, Ok(Ok(receipt)) if receipt.status == ReceiptStatus::Created),
                )
                .count();
            crate::metrics::record_append(name, created);
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                // A request refused on its own (its key epoch moved) is told
                // so, and authenticates again.
                let _ = reply.send(outcome.map_err(|error| AppendFailure::Ingest(Arc::new(error))));
            }
            None
        }
        Err(error) => fail_all(replies, error),
    }
}

/// Writes a group of batches and then the groups of batches queued while
/// writes are in flight, answering each caller once its group is durable:
/// the core sends one group's rows while the group before it commits
/// ([`Ledger::ingest_batch_groups`]). Ends at the first single (`held` for
/// the next group) or when the queue closes; `Some` when the database was
/// found down (the requests still queued are then answered by the caller).
async fn write_batch_groups<S: LedgerStore>(
    name: &LedgerName,
    ledger: &Ledger<S>,
    first: Vec<Batch>,
    queue: &mut Queue,
) -> Option<AppendFailure> {
    let down: Mutex<Option<AppendFailure>> = Mutex::new(None);
    let groups = futures_util::stream::unfold((Some(first), queue), |(first, queue)| {
        let down = &down;
        async move {
            let batches = match first {
                Some(batches) => batches,
                None => {
                    // After a failure that says the database is down the
                    // requests still queued are answered at once.
                    if lock(down).is_some() {
                        return None;
                    }
                    let mut group = queue.next_group_of(false).await?;
                    queue.take_queued(&mut group);
                    match group {
                        Group::Batches { batches, .. } => batches,
                        // A group started by a batch holds batches only.
                        Group::Singles(_) => return None,
                    }
                }
            };
            let (requests, replies): (Vec<_>, Vec<_>) =
                batches.into_iter().map(|batch| (batch.request, batch.reply)).unzip();
            Some(((requests, now(), replies), (None, queue)))
        }
    });
    ledger
        .ingest_batch_groups(Box::pin(groups), |replies, outcome| {
            crate::metrics::record_fences(name, ledger.fenced_writes());
            if let Some(failure) = answer_batches(name, replies, outcome) {
                *lock(&down) = Some(failure);
            }
        })
        .await;
    down.into_inner().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Only ever replaced whole: a panic elsewhere cannot leave it half-changed.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Answers each batch of a group; `Some` when the database was found down.
fn answer_batches(
    name: &LedgerName,
    replies: Vec<oneshot::Sender<BatchOutcome>>,
    outcome: GroupAnswer,
) -> Option<AppendFailure> {
    match outcome {
        Ok(answers) => {
            let created = answers
                .iter()
                .filter_map(|answer| answer.as_ref().ok())
                .flatten()
                .filter(|receipt| receipt.status == ReceiptStatus::Created)
                .count();
            crate::metrics::record_append(name, created);
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(match answer {
                    // Only a request that carried a key epoch hears this:
                    // the caller authenticates again, as for a single.
                    Err(IngestError::Store(StoreError::KeysChanged)) => {
                        Err(AppendFailure::Ingest(Arc::new(IngestError::Store(StoreError::KeysChanged))))
                    }
                    answer => Ok(answer),
                });
            }
            None
        }
        Err(error) => fail_all(replies, error),
    }
}

/// Answers every caller of a group with the failure of its write; `Some`
/// when the failure says the database is down.
fn fail_all<A>(
    replies: Vec<oneshot::Sender<Result<A, AppendFailure>>>,
    error: IngestError,
) -> Option<AppendFailure> {
    let failure = AppendFailure::Ingest(Arc::new(error));
    for reply in replies {
        let _ = reply.send(Err(failure.clone()));
    }
    failure.database_down().then_some(failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Transaction `n`, id `n + 1` (the nil id is refused).
    fn transaction(n: u128) -> Transaction {
        Transaction::from_json(&serde_json::json!({
            "transaction_id": uuid::Uuid::from_u128(n + 1).to_string(), "amount": "1.00", "currency": "EUR",
        }))
        .expect("a valid transaction")
    }

    /// Requests authenticated from the key cache (their writes check the key
    /// epoch) queued among requests authenticated from the key table: when
    /// the epoch has moved, only the former hear that the keys changed, with
    /// nothing of theirs written; the latter are written all the same.
    #[tokio::test]
    async fn a_moved_key_epoch_refuses_only_the_requests_that_carried_it() {
        let (store, _database) = invario_testkit::fresh_pg_ledger().await;
        let ledger = Arc::new(Ledger::new(store));
        let (appender, task) =
            Appender::start(LedgerName::default_ledger(), Arc::clone(&ledger), GroupCommit::default());
        // Never the table's epoch: it starts at 0 and moves by one per key change.
        let stale = Some(KeyEpoch(1_000_000));
        let keys = |n: u128| if n % 2 == 0 { stale } else { None };
        // Queued together before the appender runs (one thread, polled in turn).
        let outcomes =
            futures_util::future::join_all((0..6).map(|n| appender.append(transaction(n), keys(n)))).await;
        for (n, outcome) in (0..6).zip(&outcomes) {
            match keys(n) {
                Some(_) => assert!(
                    matches!(outcome, Err(failure) if failure.keys_changed()),
                    "request {n} carried a moved epoch: {outcome:?}"
                ),
                None => assert!(matches!(outcome, Ok(Ok(_))), "request {n} carried none: {outcome:?}"),
            }
        }
        for n in 0..6 {
            let stored = ledger.entry(transaction(n).transaction_id).await.expect("read");
            assert_eq!(stored.is_some(), keys(n).is_none(), "request {n}");
        }
        assert_eq!(ledger.head().await.expect("head").sequence_number, 3);
        drop(appender);
        task.await.expect("the appender ends once its senders are gone");
    }
}
