//! Groups written back to back (issue 27, lever L5): groups of batch
//! requests, and groups of single transactions.
//!
//! A large write spends much of its time where the database waits: on the
//! commit's WAL flush and on the round trips inside the write. The appender
//! of a ledger knows the state its write in flight leaves (the plan says it),
//! so it can plan the next group on that state and send its rows while the
//! write before it commits. Its fence is compared only once that write has
//! committed, so it holds only if that write landed exactly as planned; if
//! that write fails, the group behind it fails too, with nothing written, and
//! is written again the usual way — its answers are exactly those of groups
//! written one after the other.
//!
//! Groups of single transactions are planned ahead only where the store
//! [orders a ledger's fenced writes](LedgerStore::orders_fenced_writes), and
//! only while other ledgers [share its commits](LedgerStore::shares_commits):
//! then a ledger whose write is in one shared commit has its next group
//! waiting for the next commit, instead of missing it.

use std::collections::{HashSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures_util::future::{BoxFuture, FutureExt, MaybeDone, join_all, poll_fn};
use futures_util::stream::{Stream, StreamExt};

use super::{
    BatchRequest, IngestError, Ledger, Planned, Planner, Submission, Writer, answers, group_problem,
    split_by_keys, with_keys_changed,
};
use crate::AppendPlan;
use crate::append::{
    IndependentPlan, ItemProblem, JoinedPlan, Receipt, plan_append_batches, plan_append_each,
};
use crate::idempotency::new_entries_fit;
use crate::keys::KeyEpoch;
use crate::ports::{LedgerStore, StoreError};
use crate::timestamp::Timestamp;
use crate::transaction::{Transaction, TransactionId};
use crate::writer::Fence;
use crate::writer::WriterState;

/// Most group writes in flight at once: one committing, the next one sending
/// its rows behind it.
pub const MAX_WRITES_IN_FLIGHT: usize = 2;

/// One group's answer, as [`Ledger::ingest_batches`] gives it: an answer per
/// batch, or the failure of the whole write.
pub type GroupAnswer = Result<Vec<Result<Vec<Receipt>, IngestError>>, IngestError>;

/// A group of batch requests for [`Ledger::ingest_batch_groups`]: the
/// requests, the time they are written at, and what the caller needs to
/// answer them (handed back with the group's answer).
pub type BatchGroup<T> = (Vec<BatchRequest>, Timestamp, T);

/// A group of single transactions for [`Ledger::ingest_single_groups`]:
/// each transaction with the key epoch its request was authenticated at
/// (`None` when its key was read from the store for it), the time they are
/// written at, and what the caller needs to answer them.
pub type SingleGroup<T> = (Vec<(Transaction, Option<KeyEpoch>)>, Timestamp, T);

/// One transaction's answer in a group of singles: its receipt or its own
/// problem; or, when the key epoch its request carried had moved,
/// [`StoreError::KeysChanged`] with nothing of it written (authenticate it
/// again from the store and send it again without an epoch).
pub type SingleAnswer = Result<Result<Receipt, ItemProblem>, IngestError>;

/// A group of single transactions' answer: one per transaction, in order, or
/// the failure of the whole write (nothing of the group was written).
pub type SinglesAnswer = Result<Vec<SingleAnswer>, IngestError>;

/// A kind of group the pipeline writes: its planner, its checks, and how a
/// write of it goes behind another.
trait GroupKind: Planned + Send + Sync + Sized + 'static {
    /// A group as the caller hands it in.
    type Group: Send;
    /// What each group is answered, once written or refused.
    type Answered: Send;
    /// Plans a group's write.
    const PLANNER: Planner<Self>;
    /// Why the group is refused before anything is planned, if it is.
    fn refusal<S: LedgerStore>(ledger: &Ledger<S>, group: &Self::Group) -> Option<IngestError>;
    /// Whether a group of this kind may be planned on a write still in flight.
    fn plans_ahead<S: LedgerStore>(
        ledger: &Ledger<S>,
        group: &Self::Group,
    ) -> impl Future<Output = bool> + Send;
    /// Its transaction ids, in order.
    fn ids(group: &Self::Group) -> Vec<TransactionId>;
    /// Whether its write may be refused for some of its requests only (a
    /// moved key epoch refuses those that carried one; the others are written
    /// again at once): no group is sent behind such a write, so that they go
    /// before any group after it.
    fn refusable_in_part(group: &Self::Group) -> bool;
    /// What the planner takes, and the key epoch the write checks.
    fn into_submission(group: Self::Group) -> (Self::Submission, Option<KeyEpoch>);
    /// The answer of a written plan, as the caller gets it.
    fn answered(answer: Self::Answer) -> Self::Answered;
    /// Writes a group planned on the state a write still in flight leaves.
    fn write_behind<'a, S: LedgerStore>(
        store: &'a S,
        fence: &'a Fence,
        keys: Option<KeyEpoch>,
        plan: &'a AppendPlan,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Writes a group that could not be planned ahead, the usual way.
    fn in_turn<'a, S: LedgerStore>(
        ledger: &'a Ledger<S>,
        writer: &'a mut Writer,
        group: Self::Group,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Self::Answered, IngestError>>;
}

