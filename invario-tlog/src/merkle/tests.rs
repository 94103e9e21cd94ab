//! The RFC 6962 reference vectors, every edge case of docs/verifiability.md §1, and
//! adversarial checks: a verifier must refuse every altered proof.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

/// The RFC 6962 reference leaf inputs.
const REFERENCE_LEAVES: [&str; 8] =
    ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];

/// Roots of the first `n` reference leaves, n = 1..=8.
const REFERENCE_ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn reference_leaf_hashes() -> Vec<TreeHash> {
    REFERENCE_LEAVES.iter().map(|input| leaf_hash(&hex::decode(input).unwrap())).collect()
}

/// Invario's own leaves: 32-byte entry hashes.
fn entry_leaves(count: usize) -> Vec<TreeHash> {
    (0..count).map(|i| leaf_hash(&Sha256::digest((i as u64).to_be_bytes()))).collect()
}

/// Every complete subtree of `leaves`, precomputed, so exhaustive checks stay fast.
struct AllSubtrees(HashMap<(u8, u64), TreeHash>);

impl AllSubtrees {
    fn of(leaves: &[TreeHash]) -> Self {
        let mut map = HashMap::new();
        let mut level_hashes = leaves.to_vec();
        let mut level = 0u8;
        while !level_hashes.is_empty() {
            for (index, hash) in level_hashes.iter().enumerate() {
                map.insert((level, index as u64), *hash);
            }
            level_hashes = level_hashes.chunks_exact(2).map(|pair| node_hash(&pair[0], &pair[1])).collect();
            level += 1;
        }
        AllSubtrees(map)
    }
}

impl SubtreeSource for AllSubtrees {
    fn subtree(&self, level: u8, index: u64) -> Option<TreeHash> {
        self.0.get(&(level, index)).copied()
    }
}

/// The RFC's PATH written on slices, as the reference for the generator.
fn naive_path(m: usize, leaves: &[TreeHash]) -> Vec<TreeHash> {
    let n = leaves.len();
    if n <= 1 {
        return vec![];
    }
    let k = split_point(n as u64) as usize;
    if m < k {
        let mut proof = naive_path(m, &leaves[..k]);
        proof.push(root_of_leaves(&leaves[k..]));
        proof
    } else {
        let mut proof = naive_path(m - k, &leaves[k..]);
        proof.push(root_of_leaves(&leaves[..k]));
        proof
    }
}

/// The RFC's SUBPROOF written on slices.
fn naive_subproof(m: usize, leaves: &[TreeHash], complete: bool) -> Vec<TreeHash> {
    let n = leaves.len();
    if m == n {
        return if complete { vec![] } else { vec![root_of_leaves(leaves)] };
    }
    let k = split_point(n as u64) as usize;
    if m <= k {
        let mut proof = naive_subproof(m, &leaves[..k], complete);
        proof.push(root_of_leaves(&leaves[k..]));
        proof
    } else {
        let mut proof = naive_subproof(m - k, &leaves[k..], false);
        proof.push(root_of_leaves(&leaves[..k]));
        proof
    }
}

/// Every way to damage a proof by one step: each hash changed, neighbours
/// swapped, truncated at either end, extended at either end.
fn damaged(proof: &[TreeHash]) -> Vec<Vec<TreeHash>> {
    let mut out = Vec::new();
    for i in 0..proof.len() {
        let mut changed = proof.to_vec();
        changed[i].0[i % 32] ^= 0x01;
        out.push(changed);
        if i + 1 < proof.len() && proof[i] != proof[i + 1] {
            let mut swapped = proof.to_vec();
            swapped.swap(i, i + 1);
            out.push(swapped);
        }
    }
    if !proof.is_empty() {
        out.push(proof[1..].to_vec());
        out.push(proof[..proof.len() - 1].to_vec());
    }
    let extra = TreeHash([0xab; 32]);
    out.push([proof, &[extra][..]].concat());
    out.push([&[extra][..], proof].concat());
    out
}

#[test]
fn the_rfc_6962_reference_roots() {
    let leaves = reference_leaf_hashes();
    for n in 1..=8 {
        assert_eq!(root_of_leaves(&leaves[..n]).to_hex(), REFERENCE_ROOTS[n - 1], "root of {n} leaves");
        let mut frontier = Frontier::EMPTY;
        for leaf in &leaves[..n] {
            frontier.push(*leaf, |_| {});
        }
        assert_eq!(frontier.root().to_hex(), REFERENCE_ROOTS[n - 1], "frontier root of {n} leaves");
        assert_eq!(tree_root(&LeafHashes(&leaves), n as u64).unwrap().to_hex(), REFERENCE_ROOTS[n - 1]);
    }
}

