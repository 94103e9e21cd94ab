//! The load machinery the HTTP scenarios share: clients, a driver that keeps N requests in flight, latencies.

use super::*;

pub(super) fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().pool_max_idle_per_host(usize::MAX).tcp_nodelay(true).build()?)
}

/// POSTs a JSON body with the key (and a `Prefer` header when given);
/// answers the status and the body's text.
async fn post_json(
    client: &reqwest::Client,
    endpoint: &str,
    key: &str,
    prefer: Option<&str>,
    body: Vec<u8>,
) -> anyhow::Result<(u16, String)> {
    let mut request =
        client.post(endpoint).bearer_auth(key).header("content-type", "application/json").body(body);
    if let Some(prefer) = prefer {
        request = request.header("prefer", prefer);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

/// POSTs a JSON body with the key; anything but 201 Created fails the run.
pub(super) async fn post_created(
    client: &reqwest::Client,
    endpoint: &str,
    key: &str,
    body: Vec<u8>,
) -> anyhow::Result<()> {
    let (status, text) = post_json(client, endpoint, key, None, body).await?;
    ensure!(status == 201, "POST {endpoint} answered {status}: {text}");
    Ok(())
}

/// What one concurrency level achieved.
pub(super) struct LoadResult {
    pub(super) clients: usize,
    /// The first transaction index the next level may use.
    pub(super) next_index: u64,
    pub(super) completed: u64,
    pub(super) elapsed: Duration,
    pub(super) latencies: Latencies,
}

impl LoadResult {
    pub(super) fn rate(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }
}

/// `clients` tasks each repeating `operation` until `duration` has passed;
/// each call gets the next transaction index, starting at `first_index`.
pub(super) async fn drive<F, Fut>(
    clients: usize,
    duration: Duration,
    first_index: u64,
    operation: F,
) -> anyhow::Result<LoadResult>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let operation = Arc::new(operation);
    let next_index = Arc::new(AtomicU64::new(first_index));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let operation = Arc::clone(&operation);
        let next_index = Arc::clone(&next_index);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            while Instant::now() < deadline {
                let index = next_index.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                operation(index).await?;
                latencies.record(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Latencies::default();
    for task in tasks {
        latencies.merge(task.await??);
    }
    let elapsed = started.elapsed();
    let next_index = next_index.load(Ordering::Relaxed);
    Ok(LoadResult { clients, next_index, completed: latencies.len() as u64, elapsed, latencies })
}

/// `clients` posting single transactions of `stream` (from `first_index`) to `api` for `duration`.
pub(super) async fn drive_singles(
    api: &Server,
    key: &str,
    clients: usize,
    duration: Duration,
    stream: u64,
    first_index: u64,
) -> anyhow::Result<LoadResult> {
    let client = http_client()?;
    let endpoint = format!("{}/v1/transactions", api.base_url);
    let key = key.to_owned();
    drive(clients, duration, first_index, move |index| {
        let (client, endpoint, key) = (client.clone(), endpoint.clone(), key.clone());
        async move {
            let body = workload::transaction_json(stream, index).to_string().into_bytes();
            post_created(&client, &endpoint, &key, body).await
        }
    })
    .await
}

/// `clients` posting single transactions of `stream` that the server must
/// refuse (the amount breaks its rule: 422 naming `amount`): authentication,
/// parsing and the core's checks, but no write — the most the HTTP path
/// alone lets a level reach on this machine.
pub(super) async fn drive_refused_singles(
    api: &Server,
    key: &str,
    clients: usize,
    duration: Duration,
    stream: u64,
) -> anyhow::Result<LoadResult> {
    let client = http_client()?;
    let endpoint = format!("{}/v1/transactions", api.base_url);
    let key = key.to_owned();
    drive(clients, duration, 0, move |index| {
        let (client, endpoint, key) = (client.clone(), endpoint.clone(), key.clone());
        async move {
            let mut transaction = workload::transaction_json(stream, index);
            transaction["amount"] = serde_json::Value::from("12.3.4");
            let body = transaction.to_string().into_bytes();
            let (status, text) = post_json(&client, &endpoint, &key, None, body).await?;
            ensure!(
                status == 422 && text.contains("amount"),
                "POST {endpoint} with a malformed amount answered {status}: {text}"
            );
            Ok(())
        }
    })
    .await
}

/// Single POSTs asking `Prefer: wait=signed`: each answer must be 201 and
/// carry its tlog-proof (so it waited for a signed checkpoint).
pub(super) async fn drive_singles_waiting_for_proofs(
    api: &Server,
    key: &str,
    clients: usize,
    duration: Duration,
    stream: u64,
    first_index: u64,
) -> anyhow::Result<LoadResult> {
    let client = http_client()?;
    let endpoint = format!("{}/v1/transactions", api.base_url);
    let key = key.to_owned();
    drive(clients, duration, first_index, move |index| {
        let (client, endpoint, key) = (client.clone(), endpoint.clone(), key.clone());
        async move {
            let body = workload::transaction_json(stream, index).to_string().into_bytes();
            let (status, text) = post_json(&client, &endpoint, &key, Some("wait=signed"), body).await?;
            ensure!(status == 201, "POST {endpoint} (wait=signed) answered {status}: {text}");
            ensure!(text.contains("\"proof\":\"c2sp.org/tlog-proof@v1"), "no proof in the answer: {text}");
            Ok(())
        }
    })
    .await
}

/// GETs `path` with the key; anything but 200 fails the run.
pub(super) async fn get_ok(client: &reqwest::Client, url: &str, key: &str) -> anyhow::Result<()> {
    let response = client.get(url).bearer_auth(key).send().await?;
    let status = response.status();
    let text = response.text().await?;
    ensure!(status.as_u16() == 200, "GET {url} answered {status}: {text}");
    Ok(())
}