impl GroupKind for JoinedPlan {
    type Group = Vec<BatchRequest>;
    type Answered = Vec<Result<Vec<Receipt>, IngestError>>;
    const PLANNER: Planner<Self> = plan_append_batches;

    fn refusal<S: LedgerStore>(ledger: &Ledger<S>, group: &Vec<BatchRequest>) -> Option<IngestError> {
        // The checks `ingest_batches` makes first.
        if let Some(problem) = group_problem(group) {
            return Some(problem);
        }
        let rows: usize = group.iter().map(|request| request.transactions.len()).sum();
        ledger.check_writable(rows).err()
    }

    async fn plans_ahead<S: LedgerStore>(_: &Ledger<S>, group: &Vec<BatchRequest>) -> bool {
        // A write behind another goes by COPY, which carries no key epoch.
        group.iter().all(|request| request.keys.is_none())
    }

    fn ids(group: &Vec<BatchRequest>) -> Vec<TransactionId> {
        group.iter().flat_map(|request| &request.transactions).map(|item| item.transaction_id).collect()
    }

    fn refusable_in_part(_: &Vec<BatchRequest>) -> bool {
        // Its write answers each batch on its own, the split included.
        false
    }

    fn into_submission(group: Vec<BatchRequest>) -> (Vec<Vec<Transaction>>, Option<KeyEpoch>) {
        (group.into_iter().map(|request| request.transactions).collect(), None)
    }

    fn answered(answer: Self::Answer) -> Self::Answered {
        answers(answer)
    }

    fn write_behind<'a, S: LedgerStore>(
        store: &'a S,
        fence: &'a Fence,
        _keys: Option<KeyEpoch>,
        plan: &'a AppendPlan,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        store.write_fenced_behind(fence, plan)
    }

    fn in_turn<'a, S: LedgerStore>(
        ledger: &'a Ledger<S>,
        writer: &'a mut Writer,
        group: Vec<BatchRequest>,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Self::Answered, IngestError>> {
        ledger.batches_locked(writer, group, now).boxed()
    }
}

/// A group of singles as the pipeline writes it.
struct Singles {
    transactions: Vec<Transaction>,
    /// The oldest key epoch among its requests: the one the write checks.
    keys: Option<KeyEpoch>,
    /// Some of its requests carried no epoch while others did.
    partly_keyed: bool,
}

impl GroupKind for IndependentPlan {
    type Group = Singles;
    type Answered = Vec<Result<Receipt, ItemProblem>>;
    const PLANNER: Planner<Self> = plan_append_each;

