//! Receipts that travel: a transaction's C2SP tlog-proof, saved with
//! `invario proof save`, verifies with the network off under both
//! `invario proof verify` and the independent `docs/audit.py tlog-proof`, and
//! any change to it is refused by both — on PostgreSQL with a witness, and on
//! the embedded default.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::common::*;
use crate::helpers::*;

/// Runs `program args` with no network (a fresh network namespace) where the
/// machine allows it: what is verified offline must need nothing else.
fn offline(program: &Path, args: &[&str]) -> Output {
    let isolated =
        Command::new("unshare").args(["-rn", "true"]).output().is_ok_and(|out| out.status.success());
    let mut command = if isolated {
        let mut command = Command::new("unshare");
        command.arg("-rn").arg(program);
        command
    } else {
        eprintln!("note: unshare -rn is not permitted here; verifying without network isolation");
        Command::new(program)
    };
    command.args(args).env("NO_COLOR", "1").env_remove("DATABASE_URL").output().unwrap()
}

fn invario_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_invario"))
}

fn audit_script() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/audit.py").to_str().unwrap().to_owned()
}

/// Both verifiers on `proof` with `vkey` and the witness flags `witness`; their exit codes and outputs.
fn verify_both(proof: &Path, vkey: &str, witness: &[&str]) -> [(i32, String); 2] {
    let path = proof.to_str().unwrap();
    let mut ours = vec!["proof", "verify", "--proof", path, "--vkey", vkey];
    ours.extend_from_slice(witness);
    let script = audit_script();
    let mut python = vec![script.as_str(), "tlog-proof", "--proof", path, "--vkey", vkey];
    python.extend_from_slice(witness);
    [offline(&invario_binary(), &ours), offline(Path::new("python3"), &python)].map(|output| {
        (output.status.code().unwrap_or(-1), format!("{}{}", text(&output.stdout), text(&output.stderr)))
    })
}

