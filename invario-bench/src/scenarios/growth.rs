//! Scenario 9 (`growth`): one ledger grown through each size; costs must not grow with it.

use super::*;

/// Entries appended (batch 1,000) to time the append rate at each size of scenario 9.
pub(super) const GROWTH_APPEND_SAMPLE: u64 = 50_000;
/// Inclusion proofs asked at each size of scenario 9.
pub(super) const GROWTH_PROOFS: u64 = 1_000;
/// How far a cost may drift between the smallest and the largest ledger (scenario 9).
pub(super) const GROWTH_TOLERANCE: f64 = 1.15;

/// What scenario 9 saw at one ledger size.
pub(super) struct GrowthPoint {
    pub(super) size: u64,
    pub(super) append_rate: f64,
    pub(super) verify_rate: f64,
    pub(super) scan_rate: f64,
    pub(super) proof_p50_ms: f64,
    pub(super) proof_p99_ms: f64,
    pub(super) server_peak_kib: u64,
}

/// Scenario 9: one ledger grown through each size of `--growth-sizes`; at
/// each, the append rate of the last entries that reached it (batch 1,000),
/// `invario verify` over all of it, the p99 of inclusion proofs at random
/// entries of the full tree, and the server's peak RSS through its start-up
/// sweep and those proofs. A cost that grows with the ledger is a bug.
pub(super) async fn growth(
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
        progress(&format!("9/11 growth: filling to {target} entries"));
        let sample = GROWTH_APPEND_SAMPLE.min(target / 2).max(1);
        let fill = target.saturating_sub(sample).saturating_sub(size);
        timed_ingest(&ledger, STREAM_GROWTH, size, 8_000, fill).await?;
        size += fill;
        server.settle().await?;
        let sample = target - size;
        let elapsed = timed_ingest(&ledger, STREAM_GROWTH, size, 1_000, sample).await?;
        size += sample;

        progress(&format!("9/11 growth: verify, proofs and memory at {size} entries"));
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
pub(super) fn growth_rows(points: &[GrowthPoint]) -> Vec<Measurement> {
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
