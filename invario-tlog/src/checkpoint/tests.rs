//! docs/verifiability.md §6's golden example, byte for byte, and every way a note
//! can be wrong: each refused or ignored as the signed-note spec says.

use base64::Engine;
use sha2::{Digest, Sha256};

use super::*;
use crate::merkle::{leaf_hash, root_of_leaves};
use crate::note::{ALGORITHM_COSIGNATURE, ALGORITHM_ED25519, MAX_NOTE_BYTES, NoteSignature};

const ORIGIN: &str = "ledger.example.com/invario/prod";
const LOG_VKEY: &str =
    "ledger.example.com/invario/prod+d9a42f29+AYCcph3O4QDy258Gh0+0Pexes7qE53RMxFAPo4knRPTP";
const WITNESS_VKEY: &str = "witness.auditor.example/w1+e2d65dc4+BN1FdqFVvbgdBeQgGWL5VmgsgrtUoq4IknQT2jTwJEzT";
const GOLDEN: &str = "ledger.example.com/invario/prod\n7\n3bib5AOAnjJXUNPSY814kpwpQreUKjS3fhIslZSnTIw=\n\n\
\u{2014} ledger.example.com/invario/prod 2aQvKQy0Q1NUO+Yzi1Qljbd1iZ7PMSARWT67aqOetowLNm1HAqGToTZklW3pEPM9VfyjDoYINeQVdnCCWZN9liJ7tA4=\n\
\u{2014} witness.auditor.example/w1 4tZdxAAAAABpVbkA4XSwN4mlLKlw6xmQvdvZwwJ5zCOEbms4gVhpMf8wusPkfTu/KaImJLCnA4xmfYURREYxNiJDLNTmdQHZvP1IBw==\n";
const COSIGNATURE_TIME: u64 = 1_767_225_600;

fn seed(phrase: &str) -> [u8; 32] {
    Sha256::digest(phrase.as_bytes()).into()
}

fn log_key() -> SignerKey {
    SignerKey::from_seed(ORIGIN, ALGORITHM_ED25519, seed("invario example key - DO NOT USE")).unwrap()
}

fn witness_key() -> SignerKey {
    SignerKey::from_seed(
        "witness.auditor.example/w1",
        ALGORITHM_COSIGNATURE,
        seed("invario example witness - DO NOT USE"),
    )
    .unwrap()
}

fn golden_checkpoint() -> Checkpoint {
    let inputs = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657"];
    let leaves: Vec<_> = inputs.iter().map(|input| leaf_hash(&hex::decode(input).unwrap())).collect();
    Checkpoint { origin: ORIGIN.into(), head: TreeHead { size: 7, root: root_of_leaves(&leaves) } }
}

#[test]
fn the_golden_example_byte_for_byte() {
    assert_eq!(log_key().verifier().to_string(), LOG_VKEY);
    assert_eq!(witness_key().verifier().to_string(), WITNESS_VKEY);
    let checkpoint = golden_checkpoint();
    let mut note = checkpoint.sign(&log_key()).unwrap();
    // The witness's cosignature (tlog-cosignature/v1): key ID, time, and a
    // signature over "cosignature/v1\ntime <T>\n" followed by the checkpoint text.
    let message = format!("cosignature/v1\ntime {COSIGNATURE_TIME}\n{}", note.text);
    let mut payload = COSIGNATURE_TIME.to_be_bytes().to_vec();
    payload.extend_from_slice(&witness_key().sign(message.as_bytes()));
    note.signatures.push(NoteSignature {
        name: "witness.auditor.example/w1".into(),
        key_id: witness_key().verifier().id(),
        payload,
    });
    assert_eq!(note.to_text(), GOLDEN);

    let log = VerifierKey::parse(LOG_VKEY).unwrap();
    let (parsed, _) = Checkpoint::verify(GOLDEN.as_bytes(), &log).unwrap();
    assert_eq!(parsed, checkpoint);
    let witness = VerifierKey::parse(WITNESS_VKEY).unwrap();
    let cosigned = Note::parse(GOLDEN.as_bytes()).unwrap();
    let line = &cosigned.signatures[1];
    assert_eq!(line.key_id, witness.id());
    let (time, signature) = line.payload.split_at(8);
    assert_eq!(u64::from_be_bytes(time.try_into().unwrap()), COSIGNATURE_TIME);
    assert!(witness.verify(message.as_bytes(), signature), "the witness's cosignature verifies");
}

