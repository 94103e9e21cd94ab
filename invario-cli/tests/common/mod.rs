//! Helpers shared by the end-to-end test binaries: running `invario`, and
//! `invario serve` as a child process on a free port.
#![allow(dead_code)] // each test binary uses its own subset

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use invario_testkit::harness::TestDatabase;

pub(crate) fn invario(database: &TestDatabase, args: &[&str]) -> Output {
    invario_with_url(Some(database.url()), args)
}

pub(crate) fn invario_with_url(url: Option<&str>, args: &[&str]) -> Output {
    invario_in(&std::env::temp_dir(), url, args)
}

/// Runs `invario` in `folder` (where the embedded default file lives).
pub(crate) fn invario_in(folder: &std::path::Path, url: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_invario"));
    command.current_dir(folder).args(args).env_remove("DATABASE_URL").env("NO_COLOR", "1");
    if let Some(url) = url {
        command.env("DATABASE_URL", url);
    }
    command.output().unwrap()
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// `invario serve` on a free port; killed when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn serve(database: &TestDatabase) -> Server {
    serve_in(&std::env::temp_dir(), Some(database.url())).await
}

pub(crate) async fn serve_in(folder: &std::path::Path, url: Option<&str>) -> Server {
    let mut signing: Vec<std::ffi::OsString> = Vec::new();
    if url.is_some() {
        // PostgreSQL needs a checkpoint key: a fresh one per server, its sink beside it.
        let keys = std::env::temp_dir().join(format!("invario-test-keys-{}", rand_id()));
        let key = write_checkpoint_key(&keys);
        signing = vec![
            "--checkpoint-key".into(),
            key.into(),
            "--checkpoint-dir".into(),
            keys.join("checkpoints").into(),
        ];
    }
    serve_with(folder, url, &signing).await
}

/// A fresh checkpoint key file in `folder`; returns its path.
pub(crate) fn write_checkpoint_key(folder: &std::path::Path) -> std::path::PathBuf {
    std::fs::create_dir_all(folder).unwrap();
    let key = folder.join("checkpoint.key");
    let seed: [u8; 32] = *[*uuid::Uuid::new_v4().as_bytes(); 2].concat().first_chunk::<32>().unwrap();
    let signer = invario_core::note::SignerKey::from_seed(
        "test.invario.local/ledger",
        invario_core::note::ALGORITHM_ED25519,
        seed,
    )
    .unwrap();
    std::fs::write(&key, signer.to_private_text()).unwrap();
    key
}

/// `invario serve` with `extra` flags, on a free port, once it answers.
pub(crate) async fn serve_with(
    folder: &std::path::Path,
    url: Option<&str>,
    extra: &[std::ffi::OsString],
) -> Server {
    serve_logging(folder, url, extra, Stdio::null()).await
}

/// [`serve_with`], its log lines (stdout) written to `log`.
pub(crate) async fn serve_logging(
    folder: &std::path::Path,
    url: Option<&str>,
    extra: &[std::ffi::OsString],
    log: impl Into<Stdio>,
) -> Server {
    serve_at(free_port(), folder, url, extra, log).await
}

/// A port nothing listens on right now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// [`serve_logging`] on `port` (a restarted server keeps its address).
pub(crate) async fn serve_at(
    port: u16,
    folder: &std::path::Path,
    url: Option<&str>,
    extra: &[std::ffi::OsString],
    log: impl Into<Stdio>,
) -> Server {
    let listen = format!("127.0.0.1:{port}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_invario"));
    command.current_dir(folder).env_remove("DATABASE_URL");
    if let Some(url) = url {
        command.env("DATABASE_URL", url);
    }
    // Fast checks unless the caller sets the monitor's intervals itself.
    let monitor: &[&str] = if extra.iter().any(|flag| flag == "--integrity-interval") {
        &[]
    } else {
        &["--integrity-interval", "100ms", "--full-verify-interval", "300ms"]
    };
    let child = command
        .args(["serve", "--listen", &listen])
        .args(monitor)
        .args(extra)
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child, address: format!("http://{listen}") };
    for _ in 0..300 {
        if reqwest::get(format!("{}/health", server.address)).await.is_ok() {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("invario serve did not come up on {listen}");
}

/// The key `invario create-key --owner ClientName` printed (the format checked).
pub(crate) fn created_key(output: &Output) -> String {
    created_key_for(output, "ClientName")
}

/// The key `invario create-key --owner <owner>` printed (the format checked).
pub(crate) fn created_key_for(output: &Output, owner: &str) -> String {
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(lines[0], format!("✅ API Key Created for '{owner}'"));
    let key = lines[1].strip_prefix("🔑 Key: ").expect("the key line");
    assert!(
        key.starts_with("inv_live_")
            && key.len() == 41
            && key[9..].bytes().all(|b| b.is_ascii_alphanumeric())
    );
    assert_eq!(lines[2], "⚠️  SAVE THIS KEY NOW. It will not be shown again.");
    key.to_owned()
}

pub(crate) fn rand_id() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

impl Server {
    /// Stops the server the way an orchestrator does (SIGTERM) and waits for it.
    pub(crate) fn terminate(mut self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "serve exits 0 on SIGTERM, got {exit}");
    }
}

/// The command's stdout, once its exit code is `code` (else fail showing both streams).
pub(crate) fn exited(output: &Output, code: i32) -> String {
    assert_eq!(output.status.code(), Some(code), "{}{}", text(&output.stdout), text(&output.stderr));
    text(&output.stdout)
}

pub(crate) async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}
