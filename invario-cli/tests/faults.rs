//! Faults injected for real under concurrent load — the server killed, the
//! database crashed, its connections terminated, a graceful stop — each
//! checked against the record of what clients were told (invario-testkit's
//! `faults`): nothing acknowledged is lost, no batch is partial, every
//! unanswered request converges when re-sent, and `invario verify` passes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use invario_testkit::faults::{Answer, History, Load, LoadPlan, Report};
use invario_testkit::harness::{Cluster, fresh_database};

mod common;
use common::*;

/// How long a re-sent request may keep answering 503 while the service recovers.
const CONVERGE_WITHIN: Duration = Duration::from_secs(30);
/// The longest any answer may take while the database is down or its connections drop.
const BOUNDED_ANSWER: Duration = Duration::from_secs(10);

/// One service under test: its folder (the embedded file, the checkpoint key),
/// its database, and a fixed port so a restarted server keeps its address.
struct Service {
    folder: PathBuf,
    url: Option<String>,
    port: u16,
    flags: Vec<OsString>,
    clusters: Vec<Cluster>,
}

impl Service {
    fn new(url: Option<&str>) -> Service {
        let folder = std::env::temp_dir().join(format!("invario-faults-{}", uuid::Uuid::new_v4().simple()));
        Service::in_folder(folder, url)
    }

    fn in_folder(folder: PathBuf, url: Option<&str>) -> Service {
        std::fs::create_dir_all(&folder).unwrap();
        // Lighter integrity sweeps than the other end-to-end tests: the load needs the two cores.
        let mut flags: Vec<OsString> =
            ["--integrity-interval", "1s", "--full-verify-interval", "5s"].map(OsString::from).to_vec();
        if url.is_some() {
            let key = write_checkpoint_key(&folder);
            flags.extend(["--checkpoint-key".into(), key.into_os_string()]);
            flags.extend(["--checkpoint-dir".into(), folder.join("checkpoints").into_os_string()]);
        }
        Service { folder, url: url.map(str::to_owned), port: free_port(), flags, clusters: Vec::new() }
    }

    /// Keeps `cluster` running as long as the service.
    fn keep(&mut self, cluster: Cluster) {
        self.clusters.push(cluster);
    }

    async fn start(&self) -> Server {
        // Appended across restarts; kept when the test fails, for the post-mortem.
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        serve_at(self.port, &self.folder, self.url.as_deref(), &self.flags, log).await
    }

    fn log_path(&self) -> PathBuf {
        std::env::temp_dir().join(format!("invario-faults-{}.log", self.port))
    }

    fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn invario(&self, args: &[&str]) -> Output {
        invario_in(&self.folder, self.url.as_deref(), args)
    }

    fn create_key(&self) -> String {
        let scopes = r#"{"write": true, "read": true}"#;
        created_key(&self.invario(&["create-key", "--owner", "ClientName", "--scopes", scopes]))
    }

    /// `invario verify` passes, and holds as many entries as the checker found.
    fn verify_passes(&self, report: &Report) {
        let verified = exited(&self.invario(&["verify"]), 0);
        let expected = format!("{} entries verified", report.ledger_entries);
        assert!(verified.contains(&expected), "{verified} (expected {expected})");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the server's log: {}", self.log_path().display());
        } else {
            let _ = std::fs::remove_file(self.log_path());
        }
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

/// A small tmpfs, unmounted when dropped: a disk that really fills up.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(megabytes: u32) -> SmallDisk {
        let path = std::env::temp_dir().join(format!("invario-small-disk-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            mounted.status.success(),
            "the disk-full test mounts a {megabytes} MiB tmpfs and needs root for it (CI runs as root): {}",
            String::from_utf8_lossy(&mounted.stderr)
        );
        SmallDisk(path)
    }

