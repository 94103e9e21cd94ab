//! The nine scenarios of BENCHMARKS.md, each measured beside its baseline.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail, ensure};
use futures_util::StreamExt as _;
use invario_core::{
    Checkpoint, DEFAULT_LEDGER, EntryHash, Ledger, LedgerEntry, StoredEntry, StoredTransaction, Timestamp,
    encode_entry_v1, entry_hash_v1,
};
use invario_postgres::PgLedger;
use sha2::{Digest as _, Sha256};
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

use crate::database::{BenchServer, connect};
use crate::processes::{self, ServeOptions, Server};
use crate::report::{Latencies, Measurement};
use crate::workload::{self, CopyRows};

/// The adapter's batch sizes (scenario 2).
const APPEND_BATCH_SIZES: [u64; 4] = [1, 100, 1_000, 8_000];
/// Transactions per `POST /v1/transactions/batch` (scenario 3).
const HTTP_BATCH_SIZE: u64 = 1_000;
/// Concurrent batch clients (scenario 3).
const HTTP_BATCH_CLIENTS: u64 = 4;
/// The concurrency level the group-commit targets are set at (scenario 4).
const TARGET_CLIENTS: usize = 64;
/// The concurrency level the latency target is set at (scenario 4).
const P99_TARGET_CLIENTS: usize = 256;
/// The server's memory budget under load (scenario 6).
const SERVER_RSS_BUDGET_KIB: u64 = 64 * 1024;
/// Connections the DIY chain leaves to everything else on the server.
const RESERVED_CONNECTIONS: u32 = 10;
/// Stream ids keep the transaction ids of different writers apart.
const STREAM_GROUP_COMMIT: u64 = 1;
const STREAM_NO_GROUP_COMMIT: u64 = 2;
const STREAM_DIY: u64 = 3;
const STREAM_EMBEDDED: u64 = 4;
const STREAM_KEY_CACHE_OFF: u64 = 7;
const STREAM_GROWTH: u64 = 8;
/// The embedded default's append batch (scenario 8).
const EMBEDDED_BATCH: u64 = 1_000;
/// The embedded default's HTTP concurrency (scenario 8).
const EMBEDDED_CLIENTS: usize = 16;

/// What a run is asked to do.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Which scenarios to run.
    pub(crate) scenarios: Vec<u8>,
    /// A Citus coordinator's database scenario 10 also runs on (migrated by it).
    pub(crate) citus_url: Option<String>,
    pub(crate) entries: u64,
    pub(crate) duration: Duration,
    pub(crate) clients: Vec<usize>,
    /// The ledger sizes scenario 9 measures at, smallest first.
    pub(crate) growth_sizes: Vec<u64>,
    pub(crate) invario: PathBuf,
}

impl Plan {
    /// One commit per transaction is slow at any size, so batch 1 appends a hundredth.
    fn append_count(&self, batch: u64) -> u64 {
        if batch == 1 { (self.entries / 100).max(100).min(self.entries) } else { self.entries }
    }
}

