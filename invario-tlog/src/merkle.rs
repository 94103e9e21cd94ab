//! The Merkle tree of a transparency log, exactly as RFC 9162 §2.1 (identical to RFC
//! 6962 §2.1) defines it: tree hashes, inclusion and consistency proofs, their
//! verification as the RFC writes it, and the compact range ("frontier") that
//! folds new leaves in.
//!
//! What a leaf holds is the log's business: this module hashes leaf inputs
//! as bytes and knows nothing of what they encode.
//!
//! Proof generation reads complete subtree hashes from a [`SubtreeSource`] (the
//! stored tiles, or the leaves themselves in tests), so the same code serves
//! any past tree size.

use std::fmt;

use sha2::{Digest, Sha256};

/// Most hashes a proof may hold: a tree of 2^64 leaves needs no more.
pub const MAX_PROOF_HASHES: usize = 64;

/// A node of the tree: a leaf hash, an interior hash or a root.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TreeHash(pub [u8; 32]);

/// A tree at one size: its size and its root. What a checkpoint states, what
/// a witness remembers, what a stored tree is at, what a verifier expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TreeHead {
    /// Leaves in the tree.
    pub size: u64,
    /// The root at that size.
    pub root: TreeHash,
}

impl TreeHead {
    /// The empty tree: size 0, root `SHA-256("")`.
    pub fn empty() -> Self {
        TreeHead { size: 0, root: empty_root() }
    }
}

/// Why a text or byte string is not a tree hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a tree hash must be 32 bytes: 64 hexadecimal characters (got {0:?})")]
pub struct TreeHashError(pub String);

impl TreeHash {
    /// Parses exactly 64 hex characters (either case); nothing else.
    pub fn from_hex(text: &str) -> Result<Self, TreeHashError> {
        let mut bytes = [0; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| TreeHashError(text.to_owned()))?;
        Ok(TreeHash(bytes))
    }

    /// Takes exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, TreeHashError> {
        <[u8; 32]>::try_from(bytes).map(TreeHash).map_err(|_| TreeHashError(hex::encode(bytes)))
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for TreeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for TreeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TreeHash({})", self.to_hex())
    }
}

impl serde::Serialize for TreeHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

/// Hashes back to back, as tiles and frontiers are stored.
pub fn hashes_to_bytes(hashes: &[TreeHash]) -> Vec<u8> {
    hashes.iter().flat_map(|hash| hash.0).collect()
}

/// Reads hashes stored back to back; refuses a length that is not whole hashes.
pub fn hashes_from_bytes(bytes: &[u8]) -> Result<Vec<TreeHash>, TreeHashError> {
    if bytes.len() % 32 != 0 {
        return Err(TreeHashError(format!("{} bytes are not whole 32-byte hashes", bytes.len())));
    }
    bytes.chunks_exact(32).map(TreeHash::from_slice).collect()
}

/// `MTH({})`: the root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> TreeHash {
    TreeHash(Sha256::digest([]).into())
}

/// `SHA-256(0x00 || input)`: the hash of one leaf.
pub fn leaf_hash(input: &[u8]) -> TreeHash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(input);
    TreeHash(hasher.finalize().into())
}

/// `SHA-256(0x01 || left || right)`: an interior node.
pub fn node_hash(left: &TreeHash, right: &TreeHash) -> TreeHash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left.0);
    hasher.update(right.0);
    TreeHash(hasher.finalize().into())
}

/// The largest power of two strictly below `n` (`n` ≥ 2).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// `MTH` over leaf hashes by the RFC's recursive definition. The reference
/// implementation: O(n), for tests, vectors and small trees.
pub fn root_of_leaves(leaves: &[TreeHash]) -> TreeHash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            node_hash(&root_of_leaves(&leaves[..k]), &root_of_leaves(&leaves[k..]))
        }
    }
}

/// Where proof generation reads the hash of a complete subtree: the subtree of
/// `2^level` leaves starting at leaf `index << level`.
pub trait SubtreeSource {
    /// The hash, or `None` when the source does not hold it.
    fn subtree(&self, level: u8, index: u64) -> Option<TreeHash>;
}

/// Complete subtrees computed from leaf hashes held in memory.
#[derive(Debug, Clone, Copy)]
pub struct LeafHashes<'a>(pub &'a [TreeHash]);

impl SubtreeSource for LeafHashes<'_> {
    fn subtree(&self, level: u8, index: u64) -> Option<TreeHash> {
        let start = usize::try_from(index.checked_shl(u32::from(level))?).ok()?;
        let end = start.checked_add(1usize.checked_shl(u32::from(level))?)?;
        self.0.get(start..end).map(root_of_leaves)
    }
}

