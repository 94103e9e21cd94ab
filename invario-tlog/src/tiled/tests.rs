//! tlog-tiles reading: paths exactly as the specification spells them, the
//! resources of a tree size as its example lists them, and a check that
//! refuses a change to any byte of any resource.

use proptest::prelude::*;
use sha2::{Digest, Sha256};

use super::*;
use crate::tiles::{TreeSnapshot, extend_tree};

/// Leaf data of a tree: 32-byte values, like Invario's entry hashes.
fn entries(count: u64) -> Vec<Vec<u8>> {
    (0..count).map(|n| Sha256::digest(n.to_be_bytes()).to_vec()).collect()
}

/// What a log serves for its first `size` entries, built the way a writer
/// stores its tiles (by `extend_tree`), not by the code under test.
fn serve(entries: &[Vec<u8>], size: u64) -> (TreeHead, BTreeMap<TileResource, Vec<u8>>) {
    let update =
        extend_tree(&TreeSnapshot::empty(), 0, entries.iter().map(|entry| leaf_hash(entry))).unwrap();
    let mut served = BTreeMap::new();
    for resource in resources_at(size) {
        let bytes = match resource {
            TileResource::Hashes { coord, width } => {
                // A partial level-0 tile is never stored: a reader rebuilds it from the entries.
                let tile =
                    update.tiles.iter().chain(&update.leaf_edge).find(|tile| tile.coord == coord).unwrap();
                crate::merkle::hashes_to_bytes(&tile.hashes[..width])
            }
            TileResource::Entries { index, width } => {
                let first = index as usize * TILE_WIDTH;
                encode_bundle(entries[first..first + width].iter().map(Vec::as_slice)).unwrap()
            }
        };
        served.insert(resource, bytes);
    }
    let leaves: Vec<TreeHash> = entries[..size as usize].iter().map(|entry| leaf_hash(entry)).collect();
    (TreeHead { size, root: root_of_leaves(&leaves) }, served)
}

#[test]
fn paths_are_spelled_as_the_specification_spells_them() {
    let tile = |level, index, width| TileResource::Hashes { coord: TileCoord { level, index }, width };
    for (resource, path) in [
        (tile(0, 1_234_067, 256), "tile/0/x001/x234/067"),
        (tile(0, 1_234_067, 5), "tile/0/x001/x234/067.p/5"),
        (tile(1, 0, 256), "tile/1/000"),
        (tile(2, 999, 17), "tile/2/999.p/17"),
        (tile(0, 1000, 256), "tile/0/x001/000"),
        (tile(63, 0, 1), "tile/63/000.p/1"),
        (TileResource::Entries { index: 273, width: 112 }, "tile/entries/273.p/112"),
        (TileResource::Entries { index: 1_000_000, width: 256 }, "tile/entries/x001/x000/000"),
    ] {
        assert_eq!(resource.path(), path);
        assert_eq!(TileResource::parse(path), Ok(resource), "{path}");
    }
}

#[test]
fn a_path_the_specification_does_not_allow_is_refused() {
    for path in [
        "",
        "tile",
        "tile/0",
        "tiles/0/000",
        "tile/00/000",
        "tile/64/000",
        "tile/-1/000",
        "tile/+1/000",
        "tile/0/1",
        "tile/0/0000",
        "tile/0/001/002",
        "tile/0/x000/001",
        "tile/0/x1000/000",
        "tile/0/x001/x2/000",
        "tile/0/000/",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/05",
        "tile/0/000.p/",
        "tile/0/000.p/5/6",
        "tile/entries/000.p/0",
        "tile/entries/x000",
        "tile/entry/000",
        "tile/0/x018/x446/x744/x073/x709/x551/616",
    ] {
        assert!(TileResource::parse(path).is_err(), "{path:?} was accepted");
    }
}

