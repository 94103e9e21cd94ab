//! Flags and environment fallbacks.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Invario: a tamper-evident ledger for financial transactions.
#[derive(Debug, Parser)]
#[command(name = "invario", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// PostgreSQL URL, e.g. postgres://user:password@host:5432/invario
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub(crate) database_url: Option<String>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the HTTP API (refuses to start while migrations are pending).
    Serve(ServeArgs),
    /// Apply pending database migrations (safe to run again).
    Migrate,
    /// Create an API key for a client; the key is shown once.
    CreateKey {
        /// Who the key is for, e.g. "ClientName".
        #[arg(long)]
        owner: String,
        /// Scopes as JSON, e.g. '{"write": true}' or '{"write": true, "read": true}'.
        #[arg(long)]
        scopes: String,
        /// Make the key stop working after this long, e.g. 90d, 12h.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<Duration>,
    },
    /// Revoke every active key of an owner, or one key by its prefix.
    #[command(group = clap::ArgGroup::new("which").required(true).args(["owner", "prefix"]))]
    RevokeKey {
        /// Revoke all active keys of this owner.
        #[arg(long)]
        owner: Option<String>,
        /// Revoke the key with this display prefix (as list-keys shows it).
        #[arg(long)]
        prefix: Option<String>,
    },
    /// List keys (never their secrets).
    ListKeys {
        /// Only this owner's keys.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Verify the whole ledger; exit 1 naming the first break.
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Also prove the ledger still passes through this saved digest (from `invario digest`).
        #[arg(long)]
        digest: Option<PathBuf>,
    },
    /// Print the current head as JSON, to keep outside the database.
    Digest,
}

/// Log line format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormatArg {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Pretty,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "INVARIO_LISTEN", default_value = "0.0.0.0:8000")]
    pub(crate) listen: String,
    /// How long group commit waits for more requests after the first (only
    /// while more than one client is writing; a lone client never waits).
    #[arg(long, env = "INVARIO_GROUP_COMMIT_WINDOW", default_value = "1ms", value_parser = humantime::parse_duration)]
    pub(crate) group_commit_window: Duration,
    /// Most transactions per group commit (1 turns group commit off).
    #[arg(long, env = "INVARIO_GROUP_COMMIT_MAX", default_value_t = 1000)]
    pub(crate) group_commit_max: usize,
    /// Interval of the incremental integrity check.
    #[arg(long, env = "INVARIO_INTEGRITY_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub(crate) integrity_interval: Duration,
    /// Interval of the full integrity sweep (also run at start-up); only a full sweep sees edits to old rows.
    #[arg(long, env = "INVARIO_FULL_VERIFY_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub(crate) full_verify_interval: Duration,
    /// Log format.
    #[arg(long, env = "INVARIO_LOG_FORMAT", value_enum, default_value = "json")]
    pub(crate) log_format: LogFormatArg,
    /// Log level filter, e.g. info or invario_http=debug.
    #[arg(long, env = "INVARIO_LOG", default_value = "info")]
    pub(crate) log_level: String,
    /// Most database connections.
    #[arg(long, env = "INVARIO_DATABASE_CONNECTIONS", default_value_t = 16)]
    pub(crate) database_connections: u32,
}
