//! The JSON shapes clients code against.

use invario_core::{LedgerEntry, LedgerHead};
use serde_json::{Value, json};

/// A receipt: the transaction as recorded plus its place in the chain.
pub(crate) fn receipt_json(entry: &LedgerEntry) -> Value {
    let transaction = &entry.transaction;
    json!({
        "transaction_id": transaction.transaction_id,
        "amount": transaction.amount,
        "currency": transaction.currency,
        "occurred_at": transaction.occurred_at,
        "metadata": transaction.metadata,
        "recorded_at": entry.recorded_at,
        "sequence_number": entry.sequence_number,
        "prev_hash": entry.prev_hash,
        "entry_hash": entry.entry_hash,
    })
}

/// The head: sequence, hash, recording time (0, 64 zeros and null when empty).
pub(crate) fn head_json(head: &LedgerHead) -> Value {
    json!({
        "sequence_number": head.sequence_number,
        "entry_hash": head.entry_hash,
        "recorded_at": head.recorded_at,
    })
}
