//! The application services over the memory adapters, as shells use them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use futures_executor::block_on;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use invario_core::{
    Amount, AuthError, AuthenticationError, BatchRequest, CacheFence, IngestError, KeyAdmin, KeyAdminError,
    KeyCache, KeyChange, KeyEpoch, Ledger, LedgerHead, MAX_BATCH_SIZE, MAX_JOINED_ROWS, MemoryKeyStore,
    MemoryLedger, PageError, ReceiptStatus, Scope, StoreError, Timestamp, Transaction, joins,
};
use rand_core::{OsRng, TryRngCore};
use serde_json::json;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_micros(1_700_000_000_000_000 + seconds * 1_000_000).unwrap()
}

fn transaction(n: u128, amount: &str) -> Transaction {
    Transaction::from_json(&json!({
        "transaction_id": uuid::Uuid::from_u128(n).to_string(), "amount": amount, "currency": "BRL",
    }))
    .unwrap()
}

#[test]
fn same_id_same_content_replays_and_other_content_conflicts() {
    block_on(async {
        let ledger = Ledger::new(MemoryLedger::new());
        let created = ledger.ingest(vec![transaction(1, "100.50")], at(0)).await.unwrap();
        assert_eq!(created[0].status, ReceiptStatus::Created);
        let replayed = ledger.ingest(vec![transaction(1, "100.50")], at(9)).await.unwrap();
        assert_eq!(replayed[0].status, ReceiptStatus::Replayed);
        assert_eq!(replayed[0].entry, created[0].entry);

        let error = ledger.ingest(vec![transaction(1, "100.5")], at(10)).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "batch rejected: 1 item(s) refused; nothing was written",
            "the scale is content: 100.5 is not 100.50"
        );
        let IngestError::Rejected(rejection) = error else { unreachable!() };
        assert_eq!(
            rejection.items[0].problem.to_string(),
            "transaction_id 00000000-0000-0000-0000-000000000001 is already recorded at sequence 1 with different content"
        );
        assert_eq!(ledger.head().await.unwrap().sequence_number, 1);
    });
}

#[test]
fn batches_are_bounded() {
    block_on(async {
        let ledger = Ledger::new(MemoryLedger::new());
        assert!(matches!(ledger.ingest(vec![], at(0)).await, Err(IngestError::EmptyBatch)));
        let too_many: Vec<_> = (1..=10_001).map(|n| transaction(n, "1")).collect();
        let error = ledger.ingest(too_many, at(0)).await.unwrap_err();
        assert_eq!(error.to_string(), "transactions may hold at most 10000 items (got 10001)");
    });
}

#[test]
fn joined_batches_with_stale_keys_are_handed_back_and_the_rest_written() {
    block_on(async {
        // The memory store hands out no key epochs: every epoch counts as moved.
        let ledger = Ledger::new(MemoryLedger::new());
        let request = |ids: &[u128], keys| BatchRequest {
            transactions: ids.iter().map(|&n| transaction(n, "1")).collect(),
            keys,
        };
        let answers = ledger
            .ingest_batches(
                vec![
                    request(&[1, 2], Some(KeyEpoch(3))),
                    request(&[3], None),
                    request(&[4], Some(KeyEpoch(5))),
                    request(&[5, 1], None),
                ],
                at(1),
            )
            .await
            .unwrap();
        assert_eq!(answers.len(), 4);
        for keyed in [&answers[0], &answers[2]] {
            assert!(matches!(keyed, Err(IngestError::Store(StoreError::KeysChanged))), "{keyed:?}");
        }
        let written: Vec<u64> = [&answers[1], &answers[3]]
            .into_iter()
            .flat_map(|answer| answer.as_ref().unwrap().iter().map(|receipt| receipt.entry.sequence_number))
            .collect();
        assert_eq!(
            written,
            [1, 2, 3],
            "the unkeyed batches, in order; 1 is new since its batch was not written"
        );
        for absent in [2, 4] {
            assert!(ledger.entry(transaction(absent, "1").transaction_id).await.unwrap().is_none());
        }
        assert_eq!(ledger.head().await.unwrap().sequence_number, 3);
    });
}

