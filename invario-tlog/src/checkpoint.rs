//! C2SP tlog-checkpoint (<https://c2sp.org/tlog-checkpoint>, v1.0.0): the note
//! text `<origin>\n<tree size>\n<base64 root>\n`, signed by the log's key,
//! whose name is the origin. Invario adds no extension lines.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::merkle::{TreeHash, TreeHead};
use crate::note::{Note, NoteError, SignerKey, VerifierKey};

/// Longest origin accepted, in bytes.
pub const MAX_ORIGIN_BYTES: usize = 256;

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The note itself is refused.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// An origin that is empty, too long, or holds white space or `+`.
    #[error("an origin must be 1 to {max} bytes without white space or '+', e.g. ledger.example.com/payments (got {0:?})", max = MAX_ORIGIN_BYTES)]
    Origin(String),
    /// The text is not exactly origin, size and root.
    #[error("a checkpoint is exactly three lines: origin, tree size in decimal, base64 root ({0})")]
    Body(String),
    /// The checkpoint names another log than the key expected.
    #[error("the checkpoint is for origin {found:?}, not {expected:?}")]
    WrongOrigin {
        /// The origin the verifier key names.
        expected: String,
        /// The origin in the checkpoint.
        found: String,
    },
}

/// The signed tree head (C2SP tlog-checkpoint): this log, at this size, has
/// this root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's unique name (a schema-less URL).
    pub origin: String,
    /// The tree it states.
    pub head: TreeHead,
}

/// The old name of [`Checkpoint`], kept so callers compile.
#[deprecated(since = "0.1.0", note = "renamed `Checkpoint`")]
pub type TreeCheckpoint = Checkpoint;

/// Checks an origin: non-empty, bounded, no white space, no `+` (it is also the key name).
pub fn check_origin(origin: &str) -> Result<(), CheckpointError> {
    if origin.is_empty()
        || origin.len() > MAX_ORIGIN_BYTES
        || origin.contains('+')
        || origin.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(CheckpointError::Origin(origin.to_owned()));
    }
    Ok(())
}

impl Checkpoint {
    /// The note text: `<origin>\n<size>\n<base64 root>\n`.
    pub fn to_text(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.head.size, BASE64.encode(self.head.root.0))
    }

    /// Parses a note text strictly: three lines, a canonical decimal size, a
    /// 32-byte root in standard base64, no extension lines.
    pub fn parse_text(text: &str) -> Result<Self, CheckpointError> {
        let body = |reason: &str| CheckpointError::Body(reason.to_owned());
        let lines: Vec<&str> =
            text.strip_suffix('\n').ok_or_else(|| body("no final newline"))?.split('\n').collect();
        let [origin, size, root] = lines[..] else {
            return Err(body(&format!("{} lines", lines.len())));
        };
        check_origin(origin)?;
        let canonical = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (size == "0" || !size.starts_with('0'));
        let tree_size: u64 = size
            .parse()
            .ok()
            .filter(|_| canonical)
            .ok_or_else(|| body("the size is not a canonical decimal"))?;
        let root = BASE64.decode(root).map_err(|_| body("the root is not standard base64"))?;
        let root_hash = TreeHash::from_slice(&root).map_err(|_| body("the root is not 32 bytes"))?;
        Ok(Checkpoint { origin: origin.to_owned(), head: TreeHead { size: tree_size, root: root_hash } })
    }

    /// Signs the checkpoint with the log's key, whose name must be the origin.
    pub fn sign(&self, signer: &SignerKey) -> Result<Note, CheckpointError> {
        check_origin(&self.origin)?;
        if signer.name() != self.origin {
            return Err(CheckpointError::WrongOrigin {
                expected: signer.name().to_owned(),
                found: self.origin.clone(),
            });
        }
        Ok(Note::sign(&self.to_text(), signer)?)
    }

    /// Parses a signed checkpoint and verifies the log's signature with
    /// `log_key` (whose name is the origin). Other signatures are ignored here.
    pub fn verify(note: &[u8], log_key: &VerifierKey) -> Result<(Checkpoint, Note), CheckpointError> {
        let note = Note::parse(note)?;
        note.verify(std::slice::from_ref(log_key))?;
        let checkpoint = Checkpoint::parse_text(&note.text)?;
        if checkpoint.origin != log_key.name() {
            return Err(CheckpointError::WrongOrigin {
                expected: log_key.name().to_owned(),
                found: checkpoint.origin,
            });
        }
        Ok((checkpoint, note))
    }
}

#[cfg(test)]
mod tests;
