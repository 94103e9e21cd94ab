//! The scenarios of BENCHMARKS.md, one module each, every one measured beside
//! its baseline in the same run.

mod append;
mod embedded;
mod growth;
mod hashing;
mod http_batch;
mod http_single;
mod load;
mod many_ledgers;
mod memory;
mod merkle;
mod round_trips;
mod verification;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail, ensure};
use futures_util::StreamExt as _;
use invario_core::{
    ChainPosition, DEFAULT_LEDGER, EntryHash, IdempotencyStrategy, Ledger, LedgerEntry, StoredEntry,
    StoredTransaction, Timestamp, encode_entry_v1, entry_hash_v1,
};
use invario_postgres::PgLedger;
use sha2::{Digest as _, Sha256};
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

use crate::database::{BenchServer, connect};
use crate::processes::{self, ServeOptions, Server};
use crate::report::{Latencies, Measurement};
use crate::workload::{self, CopyRows};

use append::*;
use embedded::*;
use growth::*;
use hashing::*;
use http_batch::*;
use http_single::*;
use load::*;
use many_ledgers::*;
use memory::*;
use merkle::*;
use round_trips::*;
use verification::*;

/// The concurrency level the group-commit targets are set at (scenario 4).
const TARGET_CLIENTS: usize = 64;
/// Stream ids keep the transaction ids of different writers apart.
const STREAM_GROUP_COMMIT: u64 = 1;
const STREAM_NO_GROUP_COMMIT: u64 = 2;
const STREAM_DIY: u64 = 3;
const STREAM_EMBEDDED: u64 = 4;
const STREAM_KEY_CACHE_OFF: u64 = 7;
const STREAM_GROWTH: u64 = 8;
const STREAM_ROUND_TRIPS: u64 = 10;
const STREAM_TWO_SERVERS: u64 = 11;
const STREAM_PROOF_WAIT: u64 = 12;
/// A scenario of BENCHMARKS.md, named on the command line
/// (`--scenarios append,http-single`) or, as before, by its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Scenario {
    Hashing = 1,
    Append,
    HttpBatch,
    HttpSingle,
    Verify,
    Memory,
    Merkle,
    Embedded,
    Growth,
    ManyLedgers,
    RoundTrips,
}

impl Scenario {
    /// Every scenario, in the order a run takes them.
    pub(crate) const ALL: [Scenario; 11] = [
        Scenario::Hashing,
        Scenario::Append,
        Scenario::HttpBatch,
        Scenario::HttpSingle,
        Scenario::Verify,
        Scenario::Memory,
        Scenario::Merkle,
        Scenario::Embedded,
        Scenario::Growth,
        Scenario::ManyLedgers,
        Scenario::RoundTrips,
    ];

    /// Its name on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Hashing => "hashing",
            Scenario::Append => "append",
            Scenario::HttpBatch => "http-batch",
            Scenario::HttpSingle => "http-single",
            Scenario::Verify => "verify",
            Scenario::Memory => "memory",
            Scenario::Merkle => "merkle",
            Scenario::Embedded => "embedded",
            Scenario::Growth => "growth",
            Scenario::ManyLedgers => "many-ledgers",
            Scenario::RoundTrips => "round-trips",
        }
    }

    /// Its number in BENCHMARKS.md's tables.
    pub(crate) fn number(self) -> u8 {
        self as u8
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Scenario {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        Scenario::ALL
            .into_iter()
            .find(|scenario| scenario.name() == text || scenario.number().to_string() == text)
            .ok_or_else(|| {
                let names: Vec<_> = Scenario::ALL.iter().map(|scenario| scenario.name()).collect();
                format!("no scenario \"{text}\": take one of {} (or its number, 1–11)", names.join(", "))
            })
    }
}

