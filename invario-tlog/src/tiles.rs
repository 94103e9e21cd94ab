//! The tree stored as C2SP tlog-tiles lays it out (<https://c2sp.org/tlog-tiles>):
//! a tile holds up to 256 consecutive hashes of one tile level; level 0 holds
//! leaf hashes, a level-`L + 1` hash is the root of 256 level-`L` hashes (tree
//! height `8 · L`). A full tile never changes; a partial tile is always a
//! prefix of its later self, so a tile read today serves proofs for any past
//! tree size by taking the prefix that size had.
//!
//! A partial level-0 tile is never stored: its hashes are the leaf hashes of
//! the last `size % 256` entries, which the log holds anyway. Readers rebuild
//! it from those leaves and check it against the stored frontier
//! ([`leaf_edge_tile`], [`TreeSnapshot::from_stored`]), so an append writes a
//! level-0 tile only when it fills, and most small appends write no tile at
//! all (a level-1 tile changes only when a level-0 tile fills).
//!
//! This module is arithmetic and planning only: which tiles an append
//! writes ([`extend_tree`]), which tiles a proof needs ([`tiles_for_proof`]),
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

/// The tree as an append extends it: the state and the partial tiles at its
/// right edge ([`edge_tiles`]), the level-0 one rebuilt from the last leaves
/// ([`TreeSnapshot::from_stored`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeSnapshot {
    /// The stored state.
    pub state: TreeState,
    /// The tiles at the coordinates [`edge_tiles`] names for its size.
    pub edge: Vec<Tile>,
}

impl TreeSnapshot {
    /// The snapshot of an empty tree.
    pub fn empty() -> Self {
        TreeSnapshot { state: TreeState::empty(), edge: Vec::new() }
    }

    /// The snapshot of a stored tree: its `state`, the `stored` tiles at the
    /// coordinates [`stored_edge_tiles`] names for its size (others are
    /// ignored), and `last_leaves`, the leaf hashes of its last
    /// [`unstored_leaves`] entries, from which the partial level-0 tile is
    /// rebuilt and checked against the state's frontier ([`leaf_edge_tile`]).
    pub fn from_stored(
        state: TreeState,
        stored: Vec<Tile>,
        last_leaves: &[TreeHash],
    ) -> Result<Self, TreeError> {
        let wanted = stored_edge_tiles(state.head.size);
        let mut edge: Vec<Tile> = stored.into_iter().filter(|tile| wanted.contains(&tile.coord)).collect();
        edge.extend(leaf_edge_tile(&state, last_leaves)?);
        // In the order `edge_tiles` names them, as `after` keeps them.
        edge.sort_by_key(|tile| tile.coord);
        Ok(TreeSnapshot { state, edge })
    }

    /// The snapshot once `update` (an extension of this snapshot) is
    /// written: its state, and the edge tiles of the new size, each taken
    /// from the update when it touched the tile and from this snapshot when
    /// not (an edge tile the update did not touch kept its coordinates).
    pub fn after(&self, update: &TreeUpdate) -> TreeSnapshot {
        let edge = edge_tiles(update.state.head.size)
            .into_iter()
            .filter_map(|coord| {
                update
                    .tiles
                    .iter()
                    .chain(&update.leaf_edge)
                    .chain(&self.edge)
                    .find(|tile| tile.coord == coord)
                    .cloned()
            })
            .collect();
        TreeSnapshot { state: update.state.clone(), edge }
    }
}

