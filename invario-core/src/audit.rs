//! What a client checks about proofs it was handed, trusting nothing the
//! server computed: it recomputes the entry hash from the receipt's fields,
//! derives the leaf from that, and verifies the audit path against a root it
//! chose to trust. Shared by the CLI and anyone embedding the core.

use serde_json::Value;

use crate::chain::{ChainPosition, EntryHash, LedgerEntry};
use crate::merkle::{
    MAX_PROOF_HASHES, ProofError, TreeHash, entry_leaf_hash, verify_consistency, verify_inclusion,
};
use crate::note::VerifierKey;
use crate::proof::{TlogProof, TlogProofError, VerifiedTlogProof};
use crate::timestamp::Timestamp;
use crate::transaction::Transaction;

/// Why a received proof is refuted (or cannot even be read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// The response is not shaped as documented; `field` names what is wrong.
    #[error("the response's {field} is not valid: {reason}")]
    Malformed {
        /// The field, as the API spells it.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The receipt's fields do not hash to the entry hash it states.
    #[error("the receipt's fields hash to {recomputed}, but it states entry_hash {stated}")]
    EntryHashMismatch {
        /// The hash the receipt states.
        stated: EntryHash,
        /// The hash of its fields.
        recomputed: EntryHash,
    },
    /// The leaf index is not the receipt's sequence number minus one.
    #[error("leaf_index {leaf_index} does not match the receipt's sequence_number {sequence_number}")]
    WrongLeaf {
        /// The stated index.
        leaf_index: u64,
        /// The receipt's sequence number.
        sequence_number: u64,
    },
    /// The response is for another size or root than the one trusted.
    #[error("the response is for tree size {got_size} with root {got_root}, not the trusted {size} / {root}")]
    NotTheTrustedTree {
        /// The trusted size.
        size: u64,
        /// The trusted root.
        root: TreeHash,
        /// The size in the response.
        got_size: u64,
        /// The root in the response.
        got_root: TreeHash,
    },
    /// The proof does not verify.
    #[error("the proof does not verify: {0}")]
    Proof(#[from] ProofError),
    /// A tlog-proof is malformed, or its checkpoint, witnesses or inclusion path do not verify.
    #[error("the tlog-proof is refuted: {0}")]
    TlogProof(#[from] TlogProofError),
}

fn malformed(field: &str, reason: impl Into<String>) -> AuditError {
    AuditError::Malformed { field: field.to_owned(), reason: reason.into() }
}

fn number(value: &Value, field: &str) -> Result<u64, AuditError> {
    value[field].as_u64().ok_or_else(|| malformed(field, "a whole number is required"))
}

fn tree_hash(value: &Value, field: &str) -> Result<TreeHash, AuditError> {
    let text = value[field].as_str().ok_or_else(|| malformed(field, "a hex string is required"))?;
    TreeHash::from_hex(text).map_err(|error| malformed(field, error.to_string()))
}

fn proof_hashes(value: &Value, field: &str) -> Result<Vec<TreeHash>, AuditError> {
    let items =
        value[field].as_array().ok_or_else(|| malformed(field, "a list of hex hashes is required"))?;
    if items.len() > MAX_PROOF_HASHES {
        return Err(AuditError::Proof(ProofError::TooLong(items.len())));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let field = format!("{field}[{index}]");
            let text = item.as_str().ok_or_else(|| malformed(&field, "a hex string is required"))?;
            TreeHash::from_hex(text).map_err(|error| malformed(&field, error.to_string()))
        })
        .collect()
}

/// Rebuilds the entry a receipt describes from its fields alone, recomputing
/// its hash; refuses a receipt whose stated `entry_hash` differs.
pub fn entry_from_receipt(receipt: &Value) -> Result<LedgerEntry, AuditError> {
    const TRANSACTION_FIELDS: [&str; 5] = ["transaction_id", "amount", "currency", "occurred_at", "metadata"];
    let request: serde_json::Map<String, Value> = TRANSACTION_FIELDS
        .iter()
        .filter(|field| !receipt[**field].is_null())
        .map(|field| ((*field).to_owned(), receipt[*field].clone()))
        .collect();
    let transaction = Transaction::from_json(&Value::Object(request))
        .map_err(|errors| malformed("receipt", errors.to_string()))?;
    let sequence_number = number(receipt, "sequence_number")?;
    let hash_field = |field: &str| {
        let text = receipt[field].as_str().ok_or_else(|| malformed(field, "a hex string is required"))?;
        EntryHash::from_hex(text).map_err(|error| malformed(field, error.to_string()))
    };
    let prev_hash = hash_field("prev_hash")?;
    let stated = hash_field("entry_hash")?;
    let recorded_at = receipt["recorded_at"]
        .as_str()
        .ok_or_else(|| malformed("recorded_at", "an RFC 3339 time is required"))
        .and_then(|text| {
            Timestamp::parse_rfc3339(text).map_err(|error| malformed("recorded_at", error.to_string()))
        })?;
    let previous = ChainPosition {
        sequence_number: sequence_number
            .checked_sub(1)
            .ok_or_else(|| malformed("sequence_number", "must be 1 or more"))?,
        entry_hash: prev_hash,
    };
    let entry = LedgerEntry::next(previous, transaction, recorded_at)
        .map_err(|error| malformed("sequence_number", error.to_string()))?;
    if entry.entry_hash != stated {
        return Err(AuditError::EntryHashMismatch { stated, recomputed: entry.entry_hash });
    }
    Ok(entry)
}

/// A tree the client trusts: a size and root it pinned (from a checkpoint
/// whose signature it verified, or a tree head it saved earlier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedTree {
    /// Leaves.
    pub size: u64,
    /// Root.
    pub root: TreeHash,
}

