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
mod checkpointer;
mod clock;
mod config;
mod error;
mod key_feed;
mod ledgers;
mod listener;
mod metrics;
mod monitor;
mod receipt;
mod routes;
mod sink;
mod telemetry;
mod witness_client;
mod witness_server;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Buf;
use futures_util::StreamExt;
use invario_core::{KeyAdmin, KeyCache, KeyStore, LedgerCatalog};
use warp::Filter;
use warp::http::{HeaderMap, Method};

pub use appender::{
    DEFAULT_GROUP_COMMIT_MAX, GroupCommit, MAX_GROUP_COMMIT_WINDOW, MAX_QUEUE_DEPTH, MAX_QUEUE_WAIT,
};
pub use checkpointer::{
    CheckpointSettings, DEFAULT_PROOF_WAIT, MAX_CHECKPOINT_INTERVAL, MAX_PROOF_WAIT, MIN_CHECKPOINT_INTERVAL,
    WitnessTarget, check_checkpoint_interval,
};
pub use config::{ConfigError, Setting};
pub use error::{ApiError, Detail, RETRY_AFTER_SECONDS};
pub use key_feed::{KeyCacheSettings, MAX_KEY_CACHE_CAPACITY};
pub use listener::{HttpLimits, MAX_HEADER_BYTES};
pub use metrics::*;
pub use monitor::{MAX_CHECK_INTERVAL, MIN_CHECK_INTERVAL, MonitorSchedule};
pub use routes::{DEFAULT_PAGE_SIZE, MAX_BATCH_BODY_BYTES, MAX_SINGLE_BODY_BYTES};
pub use sink::{LATEST_FILE, Sink, SinkError};
pub use telemetry::{LogFormat, TelemetryError, init_logging};
pub use witness_server::{MAX_ADD_CHECKPOINT_BYTES, WitnessConfig, WitnessError, serve_witness};

/// Everything `serve` can be tuned with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceConfig {
    /// Group commit of single-transaction requests.
    pub group_commit: GroupCommit,
    /// Integrity monitor intervals.
    pub monitor: MonitorSchedule,
    /// Signed checkpoints into a sink outside the database (`None`: none are signed).
    pub checkpoints: Option<CheckpointSettings>,
    /// Connection, header, request and shutdown limits.
    pub http: HttpLimits,
    /// Key records kept between requests.
    pub key_cache: KeyCacheSettings,
    /// Who may read the tlog-tiles API (`…/tlog/checkpoint`, `…/tlog/tile/…`).
    pub tlog_access: TlogAccess,
}

/// Who may read a ledger's tlog-tiles API. Tree sizes and entry hashes reveal
/// volume and timing (not content), so the default asks for a key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlogAccess {
    /// A key with the `read` scope for the ledger, as the JSON API (the default).
    #[default]
    ReadScope,
    /// Anyone: for a log meant to be monitored or mirrored publicly.
    Public,
}

