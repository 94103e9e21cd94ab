//! C2SP tlog-proof (<https://c2sp.org/tlog-proof>, `c2sp.org/tlog-proof@v1`):
//! an offline-verifiable proof that a leaf is in a log — the leaf's index, its
//! RFC 6962 inclusion path and the signed checkpoint (with whatever witness
//! cosignatures it gathered), plus opaque `extra` data the verifier may use to
//! recompute the leaf but must never trust.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64>            (optional)
//! index <decimal>
//! <base64 hash>             (zero or more, from the leaf's sibling up)
//!
//! <signed checkpoint note, verbatim>
//! ```

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::merkle::{MAX_PROOF_HASHES, ProofError, TreeHash, verify_inclusion};
use crate::note::{MAX_NOTE_BYTES, Note, VerifierKey};
use crate::witness::{CosignatureError, check_quorum};

/// The first line of every proof.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// The file extension the spec recommends, without the dot.
pub const TLOG_PROOF_EXTENSION: &str = "tlog-proof";

/// Largest `extra` payload accepted, in bytes (decoded).
pub const MAX_EXTRA_BYTES: usize = 64 * 1024;

/// Largest proof accepted, in bytes: the header, the largest `extra`, an
/// index, the longest path and the largest note, with room for line breaks.
/// Anything larger is refused before it is read line by line.
pub const MAX_TLOG_PROOF_BYTES: usize =
    128 + MAX_EXTRA_BYTES * 4 / 3 + 32 + MAX_PROOF_HASHES * 46 + MAX_NOTE_BYTES;

/// Why a tlog-proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlogProofError {
    /// The text is not a tlog-proof; `part` names the line or section at fault.
    #[error("not a c2sp.org/tlog-proof@v1: the {part} {reason}")]
    Format {
        /// Which part of the proof: `header`, `extra line`, `index line`, `inclusion proof line 3`, …
        part: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The checkpoint is not signed by the log's key, or is malformed.
    #[error("the checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// Too few trusted witnesses cosigned it, or a trusted witness's line is forged.
    #[error("the checkpoint's witnesses: {0}")]
    Witnesses(#[from] CosignatureError),
    /// The inclusion proof does not lead from the leaf to the checkpoint's root.
    #[error("the inclusion proof: {0}")]
    Inclusion(#[from] ProofError),
    /// The checkpoint does not meet the verifier's tlog-policy.
    #[error("the policy: {0}")]
    Policy(String),
}

fn format_error(part: impl Into<String>, reason: impl Into<String>) -> TlogProofError {
    TlogProofError::Format { part: part.into(), reason: reason.into() }
}

/// A parsed proof. Nothing in it is trusted until [`TlogProof::verify`] says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque application data (never authenticated by the proof itself).
    pub extra: Option<Vec<u8>>,
    /// The zero-based index of the leaf.
    pub index: u64,
    /// The inclusion path, from the leaf's sibling up to the root's child.
    pub inclusion: Vec<TreeHash>,
    /// The signed checkpoint note, byte for byte as the log served it.
    pub checkpoint: String,
}

/// What a verified proof established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTlogProof {
    /// The checkpoint the log signed, which includes the leaf at the proof's index.
    pub checkpoint: Checkpoint,
    /// The trusted witnesses whose cosignature verified, by name.
    pub cosigners: Vec<String>,
}

fn canonical_decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    text.parse().ok().filter(|_| canonical)
}

impl TlogProof {
    /// The proof's text, as served and saved in a `.tlog-proof` file.
    pub fn to_text(&self) -> String {
        let mut text = format!("{TLOG_PROOF_HEADER}\n");
        if let Some(extra) = &self.extra {
            text.push_str("extra ");
            text.push_str(&BASE64.encode(extra));
            text.push('\n');
        }
        text.push_str(&format!("index {}\n", self.index));
        for hash in &self.inclusion {
            text.push_str(&BASE64.encode(hash.0));
            text.push('\n');
        }
        text.push('\n');
        text.push_str(&self.checkpoint);
        text
    }