#[test]
fn the_shared_vector_file_holds_the_golden_example() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/vectors/checkpoint.json");
    let vectors: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(vectors["note"], GOLDEN);
    assert_eq!(vectors["log_vkey"], LOG_VKEY);
    assert_eq!(vectors["witness_vkey"], WITNESS_VKEY);
    assert_eq!(vectors["root_hash"], golden_checkpoint().head.root.to_hex());
    assert_eq!(vectors["cosignature_time"], COSIGNATURE_TIME);
}

#[test]
fn the_specs_example_verifier_key_parses_and_its_id_checks() {
    let key =
        VerifierKey::parse("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k").unwrap();
    assert_eq!(
        (key.name(), key.id(), key.algorithm()),
        ("example.com/foo", [0x53, 0x0d, 0x90, 0x3a], ALGORITHM_ED25519)
    );
    assert!(
        VerifierKey::parse("example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k").is_err()
    );
    assert!(
        VerifierKey::parse("example.com/bar+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k").is_err()
    );
}

#[test]
fn keys_round_trip_and_bad_key_texts_are_refused() {
    let key = log_key();
    let text = key.to_private_text();
    assert!(text.starts_with("PRIVATE+KEY+ledger.example.com/invario/prod+d9a42f29+"));
    assert_eq!(SignerKey::parse(&text).unwrap().verifier(), key.verifier());
    assert!(!format!("{key:?}").contains(&text[40..]), "Debug never shows the private key");
    let tampered_id = text.replace("+d9a42f29+", "+d9a42f28+");
    assert!(SignerKey::parse(&tampered_id).is_err());
    for bad in [
        "",
        "no-plus-signs",
        "name+d9a42f29",
        "na me+d9a42f29+AYCcph3O4QDy258Gh0+0Pexes7qE53RMxFAPo4knRPTP",
        "ledger.example.com/invario/prod+d9a42f29+AYCcph3O4QDy258Gh0+0Pexes7qE53RMxFAPo4knRPT",
        "ledger.example.com/invario/prod+d9a42f29+AoCcph3O4QDy258Gh0+0Pexes7qE53RMxFAPo4knRPTP",
        "ledger.example.com/invario/prod+zzzzzzzz+AYCcph3O4QDy258Gh0+0Pexes7qE53RMxFAPo4knRPTP",
    ] {
        assert!(VerifierKey::parse(bad).is_err(), "{bad:?}");
    }
    // A small-order public key (the identity point) is refused even with a matching ID.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let id = crate::note::key_id("weak", ALGORITHM_ED25519, &identity);
    let mut bytes = vec![ALGORITHM_ED25519];
    bytes.extend_from_slice(&identity);
    let weak =
        format!("weak+{}+{}", hex::encode(id), base64::engine::general_purpose::STANDARD.encode(bytes));
    assert!(VerifierKey::parse(&weak).is_err(), "small-order keys are refused");
}

fn signed() -> (String, VerifierKey) {
    (golden_checkpoint().sign(&log_key()).unwrap().to_text(), log_key().verifier())
}

#[test]
fn a_bit_flipped_anywhere_or_a_truncation_is_refused() {
    let (note, key) = signed();
    assert!(Checkpoint::verify(note.as_bytes(), &key).is_ok());
    let bytes = note.as_bytes();
    for position in 0..bytes.len() {
        for bit in 0..8 {
            let mut flipped = bytes.to_vec();
            flipped[position] ^= 1 << bit;
            assert!(Checkpoint::verify(&flipped, &key).is_err(), "bit {bit} of byte {position} flipped");
        }
    }
    for length in 0..bytes.len() {
        assert!(Checkpoint::verify(&bytes[..length], &key).is_err(), "truncated to {length}");
    }
}

