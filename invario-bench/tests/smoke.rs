//! Every scenario at a tiny size, so the benchmark cannot rot between full runs.
//! It runs the real binaries against a real PostgreSQL (INVARIO_TEST_DATABASE_URL,
//! else a durable throwaway cluster); the figures are not judged, their presence is.

use std::path::PathBuf;
use std::process::Command;

fn invario_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_invario-bench")).with_file_name("invario");
    assert!(
        path.is_file(),
        "{} is missing: run the tests with --workspace, or `cargo build -p invario-cli` first",
        path.display()
    );
    path
}

#[test]
fn every_scenario_runs_and_reports_against_its_baseline() {
    let folder = std::env::temp_dir().join(format!("invario-bench-smoke-{}", std::process::id()));
    let results = folder.join("results.json");
    let child = Command::new(env!("CARGO_BIN_EXE_invario-bench"))
        .args(["--entries", "300", "--duration", "200ms", "--clients", "1,3", "--growth-sizes", "200,400"])
        .arg("--invario")
        .arg(invario_binary())
        .arg("--output")
        .arg(&results)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let bench_pid = child.id();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "invario-bench failed:\n{stdout}\n{stderr}");

    for scenario in [
        "1 core hash",
        "2 adapter append",
        "3 HTTP batch",
        "4 HTTP single",
        "5 full verify",
        "6 memory",
        "7 Merkle tree",
        "8 embedded (SQLite)",
        "9 growth",
        "10 many ledgers",
        "11 round trips",
    ] {
        assert!(stdout.contains(&format!("| {scenario} |")), "no row for scenario {scenario}:\n{stdout}");
    }
    for baseline in [
        "plain SHA-256",
        "raw COPY",
        "group commit off",
        "DIY trigger chain",
        "raw ordered COPY scan",
        "`invario verify`",
        "raw multi-row inserts",
        "key cache off",
        "ids looked up first",
        "at 200 entries",
        "1 ledger",
        "1 server",
        "without the wait",
        "DIY trigger chain behind a bare HTTP route",
        "refused before the write",
    ] {
        assert!(stdout.contains(baseline), "no {baseline} baseline:\n{stdout}");
    }

    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&results).unwrap()).unwrap();
    let measurements = json["measurements"].as_array().unwrap();
    // 1 + 5 + 3 (lookup-first and replay-heavy lever rows) + 1 + (3 per level × 2 levels + the key cache lever at 1 client)
    // + 3 + 2 + 4 + 5 (SQLite: adapter, raw, group commit on and off, the HTTP ceiling) + 6 measures × 2 growth sizes + 3 ledger counts × group commit on and off
    // + one and two servers on one ledger + 2 round-trip counts
    // + Prefer: wait=signed at 1 client for 2 checkpoint intervals + the chain behind a bare HTTP route at 1 client
    assert_eq!(measurements.len(), 56, "{json:#}");
    for measurement in measurements {
        let value = measurement["value"].as_f64().unwrap();
        assert!(value.is_finite() && value > 0.0, "a measurement without a positive figure: {measurement}");
    }
    let verify =
        measurements.iter().find(|m| m["case"].as_str().unwrap().starts_with("`invario verify`")).unwrap();
    assert_eq!(verify["operations"], 300, "verify must have read the whole ledger: {verify}");
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(&format!("invario-bench-{bench_pid}-")))
        .collect();
    assert!(leftovers.is_empty(), "the benchmark left its servers' folders behind: {leftovers:?}");
    let _ = std::fs::remove_dir_all(folder);
}

#[test]
fn a_server_without_durable_commits_is_refused() {
    // synchronous_commit can be turned off per connection, through the URL.
    let url = format!("{}?options=-c%20synchronous_commit%3Doff", invario_testkit::harness::server_url());
    let output = Command::new(env!("CARGO_BIN_EXE_invario-bench"))
        .args(["--entries", "10", "--invario"])
        .arg(invario_binary())
        .arg("--database-url")
        .arg(&url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a non-durable server was benchmarked:\n{stderr}");
    assert!(stderr.contains("=off") && stderr.contains("durab"), "the refusal must say why:\n{stderr}");
}
