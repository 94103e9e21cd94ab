//! Reading from a running Invario server, as auditors do.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

async fn get(base: &str, key: Option<&str>, path: &str) -> anyhow::Result<(String, reqwest::Response)> {
    let client =
        reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().context("cannot build an HTTP client")?;
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut request = client.get(&url);
    if let Some(key) = key {
        request = request.bearer_auth(key.trim());
    }
    let response = request.send().await.with_context(|| format!("cannot reach {url}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let message = body["error"]["message"].as_str().unwrap_or("no message");
        bail!("{url} answered {status}: {message}");
    }
    Ok((url, response))
}

/// GETs `path` as JSON; a non-2xx answer is an error carrying the server's message.
/// The path of `path` (written as a route of the default ledger, e.g.
/// `/v1/ledger/tree` or `/v1/transactions/{id}/proof`) in ledger `ledger`:
/// itself for `default` (so older servers keep answering), else its
/// `/v1/ledgers/{ledger}/…` twin.
pub(crate) fn ledger_path(ledger: &invario_core::LedgerName, path: &str) -> String {
    if ledger.is_default() {
        return path.to_owned();
    }
    match (path.strip_prefix("/v1/ledger/"), path.strip_prefix("/v1/transactions")) {
        (Some(rest), _) => format!("/v1/ledgers/{ledger}/{rest}"),
        (None, Some(rest)) => format!("/v1/ledgers/{ledger}/transactions{rest}"),
        (None, None) => path.to_owned(),
    }
}

pub(crate) async fn fetch_json(base: &str, key: Option<&str>, path: &str) -> anyhow::Result<Value> {
    let (url, response) = get(base, key, path).await?;
    response.json().await.with_context(|| format!("{url} did not answer JSON"))
}

/// GETs `path` as bytes (a signed note).
pub(crate) async fn fetch_bytes(base: &str, key: Option<&str>, path: &str) -> anyhow::Result<Vec<u8>> {
    let (url, response) = get(base, key, path).await?;
    Ok(response.bytes().await.with_context(|| format!("cannot read the answer of {url}"))?.to_vec())
}

#[cfg(test)]
mod tests {
    use super::ledger_path;
    use invario_core::LedgerName;

    #[test]
    fn ledger_paths_are_the_servers_routes() {
        let acme = LedgerName::parse("acme").unwrap();
        let default = LedgerName::default_ledger();
        assert_eq!(ledger_path(&acme, "/v1/ledger/checkpoint"), "/v1/ledgers/acme/checkpoint");
        assert_eq!(ledger_path(&acme, "/v1/ledger/entries?after=0"), "/v1/ledgers/acme/entries?after=0");
        assert_eq!(ledger_path(&acme, "/v1/transactions/x/proof"), "/v1/ledgers/acme/transactions/x/proof");
        assert_eq!(ledger_path(&default, "/v1/ledger/tree"), "/v1/ledger/tree");
    }
}
