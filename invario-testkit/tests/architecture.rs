//! Architecture invariants (ARCHITECTURE.md), checked on the sources:
//!
//! * "No adapter computes a hash or decides idempotency": none of them may call
//!   the core's hashing or planning functions, or hash anything itself. (The
//!   types already keep them from building an `AppendPlan`; this keeps them
//!   from working around it.)
//! * The same for the migrations' write functions (`invario_append…`,
//!   `invario_write…`): they
//!   write the plan they are handed, and neither hash nor read stored rows.
//! * "`invario-tlog` knows nothing of ledgers and performs no I/O": its code
//!   names no ledger type and no I/O, and it depends on no crate of ours.
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

/// What a write function in the migrations may not do: hash (the core alone
/// computes hashes) or read a ledger's entries or transactions (the core alone
/// decides idempotency; the function only writes the plan it is handed).
const WRITE_FUNCTION_FORBIDDEN: [&str; 6] =
    ["sha256", "sha224", "digest(", "md5(", "from ledger_entries", "from transactions"];

/// Names of the write functions: `invario_append…` and the `invario_write…` helpers they call.
const WRITE_FUNCTION_PREFIXES: [&str; 2] = ["function invario_append", "function invario_write"];

/// The bodies (between `$$`) of the write functions a migration creates.
fn write_function_bodies(sql: &str) -> Vec<String> {
    let lower = sql.to_lowercase();
    let mut bodies = Vec::new();
    let mut rest = lower.as_str();
    while let Some(start) = WRITE_FUNCTION_PREFIXES.iter().filter_map(|prefix| rest.find(prefix)).min() {
        let after = &rest[start..];
        let Some(open) = after.find("$$") else { break };
        let body = &after[open + 2..];
        let Some(close) = body.find("$$") else { break };
        bodies.push(body[..close].to_string());
        rest = &body[close + 2..];
    }
    bodies
}

fn forbidden_in_write_function(body: &str) -> Option<&'static str> {
    let code: String =
        body.lines().map(|line| line.split("--").next().unwrap_or_default()).collect::<Vec<_>>().join("\n");
    let code = code.split_whitespace().collect::<Vec<_>>().join(" ");
    WRITE_FUNCTION_FORBIDDEN.into_iter().find(|word| code.contains(word))
}

#[test]
fn write_functions_in_the_migrations_never_hash_or_look_up() {
    let mut functions = 0;
    for entry in std::fs::read_dir(workspace().join("migrations")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|extension| extension != "sql") {
            continue;
        }
        for body in write_function_bodies(&std::fs::read_to_string(&path).unwrap()) {
            functions += 1;
            if let Some(word) = forbidden_in_write_function(&body) {
                panic!(
                    "{}: a write function uses `{word}`; hashing and deciding belong to invario-core",
                    path.display()
                );
            }
        }
    }
    assert!(
        functions >= 4,
        "the invario_append/invario_write functions were not all found in migrations/; did they move?"
    );
}

#[test]
fn the_write_function_check_catches_a_hash_and_a_lookup() {
    let hashing =
        "CREATE FUNCTION invario_append_v9() RETURNS void AS $$\nBEGIN\n  PERFORM sha256(p_bytes);\nEND $$;";
    assert_eq!(forbidden_in_write_function(&write_function_bodies(hashing)[0]), Some("sha256"));
    let looking_up =
        "CREATE FUNCTION invario_append_v9() AS $$ SELECT 1\n  FROM   transactions WHERE id = p_id $$;";
    assert_eq!(forbidden_in_write_function(&write_function_bodies(looking_up)[0]), Some("from transactions"));
    let writing =
        "CREATE FUNCTION invario_append_v9() AS $$ INSERT INTO transactions SELECT * FROM unnest(p) $$;";
    assert_eq!(forbidden_in_write_function(&write_function_bodies(writing)[0]), None);
    let helper = "CREATE FUNCTION invario_write_planned_v9() AS $$ SELECT digest(p, 'md5') $$;";
    assert_eq!(forbidden_in_write_function(&write_function_bodies(helper)[0]), Some("digest("));
}

