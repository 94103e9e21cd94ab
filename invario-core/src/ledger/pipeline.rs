//! Batch groups written back to back (issue 27, lever L5).
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

use std::collections::{HashSet, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use futures_util::future::{BoxFuture, FutureExt, MaybeDone, join_all, poll_fn};
use futures_util::stream::{Stream, StreamExt};

use super::{BatchRequest, IngestError, Ledger, Planned, Submission, Writer, answers, group_problem};
use crate::append::{JoinedPlan, Receipt, plan_append_batches};
use crate::idempotency::new_entries_fit;
use crate::ports::{LedgerStore, StoreError};
use crate::timestamp::Timestamp;
use crate::transaction::{Transaction, TransactionId};
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

/// A group whose write has started.
struct InFlight<'a, T> {
    tag: T,
    now: Timestamp,
    /// The state once it commits: what the group behind it is planned on.
    after: WriterState,
    /// Started while another write was in flight (sent behind it).
    behind: bool,
    ids: HashSet<TransactionId>,
    planned: Arc<JoinedPlan>,
    write: MaybeDone<BoxFuture<'a, Result<(), StoreError>>>,
}

/// The newest write in flight, as the group behind it is planned on it.
struct Behind<'a> {
    after: &'a WriterState,
    ids: &'a HashSet<TransactionId>,
}

/// What became of a group handed to [`Ledger::start_group`].
enum Start<'a, T> {
    /// Its write is in flight.
    Flying(InFlight<'a, T>),
    /// Answered without a write in flight (refused, or nothing new to write).
    Answered(T, GroupAnswer),
    /// It cannot be planned ahead: written the usual way once the writes
    /// before it are answered.
    InTurn(BatchGroup<T>),
}

/// What the writes in flight and the caller's stream did first.
enum Event<T> {
    /// The oldest write in flight ended.
    Written,
    /// The next group, or the end of the stream.
    Next(Option<BatchGroup<T>>),
}

/// A finished write, taken out of flight.
struct Landed<T> {
    tag: T,
    now: Timestamp,
    after: WriterState,
    /// Started while another write was in flight.
    behind: bool,
    outcome: Result<(), StoreError>,
    plan: JoinedPlan,
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
    pub async fn ingest_batch_groups<T, G, F>(&self, mut groups: G, mut answer: F)
    where
        T: Send,
        G: Stream<Item = BatchGroup<T>> + Unpin + Send,
        F: FnMut(T, GroupAnswer) + Send,
    {
        if !self.store.pipelines_writes().await {
            while let Some((requests, now, tag)) = groups.next().await {
                answer(tag, self.ingest_batches(requests, now).await);
            }
            return;
        }
        while let Some(first) = groups.next().await {
            // The lock is held while writes are in flight and let go between runs.
            let mut writer = self.writer.lock().await;
            if self.write_run(&mut writer, first, &mut groups, &mut answer).await {
                return;
            }
        }
    }

