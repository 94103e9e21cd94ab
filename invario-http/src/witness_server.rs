//! A witness anyone can run (C2SP tlog-witness): `POST /add-checkpoint` cosigns
//! a checkpoint only when the core's rule accepts it, after persisting the new
//! state atomically; one lock serialises submissions so two concurrent ones can
//! never roll the witness back. It runs under the API's house rules: the same
//! listener and limits, a route table, a span per request with its
//! correlation id, file I/O off the async threads, time from the one clock.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use invario_core::merkle::{TreeHash, TreeHead};
use invario_core::note::{SignerKey, VerifierKey};
use invario_core::witness::{AddCheckpoint, WitnessRefusal, add_checkpoint};
use sha2::Digest;
use tokio::sync::Mutex;
use tracing::Instrument;
use warp::Filter;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::reply::Response;

use crate::config::ConfigError;
use crate::listener::HttpLimits;

/// Largest `add-checkpoint` body accepted.
pub const MAX_ADD_CHECKPOINT_BYTES: u64 = 128 * 1024;

/// What a witness needs.
#[derive(Debug, Clone)]
pub struct WitnessConfig {
    /// The witness's own cosignature key.
    pub key: SignerKey,
    /// The logs it witnesses (their key names are their origins).
    pub logs: Vec<VerifierKey>,
    /// Where it keeps, per origin, the largest checkpoint it cosigned.
    pub state_dir: PathBuf,
    /// Connection limits, as the API's.
    pub http: HttpLimits,
}

/// Why the witness could not run.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The state directory or a state file failed.
    #[error("witness state {path}: {source}")]
    State {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A limit is out of its range.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

fn state_error(path: &Path) -> impl FnOnce(std::io::Error) -> WitnessError + '_ {
    move |source| WitnessError::State { path: path.to_path_buf(), source }
}

/// The state file of `origin`: named by the origin's SHA-256, holding `<size>\n<root hex>\n`.
fn state_path(dir: &Path, origin: &str) -> PathBuf {
    dir.join(format!("{}.state", hex::encode(sha2::Sha256::digest(origin.as_bytes()))))
}

fn read_state(dir: &Path, origin: &str) -> Result<Option<TreeHead>, WitnessError> {
    let path = state_path(dir, origin);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(state_error(&path)(error)),
    };
    let corrupt = || {
        state_error(&path)(std::io::Error::new(std::io::ErrorKind::InvalidData, "not <size>\\n<root hex>\\n"))
    };
    let mut lines = text.lines();
    let tree_size = lines.next().and_then(|size| size.parse().ok()).ok_or_else(corrupt)?;
    let root_hash = lines.next().and_then(|root| TreeHash::from_hex(root).ok()).ok_or_else(corrupt)?;
    Ok(Some(TreeHead { size: tree_size, root: root_hash }))
}

/// The latest cosigned checkpoint of the log whose origin hashes to
/// `origin_hash` (lower-case hex), served to monitors: the log's verified
/// signature and this witness's cosignature.
fn checkpoint_path(dir: &Path, origin_hash: &str) -> PathBuf {
    dir.join(format!("{origin_hash}.checkpoint"))
}

/// Writes the state atomically: temporary file, fsync, rename, directory fsync.
fn write_state(dir: &Path, origin: &str, state: &TreeHead) -> Result<(), WitnessError> {
    let body = format!("{}\n{}\n", state.size, state.root);
    write_atomically(dir, &state_path(dir, origin), body.as_bytes())
}

/// Keeps the checkpoint just cosigned for monitors: its text, the signature
/// lines of the log's key (the ones the witness verified) and its own line.
fn write_monitored_checkpoint(
    config: &WitnessConfig,
    request: &AddCheckpoint,
    cosigned: &invario_core::witness::Cosigned,
) -> Result<(), WitnessError> {
    let dir = &config.state_dir;
    let origin_hash = hex::encode(sha2::Sha256::digest(cosigned.origin.as_bytes()));
    let Ok(mut note) = invario_core::note::Note::parse(&request.note) else { return Ok(()) };
    let log = config.logs.iter().find(|log| log.name() == cosigned.origin);
    note.signatures.retain(|line| log.is_some_and(|log| line.name == log.name() && line.key_id == log.id()));
    let body = format!("{}{}", note.to_text(), cosigned.line);
    write_atomically(dir, &checkpoint_path(dir, &origin_hash), body.as_bytes())
}