#[test]
fn a_tree_of_70000_is_the_resources_the_specification_lists() {
    let resources = resources_at(70_000);
    let hashes = |level: u8| {
        resources
            .iter()
            .filter_map(|resource| match resource {
                TileResource::Hashes { coord, width } if coord.level == level => Some(*width),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    // "273 full level 0 tiles, one partial level 0 tile of width 112, one full
    // level 1 tile, one partial level 1 tile of width 17, and one partial level
    // 2 tile of width 1."
    assert_eq!(hashes(0), [vec![256; 273], vec![112]].concat());
    assert_eq!(hashes(1), [256, 17]);
    assert_eq!(hashes(2), [1]);
    assert!(hashes(3).is_empty());
    let bundles: Vec<usize> = resources
        .iter()
        .filter_map(|resource| match resource {
            TileResource::Entries { width, .. } => Some(*width),
            TileResource::Hashes { .. } => None,
        })
        .collect();
    assert_eq!(bundles, [vec![256; 273], vec![112]].concat());
    // "a tree of size 256 will be represented by a full level 0 tile and a partial level 1 tile of width 1"
    let tile = |level, width| TileResource::Hashes { coord: TileCoord { level, index: 0 }, width };
    assert_eq!(resources_at(256), [tile(0, 256), tile(1, 1), TileResource::Entries { index: 0, width: 256 }]);
    assert!(resources_at(0).is_empty());
    assert!(resources_at(70_000).iter().all(|resource| resource.exists_at(70_000)));
}

#[test]
fn bundles_frame_each_entry_and_refuse_a_truncation() {
    let bundle = encode_bundle([&b"ab"[..], b"", b"xyz"]).unwrap();
    assert_eq!(bundle, b"\x00\x02ab\x00\x00\x00\x03xyz");
    assert_eq!(decode_bundle(&bundle), Some(vec![&b"ab"[..], b"", b"xyz"]));
    assert_eq!(decode_bundle(&bundle[..bundle.len() - 1]), None);
    assert_eq!(decode_bundle(&bundle[..1]), None);
    assert!(matches!(
        encode_bundle([&vec![0u8; 65_536][..]]),
        Err(TiledLogError::EntryTooLong { bytes: 65_536 })
    ));
}

#[test]
fn the_served_tree_checks_at_every_shape_of_its_edge() {
    let entries = entries(70_000);
    for size in [1, 2, 255, 256, 257, 511, 512, 65_535, 65_536, 70_000] {
        let (head, served) = serve(&entries, size);
        let checked = check_tiled_log(&head, &served).unwrap();
        assert_eq!(checked.leaves().len() as u64, size);
        assert_eq!(checked.root_at(size), Some(head.root));
        assert_eq!(checked.root_at(size + 1), None);
    }
}

/// Flips the first, a middle and the last byte of each of `resources` in
/// turn: each must be refused, and the refusal must name that resource.
fn assert_every_flip_is_refused(
    head: &TreeHead,
    served: &BTreeMap<TileResource, Vec<u8>>,
    resources: impl IntoIterator<Item = TileResource>,
) {
    for resource in resources {
        let length = served[&resource].len();
        for position in [0, length / 2, length - 1] {
            let mut tampered = served.clone();
            tampered.get_mut(&resource).unwrap()[position] ^= 0x01;
            let error = check_tiled_log(head, &tampered).expect_err("a flipped byte was accepted");
            let named = match &error {
                TiledLogError::Mismatch { path, .. } => path == &resource.path(),
                // A changed entry moves the root before any tile is compared.
                TiledLogError::Root { .. } => matches!(resource, TileResource::Entries { .. }),
                _ => false,
            };
            assert!(named, "{}: {error}", resource.path());
        }
    }
}

/// The pitfall the check exists for: every resource is authenticated, so one
/// flipped byte in any one of them — a leaf bundle, a level-0 tile, a tile
/// no proof of a recent entry walks through — is refused, and named.
#[test]
fn one_flipped_byte_in_any_resource_is_refused_and_named() {
    let entries = entries(600);
    let (head, served) = serve(&entries, 600);
    assert_every_flip_is_refused(&head, &served, served.keys().copied());
}

/// At 70,000 entries, the full and partial level-1 tiles and the level-2 tile
/// (every hash of which only a consistency check of old sizes would read).
#[test]
fn one_flipped_byte_in_a_higher_tile_of_a_large_tree_is_refused() {
    let entries = entries(70_000);
    let (head, served) = serve(&entries, 70_000);
    let higher = served
        .keys()
        .copied()
        .filter(|resource| matches!(resource, TileResource::Hashes { coord, .. } if coord.level > 0));
    assert_every_flip_is_refused(&head, &served, higher.collect::<Vec<_>>());
}

#[test]
fn a_missing_truncated_or_extended_resource_is_refused() {
    let entries = entries(600);
    let (head, served) = serve(&entries, 600);
    for resource in served.keys() {
        let mut missing = served.clone();
        missing.remove(resource);
        assert_eq!(
            check_tiled_log(&head, &missing).unwrap_err(),
            TiledLogError::Missing { path: resource.path(), tree_size: 600 }
        );
        let mut truncated = served.clone();
        truncated.get_mut(resource).unwrap().truncate(served[resource].len() - 32);
        assert!(check_tiled_log(&head, &truncated).is_err(), "{} truncated", resource.path());
        let mut extended = served.clone();
        extended.get_mut(resource).unwrap().extend_from_slice(&[0u8; 32]);
        assert!(check_tiled_log(&head, &extended).is_err(), "{} extended", resource.path());
    }
}

#[test]
fn a_signed_root_of_other_entries_or_another_size_is_refused() {
    let entries = entries(600);
    let (head, served) = serve(&entries, 600);
    let other_root = TreeHead { size: 600, root: leaf_hash(b"other") };
    assert!(matches!(check_tiled_log(&other_root, &served), Err(TiledLogError::Root { .. })));
    let (smaller, _) = serve(&entries, 599);
    // The resources of size 600 lack size 599's partial tiles.
    assert!(matches!(check_tiled_log(&smaller, &served), Err(TiledLogError::Missing { .. })));
    assert!(check_tiled_log(&head, &served).is_ok());
}

proptest! {
    #[test]
    fn any_resource_path_reads_back_as_itself(
        level in 0u8..=63,
        index in any::<u64>(),
        width in 1usize..=256,
        entries in any::<bool>(),
    ) {
        let resource = if entries {
            TileResource::Entries { index, width }
        } else {
            TileResource::Hashes { coord: TileCoord { level, index }, width }
        };
        prop_assert_eq!(TileResource::parse(&resource.path()), Ok(resource));
    }

    #[test]
    fn an_earlier_root_is_the_root_the_log_had_at_that_size(size in 1u64..1_200, earlier in 1u64..1_200) {
        let entries = entries(size);
        let (head, served) = serve(&entries, size);
        let checked = check_tiled_log(&head, &served).unwrap();
        if earlier <= size {
            let (then, _) = serve(&entries, earlier);
            prop_assert_eq!(checked.root_at(earlier), Some(then.root));
        } else {
            prop_assert_eq!(checked.root_at(earlier), None);
        }
    }
}