#[test]
fn unknown_and_wrong_keys_are_ignored_or_refused_as_the_spec_says() {
    let (note, key) = signed();
    let other = SignerKey::from_seed(ORIGIN, ALGORITHM_ED25519, [7; 32]).unwrap();
    // Same name, other key: its ID differs, so the log's line is unknown to it.
    assert_eq!(
        Checkpoint::verify(note.as_bytes(), &other.verifier()).unwrap_err(),
        CheckpointError::Note(NoteError::NoTrustedSignature)
    );
    // Extra signature lines from unknown keys are ignored, up to the limit.
    let mut parsed = Note::parse(note.as_bytes()).unwrap();
    for n in 0..20u8 {
        parsed.signatures.push(NoteSignature {
            name: format!("stranger{n}.example"),
            key_id: [n; 4],
            payload: vec![n; 64],
        });
    }
    assert!(Checkpoint::verify(parsed.to_text().as_bytes(), &key).is_ok(), "unknown lines are ignored");
    // A known key whose signature fails rejects the note, whatever else verifies.
    let mut forged = Note::parse(note.as_bytes()).unwrap();
    let mut bad = forged.signatures[0].clone();
    bad.payload[0] ^= 1;
    forged.signatures.push(bad);
    assert_eq!(
        Checkpoint::verify(forged.to_text().as_bytes(), &key).unwrap_err(),
        CheckpointError::Note(NoteError::BadSignature(ORIGIN.into()))
    );
    // Absurd signature counts are refused before any verification.
    let mut crowded = Note::parse(note.as_bytes()).unwrap();
    for n in 0..200u8 {
        crowded.signatures.push(NoteSignature { name: "x".into(), key_id: [n; 4], payload: vec![0; 64] });
    }
    assert!(matches!(Note::parse(crowded.to_text().as_bytes()), Err(NoteError::TooManySignatures(_))));
}

#[test]
fn malformed_notes_are_refused() {
    let (note, key) = signed();
    let mut not_utf8 = note.as_bytes().to_vec();
    not_utf8[3] = 0xff;
    assert_eq!(Note::parse(&not_utf8), Err(NoteError::Characters));
    assert_eq!(Note::parse(note.replace("\n7\n", "\n7\t\n").as_bytes()), Err(NoteError::Characters));
    assert_eq!(Note::parse(note.replace("\n7\n", "\r\n7\n").as_bytes()), Err(NoteError::Characters));
    let oversized = format!("{}{}", "a".repeat(MAX_NOTE_BYTES), note);
    assert!(matches!(Note::parse(oversized.as_bytes()), Err(NoteError::TooLarge(_))));
    assert_eq!(Note::parse(note.trim_end().as_bytes()), Err(NoteError::Shape));
    assert!(Note::parse(note.replace("\u{2014} ", "- ").as_bytes()).is_err());
    assert!(Checkpoint::verify(b"", &key).is_err());
}

#[test]
fn checkpoint_texts_are_parsed_strictly() {
    let good = golden_checkpoint().to_text();
    assert_eq!(Checkpoint::parse_text(&good).unwrap(), golden_checkpoint());
    let root = "3bib5AOAnjJXUNPSY814kpwpQreUKjS3fhIslZSnTIw=";
    for bad in [
        format!("{ORIGIN}\n07\n{root}\n"),
        format!("{ORIGIN}\n+7\n{root}\n"),
        format!("{ORIGIN}\n7\n{root}\nextension line\n"),
        format!("{ORIGIN}\n7\n{root}"),
        format!("{ORIGIN}\n7\n{}\n", &root[..40]),
        format!("{ORIGIN}\n7\n3bib5AOAnjJXUNPSY814kpwpQreUKjS3fhIslZSnTI=\n"),
        format!("\n7\n{root}\n"),
        format!("has space\n7\n{root}\n"),
        format!("{ORIGIN}\n18446744073709551616\n{root}\n"),
    ] {
        assert!(Checkpoint::parse_text(&bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        Checkpoint::parse_text(&format!("{ORIGIN}\n0\n{}\n", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="))
            .unwrap()
            .head
            .size,
        0
    );
    let other_origin = Checkpoint { origin: "elsewhere.example/log".into(), ..golden_checkpoint() };
    assert!(matches!(other_origin.sign(&log_key()), Err(CheckpointError::WrongOrigin { .. })));
}

#[test]
fn a_checkpoint_verifies_only_under_the_name_it_was_signed_with() {
    let acme_key = log_key().renamed(&format!("{ORIGIN}/acme")).unwrap();
    let books_key = log_key().renamed(&format!("{ORIGIN}/books")).unwrap();
    assert_eq!(acme_key.name(), format!("{ORIGIN}/acme"));
    assert_eq!(log_key().renamed(ORIGIN).unwrap().verifier(), log_key().verifier());
    let checkpoint = Checkpoint { origin: acme_key.name().to_owned(), ..golden_checkpoint() };
    let note = checkpoint.sign(&acme_key).unwrap().to_text();
    assert!(Checkpoint::verify(note.as_bytes(), &acme_key.verifier()).is_ok());
    // Same private key, same tree: the key under another name refuses it.
    for other in [books_key.verifier(), log_key().verifier()] {
        assert!(Checkpoint::verify(note.as_bytes(), &other).is_err(), "{other}");
    }
    // Signing under an origin that is not the key's name is refused before any signature.
    assert!(checkpoint.sign(&books_key).is_err());
}
