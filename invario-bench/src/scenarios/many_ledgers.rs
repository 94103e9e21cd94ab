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
        // Issue 27's goals: the aggregate must not fall as ledgers are added
        // (group commit on; Citus spreads ledgers over workers).
        if count == LEDGER_COUNTS[LEDGER_COUNTS.len() - 1] && options.group_commit_max > 1 {
            row = row.target_ratio(if engine == "Citus" { 0.8 } else { 0.9 });
        }
        rows.push(row);
    }
    api.stop().await?;
    Ok(rows)
}

/// Scenario 10, two servers on one ledger: `TARGET_CLIENTS` clients split
/// between two `invario serve` processes writing the same ledger (a rolling
/// deploy, two replicas). Each server's writes move the ledger under the
/// other's kept state, so the fences are counted (from each server's
/// `/metrics`) and the aggregate compared with one server in the same run;
/// the chain must verify afterwards.
pub(super) async fn two_servers_one_ledger(plan: &Plan, url: &str) -> anyhow::Result<Vec<Measurement>> {
    let key = processes::create_key(&plan.invario, url).await?;
    let client = http_client()?;
    let mut next_index =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros() as u64;
    let mut rates = Vec::new();
    let mut rows = Vec::new();
    for servers in [1, 2] {
        let mut apis = Vec::new();
        for _ in 0..servers {
            apis.push(Server::start(&plan.invario, url, ServeOptions::DEFAULT).await?);
        }
        let endpoints: Vec<String> =
            apis.iter().map(|api| format!("{}/v1/transactions", api.base_url)).collect();
        let (load_client, load_key) = (client.clone(), key.clone());
        let result = drive(TARGET_CLIENTS, plan.duration, next_index, move |index| {
            let endpoint = endpoints[(index as usize) % endpoints.len()].clone();
            let (client, key) = (load_client.clone(), load_key.clone());
            async move {
                let body = workload::transaction_json(STREAM_TWO_SERVERS, index).to_string().into_bytes();
                post_created(&client, &endpoint, &key, body).await
            }
        })
        .await?;
        next_index = result.next_index;
        let mut fences = 0;
        for api in &apis {
            fences += fenced_writes(&client, api).await?;
        }
        for api in apis {
            api.stop().await?;
        }
        let verified = processes::verify(&plan.invario, url).await?;
        let mut row = Measurement::new(
            "10 many ledgers",
            format!(
                "PostgreSQL: {TARGET_CLIENTS} clients, one ledger, {servers} server(s): {fences} fenced writes \
                 of {} appended; `invario verify` intact over {} entries",
                result.completed, verified.entries_checked
            ),
            result.rate(),
            "tx/s",
        )
        .over(result.completed)
        .latencies(&result.latencies);
        if let Some(&one) = rates.first() {
            row = row.against("1 server", one);
        }
        rates.push(result.rate());
        rows.push(row);
    }
    Ok(rows)
}

/// The sum of `invario_append_fenced_total` over the ledgers a server reports.
async fn fenced_writes(client: &reqwest::Client, api: &Server) -> anyhow::Result<u64> {
    let text = client.get(format!("{}/metrics", api.base_url)).send().await?.text().await?;
    Ok(text
        .lines()
        .filter(|line| line.starts_with("invario_append_fenced_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .sum())
}
