//! Flags and environment fallbacks.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use invario_core::{DEFAULT_LEDGER, LedgerName};
use invario_http::{
    ConfigError, GroupCommit, HttpLimits, KeyCacheSettings, MonitorSchedule, ServiceConfig, Setting,
    TlogAccess,
};

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
    /// Create or list ledgers (each has its own chain, tree and checkpoints).
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Verify the whole ledger; exit 1 naming the first break.
    Verify {
        /// The ledger to verify.
        #[arg(long, default_value = DEFAULT_LEDGER, conflicts_with = "all_ledgers")]
        ledger: LedgerName,
        /// Verify every ledger, each on its own line; exit 1 if any is broken.
        #[arg(long, conflicts_with_all = ["digest", "checkpoints", "json"])]
        all_ledgers: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Also prove the ledger still passes through this saved digest (from `invario digest`).
        #[arg(long)]
        digest: Option<PathBuf>,
        /// Also prove the ledger passes through every signed checkpoint in this
        /// directory (the server's checkpoint directory, or a copy of it).
        #[arg(long, requires = "vkey")]
        checkpoints: Option<PathBuf>,
        /// Verify a mirror (from `invario mirror`) instead of a database, offline:
        /// every tile and bundle rebuilt and checked against its signed checkpoint.
        #[arg(long, requires = "vkey", conflicts_with_all = ["all_ledgers", "digest", "checkpoints", "json"])]
        mirror: Option<PathBuf>,
        /// The log's verifier key (`invario checkpoint-key show`), for --checkpoints or --mirror.
        #[arg(long)]
        vkey: Option<String>,
    },
    /// Copy a log's checkpoint, tiles and entry bundles (C2SP tlog-tiles) into
    /// a folder any static file server can serve, fetching only what is new and
    /// checking every tile against the signed root and the new checkpoint
    /// against the one mirrored before: exit 0 mirrored, 1 refused (a rewrite,
    /// a bad tile or signature; the old copy is kept), 2 could not run.
    Mirror {
        /// The log's tlog-tiles prefix, e.g. http://invario:8000/v1/ledgers/payments/tlog
        /// (the default ledger: …/v1/ledger/tlog), or another mirror's URL.
        #[arg(long)]
        from: String,
        /// The mirror's folder (created when missing).
        #[arg(long)]
        to: PathBuf,
        /// The log's verifier key (`invario checkpoint-key show`).
        #[arg(long)]
        vkey: String,
        /// A key with the read scope (not needed when the server runs with --public-tlog).
        #[arg(long, env = "INVARIO_KEY", hide_env_values = true)]
        key: Option<String>,
    },
    /// Print the current head as JSON, to keep outside the database.
    Digest {
        /// The ledger whose head to print.
        #[arg(long, default_value = DEFAULT_LEDGER)]
        ledger: LedgerName,
    },
    /// Prove with the Merkle tree, checking every hash yourself: exit 0
    /// proven, 1 refuted, 2 could not run.
    #[command(subcommand)]
    Proof(ProofCommand),
    /// Check a running server's signed checkpoint against the one remembered
    /// from the last run (and, with --full, against every entry): exit 0
    /// consistent, 1 inconsistent (both checkpoints printed), 2 could not run.
    Audit {
        /// Base URL of the server, e.g. http://localhost:8000.
        #[arg(long, env = "INVARIO_URL")]
        url: String,
        /// A key with the read scope.
        #[arg(long, env = "INVARIO_KEY", hide_env_values = true)]
        key: String,
        /// The log's verifier key (`invario checkpoint-key show`).
        #[arg(long)]
        vkey: String,
        /// Where this auditor remembers the checkpoints it accepted.
        #[arg(long)]
        state: PathBuf,
        /// Also read every entry, recompute every hash and the tree, and check them against the checkpoint.
        #[arg(long)]
        full: bool,
        /// A witness's cosignature verifier key; repeatable.
        #[arg(long = "witness-vkey")]
        witness_vkeys: Vec<String>,
        /// Refuse the checkpoint unless at least this many of the --witness-vkey witnesses cosigned it.
        #[arg(long, default_value_t = 0)]
        quorum: usize,
        /// A C2SP tlog-policy file giving the witnesses and quorum rule (instead of --witness-vkey and --quorum).
        #[arg(long, conflicts_with_all = ["witness_vkeys", "quorum"])]
        policy: Option<PathBuf>,
        /// The ledger to audit (its checkpoints are signed under <origin>/<ledger>:
        /// `invario checkpoint-key show --ledger NAME` prints its verifier key).
        #[arg(long, default_value = DEFAULT_LEDGER)]
        ledger: LedgerName,
    },
    /// Run a witness for someone else's log (C2SP tlog-witness), or make its key.
    #[command(subcommand)]
    Witness(WitnessCommand),
    /// Manage the key that signs checkpoints (C2SP signed notes, Ed25519).
    #[command(subcommand)]
    CheckpointKey(CheckpointKeyCommand),
}

