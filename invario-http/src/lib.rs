//! # invario-http
//!
//! The ingestion service: a warp HTTP API over the `invario-core` services,
//! with API-key authentication, group commit, an integrity monitor that
//! quarantines a broken ledger, JSON logs and Prometheus metrics.
//!
//! [`serve`] takes the adapters and an already bound listener, so tests and
//! embedders run it on port 0; `invario serve` wraps it.

mod api;
mod appender;
mod clock;
mod error;
mod metrics;
mod monitor;
mod receipt;
mod telemetry;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use invario_core::{KeyAdmin, KeyStore, Ledger, LedgerStore};
use warp::Filter;
use warp::http::{HeaderMap, Method};

pub use api::{DEFAULT_PAGE_SIZE, MAX_BATCH_BODY_BYTES, MAX_SINGLE_BODY_BYTES};
pub use appender::GroupCommit;
pub use error::{ApiError, Detail};
pub use metrics::*;
pub use monitor::MonitorSchedule;
pub use telemetry::{LogFormat, TelemetryError, init_logging};

/// Everything `serve` can be tuned with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServiceConfig {
    /// Group commit of single-transaction requests.
    pub group_commit: GroupCommit,
    /// Integrity monitor intervals.
    pub monitor: MonitorSchedule,
}

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listener's address cannot be read.
    #[error("cannot read the listening address: {0}")]
    Listener(#[from] std::io::Error),
}

/// Serves the API on `listener` until `shutdown` completes, then stops
/// accepting, finishes in-flight requests and appends, and returns.
///
/// Before accepting requests it runs a full integrity sweep, so a ledger that
/// is already broken starts quarantined.
pub async fn serve<S, K>(
    listener: tokio::net::TcpListener,
    ledger_store: S,
    key_store: K,
    config: ServiceConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError>
where
    S: LedgerStore + 'static,
    K: KeyStore + 'static,
{
    let address = listener.local_addr()?;
    metrics::prometheus();
    let ledger = Arc::new(Ledger::new(ledger_store));
    monitor::check(&ledger, monitor::Check::Full).await;
    let (appender, appender_task) = appender::Appender::start(Arc::clone(&ledger), config.group_commit);
    let (stop_monitor, monitor_stopped) = tokio::sync::watch::channel(false);
    let monitor_task = tokio::spawn(monitor::run(Arc::clone(&ledger), config.monitor, monitor_stopped));
    let app = Arc::new(api::App { ledger, keys: KeyAdmin::new(key_store), appender });

    let routes = warp::method()
        .and(warp::path::full())
        .and(warp::query::<HashMap<String, String>>().or(warp::any().map(HashMap::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then({
            let app = Arc::clone(&app);
            move |method: Method, path: warp::path::FullPath, query, headers: HeaderMap, body| {
                let app = Arc::clone(&app);
                async move {
                    let body = read_body(body_limit(&method, path.as_str()), &headers, body).await;
                    let request =
                        api::Request { method, path: path.as_str().to_owned(), query, headers, body };
                    api::dispatch(&app, request).await
                }
            }
        });

    tracing::info!(event = "server_started", address = %address);
    warp::serve(routes).incoming(listener).graceful(shutdown).run().await;
    // Requests are done; let the appender drain what they queued, then stop.
    drop(app);
    let _ = appender_task.await;
    let _ = stop_monitor.send(true);
    let _ = monitor_task.await;
    tracing::info!(event = "server_stopped", address = %address);
    Ok(())
}

/// The largest body a route accepts: only the batch route takes big ones, so a
/// single-transaction POST is refused before 64 KiB is exceeded, not after 32 MiB is read.
fn body_limit(method: &Method, path: &str) -> usize {
    if method == Method::POST && path.trim_end_matches('/') == "/v1/transactions/batch" {
        MAX_BATCH_BODY_BYTES
    } else {
        MAX_SINGLE_BODY_BYTES
    }
}

/// Reads a body up to `limit`, refusing early on a large `Content-Length`.
async fn read_body<B, E>(
    limit: usize,
    headers: &HeaderMap,
    body: impl Stream<Item = Result<B, E>> + Unpin,
) -> Result<Bytes, ApiError>
where
    B: bytes::Buf,
{
    let declared = headers
        .get(warp::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let mut body = body;
    let mut collected = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk =
            chunk.map_err(|_| ApiError::InvalidJson("the request body could not be read".into()))?;
        if collected.len() + chunk.remaining() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            collected.extend_from_slice(part);
            let consumed = part.len();
            chunk.advance(consumed);
        }
    }
    Ok(collected.freeze())
}

/// Completes on SIGTERM or SIGINT (Ctrl-C): the shutdown signal for `serve`.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!(event = "shutdown_requested");
}