/// What an append writes for the tree: every tile to store that it created
/// or grew, and the new state; beside them, the partial level-0 tile it left
/// (never stored: see the module docs), for a writer that keeps its edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeUpdate {
    /// Tiles to insert or grow (a grown tile's old hashes are a prefix of the
    /// new). Never a partial level-0 tile.
    pub tiles: Vec<Tile>,
    /// The partial level-0 tile at the new size, when the append touched one:
    /// not written, kept by [`TreeSnapshot::after`].
    pub leaf_edge: Option<Tile>,
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
    /// Fewer leaves were read than the partial level-0 tile (never stored) holds.
    #[error(
        "the tree of size {tree_size} ends in {needed} entries past its last full tile, but {read} were read"
    )]
    LeafEdgeShort {
        /// The tree size.
        tree_size: u64,
        /// Leaves the partial level-0 tile holds at that size.
        needed: usize,
        /// Leaves read.
        read: usize,
    },
    /// The last leaves do not rebuild the stored frontier: an entry or the
    /// stored tree state was altered.
    #[error(
        "the last {leaves} entries do not match the stored tree of size {tree_size} (its frontier): an entry or the tree state was altered"
    )]
    LeafEdgeMismatch {
        /// The tree size.
        tree_size: u64,
        /// Leaves compared.
        leaves: usize,
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

/// The edge tiles a store holds for a tree of `tree_size` leaves: every
/// [`edge_tiles`] coordinate but level 0's (a partial level-0 tile is never
/// stored).
pub fn stored_edge_tiles(tree_size: u64) -> Vec<TileCoord> {
    edge_tiles(tree_size).into_iter().filter(|coord| coord.level > 0).collect()
}

/// How many entries past the last full level-0 tile a tree of `tree_size`
/// leaves holds: the leaves of its partial level-0 tile, which readers
/// rebuild from the last entries.
pub fn unstored_leaves(tree_size: u64) -> usize {
    (tree_size % TILE_WIDTH as u64) as usize
}

/// Where the partial level-0 tile of a tree of `tree_size` leaves sits
/// (`None` when the size is a multiple of 256: there is none).
pub fn leaf_edge_coord(tree_size: u64) -> Option<TileCoord> {
    (unstored_leaves(tree_size) > 0).then_some(TileCoord { level: 0, index: tree_size / TILE_WIDTH as u64 })
}

/// The partial level-0 tile of the tree in `state` (`None` when its size is
/// a multiple of 256), rebuilt from `last_leaves`, the leaf hashes of its
/// last [`unstored_leaves`] entries, and checked against the stored
/// frontier: the subtrees of those leaves are the frontier's smallest ones.
/// A different count or a mismatch is refused.
pub fn leaf_edge_tile(state: &TreeState, last_leaves: &[TreeHash]) -> Result<Option<Tile>, TreeError> {
    let size = state.head.size;
    let needed = unstored_leaves(size);
    if last_leaves.len() != needed {
        return Err(TreeError::LeafEdgeShort { tree_size: size, needed, read: last_leaves.len() });
    }
    let Some(coord) = leaf_edge_coord(size) else {
        return Ok(None);
    };
    let mut rebuilt = Frontier::EMPTY;
    for leaf in last_leaves {
        rebuilt.push(*leaf, |_| {});
    }
    let stored = state.frontier.hashes();
    let smallest = stored.len().checked_sub(rebuilt.hashes().len()).map(|start| &stored[start..]);
    if smallest != Some(rebuilt.hashes()) {
        return Err(TreeError::LeafEdgeMismatch { tree_size: size, leaves: needed });
    }
    Ok(Some(Tile { coord, hashes: last_leaves.to_vec() }))
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
    let (leaf_edge, tiles): (Vec<Tile>, Vec<Tile>) = touched
        .into_iter()
        .filter_map(|coord| tiles.remove(&coord).map(|hashes| Tile { coord, hashes }))
        .partition(|tile| tile.coord.level == 0 && tile.hashes.len() < TILE_WIDTH);
    Ok(TreeUpdate {
        tiles,
        leaf_edge: leaf_edge.into_iter().next(),
        state: TreeState { head: TreeHead { size: new_size, root: frontier.root() }, frontier },
    })
}

/// Tiles read for a tree size: answers complete subtree hashes of that size,
/// reading each tile only as far as it reached at that size, and the
/// subtrees of the frontier of that size from the frontier when given one.
#[derive(Debug, Clone)]
pub struct TileSet {
    tree_size: u64,
    tiles: BTreeMap<TileCoord, Vec<TreeHash>>,
    frontier: Option<Frontier>,
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
        TileSet { tree_size, tiles, frontier: None }
    }

    /// Also answers the subtrees of `frontier` (the stored compact range)
    /// from it, when it is the frontier of this set's size; otherwise ignored.
    pub fn with_frontier(mut self, frontier: &Frontier) -> Self {
        if frontier.size() == self.tree_size {
            self.frontier = Some(frontier.clone());
        }
        self
    }
}

