//! Attestations: the mark a writer puts on each record, so that the stage
//! that reads it believes only what a stage it trusts wrote
//! (docs/security.md, "Trust between stages").
//!
//! An attestation is one header, [`HEADER`], whose value is `KEY_ID MAC`:
//! the id of the key that made it and, in base64, a MAC or signature over
//! the record's topic, key, value and every other header of the pipeline's
//! own namespace ([`RESERVED_PREFIX`]: the verdict fields the record
//! carries), in their order. A record moved to another topic, or with one
//! byte of its value or of a verdict field changed, no longer verifies;
//! headers outside the namespace (a customer's own) are not covered, and
//! no stage reads them.
//!
//! Two kinds of key make them:
//! - a stage's secret key ([`StageKeys`]): HMAC-SHA256, for the records
//!   the validator and the aggregator write, at the rate of the stream;
//! - an Ed25519 signing key registered under a role (the compliance
//!   office's licence decisions, the operator's supply plan): a signature
//!   that whoever reads it can check and none of them can make.
//!
//! Nothing here touches files or the network: keys are parsed from text.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::time::Timestamp;

/// The header that carries a record's attestation.
pub const HEADER: &str = "forecast.attestation";

/// The prefix of the headers the pipeline writes: an attestation covers
/// every header of this namespace but itself.
pub const RESERVED_PREFIX: &str = "forecast.";

/// What the covered bytes start with: a MAC of anything else never
/// verifies as an attestation.
const DOMAIN: &[u8] = b"forecast-attestation/1\0";

/// Who a key speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A customer signing its submissions (the key registry's default).
    Customer,
    /// The validator's stage key.
    Validator,
    /// The aggregator's stage key.
    Aggregator,
    /// The compliance office, signing licence decisions.
    Compliance,
    /// The operator, signing supply plans.
    Operator,
    /// The supplier, signing its commits to customers.
    Supplier,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 6] = [
        Role::Customer,
        Role::Validator,
        Role::Aggregator,
        Role::Compliance,
        Role::Operator,
        Role::Supplier,
    ];

    /// The role's name, as key files spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Validator => "validator",
            Role::Aggregator => "aggregator",
            Role::Compliance => "compliance",
            Role::Operator => "operator",
            Role::Supplier => "supplier",
        }
    }

    /// Whether the role's key is a stage's secret (an HMAC key), rather
    /// than an Ed25519 key in the key registry.
    pub const fn is_stage(self) -> bool {
        matches!(self, Role::Validator | Role::Aggregator)
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    /// A role by its name ([`Role::as_str`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "`{s}` is not a role (customer, validator, aggregator, compliance, operator, supplier)"
                )
            })
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parts of a record an attestation covers besides its headers.
#[derive(Debug, Clone, Copy)]
pub struct Covered<'a> {
    /// The topic it is written to.
    pub topic: &'a str,
    /// Its key (`None`: null).
    pub key: Option<&'a [u8]>,
    /// Its value (`None`: null, a tombstone).
    pub value: Option<&'a [u8]>,
}

/// Where the covered bytes go: a MAC, or a buffer to sign.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Hmac<Sha256> {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// One part, framed so that no two records give the same bytes: a null
/// is `0`, bytes are `1`, their length (8 bytes, big-endian), themselves.
fn part(sink: &mut impl Sink, bytes: Option<&[u8]>) {
    match bytes {
        None => sink.put(&[0]),
        Some(b) => {
            sink.put(&[1]);
            sink.put(&(b.len() as u64).to_be_bytes());
            sink.put(b);
        }
    }
}

/// Feeds the covered bytes of a record to `sink`.
fn feed<'h>(
    sink: &mut impl Sink,
    record: Covered<'_>,
    headers: impl IntoIterator<Item = (&'h str, Option<&'h [u8]>)>,
) {
    sink.put(DOMAIN);
    part(sink, Some(record.topic.as_bytes()));
    part(sink, record.key);
    part(sink, record.value);
    for (name, value) in headers {
        if name.starts_with(RESERVED_PREFIX) && name != HEADER {
            part(sink, Some(name.as_bytes()));
            part(sink, value);
        }
    }
}

