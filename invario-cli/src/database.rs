//! Choosing and opening the storage the commands run on, with errors an operator
//! can act on: `postgres://…` → PostgreSQL; `sqlite://path` → SQLite; no URL at
//! all → the embedded default `sqlite://./invario.db`.

use std::io::IsTerminal;

use anyhow::{Context, bail};
use invario_core::{Ledger, LedgerStore};
use invario_postgres::{PgLedger, PgPool};
use invario_sqlite::{SqliteLedger, SqlitePool};

/// Where the ledger lives when no URL is given.
pub(crate) const EMBEDDED_DEFAULT_URL: &str = "sqlite://./invario.db";

/// An open database of either kind.
pub(crate) enum Backend {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// What the command needs from the schema.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Schema {
    /// Must be current. SQLite is migrated on first use (embedded mode);
    /// PostgreSQL is refused while migrations are pending.
    Current,
    /// Current, and the Merkle tree must cover the chain (appends extend it):
    /// what `serve` needs.
    Serving,
    /// The `migrate` command applies migrations itself.
    AsIs,
}

/// The folder of the SQLite file the URL names (the embedded default's when
/// none is given), or `None` for PostgreSQL.
pub(crate) fn embedded_folder(url: Option<&str>) -> Option<std::path::PathBuf> {
    let url = url.map(str::trim).filter(|url| !url.is_empty()).unwrap_or(EMBEDDED_DEFAULT_URL);
    let path = std::path::Path::new(invario_sqlite::file_path(url)?);
    Some(
        path.parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."))
            .to_path_buf(),
    )
}

/// Opens the database named by `--database-url` / `DATABASE_URL`, or the embedded default.
pub(crate) async fn open(url: Option<&str>, max_connections: u32, schema: Schema) -> anyhow::Result<Backend> {
    let url = match url.map(str::trim).filter(|url| !url.is_empty()) {
        Some(url) => url,
        None => {
            eprintln!(
                "Using the embedded ledger {EMBEDDED_DEFAULT_URL} (no --database-url or DATABASE_URL; set one to use PostgreSQL)"
            );
            EMBEDDED_DEFAULT_URL
        }
    };
    if invario_sqlite::handles_url(url) {
        let pool = invario_sqlite::connect(url).await?;
        if schema != Schema::AsIs {
            invario_sqlite::migrate(&pool).await?;
            // Embedded mode sets itself up: the tree is built as migrations are applied.
            let built = build_tree(&Ledger::new(SqliteLedger::new(pool.clone()))).await?;
            if built > 0 {
                eprintln!("Built the Merkle tree over {built} existing entries");
            }
        }
        return Ok(Backend::Sqlite(pool));
    }
    if !invario_postgres::handles_url(url) {
        bail!(
            "the database URL is malformed: use postgres://user:password@host:5432/invario or sqlite://path/to/invario.db"
        );
    }
    let pool = invario_postgres::connect_with(url, max_connections).await?;
    if schema != Schema::AsIs {
        let pending =
            invario_postgres::pending_migrations(&pool).await.context("cannot check the schema version")?;
        if !pending.is_empty() {
            let names: Vec<String> =
                pending.iter().map(|m| format!("{} {}", m.version, m.description)).collect();
            bail!(
                "the database schema is behind: {} migration(s) pending ({}); run `invario migrate` first",
                pending.len(),
                names.join(", ")
            );
        }
    }
    if schema == Schema::Serving {
        let ledger = Ledger::new(PgLedger::new(pool.clone()));
        let (tree, head) = (ledger.tree_head().await?, ledger.head().await?);
        if tree.size < head.sequence_number {
            bail!(
                "the Merkle tree covers {} of {} entries; run `invario migrate` to build it",
                tree.size,
                head.sequence_number
            );
        }
    }
    Ok(Backend::Postgres(pool))
}

/// Builds the Merkle tree for entries that have none, with a progress bar on
/// a terminal; returns how many leaves it added.
pub(crate) async fn build_tree<S: LedgerStore>(ledger: &Ledger<S>) -> anyhow::Result<u64> {
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "building the Merkle tree {bar:40} {pos}/{len} entries ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let built = ledger
        .build_tree(&mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })
        .await
        .context("cannot build the Merkle tree")?;
    bar.finish_and_clear();
    Ok(built)
}

/// Runs `$body` with `$ledger` and `$keys` bound to the backend's two stores.
macro_rules! with_stores {
    ($backend:expr, |$ledger:ident, $keys:ident| $body:expr) => {
        match $backend {
            $crate::database::Backend::Postgres(pool) => {
                let $ledger = invario_postgres::PgLedger::new(pool.clone());
                let $keys = invario_postgres::PgKeyStore::new(pool);
                $body
            }
            $crate::database::Backend::Sqlite(pool) => {
                let $ledger = invario_sqlite::SqliteLedger::new(pool.clone());
                let $keys = invario_sqlite::SqliteKeyStore::new(pool);
                $body
            }
        }
    };
}
pub(crate) use with_stores;

/// Runs `$body` with `$catalog` bound to the backend's ledger catalog.
macro_rules! with_catalog {
    ($backend:expr, |$catalog:ident| $body:expr) => {
        match $backend {
            $crate::database::Backend::Postgres(pool) => {
                let $catalog = invario_postgres::PgCatalog::new(pool);
                $body
            }
            $crate::database::Backend::Sqlite(pool) => {
                let $catalog = invario_sqlite::SqliteCatalog::new(pool);
                $body
            }
        }
    };
}
pub(crate) use with_catalog;
