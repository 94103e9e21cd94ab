//! Serving the Merkle tree: its head, inclusion and consistency proofs read
//! from the stored tiles (each checked before it is handed out), and the
//! backfill that builds the tree for entries from before it existed.

use crate::append::{leaf_edge_from_entries, plan_tree_backfill};
use crate::chain::LedgerEntry;
use crate::checkpoint::Checkpoint;
use crate::integrity::{StoredTransaction, recompute_hash};
use crate::ledger::Ledger;
use crate::merkle::{
    ProofError, SubtreeSource, TreeHash, consistency_proof, entry_leaf_hash, inclusion_proof, tree_root,
    verify_consistency, verify_inclusion,
};
use crate::note::Note;
use crate::ports::{AppendSession, LedgerStore, StoreError};
use crate::proof::TlogProof;
use crate::tiled::{TileResource, encode_bundle};
use crate::tiles::{
    Tile, TileCoord, TileSet, TreeError, TreeState, leaf_edge_coord, tiles_for_proof_beside, unstored_leaves,
};
use crate::transaction::TransactionId;

/// Entries the backfill adds to the tree per database transaction.
pub const TREE_BACKFILL_CHUNK: usize = 10_000;

pub use crate::merkle::TreeHead;

/// Proof that an entry is leaf `leaf_index` of the tree of `tree_size` leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// The entry (its receipt); its recomputed hash is the leaf input.
    pub entry: LedgerEntry,
    /// `sequence_number - 1`.
    pub leaf_index: u64,
    /// The tree size the proof is for.
    pub tree_size: u64,
    /// The root at that size.
    pub root_hash: TreeHash,
    /// The audit path, deepest hash first.
    pub hashes: Vec<TreeHash>,
}

impl InclusionProof {
    /// The response shape (an API boundary): `{"receipt", "leaf_index",
    /// "tree_size", "root_hash", "inclusion": [hex, …]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "receipt": self.entry.receipt_json(),
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "inclusion": self.hashes,
        })
    }
}

/// Proof that the tree of `first` leaves is a prefix of the tree of `second`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// The older size.
    pub first: u64,
    /// The newer size.
    pub second: u64,
    /// The root at `first`.
    pub first_root: TreeHash,
    /// The root at `second`.
    pub second_root: TreeHash,
    /// The proof hashes.
    pub hashes: Vec<TreeHash>,
}

impl ConsistencyProof {
    /// The response shape (an API boundary): `{"first", "second",
    /// "first_root", "second_root", "consistency": [hex, …]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "first": self.first,
            "second": self.second,
            "first_root": self.first_root,
            "second_root": self.second_root,
            "consistency": self.hashes,
        })
    }
}