/// What a run is asked to do.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Which scenarios to run.
    pub(crate) scenarios: Vec<Scenario>,
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
    let wants = |scenario: Scenario| plan.scenarios.contains(&scenario);

    if wants(Scenario::Hashing) {
        progress("1/11 hash chain in the core");
        results.extend(core_hashing(plan.entries)?);
    }

    // Scenarios 2 and 3 compare with the same COPY, measured once.
    let copy_rate = if wants(Scenario::Append) || wants(Scenario::HttpBatch) {
        progress("2/11 raw COPY baseline");
        Some(raw_copy(server, plan.entries).await?)
    } else {
        None
    };
    let mut full_ledger = None;
    if let (true, Some(copy_rate)) = (wants(Scenario::Append), copy_rate) {
        progress("2/11 adapter append vs raw COPY");
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
        // Lever rows: the same appends with every id looked up first (the
        // path before issue 27), and batches where every 10th item is a replay.
        for batch in [1_000, 8_000] {
            let count = plan.append_count(batch);
            let (rate, url) =
                adapter_append_with(server, batch, count, IdempotencyStrategy::LookupFirst).await?;
            server.discard(&url).await?;
            results.push(
                Measurement::new(
                    "2 adapter append",
                    format!("batch {batch}, ids looked up first (lever off)"),
                    rate,
                    "entries/s",
                )
                .over(count)
                .against("raw COPY", copy_rate),
            );
        }
        let count = plan.append_count(1_000);
        let replays = replay_heavy_append(server, 1_000, count, IdempotencyStrategy::default()).await?;
        let replays_looked_up =
            replay_heavy_append(server, 1_000, count, IdempotencyStrategy::LookupFirst).await?;
        results.push(
            Measurement::new("2 adapter append", "batch 1000, every 10th item a replay", replays, "items/s")
                .over(count)
                .against("ids looked up first", replays_looked_up)
                .against("raw COPY", copy_rate),
        );
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

    if let (true, Some(copy_rate)) = (wants(Scenario::HttpBatch), copy_rate) {
        progress("3/11 HTTP batch ingest");
        let batch_rate = http_batch_ingest(plan, server).await?;
        results.push(
            Measurement::new("3 HTTP batch", "4 clients × 1,000 per POST", batch_rate, "entries/s")
                .over(plan.entries)
                .against("raw COPY", copy_rate)
                .target_ratio(0.8),
        );
    }

    let mut server_peak = None;
    if wants(Scenario::HttpSingle) {
        progress("4/11 HTTP single ingest: group commit on, off, DIY trigger chain");
        let (single, peak) = http_single_ingest(plan, server).await?;
        results.extend(single);
        server_peak = Some(peak);
    }

    if wants(Scenario::Verify) || wants(Scenario::Memory) || wants(Scenario::Merkle) {
        let full_ledger = match full_ledger {
            Some(url) => url,
            // Without scenario 2 the ledger is built the same way, untimed.
            None => adapter_append(server, 8_000, plan.entries).await?.1,
        };
        if wants(Scenario::Verify) {
            progress("5/11 full verification");
            results.extend(full_verification(plan, server, &full_ledger).await?);
        }
        if wants(Scenario::Memory) {
            progress("6/11 memory");
            results.extend(memory(plan, server, &full_ledger, server_peak).await?);
        }
        if wants(Scenario::Merkle) {
            progress("7/11 Merkle tree: proof latency and backfill");
            results.extend(merkle_tree(plan, server, &full_ledger).await?);
        }
    }
    if wants(Scenario::Embedded) {
        progress("8/11 the embedded default (SQLite): adapter vs raw inserts, HTTP single");
        results.extend(embedded_default(plan).await?);
    }
    if wants(Scenario::Growth) {
        results.extend(growth(plan, server, progress).await?);
    }
    if wants(Scenario::ManyLedgers) {
        progress("10/11 many ledgers: 64 clients spread over 1, 4 and 16 ledgers");
        for (options, engine) in [
            (ServeOptions::DEFAULT, "PostgreSQL"),
            (ServeOptions::NO_GROUP_COMMIT, "PostgreSQL, group commit off"),
        ] {
            let url = server.ledger_database("many_ledgers").await?;
            results.extend(many_ledgers(plan, &url, engine, options).await?);
            server.discard(&url).await?;
        }
        progress("10/11 two servers on one ledger: fences");
        let url = server.ledger_database("two_servers").await?;
        results.extend(two_servers_one_ledger(plan, &url).await?);
        server.discard(&url).await?;
        if let Some(citus) = &plan.citus_url {
            progress("10/11 many ledgers on Citus");
            processes::migrate(&plan.invario, citus).await?;
            results.extend(many_ledgers(plan, citus, "Citus", ServeOptions::DEFAULT).await?);
        }
    }
    if wants(Scenario::RoundTrips) {
        progress("11/11 database round trips per lone append, counted on the wire");
        results.extend(round_trips(plan, server).await?);
    }
    Ok(results)
}

const STREAM_MANY_LEDGERS: u64 = 9;

/// The `index`-th number in 1..=`bound` of a fixed-seed sequence: every run
/// asks for the same entries and sizes (scenarios 7 and 9).
fn pick(index: u64, bound: u64) -> u64 {
    let mixed = index.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ 0xD1B5_4A32_D192_ED03;
    1 + mixed % bound
}

fn now() -> anyhow::Result<Timestamp> {
    let micros = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?.as_micros();
    Ok(Timestamp::from_unix_micros(i64::try_from(micros)?)?)
}

#[cfg(test)]
mod tests {
    use super::Scenario;

    #[test]
    fn scenarios_parse_by_name_or_number_and_nothing_else() {
        for scenario in Scenario::ALL {
            assert_eq!(scenario.name().parse::<Scenario>(), Ok(scenario));
            assert_eq!(scenario.number().to_string().parse::<Scenario>(), Ok(scenario));
        }
        assert_eq!("http-single".parse::<Scenario>(), Ok(Scenario::HttpSingle));
        for bad in ["0", "12", "", "HTTP-single", "single"] {
            let error = bad.parse::<Scenario>().unwrap_err();
            assert!(error.contains("many-ledgers"), "{error}");
        }
    }
}