#[test]
fn the_empty_tree_has_the_hash_of_the_empty_string_and_no_inclusion_proof() {
    assert_eq!(empty_root().to_hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(Frontier::EMPTY.root(), empty_root());
    assert_eq!(tree_root(&LeafHashes(&[]), 0).unwrap(), empty_root());
    assert_eq!(
        inclusion_proof(&LeafHashes(&[]), 0, 0),
        Err(ProofError::IndexOutOfRange { index: 0, tree_size: 0 })
    );
    // Size 0 is checked before `tree_size - 1` is computed: no underflow, a refusal.
    assert_eq!(
        verify_inclusion(0, 0, &empty_root(), &[], &empty_root()),
        Err(ProofError::IndexOutOfRange { index: 0, tree_size: 0 })
    );
    assert!(verify_inclusion(u64::MAX, 0, &empty_root(), &[], &empty_root()).is_err());
}

#[test]
fn consistency_from_zero_is_valid_only_with_an_empty_proof() {
    let root = root_of_leaves(&entry_leaves(5));
    assert_eq!(verify_consistency(0, 5, &empty_root(), &root, &[]), Ok(()));
    assert_eq!(verify_consistency(0, 5, &empty_root(), &root, &[root]), Err(ProofError::WrongLength));
    assert_eq!(consistency_proof(&LeafHashes(&entry_leaves(5)), 0, 5), Ok(vec![]));
}

#[test]
fn equal_sizes_are_consistent_only_with_an_empty_proof_and_equal_roots() {
    let root = root_of_leaves(&entry_leaves(5));
    let other = root_of_leaves(&entry_leaves(6)[1..]);
    assert_eq!(verify_consistency(5, 5, &root, &root, &[]), Ok(()));
    assert_eq!(verify_consistency(5, 5, &root, &root, &[root]), Err(ProofError::WrongLength));
    // Two roots for one size: proof of equivocation, never "consistent".
    assert_eq!(verify_consistency(5, 5, &root, &other, &[]), Err(ProofError::Mismatch));
    assert_eq!(consistency_proof(&LeafHashes(&entry_leaves(5)), 5, 5), Ok(vec![]));
}

#[test]
fn a_larger_first_size_is_refused() {
    let root = root_of_leaves(&entry_leaves(5));
    assert_eq!(
        verify_consistency(6, 5, &root, &root, &[root]),
        Err(ProofError::SizesOutOfOrder { first: 6, second: 5 })
    );
    assert_eq!(
        consistency_proof(&LeafHashes(&entry_leaves(5)), 6, 5),
        Err(ProofError::SizesOutOfOrder { first: 6, second: 5 })
    );
}

#[test]
fn proofs_longer_than_64_hashes_are_refused_before_any_work() {
    let long = vec![TreeHash([1; 32]); MAX_PROOF_HASHES + 1];
    let root = TreeHash([2; 32]);
    assert_eq!(verify_inclusion(0, u64::MAX, &root, &long, &root), Err(ProofError::TooLong(65)));
    assert_eq!(verify_consistency(1, u64::MAX, &root, &root, &long), Err(ProofError::TooLong(65)));
}

#[test]
fn hashes_decode_strictly() {
    let good = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d";
    assert_eq!(TreeHash::from_hex(good).unwrap().to_hex(), good);
    assert_eq!(TreeHash::from_hex(&good.to_uppercase()).unwrap().to_hex(), good);
    for bad in
        [&good[1..], &format!("{good}0"), &format!("0x{}", &good[2..]), &format!("{}zz", &good[..62]), ""]
    {
        assert!(TreeHash::from_hex(bad).is_err(), "{bad:?}");
    }
    assert!(TreeHash::from_slice(&[0; 31]).is_err());
    assert!(TreeHash::from_slice(&[0; 33]).is_err());
}

#[test]
fn a_stored_frontier_must_match_its_size() {
    assert!(Frontier::from_parts(5, vec![TreeHash([1; 32]); 2]).is_ok());
    assert_eq!(
        Frontier::from_parts(5, vec![TreeHash([1; 32]); 3]),
        Err(FrontierError { size: 5, expected: 2, got: 3 })
    );
}

#[test]
fn the_frontier_reports_each_completed_subtree_once() {
    let leaves = entry_leaves(300);
    let all = AllSubtrees::of(&leaves);
    let mut frontier = Frontier::EMPTY;
    let mut seen = HashMap::new();
    for leaf in &leaves {
        frontier.push(*leaf, |done| {
            assert!(seen.insert((done.level, done.index), done.hash).is_none(), "{done:?} twice");
        });
    }
    assert_eq!(seen, all.0, "every complete subtree, with its hash, and nothing else");
    let rebuilt = Frontier::from_parts(frontier.size(), frontier.hashes().to_vec()).unwrap();
    assert_eq!(rebuilt.root(), root_of_leaves(&leaves));
}

#[test]
fn every_inclusion_and_consistency_proof_up_to_300_leaves_verifies_against_the_naive_root() {
    let leaves = entry_leaves(300);
    let all = AllSubtrees::of(&leaves);
    let roots: Vec<TreeHash> = (0..=300).map(|n| root_of_leaves(&leaves[..n])).collect();
    for n in 1..=300u64 {
        let root = roots[n as usize];
        assert_eq!(tree_root(&all, n).unwrap(), root);
        for m in 0..n {
            let proof = inclusion_proof(&all, m, n).unwrap();
            assert_eq!(
                verify_inclusion(m, n, &leaves[m as usize], &proof, &root),
                Ok(()),
                "inclusion {m} in {n}"
            );
            if m > 0 {
                let proof = consistency_proof(&all, m, n).unwrap();
                assert_eq!(
                    verify_consistency(m, n, &roots[m as usize], &root, &proof),
                    Ok(()),
                    "consistency {m} → {n}"
                );
            }
        }
    }
}

#[test]
fn generated_proofs_equal_the_rfc_definitions_on_slices() {
    let leaves = entry_leaves(70);
    let all = AllSubtrees::of(&leaves);
    for n in 1..=70usize {
        for m in 0..n {
            assert_eq!(inclusion_proof(&all, m as u64, n as u64).unwrap(), naive_path(m, &leaves[..n]));
            if m > 0 {
                assert_eq!(
                    consistency_proof(&all, m as u64, n as u64).unwrap(),
                    naive_subproof(m, &leaves[..n], true)
                );
            }
        }
    }
}

#[test]
fn every_damaged_proof_and_every_wrong_index_or_size_is_refused_up_to_40_leaves() {
    let leaves = entry_leaves(41);
    let all = AllSubtrees::of(&leaves);
    let roots: Vec<TreeHash> = (0..=41).map(|n| root_of_leaves(&leaves[..n])).collect();
    for n in 1..=40u64 {
        let root = roots[n as usize];
        for m in 0..n {
            let leaf = leaves[m as usize];
            let proof = inclusion_proof(&all, m, n).unwrap();
            for bad in damaged(&proof) {
                assert!(verify_inclusion(m, n, &leaf, &bad, &root).is_err(), "damaged inclusion {m} in {n}");
            }
            // A wrong index against the same root, and a wrong size against that
            // size's own root (the size is bound to its root by the signed
            // checkpoint, not by the proof: leaf 0's path in 3 leaves has the
            // shape of its path in 4, so only the root tells them apart).
            for index in [m + 1, m.wrapping_sub(1), n, u64::MAX] {
                assert!(
                    verify_inclusion(index, n, &leaf, &proof, &root).is_err(),
                    "inclusion {m} in {n} passed as index {index}"
                );
            }
            for size in [n + 1, n - 1, m, 0] {
                assert!(
                    verify_inclusion(m, size, &leaf, &proof, &roots[size as usize]).is_err(),
                    "inclusion {m} in {n} passed as size {size}"
                );
            }
            assert!(verify_inclusion(m, n, &leaves[(m as usize + 1) % 41], &proof, &root).is_err());
            if m > 0 {
                let first = roots[m as usize];
                let proof = consistency_proof(&all, m, n).unwrap();
                for bad in damaged(&proof) {
                    assert!(
                        verify_consistency(m, n, &first, &root, &bad).is_err(),
                        "damaged consistency {m} → {n}"
                    );
                }
                for (a, b) in [(m + 1, n), (m - 1, n), (m, n + 1), (m, n - 1)] {
                    if a < b && (a, b) != (m, n) && a > 0 {
                        assert!(
                            verify_consistency(a, b, &roots[a as usize], &roots[b as usize], &proof).is_err(),
                            "consistency {m} → {n} passed as {a} → {b}"
                        );
                    }
                }
                assert!(verify_consistency(m, n, &root, &first, &proof).is_err(), "roots swapped");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn large_trees_prove_and_refuse_like_small_ones(
        size in 2u64..5_000,
        pick in any::<prop::sample::Index>(),
        other in any::<prop::sample::Index>(),
    ) {
        let leaves = entry_leaves(size as usize);
        let all = AllSubtrees::of(&leaves);
        let root = tree_root(&all, size).unwrap();
        let m = pick.index(size as usize) as u64;
        let proof = inclusion_proof(&all, m, size).unwrap();
        prop_assert_eq!(verify_inclusion(m, size, &leaves[m as usize], &proof, &root), Ok(()));
        for bad in damaged(&proof) {
            prop_assert!(verify_inclusion(m, size, &leaves[m as usize], &bad, &root).is_err());
        }
        let first = 1 + other.index(size as usize - 1) as u64;
        let first_root = tree_root(&all, first).unwrap();
        let proof = consistency_proof(&all, first, size).unwrap();
        prop_assert_eq!(verify_consistency(first, size, &first_root, &root, &proof), Ok(()));
        for bad in damaged(&proof) {
            prop_assert!(verify_consistency(first, size, &first_root, &root, &bad).is_err());
        }
    }
}
