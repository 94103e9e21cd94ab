//! Proptest strategies for valid and invalid transactions (feature `proptest`;
//! `invario-testkit` re-exports them).

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::amount::Amount;
use crate::currency::Currency;
use crate::metadata::Metadata;
use crate::timestamp::Timestamp;
use crate::transaction::{Transaction, TransactionId};

/// Currencies the strategies draw from.
pub const CURRENCIES: [&str; 8] = ["BRL", "USD", "EUR", "JPY", "GBP", "CHF", "KWD", "XAU"];

/// Canonical decimal text of a valid amount: any sign, scale 0–18, at most 28 digits, non-zero.
pub fn amount_text() -> impl Strategy<Value = String> {
    let parts =
        prop_oneof![("(0|[1-9][0-9]{0,9})", "[0-9]{0,18}"), ("[1-9][0-9]{0,27}", Just(String::new())),];
    (any::<bool>(), parts)
        .prop_map(|(negative, (integer, fraction))| {
            let sign = if negative { "-" } else { "" };
            if fraction.is_empty() {
                format!("{sign}{integer}")
            } else {
                format!("{sign}{integer}.{fraction}")
            }
        })
        .prop_filter("amounts are non-zero", |text| text.bytes().any(|b| (b'1'..=b'9').contains(&b)))
}

/// A valid amount.
pub fn amount() -> impl Strategy<Value = Amount> {
    amount_text().prop_filter_map("valid amount", |text| Amount::parse(&text).ok())
}

/// A valid currency.
pub fn currency() -> impl Strategy<Value = Currency> {
    proptest::sample::select(CURRENCIES.as_slice())
        .prop_filter_map("active code", |code| Currency::parse(code).ok())
}

/// A timestamp anywhere in years 0001–9999.
pub fn timestamp() -> impl Strategy<Value = Timestamp> {
    (-62_135_596_800_000_000i64..=253_402_300_799_999_999)
        .prop_filter_map("in range", |micros| Timestamp::from_unix_micros(micros).ok())
}

/// Metadata keys in the allowed alphabet.
pub fn metadata_key() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{1,16}"
}

/// Valid metadata: up to 6 keys, values of any characters but NUL.
pub fn metadata() -> impl Strategy<Value = Metadata> {
    btree_map(metadata_key(), "[^\u{0}]{0,24}", 0..6)
        .prop_filter_map("valid metadata", |map: BTreeMap<String, String>| Metadata::from_map(map).ok())
}

/// A valid transaction id.
pub fn transaction_id() -> impl Strategy<Value = TransactionId> {
    (1u128..).prop_filter_map("non-nil", |bits| TransactionId::from_uuid(uuid::Uuid::from_u128(bits)).ok())
}

/// A valid transaction.
pub fn transaction() -> impl Strategy<Value = Transaction> {
    (transaction_id(), amount(), currency(), proptest::option::of(timestamp()), metadata()).prop_map(
        |(transaction_id, amount, currency, occurred_at, metadata)| Transaction {
            transaction_id,
            amount,
            currency,
            occurred_at,
            metadata,
        },
    )
}

/// Transactions with distinct ids.
pub fn distinct_transactions(size: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Transaction>> {
    vec(transaction(), size).prop_map(|mut transactions| {
        let mut seen = std::collections::HashSet::new();
        transactions.retain(|transaction| seen.insert(transaction.transaction_id));
        transactions
    })
}

/// The JSON a client sends for `transaction`.
pub fn to_request_json(transaction: &Transaction) -> Value {
    let mut value = json!({
        "transaction_id": transaction.transaction_id.to_string(),
        "amount": transaction.amount.to_string(),
        "currency": transaction.currency.code(),
    });
    if let Some(occurred_at) = transaction.occurred_at {
        value["occurred_at"] = json!(occurred_at.to_rfc3339());
    }
    if !transaction.metadata.is_empty() {
        value["metadata"] = json!(transaction.metadata.as_map());
    }
    value
}

/// A transaction JSON with exactly one invalid field, and the name of that field.
pub fn invalid_transaction_json() -> impl Strategy<Value = (Value, &'static str)> {
    let bad_amount = prop_oneof![
        Just(json!(100.5)),
        Just(json!("1e3")),
        Just(json!("+1")),
        Just(json!("007")),
        Just(json!("0")),
        Just(json!("1 000")),
        Just(json!("0.0000000000000000001")),
        Just(json!("")),
        "[0-9]{29}".prop_map(Value::String),
    ];
    let bad_currency =
        prop_oneof![Just(json!("usd")), Just(json!("XYZ")), Just(json!("HRK")), Just(json!(986))];
    let bad_id = prop_oneof![
        Just(json!("not-a-uuid")),
        Just(json!("00000000-0000-0000-0000-000000000000")),
        Just(json!(42))
    ];
    let bad_time = prop_oneof![Just(json!("2023-10-27T10:00:00")), Just(json!("yesterday")), Just(json!(0))];
    let bad_metadata = prop_oneof![
        Just(json!({"a b": "x"})),
        Just(json!({"n": 1})),
        Just(json!({"n": "x".repeat(513)})),
        Just(json!("flat")),
    ];
    (
        transaction(),
        prop_oneof![
            bad_amount.prop_map(|value| ("amount", value)),
            bad_currency.prop_map(|value| ("currency", value)),
            bad_id.prop_map(|value| ("transaction_id", value)),
            bad_time.prop_map(|value| ("occurred_at", value)),
            bad_metadata.prop_map(|value| ("metadata", value)),
        ],
    )
        .prop_map(|(transaction, (field, bad))| {
            let mut value = to_request_json(&transaction);
            value[field] = bad;
            (value, field)
        })
}
