//! The built-in witness (tlog-witness) and checkpoints cosigned by it; a forged history refused.

use invario_testkit::tamper;

use crate::common::*;
use crate::helpers::*;

#[tokio::test]
async fn the_built_in_witness_speaks_tlog_witness_and_never_rolls_back() {
    use invario_core::checkpoint::Checkpoint;
    use invario_core::merkle::{LeafHashes, TreeHash, consistency_proof, leaf_hash, root_of_leaves};
    use invario_core::note::{Note, SignerKey, VerifierKey};
    use invario_core::witness::{AddCheckpoint, check_quorum};

    let folder = std::env::temp_dir().join(format!("invario-witness-{}", rand_id()));
    let log = SignerKey::parse(&std::fs::read_to_string(write_checkpoint_key(&folder)).unwrap()).unwrap();
    let generated = generate_witness_key(&folder.join("witness.key"));
    let witness_vkey = VerifierKey::parse(&exited(&generated, 0)).unwrap();
    let witness = witness_serve(&folder, &log.verifier().to_string()).await;

    let leaves: Vec<TreeHash> = (0..400u64).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let note = |signer: &SignerKey, size: usize, leaves: &[TreeHash]| {
        let checkpoint = Checkpoint {
            origin: signer.name().to_owned(),
            head: invario_core::merkle::TreeHead { size: size as u64, root: root_of_leaves(&leaves[..size]) },
        };
        checkpoint.sign(signer).unwrap().to_text()
    };
    let submit = |old: usize, proof: Vec<TreeHash>, note: String| {
        let body = AddCheckpoint { old_size: old as u64, proof, note: note.into_bytes() }.to_body();
        let url = format!("{}/add-checkpoint", witness.address);
        async move {
            let response = reqwest::Client::new().post(url).body(body).send().await.unwrap();
            let status = response.status().as_u16();
            let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
            (status, content_type, response.text().await.unwrap())
        }
    };
    let proof =
        |old: usize, new: usize| consistency_proof(&LeafHashes(&leaves), old as u64, new as u64).unwrap();

    // First submission, then growth: each answered with a cosignature that verifies.
    let first_note = note(&log, 10, &leaves);
    let (status, _, line) = submit(0, vec![], first_note.clone()).await;
    assert_eq!(status, 200, "{line}");
    let cosigned = Note::parse(format!("{first_note}{line}").as_bytes()).unwrap();
    assert_eq!(check_quorum(&cosigned, std::slice::from_ref(&witness_vkey), 1), Ok(1));
    let (status, _, body) = submit(10, proof(10, 257), note(&log, 257, &leaves)).await;
    assert_eq!(status, 200, "{body}");

    // A stale old: 409 naming the size to retry from.
    let (status, content_type, body) = submit(10, proof(10, 300), note(&log, 300, &leaves)).await;
    assert_eq!((status, content_type.as_deref(), body.as_str()), (409, Some("text/x.tlog.size"), "257\n"));
    // A bad proof, a fork at the same size, an unknown origin, an untrusted key, old beyond the size.
    let mut bad = proof(257, 300);
    bad[0].0[0] ^= 1;
    assert_eq!(submit(257, bad, note(&log, 300, &leaves)).await.0, 422);
    let forged: Vec<TreeHash> = leaves.iter().rev().copied().collect();
    assert_eq!(submit(257, vec![], note(&log, 257, &forged)).await.0, 422, "same size, another root");
    let stranger =
        SignerKey::from_seed("elsewhere.example/log", invario_core::note::ALGORITHM_ED25519, [8; 32])
            .unwrap();
    assert_eq!(submit(0, vec![], note(&stranger, 5, &leaves)).await.0, 404);
    let impostor = SignerKey::from_seed(log.name(), invario_core::note::ALGORITHM_ED25519, [9; 32]).unwrap();
    assert_eq!(submit(257, proof(257, 300), note(&impostor, 300, &leaves)).await.0, 403);
    assert_eq!(submit(301, vec![], note(&log, 300, &leaves)).await.0, 400);

    // Two concurrent submissions of the same growth: one cosigns, the other is told the new size.
    let (a, b) = tokio::join!(
        submit(257, proof(257, 300), note(&log, 300, &leaves)),
        submit(257, proof(257, 300), note(&log, 300, &leaves)),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");

    // A restart keeps the state.
    drop(witness);
    let witness = witness_serve(&folder, &log.verifier().to_string()).await;
    let url = format!("{}/add-checkpoint", witness.address);
    let body =
        AddCheckpoint { old_size: 0, proof: vec![], note: note(&log, 10, &leaves).into_bytes() }.to_body();
    let response = reqwest::Client::new().post(url).body(body).send().await.unwrap();
    assert_eq!(response.status(), 409);
    assert_eq!(response.text().await.unwrap(), "300\n");
    drop(witness);
    let _ = std::fs::remove_dir_all(folder);
}

#[tokio::test]
async fn checkpoints_are_cosigned_by_a_witness_that_refuses_a_forged_history() {
    use invario_core::note::{Note, VerifierKey};
    use invario_core::witness::check_quorum;

    let setup = SigningSetup::new(10).await;
    let generated = generate_witness_key(&setup.folder.join("witness.key"));
    let witness_vkey = VerifierKey::parse(&exited(&generated, 0)).unwrap();
    let witness = witness_serve(&setup.folder, &setup.vkey()).await;
    let with_witness = |sink: &str| -> Vec<std::ffi::OsString> {
        vec![
            "--checkpoint-key".into(),
            setup.folder.join("checkpoint.key").into(),
            "--checkpoint-dir".into(),
            setup.folder.join(sink).into(),
            "--checkpoint-interval".into(),
            "50ms".into(),
            "--witness".into(),
            format!("{}={witness_vkey}", witness.address).into(),
            "--witness-quorum".into(),
            "1".into(),
        ]
    };
    let served = async |server: &Server| served_checkpoint(server, &setup.key, None).await;
    let audit_with_quorum = |server: &Server, state: &str| {
        let state = setup.folder.join(state);
        let witness_vkey = witness_vkey.to_string();
        let args = [
            "audit",
            "--url",
            &server.address,
            "--key",
            &setup.key,
            "--vkey",
            &setup.vkey(),
            "--state",
            state.to_str().unwrap(),
            "--witness-vkey",
            &witness_vkey,
            "--quorum",
            "1",
        ];
        invario_with_url(None, &args)
    };
    let witness_vkey_text = witness_vkey.to_string();
    let python_audit_with_quorum = |server: &Server, state: &str| {
        setup.python_audit_with(server, state, &["--witness-vkey", &witness_vkey_text, "--quorum", "1"])
    };
    let metric = |server: &Server, name: &str| {
        let url = format!("{}/metrics", server.address);
        let name = name.to_owned();
        async move {
            let metrics = reqwest::get(url).await.unwrap().text().await.unwrap();
            metrics.lines().find_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                (series == name).then(|| value.parse::<f64>().unwrap())
            })
        }
    };
    // A log that submits to no witness: an auditor asking for a quorum refuses its checkpoint.
    let unwitnessed = setup.serve_into(&setup.folder.join("unwitnessed")).await;
    eventually("a checkpoint is signed", async || served(&unwitnessed).await.is_some()).await;
    let refused = exited(&audit_with_quorum(&unwitnessed, "quorum-auditor"), 1);
    assert!(
        refused.starts_with("❌ INCONSISTENT: witnesses: 0 of the required 1 witnesses cosigned"),
        "{refused}"
    );
    let refused = exited(&python_audit_with_quorum(&unwitnessed, "python-quorum-auditor"), 1);
    assert!(
        refused.starts_with("INCONSISTENT: witnesses: 0 of the required 1 witnesses cosigned"),
        "{refused}"
    );
    drop(unwitnessed);

    let server =
        serve_with(&std::env::temp_dir(), Some(setup.database.url()), &with_witness("checkpoints")).await;
    post_all(&server, &setup.key, 11..=20, "2.00").await;
    eventually("the checkpoint at 20 is served with the witness's cosignature", async || {
        served(&server)
            .await
            .is_some_and(|note| note.lines().nth(1) == Some("20") && note.contains("witness.test/w1"))
    })
    .await;
    let note = served(&server).await.unwrap();
    let parsed = Note::parse(note.as_bytes()).unwrap();
    assert_eq!(check_quorum(&parsed, std::slice::from_ref(&witness_vkey), 1), Ok(1), "{note}");
    let accepted = exited(&audit_with_quorum(&server, "quorum-auditor"), 0);
    assert!(accepted.contains("the checkpoint at tree size 20"), "{accepted}");
    let accepted = exited(&python_audit_with_quorum(&server, "python-quorum-auditor"), 0);
    assert!(accepted.contains("cosigned by 1 of the 1 trusted witnesses"), "{accepted}");
    assert_eq!(metric(&server, "invario_checkpoint_cosignatures{ledger=\"default\"}").await, Some(1.0));
    assert_eq!(metric(&server, "invario_witness_quorum{ledger=\"default\"}").await, Some(1.0));
    let age = metric(
        &server,
        "invario_witness_cosignature_age_seconds{ledger=\"default\",witness=\"witness.test/w1\"}",
    )
    .await;
    assert!(age.is_some_and(|seconds| (0.0..60.0).contains(&seconds)), "{age:?}");
    every_monitored_metric_is_exported(&server).await;
    drop(server);

    // The attacker holds the signing key, rewrites the chain (tree too) and wipes the checkpoint directory.
    tamper::rewrite_chain_from(setup.database.pool(), 3, "31337.00").await.unwrap();
    let log_path = setup.folder.join("forger.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let forger =
        serve_logging(&std::env::temp_dir(), Some(setup.database.url()), &with_witness("wiped"), log).await;
    eventually("the forged history is signed", async || setup.folder.join("wiped/checkpoint").exists()).await;
    // The witness refused it: the service counts the failure and says it missed its quorum...
    eventually("the refusal is counted", async || {
        let metrics =
            reqwest::get(format!("{}/metrics", forger.address)).await.unwrap().text().await.unwrap();
        metrics.lines().any(|line| {
            line.starts_with("invario_witness_submissions_total") && line.contains("outcome=\"failed\"")
        })
    })
    .await;
    // ...the forged note never gains a cosignature, and what the witness holds is the honest tree.
    let forged_note = std::fs::read_to_string(setup.folder.join("wiped/checkpoint")).unwrap();
    assert_ne!(
        Note::parse(forged_note.as_bytes()).unwrap().text,
        parsed.text,
        "the forgery has another root"
    );
    let resubmitted =
        invario_core::witness::AddCheckpoint { old_size: 20, proof: vec![], note: forged_note.into_bytes() };
    let answer = reqwest::Client::new()
        .post(format!("{}/add-checkpoint", witness.address))
        .body(resubmitted.to_body())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 422, "the witness refuses the same size with another root");
    assert_eq!(served(&forger).await.unwrap(), note, "the database's copy at 20 is still the honest one");

    // The forged history grows: its new checkpoint cannot gather a cosignature, and the service says so.
    post_all(&forger, &setup.key, 21..=25, "2.00").await;
    eventually("the forged checkpoint at 25 is served", async || {
        served(&forger).await.is_some_and(|note| note.lines().nth(1) == Some("25"))
    })
    .await;
    eventually("the missed quorum is logged as an error", async || {
        std::fs::read_to_string(&log_path).unwrap().lines().any(|line| {
            line.contains("\"event\":\"witness_quorum_missed\"")
                && line.contains("\"tree_size\":25")
                && line.contains("\"level\":\"error\"")
        })
    })
    .await;
    assert_eq!(metric(&forger, "invario_checkpoint_cosignatures{ledger=\"default\"}").await, Some(0.0));
    let forged_25 = served(&forger).await.unwrap();
    assert!(!forged_25.contains("witness.test/w1"), "{forged_25}");
    // An auditor who never saw the honest log, but asks for one witness, refuses it.
    let refused = exited(&audit_with_quorum(&forger, "newcomer"), 1);
    assert!(
        refused.starts_with("❌ INCONSISTENT: witnesses: 0 of the required 1 witnesses cosigned"),
        "{refused}"
    );
    let refused = exited(&python_audit_with_quorum(&forger, "python-newcomer"), 1);
    assert!(refused.starts_with("INCONSISTENT: witnesses: 0 of the required 1"), "{refused}");
    drop(forger);
    drop(witness);
    let _ = std::fs::remove_dir_all(&setup.folder);
}

