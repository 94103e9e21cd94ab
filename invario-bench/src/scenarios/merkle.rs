//! Scenario 7 (`merkle`): proof latency on the full ledger and the tree backfill.

use super::*;

/// The path of the n-th request of a latency case.
pub(super) type RequestPath = Box<dyn Fn(u64) -> String + Send + Sync>;

/// Requests per latency case of scenario 7 (sequential, one client: an idle server).
pub(super) const PROOF_REQUESTS: u64 = 2_000;

/// Scenario 7: inclusion and consistency proof latency on the full ledger
/// (idle server, one client, random sizes and indexes) beside the head — the
/// cheapest authenticated read — and `invario migrate`'s backfill of the whole
/// tree beside `invario verify` on the same ledger.
pub(super) async fn merkle_tree(
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
pub(super) async fn forget_tree(url: &str) -> anyhow::Result<()> {
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