/// One line of a stage-key file: a stage's secret. JSON Lines, one key per
/// line (blank lines and `#` comments skipped):
///
/// ```text
/// {"key_id":"hmac-sha256:3f2a9c1b7d4e5f60","stage":"validator","secret":"<32 bytes, base64>","valid_from":"2026-12-01T00:00:00Z","revoked":false}
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageKeyEntry {
    /// The id attestations name.
    pub key_id: String,
    /// The stage it attests for: `validator` or `aggregator`.
    pub stage: Role,
    /// The 32 secret bytes, base64.
    pub secret: String,
    /// When the stage starts attesting with it: the stage attests with its
    /// key of the latest `valid_from` not after now, so a new key is rolled
    /// out to the readers first and used from its `valid_from`.
    pub valid_from: Timestamp,
    /// Revoked: what it attested is no longer believed.
    #[serde(default)]
    pub revoked: bool,
}

impl std::fmt::Debug for StageKeyEntry {
    // The secret stays out of logs and error messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageKeyEntry")
            .field("key_id", &self.key_id)
            .field("stage", &self.stage)
            .field("valid_from", &self.valid_from)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

impl StageKeyEntry {
    /// A new key for `stage` from the operating system's random source,
    /// valid from `valid_from`.
    pub fn generate(stage: Role, valid_from: Timestamp) -> Result<Self, KeyFileError> {
        if !stage.is_stage() {
            return Err(KeyFileError::NotAStage(stage));
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| KeyFileError::Random(e.to_string()))?;
        let entry = Self {
            key_id: stage_key_id(&secret),
            stage,
            secret: BASE64.encode(secret),
            valid_from,
            revoked: false,
        };
        secret.fill(0);
        Ok(entry)
    }

    /// The entry as one line of a stage-key file (no newline).
    pub fn line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The id of a stage key unless its file says otherwise: `hmac-sha256:`
/// and 16 hexadecimal digits of a SHA-256 of the secret (under a label of
/// its own, so it gives away nothing a MAC would use).
pub fn stage_key_id(secret: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(b"forecast-stage-key-id\0")
        .chain_update(secret)
        .finalize();
    format!("hmac-sha256:{}", crate::hex(&digest[..8]))
}

/// Why a key file could not be read. Never holds key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    /// A line that is not an entry.
    #[error("{name}, line {line}: {problem}")]
    Entry {
        name: String,
        line: usize,
        problem: String,
    },
    /// A role that has no stage key.
    #[error("`{0}` is not a stage: stage keys are for `validator` and `aggregator`")]
    NotAStage(Role),
    /// The system's random source failed.
    #[error("no randomness for a new key: {0}")]
    Random(String),
}

/// A stage key, ready to use.
#[derive(Clone)]
struct StageKey {
    entry: StageKeyEntry,
    /// The MAC keyed with the secret, cloned for each record.
    mac: Hmac<Sha256>,
}

/// The stage keys of a file: the secrets of the stages a process attests
/// for or believes.
#[derive(Clone, Default)]
pub struct StageKeys {
    keys: Vec<StageKey>,
}

impl std::fmt::Debug for StageKeys {
    // The secrets stay out of logs and error messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| &k.entry))
            .finish()
    }
}

impl StageKeys {
    /// Parses a stage-key file's text; `name` is what errors call it.
    pub fn from_text(text: &str, name: &str) -> Result<Self, KeyFileError> {
        let mut keys: Vec<StageKey> = Vec::new();
        for (line, entry) in crate::json::settings_lines::<StageKeyEntry>(text) {
            let error = |problem: String| KeyFileError::Entry {
                name: name.to_owned(),
                line,
                problem,
            };
            // serde's message may quote the line: never the secret's text.
            let entry = entry.map_err(|_| {
                error("not a stage key entry (key_id, stage, secret, valid_from, revoked)".into())
            })?;
            if !entry.stage.is_stage() {
                return Err(error(format!(
                    "key `{}`: `{}` is not a stage (validator or aggregator)",
                    entry.key_id, entry.stage
                )));
            }
            if entry.key_id.is_empty() || entry.key_id.contains(' ') {
                return Err(error("a key_id empty or holding a space".into()));
            }
            let secret = BASE64
                .decode(entry.secret.trim())
                .ok()
                .filter(|s| s.len() >= 32)
                .ok_or_else(|| {
                    error(format!(
                        "key `{}`: the secret is not 32 bytes or more in base64",
                        entry.key_id
                    ))
                })?;
            if keys.iter().any(|k| k.entry.key_id == entry.key_id) {
                return Err(error(format!("key `{}` is listed twice", entry.key_id)));
            }
            let mac = <Hmac<Sha256>>::new_from_slice(&secret)
                .map_err(|_| error(format!("key `{}`: unusable secret", entry.key_id)))?;
            keys.push(StageKey { entry, mac });
        }
        Ok(Self { keys })
    }