    /// Parses a proof strictly: the exact header, at most one `extra` line in
    /// canonical base64, a canonical decimal index, at most
    /// [`MAX_PROOF_HASHES`] 32-byte hashes in canonical base64, an empty line,
    /// then the checkpoint (checked when the proof is verified).
    pub fn parse(bytes: &[u8]) -> Result<TlogProof, TlogProofError> {
        if bytes.len() > MAX_TLOG_PROOF_BYTES {
            return Err(format_error(
                "proof",
                format!("is {} bytes, above the {MAX_TLOG_PROOF_BYTES} accepted", bytes.len()),
            ));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| format_error("proof", "is not UTF-8"))?;
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or_else(|| format_error("proof", "has no empty line before the checkpoint"))?;
        let mut lines = head.split('\n').peekable();
        if lines.next() != Some(TLOG_PROOF_HEADER) {
            return Err(format_error("header", format!("must be {TLOG_PROOF_HEADER:?}")));
        }
        let extra = match lines.next_if(|line| line.starts_with("extra")) {
            None => None,
            Some(line) => {
                let encoded = line
                    .strip_prefix("extra ")
                    .ok_or_else(|| format_error("extra line", "must be \"extra <base64>\""))?;
                let extra = BASE64
                    .decode(encoded)
                    .map_err(|_| format_error("extra line", "is not canonical standard base64"))?;
                if extra.len() > MAX_EXTRA_BYTES {
                    return Err(format_error(
                        "extra line",
                        format!("holds more than {MAX_EXTRA_BYTES} bytes"),
                    ));
                }
                Some(extra)
            }
        };
        let index = lines
            .next()
            .and_then(|line| line.strip_prefix("index "))
            .and_then(canonical_decimal)
            .ok_or_else(|| {
                format_error("index line", "must be \"index <decimal>\" with no leading zeroes")
            })?;
        let inclusion = lines
            .enumerate()
            .map(|(number, line)| {
                if number >= MAX_PROOF_HASHES {
                    return Err(format_error(
                        "inclusion proof",
                        format!("has more than {MAX_PROOF_HASHES} hashes"),
                    ));
                }
                BASE64.decode(line).ok().and_then(|bytes| TreeHash::from_slice(&bytes).ok()).ok_or_else(
                    || {
                        format_error(
                            format!("inclusion proof line {}", number + 1),
                            "is not a 32-byte hash in canonical standard base64",
                        )
                    },
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        if checkpoint.is_empty() {
            return Err(format_error("checkpoint", "is missing after the empty line"));
        }
        Ok(TlogProof { extra, index, inclusion, checkpoint: checkpoint.to_owned() })
    }

    /// Verifies the proof for `leaf` (the leaf hash the verifier computed
    /// itself): the checkpoint is signed by `log_key` for its origin, at least
    /// `quorum` of `witnesses` cosigned it (a trusted witness's line that does
    /// not verify refutes it), and the inclusion path leads from `leaf` at
    /// `index` to the checkpoint's root.
    pub fn verify(
        &self,
        leaf: &TreeHash,
        log_key: &VerifierKey,
        witnesses: &[VerifierKey],
        quorum: usize,
    ) -> Result<VerifiedTlogProof, TlogProofError> {
        let (checkpoint, note): (Checkpoint, Note) = Checkpoint::verify(self.checkpoint.as_bytes(), log_key)?;
        check_quorum(&note, witnesses, quorum)?;
        let cosigners = crate::witness::verified_cosigners(&note, witnesses)?
            .into_iter()
            .map(|(witness, _)| witness.name().to_owned())
            .collect();
        verify_inclusion(self.index, checkpoint.head.size, leaf, &self.inclusion, &checkpoint.head.root)?;
        Ok(VerifiedTlogProof { checkpoint, cosigners })
    }

    /// Verifies the proof for `leaf` under a C2SP tlog-policy: the checkpoint
    /// is signed by `log_key`, or when `None` by the policy's log named by the
    /// checkpoint's origin; its cosignatures meet the policy's quorum rule; the
    /// path leads from `leaf` to its root. The cosigners are the policy's
    /// names of the witnesses that cosigned.
    pub fn verify_under_policy(
        &self,
        leaf: &TreeHash,
        log_key: Option<&VerifierKey>,
        policy: &crate::policy::Policy,
    ) -> Result<VerifiedTlogProof, TlogProofError> {
        let note = Note::parse(self.checkpoint.as_bytes()).map_err(CheckpointError::from)?;
        let origin = note.text.lines().next().unwrap_or_default();
        let log_key = match log_key {
            Some(key) => key,
            None => policy.log_for(origin).ok_or_else(|| {
                TlogProofError::Policy(format!("it lists no log with the origin {origin:?}"))
            })?,
        };
        let VerifiedTlogProof { checkpoint, .. } = self.verify(leaf, log_key, &[], 0)?;
        let cosigners =
            policy.check_cosignatures(&note).map_err(|error| TlogProofError::Policy(error.to_string()))?;
        Ok(VerifiedTlogProof { checkpoint, cosigners })
    }
}

#[cfg(test)]
mod tests;
