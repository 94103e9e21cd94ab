//! "No adapter computes a hash or decides idempotency", checked on the
//! adapters' own sources: none of them may call the core's hashing or planning
//! functions, or hash anything itself. (The types already keep them from
//! building an `AppendPlan`; this keeps them from working around it.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};

/// What only the core may call: the v1 encoding and hash, the planners, and
/// SHA-256 itself.
const CORE_ONLY: [&str; 9] = [
    "entry_hash_v1",
    "encode_entry_v1",
    "recompute_hash",
    "plan_append",
    "plan_append_each",
    "LedgerEntry::next",
    "Verifier::",
    "Sha256",
    "sha2",
];

const ADAPTERS: [&str; 2] = ["invario-postgres", "invario-sqlite"];

fn rust_files(folder: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[test]
fn adapter_sources_never_hash_or_plan() {
    let mut checked = 0;
    for adapter in ADAPTERS {
        let mut files = Vec::new();
        rust_files(&workspace().join(adapter).join("src"), &mut files);
        files.push(workspace().join(adapter).join("Cargo.toml"));
        assert!(files.len() > 2, "{adapter}: no sources found; did the crate move?");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (number, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                for forbidden in CORE_ONLY {
                    assert!(
                        !code.contains(forbidden),
                        "{}:{}: an adapter calls `{forbidden}`; hashing and planning belong to invario-core:\n{line}",
                        file.display(),
                        number + 1
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} files checked");
}

#[test]
fn the_check_catches_a_forbidden_call() {
    let offending = "    let hash = invario_core::entry_hash_v1(&prev, 1, &content); // sneaky";
    let code = offending.split("//").next().unwrap_or_default();
    assert!(CORE_ONLY.iter().any(|forbidden| code.contains(forbidden)));
}