impl ServiceConfig {
    /// Refuses any setting outside its range; [`serve`] calls it first.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.group_commit.validate()?;
        self.monitor.validate()?;
        self.http.validate()?;
        self.key_cache.validate()?;
        if let Some(checkpoints) = &self.checkpoints {
            checkpoints.validate()?;
            // A write waiting for its proof must be answered before the request times out.
            if self.http.request_timeout <= checkpoints.proof_wait {
                return Err(ConfigError::ShorterThan {
                    setting: Setting::RequestTimeout,
                    got: format!("{:?}", self.http.request_timeout),
                    other: Setting::ProofWait,
                    other_value: format!("{:?}", checkpoints.proof_wait),
                });
            }
        }
        Ok(())
    }
}

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listener's address cannot be read.
    #[error("cannot read the listening address: {0}")]
    Listener(#[from] std::io::Error),
    /// The configuration is refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Serves the API on `listener` until `shutdown` completes, then stops
/// accepting, finishes in-flight requests and appends, and returns.
///
/// It serves every ledger of `catalog`. Before accepting requests it runs a
/// full integrity sweep of each, so a ledger that is already broken starts
/// quarantined (alone: the others serve on); a ledger created later starts
/// on its first request.
pub async fn serve<C, K>(
    listener: tokio::net::TcpListener,
    catalog: C,
    key_store: K,
    config: ServiceConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError>
where
    C: LedgerCatalog + 'static,
    K: KeyStore + 'static,
{
    config.validate()?;
    let address = listener.local_addr()?;
    metrics::prometheus();
    // Series alerts compute rates over exist from the start, at zero.
    for kind in ["unavailable", "full"] {
        ::metrics::counter!(DATABASE_ERRORS_TOTAL, "kind" => kind).increment(0);
    }
    let (stop_monitor, monitor_stopped) = tokio::sync::watch::channel(false);
    // Each ledger's sweep and signer's guard run before the first request: a
    // history rewritten while the service was down is caught at start-up.
    let ledgers = ledgers::Ledgers::new(catalog, config.clone(), monitor_stopped);
    if let Err(error) = ledgers.start_all().await {
        // The default ledger still starts (or answers 503) on its first request.
        tracing::warn!(event = "ledgers_unlisted", error = %error, "the ledgers could not be listed at start-up");
    }
    let ledger_tasks = ledgers.tasks();
    let (keys, key_feed_task) = match key_store.change_feed().filter(|_| config.key_cache.capacity > 0) {
        Some(feed) => {
            let cache = Arc::new(KeyCache::new(config.key_cache.capacity));
            let (fence, task) = key_feed::start(feed, Arc::clone(&cache), stop_monitor.subscribe());
            (KeyAdmin::with_cache(key_store, cache, fence), Some(task))
        }
        None => (KeyAdmin::new(key_store), None),
    };
    let app = Arc::new(api::App {
        ledgers,
        keys,
        routes: routes::table(),
        request_timeout: config.http.request_timeout,
        tlog_public: config.tlog_access == TlogAccess::Public,
    });

    let routes = warp::method()
        .and(warp::path::full())
        .and(warp::query::<HashMap<String, String>>().or(warp::any().map(HashMap::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then({
            let app = Arc::clone(&app);
            move |method: Method, path: warp::path::FullPath, query, headers: HeaderMap, body| {
                let app = Arc::clone(&app);
                let body = boxed_body(body);
                async move {
                    let request =
                        api::Request { method, path: path.as_str().to_owned(), query, headers, body };
                    api::dispatch(&app, request).await
                }
            }
        });

    tracing::info!(event = "server_started", address = %address);
    listener::serve_connections(listener, warp::service(routes), config.http, shutdown).await;
    // Requests are done; let the appenders drain what they queued, then stop.
    // A write stuck behind a lock gets the same grace as a request did.
    drop(app);
    let tasks = std::mem::take(&mut *ledger_tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    let abort_handles: Vec<_> = tasks.appenders.iter().map(tokio::task::JoinHandle::abort_handle).collect();
    let drained = tokio::time::timeout(config.http.shutdown_timeout, async {
        for task in tasks.appenders {
            let _ = task.await;
        }
    });
    if drained.await.is_err() {
        tracing::warn!(
            event = "shutdown_timed_out",
            timeout_seconds = config.http.shutdown_timeout.as_secs_f64(),
            "appends still queued are abandoned (their database transactions roll back); none of them was acknowledged",
        );
        for handle in abort_handles {
            handle.abort();
        }
    }
    let _ = stop_monitor.send(true);
    for task in tasks.background {
        let _ = task.await;
    }
    if let Some(task) = key_feed_task {
        let _ = task.await;
    }
    tracing::info!(event = "server_stopped", address = %address);
    Ok(())
}

/// The body as chunks of bytes, whatever buffer type warp reads them into.
pub(crate) fn boxed_body<B: Buf + Send + 'static>(
    body: impl futures_util::Stream<Item = Result<B, warp::Error>> + Send + 'static,
) -> api::BodyStream {
    Box::pin(body.map(|chunk| chunk.map(|mut buf| buf.copy_to_bytes(buf.remaining()))))
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