    fn refusal<S: LedgerStore>(ledger: &Ledger<S>, group: &Self::Group) -> Option<IngestError> {
        ledger.check_writable(group.transactions.len()).err()
    }

    async fn plans_ahead<S: LedgerStore>(ledger: &Ledger<S>, _: &Self::Group) -> bool {
        // Sent behind another as an ordinary fenced write (the pipeline runs
        // only where the store orders them), which pays only while other
        // ledgers share the commits: written alone, a ledger's groups only
        // get smaller (measured: 64 clients on one ledger ≈ 17 % fewer tx/s).
        ledger.store.shares_commits().await
    }

    fn ids(group: &Singles) -> Vec<TransactionId> {
        group.transactions.ids()
    }

    fn refusable_in_part(group: &Singles) -> bool {
        group.partly_keyed
    }

    fn into_submission(group: Singles) -> (Vec<Transaction>, Option<KeyEpoch>) {
        (group.transactions, group.keys)
    }

    fn answered(answer: Self::Answer) -> Self::Answered {
        answer
    }

    fn write_behind<'a, S: LedgerStore>(
        store: &'a S,
        fence: &'a Fence,
        keys: Option<KeyEpoch>,
        plan: &'a AppendPlan,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        store.write_fenced(fence, keys, plan)
    }

    fn in_turn<'a, S: LedgerStore>(
        ledger: &'a Ledger<S>,
        writer: &'a mut Writer,
        Singles { transactions: batch, keys, .. }: Singles,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Self::Answered, IngestError>> {
        async move {
            if batch.is_empty() {
                return Ok(Vec::new());
            }
            ledger.append_locked(writer, batch, now, keys, plan_append_each).await
        }
        .boxed()
    }
}

/// A caller's group of singles, as the pipeline carries it to its answer:
/// its tag, its size, and the transactions whose keys were read from the
/// store, by position — kept only when another carried an epoch, the only
/// case in which the write can be refused for them ([`split_by_keys`]).
struct Caller<T> {
    tag: T,
    count: usize,
    unkeyed: Vec<(usize, Transaction)>,
    now: Timestamp,
}

/// What the pipeline carries for a group of singles besides the caller's tag.
enum SinglesTag<T> {
    /// A group as the caller handed it.
    First(Caller<T>),
    /// The unkeyed transactions of a group whose epoch had moved, written
    /// again: where each sits in that group of `count`.
    Again { tag: T, count: usize, positions: Vec<usize> },
}

/// What became of a group of singles once the pipeline answered it.
enum Settled<T> {
    /// The caller's answer.
    Answered(T, SinglesAnswer),
    /// Its epoch had moved (nothing of it written) and its unkeyed
    /// transactions are to be written again.
    Again(Caller<T>),
}

impl<T> SinglesTag<T> {
    /// A caller's group as the pipeline writes it: its transactions, and the
    /// oldest key epoch among them, which the write checks.
    fn first((items, now, tag): SingleGroup<T>) -> (Singles, Timestamp, Self) {
        let (keys, unkeyed) = split_by_keys(items.iter().map(|(transaction, keys)| (transaction, *keys)));
        let partly_keyed = !unkeyed.is_empty();
        let count = items.len();
        let transactions = items.into_iter().map(|(transaction, _)| transaction).collect();
        let caller = Caller { tag, count, unkeyed, now };
        (Singles { transactions, keys, partly_keyed }, now, SinglesTag::First(caller))
    }

    /// The caller's answer to a group, or the group to write again.
    fn settle(self, outcome: Result<Vec<Result<Receipt, ItemProblem>>, IngestError>) -> Settled<T> {
        match self {
            SinglesTag::First(caller) => match outcome {
                Err(IngestError::Store(StoreError::KeysChanged)) if !caller.unkeyed.is_empty() => {
                    Settled::Again(caller)
                }
                outcome => {
                    Settled::Answered(caller.tag, outcome.map(|items| items.into_iter().map(Ok).collect()))
                }
            },
            SinglesTag::Again { tag, count, positions } => {
                let answered = outcome.map(|items| {
                    let written = items.into_iter().map(Ok).collect();
                    with_keys_changed(count, positions, written, || Err(StoreError::KeysChanged.into()))
                });
                Settled::Answered(tag, answered)
            }
        }
    }
}

