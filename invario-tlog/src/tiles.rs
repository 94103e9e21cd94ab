//! The tree stored as C2SP tlog-tiles lays it out (<https://c2sp.org/tlog-tiles>):
//! a tile holds up to 256 consecutive hashes of one tile level; level 0 holds
//! leaf hashes, a level-`L + 1` hash is the root of 256 level-`L` hashes (tree
//! height `8 · L`). A full tile never changes; a partial tile is always a
//! prefix of its later self, so a tile read today serves proofs for any past
//! tree size by taking the prefix that size had.
//!
//! This module is arithmetic and planning only: which tiles an append
//! rewrites ([`extend_tree`]), which tiles a proof needs ([`tiles_for_proof`]),
//! and a [`TileSet`] that answers subtree hashes from tiles read at a size.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use crate::merkle::{Frontier, FrontierError, SubtreeSource, TreeHash, TreeHead, root_of_leaves};

/// Tree levels per tile level.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes in a full tile.
pub const TILE_WIDTH: usize = 1 << TILE_HEIGHT;

/// Where a tile sits: its tile level and its index along that level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileCoord {
    /// Tile level (tree height `8 · level`).
    pub level: u8,
    /// Position along the level, from 0.
    pub index: u64,
}

impl TileCoord {
    /// How many hashes this tile holds in a tree of `tree_size` leaves (0 when
    /// the tile does not exist yet at that size).
    pub fn width_at(&self, tree_size: u64) -> usize {
        let hashes_at_level =
            tree_size.checked_shr(u32::from(self.level) * u32::from(TILE_HEIGHT)).unwrap_or(0);
        let first = self.index.saturating_mul(TILE_WIDTH as u64);
        hashes_at_level.saturating_sub(first).min(TILE_WIDTH as u64) as usize
    }
}

/// A tile's content: 1 to 256 hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tile {
    /// Where it sits.
    pub coord: TileCoord,
    /// Its hashes, in order.
    pub hashes: Vec<TreeHash>,
}

/// The tree as stored beside the chain: its size, root and compact range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeState {
    /// The tree's size and root.
    pub head: TreeHead,
    /// The compact range at that size.
    pub frontier: Frontier,
}

impl TreeState {
    /// The empty tree.
    pub fn empty() -> Self {
        TreeState { head: TreeHead::empty(), frontier: Frontier::EMPTY }
    }

    /// Rebuilds a stored state; its frontier must match its size.
    pub fn from_stored(size: u64, root: TreeHash, frontier: Vec<TreeHash>) -> Result<Self, FrontierError> {
        Ok(TreeState { head: TreeHead { size, root }, frontier: Frontier::from_parts(size, frontier)? })
    }
}

/// What an adapter reads under the append lock for the tree: the state and
/// the partial tiles at its right edge ([`edge_tiles`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeSnapshot {
    /// The stored state.
    pub state: TreeState,
    /// The stored tiles at the coordinates [`edge_tiles`] names for its size.
    pub edge: Vec<Tile>,
}

impl TreeSnapshot {
    /// The snapshot of an empty tree.
    pub fn empty() -> Self {
        TreeSnapshot { state: TreeState::empty(), edge: Vec::new() }
    }

    /// The snapshot once `update` (an extension of this snapshot) is
    /// written: its state, and the edge tiles of the new size, each taken
    /// from the update when it touched the tile and from this snapshot when
    /// not (an edge tile the update did not touch kept its coordinates).
    pub fn after(&self, update: &TreeUpdate) -> TreeSnapshot {
        let edge = edge_tiles(update.state.head.size)
            .into_iter()
            .filter_map(|coord| {
                update.tiles.iter().chain(&self.edge).find(|tile| tile.coord == coord).cloned()
            })
            .collect();
        TreeSnapshot { state: update.state.clone(), edge }
    }
}

/// What an append writes for the tree: every tile it created or grew, and the new state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeUpdate {
    /// Tiles to insert or grow (a grown tile's old hashes are a prefix of the new).
    pub tiles: Vec<Tile>,
    /// The state after the append.
    pub state: TreeState,
}

/// Why the tree cannot be extended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// The stored tree does not cover the chain it is asked to extend.
    #[error(
        "the Merkle tree holds {tree_size} entries but the chain holds {chain_size}; run `invario migrate` to build it"
    )]
    Behind {
        /// Leaves in the stored tree.
        tree_size: u64,
        /// Entries in the chain.
        chain_size: u64,
    },
    /// Entries handed to a backfill are not the ones that follow the tree.
    #[error("the entries to add to the tree must follow its size {tree_size} without a gap")]
    NotTheNextEntries {
        /// Leaves in the stored tree.
        tree_size: u64,
    },
    /// A stored edge tile is missing or shorter than the tree size requires.
    #[error("the stored tile at level {}, index {} holds {held} hashes; size {tree_size} needs {needed}", .coord.level, .coord.index)]
    EdgeTile {
        /// The tile.
        coord: TileCoord,
        /// Hashes it holds.
        held: usize,
        /// Hashes the size needs.
        needed: usize,
        /// The tree size.
        tree_size: u64,
    },
}