/// The root of the frontier's subtree at (`level`, `index`), if it is one of
/// them: the frontier of size `n` holds, for each set bit `k` of `n`, the
/// subtree of height `k` that starts where the larger ones end.
pub fn frontier_subtree(frontier: &Frontier, level: u8, index: u64) -> Option<TreeHash> {
    let size = frontier.size();
    let mut start: u64 = 0;
    let mut hashes = frontier.hashes().iter();
    for height in (0..64u8).rev() {
        if size >> height & 1 == 0 {
            continue;
        }
        let hash = hashes.next()?;
        if height == level && start >> height == index {
            return Some(*hash);
        }
        start += 1 << height;
    }
    None
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
        if let Some(hash) =
            self.frontier.as_ref().and_then(|frontier| frontier_subtree(frontier, level, index))
        {
            return Some(hash);
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
    tiles_for_proof_beside(None, build)
}

/// [`tiles_for_proof`] for a [`TileSet`] that will also hold `frontier`
/// ([`TileSet::with_frontier`], the frontier of the size `build` reads at):
/// the subtrees the frontier answers need no tile. A proof at the tree's
/// current size then reads its right edge from the frontier, never from the
/// partial tiles there.
pub fn tiles_for_proof_beside<T>(
    frontier: Option<&Frontier>,
    build: impl FnOnce(&dyn SubtreeSource) -> T,
) -> Vec<TileCoord> {
    struct Recorder<'a> {
        frontier: Option<&'a Frontier>,
        coords: RefCell<BTreeSet<TileCoord>>,
    }
    impl SubtreeSource for Recorder<'_> {
        fn subtree(&self, level: u8, index: u64) -> Option<TreeHash> {
            let in_frontier = self.frontier.and_then(|frontier| frontier_subtree(frontier, level, index));
            if in_frontier.is_none()
                && let Some((coord, _, _)) = locate(level, index)
            {
                self.coords.borrow_mut().insert(coord);
            }
            Some(TreeHash::default())
        }
    }
    let recorder = Recorder { frontier, coords: RefCell::new(BTreeSet::new()) };
    let _ = build(&recorder);
    recorder.coords.into_inner().into_iter().collect()
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

    /// What a reader rebuilds of the stored tree: the stored edge tiles and
    /// the partial level-0 tile from the last leaves.
    fn read_back(
        stored: &BTreeMap<TileCoord, Vec<TreeHash>>,
        state: &TreeState,
        all: &[TreeHash],
    ) -> TreeSnapshot {
        let size = state.head.size;
        let edge = stored_edge_tiles(size)
            .into_iter()
            .map(|coord| Tile { coord, hashes: stored[&coord].clone() })
            .collect();
        TreeSnapshot::from_stored(state.clone(), edge, &all[all.len() - unstored_leaves(size)..]).unwrap()
    }

    /// Builds a tree in appends of the given sizes, keeping every tile as an
    /// adapter would (insert, or replace a grown one).
    fn store(appends: &[u64]) -> (BTreeMap<TileCoord, Vec<TreeHash>>, TreeState, Vec<TreeHash>) {
        let mut stored: BTreeMap<TileCoord, Vec<TreeHash>> = BTreeMap::new();
        let mut state = TreeState::empty();
        let mut all = Vec::new();
        for &count in appends {
            let new = leaves(all.len() as u64 + count)[all.len()..].to_vec();
            let update =
                extend_tree(&read_back(&stored, &state, &all), state.head.size, new.iter().copied()).unwrap();
            for tile in update.tiles {
                if let Some(old) = stored.get(&tile.coord) {
                    assert!(tile.hashes.starts_with(old), "a tile only grows");
                    assert!(old.len() < TILE_WIDTH, "a full tile never changes");
                }
                assert!(tile.hashes.len() <= TILE_WIDTH);
                assert!(
                    tile.coord.level > 0 || tile.hashes.len() == TILE_WIDTH,
                    "a partial level-0 tile is never written: {:?}",
                    tile.coord
                );
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
                let (stored, state, all) = store(&appends[..done]);
                proptest::prop_assert_eq!(&carried, &read_back(&stored, &state, &all));
                let new = leaves(size + count)[size as usize..].to_vec();
                let update = extend_tree(&carried, size, new.iter().copied()).unwrap();
                carried = carried.after(&update);
                size += count;
            }
            let (stored, state, all) = store(&appends);
            proptest::prop_assert_eq!(&carried, &read_back(&stored, &state, &all));
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
        assert_eq!(leaf_edge_coord(0), None);
        assert_eq!(leaf_edge_coord(256), None);
        assert_eq!(leaf_edge_coord(70_000), Some(TileCoord { level: 0, index: 273 }));
        assert_eq!(stored_edge_tiles(70_000), edge_tiles(70_000)[1..].to_vec());
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
        let mut tiles: Vec<Tile> = stored.into_iter().map(|(coord, hashes)| Tile { coord, hashes }).collect();
        // The partial level-0 tile, as a reader rebuilds it from the last entries.
        let last = &all[all.len() - unstored_leaves(state.head.size)..];
        tiles.extend(leaf_edge_tile(&state, last).unwrap());
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
    fn the_frontier_answers_the_right_edge_so_proofs_at_the_current_size_skip_its_tiles() {
        let (stored, state, all) = store(&[65_536 + 300]);
        let size = state.head.size;
        let root = root_of_leaves(&all);
        // Only the stored tiles: neither the partial level-0 tile nor any rebuilt one.
        let stored: Vec<Tile> = stored.into_iter().map(|(coord, hashes)| Tile { coord, hashes }).collect();
        let edge_leaf_tile = TileCoord { level: 0, index: size / TILE_WIDTH as u64 };
        for index in [0, 1, 255, 256, 40_000, 65_535, 65_536, 65_791] {
            let needed =
                tiles_for_proof_beside(Some(&state.frontier), |source| inclusion_proof(&source, index, size));
            assert!(!needed.contains(&edge_leaf_tile), "leaf {index}: {needed:?}");
            let set = TileSet::new(size, stored.clone()).with_frontier(&state.frontier);
            let proof = inclusion_proof(&set, index, size).unwrap();
            assert_eq!(verify_inclusion(index, size, &all[index as usize], &proof, &root), Ok(()));
        }
        for first in [1, 300, 65_536, 65_791] {
            let needed = tiles_for_proof_beside(Some(&state.frontier), |source| {
                consistency_proof(&source, first, size)
            });
            assert!(!needed.contains(&edge_leaf_tile), "from {first}: {needed:?}");
            let set = TileSet::new(size, stored.clone()).with_frontier(&state.frontier);
            let proof = consistency_proof(&set, first, size).unwrap();
            let first_root = root_of_leaves(&all[..first as usize]);
            assert_eq!(verify_consistency(first, size, &first_root, &root, &proof), Ok(()));
        }
        assert_eq!(
            tree_root(&TileSet::new(size, vec![]).with_frontier(&state.frontier), size).unwrap(),
            root
        );
        // A leaf inside the partial tile needs its neighbours: that tile is named.
        let inside =
            tiles_for_proof_beside(Some(&state.frontier), |source| inclusion_proof(&source, size - 5, size));
        assert!(inside.contains(&edge_leaf_tile));
        // A frontier of another size is not used: 65,835 leaves end in a subtree of
        // two at leaves 65,832–65,833, complete at this size too but not this frontier's.
        let (_, other, _) = store(&[65_536 + 299]);
        assert!(frontier_subtree(&other.frontier, 1, 32_916).is_some());
        assert!(TileSet::new(size, vec![]).with_frontier(&other.frontier).subtree(1, 32_916).is_none());
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
        let (stored, state, all) = store(&[300]);
        assert_eq!(
            extend_tree(&TreeSnapshot { state: state.clone(), edge: vec![] }, 300, leaves(1)),
            Err(TreeError::EdgeTile {
                coord: TileCoord { level: 0, index: 1 },
                held: 0,
                needed: 44,
                tree_size: 300
            })
        );
        assert_eq!(
            extend_tree(&read_back(&stored, &state, &all), 301, leaves(1)),
            Err(TreeError::Behind { tree_size: 300, chain_size: 301 })
        );
    }

    #[test]
    fn small_appends_write_no_tile_until_one_fills() {
        let (stored, state, all) = store(&[300]);
        assert_eq!(
            stored.keys().copied().collect::<Vec<_>>(),
            vec![TileCoord { level: 0, index: 0 }, TileCoord { level: 1, index: 0 }]
        );
        let snapshot = read_back(&stored, &state, &all);
        let update = extend_tree(&snapshot, 300, leaves(301)[300..].iter().copied()).unwrap();
        assert!(
            update.tiles.is_empty(),
            "one more leaf in a partial tile writes nothing: {:?}",
            update.tiles
        );
        assert_eq!(update.leaf_edge.as_ref().map(|tile| tile.hashes.len()), Some(45));
        // The 512th leaf fills level-0 tile 1 and grows level-1 tile 0: both written, no edge left at level 0.
        let update = extend_tree(&snapshot, 300, leaves(512)[300..].iter().copied()).unwrap();
        let written: Vec<(TileCoord, usize)> =
            update.tiles.iter().map(|t| (t.coord, t.hashes.len())).collect();
        assert_eq!(
            written,
            vec![(TileCoord { level: 0, index: 1 }, 256), (TileCoord { level: 1, index: 0 }, 2)]
        );
        assert_eq!(update.leaf_edge, None);
    }

    #[test]
    fn the_rebuilt_leaf_tile_must_match_the_stored_frontier() {
        let (_, state, all) = store(&[300]);
        let last = &all[256..];
        let tile = leaf_edge_tile(&state, last).unwrap().unwrap();
        assert_eq!((tile.coord, tile.hashes.as_slice()), (TileCoord { level: 0, index: 1 }, last));
        let mismatch = Err(TreeError::LeafEdgeMismatch { tree_size: 300, leaves: 44 });
        let mut altered = last.to_vec();
        altered[17].0[0] ^= 1;
        assert_eq!(leaf_edge_tile(&state, &altered), mismatch, "an altered leaf");
        let mut reordered = last.to_vec();
        reordered.swap(3, 4);
        assert_eq!(leaf_edge_tile(&state, &reordered), mismatch, "two leaves swapped");
        let shifted = &all[255..299];
        assert_eq!(leaf_edge_tile(&state, shifted), mismatch, "the right count from the wrong place");
        assert_eq!(
            leaf_edge_tile(&state, &last[1..]),
            Err(TreeError::LeafEdgeShort { tree_size: 300, needed: 44, read: 43 }),
            "one missing"
        );
        assert_eq!(
            leaf_edge_tile(&state, &all[255..]),
            Err(TreeError::LeafEdgeShort { tree_size: 300, needed: 44, read: 45 }),
            "one too many"
        );
        let (_, full, _) = store(&[512]);
        assert_eq!(leaf_edge_tile(&full, &[]), Ok(None), "no partial tile at a multiple of 256");
        assert_eq!(
            leaf_edge_tile(&full, &all[..1]),
            Err(TreeError::LeafEdgeShort { tree_size: 512, needed: 0, read: 1 })
        );
        // A stored tile from an older version at a level-0 edge coordinate is ignored: the leaves rule.
        let stale = Tile { coord: TileCoord { level: 0, index: 1 }, hashes: all[256..260].to_vec() };
        let snapshot = TreeSnapshot::from_stored(state.clone(), vec![stale], last).unwrap();
        assert_eq!(snapshot.edge.iter().find(|t| t.coord.level == 0).map(|t| t.hashes.len()), Some(44));
    }
}
