//! Embedding the core with the in-memory store: record, replay, verify, prove.
//!
//! `cargo run -p invario-core --example embed_memory`

use invario_core::merkle::{entry_leaf_hash, verify_inclusion};
use invario_core::{Ledger, MemoryLedger, ReceiptStatus, Timestamp, Transaction};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    futures_executor::block_on(async {
        let ledger = Ledger::new(MemoryLedger::new());
        // The caller owns the clock: the core is handed the time of each append.
        let now = Timestamp::parse_rfc3339("2026-11-27T12:00:00Z")?;
        let payment = Transaction::from_json(&serde_json::json!({
            "transaction_id": "0b6a5e0c-3f39-4c55-9c55-7e4c3f3d2a10",
            "amount": "100.50",
            "currency": "BRL",
            "metadata": {"order": "A-1001"},
        }))?;
        let receipt = &ledger.ingest(vec![payment.clone()], now).await?[0];
        println!("recorded #{} {}", receipt.entry.sequence_number, receipt.entry.entry_hash);
        let replay = &ledger.ingest(vec![payment], now).await?[0];
        assert_eq!(replay.status, ReceiptStatus::Replayed);

        let report = ledger.verify_full().await?;
        println!("intact: {} ({} entries)", report.is_intact(), report.entries_checked);

        let proof = ledger.inclusion_proof_at(1, None).await?;
        let leaf = entry_leaf_hash(&proof.entry.entry_hash);
        verify_inclusion(proof.leaf_index, proof.tree_size, &leaf, &proof.hashes, &proof.root_hash)?;
        println!("entry 1 is in the tree of size {} with root {}", proof.tree_size, proof.root_hash);
        Ok(())
    })
}