/// Why a proof was not served.
#[derive(Debug, thiserror::Error)]
pub enum ProofRequestError {
    /// A size or index outside the tree; `parameter` names the one to fix.
    #[error("{message}")]
    OutOfRange {
        /// The request parameter, as the client spells it.
        parameter: &'static str,
        /// What is wrong, with the allowed range.
        message: String,
    },
    /// No entry records this transaction.
    #[error("transaction {0} is not in the ledger")]
    NotFound(TransactionId),
    /// The proof built from storage did not verify: the stored tree or the
    /// entry is damaged. Never answered with the proof.
    #[error("the stored tree failed its own check: {0}")]
    SelfCheck(String),
    /// No signed checkpoint covers the entry yet (a tlog-proof is only ever
    /// made against a signed checkpoint): ask again after the next one.
    #[error("no signed checkpoint covers entry {sequence_number} yet ({}); one is signed every checkpoint interval", match .signed_size { Some(size) => format!("the latest covers {size} entries"), None => "none has been signed".to_owned() })]
    NotYetSigned {
        /// The entry asked about.
        sequence_number: u64,
        /// The size of the latest signed checkpoint, if there is one.
        signed_size: Option<u64>,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn out_of_range(parameter: &'static str, value: u64, min: u64, max: u64) -> ProofRequestError {
    let message = if min > max {
        format!("{parameter} must be at most {max}, and the tree is empty (got {value})")
    } else {
        format!("{parameter} must be between {min} and {max} (got {value})")
    };
    ProofRequestError::OutOfRange { parameter, message }
}

fn self_check(what: &str, error: ProofError) -> ProofRequestError {
    ProofRequestError::SelfCheck(format!("{what}: {error}"))
}

/// Why the tree could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildTreeError {
    /// The stored tree or chain cannot be extended.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The `extra` data of an entry's tlog-proof: its receipt as compact JSON
/// (every field the entry hash covers, and the hash it states). A verifier
/// recomputes the hash from the fields and never trusts the stated one
/// ([`crate::audit::check_tlog_proof`]).
pub fn tlog_proof_extra(entry: &LedgerEntry) -> Vec<u8> {
    entry.receipt_json().to_string().into_bytes()
}

impl<S: LedgerStore> Ledger<S> {
    /// The stored tree's size and root.
    pub async fn tree_head(&self) -> Result<TreeHead, StoreError> {
        let state = self.store().tree_state().await?;
        Ok(state.head)
    }

    /// A resource of the C2SP tlog-tiles read API, as the tree holds it now,
    /// or `None` when the tree has not reached it: a hash tile's first
    /// `width` hashes (a partial tile is a prefix of its later self, so any
    /// width the tile has reached is served), or an entry bundle of `width`
    /// entries, each leaf's data being the entry's 32-byte `entry_hash`.
    pub async fn tile_resource(&self, resource: &TileResource) -> Result<Option<Vec<u8>>, StoreError> {
        match *resource {
            TileResource::Hashes { coord, width } => {
                let serve = |tiles: Vec<Tile>| {
                    tiles
                        .into_iter()
                        .find(|tile| tile.coord == coord && tile.hashes.len() >= width)
                        .map(|tile| crate::merkle::hashes_to_bytes(&tile.hashes[..width]))
                };
                if let Some(bytes) = serve(self.store().tiles(&[coord]).await?) {
                    return Ok(Some(bytes));
                }
                if coord.level > 0 {
                    return Ok(None);
                }
                // The partial level-0 tile is never stored: rebuilt at the size
                // read now (or read again, stored whole, if it filled meanwhile).
                let state = self.store().tree_state().await?;
                Ok(serve(self.tiles_of(&state, &[coord]).await?))
            }
            TileResource::Entries { index, width } => {
                let Some(first) = index.checked_mul(crate::tiles::TILE_WIDTH as u64) else {
                    return Ok(None);
                };
                let entries = self.store().entries_after(first, width).await?;
                let whole = entries.len() == width
                    && entries
                        .iter()
                        .zip(first + 1..)
                        .all(|(entry, expected)| entry.sequence_number == expected);
                if !whole {
                    return Ok(None);
                }
                // Every entry is 32 bytes, well inside a bundle's 65,535-byte frame.
                Ok(encode_bundle(entries.iter().map(|entry| &entry.entry_hash.as_bytes()[..])).ok())
            }
        }
    }

    /// The tree's size, or `requested` when it lies within `min..=` that size.
    async fn tree_at(
        &self,
        parameter: &'static str,
        requested: Option<u64>,
        min: u64,
    ) -> Result<(TreeState, u64), ProofRequestError> {
        let state = self.store().tree_state().await?;
        let size = requested.unwrap_or(state.head.size);
        if size < min || size > state.head.size {
            return Err(out_of_range(parameter, size, min, state.head.size));
        }
        Ok((state, size))
    }

    /// Reads the tiles `build` needs at `size` of the tree in `state` (found
    /// by running it once against a recorder) and runs it on them. At the
    /// current size the frontier answers the right edge, so most proofs read
    /// no partial tile.
    async fn with_tiles<T>(
        &self,
        state: &TreeState,
        size: u64,
        build: impl Fn(&dyn SubtreeSource) -> Result<T, ProofError>,
    ) -> Result<T, ProofRequestError> {
        let frontier = (size == state.head.size).then_some(&state.frontier);
        let coords = tiles_for_proof_beside(frontier, |source| build(source));
        let tiles = self.tiles_of(state, &coords).await?;
        let mut set = TileSet::new(size, tiles);
        if let Some(frontier) = frontier {
            set = set.with_frontier(frontier);
        }
        build(&set).map_err(|error| self_check(&format!("reading the tree at size {size}"), error))
    }

    /// The tiles at `coords` of the tree in `state` (or of an earlier size):
    /// the stored ones, and the partial level-0 tile at `state`'s size, which
    /// is never stored, rebuilt from the last entries' hashes and checked
    /// against the state's frontier (a mismatch is refused as corrupt).
    async fn tiles_of(&self, state: &TreeState, coords: &[TileCoord]) -> Result<Vec<Tile>, StoreError> {
        let size = state.head.size;
        let leaf_edge = leaf_edge_coord(size).filter(|coord| coords.contains(coord));
        let stored_coords: Vec<TileCoord> =
            coords.iter().copied().filter(|coord| Some(*coord) != leaf_edge).collect();
        let mut tiles = self.store().tiles(&stored_coords).await?;
        if leaf_edge.is_some() {
            let leaves = unstored_leaves(size);
            let last = self.store().entry_hashes(size - leaves as u64, leaves).await?;
            tiles.extend(leaf_edge_from_entries(state, &last)?);
        }
        Ok(tiles)
    }

    /// The root at `size` from the tiles; at the current size it must equal
    /// the stored root (tiles and state are written together).
    fn root_at(state: &TreeState, set: &dyn SubtreeSource, size: u64) -> Result<TreeHash, ProofError> {
        let root = tree_root(&set, size)?;
        if size == state.head.size && root != state.head.root {
            return Err(ProofError::Mismatch);
        }
        Ok(root)
    }

    /// The inclusion proof of the entry recording `id`, at `tree_size` (the
    /// current size when `None`).
    pub async fn inclusion_proof_for(
        &self,
        id: TransactionId,
        tree_size: Option<u64>,
    ) -> Result<InclusionProof, ProofRequestError> {
        let entry = self.store().entry_by_id(id).await?.ok_or(ProofRequestError::NotFound(id))?;
        let (state, size) = self.tree_at("tree_size", tree_size, entry.sequence_number).await?;
        self.prove_inclusion(entry, &state, size).await
    }

    /// The inclusion proof of the entry at `sequence_number`, at `tree_size`
    /// (the current size when `None`).
    pub async fn inclusion_proof_at(
        &self,
        sequence_number: u64,
        tree_size: Option<u64>,
    ) -> Result<InclusionProof, ProofRequestError> {
        let (state, size) = self.tree_at("tree_size", tree_size, 1).await?;
        if sequence_number == 0 || sequence_number > size {
            return Err(out_of_range("sequence_number", sequence_number, 1, size));
        }
        let entry = self
            .store()
            .entries_after(sequence_number - 1, 1)
            .await?
            .into_iter()
            .next()
            .filter(|entry| entry.sequence_number == sequence_number)
            .ok_or_else(|| ProofRequestError::SelfCheck(format!("entry {sequence_number} is missing")))?;
        self.prove_inclusion(entry, &state, size).await
    }

    /// A C2SP tlog-proof that the entry recording `id` is in the log, against
    /// the latest signed checkpoint (as served, with the cosignatures gathered
    /// so far), never the unsigned current root. Its `extra` line carries the
    /// entry's receipt ([`tlog_proof_extra`]), from which a verifier recomputes
    /// the leaf.
    pub async fn tlog_proof_for(&self, id: TransactionId) -> Result<TlogProof, ProofRequestError> {
        let entry = self.store().entry_by_id(id).await?.ok_or(ProofRequestError::NotFound(id))?;
        self.tlog_proof_of(entry).await
    }

    /// A C2SP tlog-proof of the entry at `sequence_number` (see [`Self::tlog_proof_for`]).
    pub async fn tlog_proof_at(&self, sequence_number: u64) -> Result<TlogProof, ProofRequestError> {
        let size = self.store().tree_state().await?.head.size;
        if sequence_number == 0 || sequence_number > size {
            return Err(out_of_range("sequence_number", sequence_number, 1, size));
        }
        let entry = self
            .store()
            .entries_after(sequence_number - 1, 1)
            .await?
            .into_iter()
            .next()
            .filter(|entry| entry.sequence_number == sequence_number)
            .ok_or_else(|| ProofRequestError::SelfCheck(format!("entry {sequence_number} is missing")))?;
        self.tlog_proof_of(entry).await
    }

    async fn tlog_proof_of(&self, entry: LedgerEntry) -> Result<TlogProof, ProofRequestError> {
        let signed = self.latest_signed(entry.sequence_number).await?;
        self.tlog_proof_under(entry, &signed).await
    }

    /// C2SP tlog-proofs of `entries` (receipts just written, say) under the
    /// latest signed checkpoint, read once; `NotYetSigned` unless it covers
    /// them all.
    pub async fn tlog_proofs_of(&self, entries: &[LedgerEntry]) -> Result<Vec<TlogProof>, ProofRequestError> {
        let Some(last) = entries.iter().map(|entry| entry.sequence_number).max() else {
            return Ok(Vec::new());
        };
        let signed = self.latest_signed(last).await?;
        let mut proofs = Vec::with_capacity(entries.len());
        for entry in entries {
            proofs.push(self.tlog_proof_under(entry.clone(), &signed).await?);
        }
        Ok(proofs)
    }

    /// The latest signed checkpoint copy, which must cover `sequence_number`.
    async fn latest_signed(&self, sequence_number: u64) -> Result<(String, Checkpoint), ProofRequestError> {
        let not_signed = |signed_size| ProofRequestError::NotYetSigned { sequence_number, signed_size };
        let note = self.store().latest_checkpoint().await?.ok_or_else(|| not_signed(None))?;
        let checkpoint = Note::parse(note.as_bytes())
            .map_err(|error| error.to_string())
            .and_then(|parsed| Checkpoint::parse_text(&parsed.text).map_err(|error| error.to_string()))
            .map_err(|error| ProofRequestError::SelfCheck(format!("the stored checkpoint copy: {error}")))?;
        if checkpoint.head.size < sequence_number {
            return Err(not_signed(Some(checkpoint.head.size)));
        }
        Ok((note, checkpoint))
    }

    async fn tlog_proof_under(
        &self,
        entry: LedgerEntry,
        (note, checkpoint): &(String, Checkpoint),
    ) -> Result<TlogProof, ProofRequestError> {
        let (state, size) =
            self.tree_at("tree_size", Some(checkpoint.head.size), entry.sequence_number).await?;
        let extra = tlog_proof_extra(&entry);
        let proof = self.prove_inclusion(entry, &state, size).await?;
        if proof.root_hash != checkpoint.head.root {
            return Err(ProofRequestError::SelfCheck(format!(
                "the tree of size {size} has root {}, but the signed checkpoint states {}",
                proof.root_hash, checkpoint.head.root
            )));
        }
        Ok(TlogProof {
            extra: Some(extra),
            index: proof.leaf_index,
            inclusion: proof.hashes,
            checkpoint: note.clone(),
        })
    }

    async fn prove_inclusion(
        &self,
        entry: LedgerEntry,
        state: &TreeState,
        size: u64,
    ) -> Result<InclusionProof, ProofRequestError> {
        let leaf_index = entry.sequence_number - 1;
        let (stored_entry, stored_transaction) = StoredTransaction::of(&entry);
        if recompute_hash(&stored_entry, &stored_transaction) != entry.entry_hash {
            return Err(ProofRequestError::SelfCheck(format!(
                "entry {} does not hash to its stored entry_hash",
                entry.sequence_number
            )));
        }
        let (hashes, root_hash) = self
            .with_tiles(state, size, |set| {
                Ok((inclusion_proof(&set, leaf_index, size)?, Self::root_at(state, set, size)?))
            })
            .await?;
        verify_inclusion(leaf_index, size, &entry_leaf_hash(&entry.entry_hash), &hashes, &root_hash)
            .map_err(|error| self_check(&format!("inclusion of entry {}", entry.sequence_number), error))?;
        Ok(InclusionProof { entry, leaf_index, tree_size: size, root_hash, hashes })
    }

    /// The consistency proof from `first` to `second` leaves (the current size
    /// when `None`).
    pub async fn consistency_proof(
        &self,
        first: u64,
        second: Option<u64>,
    ) -> Result<ConsistencyProof, ProofRequestError> {
        let (state, second) = self.tree_at("second", second, 0).await?;
        if first > second {
            return Err(out_of_range("first", first, 0, second));
        }
        let (hashes, first_root, second_root) = self
            .with_tiles(&state, second, |set| {
                let first_root = tree_root(&set, first)?;
                Ok((consistency_proof(&set, first, second)?, first_root, Self::root_at(&state, set, second)?))
            })
            .await?;
        verify_consistency(first, second, &first_root, &second_root, &hashes)
            .map_err(|error| self_check(&format!("consistency from {first} to {second}"), error))?;
        Ok(ConsistencyProof { first, second, first_root, second_root, hashes })
    }

    /// Builds the tree for entries that have none (a ledger from before the
    /// tree existed), [`TREE_BACKFILL_CHUNK`] entries per transaction. Safe to
    /// interrupt and run again: it resumes from the stored tree's size.
    /// `progress` gets (leaves in the tree, entries in the chain). Returns
    /// how many leaves it added.
    pub async fn build_tree(
        &self,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<u64, BuildTreeError> {
        let mut added = 0;
        loop {
            let state = self.store().tree_state().await?;
            let head = self.store().head().await?;
            progress(state.head.size, head.sequence_number);
            if state.head.size >= head.sequence_number {
                return Ok(added);
            }
            let entries = self.store().entries_after(state.head.size, TREE_BACKFILL_CHUNK).await?;
            let session = self.store().begin_append(&[]).await?;
            let plan = plan_tree_backfill(session.snapshot(), &entries)?;
            session.commit(&plan).await?;
            added += entries.len() as u64;
        }
    }
}
