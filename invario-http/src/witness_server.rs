//! A witness anyone can run (C2SP tlog-witness): `POST /add-checkpoint` cosigns
//! a checkpoint only when the core's rule accepts it, after persisting the new
//! state atomically; one lock serialises submissions so two concurrent ones can
//! never roll the witness back.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use invario_core::merkle::TreeHash;
use invario_core::note::{SignerKey, VerifierKey};
use invario_core::witness::{AddCheckpoint, WitnessRefusal, WitnessedTree, add_checkpoint};
use sha2::Digest;
use tokio::sync::Mutex;
use warp::Filter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

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
}

fn state_error(path: &Path) -> impl FnOnce(std::io::Error) -> WitnessError + '_ {
    move |source| WitnessError::State { path: path.to_path_buf(), source }
}

/// The state file of `origin`: named by the origin's SHA-256, holding `<size>\n<root hex>\n`.
fn state_path(dir: &Path, origin: &str) -> PathBuf {
    dir.join(format!("{}.state", hex::encode(sha2::Sha256::digest(origin.as_bytes()))))
}

fn read_state(dir: &Path, origin: &str) -> Result<Option<WitnessedTree>, WitnessError> {
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
    Ok(Some(WitnessedTree { tree_size, root_hash }))
}

/// Writes the state atomically: temporary file, fsync, rename, directory fsync.
fn write_state(dir: &Path, origin: &str, state: &WitnessedTree) -> Result<(), WitnessError> {
    use std::io::Write;
    let path = state_path(dir, origin);
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary).map_err(state_error(&temporary))?;
    file.write_all(format!("{}\n{}\n", state.tree_size, state.root_hash).as_bytes())
        .map_err(state_error(&temporary))?;
    file.sync_all().map_err(state_error(&temporary))?;
    std::fs::rename(&temporary, &path).map_err(state_error(&path))?;
    std::fs::File::open(dir).and_then(|dir| dir.sync_all()).map_err(state_error(dir))
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

async fn handle(config: &WitnessConfig, lock: &Mutex<()>, body: Bytes) -> Response {
    let request = match AddCheckpoint::parse(&body) {
        Ok(request) => request,
        Err(refusal) => return refused(&refusal),
    };
    // Check and persist under one lock: a concurrent submission sees the new state or waits.
    let _guard = lock.lock().await;
    let dir = config.state_dir.clone();
    let mut state_failure = None;
    let now = chrono::Utc::now().timestamp().max(0).unsigned_abs();
    let decision = add_checkpoint(
        &request,
        &config.logs,
        |origin| match read_state(&dir, origin) {
            Ok(state) => state,
            Err(error) => {
                state_failure = Some(error.to_string());
                None
            }
        },
        &config.key,
        now,
    );
    if let Some(error) = state_failure {
        tracing::error!(event = "witness_state_unreadable", error);
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            "witness state unreadable\n".into(),
        );
    }
    match decision {
        Ok(cosigned) => {
            if let Err(error) = write_state(&config.state_dir, &cosigned.origin, &cosigned.state) {
                tracing::error!(event = "witness_state_unwritable", error = %error);
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    "witness state unwritable\n".into(),
                );
            }
            tracing::info!(event = "checkpoint_cosigned", origin = %cosigned.origin, tree_size = cosigned.state.tree_size);
            text(StatusCode::OK, "text/plain; charset=utf-8", cosigned.line)
        }
        Err(refusal) => refused(&refusal),
    }
}

fn refused(refusal: &WitnessRefusal) -> Response {
    tracing::warn!(event = "checkpoint_refused", status = refusal.status(), reason = %refusal);
    let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
    match refusal {
        WitnessRefusal::Conflict(size) => text(status, "text/x.tlog.size", format!("{size}\n")),
        other => text(status, "text/plain; charset=utf-8", format!("{other}\n")),
    }
}

/// Runs the witness on `listener` until `shutdown` completes.
pub async fn serve_witness(
    listener: tokio::net::TcpListener,
    config: WitnessConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), WitnessError> {
    std::fs::create_dir_all(&config.state_dir).map_err(state_error(&config.state_dir))?;
    let address: Option<SocketAddr> = listener.local_addr().ok();
    let shared = Arc::new((config, Mutex::new(())));
    let add = warp::post()
        .and(warp::path("add-checkpoint"))
        .and(warp::path::end())
        .and(warp::body::content_length_limit(MAX_ADD_CHECKPOINT_BYTES))
        .and(warp::body::bytes())
        .then({
            let shared = Arc::clone(&shared);
            move |body: Bytes| {
                let shared = Arc::clone(&shared);
                async move { handle(&shared.0, &shared.1, body).await }
            }
        });
    tracing::info!(event = "witness_started", address = ?address, vkey = %shared.0.key.verifier());
    warp::serve(add).incoming(listener).graceful(shutdown).run().await;
    Ok(())
}