    /// Writes `first` and the groups that come while writes are in flight;
    /// returns when none is, saying whether `groups` has ended.
    async fn write_run<T, G, F>(
        &self,
        writer: &mut Writer,
        first: BatchGroup<T>,
        groups: &mut G,
        answer: &mut F,
    ) -> bool
    where
        T: Send,
        G: Stream<Item = BatchGroup<T>> + Unpin + Send,
        F: FnMut(T, GroupAnswer) + Send,
    {
        let mut in_flight: VecDeque<InFlight<'_, T>> = VecDeque::new();
        let mut next = Some(first);
        let mut ended = false;
        loop {
            if let Some((requests, now, tag)) = next.take() {
                let behind = in_flight.back().map(|flight| Behind { after: &flight.after, ids: &flight.ids });
                match self.start_group(writer, behind, requests, now, tag).await {
                    Start::Flying(flight) => in_flight.push_back(flight),
                    Start::Answered(tag, group_answer) => answer(tag, group_answer),
                    Start::InTurn((requests, now, tag)) => {
                        while !in_flight.is_empty() {
                            oldest_written(&mut in_flight).await;
                            self.settle_oldest(writer, &mut in_flight, answer).await;
                        }
                        answer(tag, self.batches_locked(writer, requests, now).await);
                    }
                }
            }
            if in_flight.is_empty() {
                return ended;
            }
            let room = in_flight.len() < MAX_WRITES_IN_FLIGHT && !ended;
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
    async fn start_group<T>(
        &self,
        writer: &mut Writer,
        behind: Option<Behind<'_>>,
        requests: Vec<BatchRequest>,
        now: Timestamp,
        tag: T,
    ) -> Start<'_, T> {
        // Refused before anything: the checks `ingest_batches` makes first.
        if let Some(problem) = group_problem(&requests) {
            return Start::Answered(tag, Err(problem));
        }
        let rows: usize = requests.iter().map(|request| request.transactions.len()).sum();
        if let Err(refused) = self.check_writable(rows) {
            return Start::Answered(tag, Err(refused));
        }
        let has_keys = requests.iter().any(|request| request.keys.is_some());
        if has_keys || writer.pause.is_paused() || !self.presume_new() {
            return Start::InTurn((requests, now, tag));
        }
        // Hashed once, for three uses: are they distinct, does the write in
        // flight hold one, and (kept) does the group behind this one.
        let ids: HashSet<TransactionId> = requests
            .iter()
            .flat_map(|request| &request.transactions)
            .map(|item| item.transaction_id)
            .collect();
        if behind.as_ref().is_some_and(|flight| !ids.is_disjoint(flight.ids)) {
            // Its unique key could make each write wait on the other's rows
            // (this one waits for that one's commit anyway): a deadlock the
            // database breaks only after a second. It goes in turn.
            return Start::InTurn((requests, now, tag));
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
            return Start::InTurn((requests, now, tag));
        }
        let fence = state.fence();
        let snapshot = state.into_snapshot();
        let batches: Vec<Vec<Transaction>> =
            requests.into_iter().map(|request| request.transactions).collect();
        let planned = match plan_append_batches(&snapshot, batches, now) {
            Ok(planned) => planned,
            Err(refusal) => {
                // Only a tree that cannot be extended refuses a whole group,
                // and the state behind a write in flight is the one its plan
                // extended; the kept state stays as it was.
                if behind.is_none() {
                    writer.state = Some(WriterState::from_snapshot(snapshot));
                }
                return Start::Answered(tag, Err(refusal.into()));
            }
        };
        if planned.write().new_entries().is_empty() {
            // Every batch refused on its own items (ids distinct and presumed
            // new, so not reached from the appender): nothing to write.
            if behind.is_none() {
                writer.state = Some(WriterState::from_snapshot(snapshot));
            }
            return Start::Answered(tag, Ok(answers(planned.answer())));
        }
        let after = WriterState::after(snapshot, planned.write());
        let planned = Arc::new(planned);
        let plan = Arc::clone(&planned);
        let store = &self.store;
        let write = match behind {
            None => async move { store.write_fenced(&fence, None, JoinedPlan::write(&plan)).await }.boxed(),
            Some(_) => {
                async move { store.write_fenced_behind(&fence, JoinedPlan::write(&plan)).await }.boxed()
            }
        };
        Start::Flying(InFlight {
            tag,
            now,
            after,
            behind: behind.is_some(),
            ids,
            planned,
            write: MaybeDone::Future(write),
        })
    }

    /// Answers the oldest write in flight, which has ended. When it failed,
    /// the writes behind it (planned on it) are waited for and written again
    /// the usual way, as is the failed one.
    async fn settle_oldest<T, F>(
        &self,
        writer: &mut Writer,
        in_flight: &mut VecDeque<InFlight<'_, T>>,
        answer: &mut F,
    ) where
        F: FnMut(T, GroupAnswer),
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
        let Landed { tag, now, after, behind, outcome, plan } = landed;
        let error = match outcome {
            Ok(()) => {
                writer.state = Some(after);
                writer.pause.succeeded();
                self.record_write(false);
                answer(tag, Ok(answers(plan.answer())));
                return;
            }
            Err(StoreError::Fenced) if behind => {
                // The write before it committed, so this one's fence would
                // hold; but its rows can reach the head before that write
                // has locked it, and are then refused. Written again from the
                // state that write left: a fence there is another writer's.
                let landed = Landed { tag, now, after, behind, outcome: Err(StoreError::Fenced), plan };
                return self.write_again(writer, Ok(landed), answer).await;
            }
            Err(error) => error,
        };
        // Every write behind it expected the state it would have left.
        join_all(in_flight.iter_mut().map(|flight| &mut flight.write)).await;
        let behind: Vec<_> = in_flight.drain(..).map(land).collect();
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
        let batches = plan.into_batches();
        let ids = batches.ids();
        let redone = self.append_locking(writer, batches, &ids, look_up, now, plan_append_batches).await;
        answer(tag, redone.map(answers));
        for landed in behind {
            self.write_again(writer, landed, answer).await;
        }
    }

    /// A write that was behind a failed one: it failed too (its fence
    /// expected what the failed write would have left) and is written again.
    async fn write_again<T, F>(
        &self,
        writer: &mut Writer,
        landed: Result<Landed<T>, (T, IngestError)>,
        answer: &mut F,
    ) where
        F: FnMut(T, GroupAnswer),
    {
        match landed {
            Ok(Landed { tag, now, outcome: Err(_), plan, .. }) => {
                let batches = plan.into_batches();
                if let Err(refused) = self.check_writable(batches.rows()) {
                    return answer(tag, Err(refused));
                }
                let outcome = self.append_locked(writer, batches, now, None, plan_append_batches).await;
                answer(tag, outcome.map(answers));
            }
            Ok(Landed { tag, outcome: Ok(()), plan, .. }) => {
                // Its fence held after all: it is written; where the ledger
                // stands now is read again.
                writer.state = None;
                answer(tag, Ok(answers(plan.answer())));
            }
            Err((tag, problem)) => {
                writer.state = None;
                answer(tag, Err(problem));
            }
        }
    }
}

/// Waits until the oldest write in flight has ended, driving the others too.
async fn oldest_written<T>(in_flight: &mut VecDeque<InFlight<'_, T>>) {
    poll_fn(|context| drive_until_oldest_ended(in_flight, context)).await;
}

/// Drives every write in flight (each sends its rows while the ones ahead
/// commit); ready once the oldest has ended, or none is in flight.
fn drive_until_oldest_ended<T>(
    in_flight: &mut VecDeque<InFlight<'_, T>>,
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
fn land<T>(flight: InFlight<'_, T>) -> Result<Landed<T>, (T, IngestError)> {
    let InFlight { tag, now, after, behind, planned, mut write, .. } = flight;
    let outcome = Pin::new(&mut write).take_output();
    // The write held the other reference to the plan.
    drop(write);
    match (outcome, Arc::try_unwrap(planned)) {
        (Some(outcome), Ok(plan)) => Ok(Landed { tag, now, after, behind, outcome, plan }),
        _ => Err((
            tag,
            IngestError::Store(StoreError::Contract("a pipelined write was taken before it ended".into())),
        )),
    }
}