    /// The entries (with their secrets).
    pub fn entries(&self) -> impl Iterator<Item = &StageKeyEntry> {
        self.keys.iter().map(|k| &k.entry)
    }

    /// What `stage` attests with at `now`: its key, not revoked, of the
    /// latest `valid_from` not after `now`; `None` when it has none.
    pub fn attester(&self, stage: Role, now: Timestamp) -> Option<Attester> {
        self.keys
            .iter()
            .filter(|k| {
                k.entry.stage == stage
                    && !k.entry.revoked
                    && k.entry.valid_from.millis() <= now.millis()
            })
            .max_by_key(|k| k.entry.valid_from.millis())
            .map(|k| Attester {
                key_id: k.entry.key_id.clone(),
                mark: Mark::Mac(k.mac.clone()),
            })
    }

    /// Checks of the attestations of `stages`: every key of theirs, the
    /// revoked ones refusing what they attested.
    pub fn checks(&self, stages: &[Role]) -> Vec<(String, Check)> {
        self.keys
            .iter()
            .filter(|k| stages.contains(&k.entry.stage))
            .map(|k| {
                let check = Check {
                    role: k.entry.stage,
                    revoked: k.entry.revoked,
                    window: None,
                    how: How::Mac(k.mac.clone()),
                };
                (k.entry.key_id.clone(), check)
            })
            .collect()
    }
}

/// Base64 length of the longer mark, an Ed25519 signature (64 bytes; an
/// HMAC-SHA256 tag is 32).
const LONGEST_MARK: usize = 64usize.div_ceil(3) * 4;

/// How an attester marks a record.
#[derive(Clone)]
enum Mark {
    Mac(Hmac<Sha256>),
    Signature(SigningKey),
}

/// What attests the records a process writes: a stage's key, or a signing
/// key registered under a role.
#[derive(Clone)]
pub struct Attester {
    key_id: String,
    mark: Mark,
}

impl std::fmt::Debug for Attester {
    // The key stays out of logs and error messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attester")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Attester {
    /// Signs with `key` under `key_id` (the id its registry entry has).
    pub fn signing(key: SigningKey, key_id: String) -> Self {
        Self {
            key_id,
            mark: Mark::Signature(key),
        }
    }

    /// The id its attestations name.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The value of [`HEADER`] for `record` whose headers are `headers`
    /// (those outside the pipeline's namespace, and [`HEADER`], are
    /// passed over).
    pub fn attest<'h>(
        &self,
        record: Covered<'_>,
        headers: impl IntoIterator<Item = (&'h str, Option<&'h [u8]>)>,
    ) -> String {
        // `key_id mark`, built in one allocation of the right size: made
        // for every record a stage writes, where `format!` grew its string
        // five times.
        let mut value = String::with_capacity(self.key_id.len() + 1 + LONGEST_MARK);
        value.push_str(&self.key_id);
        value.push(' ');
        match &self.mark {
            Mark::Mac(mac) => {
                let mut mac = mac.clone();
                feed(&mut mac, record, headers);
                BASE64.encode_string(mac.finalize().into_bytes(), &mut value);
            }
            Mark::Signature(key) => {
                let mut bytes = Vec::new();
                feed(&mut bytes, record, headers);
                BASE64.encode_string(key.sign(&bytes).to_bytes(), &mut value);
            }
        }
        value
    }
}

/// How a key's attestations are checked.
#[derive(Clone)]
enum How {
    Mac(Hmac<Sha256>),
    Signature(VerifyingKey),
}

