//! API keys: generation, parsing, hashing, scopes and the authorisation rule.

use std::collections::BTreeSet;
use std::fmt;

use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::ledgers::LedgerName;
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

/// The version of the whole key table a key record was read at: it moves with
/// every change of any key. A write authenticated from a cached record
/// carries it, and the store refuses the write if the table has moved since
/// ([`crate::ports::StoreError::KeysChanged`]), so a revoked key never writes
/// even when the cache has not heard of the revocation yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyEpoch(pub u64);

impl KeyEpoch {
    /// Whether a write carrying this epoch (the one its key was cached at) may
    /// still land when the key table stands at `stored`: only if no key
    /// changed since, so a revoked key never writes through a stale cache.
    pub fn still_holds(self, stored: KeyEpoch) -> bool {
        self == stored
    }
}

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
    /// Create and list ledgers.
    Admin,
}

impl Scope {
    /// The scope's JSON name.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Write => "write",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

/// The scopes a key holds.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Scopes {
    /// May post transactions.
    pub write: bool,
    /// May read.
    pub read: bool,
    /// May create and list ledgers (keys stored before ledgers existed have none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
    /// The only ledgers the key may use; `None`: every ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledgers: Option<BTreeSet<LedgerName>>,
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
    /// A name other than `write`, `read`, `admin` or `ledgers`.
    #[error("scopes: unknown scope {0:?} (known scopes: write, read, admin, ledgers)")]
    UnknownScope(String),
    /// `ledgers` is not a non-empty list of ledger names.
    #[error(
        "scopes: \"ledgers\" must be a non-empty list of ledger names such as [\"acme\"] (leave it out for every ledger): {0}"
    )]
    Ledgers(String),
    /// A value other than `true`/`false`.
    #[error("scopes: {0:?} must be true or false")]
    NotABoolean(String),
    /// Nothing granted.
    #[error("scopes must grant at least one scope, such as '{{\"write\": true}}'")]
    NoneGranted,
}

impl Scopes {
    /// Parses `{"write": true, "read": false, "ledgers": ["acme"]}`: unknown
    /// names, non-booleans and an empty or invalid ledger list are errors.
    pub fn parse_json(text: &str) -> Result<Self, ScopesError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|error| ScopesError::NotJson(error.to_string()))?;
        let object = value.as_object().ok_or(ScopesError::NotAnObject)?;
        let mut scopes = Scopes::default();
        for (name, granted) in object {
            if name == "ledgers" {
                scopes.ledgers = Some(parse_ledger_list(granted)?);
                continue;
            }
            let granted = granted.as_bool().ok_or_else(|| ScopesError::NotABoolean(name.clone()))?;
            match name.as_str() {
                "write" => scopes.write = granted,
                "read" => scopes.read = granted,
                "admin" => scopes.admin = granted,
                _ => return Err(ScopesError::UnknownScope(name.clone())),
            }
        }
        if !scopes.write && !scopes.read && !scopes.admin {
            return Err(ScopesError::NoneGranted);
        }
        Ok(scopes)
    }

    /// Whether `scope` is granted.
    pub fn allows(&self, scope: Scope) -> bool {
        match scope {
            Scope::Write => self.write,
            Scope::Read => self.read,
            Scope::Admin => self.admin,
        }
    }

    /// Whether the key may use ledger `ledger` at all.
    pub fn allows_ledger(&self, ledger: &LedgerName) -> bool {
        self.ledgers.as_ref().is_none_or(|allowed| allowed.contains(ledger))
    }

    /// Compact JSON, as stored: `admin` and `ledgers` only when granted or limited.
    pub fn to_json(&self) -> String {
        let mut text = format!("{{\"write\": {}, \"read\": {}", self.write, self.read);
        if self.admin {
            text.push_str(", \"admin\": true");
        }
        if let Some(ledgers) = &self.ledgers {
            let names: Vec<String> = ledgers.iter().map(|name| format!("\"{name}\"")).collect();
            text.push_str(&format!(", \"ledgers\": [{}]", names.join(", ")));
        }
        text.push('}');
        text
    }

    /// One line for listings: granted scopes, then the ledger limit if any,
    /// e.g. `write,read ledgers=acme,books`.
    pub fn summary(&self) -> String {
        let granted = [Scope::Write, Scope::Read, Scope::Admin]
            .into_iter()
            .filter(|scope| self.allows(*scope))
            .map(Scope::name)
            .collect::<Vec<_>>()
            .join(",");
        match &self.ledgers {
            None => granted,
            Some(ledgers) => {
                let names = ledgers.iter().map(LedgerName::as_str).collect::<Vec<_>>().join(",");
                format!("{granted} ledgers={names}")
            }
        }
    }
}

fn parse_ledger_list(value: &serde_json::Value) -> Result<BTreeSet<LedgerName>, ScopesError> {
    let items = value.as_array().ok_or_else(|| ScopesError::Ledgers(format!("got {value}")))?;
    if items.is_empty() {
        return Err(ScopesError::Ledgers("the list is empty".to_owned()));
    }
    items
        .iter()
        .map(|item| {
            let text =
                item.as_str().ok_or_else(|| ScopesError::Ledgers(format!("{item} is not a string")))?;
            LedgerName::parse(text).map_err(|error| ScopesError::Ledgers(error.to_string()))
        })
        .collect()
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
    /// Valid, but limited to other ledgers.
    #[error("API key {prefix} may not use ledger \"{ledger}\"")]
    LedgerNotAllowed {
        /// Its display prefix.
        prefix: String,
        /// The ledger asked for.
        ledger: LedgerName,
    },
}

