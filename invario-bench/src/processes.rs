//! The real `invario` binary, run as users run it: `serve`, `create-key`, `verify`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Where the `invario` binary is: `--invario`, else next to this binary
/// (`cargo build --release -p invario-cli -p invario-bench` puts both there).
pub(crate) fn locate_invario(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(path) => path,
        None => std::env::current_exe()
            .context("cannot find this binary's own path")?
            .with_file_name(format!("invario{}", std::env::consts::EXE_SUFFIX)),
    };
    if !path.is_file() {
        bail!(
            "the invario binary is not at {}: build it with `cargo build --release -p invario-cli` \
             (or pass --invario PATH)",
            path.display()
        );
    }
    Ok(path)
}

/// The high-water mark of a live process's resident memory, in KiB, as the kernel keeps it.
pub(crate) fn peak_rss_kib(pid: u32) -> Option<u64> {
    proc_kib(&format!("/proc/{pid}/status"), "VmHWM:")
}

/// A `key:  123 kB` line of a /proc file (`status`, `meminfo`), in KiB.
pub(crate) fn proc_kib(path: &str, key: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Creates a write+read key on the database and returns the secret.
pub(crate) async fn create_key(invario: &Path, database_url: &str) -> anyhow::Result<String> {
    let output = Command::new(invario)
        .args(["create-key", "--owner", "invario-bench", "--scopes", r#"{"write": true, "read": true}"#])
        .env("DATABASE_URL", database_url)
        .output()
        .await
        .context("cannot run invario create-key")?;
    if !output.status.success() {
        bail!("invario create-key failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .split_whitespace()
        .find(|word| word.starts_with("inv_live_"))
        .map(str::to_owned)
        .with_context(|| format!("invario create-key printed no key: {stdout}"))
}

/// Runs `invario ledger create NAME` (nothing changes when it exists).
pub(crate) async fn create_ledger(invario: &Path, database_url: &str, name: &str) -> anyhow::Result<()> {
    let output = Command::new(invario)
        .args(["ledger", "create", name])
        .env("DATABASE_URL", database_url)
        .output()
        .await
        .context("cannot run invario ledger create")?;
    if !output.status.success() {
        bail!("invario ledger create {name} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

/// Runs `invario migrate` to the end and returns how long it took.
pub(crate) async fn migrate(invario: &Path, database_url: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let output = Command::new(invario)
        .arg("migrate")
        .env("DATABASE_URL", database_url)
        .output()
        .await
        .context("cannot run invario migrate")?;
    if !output.status.success() {
        bail!("invario migrate failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(started.elapsed())
}

/// What one run of `invario verify` took.
#[derive(Debug)]
pub(crate) struct VerifyRun {
    pub(crate) entries_checked: u64,
    pub(crate) elapsed: Duration,
    pub(crate) peak_rss_kib: u64,
}

/// Runs `invario verify --json` to the end, sampling its memory high-water mark.
pub(crate) async fn verify(invario: &Path, database_url: &str) -> anyhow::Result<VerifyRun> {
    let started = Instant::now();
    let mut child = Command::new(invario)
        .args(["verify", "--json"])
        .env("DATABASE_URL", database_url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run invario verify")?;
    let pid = child.id().context("invario verify exited before it could be observed")?;
    let mut peak = 0;
    // VmHWM is the kernel's own peak, so sampling loses only growth in the last few ms.
    let status = loop {
        if let Some(sample) = peak_rss_kib(pid) {
            peak = peak.max(sample);
        }
        tokio::select! {
            status = child.wait() => break status?,
            () = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    };
    let elapsed = started.elapsed();
    let output = child.wait_with_output().await?;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!("invario verify printed no JSON report: {}", String::from_utf8_lossy(&output.stderr))
    })?;
    if !status.success() || report["intact"] != true {
        bail!("invario verify did not find the ledger intact ({status}): {report}");
    }
    let entries_checked = report["entries_checked"].as_u64().context("the report has no entries_checked")?;
    Ok(VerifyRun { entries_checked, elapsed, peak_rss_kib: peak })
}

/// A fresh checkpoint key and sink directory for one server (PostgreSQL needs a key).
async fn checkpoint_key(invario: &Path, port: u16) -> anyhow::Result<(PathBuf, String, String)> {
    let folder = std::env::temp_dir().join(format!("invario-bench-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
    let key = folder.join("checkpoint.key");
    let _ = std::fs::remove_file(&key);
    let output = Command::new(invario)
        .args(["checkpoint-key", "generate", "--origin", "bench.invario.local/ledger", "--out"])
        .arg(&key)
        .output()
        .await
        .context("cannot run invario checkpoint-key generate")?;
    if !output.status.success() {
        bail!("invario checkpoint-key generate failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let sink = folder.join("checkpoints");
    let _ = std::fs::remove_dir_all(&sink);
    Ok((folder.clone(), key.display().to_string(), sink.display().to_string()))
}

/// How `invario serve` is configured for a run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServeOptions {
    /// Most transactions per group commit; 1 turns group commit off.
    pub(crate) group_commit_max: usize,
    /// Whether authentication keeps key records between requests (the default).
    pub(crate) key_cache: bool,
    /// `--checkpoint-interval` (the default 1s; the knob of a write's proof wait).
    pub(crate) checkpoint_interval: &'static str,
}

impl ServeOptions {
    /// The defaults: group commit of up to 1,000, key cache on.
    pub(crate) const DEFAULT: ServeOptions =
        ServeOptions { group_commit_max: 1_000, key_cache: true, checkpoint_interval: "1s" };
    /// One database transaction per request.
    pub(crate) const NO_GROUP_COMMIT: ServeOptions =
        ServeOptions { group_commit_max: 1, ..ServeOptions::DEFAULT };
}

/// A running `invario serve`, killed when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    child: Child,
    pub(crate) base_url: String,
    log_lines: mpsc::UnboundedReceiver<String>,
    /// Its checkpoint key and sink, removed with it.
    folder: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

impl Server {
    /// Starts the server on a free port and waits until it answers `/health`
    /// (after its start-up full sweep).
    pub(crate) async fn start(
        invario: &Path,
        database_url: &str,
        options: ServeOptions,
    ) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let (folder, key, sink) = checkpoint_key(invario, port).await?;
        let mut child = Command::new(invario)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--log-format", "json"])
            .args(["--checkpoint-key", &key, "--checkpoint-dir", &sink])
            .args(["--log-level", "info,invario_http::monitor=debug"])
            .args(["--group-commit-max", &options.group_commit_max.to_string()])
            .args(["--key-cache-size", if options.key_cache { "4096" } else { "0" }])
            .args(["--checkpoint-interval", options.checkpoint_interval])
            .env("DATABASE_URL", database_url)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run invario serve")?;
        let stdout = child.stdout.take().context("invario serve has no stdout")?;
        let (sender, log_lines) = mpsc::unbounded_channel();
        // Always drained, so a full pipe can never stall the server.
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("\"integrity_check") && sender.send(line).is_err() {
                    break;
                }
            }
        });
        let server = Server { child, base_url: format!("http://127.0.0.1:{port}"), log_lines, folder };
        server.wait_until_ready().await?;
        Ok(server)
    }

    async fn wait_until_ready(&self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(600);
        while Instant::now() < deadline {
            if client.get(format!("{}/health", self.base_url)).send().await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("invario serve did not answer /health within 10 minutes")
    }

    /// The server's resident-memory high-water mark so far, in KiB.
    pub(crate) fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        self.child.id().and_then(peak_rss_kib).context("cannot read the server's memory from /proc")
    }

    /// The next full sweep the server logs as passed: (entries checked, milliseconds).
    pub(crate) async fn next_full_sweep(&mut self) -> anyhow::Result<(u64, u64)> {
        while let Some(line) = self.log_lines.recv().await {
            let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if event["sweep"] == "full" {
                if event["event"] != "integrity_check_passed" {
                    bail!("the server's full sweep did not pass: {line}");
                }
                let entries = event["entries_checked"].as_u64().context("no entries_checked in the log")?;
                let millis = event["millis"].as_u64().context("no millis in the log")?;
                return Ok((entries, millis));
            }
        }
        bail!("the server stopped before logging a full sweep")
    }

    /// Stops the server.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await.context("cannot stop invario serve")
    }
}
