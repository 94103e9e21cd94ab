//! The partial level-0 tile is never stored (issue 27, L12): appends write a
//! level-0 tile only when it fills, and every reader — proofs, the tiles read
//! API, a writer starting afresh — rebuilds the partial one from the last
//! entries' hashes, checked against the stored frontier.

use invario_core::merkle::{entry_leaf_hash, hashes_to_bytes, verify_consistency, verify_inclusion};
use invario_core::tiled::TileResource;
use invario_core::{IngestError, Ledger, LedgerStore, ProofRequestError, StoreError, TileCoord};
use invario_postgres::PgLedger;
use invario_testkit::contract::{at, transaction};
use invario_testkit::tamper::{self, EntryEdit};

use super::ledger_with;

async fn stored_tiles(pool: &sqlx::PgPool) -> Vec<(i16, i64, i32)> {
    sqlx::query_as(
        "SELECT level, tile_index, octet_length(hashes) / 32 FROM tree_tiles ORDER BY level, tile_index",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn level0(index: u64, width: usize) -> TileResource {
    TileResource::Hashes { coord: TileCoord { level: 0, index }, width }
}

#[tokio::test]
async fn small_appends_store_no_partial_leaf_tile_and_every_reader_rebuilds_it() {
    let (ledger, database) = ledger_with(300).await;
    let pool = database.pool();
    assert_eq!(stored_tiles(pool).await, vec![(0, 0, 256), (1, 0, 1)], "no partial level-0 tile stored");

    // Small appends through a writer that keeps its state, then through a fresh one
    // that reads the edge from the database: still no partial tile, the tree intact.
    for n in 301..=320 {
        ledger.ingest(vec![transaction(n, "1.00")], at(2)).await.unwrap();
    }
    let fresh = Ledger::new(PgLedger::new(pool.clone()));
    fresh.ingest(vec![transaction(321, "1.00")], at(3)).await.unwrap();
    assert_eq!(stored_tiles(pool).await, vec![(0, 0, 256), (1, 0, 1)]);
    assert!(fresh.verify_full().await.unwrap().first_break.is_none());

    let entries = fresh.store().entries_after(256, 65).await.unwrap();
    let head = fresh.tree_head().await.unwrap();
    assert_eq!(head.size, 321);
    // Inclusion at the current size (inside and outside the partial tile) and at an older size.
    for (sequence_number, size) in
        [(1, None), (200, None), (257, None), (321, None), (290, Some(300)), (300, Some(300))]
    {
        let proof = fresh.inclusion_proof_at(sequence_number, size).await.unwrap();
        verify_inclusion(
            proof.leaf_index,
            proof.tree_size,
            &entry_leaf_hash(&proof.entry.entry_hash),
            &proof.hashes,
            &proof.root_hash,
        )
        .unwrap();
    }
    for first in [1, 256, 257, 300, 320] {
        let proof = fresh.consistency_proof(first, None).await.unwrap();
        verify_consistency(first, 321, &proof.first_root, &proof.second_root, &proof.hashes).unwrap();
    }
    // The tiles read API serves the partial tile at any width it has reached, and no further.
    let leaves: Vec<_> = entries.iter().map(|entry| entry_leaf_hash(&entry.entry_hash)).collect();
    for width in [1, 44, 65] {
        assert_eq!(
            fresh.tile_resource(&level0(1, width)).await.unwrap(),
            Some(hashes_to_bytes(&leaves[..width])),
            "width {width}"
        );
    }
    assert_eq!(fresh.tile_resource(&level0(1, 66)).await.unwrap(), None);

    // Filling the tile stores it whole, and grows level 1.
    let fill: Vec<_> = (322..=512).map(|n| transaction(n, "1.00")).collect();
    fresh.ingest(fill, at(4)).await.unwrap();
    assert_eq!(stored_tiles(pool).await, vec![(0, 0, 256), (0, 1, 256), (1, 0, 2)]);
    assert!(fresh.verify_full().await.unwrap().first_break.is_none());
}

#[tokio::test]
async fn an_altered_entry_under_the_partial_tile_is_refused_by_proofs_tiles_and_a_fresh_writer() {
    let (ledger, database) = ledger_with(300).await;
    let pool = database.pool();
    tamper::edit_entry(pool, 290, EntryEdit::EntryHash([9; 32])).await.unwrap();

    let proof = ledger.inclusion_proof_at(295, None).await;
    assert!(
        matches!(proof, Err(ProofRequestError::Store(StoreError::Corrupt(ref message))) if message.contains("do not match the stored tree")),
        "{proof:?}"
    );
    let tile = ledger.tile_resource(&level0(1, 10)).await;
    assert!(matches!(tile, Err(StoreError::Corrupt(_))), "{tile:?}");
    // A proof whose path lies outside the partial tile is still served: the frontier answers it.
    assert!(ledger.inclusion_proof_at(10, None).await.is_ok());

    // A writer that reads the edge from the database refuses to extend it; nothing is written.
    let fresh = Ledger::new(PgLedger::new(pool.clone()));
    let refused = fresh.ingest(vec![transaction(301, "1.00")], at(2)).await;
    assert!(matches!(refused, Err(IngestError::Store(StoreError::Corrupt(_)))), "{refused:?}");
    assert_eq!(fresh.head().await.unwrap().sequence_number, 300);
}
