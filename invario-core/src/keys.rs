//! API keys: generation, parsing, hashing, scopes and the authorisation rule.

use std::fmt;

use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::timestamp::Timestamp;

/// Every key starts with this.
pub const KEY_PREFIX: &str = "inv_live_";
/// Random base62 characters after the prefix.
pub const KEY_RANDOM_CHARS: usize = 32;
/// Random characters kept in the display prefix (not enough to guess the rest: 24 remain, ~143 bits).
pub const DISPLAY_RANDOM_CHARS: usize = 8;
/// Longest owner name, in characters.
pub const MAX_OWNER_CHARS: usize = 128;
/// `last_used_at` is refreshed at most this often per key, so authentication
/// does not turn every request into a write.
pub const LAST_USED_RESOLUTION_MICROS: i64 = 60 * 1_000_000;

// The display prefix must leave most of the random part unseen, or listing
// keys would print enough of a secret to guess the rest.
const _: () = assert!(DISPLAY_RANDOM_CHARS * 2 < KEY_RANDOM_CHARS);

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A full API key. Shown once, never stored, never logged (`Debug` hides it).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret(String);

/// Why a presented text cannot be an API key; decided before any lookup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    /// Missing `inv_live_`.
    #[error("API key must start with \"{prefix}\"", prefix = KEY_PREFIX)]
    Prefix,
    /// Wrong length.
    #[error("API key must be \"{prefix}\" followed by {chars} letters and digits", prefix = KEY_PREFIX, chars = KEY_RANDOM_CHARS)]
    Length,
    /// Characters outside base62.
    #[error("API key may only hold letters and digits after \"{prefix}\"", prefix = KEY_PREFIX)]
    Characters,
}

impl ApiKeySecret {
    /// Generates a key from a cryptographically secure RNG the caller provides.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut key = String::with_capacity(KEY_PREFIX.len() + KEY_RANDOM_CHARS);
        key.push_str(KEY_PREFIX);
        let mut produced = 0;
        while produced < KEY_RANDOM_CHARS {
            let mut bytes = [0u8; 32];
            rng.fill_bytes(&mut bytes);
            // 248 = 4 × 62: rejecting larger bytes keeps every character equally likely.
            for byte in bytes.into_iter().filter(|&b| b < 248) {
                if produced == KEY_RANDOM_CHARS {
                    break;
                }
                key.push(char::from(BASE62[usize::from(byte % 62)]));
                produced += 1;
            }
        }
        ApiKeySecret(key)
    }

    /// Checks the shape of a presented key.
    pub fn parse(text: &str) -> Result<Self, KeyFormatError> {
        let random = text.strip_prefix(KEY_PREFIX).ok_or(KeyFormatError::Prefix)?;
        if random.len() != KEY_RANDOM_CHARS {
            return Err(KeyFormatError::Length);
        }
        if !random.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(KeyFormatError::Characters);
        }
        Ok(ApiKeySecret(text.to_owned()))
    }

    /// The full key, to show once to the operator.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the key, the only form stored.
    pub fn hash(&self) -> KeyHash {
        KeyHash(Sha256::digest(self.0.as_bytes()).into())
    }

    /// The non-secret prefix shown in listings and logs, e.g. `inv_live_aBcDeFgH`.
    pub fn display_prefix(&self) -> String {
        self.0[..KEY_PREFIX.len() + DISPLAY_RANDOM_CHARS].to_owned()
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeySecret({}…)", self.display_prefix())
    }
}

/// SHA-256 of an API key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({})", hex::encode(self.0))
    }
}

/// Something a key may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Post transactions.
    Write,
    /// Read transactions and the ledger.
    Read,
}

impl Scope {
    /// The scope's JSON name.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Write => "write",
            Scope::Read => "read",
        }
    }
}

/// The scopes a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Scopes {
    /// May post transactions.
    pub write: bool,
    /// May read.
    pub read: bool,
}

/// Why a scopes JSON was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopesError {
    /// Not JSON at all.
    #[error("scopes must be JSON such as '{{\"write\": true, \"read\": true}}' ({0})")]
    NotJson(String),
    /// JSON but not an object.
    #[error("scopes must be a JSON object such as '{{\"write\": true}}'")]
    NotAnObject,
    /// A name other than `write` or `read`.
    #[error("scopes: unknown scope {0:?} (known scopes: write, read)")]
    UnknownScope(String),
    /// A value other than `true`/`false`.
    #[error("scopes: {0:?} must be true or false")]
    NotABoolean(String),
    /// Nothing granted.
    #[error("scopes must grant at least one scope, such as '{{\"write\": true}}'")]
    NoneGranted,
}

