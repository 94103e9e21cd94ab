//! The route table: the one place that says which paths exist, which methods
//! they answer, what scope a key needs, how large a body may be and which
//! handler serves them. 404, 405 + `Allow`, body limits, metric labels and
//! authentication are all derived from it by the dispatcher.

mod ledger;
mod ledgers;
mod operations;
mod proofs;
mod tlog;
mod transactions;

pub use ledger::DEFAULT_PAGE_SIZE;

use std::future::Future;
use std::pin::Pin;

use invario_core::{KeyStore, LedgerCatalog, Scope};
use warp::http::Method;
use warp::reply::Response;

use crate::api::{App, Call};
use crate::error::ApiError;

/// Largest body of a single-transaction request.
pub const MAX_SINGLE_BODY_BYTES: usize = 64 * 1024;
/// Largest body of a batch request (a full batch with room for metadata).
pub const MAX_BATCH_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Routes that take no body read none.
const NO_BODY: usize = 0;

// A full batch of transactions of ordinary size must fit a batch body.
const _: () = assert!(MAX_BATCH_BODY_BYTES >= invario_core::MAX_BATCH_SIZE * 1024);

/// What a handler returns, borrowing the application.
pub(crate) type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<Response, ApiError>> + Send + 'a>>;

/// A handler: the request already routed, authenticated and its body read.
pub(crate) type Handler<C, K> = for<'a> fn(&'a App<C, K>, Call) -> HandlerFuture<'a>;

/// One row of the table.
pub(crate) struct Route<C: LedgerCatalog, K> {
    /// The method it answers.
    pub(crate) method: Method,
    /// The path, `{name}` standing for one segment; also the metric label, so
    /// a label always names a real route.
    pub(crate) pattern: &'static str,
    /// The scope a key needs, or `None` for an open route.
    pub(crate) scope: Option<Scope>,
    /// The ledger it is about: what the key must be allowed to use.
    pub(crate) ledger: LedgerParam,
    /// The largest body read, in bytes.
    pub(crate) body_limit: usize,
    /// What serves it.
    pub(crate) handler: Handler<C, K>,
    /// Whether `serve --public-tlog` opens it to callers without a key (the
    /// tlog-tiles read API only).
    pub(crate) public_tlog: bool,
    /// Whether its one effect is a write that checks the key table itself, so
    /// a cached key is trusted without catching the cache up first
    /// ([`invario_core::KeyAdmin::authenticate_for_write`]): the single POST.
    pub(crate) key_checked_by_write: bool,
}

impl<C: LedgerCatalog, K> std::fmt::Debug for Route<C, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("method", &self.method)
            .field("pattern", &self.pattern)
            .field("scope", &self.scope)
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

/// Which ledger a route is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LedgerParam {
    /// None: the service's own routes and the list of ledgers.
    None,
    /// The `default` ledger: the routes from before ledgers existed.
    Default,
    /// The one named by the path's `{ledger}` segment.
    FromPath,
}

/// One route about a ledger, served at its path from before ledgers
/// (meaning `default`) and under `/v1/ledgers/{ledger}/…`.
struct LedgerRoute<C: LedgerCatalog, K> {
    method: Method,
    default_path: &'static str,
    ledger_path: &'static str,
    scope: Scope,
    body_limit: usize,
    handler: Handler<C, K>,
    key_checked_by_write: bool,
}

impl<C: LedgerCatalog, K> LedgerRoute<C, K> {
    /// A `GET` about a ledger needing the `read` scope.
    fn read(default_path: &'static str, ledger_path: &'static str, handler: Handler<C, K>) -> Self {
        LedgerRoute {
            method: Method::GET,
            default_path,
            ledger_path,
            scope: Scope::Read,
            body_limit: NO_BODY,
            handler,
            key_checked_by_write: false,
        }
    }
}

