//! `invario-bench`: every scenario of BENCHMARKS.md in one run, each beside
//! its baseline (raw COPY, a DIY trigger chain, plain SHA-256) measured in the
//! same run on the same server.

mod database;
mod processes;
mod report;
mod scenarios;
mod wire;
mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use serde_json::json;

/// Benchmarks Invario against raw PostgreSQL and a DIY trigger chain.
#[derive(Debug, Parser)]
#[command(name = "invario-bench", version, about)]
struct Args {
    /// A PostgreSQL server URL (any database; the role must be allowed to
    /// CREATE DATABASE). Without it: INVARIO_TEST_DATABASE_URL, else a durable
    /// throwaway cluster from the local server binaries.
    #[arg(long, env = database::BENCH_DATABASE_URL_VAR, hide_env_values = true)]
    database_url: Option<String>,
    /// Ledger size: scenarios 1–3 and 5 write or read this many entries
    /// (batch 1 in scenario 2 a hundredth of it, scenario 6 also a tenth).
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    /// How long each concurrency level of scenario 4 runs.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Concurrency levels of scenario 4.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16, 64, 256])]
    clients: Vec<usize>,
    /// Which scenarios to run, by name or number (hashing=1, append=2,
    /// http-batch=3, http-single=4, verify=5, memory=6, merkle=7, embedded=8,
    /// growth=9, many-ledgers=10); baselines they need run with them.
    #[arg(long, value_delimiter = ',', default_values_t = scenarios::Scenario::ALL)]
    scenarios: Vec<scenarios::Scenario>,
    /// A database on a Citus coordinator (e.g. from ../shared/citus/cluster.sh) that scenario 10
    /// (many ledgers) also runs on; it is migrated, and its ledgers are kept.
    #[arg(long)]
    citus_url: Option<String>,
    /// The ledger sizes scenario 9 (growth) measures at.
    #[arg(long, value_delimiter = ',', default_values_t = [100_000, 1_000_000, 10_000_000])]
    growth_sizes: Vec<u64>,
    /// The `invario` binary (default: next to this one).
    #[arg(long)]
    invario: Option<PathBuf>,
    /// Where the JSON results go.
    #[arg(long, default_value = "target/invario-bench/results.json")]
    output: PathBuf,
}

fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name").and_then(|rest| rest.split_once(':')))
        .map_or("unknown", |(_, name)| name.trim())
        .to_owned();
    let memory_kib = processes::proc_kib("/proc/meminfo", "MemTotal:").unwrap_or(0);
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map_or(0, usize::from),
        "memory_gib": (memory_kib as f64 / 1024.0 / 1024.0).round(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.entries > 0, "--entries must be at least 1");
    anyhow::ensure!(!args.clients.is_empty() && !args.clients.contains(&0), "--clients must be positive");
    let invario = processes::locate_invario(args.invario.clone())?;
    let server = database::BenchServer::resolve(args.database_url.clone()).await?;
    let machine = machine();
    eprintln!("invario-bench: {} entries on {}", args.entries, server.description);
    eprintln!("machine: {machine}");

    anyhow::ensure!(!args.scenarios.is_empty(), "--scenarios takes at least one scenario");
    anyhow::ensure!(
        !args.growth_sizes.is_empty()
            && args.growth_sizes.windows(2).all(|pair| pair[0] < pair[1])
            && args.growth_sizes[0] >= 2,
        "--growth-sizes takes increasing sizes of at least 2"
    );
    let plan = scenarios::Plan {
        scenarios: args.scenarios.clone(),
        citus_url: args.citus_url.clone(),
        entries: args.entries,
        duration: args.duration,
        clients: args.clients.clone(),
        growth_sizes: args.growth_sizes.clone(),
        invario,
    };
    let started = Instant::now();
    let outcome = scenarios::run_all(&plan, &server, &mut |step| {
        eprintln!("[{:>6.1} s] {step}", started.elapsed().as_secs_f64());
    })
    .await;
    let cleanup = server.drop_databases().await;
    let measurements = outcome?;
    cleanup?;
    let elapsed = started.elapsed();

    println!("{}", report::markdown(&measurements));
    println!(
        "{} entries, {} per concurrency level, {:.0} s in all, on {}; machine: {} cores, {} GiB, {}.",
        args.entries,
        humantime::format_duration(args.duration),
        elapsed.as_secs_f64(),
        server.description,
        machine["cores"],
        machine["memory_gib"],
        machine["cpu"].as_str().unwrap_or("unknown"),
    );
    let results = json!({
        "entries": args.entries,
        "duration_per_level_seconds": args.duration.as_secs_f64(),
        "clients": args.clients,
        "server": server.description,
        "machine": machine,
        "elapsed_seconds": elapsed.as_secs_f64(),
        "measurements": measurements,
    });
    if let Some(folder) = args.output.parent().filter(|folder| !folder.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder).with_context(|| format!("cannot create {}", folder.display()))?;
    }
    std::fs::write(&args.output, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!("JSON results: {}", args.output.display());
    Ok(())
}