/// One way to alter a saved proof, named for the failure message.
type Alteration = (&'static str, Box<dyn Fn(&str) -> String>);

fn alterations() -> Vec<Alteration> {
    let edit_extra = |edit: fn(&str) -> String| {
        move |proof: &str| {
            let line = proof.lines().nth(1).unwrap();
            let receipt =
                String::from_utf8(BASE64.decode(line.strip_prefix("extra ").unwrap()).unwrap()).unwrap();
            proof.replacen(line, &format!("extra {}", BASE64.encode(edit(&receipt))), 1)
        }
    };
    let hash_lines = |proof: &str| -> Vec<String> {
        proof.lines().skip(3).take_while(|line| !line.is_empty()).map(str::to_owned).collect()
    };
    vec![
        (
            "the amount in the receipt",
            Box::new(edit_extra(|r| r.replacen("\"amount\":\"2.00\"", "\"amount\":\"2.01\"", 1))),
        ),
        (
            "the id's case in the receipt",
            Box::new(edit_extra(|r| {
                let id = uuid::Uuid::from_u128(15).to_string();
                r.replacen(&id, &id.to_uppercase(), 1)
            })),
        ),
        ("the index", Box::new(|p: &str| p.replacen("\nindex 14\n", "\nindex 13\n", 1))),
        (
            "a proof hash",
            Box::new(move |p: &str| {
                let first = &hash_lines(p)[0];
                let mut bytes = BASE64.decode(first).unwrap();
                bytes[0] ^= 1;
                p.replacen(first.as_str(), &BASE64.encode(bytes), 1)
            }),
        ),
        ("a truncated path", Box::new(move |p: &str| p.replacen(&format!("{}\n", hash_lines(p)[0]), "", 1))),
        (
            "a reordered path",
            Box::new(move |p: &str| {
                let lines = hash_lines(p);
                p.replacen(
                    &format!("{}\n{}\n", lines[0], lines[1]),
                    &format!("{}\n{}\n", lines[1], lines[0]),
                    1,
                )
            }),
        ),
        ("the checkpoint's size", Box::new(|p: &str| p.replacen("/ledger\n20\n", "/ledger\n21\n", 1))),
        (
            "the log's signature",
            Box::new(|p: &str| {
                let line =
                    p.lines().find(|line| line.starts_with("\u{2014} test.invario.local/ledger ")).unwrap();
                let signature = line.rsplit(' ').next().unwrap();
                let mut bytes = BASE64.decode(signature).unwrap();
                bytes[10] ^= 1;
                p.replacen(signature, &BASE64.encode(bytes), 1)
            }),
        ),
        (
            "the missing cosignature",
            Box::new(|p: &str| {
                let line = p.lines().find(|line| line.starts_with("\u{2014} witness.test/w1 ")).unwrap();
                p.replacen(&format!("{line}\n"), "", 1)
            }),
        ),
        ("the header", Box::new(|p: &str| p.replacen("tlog-proof@v1", "tlog-proof@v0", 1))),
    ]
}

#[tokio::test]
async fn a_witnessed_tlog_proof_verifies_offline_with_both_verifiers_and_every_alteration_is_refused() {
    use invario_core::note::VerifierKey;

    let setup = SigningSetup::new(10).await;
    let witness_vkey =
        VerifierKey::parse(&exited(&generate_witness_key(&setup.folder.join("witness.key")), 0))
            .unwrap()
            .to_string();
    let witness = witness_serve(&setup.folder, &setup.vkey()).await;
    let sink = setup.folder.join("checkpoints");
    let flags: Vec<std::ffi::OsString> = vec![
        "--checkpoint-key".into(),
        setup.folder.join("checkpoint.key").into(),
        "--checkpoint-dir".into(),
        sink.clone().into(),
        "--checkpoint-interval".into(),
        "50ms".into(),
        "--witness".into(),
        format!("{}={witness_vkey}", witness.address).into(),
        "--witness-quorum".into(),
        "1".into(),
    ];
    let server = serve_with(&std::env::temp_dir(), Some(setup.database.url()), &flags).await;
    post_all(&server, &setup.key, 11..=20, "2.00").await;
    eventually("the checkpoint at 20 is served with the witness's cosignature", async || {
        served_checkpoint(&server, &setup.key, None)
            .await
            .is_some_and(|note| note.lines().nth(1) == Some("20") && note.contains("witness.test/w1"))
    })
    .await;

    let id = uuid::Uuid::from_u128(15).to_string();
    let saved = setup.folder.join("15.tlog-proof");
    let args = [
        "proof",
        "save",
        "--id",
        &id,
        "--out",
        saved.to_str().unwrap(),
        "--url",
        &server.address,
        "--key",
        &setup.key,
    ];
    let said = exited(&invario_with_url(None, &args), 0);
    assert!(said.contains("Saved the tlog-proof of transaction"), "{said}");
    let proof = std::fs::read_to_string(&saved).unwrap();
    assert!(proof.contains("\nindex 14\n"), "{proof}");
    // The checkpoint is the sink's file byte for byte, followed by the cosignature gathered.
    let in_sink = std::fs::read_to_string(sink.join("checkpoint")).unwrap();
    let checkpoint = proof.split_once("\n\n").unwrap().1;
    assert!(checkpoint.starts_with(&in_sink), "{checkpoint}\nvs the sink's\n{in_sink}");
    let refused_again = invario_with_url(None, &args);
    assert_eq!(refused_again.status.code(), Some(2), "a saved proof is never replaced");
    assert!(text(&refused_again.stderr).contains("never overwritten"), "{}", text(&refused_again.stderr));

    let quorum = ["--witness-vkey", witness_vkey.as_str(), "--quorum", "1"];
    let [ours, python] = verify_both(&saved, &setup.vkey(), &quorum);
    assert_eq!(ours.0, 0, "{}", ours.1);
    assert!(
        ours.1.contains("is entry 15 (leaf 14)") && ours.1.contains("cosigned by witness.test/w1"),
        "{}",
        ours.1
    );
    assert_eq!(python.0, 0, "{}", python.1);
    assert!(python.1.starts_with(&format!("proven: transaction {id} is entry 15")), "{}", python.1);

    // At write time: the POST waits for a witnessed checkpoint and carries the proof.
    let (status, applied, receipt) = post_preferring(&server, &setup.key, 21, "wait=witnessed").await;
    assert_eq!((status, applied.as_deref()), (201, Some("wait=witnessed")), "{receipt}");
    let at_write = setup.folder.join("21.tlog-proof");
    std::fs::write(&at_write, receipt["proof"].as_str().unwrap()).unwrap();
    let [ours, python] = verify_both(&at_write, &setup.vkey(), &quorum);
    assert_eq!((ours.0, python.0), (0, 0), "{}\n{}", ours.1, python.1);
    assert!(
        ours.1.contains("is entry 21 (leaf 20)") && ours.1.contains("cosigned by witness.test/w1"),
        "{}",
        ours.1
    );
    // The same proof under a C2SP tlog-policy (log and witness from the file, no --vkey).
    let other_witness = VerifierKey::parse(&exited(&generate_witness_key(&setup.folder.join("w2.key")), 0))
        .unwrap()
        .to_string();
    let policies = [
        (format!("log {}\nwitness W1 {witness_vkey}\nquorum W1\n", setup.vkey()), 0),
        (
            format!(
                "# both\nlog {}\nwitness W1 {witness_vkey}\nwitness W2 {other_witness}\ngroup G all W1 W2\nquorum G\n",
                setup.vkey()
            ),
            1,
        ),
        (format!("log {}\nquorum none\n", setup.vkey()), 0),
    ];
    for (policy, expected) in policies {
        let path = setup.folder.join("policy.txt");
        std::fs::write(&path, &policy).unwrap();
        let policy_path = path.to_str().unwrap();
        let ours = offline(
            &invario_binary(),
            &["proof", "verify", "--proof", at_write.to_str().unwrap(), "--policy", policy_path],
        );
        let script = audit_script();
        let python = offline(
            Path::new("python3"),
            &[&script, "tlog-proof", "--proof", at_write.to_str().unwrap(), "--policy", policy_path],
        );
        for (verifier, output) in [("invario", ours), ("audit.py", python)] {
            assert_eq!(
                output.status.code(),
                Some(expected),
                "{verifier} under {policy}: {}{}",
                text(&output.stdout),
                text(&output.stderr)
            );
        }
    }
    let altered = receipt["proof"].as_str().unwrap().replacen("\nindex 20\n", "\nindex 19\n", 1);
    std::fs::write(&at_write, altered).unwrap();
    let [ours, python] = verify_both(&at_write, &setup.vkey(), &quorum);
    assert_eq!((ours.0, python.0), (1, 1), "{}\n{}", ours.1, python.1);
    drop(server);
    drop(witness);

    for (what, alter) in alterations() {
        let altered = alter(&proof);
        assert_ne!(altered, proof, "{what}: the alteration changed nothing");
        let path = setup.folder.join("altered.tlog-proof");
        std::fs::write(&path, &altered).unwrap();
        for (verifier, (code, said)) in
            ["invario proof verify", "docs/audit.py"].iter().zip(verify_both(&path, &setup.vkey(), &quorum))
        {
            assert_eq!(code, 1, "{verifier} accepted {what}: {said}");
            assert!(said.to_lowercase().contains("refuted"), "{verifier} on {what}: {said}");
        }
    }
    // A key of another log, and unreadable arguments: could not run (2), not refuted.
    let other_log =
        VerifierKey::parse(&exited(&generate_witness_key(&setup.folder.join("other.key")), 0)).unwrap();
    let [ours, python] = verify_both(&saved, &other_log.to_string(), &[]);
    assert_eq!((ours.0, python.0), (1, 1), "a proof under another log's key is refuted: {ours:?} {python:?}");
    let [ours, python] = verify_both(&setup.folder.join("missing.tlog-proof"), &setup.vkey(), &[]);
    assert_eq!((ours.0, python.0), (2, 2), "{ours:?} {python:?}");
    let _ = std::fs::remove_dir_all(&setup.folder);
}

/// POSTs transaction `n` with `Prefer: <prefer>`: the status, `Preference-Applied`, the body.
async fn post_preferring(
    server: &Server,
    key: &str,
    n: u128,
    prefer: &str,
) -> (u16, Option<String>, serde_json::Value) {
    let body = serde_json::json!({"transaction_id": uuid::Uuid::from_u128(n).to_string(), "amount": "5.00", "currency": "BRL"});
    let response = reqwest::Client::new()
        .post(format!("{}/v1/transactions", server.address))
        .bearer_auth(key)
        .header("Prefer", prefer)
        .json(&body)
        .send()
        .await
        .unwrap();
    let applied =
        response.headers().get("preference-applied").map(|value| value.to_str().unwrap().to_owned());
    (response.status().as_u16(), applied, response.json().await.unwrap())
}

#[tokio::test]
async fn the_embedded_default_saves_a_tlog_proof_from_its_file_that_verifies_offline() {
    let (folder, key) = embedded_folder_with_key("invario-embedded-tlog-proof");
    let flags: Vec<std::ffi::OsString> = vec!["--checkpoint-interval".into(), "50ms".into()];
    let server = serve_with(&folder, None, &flags).await;
    post_all(&server, &key, 1..=20, "2.00").await;
    eventually("the checkpoint at 20 is published", async || {
        published_checkpoint_size(&server).await == Some(20)
    })
    .await;
    let vkey = exited(
        &invario_with_url(
            None,
            &["checkpoint-key", "show", "--key", folder.join("invario-checkpoint.key").to_str().unwrap()],
        ),
        0,
    )
    .trim()
    .to_owned();
    let (status, applied, receipt) = post_preferring(&server, &key, 21, "wait=signed").await;
    assert_eq!((status, applied.as_deref()), (201, Some("wait=signed")), "{receipt}");
    let at_write = folder.join("21.tlog-proof");
    std::fs::write(&at_write, receipt["proof"].as_str().unwrap()).unwrap();
    let [ours, python] = verify_both(&at_write, &vkey, &[]);
    assert_eq!((ours.0, python.0), (0, 0), "{}\n{}", ours.1, python.1);
    let id = uuid::Uuid::from_u128(15).to_string();
    // From the server, and from the database file alone (no server needed): the same proof.
    let over_http = folder.join("over-http.tlog-proof");
    let args = [
        "proof",
        "save",
        "--id",
        &id,
        "--out",
        over_http.to_str().unwrap(),
        "--url",
        &server.address,
        "--key",
        &key,
    ];
    exited(&invario_with_url(None, &args), 0);
    server.terminate();
    let from_file = folder.join("from-file.tlog-proof");
    exited(
        &invario_in(&folder, None, &["proof", "save", "--id", &id, "--out", from_file.to_str().unwrap()]),
        0,
    );
    assert_eq!(std::fs::read(&over_http).unwrap(), std::fs::read(&from_file).unwrap());

    let [ours, python] = verify_both(&from_file, &vkey, &[]);
    assert_eq!((ours.0, python.0), (0, 0), "{ours:?} {python:?}");
    let proof = std::fs::read_to_string(&from_file).unwrap();
    let altered = folder.join("altered.tlog-proof");
    let (_, alter) = alterations().into_iter().next().unwrap();
    std::fs::write(&altered, alter(&proof)).unwrap();
    let [ours, python] = verify_both(&altered, &vkey, &[]);
    assert_eq!((ours.0, python.0), (1, 1), "{ours:?} {python:?}");
    let _ = std::fs::remove_dir_all(folder);
}

/// `serve --witness-policy`: the witnesses and their URLs come from a C2SP
/// tlog-policy file, and `Prefer: wait=witnessed` waits until its rule is met.
#[tokio::test]
async fn serve_takes_its_witnesses_and_quorum_rule_from_a_policy_file() {
    use invario_core::note::VerifierKey;

    let setup = SigningSetup::new(3).await;
    let witness_vkey =
        VerifierKey::parse(&exited(&generate_witness_key(&setup.folder.join("witness.key")), 0))
            .unwrap()
            .to_string();
    let witness = witness_serve(&setup.folder, &setup.vkey()).await;
    let policy = setup.folder.join("serve.policy");
    let serve_flags = |policy: &Path| -> Vec<std::ffi::OsString> {
        vec![
            "--checkpoint-key".into(),
            setup.folder.join("checkpoint.key").into(),
            "--checkpoint-dir".into(),
            setup.folder.join("checkpoints").into(),
            "--checkpoint-interval".into(),
            "50ms".into(),
            "--witness-policy".into(),
            policy.into(),
        ]
    };

    // A witness with no URL cannot be submitted to: refused at start, naming it.
    std::fs::write(&policy, format!("witness W1 {witness_vkey}\nquorum W1\n")).unwrap();
    let refused = invario(
        &setup.database,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--witness-policy",
            policy.to_str().unwrap(),
            "--checkpoint-key",
            setup.folder.join("checkpoint.key").to_str().unwrap(),
        ],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("witness W1 has no URL"), "{}", text(&refused.stderr));

    std::fs::write(
        &policy,
        format!("log {}\nwitness W1 {witness_vkey} {}\nquorum W1\n", setup.vkey(), witness.address),
    )
    .unwrap();
    let server = serve_with(&std::env::temp_dir(), Some(setup.database.url()), &serve_flags(&policy)).await;
    let (status, applied, receipt) = post_preferring(&server, &setup.key, 4, "wait=witnessed").await;
    assert_eq!((status, applied.as_deref()), (201, Some("wait=witnessed")), "{receipt}");
    let saved = setup.folder.join("4.tlog-proof");
    std::fs::write(&saved, receipt["proof"].as_str().unwrap()).unwrap();
    let verified = offline(
        &invario_binary(),
        &["proof", "verify", "--proof", saved.to_str().unwrap(), "--policy", policy.to_str().unwrap()],
    );
    assert_eq!(verified.status.code(), Some(0), "{}{}", text(&verified.stdout), text(&verified.stderr));
    assert!(text(&verified.stdout).contains("cosigned by W1"), "{}", text(&verified.stdout));
}