/// Temporary file, fsync, rename, directory fsync.
fn write_atomically(dir: &Path, path: &Path, body: &[u8]) -> Result<(), WitnessError> {
    use std::io::Write;
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary).map_err(state_error(&temporary))?;
    file.write_all(body).map_err(state_error(&temporary))?;
    file.sync_all().map_err(state_error(&temporary))?;
    std::fs::rename(&temporary, path).map_err(state_error(path))?;
    std::fs::File::open(dir).and_then(|dir| dir.sync_all()).map_err(state_error(dir))
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn plain(status: StatusCode, body: impl Into<String>) -> Response {
    text(status, "text/plain; charset=utf-8", body.into())
}

/// One route of the witness: the same shape as the API's route table, so
/// 404, 405 + `Allow`, the body limit and the metric label come from one row.
struct WitnessRoute {
    method: Method,
    path: &'static str,
    label: &'static str,
    body_limit: u64,
}

/// Every route the witness answers (C2SP tlog-witness).
const ROUTES: [WitnessRoute; 1] = [WitnessRoute {
    method: Method::POST,
    path: "/add-checkpoint",
    label: "add-checkpoint",
    body_limit: MAX_ADD_CHECKPOINT_BYTES,
}];

/// What the witness decided about one submission.
enum Answer {
    Cosigned(String),
    Refused(WitnessRefusal),
    StateFailed { event: &'static str, error: String },
}

/// The core's rule between reading and writing the state file: blocking
/// file I/O, so it runs on the blocking pool, under the submission lock.
fn decide(config: &WitnessConfig, request: &AddCheckpoint, now_seconds: u64) -> Answer {
    let dir = &config.state_dir;
    let mut state_failure = None;
    let decision = add_checkpoint(
        request,
        &config.logs,
        |origin| match read_state(dir, origin) {
            Ok(state) => state,
            Err(error) => {
                state_failure = Some(error.to_string());
                None
            }
        },
        &config.key,
        now_seconds,
    );
    if let Some(error) = state_failure {
        return Answer::StateFailed { event: "witness_state_unreadable", error };
    }
    match decision {
        Ok(cosigned) => match write_state(dir, &cosigned.origin, &cosigned.state) {
            Ok(()) => {
                tracing::info!(event = "checkpoint_cosigned", origin = %cosigned.origin, tree_size = cosigned.state.size);
                // Monitoring may lag (tlog-witness allows an hour); the cosignature stands.
                if let Err(error) = write_monitored_checkpoint(config, request, &cosigned) {
                    tracing::warn!(event = "witness_monitoring_unwritable", error = %error);
                }
                Answer::Cosigned(cosigned.line)
            }
            Err(error) => Answer::StateFailed { event: "witness_state_unwritable", error: error.to_string() },
        },
        Err(refusal) => Answer::Refused(refusal),
    }
}

async fn add(shared: &Arc<Shared>, body: Bytes) -> Response {
    let request = match AddCheckpoint::parse(&body) {
        Ok(request) => request,
        Err(refusal) => return refused(&refusal),
    };
    // Check and persist under one lock: a concurrent submission sees the new state or waits.
    let _guard = shared.lock.lock().await;
    let now_seconds = crate::clock::now().unix_micros().max(0).unsigned_abs() / 1_000_000;
    let config = Arc::clone(shared);
    let span = tracing::Span::current();
    let answer =
        tokio::task::spawn_blocking(move || span.in_scope(|| decide(&config.config, &request, now_seconds)))
            .await;
    match answer {
        Ok(Answer::Cosigned(line)) => plain(StatusCode::OK, line),
        Ok(Answer::Refused(refusal)) => refused(&refusal),
        Ok(Answer::StateFailed { event, error }) => {
            tracing::error!(event, error);
            plain(StatusCode::INTERNAL_SERVER_ERROR, "witness state unavailable\n")
        }
        Err(error) => {
            tracing::error!(event = "witness_state_unwritable", error = %error);
            plain(StatusCode::INTERNAL_SERVER_ERROR, "witness state unavailable\n")
        }
    }
}

fn refused(refusal: &WitnessRefusal) -> Response {
    tracing::warn!(event = "checkpoint_refused", status = refusal.status(), reason = %refusal);
    let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
    match refusal {
        WitnessRefusal::Conflict(size) => text(status, "text/x.tlog.size", format!("{size}\n")),
        other => plain(status, format!("{other}\n")),
    }
}

/// Reads the body up to `limit` bytes; `None` when it is larger.
async fn body_within(mut body: crate::api::BodyStream, limit: u64) -> Result<Option<Bytes>, warp::Error> {
    let mut read = bytes::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if (read.len() + chunk.len()) as u64 > limit {
            return Ok(None);
        }
        read.extend_from_slice(&chunk);
    }
    Ok(Some(read.freeze()))
}

