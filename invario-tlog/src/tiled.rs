//! A log read as C2SP tlog-tiles serves it (<https://c2sp.org/tlog-tiles>):
//! the resource paths (`tile/<L>/<N>[.p/<W>]`, `tile/entries/<N>[.p/<W>]`),
//! which resources make up a tree of a given size, the entry-bundle
//! encoding, and the check that a complete set of resources is the tree a
//! signed root commits to.
//!
//! The check authenticates **every** resource, not only those on some path
//! to the root: the leaves are recomputed from the entry bundles, every
//! level-0 tile must equal them, every higher tile must equal the hashes of
//! the full tiles below it, and the root of all the leaves must be the signed
//! one. A reader that verified only the tiles a proof walks through could
//! hand out a hash from a tile nobody checked.

use std::collections::BTreeMap;

use crate::merkle::{TreeHash, TreeHead, hashes_from_bytes, leaf_hash, root_of_leaves};
use crate::tiles::{TILE_HEIGHT, TILE_WIDTH, TileCoord};

/// The highest tile level a path may name (tlog-tiles: 0 to 63).
pub const MAX_TILE_LEVEL: u8 = 63;

/// One resource of a tiled log: a hash tile or an entry bundle, `width`
/// hashes or entries wide (256 for a full one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TileResource {
    /// `tile/<L>/<N>[.p/<W>]`: hashes of one tile level.
    Hashes {
        /// Where the tile sits.
        coord: TileCoord,
        /// Hashes served: 256, or 1 to 255 for a partial tile.
        width: usize,
    },
    /// `tile/entries/<N>[.p/<W>]`: the leaf data the level-0 tile `N` hashes.
    Entries {
        /// The bundle's index (leaves `256 · N` onwards).
        index: u64,
        /// Entries served: 256, or 1 to 255 for a partial bundle.
        width: usize,
    },
}

/// Why a path is not a tlog-tiles resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path:?} is not a tlog-tiles path: {reason}")]
pub struct TilePathError {
    /// The path refused.
    pub path: String,
    /// The rule it breaks.
    pub reason: &'static str,
}

impl TileResource {
    /// The path under the log's prefix, e.g. `tile/0/x001/x234/067.p/5`.
    pub fn path(&self) -> String {
        let (head, index, width) = match self {
            TileResource::Hashes { coord, width } => (coord.level.to_string(), coord.index, *width),
            TileResource::Entries { index, width } => ("entries".to_owned(), *index, *width),
        };
        let mut path = format!("tile/{head}/{}", index_path(index));
        if width < TILE_WIDTH {
            path.push_str(&format!(".p/{width}"));
        }
        path
    }

    /// Reads a path under the log's prefix (`tile/…`), refusing anything the
    /// specification does not allow: leading zeroes, a level above 63, a
    /// partial width outside 1–255, a badly formed index.
    pub fn parse(path: &str) -> Result<TileResource, TilePathError> {
        let refuse = |reason| TilePathError { path: path.to_owned(), reason };
        let rest = path.strip_prefix("tile/").ok_or_else(|| refuse("it must start with tile/"))?;
        let (head, rest) = rest.split_once('/').ok_or_else(|| refuse("it names no tile index"))?;
        let (index_part, width) = match rest.split_once(".p/") {
            Some((index_part, width_text)) => {
                let width = decimal(width_text)
                    .filter(|width| (1..TILE_WIDTH as u64).contains(width))
                    .ok_or_else(|| refuse("a partial width is a decimal from 1 to 255, no leading zeroes"))?;
                (index_part, width as usize)
            }
            None => (rest, TILE_WIDTH),
        };
        let index = parse_index(index_part).ok_or_else(|| {
            refuse("an index is 3-digit elements, all but the last prefixed with x (e.g. x001/x234/067)")
        })?;
        if head == "entries" {
            return Ok(TileResource::Entries { index, width });
        }
        let level = decimal(head)
            .filter(|level| *level <= u64::from(MAX_TILE_LEVEL))
            .ok_or_else(|| refuse("the level is entries or a decimal from 0 to 63, no leading zeroes"))?;
        Ok(TileResource::Hashes { coord: TileCoord { level: level as u8, index }, width })
    }