/// Why a proof could not be built or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not inside a tree of size {tree_size}")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The tree size.
        tree_size: u64,
    },
    /// The sizes cannot be compared (`first` > `second`, or a proof from 0).
    #[error("no consistency proof exists from size {first} to size {second}")]
    SizesOutOfOrder {
        /// The older size.
        first: u64,
        /// The newer size.
        second: u64,
    },
    /// More hashes than any tree needs.
    #[error("a proof may hold at most {max} hashes (got {0})", max = MAX_PROOF_HASHES)]
    TooLong(usize),
    /// The proof does not lead to the root.
    #[error("the proof does not lead to the expected root")]
    Mismatch,
    /// The proof has the wrong number of hashes for these sizes.
    #[error("the proof has the wrong number of hashes")]
    WrongLength,
    /// The source lacks a hash the proof needs (storage is behind or damaged).
    #[error("the stored tree lacks the subtree at level {level}, index {index}")]
    MissingSubtree {
        /// Height of the subtree.
        level: u8,
        /// Its position at that height.
        index: u64,
    },
}

/// `MTH(D[start : start + size])` from complete subtrees; `start` must be a
/// multiple of the largest power of two not above `size`, as every range in
/// the RFC's recursions is.
fn range_root(source: &impl SubtreeSource, start: u64, size: u64) -> Result<TreeHash, ProofError> {
    if size == 0 {
        return Ok(empty_root());
    }
    if size.is_power_of_two() {
        let level = size.trailing_zeros() as u8;
        debug_assert_eq!(start % size, 0, "complete subtrees are aligned");
        let index = start >> level;
        return source.subtree(level, index).ok_or(ProofError::MissingSubtree { level, index });
    }
    let k = split_point(size);
    let left = range_root(source, start, k)?;
    let right = range_root(source, start + k, size - k)?;
    Ok(node_hash(&left, &right))
}

/// The root of the first `tree_size` leaves, read from `source`.
pub fn tree_root(source: &impl SubtreeSource, tree_size: u64) -> Result<TreeHash, ProofError> {
    range_root(source, 0, tree_size)
}

/// `PATH(index, D[tree_size])`: the inclusion proof of leaf `index` (RFC 9162 §2.1.3.1).
pub fn inclusion_proof(
    source: &impl SubtreeSource,
    index: u64,
    tree_size: u64,
) -> Result<Vec<TreeHash>, ProofError> {
    if index >= tree_size {
        return Err(ProofError::IndexOutOfRange { index, tree_size });
    }
    let mut proof = Vec::new();
    path(source, index, 0, tree_size, &mut proof)?;
    Ok(proof)
}

/// Appends `PATH(m, D[start : start + n])` to `proof` (deepest hash first).
fn path(
    source: &impl SubtreeSource,
    m: u64,
    start: u64,
    n: u64,
    proof: &mut Vec<TreeHash>,
) -> Result<(), ProofError> {
    if n <= 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m < k {
        path(source, m, start, k, proof)?;
        proof.push(range_root(source, start + k, n - k)?);
    } else {
        path(source, m - k, start + k, n - k, proof)?;
        proof.push(range_root(source, start, k)?);
    }
    Ok(())
}

/// `PROOF(first, D[second])`: the consistency proof between two sizes (RFC 9162 §2.1.4.1).
/// Empty when `first` is 0 or equals `second`.
pub fn consistency_proof(
    source: &impl SubtreeSource,
    first: u64,
    second: u64,
) -> Result<Vec<TreeHash>, ProofError> {
    if first > second {
        return Err(ProofError::SizesOutOfOrder { first, second });
    }
    let mut proof = Vec::new();
    if first > 0 && first < second {
        subproof(source, first, 0, second, true, &mut proof)?;
    }
    Ok(proof)
}

