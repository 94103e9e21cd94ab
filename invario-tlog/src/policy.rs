//! C2SP tlog-policy (<https://c2sp.org/tlog-policy>): which logs a verifier
//! trusts, which witnesses, and the quorum rule — a witness, `none`, or a
//! group that is met when at least `k` of its members (witnesses or earlier
//! groups) are.
//!
//! ```text
//! log <vkey> [<url>]
//! witness <name> <vkey> [<url>]
//! group <name> all|any|<k> <name>...
//! quorum <name>|none
//! ```
//!
//! Parsing is strict: a name must be defined on an earlier line, be listed
//! at most once per group, and never be `none` except as the quorum; a key is
//! a log (Ed25519) or witness (cosignature) key as its line says, and never
//! listed twice; exactly one quorum line. Every error names the line.

use crate::note::{ALGORITHM_COSIGNATURE, ALGORITHM_ED25519, Note, VerifierKey};
use crate::witness::{CosignatureError, verified_cosigners};

/// Largest policy file read, in bytes.
pub const MAX_POLICY_BYTES: usize = 64 * 1024;
/// Most logs, witnesses and groups a policy may define, each (the
/// specification asks implementations to support at least 32).
pub const MAX_POLICY_ITEMS: usize = 256;

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    logs: Vec<PolicyLog>,
    witnesses: Vec<PolicyWitness>,
    groups: Vec<Group>,
    quorum: Member,
}

/// A trusted log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyLog {
    /// Its key; the key name is the log's origin.
    pub key: VerifierKey,
    /// Where to reach it, if the policy says.
    pub url: Option<String>,
}

/// A trusted witness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyWitness {
    /// Its name within the policy.
    pub name: String,
    /// Its cosignature key.
    pub key: VerifierKey,
    /// Its submission prefix, if the policy says.
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    name: String,
    threshold: usize,
    members: Vec<Member>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    None,
    Witness(usize),
    Group(usize),
}

/// Why a policy file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy line {line}: {reason}")]
pub struct PolicyError {
    /// The 1-based line (0: the file as a whole).
    pub line: usize,
    /// The rule it breaks.
    pub reason: String,
}

/// Why a checkpoint does not meet a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyCheckError {
    /// A listed witness's cosignature does not verify.
    #[error(transparent)]
    Cosignature(#[from] CosignatureError),
    /// The cosignatures that verified do not meet the quorum rule.
    #[error("the witness quorum of the policy is not met: cosigned by {}", if .cosigners.is_empty() { "no listed witness".to_owned() } else { .cosigners.join(", ") })]
    QuorumNotMet {
        /// The policy names of the witnesses that cosigned.
        cosigners: Vec<String>,
    },
}

impl Policy {
    /// Reads a policy file.
    pub fn parse(bytes: &[u8]) -> Result<Policy, PolicyError> {
        if bytes.len() > MAX_POLICY_BYTES {
            return Err(PolicyError { line: 0, reason: format!("larger than {MAX_POLICY_BYTES} bytes") });
        }
        let mut logs: Vec<PolicyLog> = Vec::new();
        let mut witnesses: Vec<PolicyWitness> = Vec::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut quorum = None;
        for (index, line) in bytes.split(|byte| *byte == b'\n').enumerate() {
            let number = index + 1;
            let refuse = |reason: String| PolicyError { line: number, reason };
            if let Some(byte) = line.iter().find(|byte| (**byte < 0x20 && **byte != b'\t') || **byte == 0x7f)
            {
                return Err(refuse(format!(
                    "control character 0x{byte:02x} (only tab and newline are allowed)"
                )));
            }
            let line = std::str::from_utf8(line)
                .map_err(|_| refuse("not UTF-8 (this reader handles names and URLs as UTF-8)".into()))?;
            let tokens: Vec<&str> = line.split([' ', '\t']).filter(|token| !token.is_empty()).collect();
            let Some((keyword, arguments)) = tokens.split_first() else { continue };
            if keyword.starts_with('#') {
                continue;
            }
            let lookup = |name: &str| -> Option<Member> {
                witnesses
                    .iter()
                    .position(|witness| witness.name == name)
                    .map(Member::Witness)
                    .or_else(|| groups.iter().position(|group| group.name == name).map(Member::Group))
            };
            let new_name = |name: &str| -> Result<String, PolicyError> {
                if name == "none" || lookup(name).is_some() {
                    return Err(refuse(format!(
                        "the name {name:?} is already defined (or is the reserved none)"
                    )));
                }
                Ok(name.to_owned())
            };
            let key_of = |text: &str, algorithm: u8, role: &str| -> Result<VerifierKey, PolicyError> {
                let key = VerifierKey::parse(text).map_err(|error| refuse(format!("{role} key: {error}")))?;
                if key.algorithm() != algorithm {
                    return Err(refuse(format!("{text:?} is not a {role} key")));
                }
                let duplicate = logs
                    .iter()
                    .map(|log| &log.key)
                    .chain(witnesses.iter().map(|witness| &witness.key))
                    .any(|known| known.public_key() == key.public_key());
                if duplicate {
                    return Err(refuse(format!("the key of {text:?} is listed twice")));
                }
                Ok(key)
            };
            let too_many = |count: usize, what: &str| {
                (count >= MAX_POLICY_ITEMS).then(|| refuse(format!("more than {MAX_POLICY_ITEMS} {what}")))
            };
            match (*keyword, arguments) {
                ("log", [key] | [key, _]) => {
                    if let Some(error) = too_many(logs.len(), "logs") {
                        return Err(error);
                    }
                    let key = key_of(key, ALGORITHM_ED25519, "log")?;
                    logs.push(PolicyLog { key, url: arguments.get(1).map(|url| (*url).to_owned()) });
                }
                ("witness", [name, key] | [name, key, _]) => {
                    if let Some(error) = too_many(witnesses.len(), "witnesses") {
                        return Err(error);
                    }
                    let name = new_name(name)?;
                    let key = key_of(key, ALGORITHM_COSIGNATURE, "witness")?;
                    witnesses.push(PolicyWitness {
                        name,
                        key,
                        url: arguments.get(2).map(|url| (*url).to_owned()),
                    });
                }
                ("group", [name, threshold, members @ ..]) if !members.is_empty() => {
                    if let Some(error) = too_many(groups.len(), "groups") {
                        return Err(error);
                    }
                    let name = new_name(name)?;
                    let mut resolved = Vec::new();
                    for member in members.iter() {
                        let found = lookup(member).ok_or_else(|| {
                            refuse(format!("{member:?} is not a witness or group defined above"))
                        })?;
                        if resolved.contains(&found) {
                            return Err(refuse(format!("{member:?} is listed twice in group {name:?}")));
                        }
                        resolved.push(found);
                    }
                    let threshold = match *threshold {
                        "all" => resolved.len(),
                        "any" => 1,
                        number => {
                            decimal(number).filter(|k| (1..=resolved.len()).contains(k)).ok_or_else(|| {
                                refuse(format!(
                                    "the threshold is all, any, or a decimal from 1 to {} (got {number:?})",
                                    resolved.len()
                                ))
                            })?
                        }
                    };
                    groups.push(Group { name, threshold, members: resolved });
                }
                ("quorum", [name]) => {
                    if quorum.is_some() {
                        return Err(refuse("a second quorum line".into()));
                    }
                    let member = if *name == "none" { Some(Member::None) } else { lookup(name) };
                    quorum = Some(member.ok_or_else(|| {
                        refuse(format!("{name:?} is not none or a witness or group defined above"))
                    })?);
                }
                ("log" | "witness" | "group" | "quorum", _) => {
                    return Err(refuse(format!("wrong number of items on a {keyword} line")));
                }
                (other, _) => return Err(refuse(format!("unknown line type {other:?}"))),
            }
        }
        let quorum = quorum.ok_or_else(|| PolicyError { line: 0, reason: "no quorum line".into() })?;
        Ok(Policy { logs, witnesses, groups, quorum })
    }