    /// Whether it is a full (immutable) tile or bundle.
    pub fn is_full(&self) -> bool {
        self.width() == TILE_WIDTH
    }

    /// Hashes or entries it holds.
    pub fn width(&self) -> usize {
        match self {
            TileResource::Hashes { width, .. } | TileResource::Entries { width, .. } => *width,
        }
    }

    /// Whether a tree of `tree_size` leaves has this resource at exactly this width
    /// (a full one, or the partial one at its right edge).
    pub fn exists_at(&self, tree_size: u64) -> bool {
        let coord = match self {
            TileResource::Hashes { coord, .. } => *coord,
            TileResource::Entries { index, .. } => TileCoord { level: 0, index: *index },
        };
        coord.width_at(tree_size) == self.width()
    }
}

/// `x001/x234/067` for 1234067.
fn index_path(index: u64) -> String {
    let mut elements = vec![format!("{:03}", index % 1000)];
    let mut rest = index / 1000;
    while rest > 0 {
        elements.push(format!("x{:03}", rest % 1000));
        rest /= 1000;
    }
    elements.reverse();
    elements.join("/")
}

fn parse_index(text: &str) -> Option<u64> {
    let elements: Vec<&str> = text.split('/').collect();
    let (last, leading) = elements.split_last()?;
    let mut index: u64 = 0;
    for (position, element) in
        leading.iter().map(|element| element.strip_prefix('x')).chain([Some(*last)]).enumerate()
    {
        let element = element?;
        if element.len() != 3 || !element.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        // A leading element of zero would be a second spelling of the same index.
        if position == 0 && !leading.is_empty() && element == "000" {
            return None;
        }
        index = index.checked_mul(1000)?.checked_add(element.parse::<u64>().ok()?)?;
    }
    Some(index)
}

/// A decimal with no sign and no leading zeroes.
fn decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|byte| byte.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// Every resource a tree of `tree_size` leaves is served as: its full tiles
/// and bundles, and one partial of each where the size leaves one. Hash
/// tiles level by level, then the bundles.
pub fn resources_at(tree_size: u64) -> Vec<TileResource> {
    let mut resources = Vec::new();
    let mut level: u8 = 0;
    loop {
        let hashes_at_level = tree_size >> (u32::from(level) * u32::from(TILE_HEIGHT));
        if hashes_at_level == 0 {
            break;
        }
        for (index, width) in widths(hashes_at_level) {
            resources.push(TileResource::Hashes { coord: TileCoord { level, index }, width });
        }
        level += 1;
    }
    resources.extend(widths(tree_size).map(|(index, width)| TileResource::Entries { index, width }));
    resources
}

/// The tiles `count` consecutive hashes fill: `(index, width)`.
fn widths(count: u64) -> impl Iterator<Item = (u64, usize)> {
    let full = count / TILE_WIDTH as u64;
    let partial = (count % TILE_WIDTH as u64) as usize;
    (0..full).map(|index| (index, TILE_WIDTH)).chain((partial > 0).then_some((full, partial)))
}

/// An entry bundle: each entry as a big-endian `u16` length, then its bytes.
pub fn encode_bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>, TiledLogError> {
    let mut bundle = Vec::new();
    for entry in entries {
        let length =
            u16::try_from(entry.len()).map_err(|_| TiledLogError::EntryTooLong { bytes: entry.len() })?;
        bundle.extend_from_slice(&length.to_be_bytes());
        bundle.extend_from_slice(entry);
    }
    Ok(bundle)
}

/// The entries of a bundle, refusing a truncated one or trailing bytes.
pub fn decode_bundle(bundle: &[u8]) -> Option<Vec<&[u8]>> {
    let mut entries = Vec::new();
    let mut rest = bundle;
    while !rest.is_empty() {
        let (length, tail) = rest.split_first_chunk::<2>()?;
        let length = usize::from(u16::from_be_bytes(*length));
        if tail.len() < length {
            return None;
        }
        let (entry, tail) = tail.split_at(length);
        entries.push(entry);
        rest = tail;
    }
    Some(entries)
}

