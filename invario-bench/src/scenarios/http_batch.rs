//! Scenario 3 (`http-batch`): the whole ledger posted as 1,000-transaction batches by 4 clients, vs raw COPY.

use super::*;

/// Transactions per `POST /v1/transactions/batch` (scenario 3).
pub(super) const HTTP_BATCH_SIZE: u64 = 1_000;
/// Concurrent batch clients (scenario 3).
pub(super) const HTTP_BATCH_CLIENTS: u64 = 4;
/// Scenario 3: the whole ledger posted as 1,000-transaction batches by 4 clients.
pub(super) async fn http_batch_ingest(plan: &Plan, server: &BenchServer) -> anyhow::Result<f64> {
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
