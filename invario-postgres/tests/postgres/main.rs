//! invario-postgres against a real PostgreSQL (see invario-testkit's harness for how one is found).
//! One test binary, a module per concern; the adapter contract suites run here.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod appends;
mod copy_write;
mod keys;
mod leaf_tile;
mod schema;
mod shared_commit;
mod tampering;

use futures_util::future::BoxFuture;
use invario_core::{AppendSession, IngestError, Ledger, LedgerStore, plan_append};
use invario_postgres::{PgLedger, pending_migrations};
use invario_testkit::contract::{at, transaction};
use invario_testkit::harness::{TestDatabase, fresh_database, fresh_empty_database};
use invario_testkit::tamper::{self, EntryEdit, TransactionEdit};
use invario_testkit::{
    catalog_contract_tests, fresh_pg_catalog, fresh_pg_key_store, fresh_pg_ledger, key_store_contract_tests,
    ledger_store_contract_tests,
};
use serde_json::json;
use sqlx::PgPool;

ledger_store_contract_tests!(fresh_pg_ledger(), cases = 24);
catalog_contract_tests!(fresh_pg_catalog(), parallel_ledgers);
key_store_contract_tests!(fresh_pg_key_store());

async fn ledger_with(count: u128) -> (Ledger<PgLedger>, TestDatabase) {
    let database = fresh_database().await;
    let ledger = Ledger::new(PgLedger::new(database.pool().clone()));
    ledger.ingest((1..=count).map(|n| transaction(n, "10.00")).collect(), at(1)).await.unwrap();
    (ledger, database)
}

async fn first_break(ledger: &Ledger<PgLedger>) -> (String, Option<u64>, String) {
    let report = ledger.verify_full().await.unwrap();
    let found = report.first_break.expect("tampering must be detected");
    (found.kind().to_owned(), found.sequence(), found.to_string())
}

/// A plan of `ids` on a ledger's stored state, as its writer would make it:
/// the fence and the plan.
fn planned(
    state: invario_core::writer::WriterState,
    ids: &[u128],
    step: i64,
) -> (invario_core::writer::Fence, invario_core::AppendPlan) {
    let fence = state.fence();
    let plan =
        plan_append(&state.into_snapshot(), ids.iter().map(|&n| transaction(n, "1.00")).collect(), at(step))
            .expect("planned");
    (fence, plan)
}
