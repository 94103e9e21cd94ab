//! The JSON shapes clients code against.

use invario_core::LedgerHead;
use serde_json::{Value, json};

/// The head: sequence, hash, recording time (0, 64 zeros and null when empty).
pub(crate) fn head_json(head: &LedgerHead) -> Value {
    json!({
        "sequence_number": head.sequence_number,
        "entry_hash": head.entry_hash,
        "recorded_at": head.recorded_at,
    })
}
