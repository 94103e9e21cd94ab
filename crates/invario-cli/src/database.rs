//! Connecting the adapters the commands need, with errors an operator can act on.

use anyhow::{Context, anyhow, bail};
use invario_postgres::PgPool;

/// Connects to the database named by `--database-url` / `DATABASE_URL`.
pub(crate) async fn connect(url: Option<&str>, max_connections: u32) -> anyhow::Result<PgPool> {
    let url = url.filter(|url| !url.trim().is_empty()).ok_or_else(|| {
        anyhow!("no database given: pass --database-url or set DATABASE_URL (postgres://user:password@host:5432/invario)")
    })?;
    Ok(invario_postgres::connect_with(url, max_connections).await?)
}

/// Connects and refuses a schema that is behind.
pub(crate) async fn connect_migrated(url: Option<&str>, max_connections: u32) -> anyhow::Result<PgPool> {
    let pool = connect(url, max_connections).await?;
    let pending =
        invario_postgres::pending_migrations(&pool).await.context("cannot check the schema version")?;
    if !pending.is_empty() {
        let names: Vec<String> = pending.iter().map(|m| format!("{} {}", m.version, m.description)).collect();
        bail!(
            "the database schema is behind: {} migration(s) pending ({}); run `invario migrate` first",
            pending.len(),
            names.join(", ")
        );
    }
    Ok(pool)
}
