//! Many ledgers in one service: each has a name, its own chain, tree,
//! checkpoints and integrity status. A transaction id is an idempotency key
//! within one ledger only.

use std::fmt;

use crate::note::{NoteError, SignerKey};
use crate::timestamp::Timestamp;

/// Longest ledger name, in characters.
pub const MAX_LEDGER_NAME_CHARS: usize = 63;

/// The ledger that always exists: every route without a ledger in its path
/// means this one, and a database from before ledgers keeps all its rows in it.
pub const DEFAULT_LEDGER: &str = "default";

/// A ledger's name: `[a-z0-9][a-z0-9_-]{0,62}`. It appears in paths, metric
/// labels, checkpoint origins and file names, so it is kept to characters
/// that need no escaping anywhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct LedgerName(String);

/// Why a ledger name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "ledger name {0:?} is not allowed: 1 to {max} characters, lower-case letters, digits, '_' and '-', starting with a letter or digit",
    max = MAX_LEDGER_NAME_CHARS
)]
pub struct LedgerNameError(pub String);

impl LedgerName {
    /// Checks the rule `[a-z0-9][a-z0-9_-]{0,62}`.
    pub fn parse(text: &str) -> Result<Self, LedgerNameError> {
        let mut characters = text.chars();
        let first_ok = characters.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok =
            characters.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !first_ok || !rest_ok || text.len() > MAX_LEDGER_NAME_CHARS {
            return Err(LedgerNameError(text.to_owned()));
        }
        Ok(LedgerName(text.to_owned()))
    }

    /// The ledger named [`DEFAULT_LEDGER`].
    pub fn default_ledger() -> Self {
        LedgerName(DEFAULT_LEDGER.to_owned())
    }

    /// Whether this is the [`DEFAULT_LEDGER`].
    pub fn is_default(&self) -> bool {
        self.0 == DEFAULT_LEDGER
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The checkpoint origin (and signing key name) of this ledger under the
    /// service's origin: `<origin>/<name>`, so a checkpoint of one ledger never
    /// verifies as another's. The default ledger keeps the service's origin
    /// itself, so checkpoints, witnesses and auditors from before ledgers
    /// existed go on verifying it.
    pub fn checkpoint_origin(&self, service_origin: &str) -> String {
        if self.is_default() { service_origin.to_owned() } else { format!("{service_origin}/{}", self.0) }
    }

    /// The service's checkpoint key under this ledger's
    /// [`checkpoint_origin`](Self::checkpoint_origin): the same private key
    /// under another name, so another key ID and verifier key. The default
    /// ledger's is the service's key itself.
    pub fn signer_key(&self, service_key: &SignerKey) -> Result<SignerKey, NoteError> {
        service_key.renamed(&self.checkpoint_origin(service_key.name()))
    }
}

impl Default for LedgerName {
    fn default() -> Self {
        LedgerName::default_ledger()
    }
}

impl fmt::Display for LedgerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for LedgerName {
    type Err = LedgerNameError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        LedgerName::parse(text)
    }
}

impl<'de> serde::Deserialize<'de> for LedgerName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        LedgerName::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A ledger as the catalog lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerInfo {
    /// Its name.
    pub name: LedgerName,
    /// When it was created (for `default`: when the schema was migrated).
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_pattern() {
        for good in ["default", "acme", "0", "a-b_c", "tenant-42", &"a".repeat(63)] {
            assert_eq!(LedgerName::parse(good).map(|name| name.to_string()), Ok(good.to_owned()), "{good}");
        }
        for bad in ["", "-acme", "_acme", "Acme", "acme!", "a b", "a/b", "é", &"a".repeat(64), "acme\n"] {
            let error = LedgerName::parse(bad).unwrap_err();
            assert_eq!(error, LedgerNameError(bad.to_owned()));
            assert!(error.to_string().contains("lower-case letters"), "{error}");
        }
    }

    #[test]
    fn each_ledger_signs_under_its_own_origin_and_default_keeps_the_service_origin() {
        let acme = LedgerName::parse("acme").unwrap();
        assert_eq!(acme.checkpoint_origin("ledger.example.com/payments"), "ledger.example.com/payments/acme");
        assert_eq!(
            LedgerName::default_ledger().checkpoint_origin("ledger.example.com/payments"),
            "ledger.example.com/payments"
        );
    }

    #[test]
    fn a_name_deserialises_only_when_valid() {
        assert_eq!(serde_json::from_str::<LedgerName>("\"acme\"").ok(), LedgerName::parse("acme").ok());
        let error = serde_json::from_str::<LedgerName>("\"ACME\"").unwrap_err().to_string();
        assert!(error.contains("\"ACME\" is not allowed"), "{error}");
    }

    #[test]
    fn a_ledgers_checkpoint_verifies_only_under_its_own_key() {
        use crate::checkpoint::Checkpoint;
        use crate::merkle::empty_root;
        use crate::note::ALGORITHM_ED25519;
        const ORIGIN: &str = "ledger.example.com/invario/prod";
        let service_key = SignerKey::from_seed(ORIGIN, ALGORITHM_ED25519, [7; 32]).unwrap();
        let acme_key = LedgerName::parse("acme").unwrap().signer_key(&service_key).unwrap();
        let books_key = LedgerName::parse("books").unwrap().signer_key(&service_key).unwrap();
        assert_eq!(acme_key.name(), format!("{ORIGIN}/acme"));
        assert_eq!(
            LedgerName::default_ledger().signer_key(&service_key).unwrap().verifier(),
            service_key.verifier()
        );
        let checkpoint = Checkpoint {
            origin: acme_key.name().to_owned(),
            head: crate::merkle::TreeHead { size: 0, root: empty_root() },
        };
        let note = checkpoint.sign(&acme_key).unwrap().to_text();
        assert!(Checkpoint::verify(note.as_bytes(), &acme_key.verifier()).is_ok());
        // Same private key, same tree: another ledger's key, or the service's own, refuses it.
        for other in [books_key.verifier(), service_key.verifier()] {
            assert!(Checkpoint::verify(note.as_bytes(), &other).is_err(), "{other}");
        }
        assert!(checkpoint.sign(&books_key).is_err());
    }
}
