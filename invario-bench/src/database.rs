//! The PostgreSQL server under test: found as the testkit finds one (a URL,
//! else a throwaway local cluster), checked for durability, and carved into
//! one fresh database per scenario.

use anyhow::{Context as _, bail};
use invario_postgres::PgPool;
use invario_testkit::harness::{TEST_DATABASE_URL_VAR, start_durable_cluster, with_database};
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

/// The environment variable naming the server to benchmark.
pub(crate) const BENCH_DATABASE_URL_VAR: &str = "INVARIO_BENCH_DATABASE_URL";

/// A server to benchmark on.
#[derive(Debug)]
pub(crate) struct BenchServer {
    admin_url: String,
    /// What the report says about the server.
    pub(crate) description: String,
    /// `max_connections`, which bounds the DIY chain's connection pool.
    pub(crate) max_connections: u32,
    /// (name, URL) of every database this run made and has not dropped yet.
    created: std::sync::Mutex<Vec<(String, String)>>,
    checkpoint_refused: std::sync::atomic::AtomicBool,
}

impl BenchServer {
    /// `--database-url`, else `INVARIO_BENCH_DATABASE_URL`, else the tests'
    /// `INVARIO_TEST_DATABASE_URL`, else a durable throwaway cluster.
    pub(crate) async fn resolve(explicit: Option<String>) -> anyhow::Result<Self> {
        let from_environment = |name: &str| std::env::var(name).ok().filter(|url| !url.trim().is_empty());
        let (admin_url, origin) = match explicit
            .or_else(|| from_environment(BENCH_DATABASE_URL_VAR))
            .or_else(|| from_environment(TEST_DATABASE_URL_VAR))
        {
            Some(url) => (url, "given URL"),
            None => {
                let url = tokio::task::spawn_blocking(start_durable_cluster).await?.map_err(|reason| {
                    anyhow::anyhow!(
                        "no PostgreSQL to benchmark: pass --database-url or set {BENCH_DATABASE_URL_VAR}, \
                         or install the server binaries (initdb, pg_ctl) for a throwaway cluster: {reason}"
                    )
                })?;
                (url, "throwaway cluster")
            }
        };
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .with_context(|| format!("cannot connect to {admin_url}"))?;
        let setting = async |admin: &mut PgConnection, name: &str| -> anyhow::Result<String> {
            let row: (String,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SHOW {name}")))
                .fetch_one(admin)
                .await
                .with_context(|| format!("cannot read the server setting {name}"))?;
            Ok(row.0)
        };
        for (name, refused) in [("fsync", "off"), ("synchronous_commit", "off"), ("full_page_writes", "off")]
        {
            let value = setting(&mut admin, name).await?;
            if value == refused {
                bail!(
                    "the server runs with {name}={value}: a number bought by turning durability off is not a \
                     number. Point the benchmark at a durable server."
                );
            }
        }
        let version = setting(&mut admin, "server_version").await?;
        let max_connections: u32 = setting(&mut admin, "max_connections").await?.parse()?;
        let description = format!(
            "PostgreSQL {version} ({origin}; fsync, synchronous_commit and full_page_writes on; max_connections {max_connections})"
        );
        let _ = admin.close().await;
        Ok(BenchServer {
            admin_url,
            description,
            max_connections,
            created: Default::default(),
            checkpoint_refused: Default::default(),
        })
    }

    /// A new, empty database; returns its URL.
    pub(crate) async fn empty_database(&self, purpose: &str) -> anyhow::Result<String> {
        let name = format!("invario_bench_{purpose}_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&self.admin_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .with_context(|| format!("cannot create the database {name}"))?;
        let _ = admin.close().await;
        let url = with_database(&self.admin_url, &name);
        self.created.lock().map_err(|_| anyhow::anyhow!("database list poisoned"))?.push((name, url.clone()));
        Ok(url)
    }

    /// A new database with Invario's schema; returns its URL.
    pub(crate) async fn ledger_database(&self, purpose: &str) -> anyhow::Result<String> {
        let url = self.empty_database(purpose).await?;
        let pool = connect(&url, 1).await?;
        invario_postgres::migrate(&pool).await.context("migrations failed")?;
        pool.close().await;
        Ok(url)
    }

    /// Flushes dirty pages before a timed case, so no case pays for the
    /// previous one's checkpoint. Needs a superuser (or `pg_checkpoint`); without
    /// one the run goes on and says so once.
    pub(crate) async fn settle(&self) -> anyhow::Result<()> {
        let mut admin = PgConnection::connect(&self.admin_url).await?;
        if let Err(error) = sqlx::query("CHECKPOINT").execute(&mut admin).await
            && !self.checkpoint_refused.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            eprintln!("warning: CHECKPOINT refused ({error}); cases may pay for each other's checkpoints");
        }
        let _ = admin.close().await;
        Ok(())
    }

    /// Drops the database at `url` now, so its autovacuum cannot run during later cases.
    pub(crate) async fn discard(&self, url: &str) -> anyhow::Result<()> {
        let name = {
            let mut created = self.created.lock().map_err(|_| anyhow::anyhow!("database list poisoned"))?;
            let position = created.iter().position(|(_, known)| known == url);
            position.map(|position| created.remove(position).0)
        };
        self.drop_named(name.into_iter().collect()).await
    }

    /// Drops every database this run created.
    pub(crate) async fn drop_databases(&self) -> anyhow::Result<()> {
        let created = std::mem::take(&mut *self.created.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
        self.drop_named(created.into_iter().map(|(name, _)| name).collect()).await
    }

    async fn drop_named(&self, names: Vec<String>) -> anyhow::Result<()> {
        let mut admin = PgConnection::connect(&self.admin_url).await?;
        for name in names {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
                .execute(&mut admin)
                .await
                .with_context(|| format!("cannot drop the database {name}"))?;
        }
        let _ = admin.close().await;
        Ok(())
    }
}

/// A pool of at most `connections` on `url`.
pub(crate) async fn connect(url: &str, connections: u32) -> anyhow::Result<PgPool> {
    invario_postgres::connect_with(url, connections).await.with_context(|| format!("cannot connect to {url}"))
}