/// What an inclusion check proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenInclusion {
    /// The entry, rebuilt from the receipt.
    pub entry: LedgerEntry,
    /// The tree it is in.
    pub tree: TrustedTree,
}

fn check_trusted(trusted: Option<TrustedTree>, size: u64, root: TreeHash) -> Result<TrustedTree, AuditError> {
    match trusted {
        Some(tree) if tree.size != size || tree.root != root => Err(AuditError::NotTheTrustedTree {
            size: tree.size,
            root: tree.root,
            got_size: size,
            got_root: root,
        }),
        _ => Ok(TrustedTree { size, root }),
    }
}

/// Checks an inclusion proof response (`{"receipt", "leaf_index",
/// "tree_size", "root_hash", "inclusion"}`). Without `trusted`, the response's
/// own size and root are used: that proves the receipt is in *that* tree, and
/// the caller must say the root is unauthenticated.
pub fn check_inclusion(
    response: &Value,
    trusted: Option<TrustedTree>,
) -> Result<ProvenInclusion, AuditError> {
    let entry = entry_from_receipt(&response["receipt"])?;
    let leaf_index = number(response, "leaf_index")?;
    if Some(leaf_index) != entry.sequence_number.checked_sub(1) {
        return Err(AuditError::WrongLeaf { leaf_index, sequence_number: entry.sequence_number });
    }
    let tree = check_trusted(trusted, number(response, "tree_size")?, tree_hash(response, "root_hash")?)?;
    let hashes = proof_hashes(response, "inclusion")?;
    verify_inclusion(leaf_index, tree.size, &entry_leaf_hash(&entry.entry_hash), &hashes, &tree.root)?;
    Ok(ProvenInclusion { entry, tree })
}

/// Checks a consistency proof response (`{"first", "second", "first_root",
/// "second_root", "consistency"}`) against the trees the caller trusts, when given.
pub fn check_consistency(
    response: &Value,
    trusted_first: Option<TrustedTree>,
    trusted_second: Option<TrustedTree>,
) -> Result<(TrustedTree, TrustedTree), AuditError> {
    let first = check_trusted(trusted_first, number(response, "first")?, tree_hash(response, "first_root")?)?;
    let second =
        check_trusted(trusted_second, number(response, "second")?, tree_hash(response, "second_root")?)?;
    let hashes = proof_hashes(response, "consistency")?;
    verify_consistency(first.size, second.size, &first.root, &second.root, &hashes)?;
    Ok((first, second))
}

/// What a verified tlog-proof established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenTlogProof {
    /// The entry, rebuilt from the `extra` receipt with its hash recomputed.
    pub entry: LedgerEntry,
    /// The signed checkpoint that includes it, and the witnesses that cosigned it.
    pub verified: VerifiedTlogProof,
}

/// Checks a `c2sp.org/tlog-proof@v1` for a ledger entry offline: the entry is
/// rebuilt from the receipt in the `extra` line and its hash recomputed (the
/// stated `entry_hash` is never trusted), the index must be its sequence
/// number minus one, the checkpoint must carry `log_key`'s signature and at
/// least `quorum` cosignatures of `witnesses`, and the inclusion path must
/// lead from the recomputed leaf to the checkpoint's root.
pub fn check_tlog_proof(
    proof: &[u8],
    log_key: &VerifierKey,
    witnesses: &[VerifierKey],
    quorum: usize,
) -> Result<ProvenTlogProof, AuditError> {
    check_tlog_proof_with(proof, |proof, leaf| proof.verify(leaf, log_key, witnesses, quorum))
}

/// [`check_tlog_proof`] with the log and the witness quorum taken from a C2SP
/// tlog-policy (the log key from `log_key`, else the policy's log of the
/// checkpoint's origin).
pub fn check_tlog_proof_under_policy(
    proof: &[u8],
    log_key: Option<&VerifierKey>,
    policy: &crate::policy::Policy,
) -> Result<ProvenTlogProof, AuditError> {
    check_tlog_proof_with(proof, |proof, leaf| proof.verify_under_policy(leaf, log_key, policy))
}

fn check_tlog_proof_with(
    proof: &[u8],
    verify: impl FnOnce(&TlogProof, &TreeHash) -> Result<VerifiedTlogProof, TlogProofError>,
) -> Result<ProvenTlogProof, AuditError> {
    let proof = TlogProof::parse(proof)?;
    let extra = proof.extra.as_deref().ok_or_else(|| malformed("extra", "the entry's receipt is missing"))?;
    let receipt: Value = serde_json::from_slice(extra)
        .map_err(|error| malformed("extra", format!("not the entry's receipt as JSON: {error}")))?;
    if !receipt.is_object() {
        return Err(malformed("extra", "not the entry's receipt as a JSON object"));
    }
    let entry = entry_from_receipt(&receipt)?;
    // The fields hash right; the bytes must also be the receipt exactly as the
    // log wrote it, so no edit (an upper-case id, a renamed unused key, a
    // duplicate) passes unnoticed in a receipt kept for years.
    if crate::ledger::tree::tlog_proof_extra(&entry) != extra {
        return Err(malformed(
            "extra",
            "not the entry's receipt exactly as the log wrote it (compact JSON, its fields in order): it was altered",
        ));
    }
    if Some(proof.index) != entry.sequence_number.checked_sub(1) {
        return Err(AuditError::WrongLeaf {
            leaf_index: proof.index,
            sequence_number: entry.sequence_number,
        });
    }
    let verified = verify(&proof, &entry_leaf_hash(&entry.entry_hash))?;
    Ok(ProvenTlogProof { entry, verified })
}