/// Every route the service answers.
pub(crate) fn table<C: LedgerCatalog + 'static, K: KeyStore + 'static>() -> Vec<Route<C, K>> {
    let ledger_routes: [LedgerRoute<C, K>; 10] = [
        LedgerRoute {
            method: Method::POST,
            default_path: "/v1/transactions",
            ledger_path: "/v1/ledgers/{ledger}/transactions",
            scope: Scope::Write,
            body_limit: MAX_SINGLE_BODY_BYTES,
            handler: |app, call| Box::pin(transactions::create(app, call)),
            key_checked_by_write: true,
        },
        LedgerRoute {
            method: Method::POST,
            default_path: "/v1/transactions/batch",
            ledger_path: "/v1/ledgers/{ledger}/transactions/batch",
            scope: Scope::Write,
            body_limit: MAX_BATCH_BODY_BYTES,
            handler: |app, call| Box::pin(transactions::create_batch(app, call)),
            key_checked_by_write: false,
        },
        LedgerRoute {
            method: Method::GET,
            default_path: "/v1/transactions/{id}",
            ledger_path: "/v1/ledgers/{ledger}/transactions/{id}",
            scope: Scope::Read,
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(transactions::get(app, call)),
            key_checked_by_write: false,
        },
        LedgerRoute {
            method: Method::GET,
            default_path: "/v1/transactions/{id}/proof",
            ledger_path: "/v1/ledgers/{ledger}/transactions/{id}/proof",
            scope: Scope::Read,
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(proofs::for_transaction(app, call)),
            key_checked_by_write: false,
        },
        LedgerRoute {
            method: Method::GET,
            default_path: "/v1/ledger/tree",
            ledger_path: "/v1/ledgers/{ledger}/tree",
            scope: Scope::Read,
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(proofs::tree(app, call)),
            key_checked_by_write: false,
        },
        LedgerRoute {
            method: Method::GET,
            default_path: "/v1/ledger/checkpoint",
            ledger_path: "/v1/ledgers/{ledger}/checkpoint",
            scope: Scope::Read,
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(proofs::checkpoint(app, call)),
            key_checked_by_write: false,
        },
        LedgerRoute {
            method: Method::GET,
            default_path: "/v1/ledger/proof/inclusion",
            ledger_path: "/v1/ledgers/{ledger}/proof/inclusion",
            scope: Scope::Read,
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(proofs::inclusion(app, call)),
            key_checked_by_write: false,
        },
        LedgerRoute {
            method: Method::GET,
            default_path: "/v1/ledger/proof/consistency",
            ledger_path: "/v1/ledgers/{ledger}/proof/consistency",
            scope: Scope::Read,
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(proofs::consistency(app, call)),
            key_checked_by_write: false,
        },
        LedgerRoute {
            method: Method::GET,
            default_path: "/v1/ledger/head",
            ledger_path: "/v1/ledgers/{ledger}/head",
            scope: Scope::Read,
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(ledger::head(app, call)),
            key_checked_by_write: false,
        },
        LedgerRoute {
            method: Method::GET,
            default_path: "/v1/ledger/entries",
            ledger_path: "/v1/ledgers/{ledger}/entries",
            scope: Scope::Read,
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(ledger::entries(app, call)),
            key_checked_by_write: false,
        },
    ];
    let tlog_routes: [LedgerRoute<C, K>; 2] = [
        LedgerRoute::read(
            "/v1/ledger/tlog/checkpoint",
            "/v1/ledgers/{ledger}/tlog/checkpoint",
            |app, call| Box::pin(tlog::checkpoint(app, call)),
        ),
        LedgerRoute::read(
            "/v1/ledger/tlog/tile/{tile*}",
            "/v1/ledgers/{ledger}/tlog/tile/{tile*}",
            |app, call| Box::pin(tlog::tile(app, call)),
        ),
    ];
    let mut routes = Vec::new();
    let tagged = ledger_routes.into_iter().map(|route| (route, false));
    for (route, public_tlog) in tagged.chain(tlog_routes.into_iter().map(|route| (route, true))) {
        for (pattern, ledger) in
            [(route.default_path, LedgerParam::Default), (route.ledger_path, LedgerParam::FromPath)]
        {
            routes.push(Route {
                method: route.method.clone(),
                pattern,
                scope: Some(route.scope),
                ledger,
                body_limit: route.body_limit,
                handler: route.handler,
                public_tlog,
                key_checked_by_write: route.key_checked_by_write,
            });
        }
    }
    routes.extend([
        Route {
            method: Method::POST,
            pattern: "/v1/ledgers",
            scope: Some(Scope::Admin),
            ledger: LedgerParam::None,
            body_limit: MAX_SINGLE_BODY_BYTES,
            handler: |app, call| Box::pin(ledgers::create(app, call)),
            public_tlog: false,
            key_checked_by_write: false,
        },
        Route {
            method: Method::GET,
            pattern: "/v1/ledgers",
            scope: Some(Scope::Admin),
            ledger: LedgerParam::None,
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(ledgers::list(app, call)),
            public_tlog: false,
            key_checked_by_write: false,
        },
        Route {
            method: Method::GET,
            pattern: "/health",
            scope: None,
            ledger: LedgerParam::None,
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(operations::health(app, call)),
            public_tlog: false,
            key_checked_by_write: false,
        },
        Route {
            method: Method::GET,
            pattern: "/livez",
            scope: None,
            ledger: LedgerParam::None,
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(operations::livez(app, call)),
            public_tlog: false,
            key_checked_by_write: false,
        },
        Route {
            method: Method::GET,
            pattern: "/readyz",
            scope: None,
            ledger: LedgerParam::None,
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(operations::readyz(app, call)),
            public_tlog: false,
            key_checked_by_write: false,
        },
        Route {
            method: Method::GET,
            pattern: "/openapi.json",
            scope: None,
            ledger: LedgerParam::None,
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(operations::openapi(app, call)),
            public_tlog: false,
            key_checked_by_write: false,
        },
        Route {
            method: Method::GET,
            pattern: "/metrics",
            scope: None,
            ledger: LedgerParam::None,
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(operations::metrics(app, call)),
            public_tlog: false,
            key_checked_by_write: false,
        },
    ]);
    routes
}

