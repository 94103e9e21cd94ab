//! Signed checkpoints: key files, the sink, the guard before signing, start-up refusals.

use invario_testkit::harness::fresh_database;
use invario_testkit::tamper;
use serde_json::json;

use crate::common::*;
use crate::helpers::*;

#[test]
fn checkpoint_keys_are_written_private_never_overwritten_and_shown_again() {
    let folder = std::env::temp_dir().join(format!("invario-keys-{}", rand_id()));
    std::fs::create_dir_all(&folder).unwrap();
    let file = folder.join("log.key");
    let path = file.to_str().unwrap();
    let generated = invario_with_url(
        None,
        &["checkpoint-key", "generate", "--origin", "ledger.example.com/payments", "--out", path],
    );
    assert_eq!(generated.status.code(), Some(0), "{}", text(&generated.stderr));
    let vkey = text(&generated.stdout).trim().to_owned();
    let parsed = invario_core::note::VerifierKey::parse(&vkey).unwrap();
    assert_eq!(parsed.name(), "ledger.example.com/payments");
    let private = std::fs::read_to_string(&file).unwrap();
    assert!(private.starts_with("PRIVATE+KEY+ledger.example.com/payments+"));
    assert!(!text(&generated.stdout).contains("PRIVATE"), "the private key is never printed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let again = invario_with_url(
        None,
        &["checkpoint-key", "generate", "--origin", "ledger.example.com/payments", "--out", path],
    );
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("exists already: a key is never overwritten"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), private, "the first key is untouched");

    let shown = invario_with_url(None, &["checkpoint-key", "show", "--key", path]);
    assert_eq!(text(&shown.stdout).trim(), vkey);
    for origin in ["", "has space/log", "a+b"] {
        let refused = invario_with_url(
            None,
            &[
                "checkpoint-key",
                "generate",
                "--origin",
                origin,
                "--out",
                folder.join("other.key").to_str().unwrap(),
            ],
        );
        assert_eq!(refused.status.code(), Some(2), "{origin:?}");
        assert!(text(&refused.stderr).contains("an origin must be"), "{}", text(&refused.stderr));
    }
    std::fs::write(folder.join("garbage.key"), "not a key").unwrap();
    let garbage = invario_with_url(
        None,
        &["checkpoint-key", "show", "--key", folder.join("garbage.key").to_str().unwrap()],
    );
    assert_eq!(garbage.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(folder);
}

