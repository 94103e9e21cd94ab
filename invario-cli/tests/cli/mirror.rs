//! A verified mirror: `invario mirror` copies a ledger's tlog-tiles tree
//! (70,000+ entries, so full and partial tiles of levels 0–2 exist), updates
//! it incrementally, refuses a primary that rewrote history and keeps the old
//! copy; `invario verify --mirror` and `docs/audit.py tiles` rebuild the root
//! from the files alone (served by a plain static file server for the latter)
//! and refuse a flipped byte in any tile.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use invario_core::Ledger;
use invario_postgres::PgLedger;
use invario_testkit::contract::{at, transaction};
use invario_testkit::harness::TestDatabase;

use crate::common::*;
use crate::helpers::*;

/// Appends `ids` straight through the core, 10,000 at a time (fast set-up).
async fn ingest(database: &TestDatabase, ids: std::ops::RangeInclusive<u128>, amount: &str) {
    let ledger = Ledger::new(PgLedger::new(database.pool().clone()));
    let ids: Vec<u128> = ids.collect();
    for chunk in ids.chunks(10_000) {
        ledger.ingest(chunk.iter().map(|n| transaction(*n, amount)).collect(), at(1)).await.unwrap();
    }
}

fn mirror(server: &Server, key: &str, vkey: &str, to: &Path) -> Output {
    let from = format!("{}/v1/ledger/tlog", server.address);
    invario_with_url(
        None,
        &["mirror", "--from", &from, "--to", to.to_str().unwrap(), "--vkey", vkey, "--key", key],
    )
}

fn verify_mirror(dir: &Path, vkey: &str) -> Output {
    invario_with_url(None, &["verify", "--mirror", dir.to_str().unwrap(), "--vkey", vkey])
}

fn python_tiles(source: &[&str], vkey: &str) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/audit.py");
    Command::new("python3").arg(script).arg("tiles").args(source).args(["--vkey", vkey]).output().unwrap()
}