/// Routes one request through [`ROUTES`] inside its own span.
async fn dispatch(
    shared: &Arc<Shared>,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: crate::api::BodyStream,
) -> Response {
    let correlation_id = crate::api::correlation_id(headers);
    if let Some(origin_hash) = monitored_origin(path) {
        let span = tracing::info_span!("request", correlation_id = %correlation_id, route = "checkpoint", method = %method);
        let mut response = monitored(shared, &method, origin_hash).instrument(span).await;
        if let Ok(value) = HeaderValue::from_str(&correlation_id) {
            response.headers_mut().insert("x-correlation-id", value);
        }
        return response;
    }
    let route = ROUTES.iter().find(|route| route.path == path);
    let span = tracing::info_span!(
        "request",
        correlation_id = %correlation_id,
        route = route.map_or(crate::api::UNROUTED_LABEL, |route| route.label),
        method = %method,
    );
    let mut response = async {
        let Some(route) = route else {
            return plain(
                StatusCode::NOT_FOUND,
                "no such path: this witness answers POST /add-checkpoint and GET /<origin hash>/checkpoint\n",
            );
        };
        if route.method != method {
            let mut response =
                plain(StatusCode::METHOD_NOT_ALLOWED, format!("this path answers only {}\n", route.method));
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(route.method.as_str()));
            return response;
        }
        match body_within(body, route.body_limit).await {
            Ok(Some(body)) => add(shared, body).await,
            Ok(None) => plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {} bytes\n", route.body_limit),
            ),
            Err(error) => {
                plain(StatusCode::BAD_REQUEST, format!("the request body could not be read: {error}\n"))
            }
        }
    }
    .instrument(span)
    .await;
    if let Ok(value) = HeaderValue::from_str(&correlation_id) {
        response.headers_mut().insert("x-correlation-id", value);
    }
    response
}

/// `<origin hash>` of `/<origin hash>/checkpoint` (64 lower-case hex digits).
fn monitored_origin(path: &str) -> Option<&str> {
    let hash = path.strip_prefix('/')?.strip_suffix("/checkpoint")?;
    (hash.len() == 64 && hash.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))).then_some(hash)
}

/// `GET <monitoring prefix>/<origin hash>/checkpoint` (tlog-witness): the latest
/// checkpoint cosigned for that log, 404 if none.
async fn monitored(shared: &Arc<Shared>, method: &Method, origin_hash: &str) -> Response {
    if method != Method::GET {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "this path answers only GET\n");
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    let path = checkpoint_path(&shared.config.state_dir, origin_hash);
    match tokio::task::spawn_blocking(move || std::fs::read_to_string(path)).await {
        Ok(Ok(note)) => text(StatusCode::OK, "text/plain; charset=utf-8", note),
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::NotFound => {
            plain(StatusCode::NOT_FOUND, "this witness has cosigned no checkpoint of that log\n")
        }
        Ok(Err(error)) => {
            tracing::error!(event = "witness_state_unreadable", error = %error);
            plain(StatusCode::INTERNAL_SERVER_ERROR, "witness state unavailable\n")
        }
        Err(error) => {
            tracing::error!(event = "witness_state_unreadable", error = %error);
            plain(StatusCode::INTERNAL_SERVER_ERROR, "witness state unavailable\n")
        }
    }
}

/// The configuration and the lock that serialises submissions.
#[derive(Debug)]
struct Shared {
    config: WitnessConfig,
    lock: Mutex<()>,
}

/// Runs the witness on `listener` until `shutdown` completes, under the same
/// connection limits as the API (`config.http`: connection cap, header read
/// timeout, bounded graceful stop).
pub async fn serve_witness(
    listener: tokio::net::TcpListener,
    config: WitnessConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), WitnessError> {
    config.http.validate()?;
    let state_dir = config.state_dir.clone();
    tokio::task::spawn_blocking(move || std::fs::create_dir_all(&state_dir).map_err(state_error(&state_dir)))
        .await
        .map_err(|error| WitnessError::State {
            path: config.state_dir.clone(),
            source: std::io::Error::other(error),
        })??;
    let address: Option<SocketAddr> = listener.local_addr().ok();
    let limits = config.http;
    tracing::info!(event = "witness_started", address = ?address, vkey = %config.key.verifier());
    let shared = Arc::new(Shared { config, lock: Mutex::new(()) });
    let routes = warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(move |method: Method, path: warp::path::FullPath, headers: HeaderMap, body| {
            let shared = Arc::clone(&shared);
            let body = crate::boxed_body(body);
            async move { dispatch(&shared, method, path.as_str(), &headers, body).await }
        });
    crate::listener::serve_connections(listener, warp::service(routes), limits, shutdown).await;
    Ok(())
}