#[test]
fn joined_batches_out_of_bounds_are_refused_and_write_nothing() {
    block_on(async {
        let ledger = Ledger::new(MemoryLedger::new());
        let batch = |from: u128, count: usize| BatchRequest {
            transactions: (from..from + count as u128).map(|n| transaction(n, "1")).collect(),
            keys: None,
        };
        let refusals = [
            (vec![batch(1, 1), batch(2, 0)], "transactions must hold at least one item"),
            (vec![batch(1, MAX_BATCH_SIZE + 1)], "transactions may hold at most 10000 items (got 10001)"),
            (
                vec![batch(1, MAX_JOINED_ROWS), batch(100_000, 1)],
                "batches joined in one write may hold at most 8000 items together (got 8001)",
            ),
        ];
        for (requests, message) in refusals {
            let error = ledger.ingest_batches(requests, at(1)).await.unwrap_err();
            assert_eq!(error.to_string(), message);
            assert_eq!(ledger.head().await.unwrap(), LedgerHead::EMPTY);
        }
        // One batch alone may be as large as any batch.
        let alone = ledger.ingest_batches(vec![batch(1, MAX_BATCH_SIZE)], at(1)).await.unwrap();
        assert_eq!(alone[0].as_ref().unwrap().len(), MAX_BATCH_SIZE);
        // The rule the appender groups by.
        assert!(joins(0, MAX_BATCH_SIZE));
        assert!(joins(MAX_JOINED_ROWS - 1, 1));
        assert!(!joins(MAX_JOINED_ROWS, 1));
        assert!(!joins(1, usize::MAX));
    });
}

#[test]
fn recorded_time_never_goes_backwards_when_the_clock_does() {
    block_on(async {
        let ledger = Ledger::new(MemoryLedger::new());
        ledger.ingest(vec![transaction(1, "1")], at(100)).await.unwrap();
        let later = ledger.ingest(vec![transaction(2, "1")], at(50)).await.unwrap();
        assert_eq!(later[0].entry.recorded_at, at(100));
    });
}

