//! The C2SP tlog-tiles read API (<https://c2sp.org/tlog-tiles>) under
//! `…/tlog/`: the signed checkpoint, hash tiles and entry bundles, so that a
//! standard tiles client (a monitor, a mirror, Go's `sumdb/tlog`) can read
//! the log. The transactions' content stays behind the JSON API: an entry
//! bundle holds only each entry's 32-byte `entry_hash`.

use invario_core::tiled::TileResource;
use invario_core::{KeyStore, LedgerCatalog};
use warp::http::{HeaderValue, header};
use warp::reply::Response;

use crate::api::{App, Call};
use crate::error::ApiError;

/// A full tile or bundle never changes.
const IMMUTABLE: &str = "max-age=31536000, immutable";
/// A partial tile is a prefix of its later self, so its bytes never change
/// either; it is still kept short-lived, as the specification lets a log stop
/// serving a partial once the full tile exists.
const PARTIAL: &str = "max-age=300";
/// The checkpoint moves with every signing.
const CHECKPOINT: &str = "max-age=5";

/// `GET …/tlog/checkpoint`: the latest signed checkpoint with its cosignatures.
pub(super) async fn checkpoint<C: LedgerCatalog, K: KeyStore>(
    app: &App<C, K>,
    call: Call,
) -> Result<Response, ApiError> {
    let public = app.tlog_public;
    let mut response = super::proofs::checkpoint(app, call).await?;
    cache_for(&mut response, CHECKPOINT, public);
    Ok(response)
}

/// `GET …/tlog/tile/<L>/<N>[.p/<W>]` and `…/tlog/tile/entries/<N>[.p/<W>]`.
pub(super) async fn tile<C: LedgerCatalog, K: KeyStore>(
    app: &App<C, K>,
    call: Call,
) -> Result<Response, ApiError> {
    let path = format!("tile/{}", call.param("tile"));
    let resource = TileResource::parse(&path).map_err(|error| ApiError::NotFound(error.to_string()))?;
    let bytes = app.runtime(&call).await?.ledger.tile_resource(&resource).await?.ok_or_else(|| {
        ApiError::NotFound(format!("{path}: the tree has not reached this tile (at this width) yet"))
    })?;
    let mut response = Response::new(bytes.into());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    cache_for(&mut response, if resource.is_full() { IMMUTABLE } else { PARTIAL }, app.tlog_public);
    Ok(response)
}

/// Sets `Cache-Control`: shared caches may keep it only when the tlog paths
/// are open to anyone; behind a key, only the client's own cache.
fn cache_for(response: &mut Response, lifetime: &'static str, public: bool) {
    let audience = if public { "public" } else { "private" };
    if let Ok(value) = HeaderValue::from_str(&format!("{audience}, {lifetime}")) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
}