impl<T> Caller<T> {
    /// Its unkeyed transactions, as the pipeline writes them again: without an epoch.
    fn written_again(self) -> (Singles, Timestamp, SinglesTag<T>) {
        let (positions, transactions): (Vec<usize>, Vec<Transaction>) = self.unkeyed.into_iter().unzip();
        let again = Singles { transactions, keys: None, partly_keyed: false };
        (again, self.now, SinglesTag::Again { tag: self.tag, count: self.count, positions })
    }
}

/// A group whose write has started.
struct InFlight<'a, K: GroupKind, T> {
    tag: T,
    now: Timestamp,
    /// The key epoch its write checks (it is checked again if the group is written again).
    keys: Option<KeyEpoch>,
    /// The state once it commits: what the group behind it is planned on.
    after: WriterState,
    /// Started while another write was in flight (sent behind it).
    behind: bool,
    /// No group is sent behind it ([`GroupKind::refusable_in_part`]).
    holds_back: bool,
    ids: HashSet<TransactionId>,
    planned: Arc<K>,
    write: MaybeDone<BoxFuture<'a, Result<(), StoreError>>>,
}

/// The newest write in flight, as the group behind it is planned on it.
struct Behind<'a> {
    after: &'a WriterState,
    ids: &'a HashSet<TransactionId>,
}

/// What became of a group handed to [`Ledger::start_group`].
enum Start<'a, K: GroupKind, T> {
    /// Its write is in flight.
    Flying(InFlight<'a, K, T>),
    /// Answered without a write in flight (refused, or nothing new to write).
    Answered(T, Result<K::Answered, IngestError>),
    /// It cannot be planned ahead: written the usual way once the writes
    /// before it are answered.
    InTurn(K::Group, Timestamp, T),
}

/// What the writes in flight and the caller's stream did first.
enum Event<G> {
    /// The oldest write in flight ended.
    Written,
    /// The next group, or the end of the stream.
    Next(Option<G>),
}

/// A finished write, taken out of flight.
struct Landed<K, T> {
    tag: T,
    now: Timestamp,
    keys: Option<KeyEpoch>,
    after: WriterState,
    /// Started while another write was in flight.
    behind: bool,
    outcome: Result<(), StoreError>,
    plan: K,
}

impl<S: LedgerStore> Ledger<S> {
    /// Writes groups of batch requests as they come from `groups`, each as
    /// [`ingest_batches`](Self::ingest_batches) writes it, and hands each
    /// group's answer, once durable or refused, to `answer` with its tag.
    /// Groups that are written are answered in the order they came; a group
    /// refused before anything is planned (a batch size, quarantine) is
    /// answered at once. Returns once `groups` has ended and every group is
    /// answered.
    ///
    /// Where the store [pipelines writes](LedgerStore::pipelines_writes), a
    /// group is planned on the state the write before it leaves and its rows
    /// are sent while that write commits (at most
    /// [`MAX_WRITES_IN_FLIGHT`] writes at once). A group that cannot be
    /// planned ahead — keys to check, ids that may be stored, an id also in a
    /// write in flight, the fast path paused after a fence — waits for the
    /// writes before it and is written the usual way, as is every group
    /// elsewhere. Every answer is the one groups written one after another
    /// would get.
    pub async fn ingest_batch_groups<T, G, F>(&self, groups: G, answer: F)
    where
        T: Send,
        G: Stream<Item = BatchGroup<T>> + Unpin + Send,
        F: FnMut(T, GroupAnswer) + Send,
    {
        let pipelines = self.store.pipelines_writes().await;
        self.ingest_groups::<JoinedPlan, T, _, _>(pipelines, groups, answer).await;
    }

