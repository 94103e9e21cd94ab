//! C2SP signed notes (<https://c2sp.org/signed-note>, v1.0.0): UTF-8 text
//! ending in a newline, one empty line, then signature lines
//! `— <key name> <base64(key ID || signature)>`. Ed25519 keys, their verifier
//! keys (`<name>+<key ID hex>+<base64(0x01 || public key)>`) and private keys
//! (`PRIVATE+KEY+<name>+<key ID hex>+<base64(0x01 || seed)>`).
//!
//! Verification is strict (`verify_strict`: no malleable signatures, no
//! small-order keys). Signature lines from unknown keys are ignored; a known
//! key whose signature fails rejects the note; a note no known key verifies is
//! rejected.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Largest note accepted, in bytes: far above any checkpoint with its cosignatures.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// Most signature lines accepted (the spec asks for at least 16).
pub const MAX_SIGNATURES: usize = 128;
/// Longest key name accepted, in bytes.
pub const MAX_KEY_NAME_BYTES: usize = 256;

const _: () = assert!(MAX_SIGNATURES >= 16);

/// The signature algorithm byte of an Ed25519 note key.
pub const ALGORITHM_ED25519: u8 = 0x01;
/// The signature algorithm byte of a tlog-cosignature/v1 (witness) key.
pub const ALGORITHM_COSIGNATURE: u8 = 0x04;

/// The em dash and space that open every signature line.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Why a key, a note or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// A key name that is empty, too long, or holds `+` or white space.
    #[error("a key name must be 1 to {max} bytes without '+' or white space (got {0:?})", max = MAX_KEY_NAME_BYTES)]
    KeyName(String),
    /// A verifier or private key text that does not parse.
    #[error("not a {kind} key: {reason}")]
    KeyText {
        /// "verifier" or "private".
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A note above [`MAX_NOTE_BYTES`].
    #[error("a note may be at most {max} bytes (got {0})", max = MAX_NOTE_BYTES)]
    TooLarge(usize),
    /// Not UTF-8, or a control character other than newline.
    #[error("a note must be UTF-8 text without control characters other than newline")]
    Characters,
    /// The text does not end in a newline, or no empty line separates the signatures.
    #[error("a note is text ending in a newline, an empty line, then signature lines")]
    Shape,
    /// A signature line that is not `— <name> <base64>`.
    #[error("signature line {0} is not \"— <key name> <base64 signature>\"")]
    SignatureLine(usize),
    /// More than [`MAX_SIGNATURES`] signature lines.
    #[error("a note may carry at most {max} signatures (got {0})", max = MAX_SIGNATURES)]
    TooManySignatures(usize),
    /// A known key's signature does not verify.
    #[error("the signature of {0} does not verify")]
    BadSignature(String),
    /// No signature from a known key.
    #[error("no signature from a trusted key")]
    NoTrustedSignature,
}

/// A key name: non-empty, bounded, no `+` and no white space.
fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty()
        || name.len() > MAX_KEY_NAME_BYTES
        || name.contains('+')
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(NoteError::KeyName(name.to_owned()));
    }
    Ok(())
}

