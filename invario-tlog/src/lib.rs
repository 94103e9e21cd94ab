//! # invario-tlog
//!
//! Transparency-log primitives, each a published standard followed to the
//! letter so that other people's witnesses, monitors and verifiers can check a
//! log built on them:
//!
//! * [`merkle`] — the RFC 9162 §2.1 tree: hashes, inclusion and consistency
//!   proofs and their verification, the compact range ("frontier");
//! * [`tiles`] — C2SP tlog-tiles arithmetic: which tiles an append rewrites,
//!   which a proof reads, subtree hashes answered from tiles;
//! * [`note`] — C2SP signed-note: Ed25519 signer and verifier keys, notes;
//! * [`checkpoint`] — C2SP tlog-checkpoint: the signed tree head;
//! * [`tiled`] — C2SP tlog-tiles reading: resource paths, entry bundles,
//!   and the check that a served or mirrored log is the tree its signed root
//!   commits to, every tile authenticated;
//! * [`proof`] — C2SP tlog-proof: an offline proof of inclusion under a
//!   signed, cosigned checkpoint;
//! * [`policy`] — C2SP tlog-policy: trusted logs, witnesses and the quorum rule;
//! * [`witness`] — C2SP tlog-cosignature and the tlog-witness add-checkpoint
//!   rule.
//!
//! **Architecture invariant**: this crate knows nothing of ledgers,
//! transactions or storage ports, and performs no I/O — no sockets, files,
//! clock or randomness it was not handed. A leaf is bytes; what a leaf encodes
//! is the caller's business (Invario's ledger hashes each entry's
//! `entry_hash` as a leaf, in `invario-core`). `invario-testkit`'s
//! `tlog_knows_no_ledger` test reads these sources to keep it so.
//!
//! ```
//! use invario_tlog::merkle::{leaf_hash, root_of_leaves, inclusion_proof, verify_inclusion, LeafHashes};
//! let leaves: Vec<_> = [b"a", b"b", b"c"].iter().map(|leaf| leaf_hash(*leaf)).collect();
//! let root = root_of_leaves(&leaves);
//! let proof = inclusion_proof(&LeafHashes(&leaves), 1, 3)?;
//! verify_inclusion(1, 3, &leaves[1], &proof, &root)?;
//! # Ok::<(), invario_tlog::merkle::ProofError>(())
//! ```

#![warn(missing_docs)]

pub mod checkpoint;
pub mod merkle;
pub mod note;
pub mod policy;
pub mod proof;
pub mod tiled;
pub mod tiles;
pub mod witness;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use merkle::{Frontier, ProofError, TreeHash, TreeHead, verify_consistency, verify_inclusion};
pub use note::{Note, NoteError, SignerKey, VerifierKey};
pub use proof::{TlogProof, TlogProofError, VerifiedTlogProof};
pub use tiled::{TileResource, TiledLogError, check_tiled_log};
pub use tiles::{Tile, TileCoord, TreeError, TreeSnapshot, TreeState, TreeUpdate};
