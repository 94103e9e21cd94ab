//! The route table: the one place that says which paths exist, which methods
//! they answer, what scope a key needs, how large a body may be and which
//! handler serves them. 404, 405 + `Allow`, body limits, metric labels and
//! authentication are all derived from it by the dispatcher.

mod ledger;
mod operations;
mod proofs;
mod transactions;

pub use ledger::DEFAULT_PAGE_SIZE;

use std::future::Future;
use std::pin::Pin;

use invario_core::{KeyStore, LedgerStore, Scope};
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
pub(crate) type Handler<S, K> = for<'a> fn(&'a App<S, K>, Call) -> HandlerFuture<'a>;

/// One row of the table.
pub(crate) struct Route<S, K> {
    /// The method it answers.
    pub(crate) method: Method,
    /// The path, `{name}` standing for one segment; also the metric label, so
    /// a label always names a real route.
    pub(crate) pattern: &'static str,
    /// The scope a key needs, or `None` for an open route.
    pub(crate) scope: Option<Scope>,
    /// The largest body read, in bytes.
    pub(crate) body_limit: usize,
    /// What serves it.
    pub(crate) handler: Handler<S, K>,
}

impl<S, K> std::fmt::Debug for Route<S, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("method", &self.method)
            .field("pattern", &self.pattern)
            .field("scope", &self.scope)
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

/// Every route the service answers.
pub(crate) fn table<S: LedgerStore + 'static, K: KeyStore + 'static>() -> Vec<Route<S, K>> {
    vec![
        Route {
            method: Method::POST,
            pattern: "/v1/transactions",
            scope: Some(Scope::Write),
            body_limit: MAX_SINGLE_BODY_BYTES,
            handler: |app, call| Box::pin(transactions::create(app, call)),
        },
        Route {
            method: Method::POST,
            pattern: "/v1/transactions/batch",
            scope: Some(Scope::Write),
            body_limit: MAX_BATCH_BODY_BYTES,
            handler: |app, call| Box::pin(transactions::create_batch(app, call)),
        },
        Route {
            method: Method::GET,
            pattern: "/v1/transactions/{id}",
            scope: Some(Scope::Read),
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(transactions::get(app, call)),
        },
        Route {
            method: Method::GET,
            pattern: "/v1/transactions/{id}/proof",
            scope: Some(Scope::Read),
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(proofs::for_transaction(app, call)),
        },
        Route {
            method: Method::GET,
            pattern: "/v1/ledger/tree",
            scope: Some(Scope::Read),
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(proofs::tree(app, call)),
        },
        Route {
            method: Method::GET,
            pattern: "/v1/ledger/checkpoint",
            scope: Some(Scope::Read),
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(proofs::checkpoint(app, call)),
        },
        Route {
            method: Method::GET,
            pattern: "/v1/ledger/proof/inclusion",
            scope: Some(Scope::Read),
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(proofs::inclusion(app, call)),
        },
        Route {
            method: Method::GET,
            pattern: "/v1/ledger/proof/consistency",
            scope: Some(Scope::Read),
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(proofs::consistency(app, call)),
        },
        Route {
            method: Method::GET,
            pattern: "/v1/ledger/head",
            scope: Some(Scope::Read),
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(ledger::head(app, call)),
        },
        Route {
            method: Method::GET,
            pattern: "/v1/ledger/entries",
            scope: Some(Scope::Read),
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(ledger::entries(app, call)),
        },
        Route {
            method: Method::GET,
            pattern: "/health",
            scope: None,
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(operations::health(app, call)),
        },
        Route {
            method: Method::GET,
            pattern: "/livez",
            scope: None,
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(operations::livez(app, call)),
        },
        Route {
            method: Method::GET,
            pattern: "/readyz",
            scope: None,
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(operations::readyz(app, call)),
        },
        Route {
            method: Method::GET,
            pattern: "/openapi.json",
            scope: None,
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(operations::openapi(app, call)),
        },
        Route {
            method: Method::GET,
            pattern: "/metrics",
            scope: None,
            body_limit: NO_BODY,
            handler: |app, call| Box::pin(operations::metrics(app, call)),
        },
    ]
}

/// The path's `{name}` segments and their values.
type Params = Vec<(&'static str, String)>;

/// Where a request lands in the table.
#[derive(Debug)]
pub(crate) enum Resolution<'t, S, K> {
    /// A route, with the path's `{name}` segments.
    Found(&'t Route<S, K>, Vec<(&'static str, String)>),
    /// The path exists, not with this method.
    MethodNotAllowed(Vec<Method>),
    /// No route has this path.
    NotFound,
}

/// Finds the route for `method` and `path` (surrounding slashes ignored).
pub(crate) fn resolve<'t, S, K>(
    table: &'t [Route<S, K>],
    method: &Method,
    path: &str,
) -> Resolution<'t, S, K> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let matching: Vec<(&Route<S, K>, Params)> = table
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

fn match_pattern(pattern: &'static str, segments: &[&str]) -> Option<Vec<(&'static str, String)>> {
    let parts: Vec<&'static str> = pattern.trim_matches('/').split('/').collect();
    if parts.len() != segments.len() {
        return None;
    }
    let mut params = Vec::new();
    for (part, segment) in parts.into_iter().zip(segments) {
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
    use invario_core::{MemoryKeyStore, MemoryLedger};

    use super::*;

    type Table = Vec<Route<MemoryLedger, MemoryKeyStore>>;

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
            table.iter().map(|route| (route.method.to_string(), route.pattern.to_owned())).collect();
        served.sort();
        assert_eq!(documented, served, "docs/openapi.yaml and the route table disagree");
    }
}
