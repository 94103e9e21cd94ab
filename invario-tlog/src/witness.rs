//! Witnesses (C2SP tlog-cosignature v1.0.1 and tlog-witness v1.0.0):
//! cosignatures over checkpoints, the quorum a verifier asks for, and the
//! witness's own rule for `add-checkpoint` — cosign only a checkpoint signed by
//! a trusted log key and consistent with the largest one it cosigned before.
//! Pure: the time and the stored state are arguments; shells persist atomically.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::checkpoint::Checkpoint;
use crate::merkle::{MAX_PROOF_HASHES, TreeHash, TreeHead, verify_consistency};
use crate::note::{ALGORITHM_COSIGNATURE, Note, NoteError, NoteSignature, SignerKey, VerifierKey};

/// The message a witness signs: `cosignature/v1`, the time, then the checkpoint text.
pub fn cosignature_message(checkpoint_text: &str, time: u64) -> String {
    format!("cosignature/v1\ntime {time}\n{checkpoint_text}")
}

/// Why a cosignature or a quorum was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignatureError {
    /// The key is not a cosignature (type 0x04) key.
    #[error("{0} is not a witness (cosignature/v1) key")]
    NotAWitnessKey(String),
    /// A known witness's cosignature does not verify.
    #[error("the cosignature of {0} does not verify")]
    BadCosignature(String),
    /// Fewer trusted witnesses cosigned than the quorum asks.
    #[error("{got} of the required {quorum} witnesses cosigned this checkpoint")]
    NoQuorum {
        /// Witnesses that cosigned.
        got: usize,
        /// Witnesses required.
        quorum: usize,
    },
}

/// Cosigns `checkpoint_text` at `time` (Unix seconds) with a witness key.
pub fn cosign(
    checkpoint_text: &str,
    witness: &SignerKey,
    time: u64,
) -> Result<NoteSignature, CosignatureError> {
    let verifier = witness.verifier();
    if verifier.algorithm() != ALGORITHM_COSIGNATURE {
        return Err(CosignatureError::NotAWitnessKey(verifier.name().to_owned()));
    }
    let mut payload = time.to_be_bytes().to_vec();
    payload.extend_from_slice(&witness.sign(cosignature_message(checkpoint_text, time).as_bytes()));
    Ok(NoteSignature { name: verifier.name().to_owned(), key_id: verifier.id(), payload })
}

/// The witnesses of `trusted` whose cosignature on `note` verifies, with their
/// times. Unknown signers are ignored; a trusted witness whose line fails
/// rejects the note.
pub fn verified_cosigners<'k>(
    note: &Note,
    trusted: &'k [VerifierKey],
) -> Result<Vec<(&'k VerifierKey, u64)>, CosignatureError> {
    let mut cosigners: Vec<(&VerifierKey, u64)> = Vec::new();
    for line in &note.signatures {
        let Some(witness) = trusted.iter().find(|key| {
            key.algorithm() == ALGORITHM_COSIGNATURE && key.name() == line.name && key.id() == line.key_id
        }) else {
            continue;
        };
        let bad = || CosignatureError::BadCosignature(line.name.clone());
        // The payload is the time (8 bytes, big-endian) and an Ed25519 signature (64).
        let (time, signature) = line.payload.split_first_chunk::<8>().ok_or_else(bad)?;
        let time = u64::from_be_bytes(*time);
        if signature.len() != 64
            || !witness.verify(cosignature_message(&note.text, time).as_bytes(), signature)
        {
            return Err(bad());
        }
        if !cosigners.iter().any(|(known, _)| known == &witness) {
            cosigners.push((witness, time));
        }
    }
    Ok(cosigners)
}

/// Requires at least `quorum` of `witnesses` to have cosigned `note`.
pub fn check_quorum(
    note: &Note,
    witnesses: &[VerifierKey],
    quorum: usize,
) -> Result<usize, CosignatureError> {
    let got = verified_cosigners(note, witnesses)?.len();
    if got < quorum {
        return Err(CosignatureError::NoQuorum { got, quorum });
    }
    Ok(got)
}

/// An `add-checkpoint` request body: `old <N>`, the consistency proof from N as
/// base64 lines, an empty line, then the signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size the submitter believes the witness last cosigned.
    pub old_size: u64,
    /// The consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<TreeHash>,
    /// The signed checkpoint note, as sent.
    pub note: Vec<u8>,
}

impl AddCheckpoint {
    /// The request body.
    pub fn to_body(&self) -> Vec<u8> {
        let mut body = format!("old {}\n", self.old_size);
        for hash in &self.proof {
            body.push_str(&BASE64.encode(hash.0));
            body.push('\n');
        }
        body.push('\n');
        let mut bytes = body.into_bytes();
        bytes.extend_from_slice(&self.note);
        bytes
    }

