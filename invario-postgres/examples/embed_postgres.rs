//! Embedding the core on PostgreSQL: the same `Ledger` as with the memory
//! store, with `PgLedger` plugged into its port.
//!
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run -p invario-postgres --example embed_postgres`
//!
//! It migrates the database it is pointed at (creating Invario's tables), so
//! point it at a database of its own.

use invario_core::{Ledger, Timestamp, Transaction};
use invario_postgres::PgLedger;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL=postgres://…")?;
    run(&url).await
}

/// Records one payment and verifies the ledger (the tests run this against their database).
pub async fn run(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let pool = invario_postgres::connect(url).await?;
    invario_postgres::migrate(&pool).await?;
    let ledger = Ledger::new(PgLedger::new(pool));
    let now = Timestamp::from_datetime(chrono::Utc::now())?;
    let payment = Transaction::from_json(&serde_json::json!({
        "transaction_id": uuid::Uuid::new_v4().to_string(),
        "amount": "100.50",
        "currency": "BRL",
    }))?;
    let receipt = &ledger.ingest(vec![payment], now).await?[0];
    println!("recorded #{} {}", receipt.entry.sequence_number, receipt.entry.entry_hash);
    let report = ledger.verify_full().await?;
    println!("intact: {} ({} entries)", report.is_intact(), report.entries_checked);
    Ok(())
}