#[test]
fn pages_of_entries_walk_the_whole_ledger() {
    block_on(async {
        let ledger = Ledger::new(MemoryLedger::new());
        ledger.ingest((1..=5).map(|n| transaction(n, "1")).collect(), at(0)).await.unwrap();
        let first = ledger.entries_after(0, 2).await.unwrap();
        assert_eq!(first.entries.iter().map(|e| e.sequence_number).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(first.next_after, Some(2));
        let last = ledger.entries_after(4, 2).await.unwrap();
        assert_eq!(last.entries.len(), 1);
        assert_eq!(last.next_after, None);
        let error = ledger.entries_after(0, 1001).await.unwrap_err();
        assert!(matches!(error, PageError::LimitOutOfRange(1001)));
        assert_eq!(error.to_string(), "limit must be between 1 and 1000 (got 1001)");
        // Beyond any sequence number a ledger can hold (found by Schemathesis: it was a 500 on SQLite).
        let error = ledger.entries_after(u64::MAX, 10).await.unwrap_err();
        assert!(matches!(error, PageError::AfterOutOfRange(u64::MAX)));
        assert_eq!(ledger.entries_after(i64::MAX as u64, 10).await.unwrap().entries, vec![]);
    });
}

#[test]
fn a_break_quarantines_writes_for_the_life_of_the_service() {
    block_on(async {
        let store = MemoryLedger::new();
        let ledger = Ledger::new(store.clone());
        assert!(!ledger.integrity().is_healthy(), "unknown until verified once");
        ledger.ingest((1..=3).map(|n| transaction(n, "10.00")).collect(), at(0)).await.unwrap();
        assert!(ledger.verify_incremental().await.unwrap().is_intact());
        assert!(ledger.integrity().is_healthy());

        let mut original = Vec::new();
        store.tamper_entries(|entries| {
            original = entries.clone();
            entries[1].transaction.amount = Amount::parse("99999.00").unwrap();
        });
        let report = ledger.verify_full().await.unwrap();
        let found = report.first_break.unwrap();
        assert_eq!(found.kind(), "hash_mismatch");
        assert!(found.to_string().starts_with("hash mismatch at sequence 2: stored "), "{found}");
        assert!(!ledger.integrity().is_healthy());

        let refused = ledger.ingest(vec![transaction(4, "1")], at(1)).await.unwrap_err();
        assert!(matches!(refused, IngestError::Quarantined(_)));
        assert!(refused.to_string().contains("hash mismatch at sequence 2"));
        assert!(ledger.verify_incremental().await.unwrap().is_intact(), "new rows are fine");
        assert!(!ledger.integrity().is_healthy(), "a passing run does not lift the quarantine");

        store.tamper_entries(|entries| *entries = original);
        assert!(ledger.verify_full().await.unwrap().is_intact());
        assert!(!ledger.integrity().is_healthy(), "only a restart on a healthy ledger lifts the quarantine");
        assert!(matches!(
            ledger.ingest(vec![transaction(4, "1")], at(1)).await,
            Err(IngestError::Quarantined(_))
        ));

        let restarted = Ledger::new(store.clone());
        assert!(restarted.verify_full().await.unwrap().is_intact());
        assert!(restarted.integrity().is_healthy());
        restarted.ingest(vec![transaction(4, "1")], at(1)).await.unwrap();
    });
}

#[test]
fn incremental_verification_catches_a_truncated_tail() {
    block_on(async {
        let store = MemoryLedger::new();
        let ledger = Ledger::new(store.clone());
        ledger.ingest((1..=3).map(|n| transaction(n, "1")).collect(), at(0)).await.unwrap();
        ledger.verify_incremental().await.unwrap();
        ledger.ingest((4..=6).map(|n| transaction(n, "1")).collect(), at(1)).await.unwrap();
        store.tamper_entries(|entries| {
            entries.pop();
        });
        let found = ledger.verify_incremental().await.unwrap().first_break.unwrap();
        assert_eq!(found.kind(), "head_mismatch");
        assert_eq!(found.sequence(), Some(6));
        assert!(matches!(
            ledger.ingest(vec![transaction(7, "1")], at(2)).await,
            Err(IngestError::Quarantined(_))
        ));
    });
}

#[test]
fn keys_authenticate_until_revoked_and_only_for_their_scopes() {
    block_on(async {
        let admin = KeyAdmin::new(MemoryKeyStore::new());
        let mut rng = OsRng.unwrap_err();
        let (writer, record) =
            admin.create_key(&mut rng, "ClientName", r#"{"write": true}"#, None, at(0)).await.unwrap();
        assert!(writer.expose().starts_with("inv_live_"));
        assert_eq!(record.prefix, &writer.expose()[..17]);

        let authenticated =
            admin.authenticate(Some(writer.expose()), Scope::Write, None, at(1)).await.unwrap();
        assert_eq!(authenticated.owner.as_str(), "ClientName");
        assert_eq!(admin.list(None).await.unwrap()[0].last_used_at, Some(at(1)));
        let forbidden =
            admin.authenticate(Some(writer.expose()), Scope::Read, None, at(1)).await.unwrap_err();
        assert!(matches!(forbidden, AuthenticationError::Refused(ref e) if e.is_forbidden()));

        let missing = admin.authenticate(None, Scope::Write, None, at(1)).await.unwrap_err();
        assert!(matches!(missing, AuthenticationError::Refused(AuthError::Missing)));
        let unknown = format!("inv_live_{}", "A".repeat(32));
        let refused = admin.authenticate(Some(&unknown), Scope::Write, None, at(1)).await.unwrap_err();
        assert!(matches!(refused, AuthenticationError::Refused(AuthError::Unknown)));

        admin.create_key(&mut rng, "ClientName", r#"{"read": true}"#, None, at(0)).await.unwrap();
        admin.create_key(&mut rng, "Other", r#"{"read": true}"#, None, at(0)).await.unwrap();
        assert_eq!(admin.revoke_owner("ClientName", at(2)).await.unwrap(), 2);
        assert_eq!(admin.revoke_owner("ClientName", at(3)).await.unwrap(), 0);
        let revoked = admin.authenticate(Some(writer.expose()), Scope::Write, None, at(2)).await.unwrap_err();
        assert!(matches!(revoked, AuthenticationError::Refused(AuthError::Revoked { .. })));
        assert_eq!(admin.list(Some("Other")).await.unwrap().len(), 1);
        let other = &admin.list(Some("Other")).await.unwrap()[0];
        assert_eq!(admin.revoke_prefix(&other.prefix, at(4)).await.unwrap(), 1);
    });
}

/// A fence whose catch-up delivers the change the test says is in flight.
#[derive(Debug)]
struct ScriptedFence {
    cache: Arc<KeyCache>,
    in_flight: Mutex<Option<KeyChange>>,
    caught_up: AtomicBool,
    rounds: AtomicUsize,
}

#[async_trait]
impl CacheFence for ScriptedFence {
    async fn catch_up(&self) -> bool {
        self.rounds.fetch_add(1, Ordering::SeqCst);
        if let Some(change) = self.in_flight.lock().unwrap().take() {
            self.cache.apply(change);
        }
        self.caught_up.load(Ordering::SeqCst)
    }
}

#[test]
fn a_cached_key_is_trusted_only_once_the_feed_caught_up() {
    block_on(async {
        let cache = Arc::new(KeyCache::new(8));
        cache.apply(KeyChange::Listening);
        let fence = Arc::new(ScriptedFence {
            cache: Arc::clone(&cache),
            in_flight: Mutex::new(None),
            caught_up: AtomicBool::new(true),
            rounds: AtomicUsize::new(0),
        });
        let admin = KeyAdmin::with_cache(MemoryKeyStore::new(), Arc::clone(&cache), fence.clone());
        let mut rng = OsRng.unwrap_err();
        let (key, _) = admin.create_key(&mut rng, "Svc", r#"{"read": true}"#, None, at(0)).await.unwrap();

        admin.authenticate(Some(key.expose()), Scope::Read, None, at(1)).await.unwrap();
        assert_eq!(fence.rounds.load(Ordering::SeqCst), 0, "a miss reads the store, no catch-up needed");
        assert_eq!(cache.len(), 1);
        admin.authenticate(Some(key.expose()), Scope::Read, None, at(1)).await.unwrap();
        assert_eq!(fence.rounds.load(Ordering::SeqCst), 1, "a hit is trusted only after a catch-up");

        // Revoked in the store, its notice not yet applied: the catch-up
        // brings it in, and the request is refused.
        admin.revoke_owner("Svc", at(2)).await.unwrap();
        *fence.in_flight.lock().unwrap() = Some(KeyChange::Changed);
        let revoked = admin.authenticate(Some(key.expose()), Scope::Read, None, at(3)).await.unwrap_err();
        assert!(matches!(revoked, AuthenticationError::Refused(AuthError::Revoked { .. })), "{revoked:?}");

        // A catch-up that fails sends the request to the store.
        let (other, _) = admin.create_key(&mut rng, "Other", r#"{"read": true}"#, None, at(0)).await.unwrap();
        admin.authenticate(Some(other.expose()), Scope::Read, None, at(4)).await.unwrap();
        admin.revoke_owner("Other", at(5)).await.unwrap();
        fence.caught_up.store(false, Ordering::SeqCst);
        let revoked = admin.authenticate(Some(other.expose()), Scope::Read, None, at(6)).await.unwrap_err();
        assert!(matches!(revoked, AuthenticationError::Refused(AuthError::Revoked { .. })), "{revoked:?}");
    });
}

#[test]
fn keys_expire_and_bad_input_creates_nothing() {
    block_on(async {
        let admin = KeyAdmin::new(MemoryKeyStore::new());
        let mut rng = OsRng.unwrap_err();
        let (key, _) =
            admin.create_key(&mut rng, "Temp", r#"{"read": true}"#, Some(at(10)), at(0)).await.unwrap();
        assert!(admin.authenticate(Some(key.expose()), Scope::Read, None, at(9)).await.is_ok());
        let expired = admin.authenticate(Some(key.expose()), Scope::Read, None, at(10)).await.unwrap_err();
        assert!(matches!(expired, AuthenticationError::Refused(AuthError::Expired { .. })));

        let bad_scopes =
            admin.create_key(&mut rng, "X", r#"{"delete": true}"#, None, at(0)).await.unwrap_err();
        assert!(matches!(bad_scopes, KeyAdminError::Scopes(_)));
        let no_owner = admin.create_key(&mut rng, " ", r#"{"read": true}"#, None, at(0)).await.unwrap_err();
        assert_eq!(no_owner.to_string(), "owner must not be empty");
        assert_eq!(admin.list(None).await.unwrap().len(), 1);
    });
}

#[test]
fn grouped_requests_succeed_or_fail_each_on_their_own() {
    block_on(async {
        let ledger = Ledger::new(MemoryLedger::new());
        ledger.ingest(vec![transaction(1, "5")], at(0)).await.unwrap();
        let outcomes = ledger
            .ingest_each(
                vec![
                    transaction(2, "1"),
                    transaction(1, "6"),
                    transaction(3, "1"),
                    transaction(2, "1"),
                    transaction(3, "2"),
                    transaction(1, "5"),
                ],
                at(1),
            )
            .await
            .unwrap();
        let summary: Vec<_> = outcomes
            .iter()
            .map(|outcome| match outcome {
                Ok(receipt) => format!("{:?} {}", receipt.status, receipt.entry.sequence_number),
                Err(problem) => format!("conflict={}", problem.is_conflict()),
            })
            .collect();
        assert_eq!(
            summary,
            ["Created 2", "conflict=true", "Created 3", "Replayed 2", "conflict=true", "Replayed 1"]
        );
        assert_eq!(ledger.head().await.unwrap().sequence_number, 3);
        assert!(ledger.verify_full().await.unwrap().is_intact());
    });
}