/// The partial tiles at the right edge of a tree of `tree_size` leaves: the
/// only tiles an append can grow. At most one per tile level.
pub fn edge_tiles(tree_size: u64) -> Vec<TileCoord> {
    let mut coords = Vec::new();
    let mut level: u8 = 0;
    loop {
        let hashes = tree_size.checked_shr(u32::from(level) * u32::from(TILE_HEIGHT)).unwrap_or(0);
        if hashes == 0 {
            return coords;
        }
        if hashes % TILE_WIDTH as u64 != 0 {
            coords.push(TileCoord { level, index: hashes / TILE_WIDTH as u64 });
        }
        level += 1;
    }
}

/// Appends `leaves` (leaf hashes, in order) to the tree in `snapshot`: the
/// tiles to write and the new state. The tree must be as long as the chain
/// it extends (`chain_size` entries before these leaves).
pub fn extend_tree(
    snapshot: &TreeSnapshot,
    chain_size: u64,
    leaves: impl IntoIterator<Item = TreeHash>,
) -> Result<TreeUpdate, TreeError> {
    let old_size = snapshot.state.head.size;
    if old_size != chain_size {
        return Err(TreeError::Behind { tree_size: old_size, chain_size });
    }
    let mut tiles: BTreeMap<TileCoord, Vec<TreeHash>> = BTreeMap::new();
    for coord in edge_tiles(old_size) {
        let needed = coord.width_at(old_size);
        let stored = snapshot.edge.iter().find(|tile| tile.coord == coord);
        let held = stored.map_or(0, |tile| tile.hashes.len());
        let Some(tile) = stored.filter(|_| held >= needed) else {
            return Err(TreeError::EdgeTile { coord, held, needed, tree_size: old_size });
        };
        tiles.insert(coord, tile.hashes[..needed].to_vec());
    }
    let mut frontier = snapshot.state.frontier.clone();
    let mut touched: BTreeSet<TileCoord> = BTreeSet::new();
    for leaf in leaves {
        frontier.push(leaf, |done| {
            if done.level % TILE_HEIGHT != 0 {
                return;
            }
            let coord = TileCoord { level: done.level / TILE_HEIGHT, index: done.index / TILE_WIDTH as u64 };
            let hashes = tiles.entry(coord).or_default();
            // Hashes of a level complete left to right, so each lands at the end of its tile.
            debug_assert_eq!(hashes.len() as u64, done.index % TILE_WIDTH as u64);
            hashes.push(done.hash);
            touched.insert(coord);
        });
    }
    let new_size = frontier.size();
    let tiles = touched
        .into_iter()
        .filter_map(|coord| tiles.remove(&coord).map(|hashes| Tile { coord, hashes }))
        .collect();
    Ok(TreeUpdate {
        tiles,
        state: TreeState { head: TreeHead { size: new_size, root: frontier.root() }, frontier },
    })
}

/// Tiles read for a tree size: answers complete subtree hashes of that size,
/// reading each tile only as far as it reached at that size.
#[derive(Debug, Clone)]
pub struct TileSet {
    tree_size: u64,
    tiles: BTreeMap<TileCoord, Vec<TreeHash>>,
}

impl TileSet {
    /// Keeps, of each tile, the prefix it had at `tree_size`.
    pub fn new(tree_size: u64, tiles: impl IntoIterator<Item = Tile>) -> Self {
        let tiles = tiles
            .into_iter()
            .map(|mut tile| {
                tile.hashes.truncate(tile.coord.width_at(tree_size));
                (tile.coord, tile.hashes)
            })
            .collect();
        TileSet { tree_size, tiles }
    }
}

/// The tile and the run of its hashes that make up the subtree (`level`, `index`).
fn locate(level: u8, index: u64) -> Option<(TileCoord, usize, usize)> {
    let tile_level = level / TILE_HEIGHT;
    let rise = u32::from(level % TILE_HEIGHT);
    let first = index.checked_shl(rise)?;
    let count = 1usize << rise;
    let coord = TileCoord { level: tile_level, index: first / TILE_WIDTH as u64 };
    Some((coord, (first % TILE_WIDTH as u64) as usize, count))
}