    /// Writes groups of single transactions as they come from `groups`, each
    /// as [`ingest_each_with_keys`](Self::ingest_each_with_keys) writes it,
    /// and hands each group's answer, once durable or refused, to `answer`
    /// with its tag, in the order the groups came. Returns once `groups` has
    /// ended and every group is answered.
    ///
    /// Where the store [orders a ledger's fenced
    /// writes](LedgerStore::orders_fenced_writes) — on PostgreSQL, where the
    /// ledgers of a server share commits — and while other ledgers [share its
    /// commits](LedgerStore::shares_commits), a group is planned on the state
    /// the write before it leaves and sent at once (at most
    /// [`MAX_WRITES_IN_FLIGHT`] writes at once), so it goes in the commit
    /// after that write's rather than missing it. A group that cannot be
    /// planned ahead is written the usual way once the writes before it are
    /// answered. Every answer is the one groups written one after another
    /// would get.
    ///
    /// Keys: a group's write checks the oldest epoch among its transactions
    /// (it holds only if every cached key is current). When it has moved,
    /// nothing of the group is written; the transactions that carried an
    /// epoch are answered [`StoreError::KeysChanged`] each, and those whose
    /// keys were read from the store are written again at once without one
    /// (before any later group), so each is answered as if written alone.
    pub async fn ingest_single_groups<T, G, F>(&self, mut groups: G, mut answer: F)
    where
        T: Send,
        G: Stream<Item = SingleGroup<T>> + Unpin + Send,
        F: FnMut(T, SinglesAnswer) + Send,
    {
        let pipelines = self.store.orders_fenced_writes().await;
        // Groups whose key epoch had moved, waiting for their unkeyed
        // transactions to be written again: the stream below hands them to
        // the pipeline before the caller's next group.
        let again: Mutex<VecDeque<Caller<T>>> = Mutex::new(VecDeque::new());
        let next_again = || again.lock().unwrap_or_else(PoisonError::into_inner).pop_front();
        let tagged = futures_util::stream::poll_fn(|context| {
            if let Some(caller) = next_again() {
                return Poll::Ready(Some(caller.written_again()));
            }
            groups.poll_next_unpin(context).map(|group| group.map(SinglesTag::first))
        });
        let mut settle = |tag: SinglesTag<T>, outcome| match SinglesTag::settle(tag, outcome) {
            Settled::Answered(tag, answered) => answer(tag, answered),
            Settled::Again(caller) => again.lock().unwrap_or_else(PoisonError::into_inner).push_back(caller),
        };
        self.ingest_groups::<IndependentPlan, _, _, _>(pipelines, tagged, &mut settle).await;
        // Not reached while no group is sent behind one refusable in part
        // (the caller's stream cannot end while such a group is in flight);
        // kept so that no caller is ever left unanswered.
        while let Some(caller) = next_again() {
            let (again, now, tag) = caller.written_again();
            let outcome = self.ingest_each_with_keys(again.transactions, now, again.keys).await;
            settle(tag, outcome);
        }
    }

    /// The pipeline both kinds of group share.
    async fn ingest_groups<K, T, G, F>(&self, pipelines: bool, mut groups: G, mut answer: F)
    where
        K: GroupKind,
        T: Send,
        G: Stream<Item = (K::Group, Timestamp, T)> + Unpin + Send,
        F: FnMut(T, Result<K::Answered, IngestError>) + Send,
    {
        if !pipelines {
            while let Some((group, now, tag)) = groups.next().await {
                let outcome = match K::refusal(self, &group) {
                    Some(refused) => Err(refused),
                    None => {
                        let mut writer = self.writer.lock().await;
                        K::in_turn(self, &mut writer, group, now).await
                    }
                };
                answer(tag, outcome);
            }
            return;
        }
        while let Some(first) = groups.next().await {
            // The lock is held while writes are in flight and let go between runs.
            let mut writer = self.writer.lock().await;
            if self.write_run::<K, T, G, F>(&mut writer, first, &mut groups, &mut answer).await {
                return;
            }
        }
    }

