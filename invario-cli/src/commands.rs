//! One function per command. Exit codes: 0 success, 1 the ledger is broken,
//! 2 anything that kept the command from running (bad input, no database, …).

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use invario_core::{ChainPosition, EntryHash, KeyAdmin, Ledger, Timestamp};
use invario_core::{KeyStore, LedgerCatalog, LedgerName, LedgerStore};
use invario_http::{LogFormat, ServiceConfig};
use rand::TryRngCore;

use crate::cli::{Cli, Command, LogFormatArg, ServeArgs};
use crate::database::{Backend, Schema, open, with_catalog, with_stores};
use crate::output;

/// Connections for one-shot commands.
const COMMAND_CONNECTIONS: u32 = 2;

pub(crate) fn run(cli: Cli) -> ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Serve(args) = &cli.command {
        builder.worker_threads(args.worker_threads.map_or_else(default_worker_threads, usize::from));
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// `serve`'s worker threads when `--worker-threads` is not given: one fewer
/// than the cores, at least 1. A request's life is mostly waiting — for its
/// client, for the database — and every wait parks a worker and wakes
/// another; on a small host a worker per core leaves none for the database and
/// the network stack, and the workers spend their time waking each other
/// (measured on 2 cores: 1 worker answered ≈ 20 % more requests than 2, one
/// client and 64 alike; BENCHMARKS.md, "Batch JSON off the workers").
fn default_worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| cores.get().saturating_sub(1).max(1))
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let url = cli.database_url.as_deref();
    match cli.command {
        Command::Serve(args) => serve(url, args).await,
        Command::Migrate => migrate(url).await,
        Command::CreateKey { owner, scopes, expires_in } => {
            create_key(url, &owner, &scopes, expires_in).await
        }
        Command::RevokeKey { owner, prefix } => revoke_key(url, owner.as_deref(), prefix.as_deref()).await,
        Command::ListKeys { owner } => list_keys(url, owner.as_deref()).await,
        Command::Ledger(command) => ledger_command(url, command).await,
        Command::Verify { all_ledgers: true, .. } => verify_all_ledgers(url).await,
        Command::Verify { mirror: Some(mirror), vkey, .. } => {
            crate::mirror::verify_mirror(&mirror, vkey.as_deref().unwrap_or_default())
        }
        Command::Mirror { from, to, vkey, key } => {
            crate::mirror::mirror(&from, &to, &vkey, key.as_deref()).await
        }
        Command::Verify { ledger, json, digest, checkpoints, vkey, all_ledgers: false, mirror: None } => {
            let checkpoints = checkpoints.as_deref().zip(vkey.as_deref());
            verify(url, &ledger, json, digest.as_deref(), checkpoints).await
        }
        Command::Digest { ledger } => digest(url, &ledger).await,
        Command::Proof(command) => crate::proof::run(url, command).await,
        Command::CheckpointKey(command) => checkpoint_key(command),
        Command::Witness(command) => witness(command).await,
        Command::Audit { url, key, vkey, state, full, witness_vkeys, quorum, policy, ledger } => {
            let witnesses = crate::audit::Witnesses::parse(&witness_vkeys, quorum, policy.as_deref())?;
            crate::audit::run(&url, &ledger, &key, &vkey, &state, full, &witnesses).await
        }
    }
}

fn now() -> Timestamp {
    // The system clock lies within years 0001–9999; the epoch is only a formal fallback.
    Timestamp::from_datetime(chrono::Utc::now()).unwrap_or(Timestamp::UNIX_EPOCH)
}