/// A witness that was down when the latest checkpoint was signed cosigns it
/// on a later round, with no new entry; monitors then read that checkpoint
/// from the witness itself (`GET /<origin hash>/checkpoint`).
#[tokio::test]
async fn a_witness_that_missed_the_latest_cosigns_it_later_and_serves_it_to_monitors() {
    use invario_core::note::{Note, VerifierKey};
    use sha2::Digest;

    let setup = SigningSetup::new(10).await;
    let witness_vkey =
        VerifierKey::parse(&exited(&generate_witness_key(&setup.folder.join("witness.key")), 0)).unwrap();
    let port = free_port();
    let flags: Vec<std::ffi::OsString> = vec![
        "--checkpoint-key".into(),
        setup.folder.join("checkpoint.key").into(),
        "--checkpoint-dir".into(),
        setup.folder.join("checkpoints").into(),
        "--checkpoint-interval".into(),
        "50ms".into(),
        "--witness".into(),
        format!("http://127.0.0.1:{port}={witness_vkey}").into(),
        "--witness-quorum".into(),
        "1".into(),
    ];
    let server = serve_with(&std::env::temp_dir(), Some(setup.database.url()), &flags).await;
    eventually("the checkpoint at 10 is served, uncosigned", async || {
        served_checkpoint(&server, &setup.key, None)
            .await
            .is_some_and(|note| note.lines().nth(1) == Some("10"))
    })
    .await;
    let served = served_checkpoint(&server, &setup.key, None).await.unwrap();
    assert!(!served.contains("witness.test/w1"), "the witness was down: {served}");

    let witness = witness_serve_at(&setup.folder, &[&setup.vkey()], port).await;
    eventually("the idle ledger's latest is cosigned once the witness is back", async || {
        served_checkpoint(&server, &setup.key, None)
            .await
            .is_some_and(|note| note.contains("— witness.test/w1 "))
    })
    .await;
    let served = served_checkpoint(&server, &setup.key, None).await.unwrap();
    assert_eq!(served.lines().nth(1), Some("10"), "no new entry was needed: {served}");

    // The witness serves what it cosigned, for monitors: the log's signature and its own.
    let origin = served.lines().next().unwrap();
    let hash = hex::encode(sha2::Sha256::digest(origin.as_bytes()));
    let response = reqwest::get(format!("{}/{hash}/checkpoint", witness.address)).await.unwrap();
    assert_eq!(response.status(), 200);
    let monitored = response.text().await.unwrap();
    let note = Note::parse(monitored.as_bytes()).unwrap();
    assert_eq!(note.text, served.split_once("\n\n").unwrap().0.to_owned() + "\n");
    let names: Vec<&str> = note.signatures.iter().map(|line| line.name.as_str()).collect();
    assert_eq!(names, [origin, "witness.test/w1"]);
    invario_core::checkpoint::Checkpoint::verify(
        monitored.as_bytes(),
        &VerifierKey::parse(&setup.vkey()).unwrap(),
    )
    .unwrap();
    invario_core::witness::check_quorum(&note, &[witness_vkey], 1).unwrap();
    let unknown = reqwest::get(format!("{}/{}/checkpoint", witness.address, "0".repeat(64))).await.unwrap();
    assert_eq!(unknown.status(), 404);
    let post =
        reqwest::Client::new().post(format!("{}/{hash}/checkpoint", witness.address)).send().await.unwrap();
    assert_eq!(post.status(), 405);
}
