//! tlog-policy: the specification's two-level example decides exactly as its
//! text says for every set of cosigners, and every malformed file is refused
//! naming its line.

use sha2::{Digest, Sha256};

use super::*;
use crate::checkpoint::Checkpoint;
use crate::merkle::{TreeHash, TreeHead};
use crate::note::SignerKey;
use crate::witness::cosign;

const ORIGIN: &str = "ledger.example.com/policy";

fn key(name: &str, algorithm: u8) -> SignerKey {
    SignerKey::from_seed(name, algorithm, Sha256::digest(name.as_bytes()).into()).unwrap()
}

fn log() -> SignerKey {
    key(ORIGIN, ALGORITHM_ED25519)
}

fn witness(name: &str) -> SignerKey {
    key(name, ALGORITHM_COSIGNATURE)
}

const NAMES: [&str; 6] = ["X1", "X2", "X3", "Y1", "Y2", "Y3"];

/// The specification's example, with real keys, comments, tabs and URLs.
fn example() -> String {
    let vkey = |name: &str| witness(&format!("w.example/{name}")).verifier().to_string();
    format!(
        "# the example of c2sp.org/tlog-policy\n\
         log {} https://ledger.example.com/\n\n\
         witness X1 {}\nwitness X2 {} https://x2.example/\n\twitness  X3\t{}  \n\
         group X-witnesses 2 X1 X2 X3\n\
         witness Y1 {}\nwitness Y2 {}\nwitness Y3 {}\n\
         group Y-witnesses any Y1 Y2 Y3\n\n\
         group X-and-Y all X-witnesses Y-witnesses\n\
         quorum X-and-Y\n",
        log().verifier(),
        vkey("X1"),
        vkey("X2"),
        vkey("X3"),
        vkey("Y1"),
        vkey("Y2"),
        vkey("Y3"),
    )
}

/// A checkpoint signed by the log and cosigned by the witnesses named in `by`.
fn cosigned(by: &[&str]) -> Note {
    let checkpoint =
        Checkpoint { origin: ORIGIN.into(), head: TreeHead { size: 3, root: TreeHash([5; 32]) } };
    let mut note = checkpoint.sign(&log()).unwrap();
    for name in by {
        note.signatures
            .push(cosign(&note.text, &witness(&format!("w.example/{name}")), 1_767_225_600).unwrap());
    }
    note
}

#[test]
fn the_specifications_example_decides_as_its_text_says_for_every_set_of_cosigners() {
    let policy = Policy::parse(example().as_bytes()).unwrap();
    assert_eq!(policy.logs().len(), 1);
    assert_eq!(policy.logs()[0].url.as_deref(), Some("https://ledger.example.com/"));
    assert_eq!(policy.witnesses().len(), 6);
    assert_eq!(policy.witnesses()[1].url.as_deref(), Some("https://x2.example/"));
    assert_eq!(policy.log_for(ORIGIN), Some(&log().verifier()));
    assert_eq!(policy.log_for("other.example/log"), None);
    assert_eq!(policy.min_cosigners(), 3, "two X and one Y");
    for mask in 0u32..64 {
        let by: Vec<&str> =
            NAMES.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, n)| *n).collect();
        let xs = by.iter().filter(|name| name.starts_with('X')).count();
        let ys = by.iter().filter(|name| name.starts_with('Y')).count();
        // "at least two of the X-witnesses, and at least one of the Y-witnesses"
        let expected = xs >= 2 && ys >= 1;
        let outcome = policy.check_cosignatures(&cosigned(&by));
        assert_eq!(outcome.is_ok(), expected, "{by:?}: {outcome:?}");
        if let Ok(names) = outcome {
            assert_eq!(names, by);
        }
    }
}

#[test]
fn quorum_none_needs_no_cosignature_and_a_single_witness_needs_that_one() {
    let none = Policy::parse(format!("log {}\nquorum none\n", log().verifier()).as_bytes()).unwrap();
    assert!(none.needs_no_witness());
    assert_eq!(none.min_cosigners(), 0);
    assert_eq!(none.check_cosignatures(&cosigned(&[])), Ok(vec![]));
    let one =
        Policy::parse(format!("witness W {}\nquorum W\n", witness("w.example/X1").verifier()).as_bytes())
            .unwrap();
    assert!(one.logs().is_empty());
    assert!(one.check_cosignatures(&cosigned(&["X1"])).is_ok());
    assert_eq!(
        one.check_cosignatures(&cosigned(&["X2"])),
        Err(PolicyCheckError::QuorumNotMet { cosigners: vec![] })
    );
}

#[test]
fn a_listed_witness_whose_cosignature_does_not_verify_refutes_the_checkpoint() {
    let policy = Policy::parse(example().as_bytes()).unwrap();
    let mut note = cosigned(&["X1", "X2", "Y1"]);
    let line = note.signatures.iter_mut().find(|line| line.name == "w.example/X1").unwrap();
    let last = line.payload.len() - 1;
    line.payload[last] ^= 1;
    assert!(matches!(policy.check_cosignatures(&note), Err(PolicyCheckError::Cosignature(_))));
}

#[test]
fn every_malformed_policy_is_refused_naming_its_line() {
    let w1 = witness("w.example/X1").verifier().to_string();
    let w2 = witness("w.example/X2").verifier().to_string();
    let log = log().verifier().to_string();
    for (text, line) in [
        (String::new(), 0),
        ("# only a comment\n".to_owned(), 0),
        (format!("witness A {w1}\n"), 0),
        (format!("witness A {w1}\nquorum A\nquorum A\n"), 3),
        ("quorum A\n".to_owned(), 1),
        (format!("group G any A\nwitness A {w1}\nquorum G\n"), 1),
        (format!("witness A {w1}\nwitness B {w2}\ngroup G any A A\nquorum G\n"), 3),
        (format!("witness A {w1}\nwitness B {w1}\nquorum A\n"), 2),
        (format!("witness none {w1}\nquorum none\n"), 1),
        (format!("witness A {w1}\nwitness A {w2}\nquorum A\n"), 2),
        (format!("witness A {w1}\ngroup A any A\nquorum A\n"), 2),
        (format!("witness A {w1}\ngroup G 0 A\nquorum G\n"), 2),
        (format!("witness A {w1}\ngroup G 2 A\nquorum G\n"), 2),
        (format!("witness A {w1}\ngroup G 01 A\nquorum G\n"), 2),
        (format!("witness A {w1}\ngroup G any\nquorum A\n"), 2),
        (format!("witness A {w1}\ngroup G any none\nquorum G\n"), 2),
        (format!("log {w1}\nquorum none\n"), 1),
        (format!("witness A {log}\nquorum A\n"), 1),
        (format!("log {log}\nlog {log}\nquorum none\n"), 2),
        (format!("log {log} https://a https://b\nquorum none\n"), 1),
        ("witness A\nquorum none\n".to_owned(), 1),
        ("log not-a-key\nquorum none\n".to_owned(), 1),
        ("quorum none\nwitnesses A\n".to_owned(), 2),
        ("quorum none\r\n".to_owned(), 1),
        ("quorum\x00 none\n".to_owned(), 1),
    ] {
        let error = Policy::parse(text.as_bytes()).expect_err(&text);
        assert_eq!(error.line, line, "{text:?}: {error}");
    }
    let oversized = format!("quorum none\n{}", "#".repeat(MAX_POLICY_BYTES));
    assert_eq!(Policy::parse(oversized.as_bytes()).unwrap_err().line, 0);
}