async fn serve(url: Option<&str>, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let format = match args.log_format {
        LogFormatArg::Json => LogFormat::Json,
        LogFormatArg::Pretty => LogFormat::Pretty,
    };
    let mut config = ServiceConfig::try_from(&args)?;
    invario_http::init_logging(format, &args.log_level, std::io::stdout)?;
    let backend = open(url, args.database_connections, Schema::Serving).await?;
    config.checkpoints = Some(crate::checkpoints::settings(&args, crate::database::embedded_folder(url))?);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let shutdown = invario_http::shutdown_signal();
    match backend {
        Backend::Postgres(pool) => {
            let keys = invario_postgres::PgKeyStore::new(pool.clone());
            invario_http::serve(listener, invario_postgres::PgCatalog::new(pool), keys, config, shutdown)
                .await?;
        }
        Backend::Sqlite(pool) => {
            let keys = invario_sqlite::SqliteKeyStore::new(pool.clone());
            invario_http::serve(listener, invario_sqlite::SqliteCatalog::new(pool), keys, config, shutdown)
                .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn migrate(url: Option<&str>) -> anyhow::Result<ExitCode> {
    let backend = open(url, COMMAND_CONNECTIONS, Schema::AsIs).await?;
    let applied: Vec<(i64, String)> = match &backend {
        Backend::Postgres(pool) => invario_postgres::migrate(pool)
            .await?
            .into_iter()
            .map(|migration| (migration.version, migration.description))
            .collect(),
        Backend::Sqlite(pool) => invario_sqlite::migrate(pool)
            .await?
            .into_iter()
            .map(|migration| (migration.version, migration.description))
            .collect(),
    };
    let built =
        with_stores!(backend, |ledger, _keys| crate::database::build_tree(&Ledger::new(ledger)).await?);
    if applied.is_empty() {
        println!("Database schema is up to date: no pending migrations.");
    }
    for (version, description) in &applied {
        println!("Applied migration {version} {description}");
    }
    if built > 0 {
        println!("Built the Merkle tree over {built} existing entries");
    }
    Ok(ExitCode::SUCCESS)
}

async fn create_key(
    url: Option<&str>,
    owner: &str,
    scopes: &str,
    expires_in: Option<std::time::Duration>,
) -> anyhow::Result<ExitCode> {
    // Check the input before touching the database, so a typo needs no connection.
    invario_core::Owner::parse(owner)?;
    invario_core::Scopes::parse_json(scopes)?;
    let now = now();
    let expires_at = match expires_in {
        None => None,
        Some(duration) => {
            let micros =
                i64::try_from(duration.as_micros()).map_err(|_| anyhow!("--expires-in is too long"))?;
            Some(
                now.checked_add_micros(micros)
                    .ok_or_else(|| anyhow!("--expires-in reaches past year 9999"))?,
            )
        }
    };
    let backend = open(url, COMMAND_CONNECTIONS, Schema::Current).await?;
    let mut rng = rand::rngs::OsRng.unwrap_err();
    let (secret, record) = with_stores!(backend, |_ledger, keys| KeyAdmin::new(keys)
        .create_key(&mut rng, owner, scopes, expires_at, now)
        .await?);
    println!("{}", output::key_created(record.owner.as_str(), secret.expose()));
    Ok(ExitCode::SUCCESS)
}

async fn revoke_key(
    url: Option<&str>,
    owner: Option<&str>,
    prefix: Option<&str>,
) -> anyhow::Result<ExitCode> {
    if let Some(owner) = owner {
        invario_core::Owner::parse(owner)?;
    }
    let backend = open(url, COMMAND_CONNECTIONS, Schema::Current).await?;
    with_stores!(backend, |_ledger, keys| revoke_with(KeyAdmin::new(keys), owner, prefix).await)
}

async fn revoke_with<K: KeyStore>(
    admin: KeyAdmin<K>,
    owner: Option<&str>,
    prefix: Option<&str>,
) -> anyhow::Result<ExitCode> {
    match (owner, prefix) {
        (Some(owner), _) => {
            let revoked = admin.revoke_owner(owner, now()).await?;
            println!("🔒 Revoked {revoked} active key(s) for '{}'", owner.trim());
        }
        (None, Some(prefix)) => {
            let revoked = admin.revoke_prefix(prefix, now()).await?;
            if revoked == 0 {
                bail!("no active key has the prefix {prefix:?} (see `invario list-keys`)");
            }
            println!("🔒 Revoked key {}", prefix.trim());
        }
        (None, None) => bail!("say which keys to revoke: --owner NAME or --prefix inv_live_…"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn list_keys(url: Option<&str>, owner: Option<&str>) -> anyhow::Result<ExitCode> {
    let backend = open(url, COMMAND_CONNECTIONS, Schema::Current).await?;
    let keys = with_stores!(backend, |_ledger, keys| KeyAdmin::new(keys).list(owner).await?);
    println!("{}", output::key_table(&keys, now()));
    Ok(ExitCode::SUCCESS)
}

fn read_digest(path: &std::path::Path) -> anyhow::Result<ChainPosition> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the digest file {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON from `invario digest`", path.display()))?;
    if value["format"] != invario_core::chain::FORMAT_V1_NAME {
        bail!(
            "{}: unknown digest format {} (expected \"invario.ledger.v1\")",
            path.display(),
            value["format"]
        );
    }
    let sequence_number = value["sequence_number"]
        .as_u64()
        .ok_or_else(|| anyhow!("{}: sequence_number must be a whole number", path.display()))?;
    let entry_hash = EntryHash::from_hex(value["entry_hash"].as_str().unwrap_or_default())
        .with_context(|| format!("{}: entry_hash", path.display()))?;
    Ok(ChainPosition { sequence_number, entry_hash })
}

async fn ledger_command(url: Option<&str>, command: crate::cli::LedgerCommand) -> anyhow::Result<ExitCode> {
    let backend = open(url, COMMAND_CONNECTIONS, Schema::Current).await?;
    match command {
        crate::cli::LedgerCommand::Create { name } => {
            let created = with_catalog!(backend, |catalog| catalog.create_ledger(&name, now()).await?);
            if created {
                println!("Created ledger {name}");
            } else {
                println!("Ledger {name} exists already: nothing changed");
            }
        }
        crate::cli::LedgerCommand::List => {
            let rows = with_catalog!(backend, |catalog| {
                let mut rows = Vec::new();
                for info in catalog.list_ledgers().await? {
                    let head = Ledger::new(catalog.store(&info.name)).head().await?;
                    rows.push((info, head));
                }
                rows
            });
            print!("{}", output::ledger_table(&rows));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Verifies each ledger in turn, one line each; exit 1 if any is broken.
async fn verify_all_ledgers(url: Option<&str>) -> anyhow::Result<ExitCode> {
    let backend = open(url, COMMAND_CONNECTIONS, Schema::Current).await?;
    let mut broken = 0usize;
    let ledgers = with_catalog!(backend, |catalog| {
        let ledgers = catalog.list_ledgers().await?;
        for info in &ledgers {
            let report = Ledger::new(catalog.store(&info.name)).verify_full().await?;
            broken += usize::from(!report.is_intact());
            println!("ledger {}: {}", info.name, output::report_text(&report));
        }
        ledgers.len()
    });
    if broken > 0 {
        println!("❌ {broken} of {ledgers} ledger(s) broken");
        return Ok(ExitCode::from(1));
    }
    println!("✅ All {ledgers} ledger(s) intact");
    Ok(ExitCode::SUCCESS)
}

async fn verify(
    url: Option<&str>,
    ledger: &LedgerName,
    json: bool,
    digest: Option<&std::path::Path>,
    checkpoints: Option<(&std::path::Path, &str)>,
) -> anyhow::Result<ExitCode> {
    let digest = digest.map(read_digest).transpose()?;
    let signed = checkpoints.map(|(dir, vkey)| read_checkpoints(dir, vkey)).transpose()?;
    let expect = invario_core::Expectations {
        digest,
        signed_roots: signed.iter().flatten().map(|checkpoint| checkpoint.head).collect(),
    };
    let backend = open(url, COMMAND_CONNECTIONS, Schema::Current).await?;
    with_catalog!(backend, |catalog| {
        verify_with(Ledger::new(catalog.store(ledger)), json, &expect, signed.as_deref()).await
    })
}

/// Every checkpoint in a checkpoint directory, each verified with `vkey`; a
/// file that does not verify stops the command (it is evidence to look at).
fn read_checkpoints(
    dir: &std::path::Path,
    vkey: &str,
) -> anyhow::Result<Vec<invario_core::checkpoint::Checkpoint>> {
    let key = invario_core::note::VerifierKey::parse(vkey).context("--vkey")?;
    let mut checkpoints = Vec::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the checkpoint directory {}", dir.display()))?;
    for entry in entries {
        let path = entry.with_context(|| format!("cannot read {}", dir.display()))?.path();
        let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        if name != invario_http::LATEST_FILE && !name.ends_with(".checkpoint") {
            continue;
        }
        let note = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let (checkpoint, _) = invario_core::checkpoint::Checkpoint::verify(&note, &key)
            .with_context(|| format!("{} does not verify with the given key", path.display()))?;
        checkpoints.push(checkpoint);
    }
    if checkpoints.is_empty() {
        bail!("{} holds no checkpoint", dir.display());
    }
    Ok(checkpoints)
}

async fn verify_with<S: LedgerStore>(
    ledger: Ledger<S>,
    json: bool,
    expect: &invario_core::Expectations,
    signed: Option<&[invario_core::checkpoint::Checkpoint]>,
) -> anyhow::Result<ExitCode> {
    let digest = expect.digest;
    let head = ledger.head().await?;
    let bar = if std::io::stderr().is_terminal() && !json {
        let bar = indicatif::ProgressBar::new(head.sequence_number);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "verifying {bar:40} {pos}/{len} entries ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let report = ledger.verify_full_with(expect, &mut |checked| bar.set_position(checked)).await?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&output::report_json(&report))?);
    } else {
        println!("{}", output::report_text(&report));
        if let (Some(digest), true) = (digest, report.is_intact()) {
            println!(
                "✅ The ledger still passes through the saved digest at sequence {}",
                digest.sequence_number
            );
        }
        if let (Some(signed), true) = (signed, report.is_intact()) {
            let latest = signed.iter().map(|checkpoint| checkpoint.head.size).max().unwrap_or(0);
            println!(
                "✅ The ledger passes through every signed checkpoint given ({} file(s), the latest at tree size {latest})",
                signed.len()
            );
        }
    }
    Ok(if report.is_intact() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn digest(url: Option<&str>, ledger: &LedgerName) -> anyhow::Result<ExitCode> {
    let backend = open(url, COMMAND_CONNECTIONS, Schema::Current).await?;
    let head = with_catalog!(backend, |catalog| Ledger::new(catalog.store(ledger)).head().await?);
    println!("{}", serde_json::to_string_pretty(&output::digest(&head))?);
    Ok(ExitCode::SUCCESS)
}

fn checkpoint_key(command: crate::cli::CheckpointKeyCommand) -> anyhow::Result<ExitCode> {
    use invario_core::note::{ALGORITHM_ED25519, SignerKey};
    match command {
        crate::cli::CheckpointKeyCommand::Generate { origin, out } => {
            invario_core::checkpoint::check_origin(&origin)?;
            let mut seed = [0u8; 32];
            rand::rngs::OsRng
                .try_fill_bytes(&mut seed)
                .context("the operating system's random source failed")?;
            let key = SignerKey::from_seed(&origin, ALGORITHM_ED25519, seed)?;
            crate::keyfile::write_private(&out, &key.to_private_text())?;
            eprintln!(
                "Wrote the private checkpoint key to {} (mode 0600): keep it where the database's administrators cannot read it.",
                out.display()
            );
            eprintln!("The verifier key below is public: give it to auditors and witnesses.");
            println!("{}", key.verifier());
        }
        crate::cli::CheckpointKeyCommand::Show { key, ledger } => {
            println!("{}", ledger.signer_key(&crate::keyfile::read_private(&key)?)?.verifier());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn witness(command: crate::cli::WitnessCommand) -> anyhow::Result<ExitCode> {
    use invario_core::note::{ALGORITHM_COSIGNATURE, SignerKey, VerifierKey};
    match command {
        crate::cli::WitnessCommand::GenerateKey { name, out } => {
            let mut seed = [0u8; 32];
            rand::rngs::OsRng
                .try_fill_bytes(&mut seed)
                .context("the operating system's random source failed")?;
            let key = SignerKey::from_seed(&name, ALGORITHM_COSIGNATURE, seed)?;
            crate::keyfile::write_private(&out, &key.to_private_text())?;
            eprintln!("Wrote the private witness key to {} (mode 0600).", out.display());
            eprintln!(
                "The verifier key below is public: give it to the logs you witness and to their auditors."
            );
            println!("{}", key.verifier());
        }
        crate::cli::WitnessCommand::Serve { listen, key, state, logs } => {
            invario_http::init_logging(LogFormat::Json, "info", std::io::stdout)?;
            let key = crate::keyfile::read_private(&key)?;
            if key.verifier().algorithm() != ALGORITHM_COSIGNATURE {
                bail!("{} is not a witness key: create one with `invario witness generate-key`", key.name());
            }
            let logs = logs
                .iter()
                .map(|text| VerifierKey::parse(text).with_context(|| format!("--log {text}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let config = invario_http::WitnessConfig {
                key,
                logs,
                state_dir: state,
                http: invario_http::HttpLimits::default(),
            };
            invario_http::serve_witness(listener, config, invario_http::shutdown_signal()).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