#[tokio::test]
async fn the_server_signs_checkpoints_into_its_sink_and_catches_a_rewritten_history() {
    let setup = SigningSetup::new(10).await;
    let server = setup.serve().await;
    eventually("the first checkpoint is published", async || {
        published_checkpoint_size(&server).await == Some(10)
    })
    .await;
    assert_eq!(setup.latest_size(), Some(10), "the sink holds what is published");
    let first_audit_out = exited(&setup.audit(&server, false), 0);
    assert!(first_audit_out.starts_with("✅ Verified the checkpoint at tree size 10"), "{}", first_audit_out);
    let client = reqwest::Client::new();
    for n in 11..=14u128 {
        let body = json!({"transaction_id": uuid::Uuid::from_u128(n).to_string(), "amount": "4.00", "currency": "EUR"});
        let response = client
            .post(format!("{}/v1/transactions", server.address))
            .bearer_auth(&setup.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    eventually("the grown tree is published", async || published_checkpoint_size(&server).await == Some(14))
        .await;
    assert_eq!(setup.latest_size(), Some(14), "the sink holds what is published");
    assert!(
        setup.folder.join("checkpoints/10.checkpoint").exists()
            && setup.folder.join("checkpoints/14.checkpoint").exists()
    );
    let served = client
        .get(format!("{}/v1/ledger/checkpoint", server.address))
        .bearer_auth(&setup.key)
        .send()
        .await
        .unwrap();
    assert_eq!(served.headers()["content-type"], "text/plain; charset=utf-8");
    let served = served.text().await.unwrap();
    assert_eq!(served, std::fs::read_to_string(setup.folder.join("checkpoints/checkpoint")).unwrap());
    let signer = invario_core::note::SignerKey::parse(
        &std::fs::read_to_string(setup.folder.join("checkpoint.key")).unwrap(),
    )
    .unwrap();
    let (checkpoint, _) =
        invario_core::checkpoint::Checkpoint::verify(served.as_bytes(), &signer.verifier()).unwrap();
    assert_eq!((checkpoint.origin.as_str(), checkpoint.head.size), ("test.invario.local/ledger", 14));
    let (status, health) = health_of(&server).await;
    assert_eq!((status, health["checkpoint_tree_size"].as_u64()), (200, Some(14)));
    for _ in 0..2 {
        let python = setup.python_audit(&server);
        assert_eq!(python.status.code(), Some(0), "{}{}", text(&python.stdout), text(&python.stderr));
        assert!(
            text(&python.stdout).starts_with("consistent: checkpoint at tree size 14"),
            "{}",
            text(&python.stdout)
        );
    }
    let second_audit_out = exited(&setup.audit(&server, true), 0);
    assert!(
        second_audit_out.starts_with("✅ Consistent: the checkpoint at tree size 14"),
        "{second_audit_out}"
    );
    assert!(second_audit_out.contains("extends the one remembered at size 10"), "{second_audit_out}");
    assert!(second_audit_out.contains("Every entry up to 14 recomputed"), "{second_audit_out}");
    let before_out = exited(&setup.verify_against_checkpoints(), 0);
    assert!(before_out.contains("passes through every signed checkpoint given"), "{}", before_out);

    // Behind the API's back: a consistent rewrite of the whole chain, tree rebuilt too.
    tamper::rewrite_chain_from(setup.database.pool(), 3, "31337.00").await.unwrap();
    assert_eq!(
        invario(&setup.database, &["verify"]).status.code(),
        Some(0),
        "the rewrite fools the chain check alone"
    );
    eventually("the running server catches it at its next checkpoint", async || {
        let (status, health) = health_of(&server).await;
        status == 503 && health["kind"] == "checkpoint_inconsistent"
    })
    .await;
    let refused = client
        .post(format!("{}/v1/transactions", server.address))
        .bearer_auth(&setup.key)
        .json(&json!({"transaction_id": uuid::Uuid::from_u128(99).to_string(), "amount": "1", "currency": "EUR"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503, "writes are quarantined");
    assert_eq!(setup.latest_size(), Some(14), "nothing was signed over the rewritten history");
    let after = setup.verify_against_checkpoints();
    assert_eq!(after.status.code(), Some(1), "{}", text(&after.stdout));
    assert!(text(&after.stdout).contains("kind: checkpoint_inconsistent"), "{}", text(&after.stdout));
    let full_audit = setup.audit(&server, true);
    assert_eq!(full_audit.status.code(), Some(1), "{}", text(&full_audit.stdout));
    assert!(text(&full_audit.stdout).starts_with("❌ INCONSISTENT: "), "{}", text(&full_audit.stdout));
    drop(server);

    let restarted = setup.serve().await;
    let (status, health) = health_of(&restarted).await;
    assert_eq!(
        (status, health["kind"].as_str()),
        (503, Some("checkpoint_inconsistent")),
        "caught at start-up: {health}"
    );
    drop(restarted);

    // The attacker also owns the server and wipes its checkpoint directory: it
    // now signs the rewritten history. The auditor remembers.
    let forger = setup.serve_into(&setup.folder.join("wiped-checkpoints")).await;
    eventually("the forged history is published", async || {
        published_checkpoint_size(&forger).await.is_some()
    })
    .await;
    assert!(setup.folder.join("wiped-checkpoints/checkpoint").exists());
    let caught_out = exited(&setup.audit(&forger, false), 1);
    let evidence = caught_out;
    assert!(evidence.starts_with("❌ INCONSISTENT:"), "{evidence}");
    let python = setup.python_audit(&forger);
    assert_eq!(python.status.code(), Some(1), "the Python auditor remembers too: {}", text(&python.stdout));
    assert!(text(&python.stdout).starts_with("INCONSISTENT:"), "{}", text(&python.stdout));
    assert!(
        evidence.contains("the checkpoint remembered from an earlier run")
            && evidence.contains("the checkpoint the server serves now"),
        "{evidence}"
    );
    let _ = std::fs::remove_dir_all(&setup.folder);
}

#[tokio::test]
async fn a_truncated_history_is_caught_at_start_up() {
    let setup = SigningSetup::new(12).await;
    let server = setup.serve().await;
    eventually("the checkpoint at 12 is in the sink", async || setup.latest_size() == Some(12)).await;
    drop(server);
    // Cut the last two entries, point the head at entry 10, rebuild the tree: a consistent, shorter ledger.
    tamper::delete_entry_and_transaction(setup.database.pool(), 12).await.unwrap();
    tamper::delete_entry_and_transaction(setup.database.pool(), 11).await.unwrap();
    let tenth: Vec<u8> =
        sqlx::query_scalar("SELECT entry_hash FROM ledger_entries WHERE sequence_number = 10")
            .fetch_one(setup.database.pool())
            .await
            .unwrap();
    tamper::rewrite_head(setup.database.pool(), 10, tenth.try_into().unwrap()).await.unwrap();
    tamper::rebuild_tree(setup.database.pool()).await.unwrap();
    assert_eq!(
        invario(&setup.database, &["verify"]).status.code(),
        Some(0),
        "a clean cut fools the chain check alone"
    );
    let caught = setup.verify_against_checkpoints();
    assert_eq!(caught.status.code(), Some(1), "{}", text(&caught.stdout));
    assert!(text(&caught.stdout).contains("signed checkpoint at size 12"), "{}", text(&caught.stdout));

    let restarted = setup.serve().await;
    let (status, health) = health_of(&restarted).await;
    assert_eq!((status, health["kind"].as_str()), (503, Some("checkpoint_inconsistent")), "{health}");
    assert!(health["error"].as_str().unwrap().contains("signed checkpoint at size 12"), "{health}");
    let _ = std::fs::remove_dir_all(&setup.folder);
}

#[tokio::test]
async fn serve_on_postgres_refuses_to_start_without_a_checkpoint_key_or_with_another_origin() {
    let database = fresh_database().await;
    let missing = invario(&database, &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing.stderr).contains(
            "--checkpoint-key is required on PostgreSQL: create one with `invario checkpoint-key generate"
        ),
        "{}",
        text(&missing.stderr)
    );
    let folder = std::env::temp_dir().join(format!("invario-origin-{}", rand_id()));
    // A configured key file that does not exist yet: the error says how to make it.
    let absent = folder.join("not-yet.key");
    let absent_key = invario(
        &database,
        &["serve", "--listen", "127.0.0.1:0", "--checkpoint-key", absent.to_str().unwrap()],
    );
    assert_eq!(absent_key.status.code(), Some(2));
    let said = text(&absent_key.stderr);
    assert!(
        said.contains(
            "does not exist: create it with `invario checkpoint-key generate --origin ORIGIN --out"
        ) && said.contains("not-yet.key"),
        "{said}"
    );
    let key = write_checkpoint_key(&folder);
    // A key the service's user cannot read (as the image's uid 10001 cannot read a
    // root-owned mount): the error says whose access is missing. Root reads any
    // file, so as root the service is run as another user.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o000)).unwrap();
        let mut command = if is_root() {
            let mut command = std::process::Command::new("setpriv");
            command.args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_invario")]);
            command
        } else {
            std::process::Command::new(env!("CARGO_BIN_EXE_invario"))
        };
        let unreadable = command
            .args(["serve", "--listen", "127.0.0.1:0", "--checkpoint-key", key.to_str().unwrap()])
            .env("DATABASE_URL", database.url())
            .output()
            .unwrap();
        assert_eq!(unreadable.status.code(), Some(2));
        let said = text(&unreadable.stderr);
        assert!(said.contains("permission denied") && said.contains("uid 10001"), "{said}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let other = invario(
        &database,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--checkpoint-key",
            key.to_str().unwrap(),
            "--origin",
            "elsewhere.example/log",
        ],
    );
    assert_eq!(other.status.code(), Some(2));
    assert!(
        text(&other.stderr).contains("is not the checkpoint key's name test.invario.local/ledger"),
        "{}",
        text(&other.stderr)
    );
    let _ = std::fs::remove_dir_all(folder);
}

/// Whether this process runs as root (which reads any file whatever its mode).
#[cfg(unix)]
fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}