impl AuthError {
    /// True when the key is valid but not allowed (HTTP 403 rather than 401).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, AuthError::MissingScope { .. } | AuthError::LedgerNotAllowed { .. })
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

    /// The rule: may this key perform `scope` at `now`, on `ledger` when the
    /// request is about one (`None`: a request about no single ledger)?
    pub fn authorize(
        &self,
        scope: Scope,
        ledger: Option<&LedgerName>,
        now: Timestamp,
    ) -> Result<(), AuthError> {
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
        if let Some(ledger) = ledger.filter(|ledger| !self.scopes.allows_ledger(ledger)) {
            return Err(AuthError::LedgerNotAllowed { prefix: prefix(), ledger: ledger.clone() });
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
        let write = Scopes { write: true, ..Scopes::default() };
        assert_eq!(Scopes::parse_json(r#"{"write": true}"#), Ok(write.clone()));
        assert_eq!(
            Scopes::parse_json(r#"{"write": true, "read": true}"#),
            Ok(Scopes { write: true, read: true, ..Scopes::default() })
        );
        assert_eq!(Scopes::parse_json(r#"{"admin": true}"#), Ok(Scopes { admin: true, ..Scopes::default() }));
        let limited = Scopes::parse_json(r#"{"write": true, "ledgers": ["books", "acme", "acme"]}"#).unwrap();
        assert_eq!(limited.to_json(), r#"{"write": true, "read": false, "ledgers": ["acme", "books"]}"#);
        assert_eq!(limited.summary(), "write ledgers=acme,books");
        assert_eq!(Scopes::parse_json(&limited.to_json()), Ok(limited.clone()));
        assert_eq!(serde_json::from_str::<Scopes>(&limited.to_json()).ok(), Some(limited));
        // Keys stored before admin and ledgers existed read as before: no admin, every ledger.
        assert_eq!(
            serde_json::from_str::<Scopes>(r#"{"write": true, "read": false}"#).ok(),
            Some(write.clone())
        );
        assert_eq!(write.to_json(), r#"{"write": true, "read": false}"#);
        let message = |text: &str| Scopes::parse_json(text).unwrap_err().to_string();
        assert_eq!(
            message(r#"{"delete": true}"#),
            "scopes: unknown scope \"delete\" (known scopes: write, read, admin, ledgers)"
        );
        for (ledgers, why) in [
            ("[]", "the list is empty"),
            ("\"acme\"", "got \"acme\""),
            ("[42]", "42 is not a string"),
            ("[\"Acme\"]", "ledger name \"Acme\" is not allowed"),
        ] {
            let error = message(&format!(r#"{{"write": true, "ledgers": {ledgers}}}"#));
            assert!(
                error.starts_with("scopes: \"ledgers\" must be a non-empty list of ledger names"),
                "{error}"
            );
            assert!(error.contains(why), "{error}");
        }
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
        let scopes = Scopes { write: true, ..Scopes::default() };
        let mut record = ApiKeyRecord::new(Uuid::nil(), &key, owner, scopes, time(0), Some(time(1_000)));
        let default = LedgerName::default_ledger();
        assert_eq!(record.authorize(Scope::Write, Some(&default), time(999)), Ok(()));
        assert!(matches!(record.authorize(Scope::Write, None, time(1_000)), Err(AuthError::Expired { .. })));
        let forbidden = record.authorize(Scope::Read, None, time(10)).unwrap_err();
        assert!(forbidden.is_forbidden());
        assert_eq!(forbidden.to_string(), format!("API key {} lacks the read scope", record.prefix));
        assert!(record.authorize(Scope::Admin, None, time(10)).unwrap_err().is_forbidden());
        record.revoked_at = Some(time(5));
        assert!(matches!(record.authorize(Scope::Write, None, time(6)), Err(AuthError::Revoked { .. })));
        assert!(!record.is_active(time(6)));
    }

    #[test]
    fn a_key_limited_to_some_ledgers_is_refused_every_other_one() {
        let key = ApiKeySecret::generate(&mut CountingRng(0));
        let owner = Owner::parse("acme-client").unwrap();
        let scopes = Scopes::parse_json(r#"{"write": true, "read": true, "ledgers": ["acme"]}"#).unwrap();
        let record = ApiKeyRecord::new(Uuid::nil(), &key, owner, scopes, time(0), None);
        let acme = LedgerName::parse("acme").unwrap();
        assert_eq!(record.authorize(Scope::Write, Some(&acme), time(1)), Ok(()));
        for other in [LedgerName::default_ledger(), LedgerName::parse("acme2").unwrap()] {
            let refused = record.authorize(Scope::Read, Some(&other), time(1)).unwrap_err();
            assert!(refused.is_forbidden());
            assert_eq!(
                refused.to_string(),
                format!("API key {} may not use ledger \"{other}\"", record.prefix)
            );
        }
        // The scope is checked first: a missing scope is named even on a ledger the key may use.
        assert!(matches!(
            record.authorize(Scope::Admin, Some(&acme), time(1)),
            Err(AuthError::MissingScope { scope: Scope::Admin, .. })
        ));
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
