//! Scenario 2 (`append`): the core and the PostgreSQL adapter at several batch sizes, vs raw COPY of the same chained rows.

use super::*;

/// The adapter's batch sizes (scenario 2).
pub(super) const APPEND_BATCH_SIZES: [u64; 4] = [1, 100, 1_000, 8_000];
/// Scenario 2: `count` transactions through the core service and the
/// PostgreSQL adapter, `batch` per commit; returns entries/s and the ledger's URL.
pub(super) async fn adapter_append(
    server: &BenchServer,
    batch: u64,
    count: u64,
) -> anyhow::Result<(f64, String)> {
    adapter_append_with(server, batch, count, IdempotencyStrategy::default()).await
}

/// [`adapter_append`] with stored ids decided by `strategy` (the lever rows:
/// `LookupFirst` is the path before issue 27).
pub(super) async fn adapter_append_with(
    server: &BenchServer,
    batch: u64,
    count: u64,
    strategy: IdempotencyStrategy,
) -> anyhow::Result<(f64, String)> {
    let url = server.ledger_database(&format!("append_{batch}")).await?;
    let pool = connect(&url, 2).await?;
    let ledger = Ledger::new(PgLedger::new(pool.clone())).with_idempotency(strategy);
    server.settle().await?;
    let elapsed = timed_ingest(&ledger, 0, 0, batch, count).await?;
    pool.close().await;
    Ok((count as f64 / elapsed.as_secs_f64(), url))
}

/// Appends `count` transactions of `stream`, numbered from `first`, through
/// the core in batches of `batch`; returns the time spent inside `ingest`
/// only (generating the transactions is the client's cost, not the ledger's).
pub(super) async fn timed_ingest<S: invario_core::LedgerStore>(
    ledger: &Ledger<S>,
    stream: u64,
    first: u64,
    batch: u64,
    count: u64,
) -> anyhow::Result<Duration> {
    let mut elapsed = Duration::ZERO;
    let mut done = 0;
    while done < count {
        let size = batch.min(count - done);
        let transactions = workload::transactions(stream, first + done, size)?;
        let recorded_at = now()?;
        let started = Instant::now();
        let receipts = ledger.ingest(transactions, recorded_at).await?;
        elapsed += started.elapsed();
        ensure!(receipts.len() as u64 == size, "the adapter acknowledged {} of {size}", receipts.len());
        done += size;
    }
    Ok(elapsed)
}

/// Every how many items a replay-heavy batch re-sends a recorded transaction.
pub(super) const REPLAY_EVERY: u64 = 10;

/// Scenario 2's replay-heavy case: `count` items in batches of `batch`, every
/// [`REPLAY_EVERY`]th of which re-sends (same content) a transaction the
/// previous batch recorded — what a client retrying after timeouts sends, and
/// what optimistic idempotency pays twice for. Items/s, replays included.
pub(super) async fn replay_heavy_append(
    server: &BenchServer,
    batch: u64,
    count: u64,
    strategy: IdempotencyStrategy,
) -> anyhow::Result<f64> {
    let url = server.ledger_database(&format!("append_replays_{batch}")).await?;
    let pool = connect(&url, 2).await?;
    let ledger = Ledger::new(PgLedger::new(pool.clone())).with_idempotency(strategy);
    // The first batch has nothing to re-send: it is recorded outside the clock.
    ledger.ingest(workload::transactions(0, 0, batch)?, now()?).await?;
    server.settle().await?;
    let (mut elapsed, mut done, mut next_new) = (Duration::ZERO, 0, batch);
    while done < count {
        let size = batch.min(count - done);
        let mut transactions = workload::transactions(0, next_new, size)?;
        for (index, slot) in transactions.iter_mut().enumerate().step_by(REPLAY_EVERY as usize) {
            // The previous batch recorded every number of its range but those
            // at multiples of REPLAY_EVERY (themselves replays): the one after is.
            let recorded = next_new - batch + index as u64 + 1;
            *slot = workload::transactions(0, recorded, 1)?.remove(0);
        }
        let recorded_at = now()?;
        let started = Instant::now();
        let receipts = ledger.ingest(transactions, recorded_at).await?;
        elapsed += started.elapsed();
        ensure!(receipts.len() as u64 == size, "the adapter answered {} of {size}", receipts.len());
        next_new += size;
        done += size;
    }
    pool.close().await;
    server.discard(&url).await?;
    Ok(count as f64 / elapsed.as_secs_f64())
}

/// Scenario 2's baseline: the same chained rows, COPY'd into tables with the
/// same columns, constraints and indexes (no triggers), 8,000 rows per commit.
pub(super) async fn raw_copy(server: &BenchServer, count: u64) -> anyhow::Result<f64> {
    let url = server.ledger_database("raw_copy").await?;
    let mut connection = PgConnection::connect(&url).await?;
    sqlx::raw_sql(
        "CREATE TABLE raw_transactions (LIKE transactions INCLUDING ALL); \
         CREATE TABLE raw_entries (LIKE ledger_entries INCLUDING ALL); \
         ALTER TABLE raw_transactions ALTER COLUMN ledger_id SET DEFAULT 'default'; \
         ALTER TABLE raw_entries ALTER COLUMN ledger_id SET DEFAULT 'default';",
    )
    .execute(&mut connection)
    .await?;
    server.settle().await?;
    let mut rows = CopyRows::default();
    let mut checkpoint = ChainPosition::GENESIS;
    let mut elapsed = Duration::ZERO;
    let mut first = 0;
    while first < count {
        let size = 8_000.min(count - first);
        checkpoint =
            workload::copy_rows(checkpoint, workload::transactions(0, first, size)?, now()?, &mut rows)?;
        let started = Instant::now();
        let mut transaction = connection.begin().await?;
        let mut copy = transaction
            .copy_in_raw(
                "COPY raw_transactions (transaction_id, amount, currency, occurred_at, metadata) FROM STDIN",
            )
            .await?;
        copy.send(rows.transactions.as_bytes()).await?;
        copy.finish().await?;
        let mut copy = transaction
            .copy_in_raw(
                "COPY raw_entries (sequence_number, transaction_id, prev_hash, entry_hash, recorded_at) FROM STDIN",
            )
            .await?;
        copy.send(rows.entries.as_bytes()).await?;
        copy.finish().await?;
        transaction.commit().await?;
        elapsed += started.elapsed();
        first += size;
    }
    let _ = connection.close().await;
    server.discard(&url).await?;
    Ok(count as f64 / elapsed.as_secs_f64())
}
