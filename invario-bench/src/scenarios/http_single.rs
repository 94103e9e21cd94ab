//! Scenario 4 (`http-single`): single-transaction POSTs at each concurrency level, group commit on and off, vs a DIY trigger chain.

use super::*;
use warp::Filter as _;

/// The concurrency level the latency target is set at (scenario 4).
pub(super) const P99_TARGET_CLIENTS: usize = 256;
/// Connections the DIY chain leaves to everything else on the server.
pub(super) const RESERVED_CONNECTIONS: u32 = 10;
/// Every concurrency level against one `invario serve`; returns the results
/// and the server's peak RSS at the end.
pub(super) async fn http_single_levels(
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
pub(super) const DIY_TRIGGER_CHAIN: &str = r"
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

/// One transaction of `stream` inserted into the DIY chain, as an application would.
pub(super) async fn diy_insert(pool: &sqlx::PgPool, stream: u64, index: u64) -> anyhow::Result<()> {
    diy_insert_item(pool, &workload::transaction_json(stream, index)).await
}

/// `item` (a transaction as clients POST it) inserted into the DIY chain.
async fn diy_insert_item(pool: &sqlx::PgPool, item: &serde_json::Value) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO diy_ledger (transaction_id, amount, currency, occurred_at, metadata) \
         VALUES ($1::uuid, $2::numeric, $3, $4::timestamptz, $5::jsonb)",
    )
    .bind(item["transaction_id"].as_str())
    .bind(item["amount"].as_str())
    .bind(item["currency"].as_str())
    .bind(item["occurred_at"].as_str())
    .bind(item["metadata"].to_string())
    .execute(pool)
    .await?;
    Ok(())
}

/// Every concurrency level of direct inserts into the DIY chain; the pool is
/// capped below the server's `max_connections`, as any application's is.
pub(super) async fn diy_levels(plan: &Plan, server: &BenchServer) -> anyhow::Result<(Vec<LoadResult>, u32)> {
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
            async move { diy_insert(&pool, STREAM_DIY, index).await }
        })
        .await?;
        pool.close().await;
        next_index = result.next_index;
        levels.push(result);
    }
    server.discard(&url).await?;
    Ok((levels, cap))
}