/// Why a set of resources is not the tree a signed root commits to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TiledLogError {
    /// A resource the tree size needs is missing.
    #[error("{path} is missing (a tree of {tree_size} entries needs it)")]
    Missing {
        /// Its path.
        path: String,
        /// The tree size.
        tree_size: u64,
    },
    /// A resource does not hold what it must.
    #[error("{path} does not check: {reason}")]
    Mismatch {
        /// Its path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The leaves hash to another root than the signed one.
    #[error("the {tree_size} entries hash to root {computed}, not the signed root {signed}")]
    Root {
        /// The tree size.
        tree_size: u64,
        /// The root of the entries, hex.
        computed: String,
        /// The signed root, hex.
        signed: String,
    },
    /// An entry longer than a bundle can frame.
    #[error("an entry of {bytes} bytes does not fit a bundle (at most 65,535)")]
    EntryTooLong {
        /// Its length.
        bytes: usize,
    },
}

/// A tiled log checked against its signed head: its leaf hashes, for checks
/// against an earlier checkpoint ([`CheckedTiles::root_at`]).
#[derive(Debug, Clone)]
pub struct CheckedTiles {
    leaves: Vec<TreeHash>,
}

impl CheckedTiles {
    /// The root of the tree's first `size` leaves (`None` beyond its size):
    /// what an earlier checkpoint of a consistent log must have signed.
    pub fn root_at(&self, size: u64) -> Option<TreeHash> {
        let size = usize::try_from(size).ok()?;
        self.leaves.get(..size).map(root_of_leaves)
    }

    /// The leaf hashes, in order.
    pub fn leaves(&self) -> &[TreeHash] {
        &self.leaves
    }
}

/// Checks that `resources` hold every resource [`resources_at`] names for
/// `head.size`, each exactly as the tree whose root `head` signs has it.
/// Resources for other sizes are ignored.
pub fn check_tiled_log(
    head: &TreeHead,
    resources: &BTreeMap<TileResource, Vec<u8>>,
) -> Result<CheckedTiles, TiledLogError> {
    let needed = resources_at(head.size);
    let get = |resource: &TileResource| {
        resources
            .get(resource)
            .ok_or_else(|| TiledLogError::Missing { path: resource.path(), tree_size: head.size })
    };
    let mismatch =
        |resource: &TileResource, reason: String| TiledLogError::Mismatch { path: resource.path(), reason };

    let mut leaves = Vec::with_capacity(usize::try_from(head.size).unwrap_or(0));
    for resource in needed.iter().filter(|resource| matches!(resource, TileResource::Entries { .. })) {
        let entries = decode_bundle(get(resource)?)
            .ok_or_else(|| mismatch(resource, "a length prefix runs past the end of the bundle".into()))?;
        if entries.len() != resource.width() {
            return Err(mismatch(
                resource,
                format!("it holds {} entries, not {}", entries.len(), resource.width()),
            ));
        }
        leaves.extend(entries.into_iter().map(leaf_hash));
    }
    let root = root_of_leaves(&leaves);
    if root != head.root {
        return Err(TiledLogError::Root {
            tree_size: head.size,
            computed: root.to_hex(),
            signed: head.root.to_hex(),
        });
    }

    // The hashes of each level, recomputed from the leaves: level L + 1 holds
    // the roots of the full runs of 256 at level L.
    let mut level_hashes = leaves.clone();
    let mut level: u8 = 0;
    for resource in &needed {
        let TileResource::Hashes { coord, width } = resource else { continue };
        while level < coord.level {
            level_hashes = level_hashes.chunks_exact(TILE_WIDTH).map(root_of_leaves).collect();
            level += 1;
        }
        let stored = hashes_from_bytes(get(resource)?).map_err(|error| {
            mismatch(resource, format!("it is not a whole number of hashes: {}", error.0))
        })?;
        let first = usize::try_from(coord.index).unwrap_or(usize::MAX).saturating_mul(TILE_WIDTH);
        let expected = level_hashes.get(first..first.saturating_add(*width));
        match expected {
            Some(expected) if stored == expected => {}
            Some(_) if stored.len() != *width => {
                return Err(mismatch(resource, format!("it holds {} hashes, not {width}", stored.len())));
            }
            _ => {
                return Err(mismatch(resource, "its hashes are not the ones the entries hash to".into()));
            }
        }
    }
    Ok(CheckedTiles { leaves })
}

#[cfg(test)]
mod tests;