/// The 4-byte key ID: the first bytes of `SHA-256(name || 0x0A || algorithm || public key)`.
pub fn key_id(name: &str, algorithm: u8, public_key: &[u8; 32]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([0x0a, algorithm]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// A public key that verifies notes: its name, ID, algorithm and Ed25519 key.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: [u8; 4],
    algorithm: u8,
    key: VerifyingKey,
}

impl VerifierKey {
    /// Parses `<name>+<key ID hex>+<base64(algorithm || public key)>`, checking
    /// that the ID is the one the name and key give.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let refuse = |reason: &str| NoteError::KeyText { kind: "verifier", reason: reason.to_owned() };
        let text = text.trim();
        let mut parts = text.splitn(3, '+');
        // The name holds no '+', the base64 may: split from the left.
        let (Some(name), Some(id_hex), Some(encoded)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(refuse("expected <name>+<key ID hex>+<base64 key>"));
        };
        check_name(name)?;
        let mut id = [0u8; 4];
        if id_hex.len() != 8 || hex::decode_to_slice(id_hex, &mut id).is_err() {
            return Err(refuse("the key ID must be 8 hexadecimal characters"));
        }
        let bytes = BASE64.decode(encoded).map_err(|_| refuse("the key is not standard base64"))?;
        let (algorithm, public) = match bytes.split_first() {
            Some((&algorithm, public)) if public.len() == 32 => (algorithm, public),
            _ => return Err(refuse("the key must be one algorithm byte and 32 key bytes")),
        };
        if algorithm != ALGORITHM_ED25519 && algorithm != ALGORITHM_COSIGNATURE {
            return Err(refuse(&format!("unsupported key algorithm 0x{algorithm:02x}")));
        }
        let public: [u8; 32] = public.try_into().map_err(|_| refuse("the public key must be 32 bytes"))?;
        if key_id(name, algorithm, &public) != id {
            return Err(refuse("the key ID does not match the name and key"));
        }
        let key = VerifyingKey::from_bytes(&public).map_err(|_| refuse("not a valid Ed25519 public key"))?;
        if key.is_weak() {
            return Err(refuse("a small-order Ed25519 key is refused"));
        }
        Ok(VerifierKey { name: name.to_owned(), id, algorithm, key })
    }

    /// The key's name (for a log's key, its origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key ID.
    pub fn id(&self) -> [u8; 4] {
        self.id
    }

    /// [`ALGORITHM_ED25519`] or [`ALGORITHM_COSIGNATURE`].
    pub fn algorithm(&self) -> u8 {
        self.algorithm
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Strict Ed25519 verification of `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        Signature::from_slice(signature)
            .is_ok_and(|signature| self.key.verify_strict(message, &signature).is_ok())
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = vec![self.algorithm];
        bytes.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{}+{}", self.name, hex::encode(self.id), BASE64.encode(bytes))
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

/// A private Ed25519 note key. Its text is secret; `Debug` never shows it.
#[derive(Clone)]
pub struct SignerKey {
    name: String,
    id: [u8; 4],
    algorithm: u8,
    key: SigningKey,
}

impl SignerKey {
    /// A key from a 32-byte seed (the caller draws it from a CSPRNG; the core
    /// takes no randomness it was not handed).
    pub fn from_seed(name: &str, algorithm: u8, seed: [u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(name, algorithm, key.verifying_key().as_bytes());
        Ok(SignerKey { name: name.to_owned(), id, algorithm, key })
    }

    /// Parses `PRIVATE+KEY+<name>+<key ID hex>+<base64(algorithm || seed)>`.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let refuse = |reason: &str| NoteError::KeyText { kind: "private", reason: reason.to_owned() };
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| refuse("it must start with PRIVATE+KEY+"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(encoded)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(refuse("expected PRIVATE+KEY+<name>+<key ID hex>+<base64 seed>"));
        };
        let bytes = BASE64.decode(encoded).map_err(|_| refuse("the seed is not standard base64"))?;
        let (algorithm, seed) = match bytes.split_first() {
            Some((&algorithm, seed)) if seed.len() == 32 => (algorithm, seed),
            _ => return Err(refuse("the key must be one algorithm byte and a 32-byte seed")),
        };
        if algorithm != ALGORITHM_ED25519 && algorithm != ALGORITHM_COSIGNATURE {
            return Err(refuse(&format!("unsupported key algorithm 0x{algorithm:02x}")));
        }
        let seed: [u8; 32] = seed.try_into().map_err(|_| refuse("the seed must be 32 bytes"))?;
        let key = SignerKey::from_seed(name, algorithm, seed)?;
        if hex::encode(key.id) != id_hex.to_ascii_lowercase() {
            return Err(refuse("the key ID does not match the name and key"));
        }
        Ok(key)
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same private key under another key name: another key ID and
    /// verifier key, so a note signed under one name never verifies under
    /// the other. A log serving several origins from one seed signs each
    /// under its own name this way.
    pub fn renamed(&self, name: &str) -> Result<SignerKey, NoteError> {
        SignerKey::from_seed(name, self.algorithm, self.key.to_bytes())
    }

    /// The private key text, to be written where only the signer can read it.
    pub fn to_private_text(&self) -> String {
        let mut bytes = vec![self.algorithm];
        bytes.extend_from_slice(self.key.as_bytes());
        format!("PRIVATE+KEY+{}+{}+{}", self.name, hex::encode(self.id), BASE64.encode(bytes))
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            id: self.id,
            algorithm: self.algorithm,
            key: self.key.verifying_key(),
        }
    }

    /// An Ed25519 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// Two signer keys are equal when they sign with the same key under the same
/// name (compared through the public half, so no secret is compared in time
/// that depends on it).
impl PartialEq for SignerKey {
    fn eq(&self, other: &Self) -> bool {
        self.verifier() == other.verifier()
    }
}

impl Eq for SignerKey {}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignerKey({}, private)", self.verifier())
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The signer's key name.
    pub name: String,
    /// The signer's key ID.
    pub key_id: [u8; 4],
    /// What follows the key ID (an Ed25519 signature, or a timestamped cosignature).
    pub payload: Vec<u8>,
}

impl NoteSignature {
    /// The line, newline included.
    pub fn line(&self) -> String {
        let mut bytes = self.key_id.to_vec();
        bytes.extend_from_slice(&self.payload);
        format!("{SIGNATURE_PREFIX}{} {}\n", self.name, BASE64.encode(bytes))
    }
}

/// A note split into its text and its signature lines (nothing verified yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, final newline included.
    pub text: String,
    /// The signature lines, in order.
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Splits a note, refusing anything the spec does not allow.
    pub fn parse(bytes: &[u8]) -> Result<Note, NoteError> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| NoteError::Characters)?;
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(NoteError::Characters);
        }
        let split = text.rfind("\n\n").ok_or(NoteError::Shape)?;
        let (body, signatures) = (&text[..split + 1], &text[split + 2..]);
        if signatures.is_empty() || !signatures.ends_with('\n') {
            return Err(NoteError::Shape);
        }
        let lines: Vec<&str> = signatures[..signatures.len() - 1].split('\n').collect();
        if lines.len() > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures(lines.len()));
        }
        let signatures = lines
            .iter()
            .enumerate()
            .map(|(index, line)| parse_signature_line(line).ok_or(NoteError::SignatureLine(index + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Note { text: body.to_owned(), signatures })
    }

    /// The note as bytes: text, empty line, signature lines.
    pub fn to_text(&self) -> String {
        let mut note = self.text.clone();
        note.push('\n');
        for signature in &self.signatures {
            note.push_str(&signature.line());
        }
        note
    }

    /// Signs `text` (which must end in a newline) with `signer`.
    pub fn sign(text: &str, signer: &SignerKey) -> Result<Note, NoteError> {
        if !text.ends_with('\n') || text.ends_with("\n\n") || text.contains("\n\n") {
            return Err(NoteError::Shape);
        }
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(NoteError::Characters);
        }
        let signature = NoteSignature {
            name: signer.name.clone(),
            key_id: signer.id,
            payload: signer.sign(text.as_bytes()).to_vec(),
        };
        Ok(Note { text: text.to_owned(), signatures: vec![signature] })
    }

    /// Verifies the note's Ed25519 signatures against `trusted` (cosignature
    /// keys are checked by the witness code): unknown keys are ignored, a known
    /// key that fails rejects the note, and at least one must verify. Returns
    /// the keys that verified.
    pub fn verify<'k>(&self, trusted: &'k [VerifierKey]) -> Result<Vec<&'k VerifierKey>, NoteError> {
        let mut verified = Vec::new();
        for signature in &self.signatures {
            let Some(key) = trusted.iter().find(|key| {
                key.algorithm == ALGORITHM_ED25519 && key.name == signature.name && key.id == signature.key_id
            }) else {
                continue;
            };
            if !key.verify(self.text.as_bytes(), &signature.payload) {
                return Err(NoteError::BadSignature(signature.name.clone()));
            }
            if !verified.contains(&key) {
                verified.push(key);
            }
        }
        if verified.is_empty() {
            return Err(NoteError::NoTrustedSignature);
        }
        Ok(verified)
    }
}

fn parse_signature_line(line: &str) -> Option<NoteSignature> {
    let rest = line.strip_prefix(SIGNATURE_PREFIX)?;
    let (name, encoded) = rest.split_once(' ')?;
    check_name(name).ok()?;
    let bytes = BASE64.decode(encoded).ok()?;
    if bytes.len() < 5 {
        return None;
    }
    let (id, payload) = bytes.split_at(4);
    Some(NoteSignature { name: name.to_owned(), key_id: id.try_into().ok()?, payload: payload.to_vec() })
}
/// Whether two notes sign the same text. The same checkpoint seen again with
/// other signatures (a witness's cosignature added later) is not a second
/// history; a different text for the same tree size is. Bytes that are not a
/// note are compared whole.
pub fn same_signed_text(first: &[u8], second: &[u8]) -> bool {
    match (Note::parse(first), Note::parse(second)) {
        (Ok(first), Ok(second)) => first.text == second.text,
        _ => first == second,
    }
}