/// What `invario-tlog`'s code may not name: the ledger's vocabulary and the
/// ports ...
const LEDGER_WORDS: [&str; 5] = ["invario_core", "Ledger", "Transaction", "EntryHash", "StoreError"];

/// ... nor, outside its tests (which read the shared vector files), anything
/// that does I/O or reads a clock.
const IO_WORDS: [&str; 9] =
    ["async ", "tokio", "std::fs", "std::net", "std::io", "std::env", "SystemTime", "Instant::now", "OsRng"];

fn offending_lines(file: &Path, forbidden: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        for word in forbidden {
            if code.contains(word) {
                found.push(format!("{}:{}: `{word}` in {line}", file.display(), number + 1));
            }
        }
    }
    found
}

#[test]
fn tlog_knows_no_ledger_and_does_no_io() {
    let tlog = workspace().join("invario-tlog");
    let mut files = Vec::new();
    rust_files(&tlog.join("src"), &mut files);
    assert!(files.len() >= 5, "invario-tlog: no sources found; did the crate move?");
    let mut offending = Vec::new();
    for file in &files {
        offending.extend(offending_lines(file, &LEDGER_WORDS));
        if !file.ends_with("tests.rs") {
            offending.extend(offending_lines(file, &IO_WORDS));
        }
    }
    assert!(
        offending.is_empty(),
        "invario-tlog must know nothing of ledgers and do no I/O:\n{}",
        offending.join("\n")
    );
    let manifest = std::fs::read_to_string(tlog.join("Cargo.toml")).unwrap();
    let dependencies = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
    assert!(!dependencies.contains("invario"), "invario-tlog depends on a crate of ours:\n{dependencies}");
}

#[test]
fn the_tlog_check_catches_a_ledger_type() {
    let file = std::env::temp_dir().join(format!("tlog-check-{}.rs", std::process::id()));
    std::fs::write(&file, "// a Ledger in a comment is fine\nfn leaf(entry: &invario_core::EntryHash) {}\n")
        .unwrap();
    let found = offending_lines(&file, &LEDGER_WORDS);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(found.len(), 2, "{found:?}"); // `invario_core` and `EntryHash`
}

/// `file::item` pairs named in ARCHITECTURE.md's "Entry points" and "Where
/// rules live" tables.
fn named_items() -> Vec<(String, String)> {
    let map = std::fs::read_to_string(workspace().join("ARCHITECTURE.md")).unwrap();
    let mut named = Vec::new();
    for line in map.lines().filter(|line| line.starts_with('|')) {
        for cell in line.split('`').skip(1).step_by(2).filter(|cell| cell.starts_with("invario-")) {
            if let Some((file, item)) = cell.split_once("::") {
                named.push((file.to_owned(), item.to_owned()));
            } else if cell.ends_with(".rs") {
                named.push((cell.to_owned(), String::new()));
            }
        }
    }
    named
}

#[test]
fn every_entry_point_and_rule_architecture_md_names_exists_where_it_says() {
    let named = named_items();
    assert!(named.len() >= 20, "only {} file::item pairs found in ARCHITECTURE.md", named.len());
    let mut missing = Vec::new();
    for (file, item) in &named {
        let Ok(text) = std::fs::read_to_string(workspace().join(file)) else {
            missing.push(format!("{file} (no such file)"));
            continue;
        };
        let defined = item.is_empty()
            || ["fn ", "struct ", "enum ", "trait ", "const ", "type "]
                .iter()
                .any(|keyword| text.contains(&format!("{keyword}{item}")));
        if !defined {
            missing.push(format!("{file}::{item}"));
        }
    }
    assert!(missing.is_empty(), "ARCHITECTURE.md names items that are not where it says: {missing:?}");
}