    /// Writes `first` and the groups that come while writes are in flight;
    /// returns when none is, saying whether `groups` has ended.
    async fn write_run<K, T, G, F>(
        &self,
        writer: &mut Writer,
        first: (K::Group, Timestamp, T),
        groups: &mut G,
        answer: &mut F,
    ) -> bool
    where
        K: GroupKind,
        T: Send,
        G: Stream<Item = (K::Group, Timestamp, T)> + Unpin + Send,
        F: FnMut(T, Result<K::Answered, IngestError>) + Send,
    {
        let mut in_flight: VecDeque<InFlight<'_, K, T>> = VecDeque::new();
        let mut next = Some(first);
        let mut ended = false;
        loop {
            if let Some((group, now, tag)) = next.take() {
                let behind = in_flight.back().map(|flight| Behind { after: &flight.after, ids: &flight.ids });
                match self.start_group::<K, T>(writer, behind, group, now, tag).await {
                    Start::Flying(flight) => in_flight.push_back(flight),
                    Start::Answered(tag, group_answer) => answer(tag, group_answer),
                    Start::InTurn(group, now, tag) => {
                        while !in_flight.is_empty() {
                            oldest_written(&mut in_flight).await;
                            self.settle_oldest(writer, &mut in_flight, answer).await;
                        }
                        answer(tag, K::in_turn(self, writer, group, now).await);
                    }
                }
            }
            if in_flight.is_empty() {
                return ended;
            }
            let room = in_flight.len() < MAX_WRITES_IN_FLIGHT
                && !ended
                && !in_flight.back().is_some_and(|flight| flight.holds_back);
            let event = poll_fn(|context| {
                if drive_until_oldest_ended(&mut in_flight, context).is_ready() {
                    return Poll::Ready(Event::Written);
                }
                if room && let Poll::Ready(group) = groups.poll_next_unpin(context) {
                    return Poll::Ready(Event::Next(group));
                }
                Poll::Pending
            })
            .await;
            match event {
                Event::Written => self.settle_oldest(writer, &mut in_flight, answer).await,
                Event::Next(Some(group)) => next = Some(group),
                Event::Next(None) => ended = true,
            }
        }
    }