/// One key a verifier believes.
#[derive(Clone)]
pub struct Check {
    role: Role,
    revoked: bool,
    /// `[valid_from, valid_until)` the record's time must fall in (a
    /// registry key's; a stage key's attestations hold whenever made).
    window: Option<(Timestamp, Option<Timestamp>)>,
    how: How,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check")
            .field("role", &self.role)
            .field("revoked", &self.revoked)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Check {
    /// The check of a signing key registered under `role`, valid for
    /// records of `[valid_from, valid_until)`.
    pub fn signature(
        role: Role,
        public: VerifyingKey,
        valid_from: Timestamp,
        valid_until: Option<Timestamp>,
        revoked: bool,
    ) -> Self {
        Self {
            role,
            revoked,
            window: Some((valid_from, valid_until)),
            how: How::Signature(public),
        }
    }
}

/// Why a record is not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unattested {
    /// No [`HEADER`].
    #[error("no attestation: the record was not written by {0}")]
    Missing(String),
    /// Not `KEY_ID MAC`.
    #[error("a malformed attestation")]
    Malformed,
    /// A key this reader does not believe (named, bounded).
    #[error("attested with key `{0}`, which is not a key of {1}")]
    UnknownKey(String, String),
    /// The key is revoked.
    #[error("attested with key `{0}`, which is revoked")]
    Revoked(String),
    /// The record's time is outside the key's validity.
    #[error("attested with key `{0}` at a time it was not valid")]
    OutsideValidity(String),
    /// The MAC or signature does not match the record.
    #[error(
        "the attestation by key `{0}` does not match the record: it was changed, moved from another topic, or made with another key"
    )]
    Mismatch(String),
}

/// What a reader believes: the keys of the writers it trusts, or anything
/// (attestation off).
#[derive(Clone)]
pub struct Verifier {
    /// Who the keys belong to, for messages (`the validator`).
    whom: String,
    /// `None`: attestation off, everything believed.
    keys: Option<BTreeMap<String, Check>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("whom", &self.whom)
            .field(
                "keys",
                &self.keys.as_ref().map(|k| k.keys().collect::<Vec<_>>()),
            )
            .finish()
    }
}

/// Longest key id an error message repeats.
const MAX_ECHOED_ID: usize = 64;

impl Verifier {
    /// Believes records attested by one of `checks`' keys, which belong to
    /// `whom` (for messages).
    pub fn new(whom: impl Into<String>, checks: impl IntoIterator<Item = (String, Check)>) -> Self {
        Self {
            whom: whom.into(),
            keys: Some(checks.into_iter().collect()),
        }
    }

    /// Believes every record, attested or not: attestation off.
    pub fn believing_all() -> Self {
        Self {
            whom: "anyone".into(),
            keys: None,
        }
    }

    /// The role whose key attested `record`, or why it is not believed.
    /// `headers` are all of the record's headers, [`HEADER`] among them;
    /// `at` is the record's time (a registry key's validity is checked
    /// against it). With attestation off, `Ok(None)`.
    pub fn verify<'h, I>(
        &self,
        record: Covered<'_>,
        headers: I,
        at: Option<Timestamp>,
    ) -> Result<Option<Role>, Unattested>
    where
        I: IntoIterator<Item = (&'h str, Option<&'h [u8]>)>,
        I::IntoIter: Clone,
    {
        let Some(keys) = &self.keys else {
            return Ok(None);
        };
        let headers = headers.into_iter();
        let value = headers
            .clone()
            .filter(|(name, _)| *name == HEADER)
            .last()
            .and_then(|(_, v)| v)
            .ok_or_else(|| Unattested::Missing(self.whom.clone()))?;
        let value = std::str::from_utf8(value).map_err(|_| Unattested::Malformed)?;
        let (key_id, mark) = value.split_once(' ').ok_or(Unattested::Malformed)?;
        let echoed = || crate::limits::bounded(key_id, MAX_ECHOED_ID).into_owned();
        let check = keys
            .get(key_id)
            .ok_or_else(|| Unattested::UnknownKey(echoed(), self.whom.clone()))?;
        if check.revoked {
            return Err(Unattested::Revoked(echoed()));
        }
        if let Some((from, until)) = check.window {
            let at = at.map_or(i64::MIN, Timestamp::millis);
            if at < from.millis() || until.is_some_and(|u| at >= u.millis()) {
                return Err(Unattested::OutsideValidity(echoed()));
            }
        }
        let mark = BASE64.decode(mark).map_err(|_| Unattested::Malformed)?;
        let matches = match &check.how {
            How::Mac(mac) => {
                let mut mac = mac.clone();
                feed(&mut mac, record, headers);
                mac.verify_slice(&mark).is_ok()
            }
            How::Signature(public) => {
                let mut bytes = Vec::new();
                feed(&mut bytes, record, headers);
                let signature: Option<[u8; 64]> = mark.try_into().ok();
                signature.is_some_and(|s| {
                    public
                        .verify_strict(&bytes, &ed25519_dalek::Signature::from_bytes(&s))
                        .is_ok()
                })
            }
        };
        if matches {
            Ok(Some(check.role))
        } else {
            Err(Unattested::Mismatch(echoed()))
        }
    }
}

#[cfg(test)]
mod tests;