/// Runs every scenario in order and returns the measurements.
pub(crate) async fn run_all(
    plan: &Plan,
    server: &BenchServer,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Vec<Measurement>> {
    let mut results = Vec::new();
    let wants = |scenario: u8| plan.scenarios.contains(&scenario);

    if wants(1) {
        progress("1/10 hash chain in the core");
        results.extend(core_hashing(plan.entries)?);
    }

    // Scenarios 2 and 3 compare with the same COPY, measured once.
    let copy_rate = if wants(2) || wants(3) {
        progress("2/10 raw COPY baseline");
        Some(raw_copy(server, plan.entries).await?)
    } else {
        None
    };
    let mut full_ledger = None;
    if let (true, Some(copy_rate)) = (wants(2), copy_rate) {
        progress("2/10 adapter append vs raw COPY");
        for batch in APPEND_BATCH_SIZES {
            let count = plan.append_count(batch);
            let (rate, url) = adapter_append(server, batch, count).await?;
            let mut row = Measurement::new("2 adapter append", format!("batch {batch}"), rate, "entries/s")
                .over(count)
                .against("raw COPY", copy_rate);
            if batch == 8_000 {
                row = row.target_ratio(0.9);
                full_ledger = Some(url);
            } else {
                server.discard(&url).await?;
            }
            results.push(row);
        }
        results.push(
            Measurement::new(
                "2 adapter append",
                "raw COPY, 8,000 rows per commit (baseline)",
                copy_rate,
                "entries/s",
            )
            .over(plan.entries),
        );
    }

    if let (true, Some(copy_rate)) = (wants(3), copy_rate) {
        progress("3/10 HTTP batch ingest");
        let batch_rate = http_batch_ingest(plan, server).await?;
        results.push(
            Measurement::new("3 HTTP batch", "4 clients × 1,000 per POST", batch_rate, "entries/s")
                .over(plan.entries)
                .against("raw COPY", copy_rate)
                .target_ratio(0.8),
        );
    }

    let mut server_peak = None;
    if wants(4) {
        progress("4/10 HTTP single ingest: group commit on, off, DIY trigger chain");
        let (single, peak) = http_single_ingest(plan, server).await?;
        results.extend(single);
        server_peak = Some(peak);
    }

    if wants(5) || wants(6) || wants(7) {
        let full_ledger = match full_ledger {
            Some(url) => url,
            // Without scenario 2 the ledger is built the same way, untimed.
            None => adapter_append(server, 8_000, plan.entries).await?.1,
        };
        if wants(5) {
            progress("5/10 full verification");
            results.extend(full_verification(plan, server, &full_ledger).await?);
        }
        if wants(6) {
            progress("6/10 memory");
            results.extend(memory(plan, server, &full_ledger, server_peak).await?);
        }
        if wants(7) {
            progress("7/10 Merkle tree: proof latency and backfill");
            results.extend(merkle_tree(plan, server, &full_ledger).await?);
        }
    }
    if wants(8) {
        progress("8/10 the embedded default (SQLite): adapter vs raw inserts, HTTP single");
        results.extend(embedded_default(plan).await?);
    }
    if wants(9) {
        results.extend(growth(plan, server, progress).await?);
    }
    if wants(10) {
        progress("10/10 many ledgers: 64 clients spread over 1, 4 and 16 ledgers");
        for (options, engine) in [
            (ServeOptions::DEFAULT, "PostgreSQL"),
            (ServeOptions::NO_GROUP_COMMIT, "PostgreSQL, group commit off"),
        ] {
            let url = server.ledger_database("many_ledgers").await?;
            results.extend(many_ledgers(plan, &url, engine, options).await?);
            server.discard(&url).await?;
        }
        if let Some(citus) = &plan.citus_url {
            progress("10/10 many ledgers on Citus");
            processes::migrate(&plan.invario, citus).await?;
            results.extend(many_ledgers(plan, citus, "Citus", ServeOptions::DEFAULT).await?);
        }
    }
    Ok(results)
}

/// The ledger counts scenario 10 spreads its clients over.
const LEDGER_COUNTS: [usize; 3] = [1, 4, 16];
const STREAM_MANY_LEDGERS: u64 = 9;

/// Scenario 10: `TARGET_CLIENTS` clients posting single transactions, client
/// `i` to ledger `i mod N`, for each N of [`LEDGER_COUNTS`], against one
/// `invario serve` on the database at `url` (`engine` names it): one chain is
/// one commit stream, so the aggregate should grow with ledgers that append
/// in parallel. Compared with one ledger in the same run.
async fn many_ledgers(
    plan: &Plan,
    url: &str,
    engine: &str,
    options: ServeOptions,
) -> anyhow::Result<Vec<Measurement>> {
    let names: Vec<String> =
        (0..LEDGER_COUNTS[LEDGER_COUNTS.len() - 1]).map(|n| format!("bench-{n}")).collect();
    for name in &names {
        processes::create_ledger(&plan.invario, url, name).await?;
    }
    let key = processes::create_key(&plan.invario, url).await?;
    let api = Server::start(&plan.invario, url, options).await?;
    let client = http_client()?;
    let mut rows = Vec::new();
    let mut one_ledger = None;
    // Ids differ per engine and per level: a Citus database keeps its ledgers between runs.
    let mut next_index =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros() as u64;
    for count in LEDGER_COUNTS {
        let endpoints: Vec<String> = names[..count]
            .iter()
            .map(|name| format!("{}/v1/ledgers/{name}/transactions", api.base_url))
            .collect();
        let (client, key) = (client.clone(), key.clone());
        let result = drive(TARGET_CLIENTS, plan.duration, next_index, move |index| {
            let endpoint = endpoints[(index as usize) % endpoints.len()].clone();
            let (client, key) = (client.clone(), key.clone());
            async move {
                let body = workload::transaction_json(STREAM_MANY_LEDGERS, index).to_string().into_bytes();
                post_created(&client, &endpoint, &key, body).await
            }
        })
        .await?;
        next_index = result.next_index;
        let mut row = Measurement::new(
            "10 many ledgers",
            format!("{engine}: {TARGET_CLIENTS} clients over {count} ledger(s)"),
            result.rate(),
            "tx/s",
        )
        .over(result.completed)
        .latencies(&result.latencies);
        match one_ledger {
            None => one_ledger = Some(result.rate()),
            Some(baseline) => row = row.against("1 ledger", baseline),
        }
        rows.push(row);
    }
    api.stop().await?;
    Ok(rows)
}

/// Entries appended (batch 1,000) to time the append rate at each size of scenario 9.
const GROWTH_APPEND_SAMPLE: u64 = 50_000;
/// Inclusion proofs asked at each size of scenario 9.
const GROWTH_PROOFS: u64 = 1_000;
/// How far a cost may drift between the smallest and the largest ledger (scenario 9).
const GROWTH_TOLERANCE: f64 = 1.15;

/// What scenario 9 saw at one ledger size.
struct GrowthPoint {
    size: u64,
    append_rate: f64,
    verify_rate: f64,
    scan_rate: f64,
    proof_p50_ms: f64,
    proof_p99_ms: f64,
    server_peak_kib: u64,
}

/// The `index`-th number in 1..=`bound` of a fixed-seed sequence: every run
/// asks for the same entries and sizes (scenarios 7 and 9).
fn pick(index: u64, bound: u64) -> u64 {
    let mixed = index.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ 0xD1B5_4A32_D192_ED03;
    1 + mixed % bound
}

/// Scenario 9: one ledger grown through each size of `--growth-sizes`; at
/// each, the append rate of the last entries that reached it (batch 1,000),
/// `invario verify` over all of it, the p99 of inclusion proofs at random
/// entries of the full tree, and the server's peak RSS through its start-up
/// sweep and those proofs. A cost that grows with the ledger is a bug.
async fn growth(
    plan: &Plan,
    server: &BenchServer,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Vec<Measurement>> {
    let url = server.ledger_database("growth").await?;
    let key = processes::create_key(&plan.invario, &url).await?;
    let pool = connect(&url, 2).await?;
    let ledger = Ledger::new(PgLedger::new(pool.clone()));
    let client = http_client()?;
    let mut points: Vec<GrowthPoint> = Vec::new();
    let mut size = 0;
    for &target in &plan.growth_sizes {
        progress(&format!("9/10 growth: filling to {target} entries"));
        let sample = GROWTH_APPEND_SAMPLE.min(target / 2).max(1);
        let fill = target.saturating_sub(sample).saturating_sub(size);
        timed_ingest(&ledger, STREAM_GROWTH, size, 8_000, fill).await?;
        size += fill;
        server.settle().await?;
        let sample = target - size;
        let elapsed = timed_ingest(&ledger, STREAM_GROWTH, size, 1_000, sample).await?;
        size += sample;

        progress(&format!("9/10 growth: verify, proofs and memory at {size} entries"));
        // The maintenance an operator's autovacuum would do anyway, done
        // before the clock instead of during it: vacuuming millions of fresh
        // rows while proofs are timed measures the vacuum, not the ledger.
        sqlx::raw_sql("VACUUM (ANALYZE)").execute(&pool).await?;
        server.settle().await?;
        let verify = processes::verify(&plan.invario, &url).await?;
        ensure!(verify.entries_checked == size, "verify checked {} of {size}", verify.entries_checked);
        let (scanned, scan_rate) = raw_ordered_scan(&url).await?;
        ensure!(scanned == size, "the raw scan read {scanned} rows of {size}");
        let api = Server::start(&plan.invario, &url, ServeOptions::DEFAULT).await?;
        let mut latencies = Latencies::default();
        for i in 0..GROWTH_PROOFS {
            let sequence = pick(i, size);
            let url = format!(
                "{}/v1/ledger/proof/inclusion?sequence_number={sequence}&tree_size={size}",
                api.base_url
            );
            let sent = Instant::now();
            get_ok(&client, &url, &key).await?;
            latencies.record(sent.elapsed());
        }
        let server_peak_kib = api.peak_rss_kib()?;
        api.stop().await?;
        points.push(GrowthPoint {
            size,
            append_rate: sample as f64 / elapsed.as_secs_f64(),
            verify_rate: verify.entries_checked as f64 / verify.elapsed.as_secs_f64(),
            scan_rate,
            proof_p50_ms: latencies.percentile_ms(50.0),
            proof_p99_ms: latencies.percentile_ms(99.0),
            server_peak_kib,
        });
    }
    pool.close().await;
    server.discard(&url).await?;
    Ok(growth_rows(&points))
}

/// One row per measure and size, each later size against the smallest.
fn growth_rows(points: &[GrowthPoint]) -> Vec<Measurement> {
    let Some(first) = points.first() else { return Vec::new() };
    // (name, unit, value at a point, true when a larger value is better,
    // judged: false for the baselines and figures shown to explain the others)
    type Measure = (&'static str, &'static str, fn(&GrowthPoint) -> f64, bool, bool);
    let measures: [Measure; 6] = [
        ("append rate, batch 1,000", "entries/s", |point| point.append_rate, true, true),
        ("`invario verify` rate", "entries/s", |point| point.verify_rate, true, true),
        ("raw ordered COPY scan (baseline)", "entries/s", |point| point.scan_rate, true, false),
        ("inclusion proof p50 (full tree, random entry)", "ms", |point| point.proof_p50_ms, false, false),
        ("inclusion proof p99 (full tree, random entry)", "ms", |point| point.proof_p99_ms, false, true),
        (
            "server peak RSS (start-up sweep + proofs)",
            "MiB",
            |point| point.server_peak_kib as f64 / 1024.0,
            false,
            true,
        ),
    ];
    let mut rows = Vec::new();
    for (name, unit, value, higher_is_better, judged) in measures {
        let baseline = value(first);
        for point in points {
            let mut row =
                Measurement::new("9 growth", format!("{name} at {} entries", point.size), value(point), unit);
            if point.size != first.size {
                let drift = if higher_is_better { baseline / value(point) } else { value(point) / baseline };
                row = row.against(format!("at {} entries", first.size), baseline);
                if judged {
                    row = row.target("flat (within 15 %)", drift <= GROWTH_TOLERANCE);
                }
            }
            rows.push(row);
        }
    }
    rows
}

/// Scenario 8: the embedded SQLite default, the path every new user tries
/// first. The adapter's append at batch 1,000 against the same chained rows
/// inserted into the same tables (the ledger's triggers dropped) in one
/// transaction per batch, with the same pragmas (WAL, `synchronous=FULL`);
/// then HTTP single requests from 16 clients with group commit on and off.
async fn embedded_default(plan: &Plan) -> anyhow::Result<Vec<Measurement>> {
    let folder = std::env::temp_dir().join(format!("invario-bench-sqlite-{}", std::process::id()));
    std::fs::create_dir_all(&folder)?;
    let file_url = |name: &str| format!("sqlite://{}", folder.join(name).display());
    let count = plan.entries;

    let raw_pool = invario_sqlite::connect(&file_url("raw.db")).await?;
    invario_sqlite::migrate(&raw_pool).await?;
    let triggers: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        .fetch_all(&raw_pool)
        .await?;
    for trigger in triggers {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TRIGGER \"{trigger}\""))).execute(&raw_pool).await?;
    }
    let mut position = Checkpoint::GENESIS;
    let mut raw_elapsed = Duration::ZERO;
    let mut first = 0;
    while first < count {
        let size = EMBEDDED_BATCH.min(count - first);
        let recorded_at = now()?;
        let mut entries = Vec::with_capacity(size as usize);
        for transaction in workload::transactions(STREAM_EMBEDDED, first, size)? {
            let entry = LedgerEntry::next(position, transaction, recorded_at)?;
            position = entry.checkpoint();
            entries.push(entry);
        }
        let started = Instant::now();
        let mut transaction = raw_pool.begin().await?;
        // The fastest plain way: one multi-row INSERT per table per 1,000 rows.
        let mut rows = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO transactions (ledger_id, transaction_id, amount, currency, occurred_at, metadata) ",
        );
        let metadata: Vec<String> = entries
            .iter()
            .map(|entry| serde_json::to_string(entry.transaction.metadata.as_map()))
            .collect::<Result<_, _>>()?;
        rows.push_values(entries.iter().zip(&metadata), |mut row, (entry, metadata)| {
            let transaction = &entry.transaction;
            row.push_bind(DEFAULT_LEDGER)
                .push_bind(transaction.transaction_id.to_string())
                .push_bind(transaction.amount.to_canonical_string())
                .push_bind(transaction.currency.code())
                .push_bind(transaction.occurred_at.map(|time| time.unix_micros()))
                .push_bind(metadata.as_str());
        });
        rows.build().execute(&mut *transaction).await?;
        let mut rows = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO ledger_entries (ledger_id, sequence_number, transaction_id, prev_hash, entry_hash, recorded_at) ",
        );
        let sequences: Vec<i64> =
            entries.iter().map(|entry| i64::try_from(entry.sequence_number)).collect::<Result<_, _>>()?;
        rows.push_values(entries.iter().zip(&sequences), |mut row, (entry, sequence)| {
            row.push_bind(DEFAULT_LEDGER)
                .push_bind(*sequence)
                .push_bind(entry.transaction.transaction_id.to_string())
                .push_bind(entry.prev_hash.as_bytes().as_slice())
                .push_bind(entry.entry_hash.as_bytes().as_slice())
                .push_bind(entry.recorded_at.unix_micros());
        });
        rows.build().execute(&mut *transaction).await?;
        transaction.commit().await?;
        raw_elapsed += started.elapsed();
        first += size;
    }
    raw_pool.close().await;
    let raw_rate = count as f64 / raw_elapsed.as_secs_f64();

    let pool = invario_sqlite::connect(&file_url("adapter.db")).await?;
    invario_sqlite::migrate(&pool).await?;
    let ledger = Ledger::new(invario_sqlite::SqliteLedger::new(pool.clone()));
    let elapsed = timed_ingest(&ledger, STREAM_EMBEDDED, 0, EMBEDDED_BATCH, count).await?;
    pool.close().await;
    let mut rows = vec![
        Measurement::new(
            "8 embedded (SQLite)",
            "adapter append, batch 1,000",
            count as f64 / elapsed.as_secs_f64(),
            "entries/s",
        )
        .over(count)
        .against("raw multi-row inserts", raw_rate)
        .target_ratio(0.8),
        Measurement::new(
            "8 embedded (SQLite)",
            "raw multi-row inserts, 1,000 rows per transaction (baseline)",
            raw_rate,
            "entries/s",
        )
        .over(count),
    ];

    let mut levels = Vec::new();
    for (options, stream) in [
        (ServeOptions::DEFAULT, STREAM_GROUP_COMMIT),
        (ServeOptions::NO_GROUP_COMMIT, STREAM_NO_GROUP_COMMIT),
    ] {
        let url = file_url(&format!("http_{}.db", options.group_commit_max));
        let setup = invario_sqlite::connect(&url).await?;
        invario_sqlite::migrate(&setup).await?;
        setup.close().await;
        let key = processes::create_key(&plan.invario, &url).await?;
        let api = Server::start(&plan.invario, &url, options).await?;
        let result =
            drive_singles(&api, &key, EMBEDDED_CLIENTS, plan.duration, STREAM_EMBEDDED + stream, 0).await?;
        api.stop().await?;
        levels.push(result);
    }
    let (grouped, ungrouped) = (&levels[0], &levels[1]);
    rows.push(
        Measurement::new(
            "8 embedded (SQLite)",
            "HTTP single, 16 clients, group commit",
            grouped.rate(),
            "tx/s",
        )
        .over(grouped.completed)
        .latencies(&grouped.latencies)
        .against("group commit off", ungrouped.rate())
        .target_ratio(10.0),
    );
    rows.push(
        Measurement::new(
            "8 embedded (SQLite)",
            "HTTP single, 16 clients, group commit off",
            ungrouped.rate(),
            "tx/s",
        )
        .over(ungrouped.completed)
        .latencies(&ungrouped.latencies),
    );
    let _ = std::fs::remove_dir_all(&folder);
    Ok(rows)
}

