//! Many ledgers: created, listed and verified each on its own; each signs, is audited and is cosigned under its own key.

use invario_core::Ledger;
use invario_testkit::contract::{at, transaction};
use invario_testkit::harness::fresh_database;
use invario_testkit::tamper::{self, TransactionEdit};
use serde_json::{Value, json};

use crate::common::*;
use crate::helpers::*;

#[tokio::test]
async fn ledgers_are_created_listed_and_verified_each_on_its_own() {
    use invario_core::{LedgerCatalog, LedgerName};
    let database = fresh_database().await;
    let created = invario(&database, &["ledger", "create", "acme"]);
    assert_eq!(text(&created.stdout), "Created ledger acme\n", "{}", text(&created.stderr));
    let again = invario(&database, &["ledger", "create", "acme"]);
    assert_eq!(text(&again.stdout), "Ledger acme exists already: nothing changed\n");
    let refused = invario(&database, &["ledger", "create", "Acme"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("ledger name \"Acme\" is not allowed"),
        "{}",
        text(&refused.stderr)
    );

    // The same ids in both ledgers: two chains of their own.
    let catalog = invario_postgres::PgCatalog::new(database.pool().clone());
    let acme = LedgerName::parse("acme").unwrap();
    ledger_of(&database, 3).await;
    let other = Ledger::new(catalog.store(&acme));
    other.ingest((1..=5).map(|n| transaction(n, "1.00")).collect(), at(1)).await.unwrap();
    let listing = text(&invario(&database, &["ledger", "list"]).stdout);
    let rows: Vec<Vec<&str>> = listing.lines().map(|line| line.split_whitespace().collect()).collect();
    assert_eq!(rows[0][..3], ["LEDGER", "ENTRIES", "HEAD"], "{listing}");
    assert_eq!((rows[1][0], rows[1][1]), ("acme", "5"), "{listing}");
    assert_eq!((rows[2][0], rows[2][1]), ("default", "3"), "{listing}");
    let digest: Value =
        serde_json::from_slice(&invario(&database, &["digest", "--ledger", "acme"]).stdout).unwrap();
    assert_eq!(digest["sequence_number"], 5);

    // A tamper in one ledger breaks that ledger only.
    tamper::edit_transaction(
        tamper::Target::ledger(database.pool(), &acme),
        2,
        TransactionEdit::Amount("9.00"),
    )
    .await
    .unwrap();
    assert_eq!(invario(&database, &["verify"]).status.code(), Some(0), "default is intact");
    assert_eq!(invario(&database, &["verify", "--ledger", "acme"]).status.code(), Some(1));
    let all = invario(&database, &["verify", "--all-ledgers"]);
    assert_eq!(all.status.code(), Some(1));
    let report = text(&all.stdout);
    assert!(report.contains("ledger acme: ❌"), "{report}");
    assert!(report.contains("ledger default: ✅"), "{report}");
    assert!(report.ends_with("❌ 1 of 2 ledger(s) broken\n"), "{report}");
    let unknown = invario(&database, &["verify", "--ledger", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("no ledger named \"nope\" exists"), "{}", text(&unknown.stderr));
}

#[tokio::test]
async fn each_ledger_signs_its_own_checkpoints_that_its_auditor_alone_accepts() {
    let setup = SigningSetup::new(3).await;
    assert!(invario(&setup.database, &["ledger", "create", "acme"]).status.success());
    let server = setup.serve().await;
    let client = reqwest::Client::new();
    for n in 1..=5u128 {
        let body = json!({"transaction_id": uuid::Uuid::from_u128(n).to_string(), "amount": "2.00", "currency": "EUR"});
        let response = client
            .post(format!("{}/v1/ledgers/acme/transactions", server.address))
            .bearer_auth(&setup.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let acme_sink = setup.folder.join("checkpoints/ledgers/acme");
    // The sink is written first, the database's served copy after: wait for both.
    let served_acme = async || served_checkpoint(&server, &setup.key, Some("acme")).await.unwrap_or_default();
    eventually("acme's checkpoint is in its own folder and served", async || {
        std::fs::read_to_string(acme_sink.join("checkpoint"))
            .is_ok_and(|note| note.lines().nth(1) == Some("5"))
            && served_acme().await.lines().nth(1) == Some("5")
    })
    .await;
    assert_eq!(setup.latest_size(), Some(3), "the default ledger's sink holds its own tree");

    let key_file = setup.folder.join("checkpoint.key");
    let shown = invario_with_url(
        None,
        &["checkpoint-key", "show", "--key", key_file.to_str().unwrap(), "--ledger", "acme"],
    );
    let acme_vkey = exited(&shown, 0).trim().to_owned();
    assert!(acme_vkey.starts_with("test.invario.local/ledger/acme+"), "{acme_vkey}");
    assert_ne!(acme_vkey, setup.vkey());
    let served = served_acme().await;
    assert!(served.starts_with("test.invario.local/ledger/acme\n5\n"), "{served}");

    let audit = |vkey: &str, state: &str| {
        let state = setup.folder.join(state);
        invario_with_url(
            None,
            &[
                "audit",
                "--url",
                &server.address,
                "--key",
                &setup.key,
                "--vkey",
                vkey,
                "--state",
                state.to_str().unwrap(),
                "--ledger",
                "acme",
                "--full",
            ],
        )
    };
    let accepted = exited(&audit(&acme_vkey, "acme-auditor"), 0);
    assert!(accepted.contains("the checkpoint at tree size 5"), "{accepted}");
    // The service's own key (the default ledger's) does not verify acme's checkpoint.
    let refused = audit(&setup.vkey(), "confused-auditor");
    assert_ne!(refused.status.code(), Some(0), "{}", text(&refused.stdout));
    // The independent Python auditor agrees, both ways.
    let accepted = setup.python_audit_ledger(&server, &acme_vkey, "python-acme", "acme");
    assert_eq!(accepted.status.code(), Some(0), "{}{}", text(&accepted.stdout), text(&accepted.stderr));
    let refused = setup.python_audit_ledger(&server, &setup.vkey(), "python-confused", "acme");
    assert_ne!(refused.status.code(), Some(0), "{}", text(&refused.stdout));

    let id = uuid::Uuid::from_u128(4).to_string();
    for source in [vec!["--url", server.address.as_str(), "--key", setup.key.as_str()], vec![]] {
        let mut args = vec!["proof", "inclusion", "--id", id.as_str(), "--ledger", "acme"];
        args.extend(source);
        let proven = exited(&invario(&setup.database, &args), 0);
        assert!(proven.contains("is entry 4 (leaf 3) of the tree of size 5"), "{proven}");
    }
}

/// A ledger's checkpoints go to the same witnesses; one that trusts the
/// ledger's key cosigns them, and the ledger's auditor requires it.
#[tokio::test]
async fn a_ledgers_checkpoints_are_cosigned_by_a_witness_that_trusts_its_key() {
    use invario_core::note::{Note, SignerKey, VerifierKey};
    use invario_core::witness::check_quorum;
    let setup = SigningSetup::new(2).await;
    assert!(invario(&setup.database, &["ledger", "create", "acme"]).status.success());
    let signer =
        SignerKey::parse(&std::fs::read_to_string(setup.folder.join("checkpoint.key")).unwrap()).unwrap();
    let acme_vkey =
        invario_core::LedgerName::parse("acme").unwrap().signer_key(&signer).unwrap().verifier().to_string();
    let witness_vkey =
        VerifierKey::parse(&exited(&generate_witness_key(&setup.folder.join("witness.key")), 0)).unwrap();
    let witness = witness_serve_for(&setup.folder, &[&setup.vkey(), &acme_vkey]).await;
    let flags: Vec<std::ffi::OsString> = vec![
        "--checkpoint-key".into(),
        setup.folder.join("checkpoint.key").into(),
        "--checkpoint-dir".into(),
        setup.folder.join("checkpoints").into(),
        "--checkpoint-interval".into(),
        "50ms".into(),
        "--witness".into(),
        format!("{}={witness_vkey}", witness.address).into(),
        "--witness-quorum".into(),
        "1".into(),
    ];
    let server = serve_with(&std::env::temp_dir(), Some(setup.database.url()), &flags).await;
    let client = reqwest::Client::new();
    for n in 1..=3u128 {
        let body = json!({"transaction_id": uuid::Uuid::from_u128(n).to_string(), "amount": "9.00", "currency": "EUR"});
        let url = format!("{}/v1/ledgers/acme/transactions", server.address);
        assert_eq!(client.post(url).bearer_auth(&setup.key).json(&body).send().await.unwrap().status(), 201);
    }
    let cosigned = async || {
        let note = served_checkpoint(&server, &setup.key, Some("acme")).await?;
        let parsed = Note::parse(note.as_bytes()).ok()?;
        (note.lines().nth(1) == Some("3")
            && check_quorum(&parsed, std::slice::from_ref(&witness_vkey), 1) == Ok(1))
        .then_some(note)
    };
    eventually("acme's checkpoint of 3 entries is cosigned", async || cosigned().await.is_some()).await;
    let state = setup.folder.join("acme-quorum-auditor");
    let witness_text = witness_vkey.to_string();
    let args = [
        "audit",
        "--url",
        &server.address,
        "--key",
        &setup.key,
        "--vkey",
        &acme_vkey,
        "--state",
        state.to_str().unwrap(),
        "--ledger",
        "acme",
        "--witness-vkey",
        &witness_text,
        "--quorum",
        "1",
    ];
    let accepted = exited(&invario_with_url(None, &args), 0);
    assert!(accepted.starts_with("✅ Verified the checkpoint at tree size 3"), "{accepted}");
    let metrics = reqwest::get(format!("{}/metrics", server.address)).await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|line| line == "invario_checkpoint_cosignatures{ledger=\"acme\"} 1"),
        "{metrics}"
    );
}
