//! Scenario 5 (`verify`): `invario verify` and the start-up sweep vs an ordered scan of the same rows.

use super::*;

/// Scenario 5: `invario verify` and the server's start-up sweep vs an ordered
/// COPY of the same join.
pub(super) async fn full_verification(
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
pub(super) async fn raw_ordered_scan(url: &str) -> anyhow::Result<(u64, f64)> {
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