/// The path's `{name}` segments and their values.
type Params = Vec<(&'static str, String)>;

/// Where a request lands in the table.
#[derive(Debug)]
pub(crate) enum Resolution<'t, C: LedgerCatalog, K> {
    /// A route, with the path's `{name}` segments.
    Found(&'t Route<C, K>, Vec<(&'static str, String)>),
    /// The path exists, not with this method.
    MethodNotAllowed(Vec<Method>),
    /// No route has this path.
    NotFound,
}

/// Finds the route for `method` and `path` (surrounding slashes ignored). A
/// pattern's last part `{name*}` takes every remaining segment (at least one).
pub(crate) fn resolve<'t, C: LedgerCatalog, K>(
    table: &'t [Route<C, K>],
    method: &Method,
    path: &str,
) -> Resolution<'t, C, K> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let matching: Vec<(&Route<C, K>, Params)> = table
        .iter()
        .filter_map(|route| match_pattern(route.pattern, &segments).map(|params| (route, params)))
        .collect();
    // A literal segment beats a parameter: `/v1/transactions/batch` is the
    // batch route (POST only), never a transaction with the id "batch".
    let Some(fewest_params) = matching.iter().map(|(_, params)| params.len()).min() else {
        return Resolution::NotFound;
    };
    let mut allowed = Vec::new();
    for (route, params) in matching.into_iter().filter(|(_, params)| params.len() == fewest_params) {
        if route.method == method {
            return Resolution::Found(route, params);
        }
        allowed.push(route.method.clone());
    }
    Resolution::MethodNotAllowed(allowed)
}