/// `python3 -m http.server` on `dir`: a static file server that knows nothing of Invario.
async fn static_server(dir: &Path) -> Server {
    let port = free_port();
    let child = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string(), "--directory"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child, address: format!("http://127.0.0.1:{port}") };
    for _ in 0..200 {
        if reqwest::get(format!("{}/checkpoint", server.address)).await.is_ok() {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("python3 -m http.server did not come up");
}

async fn wait_for_checkpoint(server: &Server, size: u64) {
    eventually(&format!("a checkpoint of {size} entries"), async || {
        published_checkpoint_size(server).await == Some(size)
    })
    .await;
}

#[tokio::test]
async fn a_mirror_copies_updates_and_checks_every_tile_of_a_large_ledger() {
    let setup = SigningSetup::new(1).await;
    ingest(&setup.database, 2..=70_000, "3.00").await;
    let server = setup.serve().await;
    wait_for_checkpoint(&server, 70_000).await;
    let vkey = setup.vkey();
    let dir = setup.folder.join("mirror/not-yet-there");

    let first = mirror(&server, &setup.key, &vkey, &dir);
    let said = exited(&first, 0);
    assert!(said.contains("Mirrored 70000 entries"), "{said}");
    for path in [
        "checkpoint",
        "tile/0/272",
        "tile/0/273.p/112",
        "tile/1/000",
        "tile/1/001.p/17",
        "tile/2/000.p/1",
        "tile/entries/273.p/112",
    ] {
        assert!(dir.join(path).is_file(), "{path} is missing from the mirror");
    }
    assert_eq!(
        std::fs::read(dir.join("checkpoint")).unwrap(),
        std::fs::read(setup.folder.join("checkpoints/checkpoint")).unwrap(),
        "the mirror keeps the signed checkpoint byte for byte"
    );
    let said = exited(&verify_mirror(&dir, &vkey), 0);
    assert!(said.contains("70000 entries"), "{said}");

    // The independent reader, against the server and against the mirror served as static files.
    let prefix = format!("{}/v1/ledger/tlog", server.address);
    let said = exited(&python_tiles(&["--url", &prefix, "--key", &setup.key], &vkey), 0);
    assert!(said.contains("holds 70000 entries"), "{said}");
    let files = static_server(&dir).await;
    let said = exited(&python_tiles(&["--url", &files.address], &vkey), 0);
    assert!(said.contains("holds 70000 entries"), "{said}");

    // Incremental: only what is new is fetched.
    post_all(&server, &setup.key, 70_001..=70_300, "1.00").await;
    wait_for_checkpoint(&server, 70_300).await;
    let said = exited(&mirror(&server, &setup.key, &vkey, &dir), 0);
    assert!(said.contains("Mirrored 70300 entries"), "{said}");
    assert!(said.contains("consistent with the 70000 entries mirrored before"), "{said}");
    let fetched: usize =
        said.split(" resources fetched").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(fetched < 10, "a few new tiles, not the whole tree: {said}");
    exited(&verify_mirror(&dir, &vkey), 0);
    exited(&python_tiles(&["--dir", dir.to_str().unwrap()], &vkey), 0);

    // One flipped byte in any tile, bundle or the checkpoint is refused by both readers.
    for path in [
        "checkpoint",
        "tile/0/000",
        "tile/0/274.p/156",
        "tile/1/000",
        "tile/1/001.p/18",
        "tile/2/000.p/1",
        "tile/entries/000",
        "tile/entries/274.p/156",
    ] {
        let file = dir.join(path);
        let original = std::fs::read(&file).unwrap();
        let mut flipped = original.clone();
        let position = if path == "checkpoint" { 10 } else { original.len() / 2 };
        flipped[position] ^= 0x01;
        std::fs::write(&file, &flipped).unwrap();
        let said = exited(&verify_mirror(&dir, &vkey), 1);
        assert!(
            path == "checkpoint" || said.contains(path) || said.contains("signed root"),
            "{path}: {said}"
        );
        exited(&python_tiles(&["--dir", dir.to_str().unwrap()], &vkey), 1);
        std::fs::write(&file, &original).unwrap();
    }
    // A missing file, and an empty folder, are refused too.
    let file = dir.join("tile/1/000");
    let original = std::fs::read(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    let said = exited(&verify_mirror(&dir, &vkey), 1);
    assert!(said.contains("tile/1/000 is missing"), "{said}");
    std::fs::write(&file, original).unwrap();
    let empty = setup.folder.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let said = exited(&verify_mirror(&empty, &vkey), 1);
    assert!(said.contains("no checkpoint"), "{said}");
    exited(&verify_mirror(&dir, &vkey), 0);
    drop(files);
}

#[tokio::test]
async fn a_primary_that_rewrote_history_is_refused_and_the_old_copy_kept() {
    let setup = SigningSetup::new(600).await;
    let server = setup.serve().await;
    wait_for_checkpoint(&server, 600).await;
    let vkey = setup.vkey();
    let dir = setup.folder.join("mirror");
    exited(&mirror(&server, &setup.key, &vkey, &dir), 0);
    let kept = std::fs::read(dir.join("checkpoint")).unwrap();
    drop(server);

    // The same log key signs a different history of 700 entries (a consistent
    // rewrite: every hash recomputed, a fresh checkpoint folder so the signer's
    // guard has nothing to compare with — what only a mirror or witness catches).
    let rewritten = fresh_database_with_key(&setup).await;
    ingest(&rewritten, 1..=700, "9.99").await;
    let other_sink = setup.folder.join("rewritten-checkpoints");
    let flags: Vec<std::ffi::OsString> = vec![
        "--checkpoint-key".into(),
        setup.folder.join("checkpoint.key").into(),
        "--checkpoint-dir".into(),
        other_sink.into(),
        "--checkpoint-interval".into(),
        "50ms".into(),
    ];
    let primary = serve_with(&std::env::temp_dir(), Some(rewritten.url()), &flags).await;
    wait_for_checkpoint(&primary, 700).await;
    let key = created_key(&invario(
        &rewritten,
        &["create-key", "--owner", "ClientName", "--scopes", r#"{"read": true}"#],
    ));

    let said = exited(&mirror(&primary, &key, &vkey, &dir), 1);
    assert!(said.contains("rewritten"), "{said}");
    assert_eq!(std::fs::read(dir.join("checkpoint")).unwrap(), kept, "the old copy is kept");
    exited(&verify_mirror(&dir, &vkey), 0);
    // A checkpoint signed by another key is refused before anything is fetched.
    let stranger = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    exited(&mirror(&primary, &key, stranger, &setup.folder.join("other-mirror")), 1);
}

async fn fresh_database_with_key(_setup: &SigningSetup) -> TestDatabase {
    invario_testkit::harness::fresh_database().await
}
