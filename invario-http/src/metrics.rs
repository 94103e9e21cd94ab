//! Prometheus metrics: names, and the process-wide recorder.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Counter: transactions appended (replays do not count).
pub const TRANSACTIONS_TOTAL: &str = "invario_transactions_total";
/// Gauge: 1 while the chain verifies, 0 once a break is found.
pub const INTEGRITY_STATUS: &str = "invario_ledger_integrity_status";
/// Gauge: the head's sequence number.
pub const HEAD_SEQUENCE: &str = "invario_ledger_head_sequence";
/// Gauge: the last sequence number verified intact.
pub const LAST_VERIFIED_SEQUENCE: &str = "invario_ledger_last_verified_sequence";
/// Counter: batches rejected (422).
pub const BATCHES_REJECTED_TOTAL: &str = "invario_batches_rejected_total";
/// Counter: HTTP requests by route and status.
pub const HTTP_REQUESTS_TOTAL: &str = "invario_http_requests_total";
/// Histogram: HTTP latency in seconds by route and status.
pub const HTTP_REQUEST_DURATION: &str = "invario_http_request_duration_seconds";
/// Histogram: transactions per database append (group commits and batches).
pub const APPEND_BATCH_SIZE: &str = "invario_append_batch_size";
/// Counter: requests that failed because the database was unavailable or full, by `kind`.
pub const DATABASE_ERRORS_TOTAL: &str = "invario_database_errors_total";
/// Gauge: 1 while authentication serves cached key records (the key change
/// feed is connected), 0 while every request reads the key table; absent
/// when there is no cache (`--key-cache-size 0`).
pub const KEY_CACHE_LIVE: &str = "invario_key_cache_live";
/// Counter: database transactions that appended entries.
pub const APPEND_COMMITS_TOTAL: &str = "invario_append_commits_total";
/// Counter: appends that found their ledger moved by another writer (a second
/// `serve`, the CLI, direct SQL) since this server's last write, and were
/// redone on the locking path, by ledger. Rising steadily: two writers on one
/// ledger (correct, but each pays a second attempt; see docs/operations.md).
pub const APPEND_FENCED_TOTAL: &str = "invario_append_fenced_total";

/// Gauge: seconds since the latest checkpoint was signed (or found in the sink at start).
pub const CHECKPOINT_AGE: &str = "invario_checkpoint_age_seconds";
/// Gauge: the tree size of the latest checkpoint.
pub const CHECKPOINT_TREE_SIZE: &str = "invario_checkpoint_tree_size";
/// Counter: checkpoints signed and written to the sink.
pub const CHECKPOINTS_SIGNED_TOTAL: &str = "invario_checkpoints_signed_total";
/// Counter: rounds that refused to sign (inconsistency, quarantine, an unusable sink).
pub const CHECKPOINT_REFUSALS_TOTAL: &str = "invario_checkpoint_refusals_total";

/// Counter: checkpoint submissions to witnesses, by witness and outcome (cosigned, failed).
pub const WITNESS_SUBMISSIONS_TOTAL: &str = "invario_witness_submissions_total";
/// Gauge: seconds since each witness last cosigned a checkpoint of this log, by witness.
pub const WITNESS_COSIGNATURE_AGE: &str = "invario_witness_cosignature_age_seconds";
/// Gauge: verified witness cosignatures on the latest checkpoint signed (compare with the quorum).
pub const CHECKPOINT_COSIGNATURES: &str = "invario_checkpoint_cosignatures";
/// Gauge: the cosignatures each checkpoint should gather (`--witness-quorum`).
pub const WITNESS_QUORUM: &str = "invario_witness_quorum";

const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 256.0, 1000.0, 4000.0, 10000.0];

/// Records one database append that created `created` entries (nothing when all were replays).
pub(crate) fn record_append(ledger: &invario_core::LedgerName, created: usize) {
    if created > 0 {
        metrics::counter!(APPEND_COMMITS_TOTAL).increment(1);
        metrics::histogram!(APPEND_BATCH_SIZE).record(created as f64);
        metrics::counter!(TRANSACTIONS_TOTAL, "ledger" => ledger.to_string()).increment(created as u64);
    }
}

/// Publishes a ledger's count of fenced writes ([`APPEND_FENCED_TOTAL`]),
/// kept by its `Ledger` and read after each append.
pub(crate) fn record_fences(ledger: &invario_core::LedgerName, fenced_writes: u64) {
    metrics::counter!(APPEND_FENCED_TOTAL, "ledger" => ledger.to_string()).absolute(fenced_writes);
}

/// The handle rendering `/metrics`; installs the global recorder on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_REQUEST_DURATION.into()), &LATENCY_BUCKETS)
            .and_then(|builder| {
                builder.set_buckets_for_metric(Matcher::Full(APPEND_BATCH_SIZE.into()), &BATCH_BUCKETS)
            });
        match builder {
            Ok(builder) => {
                let recorder = builder.build_recorder();
                let handle = recorder.handle();
                // An embedder may have installed its own recorder; then ours renders nothing.
                let _ = metrics::set_global_recorder(recorder);
                handle
            }
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}