impl SubtreeSource for TileSet {
    fn subtree(&self, level: u8, index: u64) -> Option<TreeHash> {
        let end = index.checked_add(1)?.checked_shl(u32::from(level))?;
        if level >= 64 || end > self.tree_size {
            return None;
        }
        let (coord, offset, count) = locate(level, index)?;
        let run = self.tiles.get(&coord)?.get(offset..offset + count)?;
        Some(root_of_leaves(run))
    }
}

/// The tiles whatever `build` reads from a [`SubtreeSource`] lie in: run the
/// proof generation once against a recorder (it never branches on hash
/// values), then fetch exactly those tiles.
pub fn tiles_for_proof<T>(build: impl FnOnce(&dyn SubtreeSource) -> T) -> Vec<TileCoord> {
    struct Recorder(RefCell<BTreeSet<TileCoord>>);
    impl SubtreeSource for Recorder {
        fn subtree(&self, level: u8, index: u64) -> Option<TreeHash> {
            if let Some((coord, _, _)) = locate(level, index) {
                self.0.borrow_mut().insert(coord);
            }
            Some(TreeHash::default())
        }
    }
    let recorder = Recorder(RefCell::new(BTreeSet::new()));
    let _ = build(&recorder);
    recorder.0.into_inner().into_iter().collect()
}