/// The ledger commands.
#[derive(Debug, Subcommand)]
pub(crate) enum LedgerCommand {
    /// Create a ledger with an empty chain (doing nothing if it exists).
    Create {
        /// Its name: 1 to 63 of a-z, 0-9, '_' and '-', starting with a letter or digit.
        name: LedgerName,
    },
    /// List the ledgers, with their head and when they were created.
    List,
}

/// The witness's commands.
#[derive(Debug, Subcommand)]
pub(crate) enum WitnessCommand {
    /// Create a witness (cosignature) key file (mode 0600; never overwrites) and print its verifier key.
    GenerateKey {
        /// The witness's name, e.g. witness.auditor.example/w1.
        #[arg(long)]
        name: String,
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve POST /add-checkpoint: cosign checkpoints of the given logs that
    /// are consistent with everything this witness cosigned before.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0:8100")]
        listen: String,
        /// The witness's private key (from `invario witness generate-key`).
        #[arg(long)]
        key: PathBuf,
        /// Where the witness keeps what it cosigned, per log.
        #[arg(long)]
        state: PathBuf,
        /// The verifier key of a log to witness (its name is the origin); repeatable.
        #[arg(long = "log", required = true)]
        logs: Vec<String>,
    },
}

/// What to do with a checkpoint key.
#[derive(Debug, Subcommand)]
pub(crate) enum CheckpointKeyCommand {
    /// Create a private key file (mode 0600; never overwrites) and print its verifier key.
    Generate {
        /// The log's origin, a schema-less URL naming it for good, e.g. ledger.example.com/payments.
        #[arg(long)]
        origin: String,
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the verifier key of a private key file.
    Show {
        /// The private key file.
        #[arg(long)]
        key: PathBuf,
        /// The verifier key of this ledger's checkpoints (signed under <origin>/<ledger>).
        #[arg(long, default_value = DEFAULT_LEDGER)]
        ledger: LedgerName,
    },
}

/// Which proof to check.
#[derive(Debug, Subcommand)]
pub(crate) enum ProofCommand {
    /// Prove that a transaction's entry is in the tree: the entry hash is
    /// recomputed from the receipt's fields, then the audit path is checked.
    Inclusion {
        /// The transaction id.
        #[arg(long)]
        id: String,
        /// The tree size to prove against (default: the current size).
        #[arg(long)]
        tree_size: Option<u64>,
        /// The root you trust for --tree-size (from a saved tree head or a
        /// signed checkpoint); without it the server's root is used, unsigned.
        #[arg(long, requires = "tree_size")]
        root: Option<String>,
        #[command(flatten)]
        source: ProofSource,
    },
    /// Prove that the tree of --first entries is a prefix of the tree of --second.
    Consistency {
        /// The older tree size.
        #[arg(long)]
        first: u64,
        /// The newer tree size (default: the current size).
        #[arg(long)]
        second: Option<u64>,
        /// The root you trust for --first.
        #[arg(long)]
        first_root: Option<String>,
        /// The root you trust for --second.
        #[arg(long, requires = "second")]
        second_root: Option<String>,
        #[command(flatten)]
        source: ProofSource,
    },
    /// Save a transaction's C2SP tlog-proof (its receipt, inclusion path and
    /// the latest signed checkpoint with its cosignatures) to a file that
    /// `invario proof verify` checks offline, years later.
    Save {
        /// The transaction id.
        #[arg(long)]
        id: String,
        /// Where to write it (conventionally `<id>.tlog-proof`); never overwritten.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        source: ProofSource,
    },
    /// Verify a saved tlog-proof offline — no database, no network: the entry
    /// hash is recomputed from the receipt in its extra line, the checkpoint's
    /// signature and cosignatures checked, the inclusion path followed to the
    /// signed root. Exit 0 proven, 1 refuted (naming what failed), 2 could not run.
    Verify {
        /// The `.tlog-proof` file (`-` reads standard input).
        #[arg(long)]
        proof: PathBuf,
        /// The log's verifier key (`invario checkpoint-key show`), as text
        /// (with --policy, optional: the policy's log of the checkpoint's origin).
        #[arg(long, required_unless_present = "policy")]
        vkey: Option<String>,
        /// A witness's cosignature verifier key; repeatable.
        #[arg(long = "witness-vkey")]
        witness_vkeys: Vec<String>,
        /// Refuse the proof unless at least this many of the --witness-vkey witnesses cosigned its checkpoint.
        #[arg(long, default_value_t = 0)]
        quorum: usize,
        /// A C2SP tlog-policy file: the trusted logs, witnesses and quorum rule
        /// (instead of --witness-vkey and --quorum).
        #[arg(long, conflicts_with_all = ["witness_vkeys", "quorum"])]
        policy: Option<PathBuf>,
    },
}

/// Where proofs come from: a running server, or the database when no URL is given.
#[derive(Debug, Args)]
pub(crate) struct ProofSource {
    /// The ledger the proof is about.
    #[arg(long, default_value = DEFAULT_LEDGER)]
    pub(crate) ledger: LedgerName,
    /// Base URL of a running server, e.g. http://localhost:8000.
    #[arg(long, env = "INVARIO_URL")]
    pub(crate) url: Option<String>,
    /// A key with the read scope, for --url.
    #[arg(long, env = "INVARIO_KEY", hide_env_values = true, requires = "url")]
    pub(crate) key: Option<String>,
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
    /// Longest group commit waits for more requests after the first (only
    /// while more than one client is writing, and only until one request from
    /// each caller just answered has come; a lone client never waits).
    #[arg(long, env = "INVARIO_GROUP_COMMIT_WINDOW", default_value = "1ms", value_parser = humantime::parse_duration)]
    pub(crate) group_commit_window: Duration,
    /// Most transactions per group commit (1 turns group commit off; at most the batch limit, 10000).
    #[arg(long, env = "INVARIO_GROUP_COMMIT_MAX", default_value_t = invario_http::DEFAULT_GROUP_COMMIT_MAX)]
    pub(crate) group_commit_max: usize,
    /// How long a write waits for room when the append queue is full before
    /// it is answered 503 with Retry-After.
    #[arg(long, env = "INVARIO_APPEND_QUEUE_WAIT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) append_queue_wait: Duration,
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
    /// Threads that answer requests (default: one fewer than the machine's
    /// cores, at least 1, leaving a core to the database and the network
    /// stack the requests wait on; large batches are parsed on other threads).
    #[arg(long, env = "INVARIO_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) worker_threads: Option<u16>,
    /// Most database connections.
    #[arg(long, env = "INVARIO_DATABASE_CONNECTIONS", default_value_t = 16)]
    pub(crate) database_connections: u32,
    /// The private key that signs checkpoints (from `invario checkpoint-key
    /// generate`). Required on PostgreSQL; the embedded default creates
    /// invario-checkpoint.key beside its database file.
    #[arg(long, env = "INVARIO_CHECKPOINT_KEY")]
    pub(crate) checkpoint_key: Option<PathBuf>,
    /// The log's origin, fixed for the life of the ledger; must be the key's
    /// name (default: the key's name; for a key the embedded default creates,
    /// localhost/invario).
    #[arg(long, env = "INVARIO_ORIGIN")]
    pub(crate) origin: Option<String>,
    /// The directory checkpoints are written to: keep it where the database's
    /// administrators cannot write (default: invario-checkpoints beside the
    /// embedded database, or in the working directory on PostgreSQL).
    #[arg(long, env = "INVARIO_CHECKPOINT_DIR")]
    pub(crate) checkpoint_dir: Option<PathBuf>,
    /// How often the tree is checked against the latest checkpoint and, when
    /// it grew, a new checkpoint is signed.
    #[arg(long, env = "INVARIO_CHECKPOINT_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub(crate) checkpoint_interval: Duration,
    /// A witness to submit each new checkpoint to, as URL=VKEY (its base URL
    /// and its cosignature verifier key); repeatable.
    #[arg(long = "witness")]
    pub(crate) witnesses: Vec<String>,
    /// Cosignatures each checkpoint should gather (default: 1 when witnesses
    /// are given); fewer is logged as witness_quorum_missed, never a stop.
    #[arg(long)]
    pub(crate) witness_quorum: Option<usize>,
    /// A C2SP tlog-policy file naming the witnesses (each with its URL) and
    /// the quorum rule each checkpoint should meet, instead of --witness and
    /// --witness-quorum.
    #[arg(long, conflicts_with_all = ["witnesses", "witness_quorum"])]
    pub(crate) witness_policy: Option<PathBuf>,
    /// Longest a write asking `Prefer: wait=signed` or `wait=witnessed` waits
    /// for a checkpoint covering it before it is answered 503 (the entry stays
    /// recorded); keep it above --checkpoint-interval and below --request-timeout.
    #[arg(long, env = "INVARIO_PROOF_WAIT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) proof_wait: Duration,
    /// HTTP connections served at once; more wait in the listen backlog.
    #[arg(long, env = "INVARIO_MAX_CONNECTIONS", default_value_t = 1024)]
    pub(crate) max_connections: usize,
    /// Longest a client may take to send a request's headers before the connection is closed.
    #[arg(long, env = "INVARIO_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) header_read_timeout: Duration,
    /// Longest a request may take (body included) before it is answered 503 unavailable.
    #[arg(long, env = "INVARIO_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub(crate) request_timeout: Duration,
    /// Longest a graceful stop (SIGTERM) waits for requests in flight before exiting.
    #[arg(long, env = "INVARIO_SHUTDOWN_TIMEOUT", default_value = "25s", value_parser = humantime::parse_duration)]
    pub(crate) shutdown_timeout: Duration,
    /// API key records kept in memory between requests, emptied on every key
    /// change (PostgreSQL notifies it; on SQLite the key table's epoch shows it)
    /// (0: read the key table on every request, e.g. behind a pooler that drops
    /// LISTEN).
    #[arg(long, env = "INVARIO_KEY_CACHE_SIZE", default_value_t = invario_core::DEFAULT_KEY_CACHE_CAPACITY)]
    pub(crate) key_cache_size: usize,
    /// Serve the tlog-tiles read API (`…/tlog/checkpoint`, `…/tlog/tile/…`)
    /// to anyone, without a key: for a log monitored or mirrored in public.
    /// Tree sizes reveal volume; transaction content stays behind keys.
    #[arg(long, env = "INVARIO_PUBLIC_TLOG")]
    pub(crate) public_tlog: bool,
}

/// Most database connections `serve` accepts.
pub(crate) const MAX_DATABASE_CONNECTIONS: u32 = 1_000;

impl ServeArgs {
    /// The flag that sets `setting`, for configuration errors.
    fn flag(setting: Setting) -> &'static str {
        match setting {
            Setting::GroupCommitWindow => "--group-commit-window",
            Setting::GroupCommitMax => "--group-commit-max",
            Setting::QueueDepth => "the append queue depth",
            Setting::QueueWait => "--append-queue-wait",
            Setting::IncrementalInterval => "--integrity-interval",
            Setting::FullInterval => "--full-verify-interval",
            Setting::CheckpointInterval => "--checkpoint-interval",
            Setting::MaxConnections => "--max-connections",
            Setting::HeaderReadTimeout => "--header-read-timeout",
            Setting::RequestTimeout => "--request-timeout",
            Setting::ShutdownTimeout => "--shutdown-timeout",
            Setting::KeyCacheCapacity => "--key-cache-size",
            Setting::ProofWait => "--proof-wait",
        }
    }
}