    /// Plans a group on the state `behind` (the newest write in flight)
    /// leaves, or on the kept state, and starts its write.
    async fn start_group<K: GroupKind, T>(
        &self,
        writer: &mut Writer,
        behind: Option<Behind<'_>>,
        group: K::Group,
        now: Timestamp,
        tag: T,
    ) -> Start<'_, K, T> {
        if let Some(refused) = K::refusal(self, &group) {
            return Start::Answered(tag, Err(refused));
        }
        if writer.pause.is_paused() || !self.presume_new() || !K::plans_ahead(self, &group).await {
            return Start::InTurn(group, now, tag);
        }
        // Hashed once, for three uses: are they distinct, does the write in
        // flight hold one, and (kept) does the group behind this one.
        let listed = K::ids(&group);
        let rows = listed.len();
        let ids: HashSet<TransactionId> = listed.into_iter().collect();
        if behind.as_ref().is_some_and(|flight| !ids.is_disjoint(flight.ids)) {
            // Its unique key could make each write wait on the other's rows
            // (this one waits for that one's commit anyway): a deadlock the
            // database breaks only after a second. It goes in turn.
            return Start::InTurn(group, now, tag);
        }
        let state = match behind {
            Some(ref flight) => flight.after.clone(),
            None => match writer.state.take() {
                Some(state) => state,
                None => match self.store.writer_state().await {
                    Ok(state) => state,
                    Err(error) => return Start::Answered(tag, Err(error.into())),
                },
            },
        };
        // What `can_presume_new` checks, on the set: ids distinct, and room for them.
        if ids.len() != rows || !new_entries_fit(&state.head, rows) {
            if behind.is_none() {
                writer.state = Some(state);
            }
            return Start::InTurn(group, now, tag);
        }
        let fence = state.fence();
        let snapshot = state.into_snapshot();
        let holds_back = K::refusable_in_part(&group);
        let (submission, keys) = K::into_submission(group);
        let planned = match K::PLANNER(&snapshot, submission, now) {
            Ok(planned) => planned,
            Err(refusal) => {
                // Only a tree that cannot be extended refuses a whole group,
                // and the state behind a write in flight is the one its plan
                // extended; the kept state stays as it was.
                if behind.is_none() {
                    writer.state = Some(WriterState::from_snapshot(snapshot));
                }
                // A key not yet confirmed hears of its own refusal, not the group's.
                let refused = if keys.is_some() { StoreError::KeysChanged.into() } else { refusal.into() };
                return Start::Answered(tag, Err(refused));
            }
        };
        if planned.write().new_entries().is_empty() {
            // Every item refused on its own (ids distinct and presumed new,
            // so not reached from the appender): nothing to write.
            if behind.is_none() {
                writer.state = Some(WriterState::from_snapshot(snapshot));
            }
            // Nothing written, so nothing checked the key epoch.
            let answered = if keys.is_some() {
                Err(StoreError::KeysChanged.into())
            } else {
                Ok(K::answered(planned.answer()))
            };
            return Start::Answered(tag, answered);
        }
        let after = WriterState::after(snapshot, planned.write());
        let planned = Arc::new(planned);
        let plan = Arc::clone(&planned);
        let store = &self.store;
        let is_behind = behind.is_some();
        let write = async move {
            match is_behind {
                false => store.write_fenced(&fence, keys, plan.write()).await,
                true => K::write_behind(store, &fence, keys, plan.write()).await,
            }
        }
        .boxed();
        Start::Flying(InFlight {
            tag,
            now,
            keys,
            after,
            behind: is_behind,
            holds_back,
            ids,
            planned,
            write: MaybeDone::Future(write),
        })
    }

    /// Answers the oldest write in flight, which has ended. When it failed,
    /// the writes behind it (planned on it) are waited for and written again
    /// the usual way, as is the failed one.
    async fn settle_oldest<K: GroupKind, T, F>(
        &self,
        writer: &mut Writer,
        in_flight: &mut VecDeque<InFlight<'_, K, T>>,
        answer: &mut F,
    ) where
        F: FnMut(T, Result<K::Answered, IngestError>),
    {
        let Some(oldest) = in_flight.pop_front() else { return };
        let landed = match land(oldest) {
            Ok(landed) => landed,
            Err((tag, problem)) => {
                writer.state = None;
                answer(tag, Err(problem));
                return;
            }
        };
        let Landed { tag, now, keys, after, behind, outcome, plan } = landed;
        let error = match outcome {
            Ok(()) => {
                writer.state = Some(after);
                writer.pause.succeeded();
                self.record_write(false);
                answer(tag, Ok(K::answered(plan.answer())));
                return;
            }
            Err(StoreError::Fenced) if behind => {
                // The write before it committed, so this one's fence would
                // hold; but its rows can reach the head before that write
                // has locked it, and are then refused. Written again from the
                // state that write left: a fence there is another writer's.
                let landed = Landed { tag, now, keys, after, behind, outcome: Err(StoreError::Fenced), plan };
                return self.write_again(writer, Ok(landed), answer).await;
            }
            Err(error) => error,
        };
        // Every write behind it expected the state it would have left.
        join_all(in_flight.iter_mut().map(|flight| &mut flight.write)).await;
        let behind: Vec<_> = in_flight.drain(..).map(land).collect();
        // A stored id or a moved fence is reported only once the key epoch
        // held (the write checks it first), so the locking path may write.
        let look_up = match error {
            StoreError::AlreadyStored => {
                self.record_write(true);
                true
            }
            StoreError::Fenced => {
                self.fenced_writes.fetch_add(1, Ordering::Relaxed);
                writer.pause.fenced();
                false
            }
            other => {
                // The outcome may be unknown: the state is read again next time.
                writer.state = None;
                answer(tag, Err(other.into()));
                for landed in behind {
                    self.write_again(writer, landed, answer).await;
                }
                return;
            }
        };
        let redone = match plan.into_transactions() {
            Some(submission) => {
                let ids = submission.ids();
                self.append_locking(writer, submission, &ids, look_up, now, K::PLANNER).await
            }
            // Presumed new, every item was created: never.
            None => Err(StoreError::Contract("a refused write's plan lost its transactions".into()).into()),
        };
        answer(tag, redone.map(K::answered));
        for landed in behind {
            self.write_again(writer, landed, answer).await;
        }
    }

    /// A write that was behind a failed one: it failed too (its fence
    /// expected what the failed write would have left) and is written again,
    /// its key epoch checked again.
    async fn write_again<K: GroupKind, T, F>(
        &self,
        writer: &mut Writer,
        landed: Result<Landed<K, T>, (T, IngestError)>,
        answer: &mut F,
    ) where
        F: FnMut(T, Result<K::Answered, IngestError>),
    {
        match landed {
            Ok(Landed { tag, now, keys, outcome: Err(_), plan, .. }) => {
                let Some(submission) = plan.into_transactions() else {
                    writer.state = None;
                    let lost = StoreError::Contract("a refused write's plan lost its transactions".into());
                    return answer(tag, Err(lost.into()));
                };
                if let Err(refused) = self.check_writable(submission.rows()) {
                    return answer(tag, Err(refused));
                }
                let outcome = self.append_locked(writer, submission, now, keys, K::PLANNER).await;
                answer(tag, outcome.map(K::answered));
            }
            Ok(Landed { tag, outcome: Ok(()), plan, .. }) => {
                // Its fence held after all: it is written; where the ledger
                // stands now is read again.
                writer.state = None;
                answer(tag, Ok(K::answered(plan.answer())));
            }
            Err((tag, problem)) => {
                writer.state = None;
                answer(tag, Err(problem));
            }
        }
    }
}