impl Scopes {
    /// Parses `{"write": true, "read": false}`; unknown names and non-booleans are errors.
    pub fn parse_json(text: &str) -> Result<Self, ScopesError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|error| ScopesError::NotJson(error.to_string()))?;
        let object = value.as_object().ok_or(ScopesError::NotAnObject)?;
        let mut scopes = Scopes::default();
        for (name, granted) in object {
            let granted = granted.as_bool().ok_or_else(|| ScopesError::NotABoolean(name.clone()))?;
            match name.as_str() {
                "write" => scopes.write = granted,
                "read" => scopes.read = granted,
                _ => return Err(ScopesError::UnknownScope(name.clone())),
            }
        }
        if !scopes.write && !scopes.read {
            return Err(ScopesError::NoneGranted);
        }
        Ok(scopes)
    }

    /// Whether `scope` is granted.
    pub fn allows(&self, scope: Scope) -> bool {
        match scope {
            Scope::Write => self.write,
            Scope::Read => self.read,
        }
    }

    /// Compact JSON, as stored and listed.
    pub fn to_json(&self) -> String {
        format!("{{\"write\": {}, \"read\": {}}}", self.write, self.read)
    }
}

/// A key's owner, e.g. the client's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Owner(String);

/// Why an owner name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnerError {
    /// Empty or blank.
    #[error("owner must not be empty")]
    Empty,
    /// Too long.
    #[error("owner may be at most {max} characters long", max = MAX_OWNER_CHARS)]
    TooLong,
    /// Control characters (they would garble listings and logs).
    #[error("owner must not contain control characters")]
    ControlCharacters,
}

impl Owner {
    /// Trims surrounding white space and checks the rules.
    pub fn parse(text: &str) -> Result<Self, OwnerError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(OwnerError::Empty);
        }
        if trimmed.chars().count() > MAX_OWNER_CHARS {
            return Err(OwnerError::TooLong);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(OwnerError::ControlCharacters);
        }
        Ok(Owner(trimmed.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stored key: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Row id.
    pub id: Uuid,
    /// Who holds it.
    pub owner: Owner,
    /// Display prefix, e.g. `inv_live_aBcDeFgH`.
    pub prefix: String,
    /// SHA-256 of the key.
    pub key_hash: KeyHash,
    /// What it may do.
    pub scopes: Scopes,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it stops working by itself, if ever.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
    /// When it was last used (refreshed at most once a minute).
    pub last_used_at: Option<Timestamp>,
}

/// Why a request's key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No key was presented.
    #[error("an API key is required: send 'Authorization: Bearer inv_live_…'")]
    Missing,
    /// The text cannot be a key.
    #[error(transparent)]
    Malformed(#[from] KeyFormatError),
    /// No stored key has this hash.
    #[error("API key not recognised")]
    Unknown,
    /// Revoked.
    #[error("API key {prefix} was revoked")]
    Revoked {
        /// Its display prefix.
        prefix: String,
    },
    /// Past its expiry.
    #[error("API key {prefix} expired")]
    Expired {
        /// Its display prefix.
        prefix: String,
    },
    /// Valid, but lacks the scope.
    #[error("API key {prefix} lacks the {} scope", scope.name())]
    MissingScope {
        /// Its display prefix.
        prefix: String,
        /// The scope needed.
        scope: Scope,
    },
}

impl AuthError {
    /// True when the key is valid but not allowed (HTTP 403 rather than 401).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, AuthError::MissingScope { .. })
    }
}

impl ApiKeyRecord {
    /// Builds the record for a new key.
    pub fn new(
        id: Uuid,
        secret: &ApiKeySecret,
        owner: Owner,
        scopes: Scopes,
        created_at: Timestamp,
        expires_at: Option<Timestamp>,
    ) -> Self {
        ApiKeyRecord {
            id,
            owner,
            prefix: secret.display_prefix(),
            key_hash: secret.hash(),
            scopes,
            created_at,
            expires_at,
            revoked_at: None,
            last_used_at: None,
        }
    }