/// The path's parameters if `segments` match `pattern`. Every route's pattern
/// is tried on every request, so a pattern that does not match allocates
/// nothing (splitting each into a vector first was ≈ 3 % of the server's CPU
/// for a lone client's appends, `perf`).
fn match_pattern(pattern: &'static str, segments: &[&str]) -> Option<Params> {
    let parts = pattern.trim_matches('/');
    let part_count = parts.bytes().filter(|&byte| byte == b'/').count() + 1;
    let takes_the_rest = parts.ends_with("*}");
    if !takes_the_rest && part_count != segments.len() {
        return None;
    }
    let mut params = Params::new();
    for (index, part) in parts.split('/').enumerate() {
        if index + 1 == part_count
            && let Some(name) = part.strip_prefix('{').and_then(|rest| rest.strip_suffix("*}"))
        {
            let rest = segments.get(index..)?;
            if rest.is_empty() || rest.iter().any(|segment| segment.is_empty()) {
                return None;
            }
            params.push((name, rest.join("/")));
            return Some(params);
        }
        let segment = segments.get(index)?;
        match part.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')) {
            Some(name) if !segment.is_empty() => params.push((name, (*segment).to_owned())),
            Some(_) => return None,
            None if part == *segment => {}
            None => return None,
        }
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use invario_core::{MemoryCatalog, MemoryKeyStore};
    use proptest::prelude::*;

    use super::*;

    type Table = Vec<Route<MemoryCatalog, MemoryKeyStore>>;

    /// The matcher as first written (each pattern split into a vector): the
    /// model the allocation-free one must agree with.
    fn model_match(pattern: &'static str, segments: &[&str]) -> Option<Params> {
        let mut parts: Vec<&'static str> = pattern.trim_matches('/').split('/').collect();
        let fixed = |parts: &[&'static str], segments: &[&str]| -> Option<Params> {
            if parts.len() != segments.len() {
                return None;
            }
            let mut params = Vec::new();
            for (part, segment) in parts.iter().zip(segments) {
                match part.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')) {
                    Some(name) if !segment.is_empty() => params.push((name, (*segment).to_owned())),
                    Some(_) => return None,
                    None if part == segment => {}
                    None => return None,
                }
            }
            Some(params)
        };
        if let Some(rest) =
            parts.last().and_then(|last| last.strip_prefix('{')).and_then(|rest| rest.strip_suffix("*}"))
        {
            let count = parts.len() - 1;
            if segments.len() <= count || segments[count..].iter().any(|segment| segment.is_empty()) {
                return None;
            }
            parts.truncate(count);
            return fixed(&parts, &segments[..count]).map(|mut params| {
                params.push((rest, segments[count..].join("/")));
                params
            });
        }
        fixed(&parts, segments)
    }

    /// A path segment: one of the table's own words, empty, or another word.
    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(vec![
                "v1",
                "ledger",
                "ledgers",
                "transactions",
                "batch",
                "tlog",
                "tile",
                "x"
            ])
            .prop_map(String::from),
            Just(String::new()),
            "[a-z0-9.]{1,4}",
        ]
    }

    proptest! {
        /// Paths made from a route's pattern (its parameters filled with any
        /// segment, empty ones included, some segments cut or added) or of
        /// loose words: every route matches them exactly as the model does.
        #[test]
        fn every_pattern_matches_paths_as_the_model_does(
            route in 0..64usize,
            fills in proptest::collection::vec(segment(), 4),
            cut in 0..3usize,
            tail in proptest::collection::vec(segment(), 0..3),
            loose in proptest::collection::vec(segment(), 0..7),
            from_a_pattern in any::<bool>(),
        ) {
            let table: Table = table();
            let words: Vec<String> = if from_a_pattern {
                let pattern = table[route % table.len()].pattern.trim_matches('/');
                let mut fill = fills.iter().cycle();
                let mut words: Vec<String> = pattern
                    .split('/')
                    .map(|part| if part.starts_with('{') { fill.next().cloned().unwrap_or_default() } else { part.to_owned() })
                    .collect();
                words.truncate(words.len().saturating_sub(cut));
                words.extend(tail);
                words
            } else {
                loose
            };
            let segments: Vec<&str> = words.iter().map(String::as_str).collect();
            for route in &table {
                prop_assert_eq!(match_pattern(route.pattern, &segments), model_match(route.pattern, &segments),
                                "{} against {:?}", route.pattern, segments);
            }
        }
    }

    #[test]
    fn every_v1_route_requires_a_scope() {
        let table: Table = table();
        for route in table.iter().filter(|route| route.pattern.starts_with("/v1/")) {
            assert!(route.scope.is_some(), "{} {} is open to anyone", route.method, route.pattern);
        }
        let open: Vec<&str> =
            table.iter().filter(|route| route.scope.is_none()).map(|route| route.pattern).collect();
        assert_eq!(
            open,
            ["/health", "/livez", "/readyz", "/openapi.json", "/metrics"],
            "only the probes and the API's description answer without a key"
        );
    }

    #[test]
    fn no_two_routes_share_a_method_and_pattern() {
        let table: Table = table();
        for (index, route) in table.iter().enumerate() {
            for other in &table[index + 1..] {
                assert!(
                    !(route.method == other.method && route.pattern == other.pattern),
                    "{} {} appears twice",
                    route.method,
                    route.pattern
                );
            }
        }
    }

    #[test]
    fn only_writes_read_a_body() {
        let table: Table = table();
        for route in &table {
            assert_eq!(
                route.body_limit > 0,
                route.method == Method::POST,
                "{} {}",
                route.method,
                route.pattern
            );
        }
    }

    #[test]
    fn paths_resolve_to_routes_405s_and_404s() {
        let table: Table = table();
        let Resolution::Found(route, params) = resolve(&table, &Method::GET, "/v1/transactions/abc/") else {
            panic!("the id route must match")
        };
        assert_eq!(route.pattern, "/v1/transactions/{id}");
        assert_eq!(params, [("id", "abc".to_owned())]);
        let Resolution::MethodNotAllowed(allowed) = resolve(&table, &Method::DELETE, "/v1/transactions")
        else {
            panic!("a known path with another method is a 405")
        };
        assert_eq!(allowed, [Method::POST]);
        assert!(matches!(resolve(&table, &Method::GET, "/v1//transactions"), Resolution::NotFound));
        assert!(matches!(resolve(&table, &Method::GET, "/v1/nothing"), Resolution::NotFound));
        let Resolution::Found(route, _) = resolve(&table, &Method::POST, "/v1/transactions/batch") else {
            panic!("the literal batch path wins over {{id}} for POST")
        };
        assert_eq!(route.pattern, "/v1/transactions/batch");
        // Found by Schemathesis: GET on the batch path was routed to {id} and `Allow` said "POST, GET".
        let Resolution::MethodNotAllowed(allowed) = resolve(&table, &Method::GET, "/v1/transactions/batch")
        else {
            panic!("the batch path answers POST only")
        };
        assert_eq!(allowed, [Method::POST]);
    }

    #[test]
    fn a_tile_path_takes_every_remaining_segment() {
        let table: Table = table();
        let path = "/v1/ledgers/payments/tlog/tile/0/x001/x234/067.p/5";
        let Resolution::Found(route, params) = resolve(&table, &Method::GET, path) else {
            panic!("the tile route must match")
        };
        assert_eq!(route.pattern, "/v1/ledgers/{ledger}/tlog/tile/{tile*}");
        assert!(route.public_tlog);
        assert_eq!(params, [("ledger", "payments".to_owned()), ("tile", "0/x001/x234/067.p/5".to_owned())]);
        let Resolution::Found(route, params) =
            resolve(&table, &Method::GET, "/v1/ledger/tlog/tile/entries/000")
        else {
            panic!("the default ledger's tile route must match")
        };
        assert_eq!(route.pattern, "/v1/ledger/tlog/tile/{tile*}");
        assert_eq!(params, [("tile", "entries/000".to_owned())]);
        for path in ["/v1/ledger/tlog/tile", "/v1/ledger/tlog/tile/", "/v1/ledger/tlog/tile/0//000"] {
            assert!(matches!(resolve(&table, &Method::GET, path), Resolution::NotFound), "{path}");
        }
        let Resolution::Found(route, _) = resolve(&table, &Method::GET, "/v1/ledger/tlog/checkpoint") else {
            panic!("the checkpoint route must match")
        };
        assert!(route.public_tlog);
        let opened: Vec<&str> =
            table.iter().filter(|route| route.public_tlog).map(|route| route.pattern).collect();
        assert!(
            opened.iter().all(|pattern| pattern.contains("/tlog/")),
            "--public-tlog opens only {opened:?}"
        );
    }

    #[test]
    fn the_openapi_document_describes_exactly_the_route_table() {
        let document: serde_json::Value = serde_json::from_str(operations::OPENAPI_DOCUMENT).unwrap();
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, operations) in document["paths"].as_object().unwrap() {
            for (method, operation) in operations.as_object().unwrap() {
                documented.push((method.to_uppercase(), path.clone()));
                let secured =
                    operation.get("security").is_none_or(|security| security != &serde_json::json!([]));
                let table: Table = table();
                let route = table
                    .iter()
                    .find(|route| route.pattern == path && route.method.as_str() == method.to_uppercase());
                if let Some(route) = route {
                    assert_eq!(
                        secured,
                        route.scope.is_some(),
                        "{method} {path}: the document's security differs"
                    );
                }
            }
        }
        documented.sort();
        let table: Table = table();
        let mut served: Vec<(String, String)> =
            // OpenAPI has no multi-segment parameter: `{tile*}` is documented as `{tile}`.
            table.iter().map(|route| (route.method.to_string(), route.pattern.replace("*}", "}"))).collect();
        served.sort();
        assert_eq!(documented, served, "docs/openapi.yaml and the route table disagree");
    }
}