/// Waits until the oldest write in flight has ended, driving the others too.
async fn oldest_written<K: GroupKind, T>(in_flight: &mut VecDeque<InFlight<'_, K, T>>) {
    poll_fn(|context| drive_until_oldest_ended(in_flight, context)).await;
}

/// Drives every write in flight (each sends its rows while the ones ahead
/// commit); ready once the oldest has ended, or none is in flight.
fn drive_until_oldest_ended<K: GroupKind, T>(
    in_flight: &mut VecDeque<InFlight<'_, K, T>>,
    context: &mut Context<'_>,
) -> Poll<()> {
    for flight in in_flight.iter_mut() {
        // A finished write stays finished (MaybeDone) until taken.
        let _ = flight.write.poll_unpin(context);
    }
    match in_flight.front() {
        Some(flight) if !matches!(flight.write, MaybeDone::Done(_)) => Poll::Pending,
        _ => Poll::Ready(()),
    }
}

/// Takes an ended write out of flight: its outcome and its plan back.
fn land<K: GroupKind, T>(flight: InFlight<'_, K, T>) -> Result<Landed<K, T>, (T, IngestError)> {
    let InFlight { tag, now, keys, after, behind, planned, mut write, .. } = flight;
    let outcome = Pin::new(&mut write).take_output();
    // The write held the other reference to the plan.
    drop(write);
    match (outcome, Arc::try_unwrap(planned)) {
        (Some(outcome), Ok(plan)) => Ok(Landed { tag, now, keys, after, behind, outcome, plan }),
        _ => Err((
            tag,
            IngestError::Store(StoreError::Contract("a pipelined write was taken before it ended".into())),
        )),
    }
}