/// Appends `SUBPROOF(m, D[start : start + n], b)` to `proof`.
fn subproof(
    source: &impl SubtreeSource,
    m: u64,
    start: u64,
    n: u64,
    complete: bool,
    proof: &mut Vec<TreeHash>,
) -> Result<(), ProofError> {
    if m == n {
        if !complete {
            proof.push(range_root(source, start, n)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(source, m, start, k, complete, proof)?;
        proof.push(range_root(source, start + k, n - k)?);
    } else {
        subproof(source, m - k, start + k, n - k, false, proof)?;
        proof.push(range_root(source, start, k)?);
    }
    Ok(())
}

/// Verifies an inclusion proof exactly as RFC 9162 §2.1.3.2 describes.
pub fn verify_inclusion(
    leaf_index: u64,
    tree_size: u64,
    leaf: &TreeHash,
    proof: &[TreeHash],
    root: &TreeHash,
) -> Result<(), ProofError> {
    if proof.len() > MAX_PROOF_HASHES {
        return Err(ProofError::TooLong(proof.len()));
    }
    // 1. (Checked before `tree_size - 1`, which would underflow at size 0.)
    if leaf_index >= tree_size {
        return Err(ProofError::IndexOutOfRange { index: leaf_index, tree_size });
    }
    // 2.
    let mut fn_ = leaf_index;
    let mut sn = tree_size - 1;
    let mut r = *leaf;
    // 3.
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // 4.
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != *root {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

/// Verifies a consistency proof exactly as RFC 9162 §2.1.4.2 describes, with
/// the edge cases docs/verifiability.md names: from size 0 only an empty proof is
/// valid; between equal sizes only an empty proof with equal roots.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &TreeHash,
    second_root: &TreeHash,
    proof: &[TreeHash],
) -> Result<(), ProofError> {
    if proof.len() > MAX_PROOF_HASHES {
        return Err(ProofError::TooLong(proof.len()));
    }
    if first > second {
        return Err(ProofError::SizesOutOfOrder { first, second });
    }
    if first == second {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if first_root == second_root { Ok(()) } else { Err(ProofError::Mismatch) };
    }
    if first == 0 {
        return if proof.is_empty() { Ok(()) } else { Err(ProofError::WrongLength) };
    }
    // 1.
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    // 2.
    let mut path: Vec<TreeHash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    // 3.
    let mut fn_ = first - 1;
    let mut sn = second - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // 4.
    let mut fr = path[0];
    let mut sr = path[0];
    for c in &path[1..] {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5.
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != *first_root || sr != *second_root {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

/// A complete subtree finished while leaves were appended: `2^level` leaves
/// from leaf `index << level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedSubtree {
    /// Height.
    pub level: u8,
    /// Position at that height.
    pub index: u64,
    /// Its hash.
    pub hash: TreeHash,
}

/// The compact range of a tree: the roots of its maximal complete subtrees,
/// largest (leftmost) first — one per set bit of the size, at most 64. Enough
/// to append leaves and compute the root without reading anything else.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    hashes: Vec<TreeHash>,
}

/// A frontier whose hash count does not match its size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a frontier of size {size} holds {expected} hashes (got {got})")]
pub struct FrontierError {
    /// The tree size.
    pub size: u64,
    /// Hashes it must hold (the size's set bits).
    pub expected: u32,
    /// Hashes given.
    pub got: usize,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub const EMPTY: Frontier = Frontier { size: 0, hashes: Vec::new() };

    /// Rebuilds a stored frontier; refuses a hash count that does not match the size.
    pub fn from_parts(size: u64, hashes: Vec<TreeHash>) -> Result<Self, FrontierError> {
        if hashes.len() != size.count_ones() as usize {
            return Err(FrontierError { size, expected: size.count_ones(), got: hashes.len() });
        }
        Ok(Frontier { size, hashes })
    }

    /// Leaves folded in so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The subtree roots, largest first.
    pub fn hashes(&self) -> &[TreeHash] {
        &self.hashes
    }

    /// Folds in one leaf hash; calls `completed` for every complete subtree it
    /// finishes (the leaf itself at level 0, then each merge above it).
    pub fn push(&mut self, leaf: TreeHash, mut completed: impl FnMut(CompletedSubtree)) {
        let index = self.size;
        completed(CompletedSubtree { level: 0, index, hash: leaf });
        let mut hash = leaf;
        let mut level: u8 = 0;
        // Each trailing one bit of the old size is a subtree of equal height to merge with.
        while (index >> level) & 1 == 1 {
            // An invariant of from_parts/push: one hash per set bit, so the pop succeeds.
            let Some(left) = self.hashes.pop() else { break };
            hash = node_hash(&left, &hash);
            level += 1;
            completed(CompletedSubtree { level, index: index >> level, hash });
        }
        self.hashes.push(hash);
        self.size += 1;
        debug_assert_eq!(self.hashes.len(), self.size.count_ones() as usize);
    }

    /// `MTH` of the leaves folded in so far.
    pub fn root(&self) -> TreeHash {
        let mut hashes = self.hashes.iter().rev();
        let Some(last) = hashes.next() else { return empty_root() };
        hashes.fold(*last, |right, left| node_hash(left, &right))
    }
}

#[cfg(test)]
mod tests;