fn now() -> anyhow::Result<Timestamp> {
    let micros = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?.as_micros();
    Ok(Timestamp::from_unix_micros(i64::try_from(micros)?)?)
}

/// Scenario 1: the chain hash (encoding included) vs SHA-256 over pre-encoded bytes.
fn core_hashing(entries: u64) -> anyhow::Result<Vec<Measurement>> {
    // Rows as stored: the hash reads them exactly as the verifier does.
    let recorded_at = now()?;
    let sample: Vec<(StoredEntry, StoredTransaction)> =
        workload::transactions(0, 0, entries.clamp(1, 65_536))?
            .into_iter()
            .map(|transaction| {
                Ok(StoredTransaction::of(&LedgerEntry::next(Checkpoint::GENESIS, transaction, recorded_at)?))
            })
            .collect::<anyhow::Result<_>>()?;
    let encoded: Vec<Vec<u8>> = sample
        .iter()
        .enumerate()
        .map(|(index, (entry, transaction))| {
            encode_entry_v1(&EntryHash::GENESIS, index as u64 + 1, &entry.content(transaction))
        })
        .collect();
    let mean_bytes = encoded.iter().map(Vec::len).sum::<usize>() as f64 / encoded.len() as f64;

    let started = Instant::now();
    let mut previous = EntryHash::GENESIS;
    for sequence in 1..=entries {
        let (entry, transaction) = &sample[(sequence as usize - 1) % sample.len()];
        previous = entry_hash_v1(&previous, sequence, &entry.content(transaction));
    }
    std::hint::black_box(previous);
    let chain_rate = entries as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    for index in 0..entries as usize {
        std::hint::black_box(Sha256::digest(&encoded[index % encoded.len()]));
    }
    let sha_rate = entries as f64 / started.elapsed().as_secs_f64();

    Ok(vec![
        Measurement::new(
            "1 core hash",
            format!(
                "entry_hash_v1: encode + SHA-256 of {mean_bytes:.0} B ({:.0} vs {:.0} ns/entry)",
                1e9 / chain_rate,
                1e9 / sha_rate
            ),
            chain_rate,
            "entries/s",
        )
        .over(entries)
        .against("plain SHA-256 of the encoded bytes", sha_rate),
    ])
}