/// The DIY chain behind the thinnest HTTP front there is — one warp route
/// that parses the JSON body, runs the chain's one INSERT and answers 201 with
/// no receipt, no authentication — served from the bench's own runtime to one
/// client. What any HTTP service in front of the chain pays at least: it splits
/// a lone client's gap to the chain into HTTP's share and Invario's own.
pub(super) async fn diy_behind_http(plan: &Plan, server: &BenchServer) -> anyhow::Result<LoadResult> {
    let url = server.empty_database("diy_chain_http").await?;
    let mut setup = PgConnection::connect(&url).await?;
    sqlx::raw_sql(DIY_TRIGGER_CHAIN).execute(&mut setup).await.context("cannot create the DIY chain")?;
    let _ = setup.close().await;
    let pool = connect(&url, 1).await?;
    let route_pool = pool.clone();
    let route = warp::post().and(warp::path!("v1" / "transactions")).and(warp::body::json()).then(
        move |item: serde_json::Value| {
            let pool = route_pool.clone();
            async move {
                let status = match diy_insert_item(&pool, &item).await {
                    Ok(()) => warp::http::StatusCode::CREATED,
                    Err(_) => warp::http::StatusCode::INTERNAL_SERVER_ERROR,
                };
                warp::reply::with_status(warp::reply::json(&serde_json::json!({})), status)
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}/v1/transactions", listener.local_addr()?);
    let front = tokio::spawn(warp::serve(route).incoming(listener).run());
    server.settle().await?;
    let client = http_client()?;
    let result = drive(1, plan.duration, 0, move |index| {
        let (client, endpoint) = (client.clone(), endpoint.clone());
        async move {
            let body = workload::transaction_json(STREAM_DIY, index).to_string().into_bytes();
            post_created(&client, &endpoint, "no key checked", body).await
        }
    })
    .await;
    front.abort();
    pool.close().await;
    server.discard(&url).await?;
    result
}

/// The levels the key cache lever is shown at: a lone client (round trips)
/// and the group-commit target (database load).
pub(super) async fn key_cache_off_levels(
    plan: &Plan,
    server: &BenchServer,
) -> anyhow::Result<Vec<LoadResult>> {
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

/// The checkpoint intervals a write's proof wait is measured at.
const PROOF_WAIT_INTERVALS: [&str; 2] = ["1s", "100ms"];

/// What `Prefer: wait=signed` costs: single POSTs that wait for a signed
/// checkpoint and carry their proof, at a lone client and the target level,
/// for each checkpoint interval (the knob).
async fn proof_wait_levels(
    plan: &Plan,
    server: &BenchServer,
) -> anyhow::Result<Vec<(&'static str, LoadResult)>> {
    let mut results = Vec::new();
    let levels: Vec<usize> =
        plan.clients.iter().copied().filter(|&clients| clients == 1 || clients == TARGET_CLIENTS).collect();
    for (round, interval) in PROOF_WAIT_INTERVALS.into_iter().enumerate() {
        if levels.is_empty() {
            break;
        }
        let url = server.ledger_database(&format!("http_single_proof_wait_{round}")).await?;
        let key = processes::create_key(&plan.invario, &url).await?;
        let options = ServeOptions { checkpoint_interval: interval, ..ServeOptions::DEFAULT };
        let api = Server::start(&plan.invario, &url, options).await?;
        let mut next_index = 0;
        for &clients in &levels {
            server.settle().await?;
            let stream = STREAM_PROOF_WAIT * 10 + round as u64;
            let result =
                drive_singles_waiting_for_proofs(&api, &key, clients, plan.duration, stream, next_index)
                    .await?;
            next_index = result.next_index;
            results.push((interval, result));
        }
        api.stop().await?;
        server.discard(&url).await?;
    }
    Ok(results)
}

/// Scenario 4; also returns the group-commit server's peak RSS (for scenario 6).
pub(super) async fn http_single_ingest(
    plan: &Plan,
    server: &BenchServer,
) -> anyhow::Result<(Vec<Measurement>, u64)> {
    let (grouped, grouped_peak) =
        http_single_levels(plan, server, ServeOptions::DEFAULT, STREAM_GROUP_COMMIT).await?;
    let (ungrouped, _) =
        http_single_levels(plan, server, ServeOptions::NO_GROUP_COMMIT, STREAM_NO_GROUP_COMMIT).await?;
    let (diy, diy_pool) = diy_levels(plan, server).await?;
    let diy_http = if plan.clients.contains(&1) { Some(diy_behind_http(plan, server).await?) } else { None };
    let uncached = key_cache_off_levels(plan, server).await?;
    let waiting = proof_wait_levels(plan, server).await?;
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
        // Reported, no longer a goal: the levers that speed up group commit
        // speed up a commit per request as well (issue 27 re-based G4b on the chain).
        row = row.against("group commit off", ungrouped.rate());
        if let Some(diy_http) = diy_http.as_ref().filter(|_| clients == 1) {
            row = row.against("DIY trigger chain behind a bare HTTP route", diy_http.rate());
        }
        // Last: the goals' ratio is taken against the last baseline.
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
            TARGET_CLIENTS => row = row.target_ratio(8.0),
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
        if let Some(diy_http) = diy_http.as_ref().filter(|_| clients == 1) {
            rows.push(
                Measurement::new(
                    "4 HTTP single",
                    "1 client(s), DIY trigger chain behind a bare HTTP route (warp, no auth, pool 1)",
                    diy_http.rate(),
                    "tx/s",
                )
                .over(diy_http.completed)
                .latencies(&diy_http.latencies),
            );
        }
    }
    for (interval, waited) in &waiting {
        let mut row = Measurement::new(
            "4 HTTP single",
            format!(
                "{} client(s), Prefer: wait=signed, a checkpoint every {interval} (cost of a proof)",
                waited.clients
            ),
            waited.rate(),
            "tx/s",
        )
        .over(waited.completed)
        .latencies(&waited.latencies);
        if let Some(plain) = grouped.iter().find(|level| level.clients == waited.clients) {
            row = row.against("without the wait", plain.rate());
        }
        rows.push(row);
    }
    Ok((rows, grouped_peak))
}