    /// The trusted logs.
    pub fn logs(&self) -> &[PolicyLog] {
        &self.logs
    }

    /// The trusted witnesses.
    pub fn witnesses(&self) -> &[PolicyWitness] {
        &self.witnesses
    }

    /// Whether the quorum is `none`.
    pub fn needs_no_witness(&self) -> bool {
        self.quorum == Member::None
    }

    /// The log key of the policy whose name is `origin`.
    pub fn log_for(&self, origin: &str) -> Option<&VerifierKey> {
        self.logs.iter().map(|log| &log.key).find(|key| key.name() == origin)
    }

    /// Checks the cosignatures on `note` against the quorum rule; the policy
    /// names of the witnesses whose cosignature verified. A listed witness's
    /// line that does not verify refutes the note.
    pub fn check_cosignatures(&self, note: &Note) -> Result<Vec<String>, PolicyCheckError> {
        let keys: Vec<VerifierKey> = self.witnesses.iter().map(|witness| witness.key.clone()).collect();
        let verified = verified_cosigners(note, &keys)?;
        let cosigned: Vec<bool> = keys
            .iter()
            .map(|key| verified.iter().any(|(signer, _)| signer.public_key() == key.public_key()))
            .collect();
        let names: Vec<String> = self
            .witnesses
            .iter()
            .zip(&cosigned)
            .filter(|(_, cosigned)| **cosigned)
            .map(|(witness, _)| witness.name.clone())
            .collect();
        if self.met(self.quorum, &cosigned) {
            Ok(names)
        } else {
            Err(PolicyCheckError::QuorumNotMet { cosigners: names })
        }
    }

    /// The fewest cosignatures that can meet the quorum rule (0 for `none`):
    /// what a count-based alert compares the cosignatures gathered with.
    pub fn min_cosigners(&self) -> usize {
        self.fewest(self.quorum)
    }

    fn fewest(&self, member: Member) -> usize {
        match member {
            Member::None => 0,
            Member::Witness(_) => 1,
            Member::Group(index) => {
                let group = &self.groups[index];
                let mut costs: Vec<usize> = group.members.iter().map(|member| self.fewest(*member)).collect();
                costs.sort_unstable();
                costs.iter().take(group.threshold).sum()
            }
        }
    }

    fn met(&self, member: Member, cosigned: &[bool]) -> bool {
        match member {
            Member::None => true,
            Member::Witness(index) => cosigned[index],
            // Groups only name earlier definitions, so this recursion ends.
            Member::Group(index) => {
                let group = &self.groups[index];
                group.members.iter().filter(|member| self.met(**member, cosigned)).count() >= group.threshold
            }
        }
    }
}

fn decimal(text: &str) -> Option<usize> {
    let canonical = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && !text.starts_with('0');
    text.parse().ok().filter(|_| canonical)
}

#[cfg(test)]
mod tests;