impl SubtreeSource for &dyn SubtreeSource {
    fn subtree(&self, level: u8, index: u64) -> Option<TreeHash> {
        (**self).subtree(level, index)
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::merkle::{
        consistency_proof, empty_root, inclusion_proof, leaf_hash, tree_root, verify_consistency,
        verify_inclusion,
    };

    fn leaves(count: u64) -> Vec<TreeHash> {
        (0..count).map(|i| leaf_hash(&Sha256::digest(i.to_be_bytes()))).collect()
    }

    /// Builds a tree in appends of the given sizes, keeping every tile as an
    /// adapter would (insert, or replace a grown one).
    fn store(appends: &[u64]) -> (BTreeMap<TileCoord, Vec<TreeHash>>, TreeState, Vec<TreeHash>) {
        let mut stored: BTreeMap<TileCoord, Vec<TreeHash>> = BTreeMap::new();
        let mut state = TreeState::empty();
        let mut all = Vec::new();
        for &count in appends {
            let new = leaves(all.len() as u64 + count)[all.len()..].to_vec();
            let edge = edge_tiles(state.head.size)
                .into_iter()
                .map(|coord| Tile { coord, hashes: stored[&coord].clone() })
                .collect();
            let update = extend_tree(
                &TreeSnapshot { state: state.clone(), edge },
                state.head.size,
                new.iter().copied(),
            )
            .unwrap();
            for tile in update.tiles {
                if let Some(old) = stored.get(&tile.coord) {
                    assert!(tile.hashes.starts_with(old), "a tile only grows");
                    assert!(old.len() < TILE_WIDTH, "a full tile never changes");
                }
                assert!(tile.hashes.len() <= TILE_WIDTH);
                stored.insert(tile.coord, tile.hashes);
            }
            all.extend(new);
            state = update.state;
        }
        (stored, state, all)
    }

    proptest::proptest! {
        /// A writer that keeps its snapshot in memory (`after`) extends the
        /// tree exactly as one re-reading the stored edge tiles before every
        /// append: same tiles written, same state, same edge.
        #[test]
        fn a_snapshot_carried_forward_equals_one_read_back(
            appends in proptest::collection::vec(1u64..700, 1..8)
        ) {
            let mut carried = TreeSnapshot::empty();
            let mut size = 0;
            for (done, &count) in appends.iter().enumerate() {
                let (stored, state, _) = store(&appends[..done]);
                let read_back = TreeSnapshot {
                    state,
                    edge: edge_tiles(size).into_iter().map(|coord| Tile { coord, hashes: stored[&coord].clone() }).collect(),
                };
                proptest::prop_assert_eq!(&carried, &read_back);
                let new = leaves(size + count)[size as usize..].to_vec();
                let update = extend_tree(&carried, size, new.iter().copied()).unwrap();
                carried = carried.after(&update);
                size += count;
            }
            let (stored, state, _) = store(&appends);
            proptest::prop_assert_eq!(&carried.state, &state);
            for tile in &carried.edge {
                proptest::prop_assert_eq!(&tile.hashes[..tile.coord.width_at(size)], &stored[&tile.coord][..tile.coord.width_at(size)]);
            }
            proptest::prop_assert_eq!(carried.edge.len(), edge_tiles(size).len());
        }
    }

    #[test]
    fn tile_widths_follow_the_tree_size() {
        let zero = TileCoord { level: 0, index: 0 };
        assert_eq!(zero.width_at(0), 0);
        assert_eq!(zero.width_at(5), 5);
        assert_eq!(zero.width_at(256), 256);
        assert_eq!(zero.width_at(1_000), 256);
        assert_eq!(TileCoord { level: 0, index: 3 }.width_at(1_000), 232);
        assert_eq!(TileCoord { level: 1, index: 0 }.width_at(1_000), 3);
        assert_eq!(TileCoord { level: 1, index: 0 }.width_at(255), 0);
        assert_eq!(TileCoord { level: 7, index: 0 }.width_at(u64::MAX), 255);
        assert_eq!(TileCoord { level: 8, index: 0 }.width_at(u64::MAX), 0);
    }

    #[test]
    fn the_edge_is_the_partial_tile_of_each_level() {
        assert_eq!(edge_tiles(0), vec![]);
        assert_eq!(edge_tiles(256), vec![TileCoord { level: 1, index: 0 }]);
        assert_eq!(edge_tiles(65_536), vec![TileCoord { level: 2, index: 0 }]);
        assert_eq!(
            edge_tiles(70_000),
            vec![
                TileCoord { level: 0, index: 273 },
                TileCoord { level: 1, index: 1 },
                TileCoord { level: 2, index: 0 }
            ]
        );
    }

    #[test]
    fn appended_tiles_give_the_same_root_and_proofs_at_every_past_size() {
        let (stored, state, all) = store(&[1, 254, 1, 1, 300, 7, 65_536 - 564, 3, 1_000]);
        assert_eq!(state.head.size, all.len() as u64);
        assert_eq!(state.head.root, root_of_leaves(&all));
        let tiles: Vec<Tile> = stored.into_iter().map(|(coord, hashes)| Tile { coord, hashes }).collect();
        for size in [1u64, 2, 255, 256, 257, 511, 512, 65_535, 65_536, 65_537, all.len() as u64] {
            let set = TileSet::new(size, tiles.clone());
            let root = root_of_leaves(&all[..size as usize]);
            assert_eq!(tree_root(&set, size).unwrap(), root, "root at {size}");
            for index in [0, size / 2, size - 1] {
                let proof = inclusion_proof(&set, index, size).unwrap();
                assert_eq!(verify_inclusion(index, size, &all[index as usize], &proof, &root), Ok(()));
                let needed = tiles_for_proof(|source| inclusion_proof(&source, index, size));
                let only_needed: Vec<Tile> =
                    tiles.iter().filter(|t| needed.contains(&t.coord)).cloned().collect();
                assert_eq!(
                    inclusion_proof(&TileSet::new(size, only_needed), index, size).unwrap(),
                    proof,
                    "the named tiles suffice"
                );
                assert!(needed.len() <= 2 * 3, "at most two tiles per tile level: {needed:?}");
            }
            for first in [1, size / 3, size - 1] {
                if first == 0 {
                    continue;
                }
                let proof = consistency_proof(&set, first, size).unwrap();
                let first_root = root_of_leaves(&all[..first as usize]);
                assert_eq!(verify_consistency(first, size, &first_root, &root, &proof), Ok(()));
            }
        }
    }

    #[test]
    fn a_tile_set_never_answers_beyond_its_size() {
        let (stored, _, _) = store(&[600]);
        let tiles: Vec<Tile> = stored.into_iter().map(|(coord, hashes)| Tile { coord, hashes }).collect();
        let set = TileSet::new(300, tiles);
        assert!(set.subtree(0, 299).is_some());
        assert!(set.subtree(0, 300).is_none(), "leaf 300 is not in a tree of 300");
        assert!(set.subtree(9, 0).is_none(), "512 leaves are not in a tree of 300");
        assert!(set.subtree(8, 0).is_some());
        assert!(set.subtree(64, 0).is_none());
        assert_eq!(tree_root(&TileSet::new(0, vec![]), 0).unwrap(), empty_root());
    }

    #[test]
    fn a_tree_behind_the_chain_or_missing_its_edge_is_refused() {
        let (stored, state, _) = store(&[300]);
        assert_eq!(
            extend_tree(&TreeSnapshot { state: state.clone(), edge: vec![] }, 300, leaves(1)),
            Err(TreeError::EdgeTile {
                coord: TileCoord { level: 0, index: 1 },
                held: 0,
                needed: 44,
                tree_size: 300
            })
        );
        let edge = vec![Tile {
            coord: TileCoord { level: 0, index: 1 },
            hashes: stored[&TileCoord { level: 0, index: 1 }].clone(),
        }];
        assert_eq!(
            extend_tree(&TreeSnapshot { state, edge }, 301, leaves(1)),
            Err(TreeError::Behind { tree_size: 300, chain_size: 301 })
        );
    }
}
