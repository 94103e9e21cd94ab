//! The transactions every scenario writes: deterministic, realistic in size
//! (≈ 130 encoded bytes per entry), identical across Invario and its baselines.

use std::fmt::Write as _;

use anyhow::Context as _;
use invario_core::{ChainPosition, LedgerEntry, Timestamp, Transaction};
use serde_json::{Value, json};
use uuid::Uuid;

const CURRENCIES: [&str; 4] = ["USD", "EUR", "BRL", "JPY"];
/// 2026-01-01T00:00:00Z, so `occurred_at` values are plausible.
const OCCURRED_BASE_SECONDS: i64 = 1_767_225_600;

/// Transaction number `index` of the stream `stream` (streams keep the ids of
/// concurrent writers apart).
pub(crate) fn transaction_json(stream: u64, index: u64) -> Value {
    let occurred_seconds = OCCURRED_BASE_SECONDS + i64::try_from(index % 31_536_000).unwrap_or(0);
    let occurred = Timestamp::from_unix_micros(occurred_seconds * 1_000_000)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_rfc3339();
    json!({
        "transaction_id": Uuid::from_u64_pair(0x1a7e_0000_0000_0000 | stream, index + 1),
        "amount": format!("{}.{:02}", 1 + index % 99_999, index % 100),
        "currency": CURRENCIES[(index % 4) as usize],
        "occurred_at": occurred,
        "metadata": {"order": format!("ord-{index:09}"), "channel": "card"},
    })
}

/// The same transaction as the core's type.
pub(crate) fn transaction(stream: u64, index: u64) -> anyhow::Result<Transaction> {
    Transaction::from_json(&transaction_json(stream, index))
        .map_err(|errors| anyhow::anyhow!("the generator made an invalid transaction: {errors}"))
}

/// `count` transactions starting at `first`.
pub(crate) fn transactions(stream: u64, first: u64, count: u64) -> anyhow::Result<Vec<Transaction>> {
    (first..first + count).map(|index| transaction(stream, index)).collect()
}

/// A batch request body for `POST /v1/transactions/batch`.
pub(crate) fn batch_body(stream: u64, first: u64, count: u64) -> Vec<u8> {
    let items: Vec<Value> = (first..first + count).map(|index| transaction_json(stream, index)).collect();
    json!({ "transactions": items }).to_string().into_bytes()
}

/// Rows for `COPY … FROM STDIN` (text format) into `transactions` and `ledger_entries`.
#[derive(Debug, Default)]
pub(crate) struct CopyRows {
    pub(crate) transactions: String,
    pub(crate) entries: String,
}

/// Chains `transactions` after `previous` exactly as the core would and renders
/// the rows as COPY text; returns the new checkpoint.
pub(crate) fn copy_rows(
    previous: ChainPosition,
    transactions: Vec<Transaction>,
    recorded_at: Timestamp,
    rows: &mut CopyRows,
) -> anyhow::Result<ChainPosition> {
    rows.transactions.clear();
    rows.entries.clear();
    let mut checkpoint = previous;
    for transaction in transactions {
        let entry = LedgerEntry::next(checkpoint, transaction, recorded_at)?;
        let transaction = &entry.transaction;
        let metadata = serde_json::to_string(transaction.metadata.as_map()).context("metadata as JSON")?;
        let occurred = transaction.occurred_at.map_or_else(|| "\\N".to_owned(), |time| time.to_rfc3339());
        writeln!(
            rows.transactions,
            "{}\t{}\t{}\t{}\t{}",
            transaction.transaction_id.as_uuid(),
            transaction.amount.to_canonical_string(),
            transaction.currency.code(),
            occurred,
            copy_text_escape(&metadata),
        )?;
        writeln!(
            rows.entries,
            "{}\t{}\t\\\\x{}\t\\\\x{}\t{}",
            entry.sequence_number,
            transaction.transaction_id.as_uuid(),
            entry.prev_hash.to_hex(),
            entry.entry_hash.to_hex(),
            entry.recorded_at.to_rfc3339(),
        )?;
        checkpoint = entry.position();
    }
    Ok(checkpoint)
}

/// COPY's text format treats backslash, tab and newlines specially.
fn copy_text_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n").replace('\r', "\\r")
}

#[cfg(test)]
mod tests {
    use super::transaction;

    #[test]
    fn every_generated_transaction_is_valid_and_distinct() {
        let first = transaction(0, 0).unwrap();
        let other_stream = transaction(1, 0).unwrap();
        assert_ne!(first.transaction_id, other_stream.transaction_id);
        for index in [1, 99, 31_536_001, 10_000_000] {
            transaction(0, index).unwrap();
        }
    }
}