/// Scenario 2: `count` transactions through the core service and the
/// PostgreSQL adapter, `batch` per commit; returns entries/s and the ledger's URL.
async fn adapter_append(server: &BenchServer, batch: u64, count: u64) -> anyhow::Result<(f64, String)> {
    let url = server.ledger_database(&format!("append_{batch}")).await?;
    let pool = connect(&url, 2).await?;
    let ledger = Ledger::new(PgLedger::new(pool.clone()));
    server.settle().await?;
    let elapsed = timed_ingest(&ledger, 0, 0, batch, count).await?;
    pool.close().await;
    Ok((count as f64 / elapsed.as_secs_f64(), url))
}

/// Appends `count` transactions of `stream`, numbered from `first`, through
/// the core in batches of `batch`; returns the time spent inside `ingest`
/// only (generating the transactions is the client's cost, not the ledger's).
async fn timed_ingest<S: invario_core::LedgerStore>(
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

/// Scenario 2's baseline: the same chained rows, COPY'd into tables with the
/// same columns, constraints and indexes (no triggers), 8,000 rows per commit.
async fn raw_copy(server: &BenchServer, count: u64) -> anyhow::Result<f64> {
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
    let mut checkpoint = Checkpoint::GENESIS;
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

/// Scenario 3: the whole ledger posted as 1,000-transaction batches by 4 clients.
async fn http_batch_ingest(plan: &Plan, server: &BenchServer) -> anyhow::Result<f64> {
    let url = server.ledger_database("http_batch").await?;
    let key = processes::create_key(&plan.invario, &url).await?;
    let api = Server::start(&plan.invario, &url, ServeOptions::DEFAULT).await?;
    let batches = plan.entries.div_ceil(HTTP_BATCH_SIZE);
    // Bodies are built before the clock starts: JSON encoding is the client's cost.
    let mut bodies: Vec<Vec<Vec<u8>>> = (0..HTTP_BATCH_CLIENTS).map(|_| Vec::new()).collect();
    for batch in 0..batches {
        let first = batch * HTTP_BATCH_SIZE;
        let size = HTTP_BATCH_SIZE.min(plan.entries - first);
        bodies[(batch % HTTP_BATCH_CLIENTS) as usize].push(workload::batch_body(0, first, size));
    }
    let client = http_client()?;
    server.settle().await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client_bodies in bodies {
        let client = client.clone();
        let endpoint = format!("{}/v1/transactions/batch", api.base_url);
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            for body in client_bodies {
                post_created(&client, &endpoint, &key, body).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let rate = plan.entries as f64 / started.elapsed().as_secs_f64();
    api.stop().await?;
    server.discard(&url).await?;
    Ok(rate)
}

fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().pool_max_idle_per_host(usize::MAX).tcp_nodelay(true).build()?)
}

/// POSTs a JSON body with the key; anything but 201 Created fails the run.
async fn post_created(
    client: &reqwest::Client,
    endpoint: &str,
    key: &str,
    body: Vec<u8>,
) -> anyhow::Result<()> {
    let response = client
        .post(endpoint)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    ensure!(status.as_u16() == 201, "POST {endpoint} answered {status}: {text}");
    Ok(())
}

/// What one concurrency level achieved.
struct LoadResult {
    clients: usize,
    /// The first transaction index the next level may use.
    next_index: u64,
    completed: u64,
    elapsed: Duration,
    latencies: Latencies,
}

impl LoadResult {
    fn rate(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }
}

/// `clients` tasks each repeating `operation` until `duration` has passed;
/// each call gets the next transaction index, starting at `first_index`.
async fn drive<F, Fut>(
    clients: usize,
    duration: Duration,
    first_index: u64,
    operation: F,
) -> anyhow::Result<LoadResult>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let operation = Arc::new(operation);
    let next_index = Arc::new(AtomicU64::new(first_index));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let operation = Arc::clone(&operation);
        let next_index = Arc::clone(&next_index);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            while Instant::now() < deadline {
                let index = next_index.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                operation(index).await?;
                latencies.record(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Latencies::default();
    for task in tasks {
        latencies.merge(task.await??);
    }
    let elapsed = started.elapsed();
    let next_index = next_index.load(Ordering::Relaxed);
    Ok(LoadResult { clients, next_index, completed: latencies.len() as u64, elapsed, latencies })
}

/// `clients` posting single transactions of `stream` (from `first_index`) to `api` for `duration`.
async fn drive_singles(
    api: &Server,
    key: &str,
    clients: usize,
    duration: Duration,
    stream: u64,
    first_index: u64,
) -> anyhow::Result<LoadResult> {
    let client = http_client()?;
    let endpoint = format!("{}/v1/transactions", api.base_url);
    let key = key.to_owned();
    drive(clients, duration, first_index, move |index| {
        let (client, endpoint, key) = (client.clone(), endpoint.clone(), key.clone());
        async move {
            let body = workload::transaction_json(stream, index).to_string().into_bytes();
            post_created(&client, &endpoint, &key, body).await
        }
    })
    .await
}

/// Every concurrency level against one `invario serve`; returns the results
/// and the server's peak RSS at the end.
async fn http_single_levels(
    plan: &Plan,
    server: &BenchServer,
    options: ServeOptions,
    stream: u64,
) -> anyhow::Result<(Vec<LoadResult>, u64)> {
    let cache = if options.key_cache { "" } else { "_uncached" };
    let url = server.ledger_database(&format!("http_single_{}{cache}", options.group_commit_max)).await?;
    let key = processes::create_key(&plan.invario, &url).await?;
    let api = Server::start(&plan.invario, &url, options).await?;
    let mut next_index = 0;
    let mut levels = Vec::new();
    for &clients in &plan.clients {
        server.settle().await?;
        let result = drive_singles(&api, &key, clients, plan.duration, stream, next_index).await?;
        next_index = result.next_index;
        levels.push(result);
    }
    let peak = api.peak_rss_kib()?;
    api.stop().await?;
    server.discard(&url).await?;
    Ok((levels, peak))
}

/// The DIY chain a DBA would write instead: a BEFORE INSERT trigger that locks
/// the head row and hashes with PostgreSQL's own `sha256()`.
const DIY_TRIGGER_CHAIN: &str = r"
CREATE TABLE diy_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    sequence_number bigint NOT NULL,
    entry_hash bytea NOT NULL
);
INSERT INTO diy_head (sequence_number, entry_hash) VALUES (0, decode(repeat('00', 32), 'hex'));
CREATE TABLE diy_ledger (
    sequence_number bigint PRIMARY KEY,
    transaction_id uuid NOT NULL UNIQUE,
    amount numeric NOT NULL,
    currency text NOT NULL,
    occurred_at timestamptz,
    metadata jsonb NOT NULL DEFAULT '{}',
    recorded_at timestamptz NOT NULL DEFAULT now(),
    prev_hash bytea NOT NULL,
    entry_hash bytea NOT NULL
);
CREATE FUNCTION diy_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head diy_head%ROWTYPE;
BEGIN
    SELECT * INTO head FROM diy_head FOR UPDATE;
    NEW.sequence_number := head.sequence_number + 1;
    NEW.prev_hash := head.entry_hash;
    NEW.entry_hash := sha256(head.entry_hash || convert_to(concat_ws('|', NEW.sequence_number,
        NEW.transaction_id, NEW.amount, NEW.currency, NEW.occurred_at, NEW.metadata::text, NEW.recorded_at), 'UTF8'));
    UPDATE diy_head SET sequence_number = NEW.sequence_number, entry_hash = NEW.entry_hash;
    RETURN NEW;
END;
$$;
CREATE TRIGGER diy_chain BEFORE INSERT ON diy_ledger FOR EACH ROW EXECUTE FUNCTION diy_chain();
";

/// Every concurrency level of direct inserts into the DIY chain; the pool is
/// capped below the server's `max_connections`, as any application's is.
async fn diy_levels(plan: &Plan, server: &BenchServer) -> anyhow::Result<(Vec<LoadResult>, u32)> {
    let url = server.empty_database("diy_chain").await?;
    let mut setup = PgConnection::connect(&url).await?;
    sqlx::raw_sql(DIY_TRIGGER_CHAIN).execute(&mut setup).await.context("cannot create the DIY chain")?;
    let _ = setup.close().await;
    let cap = server.max_connections.saturating_sub(RESERVED_CONNECTIONS).max(1);
    let mut next_index = 0;
    let mut levels = Vec::new();
    for &clients in &plan.clients {
        let pool = connect(&url, u32::try_from(clients).unwrap_or(u32::MAX).min(cap)).await?;
        server.settle().await?;
        let insert_pool = pool.clone();
        let result = drive(clients, plan.duration, next_index, move |index| {
            let pool = insert_pool.clone();
            async move {
                let item = workload::transaction_json(STREAM_DIY, index);
                sqlx::query(
                    "INSERT INTO diy_ledger (transaction_id, amount, currency, occurred_at, metadata) \
                     VALUES ($1::uuid, $2::numeric, $3, $4::timestamptz, $5::jsonb)",
                )
                .bind(item["transaction_id"].as_str())
                .bind(item["amount"].as_str())
                .bind(item["currency"].as_str())
                .bind(item["occurred_at"].as_str())
                .bind(item["metadata"].to_string())
                .execute(&pool)
                .await?;
                Ok(())
            }
        })
        .await?;
        pool.close().await;
        next_index = result.next_index;
        levels.push(result);
    }
    server.discard(&url).await?;
    Ok((levels, cap))
}

/// The levels the key cache lever is shown at: a lone client (round trips)
/// and the group-commit target (database load).
async fn key_cache_off_levels(plan: &Plan, server: &BenchServer) -> anyhow::Result<Vec<LoadResult>> {
    let lever_plan = Plan {
        clients: plan
            .clients
            .iter()
            .copied()
            .filter(|&clients| clients == 1 || clients == TARGET_CLIENTS)
            .collect(),
        scenarios: plan.scenarios.clone(),
        citus_url: None,
        growth_sizes: Vec::new(),
        invario: plan.invario.clone(),
        ..*plan
    };
    if lever_plan.clients.is_empty() {
        return Ok(Vec::new());
    }
    let options = ServeOptions { key_cache: false, ..ServeOptions::DEFAULT };
    Ok(http_single_levels(&lever_plan, server, options, STREAM_KEY_CACHE_OFF).await?.0)
}

/// Scenario 4; also returns the group-commit server's peak RSS (for scenario 6).
async fn http_single_ingest(plan: &Plan, server: &BenchServer) -> anyhow::Result<(Vec<Measurement>, u64)> {
    let (grouped, grouped_peak) =
        http_single_levels(plan, server, ServeOptions::DEFAULT, STREAM_GROUP_COMMIT).await?;
    let (ungrouped, _) =
        http_single_levels(plan, server, ServeOptions::NO_GROUP_COMMIT, STREAM_NO_GROUP_COMMIT).await?;
    let (diy, diy_pool) = diy_levels(plan, server).await?;
    let uncached = key_cache_off_levels(plan, server).await?;
    let mut rows = Vec::new();
    for ((grouped, ungrouped), diy) in grouped.iter().zip(&ungrouped).zip(&diy) {
        let clients = grouped.clients;
        let mut row = Measurement::new(
            "4 HTTP single",
            format!("{clients} client(s), group commit"),
            grouped.rate(),
            "tx/s",
        )
        .over(grouped.completed)
        .latencies(&grouped.latencies);
        let uncached = uncached.iter().find(|level| level.clients == clients);
        if let Some(uncached) = uncached {
            row = row.against("key cache off", uncached.rate());
        }
        row = row.against("group commit off", ungrouped.rate());
        if clients == TARGET_CLIENTS {
            row = row.target_ratio(20.0);
        }
        row = row.against("DIY trigger chain", diy.rate());
        let p50 = grouped.latencies.percentile_ms(50.0);
        let p99 = grouped.latencies.percentile_ms(99.0);
        match clients {
            1 => {
                let chain_p50 = diy.latencies.percentile_ms(50.0);
                row = row.target_ratio(1.0).target(
                    format!("p50 ≤ the chain's + 0.2 ms ({chain_p50:.1} + 0.2)"),
                    p50 <= chain_p50 + 0.2,
                );
            }
            TARGET_CLIENTS => row = row.target_ratio(5.0),
            P99_TARGET_CLIENTS => row = row.target("p99 ≤ 50 ms", p99 <= 50.0),
            _ => {}
        }
        rows.push(row);
        if let Some(uncached) = uncached {
            rows.push(
                Measurement::new(
                    "4 HTTP single",
                    format!("{clients} client(s), group commit, key cache off (lever)"),
                    uncached.rate(),
                    "tx/s",
                )
                .over(uncached.completed)
                .latencies(&uncached.latencies),
            );
        }
        rows.push(
            Measurement::new(
                "4 HTTP single",
                format!("{clients} client(s), group commit off"),
                ungrouped.rate(),
                "tx/s",
            )
            .over(ungrouped.completed)
            .latencies(&ungrouped.latencies),
        );
        let pool = diy_pool.min(u32::try_from(clients).unwrap_or(u32::MAX));
        rows.push(
            Measurement::new(
                "4 HTTP single",
                format!("{clients} client(s), DIY trigger chain (SQL, pool {pool})"),
                diy.rate(),
                "tx/s",
            )
            .over(diy.completed)
            .latencies(&diy.latencies),
        );
    }
    Ok((rows, grouped_peak))
}

/// Scenario 5: `invario verify` and the server's start-up sweep vs an ordered
/// COPY of the same join.
async fn full_verification(
    plan: &Plan,
    server: &BenchServer,
    ledger_url: &str,
) -> anyhow::Result<Vec<Measurement>> {
    server.settle().await?;
    let (scanned, scan_rate) = raw_ordered_scan(ledger_url).await?;
    ensure!(scanned == plan.entries, "the raw scan read {scanned} rows of {}", plan.entries);

    let verify = processes::verify(&plan.invario, ledger_url).await?;
    ensure!(
        verify.entries_checked == plan.entries,
        "verify checked {} of {}",
        verify.entries_checked,
        plan.entries
    );
    let verify_rate = verify.entries_checked as f64 / verify.elapsed.as_secs_f64();

    let mut api = Server::start(&plan.invario, ledger_url, ServeOptions::DEFAULT).await?;
    let (swept, millis) = api.next_full_sweep().await?;
    api.stop().await?;
    ensure!(swept == plan.entries, "the server's sweep checked {swept} of {}", plan.entries);
    let sweep_rate = swept as f64 / (millis.max(1) as f64 / 1000.0);

    Ok(vec![
        Measurement::new("5 full verify", "`invario verify` (whole process)", verify_rate, "entries/s")
            .over(verify.entries_checked)
            .against("raw ordered COPY scan", scan_rate)
            .target_ratio(0.8),
        Measurement::new("5 full verify", "server's start-up full sweep", sweep_rate, "entries/s")
            .over(swept)
            .against("raw ordered COPY scan", scan_rate)
            .target_ratio(0.8),
        Measurement::new("5 full verify", "raw ordered COPY scan (baseline)", scan_rate, "entries/s")
            .over(scanned),
    ])
}

/// `COPY (SELECT … ORDER BY sequence_number) TO STDOUT` of the join verification reads.
async fn raw_ordered_scan(url: &str) -> anyhow::Result<(u64, f64)> {
    let mut connection = PgConnection::connect(url).await?;
    let started = Instant::now();
    let mut rows = 0u64;
    {
        let mut stream = connection
            .copy_out_raw(
                "COPY (SELECT e.sequence_number, e.transaction_id, e.prev_hash, e.entry_hash, e.recorded_at, \
                              t.transaction_id, t.amount, t.currency, t.occurred_at, t.metadata \
                       FROM ledger_entries e \
                       LEFT JOIN transactions t ON t.ledger_id = e.ledger_id AND t.transaction_id = e.transaction_id \
                       WHERE e.ledger_id = 'default' ORDER BY e.sequence_number) TO STDOUT",
            )
            .await?;
        while let Some(chunk) = stream.next().await {
            rows += chunk?.iter().filter(|&&byte| byte == b'\n').count() as u64;
        }
    }
    let elapsed = started.elapsed();
    let _ = connection.close().await;
    Ok((rows, rows as f64 / elapsed.as_secs_f64()))
}

/// Scenario 6: the server's peak RSS under scenario 4's heaviest load, and
/// `invario verify`'s at a tenth of the ledger vs the whole.
async fn memory(
    plan: &Plan,
    server: &BenchServer,
    full_ledger: &str,
    server_peak_kib: Option<u64>,
) -> anyhow::Result<Vec<Measurement>> {
    let small_entries = (plan.entries / 10).max(1);
    let (_, small_ledger) = adapter_append(server, 8_000, small_entries).await?;
    let small = processes::verify(&plan.invario, &small_ledger).await?;
    let full = processes::verify(&plan.invario, full_ledger).await?;
    if small.peak_rss_kib == 0 || full.peak_rss_kib == 0 {
        bail!("could not sample invario verify's memory");
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    let heaviest = plan.clients.iter().max().copied().unwrap_or(0);
    let flat = full.peak_rss_kib as f64 <= small.peak_rss_kib as f64 * 1.1;
    let mut rows = Vec::new();
    if let Some(server_peak_kib) = server_peak_kib {
        rows.push(
            Measurement::new(
                "6 memory",
                format!("server peak RSS, single ingest up to {heaviest} clients"),
                mib(server_peak_kib),
                "MiB",
            )
            .target("≤ 64 MiB", server_peak_kib <= SERVER_RSS_BUDGET_KIB),
        );
    }
    rows.push(
        Measurement::new(
            "6 memory",
            format!("`invario verify` peak RSS at {} entries", full.entries_checked),
            mib(full.peak_rss_kib),
            "MiB",
        )
        .against(format!("at {} entries", small.entries_checked), mib(small.peak_rss_kib))
        .target("flat (≤ 1.1 ×)", flat),
    );
    Ok(rows)
}

/// The path of the n-th request of a latency case.
type RequestPath = Box<dyn Fn(u64) -> String + Send + Sync>;

/// Requests per latency case of scenario 7 (sequential, one client: an idle server).
const PROOF_REQUESTS: u64 = 2_000;

/// GETs `path` with the key; anything but 200 fails the run.
async fn get_ok(client: &reqwest::Client, url: &str, key: &str) -> anyhow::Result<()> {
    let response = client.get(url).bearer_auth(key).send().await?;
    let status = response.status();
    let text = response.text().await?;
    ensure!(status.as_u16() == 200, "GET {url} answered {status}: {text}");
    Ok(())
}

/// Scenario 7: inclusion and consistency proof latency on the full ledger
/// (idle server, one client, random sizes and indexes) beside the head — the
/// cheapest authenticated read — and `invario migrate`'s backfill of the whole
/// tree beside `invario verify` on the same ledger.
async fn merkle_tree(
    plan: &Plan,
    server: &BenchServer,
    ledger_url: &str,
) -> anyhow::Result<Vec<Measurement>> {
    let entries = plan.entries;
    let key = processes::create_key(&plan.invario, ledger_url).await?;
    let api = Server::start(&plan.invario, ledger_url, ServeOptions::DEFAULT).await?;
    let client = http_client()?;
    let mut rows = Vec::new();
    let cases: [(&str, RequestPath); 3] = [
        ("GET /v1/ledger/head (baseline)", Box::new(|_| "/v1/ledger/head".to_owned())),
        (
            "inclusion proof, random entry and tree size",
            Box::new(move |i| {
                let size = pick(i, entries);
                format!("/v1/ledger/proof/inclusion?sequence_number={}&tree_size={size}", pick(i + 1, size))
            }),
        ),
        (
            "consistency proof, random sizes",
            Box::new(move |i| {
                let second = pick(i, entries);
                format!("/v1/ledger/proof/consistency?first={}&second={second}", pick(i + 1, second))
            }),
        ),
    ];
    let mut head_rate = None;
    for (case, path) in cases {
        let mut latencies = Latencies::default();
        let started = Instant::now();
        for i in 0..PROOF_REQUESTS {
            let url = format!("{}{}", api.base_url, path(i));
            let sent = Instant::now();
            get_ok(&client, &url, &key).await?;
            latencies.record(sent.elapsed());
        }
        let rate = PROOF_REQUESTS as f64 / started.elapsed().as_secs_f64();
        let mut row = Measurement::new("7 Merkle tree", format!("{case}, {entries} entries"), rate, "req/s")
            .over(PROOF_REQUESTS)
            .latencies(&latencies);
        match head_rate {
            None => head_rate = Some(rate),
            Some(baseline) => {
                let p99 = latencies.percentile_ms(99.0);
                row = row.against("GET /v1/ledger/head", baseline).target("p99 ≤ 5 ms", p99 <= 5.0);
            }
        }
        rows.push(row);
    }
    api.stop().await?;

    let verify = processes::verify(&plan.invario, ledger_url).await?;
    let verify_rate = verify.entries_checked as f64 / verify.elapsed.as_secs_f64();
    forget_tree(ledger_url).await?;
    server.settle().await?;
    let took = processes::migrate(&plan.invario, ledger_url).await?;
    let rebuilt = processes::verify(&plan.invario, ledger_url).await?;
    ensure!(rebuilt.entries_checked == entries, "the rebuilt tree does not verify");
    rows.push(
        Measurement::new(
            "7 Merkle tree",
            "`invario migrate` building the tree of the whole ledger",
            entries as f64 / took.as_secs_f64(),
            "entries/s",
        )
        .over(entries)
        .against("`invario verify`", verify_rate)
        .target_ratio(0.5),
    );
    Ok(rows)
}

/// Empties the tree of a ledger, as one from before the tree looks after its migration.
async fn forget_tree(url: &str) -> anyhow::Result<()> {
    let mut connection = PgConnection::connect(url).await?;
    let mut transaction = connection.begin().await?;
    for statement in [
        "SET LOCAL session_replication_role = replica",
        "DELETE FROM tree_tiles WHERE ledger_id = 'default'",
        "UPDATE tree_state SET tree_size = 0, root_hash = sha256(''::bytea), frontier = ''::bytea \
         WHERE ledger_id = 'default'",
    ] {
        sqlx::query(statement).execute(&mut *transaction).await?;
    }
    transaction.commit().await?;
    let _ = connection.close().await;
    Ok(())
}