/// The embedded default with a witness: a POST with `Prefer: wait=witnessed`
/// carries a cosigned proof that both verifiers accept offline, and refuse
/// once a byte of it changes.
#[tokio::test]
async fn the_embedded_default_answers_wait_witnessed_with_a_cosigned_proof() {
    use invario_core::note::VerifierKey;

    let (folder, key) = embedded_folder_with_key("invario-embedded-witnessed");
    let log_key = folder.join("invario-checkpoint.key");
    let vkey = exited(
        &invario_with_url(
            None,
            &[
                "checkpoint-key",
                "generate",
                "--origin",
                "localhost/invario",
                "--out",
                log_key.to_str().unwrap(),
            ],
        ),
        0,
    );
    let vkey =
        VerifierKey::parse(vkey.lines().find(|line| line.contains('+')).unwrap().trim()).unwrap().to_string();
    let witness_vkey = VerifierKey::parse(&exited(&generate_witness_key(&folder.join("witness.key")), 0))
        .unwrap()
        .to_string();
    let witness = witness_serve(&folder, &vkey).await;
    let flags: Vec<std::ffi::OsString> = vec![
        "--checkpoint-interval".into(),
        "50ms".into(),
        "--witness".into(),
        format!("{}={witness_vkey}", witness.address).into(),
    ];
    let server = serve_with(&folder, None, &flags).await;
    let (status, applied, receipt) = post_preferring(&server, &key, 1, "wait=witnessed").await;
    assert_eq!((status, applied.as_deref()), (201, Some("wait=witnessed")), "{receipt}");
    let saved = folder.join("1.tlog-proof");
    let proof = receipt["proof"].as_str().unwrap().to_owned();
    std::fs::write(&saved, &proof).unwrap();
    let quorum = ["--witness-vkey", witness_vkey.as_str(), "--quorum", "1"];
    let [ours, python] = verify_both(&saved, &vkey, &quorum);
    assert_eq!((ours.0, python.0), (0, 0), "{}\n{}", ours.1, python.1);
    assert!(ours.1.contains("cosigned by witness.test/w1"), "{}", ours.1);
    let altered = proof.replacen("\"amount\"", "\"amounT\"", 1);
    let altered = if altered == proof {
        // The receipt is base64 on the extra line: change one character of it instead.
        let line = proof.lines().nth(1).unwrap();
        let mut changed = line.to_owned();
        let last = changed.pop().unwrap();
        changed.push(if last == 'A' { 'B' } else { 'A' });
        proof.replacen(line, &changed, 1)
    } else {
        altered
    };
    std::fs::write(&saved, altered).unwrap();
    let [ours, python] = verify_both(&saved, &vkey, &quorum);
    assert_eq!((ours.0, python.0), (1, 1), "{}\n{}", ours.1, python.1);
    drop(server);
    drop(witness);
    let _ = std::fs::remove_dir_all(&folder);
}
