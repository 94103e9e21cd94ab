//! The published test vectors of hash chain format v1. They are also in the
//! README and are recomputed independently by `docs/recompute_hashes.py`.
//! Once released they never change: a failure here means the format drifted.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use invario_core::{
    ChainPosition, EntryContent, EntryHash, LedgerEntry, Timestamp, Transaction, encode_entry_v1,
};
use serde_json::json;

fn time(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

/// (transaction JSON, recorded_at, expected entry hash), chained in order from genesis.
fn vectors() -> Vec<(serde_json::Value, &'static str, &'static str)> {
    vec![
        (
            json!({"transaction_id": "00000000-0000-4000-8000-000000000001", "amount": "100.50",
                   "currency": "BRL", "occurred_at": "2023-10-27T10:00:00Z"}),
            "2023-10-27T10:00:01.123456Z",
            "096e0f69c2564d0e73c0121604c65f4249eb054bf904a63b8261da00f511c9cc",
        ),
        (
            json!({"transaction_id": "00000000-0000-4000-8000-000000000002", "amount": "-0.005",
                   "currency": "USD", "occurred_at": "2023-10-27T09:59:59.999999Z"}),
            "2023-10-27T10:00:02Z",
            "6c853fac5cfe1b4b8cdbb35a43e19cafd9806dc5e22d6ae5c152bcf92c72274b",
        ),
        (
            json!({"transaction_id": "00000000-0000-4000-8000-000000000003", "amount": "1",
                   "currency": "JPY"}),
            "2023-10-27T10:00:03Z",
            "d34c8777858d8355d5f6e74173a7f4516a43a579a1e82965ecbe9d9c5d02ce54",
        ),
        (
            json!({"transaction_id": "00000000-0000-4000-8000-000000000004", "amount": "12.3400",
                   "currency": "EUR", "occurred_at": "2023-10-27T10:00:00Z",
                   "metadata": {"zeta": "last", "alpha": "first", "Mid": "upper-case sorts first",
                                "_x": "underscore"}}),
            "2023-10-27T10:00:04Z",
            "4ae4e081e1812ea86d41ba20ad39dcea2b2f7fccb9c67dbcd7ce2a7803581bf9",
        ),
        (
            json!({"transaction_id": "00000000-0000-4000-8000-000000000005", "amount": "999999999.99",
                   "currency": "GBP", "occurred_at": "1969-07-20T20:17:40Z",
                   "metadata": {"payee": "São Paulo — 東京 ✓"}}),
            "2023-10-27T10:00:05Z",
            "6140a9850a4be3cc9b335f7d20521931aee7c85da1a28de5ccff9ed7f5b223e1",
        ),
    ]
}

#[test]
fn published_vectors_never_change() {
    let mut position = ChainPosition::GENESIS;
    for (sequence, (transaction, recorded_at, expected)) in (1..).zip(vectors()) {
        let transaction = Transaction::from_json(&transaction).unwrap();
        let entry = LedgerEntry::next(position, transaction, time(recorded_at)).unwrap();
        assert_eq!(entry.sequence_number, sequence);
        assert_eq!(entry.prev_hash, position.entry_hash);
        assert_eq!(entry.entry_hash.to_hex(), expected, "vector {sequence}");
        position = entry.position();
    }
}

#[test]
fn the_genesis_encoding_is_byte_for_byte_the_documented_layout() {
    let id = uuid::Uuid::parse_str("00000000-0000-4000-8000-000000000001").unwrap();
    let metadata = std::collections::BTreeMap::new();
    let occurred = time("2023-10-27T10:00:00Z").unix_micros();
    let recorded = time("2023-10-27T10:00:01.123456Z").unix_micros();
    let content = EntryContent {
        transaction_id: &id,
        amount: "100.50",
        currency: "BRL",
        occurred_at_micros: Some(occurred),
        recorded_at_micros: recorded,
        metadata: &metadata,
    };

    let mut expected = b"invario.ledger.v1\0".to_vec();
    expected.extend([0u8; 32]);
    expected.extend(1u64.to_be_bytes());
    expected.extend([0, 0, 0, 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 1]);
    expected.extend([0, 0, 0, 6]);
    expected.extend(b"100.50");
    expected.extend(b"BRL");
    expected.extend(1_698_400_800_000_000i64.to_be_bytes());
    expected.extend(1_698_400_801_123_456i64.to_be_bytes());
    expected.extend([0, 0, 0, 0]);
    assert_eq!(encode_entry_v1(&EntryHash::GENESIS, 1, &content), expected);
}

#[test]
fn an_absent_occurred_at_encodes_as_the_reserved_eight_bytes() {
    let id = uuid::Uuid::from_u128(3);
    let metadata = std::collections::BTreeMap::from([
        ("b".to_owned(), "2".to_owned()),
        ("a".to_owned(), "é".to_owned()),
    ]);
    let content = EntryContent {
        transaction_id: &id,
        amount: "1",
        currency: "JPY",
        occurred_at_micros: None,
        recorded_at_micros: 0,
        metadata: &metadata,
    };
    let bytes = encode_entry_v1(&EntryHash::GENESIS, 3, &content);
    let after_currency = 18 + 32 + 8 + 16 + 4 + 1 + 3;
    assert_eq!(bytes[after_currency..after_currency + 8], [0x80, 0, 0, 0, 0, 0, 0, 0]);
    let metadata_part = &bytes[after_currency + 16..];
    assert_eq!(
        metadata_part,
        [
            &[0, 0, 0, 2, 0, 0, 0, 1, b'a', 0, 0, 0, 2][..],
            "é".as_bytes(),
            &[0, 0, 0, 1, b'b', 0, 0, 0, 1, b'2']
        ]
        .concat()
    );
}
