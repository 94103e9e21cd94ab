//! Scenario 11 (`round-trips`): database round trips per lone append, counted
//! on the wire (a proxy reading the PostgreSQL protocol: every `Sync` and
//! simple `Query` is one wait for the server), for `invario serve` and for
//! the DIY trigger chain's insert, one client, sequential requests.

use super::*;
use crate::wire::RoundTripCounter;

/// Requests before counting (connections opened, statements prepared, the
/// writer's state loaded).
const WARM_UP: u64 = 50;
/// Requests counted.
const COUNTED: u64 = 400;

/// `url` with its host and port replaced by `proxy`, TLS off (the proxy reads
/// the protocol in the clear).
fn through(url: &str, proxy: std::net::SocketAddr) -> anyhow::Result<String> {
    let (scheme, rest) = url.split_once("://").context("a database URL has a scheme")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let credentials = authority.rsplit_once('@').map(|(credentials, _)| format!("{credentials}@"));
    let separator = if path.contains('?') { '&' } else { '?' };
    Ok(format!("{scheme}://{}{proxy}/{path}{separator}sslmode=disable", credentials.unwrap_or_default()))
}

/// The database server's address in `url`.
async fn upstream(url: &str) -> anyhow::Result<std::net::SocketAddr> {
    let rest = url.split_once("://").context("a database URL has a scheme")?.1;
    let authority = rest.split_once('/').map_or(rest, |(authority, _)| authority);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host_port = if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:5432") };
    tokio::net::lookup_host(&host_port).await?.next().with_context(|| format!("cannot resolve {host_port}"))
}

/// Round trips per request of `serve` and of the DIY chain.
pub(super) async fn round_trips(plan: &Plan, server: &BenchServer) -> anyhow::Result<Vec<Measurement>> {
    let url = server.ledger_database("round_trips").await?;
    let key = processes::create_key(&plan.invario, &url).await?;
    let counter = RoundTripCounter::start(upstream(&url).await?).await?;
    let api = Server::start(&plan.invario, &through(&url, counter.address())?, ServeOptions::DEFAULT).await?;
    let client = http_client()?;
    let endpoint = format!("{}/v1/transactions", api.base_url);
    for index in 0..WARM_UP {
        let body = workload::transaction_json(STREAM_ROUND_TRIPS, index).to_string().into_bytes();
        post_created(&client, &endpoint, &key, body).await?;
    }
    let before = counter.count();
    for index in WARM_UP..WARM_UP + COUNTED {
        let body = workload::transaction_json(STREAM_ROUND_TRIPS, index).to_string().into_bytes();
        post_created(&client, &endpoint, &key, body).await?;
    }
    let serve = (counter.count() - before) as f64 / COUNTED as f64;
    api.stop().await?;
    server.discard(&url).await?;

    let diy_url = server.empty_database("round_trips_diy").await?;
    let mut setup = PgConnection::connect(&diy_url).await?;
    sqlx::raw_sql(DIY_TRIGGER_CHAIN).execute(&mut setup).await.context("cannot create the DIY chain")?;
    let _ = setup.close().await;
    let pool = connect(&through(&diy_url, counter.address())?, 1).await?;
    let mut counted_from = 0;
    for index in 0..WARM_UP + COUNTED {
        if index == WARM_UP {
            counted_from = counter.count();
        }
        diy_insert(&pool, STREAM_ROUND_TRIPS, index).await?;
    }
    let diy = (counter.count() - counted_from) as f64 / COUNTED as f64;
    pool.close().await;
    server.discard(&diy_url).await?;
    Ok(vec![
        Measurement::new(
            "11 round trips",
            "1 client, POST /v1/transactions, per request",
            serve,
            "round trips",
        )
        .over(COUNTED)
        .target("1 database round trip", serve <= 1.0),
        Measurement::new(
            "11 round trips",
            "1 client, DIY trigger chain insert (sqlx pool, default ping), per insert",
            diy,
            "round trips",
        )
        .over(COUNTED),
    ])
}

#[cfg(test)]
mod tests {
    use super::through;

    #[test]
    fn a_url_is_pointed_at_the_proxy_with_its_credentials_path_and_options() {
        let proxy: std::net::SocketAddr = "127.0.0.1:6000".parse().unwrap();
        assert_eq!(
            through("postgres://postgres@127.0.0.1:5432/db", proxy).unwrap(),
            "postgres://postgres@127.0.0.1:6000/db?sslmode=disable"
        );
        assert_eq!(
            through("postgresql://u:p@host/db?application_name=x", proxy).unwrap(),
            "postgresql://u:p@127.0.0.1:6000/db?application_name=x&sslmode=disable"
        );
    }
}
