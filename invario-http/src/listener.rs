//! The accept loop, run by hand rather than by `warp::serve` so that every
//! limit a client could otherwise stretch is ours to set: how many
//! connections are served at once, how long a client may take to send its
//! headers (a slow client trickling them would otherwise hold a connection
//! forever), how large its headers may be, and how long a graceful stop waits
//! for requests in flight.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::{ConfigError, Setting, check_range};

/// Largest request head (request line and headers) read, in bytes.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Limits on what clients control at the connection level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Longest a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// Longest a request may take, body read included; then 503 `unavailable`.
    pub request_timeout: Duration,
    /// Longest a graceful stop waits for requests in flight.
    pub shutdown_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(25),
        }
    }
}

impl HttpLimits {
    /// Refuses a limit outside its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range(Setting::MaxConnections, self.max_connections, 1, 100_000)?;
        let second = Duration::from_secs(1);
        check_range(
            Setting::HeaderReadTimeout,
            self.header_read_timeout,
            Duration::from_millis(100),
            300 * second,
        )?;
        check_range(Setting::RequestTimeout, self.request_timeout, second, 600 * second)?;
        check_range(Setting::ShutdownTimeout, self.shutdown_timeout, second, 600 * second)
    }
}

/// Serves `service` on `listener` until `shutdown` completes, then stops
/// accepting and waits up to `limits.shutdown_timeout` for open requests.
pub(crate) async fn serve_connections<S>(
    listener: TcpListener,
    service: S,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) where
    S: tower_service::Service<
            warp::http::Request<hyper::body::Incoming>,
            Response = warp::reply::Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        // Backpressure: at the limit, stop accepting; the kernel's backlog holds the rest.
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed: the semaphore lives as long as this loop
            },
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors or the like: wait for some to be freed.
                tracing::error!(event = "accept_failed", error = %error);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let connection = builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service.clone()))
            .into_owned();
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            // A client that went away or sent garbage: nothing to report.
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            event = "shutdown_timed_out",
            timeout_seconds = limits.shutdown_timeout.as_secs_f64(),
            open_connections = connections.len(),
            "requests still open are abandoned (their database transactions roll back); none of them was acknowledged",
        );
        // Dropping a handler mid-append rolls its transaction back.
        connections.abort_all();
    }
    while connections.join_next().await.is_some() {}
}