    /// Parses a request body strictly.
    pub fn parse(body: &[u8]) -> Result<Self, WitnessRefusal> {
        let bad = |reason: &str| WitnessRefusal::BadRequest(reason.to_owned());
        let split = body
            .windows(2)
            .position(|pair| pair == b"\n\n")
            .ok_or_else(|| bad("no empty line before the checkpoint"))?;
        let head = std::str::from_utf8(&body[..split + 1]).map_err(|_| bad("the request is not UTF-8"))?;
        let mut lines = head.lines();
        let old_size = lines
            .next()
            .and_then(|line| line.strip_prefix("old "))
            .filter(|size| {
                !size.is_empty()
                    && size.bytes().all(|b| b.is_ascii_digit())
                    && (*size == "0" || !size.starts_with('0'))
            })
            .and_then(|size| size.parse().ok())
            .ok_or_else(|| bad("the first line must be \"old <size>\""))?;
        let proof = lines
            .map(|line| {
                BASE64
                    .decode(line)
                    .ok()
                    .and_then(|bytes| TreeHash::from_slice(&bytes).ok())
                    .ok_or_else(|| bad("a proof line is not a base64 32-byte hash"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if proof.len() > MAX_PROOF_HASHES {
            return Err(bad("the proof is too long"));
        }
        Ok(AddCheckpoint { old_size, proof, note: body[split + 2..].to_vec() })
    }
}

/// What a witness remembers per log: the largest checkpoint it cosigned.
#[deprecated(since = "0.1.0", note = "a witness remembers a `TreeHead`")]
pub type WitnessedTree = TreeHead;

/// Why a witness refused a checkpoint, with the HTTP status tlog-witness gives it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessRefusal {
    /// 400: malformed, or `old` larger than the checkpoint.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 403: no signature from the log's trusted key.
    #[error("the checkpoint is not signed by a trusted key for its origin: {0}")]
    Untrusted(String),
    /// 404: the witness does not witness this origin.
    #[error("unknown origin {0}")]
    UnknownOrigin(String),
    /// 409: `old` is not the size the witness last cosigned (it is this one).
    #[error("the witness last cosigned size {0}")]
    Conflict(u64),
    /// 422: the consistency proof does not verify (or the same size has another root).
    #[error("the consistency proof does not verify: {0}")]
    BadProof(String),
}

impl WitnessRefusal {
    /// The HTTP status tlog-witness assigns.
    pub fn status(&self) -> u16 {
        match self {
            WitnessRefusal::BadRequest(_) => 400,
            WitnessRefusal::Untrusted(_) => 403,
            WitnessRefusal::UnknownOrigin(_) => 404,
            WitnessRefusal::Conflict(_) => 409,
            WitnessRefusal::BadProof(_) => 422,
        }
    }
}

/// What a witness decided to cosign: the new state to persist (atomically,
/// before answering) and the cosignature line to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigned {
    /// The origin the checkpoint is for.
    pub origin: String,
    /// The state to persist for that origin.
    pub state: TreeHead,
    /// The cosignature line (`— <witness> <base64>`), newline included.
    pub line: String,
}

/// The witness's rule for `add-checkpoint`. `logs` are the trusted log keys
/// (one origin each), `latest` the state stored for an origin, `time` now in
/// Unix seconds.
pub fn add_checkpoint(
    request: &AddCheckpoint,
    logs: &[VerifierKey],
    latest: impl FnOnce(&str) -> Option<TreeHead>,
    witness: &SignerKey,
    time: u64,
) -> Result<Cosigned, WitnessRefusal> {
    let note = Note::parse(&request.note).map_err(|error| WitnessRefusal::BadRequest(error.to_string()))?;
    let origin = note.text.lines().next().unwrap_or_default().to_owned();
    let log = logs
        .iter()
        .find(|key| key.name() == origin)
        .ok_or_else(|| WitnessRefusal::UnknownOrigin(origin.clone()))?;
    let (checkpoint, _) = Checkpoint::verify(&request.note, log).map_err(|error| match error {
        crate::checkpoint::CheckpointError::Note(
            NoteError::NoTrustedSignature | NoteError::BadSignature(_),
        ) => WitnessRefusal::Untrusted(error.to_string()),
        other => WitnessRefusal::BadRequest(other.to_string()),
    })?;
    if request.old_size > checkpoint.head.size {
        return Err(WitnessRefusal::BadRequest(format!(
            "old {} is larger than the checkpoint's size {}",
            request.old_size, checkpoint.head.size
        )));
    }
    let known = latest(&origin).unwrap_or(TreeHead::empty());
    if request.old_size != known.size {
        return Err(WitnessRefusal::Conflict(known.size));
    }
    verify_consistency(known.size, checkpoint.head.size, &known.root, &checkpoint.head.root, &request.proof)
        .map_err(|error| WitnessRefusal::BadProof(error.to_string()))?;
    let line = cosign(&note.text, witness, time)
        .map_err(|error| WitnessRefusal::BadRequest(error.to_string()))?
        .line();
    Ok(Cosigned { origin, state: TreeHead { size: checkpoint.head.size, root: checkpoint.head.root }, line })
}

#[cfg(test)]
mod tests;
