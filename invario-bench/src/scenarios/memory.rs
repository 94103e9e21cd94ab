//! Scenario 6 (`memory`): the server's peak RSS under load and through its sweep.

use super::*;

/// The server's memory budget under load (scenario 6).
pub(super) const SERVER_RSS_BUDGET_KIB: u64 = 64 * 1024;
/// Scenario 6: the server's peak RSS under scenario 4's heaviest load, and
/// `invario verify`'s at a tenth of the ledger vs the whole.
pub(super) async fn memory(
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