/// A refused setting, named by its flag.
pub(crate) fn flag_error(error: ConfigError) -> anyhow::Error {
    let problem = match &error {
        ConfigError::OutOfRange { min, max, got, .. } => {
            format!("must be between {min} and {max} (got {got})")
        }
        ConfigError::ShorterThan { got, other, other_value, .. } => {
            format!("must not be shorter than {} ({got} < {other_value})", ServeArgs::flag(*other))
        }
    };
    anyhow::anyhow!("{}: {problem}", ServeArgs::flag(error.setting()))
}

/// The service configuration the flags ask for; refused (exit 2) with the
/// flag and its allowed range when a value is out of range.
impl TryFrom<&ServeArgs> for ServiceConfig {
    type Error = anyhow::Error;

    fn try_from(args: &ServeArgs) -> Result<Self, Self::Error> {
        if !(1..=MAX_DATABASE_CONNECTIONS).contains(&args.database_connections) {
            anyhow::bail!(
                "--database-connections: must be between 1 and {MAX_DATABASE_CONNECTIONS} (got {})",
                args.database_connections
            );
        }
        let config = ServiceConfig {
            group_commit: GroupCommit {
                window: args.group_commit_window,
                max_batch: args.group_commit_max,
                queue_wait: args.append_queue_wait,
                ..GroupCommit::default()
            },
            monitor: MonitorSchedule {
                incremental_interval: args.integrity_interval,
                full_interval: args.full_verify_interval,
            },
            checkpoints: None,
            http: HttpLimits {
                max_connections: args.max_connections,
                header_read_timeout: args.header_read_timeout,
                request_timeout: args.request_timeout,
                shutdown_timeout: args.shutdown_timeout,
            },
            key_cache: KeyCacheSettings { capacity: args.key_cache_size },
            tlog_access: if args.public_tlog { TlogAccess::Public } else { TlogAccess::ReadScope },
        };
        config.validate().map_err(flag_error)?;
        invario_http::check_checkpoint_interval(args.checkpoint_interval).map_err(flag_error)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

    use super::*;

    fn config(flags: &[&str]) -> Result<ServiceConfig, String> {
        let cli = Cli::try_parse_from(["invario", "serve"].iter().chain(flags)).map_err(|e| e.to_string())?;
        let Command::Serve(args) = cli.command else { unreachable!("serve was asked for") };
        ServiceConfig::try_from(&args).map_err(|error| error.to_string())
    }

    #[test]
    fn the_defaults_are_a_valid_configuration() {
        assert_eq!(config(&[]).unwrap(), ServiceConfig::default());
    }

    #[test]
    fn each_out_of_range_flag_is_refused_by_name_with_its_range() {
        for (flags, message) in [
            (&["--group-commit-max", "0"][..], "--group-commit-max: must be between 1 and 10000 (got 0)"),
            (&["--group-commit-max", "10001"], "--group-commit-max: must be between 1 and 10000 (got 10001)"),
            (&["--group-commit-window", "2s"], "--group-commit-window: must be between 0s and 1s (got 2s)"),
            (&["--append-queue-wait", "0s"], "--append-queue-wait: must be between 1ms and 60s (got 0s)"),
            (
                &["--integrity-interval", "0s"],
                "--integrity-interval: must be between 10ms and 604800s (got 0s)",
            ),
            (
                &["--integrity-interval", "30d"],
                "--integrity-interval: must be between 10ms and 604800s (got 2592000s)",
            ),
            (
                &["--full-verify-interval", "1ms"],
                "--full-verify-interval: must be between 10ms and 604800s (got 1ms)",
            ),
            (
                &["--integrity-interval", "1m", "--full-verify-interval", "30s"],
                "--full-verify-interval: must not be shorter than --integrity-interval (30s < 60s)",
            ),
            (&["--database-connections", "0"], "--database-connections: must be between 1 and 1000 (got 0)"),
            (&["--max-connections", "0"], "--max-connections: must be between 1 and 100000 (got 0)"),
            (
                &["--header-read-timeout", "10ms"],
                "--header-read-timeout: must be between 100ms and 300s (got 10ms)",
            ),
            (&["--request-timeout", "11m"], "--request-timeout: must be between 1s and 600s (got 660s)"),
            (&["--shutdown-timeout", "0s"], "--shutdown-timeout: must be between 1s and 600s (got 0s)"),
            (
                &["--key-cache-size", "1000001"],
                "--key-cache-size: must be between 0 and 1000000 (got 1000001)",
            ),
        ] {
            assert_eq!(config(flags).unwrap_err(), message, "{flags:?}");
        }
    }

    #[test]
    fn values_at_the_edges_of_their_ranges_are_accepted() {
        let config = config(&[
            "--group-commit-max",
            "10000",
            "--group-commit-window",
            "0s",
            "--integrity-interval",
            "10ms",
            "--full-verify-interval",
            "10ms",
            "--key-cache-size",
            "0",
        ])
        .unwrap();
        assert_eq!(config.key_cache.capacity, 0);
        assert_eq!(config.group_commit.max_batch, invario_core::MAX_BATCH_SIZE);
        assert_eq!(config.monitor.full_interval, Duration::from_millis(10));
    }
}
