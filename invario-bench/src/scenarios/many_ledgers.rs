//! Scenario 10 (`many-ledgers`): 64 clients spread over 1, 4 and 16 ledgers.

use super::*;

/// The ledger counts scenario 10 spreads its clients over.
pub(super) const LEDGER_COUNTS: [usize; 3] = [1, 4, 16];
/// Scenario 10: `TARGET_CLIENTS` clients posting single transactions, client
/// `i` to ledger `i mod N`, for each N of [`LEDGER_COUNTS`], against one
/// `invario serve` on the database at `url` (`engine` names it): one chain is
/// one commit stream, so the aggregate should grow with ledgers that append
/// in parallel. Compared with one ledger in the same run.
pub(super) async fn many_ledgers(
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