    /// True while neither revoked nor expired at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|expiry| now < expiry)
    }

    /// The rule: may this key perform `scope` at `now`?
    pub fn authorize(&self, scope: Scope, now: Timestamp) -> Result<(), AuthError> {
        let prefix = || self.prefix.clone();
        if self.revoked_at.is_some() {
            return Err(AuthError::Revoked { prefix: prefix() });
        }
        if self.expires_at.is_some_and(|expiry| now >= expiry) {
            return Err(AuthError::Expired { prefix: prefix() });
        }
        if !self.scopes.allows(scope) {
            return Err(AuthError::MissingScope { prefix: prefix(), scope });
        }
        Ok(())
    }

    /// Whether `last_used_at` is stale enough to be written again at `now`.
    pub fn needs_last_used_touch(&self, now: Timestamp) -> bool {
        self.last_used_at.is_none_or(|used| {
            now.unix_micros().saturating_sub(used.unix_micros()) >= LAST_USED_RESOLUTION_MICROS
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic RNG for tests only (not cryptographic).
    struct CountingRng(u8);
    impl rand_core::RngCore for CountingRng {
        fn next_u32(&mut self) -> u32 {
            rand_core::impls::next_u32_via_fill(self)
        }
        fn next_u64(&mut self) -> u64 {
            rand_core::impls::next_u64_via_fill(self)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for byte in dest {
                *byte = self.0;
                self.0 = self.0.wrapping_add(1);
            }
        }
    }
    impl CryptoRng for CountingRng {}

    fn time(micros: i64) -> Timestamp {
        Timestamp::from_unix_micros(micros).unwrap()
    }

    #[test]
    fn generated_keys_have_the_documented_shape() {
        use rand_core::TryRngCore;
        let key = ApiKeySecret::generate(&mut rand_core::OsRng.unwrap_err());
        assert_eq!(key.expose().len(), 41);
        assert!(key.expose().starts_with("inv_live_"));
        assert_eq!(ApiKeySecret::parse(key.expose()), Ok(key.clone()));
        assert_eq!(key.display_prefix(), key.expose()[..17]);
        assert!(!format!("{key:?}").contains(&key.expose()[17..]));
    }

    #[test]
    fn generation_skips_biased_bytes() {
        // Bytes 0..=255 repeat; the 8 values ≥ 248 must be skipped, not folded.
        let key = ApiKeySecret::generate(&mut CountingRng(240));
        assert_eq!(&key.expose()[9..], "stuvwxyz0123456789ABCDEFGHIJKLMN");
    }

    #[test]
    fn malformed_keys_are_refused_before_any_lookup() {
        assert_eq!(ApiKeySecret::parse("Bearer x"), Err(KeyFormatError::Prefix));
        assert_eq!(ApiKeySecret::parse("inv_live_abc"), Err(KeyFormatError::Length));
        assert_eq!(
            ApiKeySecret::parse(&format!("inv_live_{}", "-".repeat(32))),
            Err(KeyFormatError::Characters)
        );
        assert_eq!(
            ApiKeySecret::parse(&format!("inv_live_{}", "é".repeat(16))),
            Err(KeyFormatError::Characters)
        );
    }

    #[test]
    fn the_stored_hash_is_sha256_of_the_key() {
        let key = ApiKeySecret::parse("inv_live_aBcDeFgHiJkLmNoPqRsTuVwXyZ123456").unwrap();
        assert_eq!(
            hex::encode(key.hash().0),
            hex::encode(Sha256::digest(b"inv_live_aBcDeFgHiJkLmNoPqRsTuVwXyZ123456"))
        );
        assert_eq!(key.display_prefix(), "inv_live_aBcDeFgH");
    }

    #[test]
    fn scopes_parse_strictly() {
        assert_eq!(Scopes::parse_json(r#"{"write": true}"#), Ok(Scopes { write: true, read: false }));
        assert_eq!(
            Scopes::parse_json(r#"{"write": true, "read": true}"#),
            Ok(Scopes { write: true, read: true })
        );
        let message = |text: &str| Scopes::parse_json(text).unwrap_err().to_string();
        assert_eq!(
            message(r#"{"admin": true}"#),
            "scopes: unknown scope \"admin\" (known scopes: write, read)"
        );
        assert_eq!(message(r#"{"write": "yes"}"#), "scopes: \"write\" must be true or false");
        assert_eq!(message(r#"["write"]"#), "scopes must be a JSON object such as '{\"write\": true}'");
        assert!(message("{write: true}").starts_with("scopes must be JSON such as"));
        assert_eq!(
            message(r#"{"write": false}"#),
            "scopes must grant at least one scope, such as '{\"write\": true}'"
        );
    }

    #[test]
    fn owner_names_are_trimmed_and_bounded() {
        assert_eq!(Owner::parse("  ClientName ").unwrap().as_str(), "ClientName");
        assert_eq!(Owner::parse("  ").unwrap_err().to_string(), "owner must not be empty");
        assert_eq!(Owner::parse(&"x".repeat(129)), Err(OwnerError::TooLong));
        assert_eq!(Owner::parse("a\nb"), Err(OwnerError::ControlCharacters));
    }

    #[test]
    fn authorisation_checks_revocation_expiry_and_scope() {
        let key = ApiKeySecret::generate(&mut CountingRng(0));
        let owner = Owner::parse("ClientName").unwrap();
        let scopes = Scopes { write: true, read: false };
        let mut record = ApiKeyRecord::new(Uuid::nil(), &key, owner, scopes, time(0), Some(time(1_000)));
        assert_eq!(record.authorize(Scope::Write, time(999)), Ok(()));
        assert!(matches!(record.authorize(Scope::Write, time(1_000)), Err(AuthError::Expired { .. })));
        let forbidden = record.authorize(Scope::Read, time(10)).unwrap_err();
        assert!(forbidden.is_forbidden());
        assert_eq!(forbidden.to_string(), format!("API key {} lacks the read scope", record.prefix));
        record.revoked_at = Some(time(5));
        assert!(matches!(record.authorize(Scope::Write, time(6)), Err(AuthError::Revoked { .. })));
        assert!(!record.is_active(time(6)));
    }

    #[test]
    fn last_used_is_written_at_most_once_a_minute() {
        let key = ApiKeySecret::generate(&mut CountingRng(0));
        let owner = Owner::parse("c").unwrap();
        let mut record = ApiKeyRecord::new(Uuid::nil(), &key, owner, Scopes::default(), time(0), None);
        assert!(record.needs_last_used_touch(time(0)));
        record.last_used_at = Some(time(0));
        assert!(!record.needs_last_used_touch(time(59_999_999)));
        assert!(record.needs_last_used_touch(time(60_000_000)));
    }
}