    /// Fills what is left with a ballast file; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let ballast = self.0.join("ballast");
        let mut file = std::fs::File::create(&ballast).unwrap();
        for chunk in [1 << 20, 4096, 512] {
            while file.write_all(&vec![0u8; chunk]).and_then(|()| file.flush()).is_ok() {}
        }
        ballast
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every refusal is a retryable 503 `unavailable` with `Retry-After`, never a
/// 500; every request was answered, within [`BOUNDED_ANSWER`].
fn only_retryable_refusals(history: &History) -> usize {
    let mut refused = 0;
    for ((status, code, retry_after), count) in history.refusals() {
        assert!(
            status == 503 && code.as_deref() == Some("unavailable") && retry_after.is_some(),
            "{count} requests answered {status} {code:?} (Retry-After {retry_after:?}): a client reads that as our bug"
        );
        refused += count;
    }
    let unanswered: Vec<&Answer> = history.unanswered().map(|attempt| &attempt.answer).take(3).collect();
    assert!(unanswered.is_empty(), "requests without an answer: {unanswered:?}");
    let slowest = history.attempts.iter().map(|attempt| attempt.elapsed).max().unwrap_or_default();
    assert!(slowest < BOUNDED_ANSWER, "an answer took {slowest:?}");
    refused
}

async fn the_server_killed_mid_load_loses_nothing(service: &Service) {
    let key = service.create_key();
    let server = service.start().await;
    let load = Load::start(&service.address(), &key, &LoadPlan::default());
    load.wait_for_acknowledged(300, Duration::from_secs(60)).await;
    drop(server); // SIGKILL, mid-load
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _server = service.start().await;
    let resumed = load.acknowledged();
    load.wait_for_acknowledged(resumed + 300, Duration::from_secs(60)).await;
    let history = load.stop().await;
    assert!(history.unanswered().count() > 0, "the kill cut no request: the fault was not injected mid-load");
    let report = history.check(&service.address(), &key, CONVERGE_WITHIN).await;
    println!("server killed: {report}");
    service.verify_passes(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_server_mid_load_loses_nothing_acknowledged_on_postgres() {
    let database = fresh_database().await;
    the_server_killed_mid_load_loses_nothing(&Service::new(Some(database.url()))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_server_mid_load_loses_nothing_acknowledged_on_the_embedded_default() {
    the_server_killed_mid_load_loses_nothing(&Service::new(None)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_crash_is_503_while_down_and_the_same_process_recovers_by_itself() {
    // A durable cluster of its own: crashing it must not touch the other tests' server.
    let cluster = tokio::task::spawn_blocking(|| Cluster::start("")).await.unwrap().unwrap();
    let service = Service::new(Some(&cluster.url()));
    exited(&service.invario(&["migrate"]), 0);
    let key = service.create_key();
    let _server = service.start().await;
    let load = Load::start(&service.address(), &key, &LoadPlan::default());
    load.wait_for_acknowledged(300, Duration::from_secs(60)).await;

    cluster.crash().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let health = reqwest::get(format!("{}/health", service.address())).await.unwrap();
    assert_eq!(health.status(), 503);
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(health["status"], "unavailable", "{health}");
    // Out of rotation while the database is down, but alive: restarting the process would not help.
    let ready = reqwest::get(format!("{}/readyz", service.address())).await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(ready["check"], "database", "{ready}");
    assert_eq!(reqwest::get(format!("{}/livez", service.address())).await.unwrap().status(), 200);
    let acknowledged_while_down = load.acknowledged();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(load.acknowledged(), acknowledged_while_down, "acknowledged while the database was down");

    cluster.resume().unwrap();
    let resumed = Instant::now();
    load.wait_for_acknowledged(acknowledged_while_down + 1, Duration::from_secs(30)).await;
    let recovery = resumed.elapsed();
    assert_eq!(reqwest::get(format!("{}/readyz", service.address())).await.unwrap().status(), 200);
    load.wait_for_acknowledged(acknowledged_while_down + 300, Duration::from_secs(60)).await;
    let history = load.stop().await;
    let refused = only_retryable_refusals(&history);
    assert!(refused > 0, "no request saw the outage");
    assert!(recovery < Duration::from_secs(10), "writes resumed {recovery:?} after the database returned");
    let report = history.check(&service.address(), &key, CONVERGE_WITHIN).await;
    println!("database crashed: {report}; writes resumed {recovery:?} after PostgreSQL was back");
    service.verify_passes(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_connections_are_503_retryable_and_no_batch_is_partial() {
    let database = fresh_database().await;
    let service = Service::new(Some(database.url()));
    let key = service.create_key();
    let _server = service.start().await;
    let load = Load::start(&service.address(), &key, &LoadPlan::default());
    load.wait_for_acknowledged(200, Duration::from_secs(60)).await;
    let mut terminated = 0;
    for _ in 0..4 {
        // What a failover or an administrator does to the service's backends;
        // repeated for a moment, so some are cut mid-statement, not only idle in the pool.
        for _ in 0..20 {
            let killed: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active'",
            )
            .fetch_all(database.pool())
            .await
            .unwrap();
            terminated += killed.into_iter().filter(|&ok| ok).count();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let before = load.acknowledged();
        load.wait_for_acknowledged(before + 100, Duration::from_secs(60)).await;
    }
    let history = load.stop().await;
    assert!(terminated > 0, "no backend was terminated");
    only_retryable_refusals(&history);
    let report = history.check(&service.address(), &key, CONVERGE_WITHIN).await;
    println!("{terminated} backends terminated in 4 rounds: {report}");
    service.verify_passes(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_or_never_acknowledges_and_exits_zero() {
    let database = fresh_database().await;
    let service = Service::new(Some(database.url()));
    let key = service.create_key();
    let mut server = service.start().await;
    let load = Load::start(&service.address(), &key, &LoadPlan::default());
    load.wait_for_acknowledged(300, Duration::from_secs(60)).await;
    let stopping = Instant::now();
    let signal = std::process::Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status();
    assert!(signal.unwrap().success());
    let exit = loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            break exit;
        }
        assert!(stopping.elapsed() < Duration::from_secs(15), "serve did not exit within 15 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let drained_in = stopping.elapsed();
    assert!(exit.success(), "serve exits 0 on SIGTERM, got {exit}");
    let _server = service.start().await;
    let resumed = load.acknowledged();
    load.wait_for_acknowledged(resumed + 100, Duration::from_secs(60)).await;
    let history = load.stop().await;
    let report = history.check(&service.address(), &key, CONVERGE_WITHIN).await;
    println!("SIGTERM: exited 0 after {drained_in:?}; {report}");
    service.verify_passes(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_a_synchronous_standby_keeps_every_acknowledged_transaction() {
    let (primary, standby) = tokio::task::spawn_blocking(|| {
        let primary = Cluster::start("")?;
        let standby = primary.start_standby()?;
        Ok::<_, String>((primary, standby))
    })
    .await
    .unwrap()
    .unwrap();
    // Synchronous replication: a commit returns once the standby has flushed it.
    let admin = sqlx::PgPool::connect(&primary.url()).await.unwrap();
    sqlx::query("ALTER SYSTEM SET synchronous_standby_names = '*'").execute(&admin).await.unwrap();
    sqlx::query("ALTER SYSTEM SET synchronous_commit = 'on'").execute(&admin).await.unwrap();
    sqlx::query("SELECT pg_reload_conf()").execute(&admin).await.unwrap();
    let mut replication = String::new();
    for _ in 0..200 {
        replication =
            sqlx::query_scalar("SELECT coalesce(string_agg(sync_state, ','), '') FROM pg_stat_replication")
                .fetch_one(&admin)
                .await
                .unwrap();
        if replication == "sync" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(replication, "sync", "the standby never became synchronous");
    admin.close().await;

    let mut service = Service::new(Some(&primary.url()));
    exited(&service.invario(&["migrate"]), 0);
    let key = service.create_key();
    let server = service.start().await;
    let load = Load::start(&service.address(), &key, &LoadPlan::default());
    load.wait_for_acknowledged(500, Duration::from_secs(60)).await;

    primary.crash().unwrap();
    drop(server);
    tokio::task::spawn_blocking(move || standby.promote().map(|()| standby))
        .await
        .unwrap()
        .map(|standby| {
            service.url = Some(standby.url());
            // Keep the promoted cluster alive for the rest of the test.
            service.keep(standby);
        })
        .unwrap();
    let _server = service.start().await;
    let resumed = load.acknowledged();
    load.wait_for_acknowledged(resumed + 300, Duration::from_secs(60)).await;
    let history = load.stop().await;
    let report = history.check(&service.address(), &key, CONVERGE_WITHIN).await;
    println!("failover to the synchronous standby: {report}");
    // The checkpoints signed on the primary are consistent with the promoted standby's tree.
    service.verify_passes(&report);
    let checkpoints = service.folder.join("checkpoints");
    let vkey = exited(
        &service.invario(&[
            "checkpoint-key",
            "show",
            "--key",
            service.folder.join("checkpoint.key").to_str().unwrap(),
        ]),
        0,
    );
    exited(
        &service.invario(&["verify", "--checkpoints", checkpoints.to_str().unwrap(), "--vkey", vkey.trim()]),
        0,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_embedded_default_is_507_and_writes_resume_when_space_returns() {
    let disk = SmallDisk::mount(48);
    let service = Service::in_folder(disk.0.join("ledger"), None);
    let key = service.create_key();
    let _server = service.start().await;
    let load = Load::start(&service.address(), &key, &LoadPlan::default());
    load.wait_for_acknowledged(300, Duration::from_secs(60)).await;

    let ballast = disk.fill();
    load.wait_for_refused(507, 5, Duration::from_secs(60)).await;
    let acknowledged_when_full = load.acknowledged();
    // Reads and health keep working on a full disk.
    let http = reqwest::Client::new();
    let entries = http
        .get(format!("{}/v1/ledger/entries?after=0&limit=10", service.address()))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(entries.status(), 200);
    let health = http.get(format!("{}/health", service.address())).send().await.unwrap();
    assert_eq!(health.status(), 200, "{}", health.text().await.unwrap());

    std::fs::remove_file(ballast).unwrap();
    let freed = Instant::now();
    load.wait_for_acknowledged(acknowledged_when_full + 50, Duration::from_secs(30)).await;
    let recovery = freed.elapsed();
    let history = load.stop().await;
    let mut full = 0;
    for ((status, code, retry_after), count) in history.refusals() {
        assert!(
            status == 507 && code.as_deref() == Some("storage_full") && retry_after.is_some(),
            "{count} requests answered {status} {code:?} (Retry-After {retry_after:?}) on a full disk"
        );
        full += count;
    }
    assert_eq!(history.unanswered().count(), 0);
    let report = history.check(&service.address(), &key, CONVERGE_WITHIN).await;
    println!(
        "disk full: {full} requests answered 507; writes resumed {recovery:?} after space returned; {report}"
    );
    service.verify_passes(&report);
}
