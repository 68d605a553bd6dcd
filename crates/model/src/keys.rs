//! The key registry: which Ed25519 public key may sign for which customer,
//! or for which role (the compliance office's licence decisions, the
//! operator's supply plan), and when (docs/signatures.md).
//!
//! A JSON Lines file, one key per line, so that `forecastctl keys generate
//! ... >> keys.jsonl` registers a key; blank lines and lines starting with
//! `#` are skipped:
//!
//! ```text
//! {"key_id":"ed25519:3f2a9c1b7d4e5f60","customer_id":"TENCENT","public_key":"<32 bytes, base64>","valid_from":"2026-01-01T00:00:00Z","valid_until":"2027-01-01T00:00:00Z","revoked":false}
//! ```
//!
//! A key signs for `submitted_at` in `[valid_from, valid_until)`
//! (`valid_until` null: no end); a revoked key signs nothing, whatever the
//! date. Unknown members are an error, so a typo (`"revokd": true`) cannot
//! leave a key in service.
//!
//! A key of a role other than `customer` has `"role"` and no
//! `customer_id`; it signs records, not documents, and its validity is
//! checked against the record's time:
//!
//! ```text
//! {"key_id":"ed25519:9b1c...","role":"compliance","public_key":"<32 bytes, base64>","valid_from":"2026-01-01T00:00:00Z"}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use crate::attest::{Check, Role};
use crate::signing::{self, VerifyingKey};
use crate::{ForecastDocument, Timestamp};
use serde::{Deserialize, Serialize};

/// One line of the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The id signatures name (`signature.key_id`).
    pub key_id: String,
    /// Whom the key speaks for: `customer` (the default), `compliance` or
    /// `operator`.
    #[serde(default = "customer", skip_serializing_if = "is_customer")]
    pub role: Role,
    /// The one customer this key signs for (a customer's key only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub customer_id: String,
    /// The 32 public-key bytes in base64, or an SPKI PEM.
    pub public_key: String,
    /// First instant the key signs for.
    pub valid_from: Timestamp,
    /// First instant it no longer signs for; null for no end.
    #[serde(default)]
    pub valid_until: Option<Timestamp>,
    /// Revoked: signs nothing, whatever the date.
    #[serde(default)]
    pub revoked: bool,
}

fn customer() -> Role {
    Role::Customer
}

fn is_customer(role: &Role) -> bool {
    *role == Role::Customer
}

impl KeyEntry {
    /// The entry of `signer`'s public key, under the key id its signatures
    /// carry, for `customer_id`, valid from `valid_from` until
    /// `valid_until` (none: no end), not revoked.
    pub fn for_signer(
        signer: &signing::Signer,
        customer_id: &str,
        valid_from: Timestamp,
        valid_until: Option<Timestamp>,
    ) -> Self {
        KeyEntry {
            key_id: signer.key_id().to_owned(),
            role: Role::Customer,
            customer_id: customer_id.to_owned(),
            public_key: signing::public_key_base64(&signer.public_key()),
            valid_from,
            valid_until,
            revoked: false,
        }
    }
}

/// Why a key registry could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyRegistryError {
    #[error("cannot read key registry {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("key registry {path}, line {line}: {problem}")]
    Entry {
        path: String,
        line: usize,
        problem: String,
    },
}

/// A loaded key.
#[derive(Debug, Clone)]
struct Key {
    entry: KeyEntry,
    public: VerifyingKey,
}

/// The registered keys, by id.
#[derive(Debug, Clone, Default)]
pub struct KeyRegistry {
    keys: BTreeMap<String, Key>,
}

/// What a document's signature says of it, against the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Not signed.
    Missing,
    /// No key has this id.
    UnknownKey,
    /// The key signs for another customer (named).
    OtherCustomer(String),
    /// The key is a role's, not a customer's.
    NotACustomersKey(Role),
    /// `submitted_at` is before the key's `valid_from`.
    NotYetValid(Timestamp),
    /// `submitted_at` is at or after the key's `valid_until`.
    Expired(Timestamp),
    /// The key is revoked.
    Revoked,
    /// The signature does not verify (why).
    Invalid(String),
}

impl KeyRegistry {
    /// Reads a registry file.
    pub fn from_path(path: &Path) -> Result<Self, KeyRegistryError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyRegistryError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_text(&text, &path.display().to_string())
    }

    /// Parses a registry's text; `name` is what errors call it.
    pub fn from_text(text: &str, name: &str) -> Result<Self, KeyRegistryError> {
        let mut entries = Vec::new();
        for (line, entry) in crate::json::settings_lines::<KeyEntry>(text) {
            let entry = entry.map_err(|e| KeyRegistryError::Entry {
                path: name.to_owned(),
                line,
                problem: format!("not a key entry: {e}"),
            })?;
            entries.push((line, entry));
        }
        Self::from_numbered(entries, name)
    }

    /// A registry of `entries` (errors name their position, from 1).
    pub fn from_entries(entries: Vec<KeyEntry>) -> Result<Self, KeyRegistryError> {
        Self::from_numbered(
            entries.into_iter().enumerate().map(|(i, e)| (i + 1, e)),
            "entries",
        )
    }

    fn from_numbered(
        entries: impl IntoIterator<Item = (usize, KeyEntry)>,
        name: &str,
    ) -> Result<Self, KeyRegistryError> {
        let mut keys = BTreeMap::new();
        // Each public key's line: one key under two ids (or two customers)
        // would let a signature move to an alias that was not revoked.
        let mut lines_of_key: BTreeMap<[u8; 32], (usize, String)> = BTreeMap::new();
        for (line, entry) in entries {
            let error = |problem: String| KeyRegistryError::Entry {
                path: name.to_owned(),
                line,
                problem,
            };
            let public = signing::public_key_from_text(&entry.public_key)
                .map_err(|e| error(format!("key `{}`: {e}", entry.key_id)))?;
            if entry.key_id.is_empty() || entry.key_id.contains(' ') {
                return Err(error("a key_id empty or holding a space".into()));
            }
            match (entry.role, entry.customer_id.is_empty()) {
                (Role::Customer, true) => {
                    return Err(error(format!(
                        "key `{}` names no customer_id (a role's key says its role)",
                        entry.key_id
                    )));
                }
                (Role::Compliance | Role::Operator | Role::Supplier, false) => {
                    return Err(error(format!(
                        "key `{}` is the {}'s and names a customer_id: a key speaks for one of them",
                        entry.key_id, entry.role
                    )));
                }
                (Role::Validator | Role::Aggregator, _) => {
                    return Err(error(format!(
                        "key `{}`: a stage's key is a secret and lives in the stage-key file, not in the registry",
                        entry.key_id
                    )));
                }
                _ => {}
            }
            if let Some(until) = entry
                .valid_until
                .filter(|u| u.millis() <= entry.valid_from.millis())
            {
                return Err(error(format!(
                    "key `{}` is valid until {until}, not after it is valid from {}",
                    entry.key_id, entry.valid_from
                )));
            }
            if keys.contains_key(&entry.key_id) {
                return Err(error(format!("key `{}` is registered twice", entry.key_id)));
            }
            if let Some((first, first_id)) = lines_of_key.get(public.as_bytes()) {
                return Err(error(format!(
                    "key `{}` has the public key of `{first_id}` ({name}, line {first}): a public key is registered once, under one key_id for one customer; revoke one and register a new key instead",
                    entry.key_id
                )));
            }
            lines_of_key.insert(*public.as_bytes(), (line, entry.key_id.clone()));
            keys.insert(entry.key_id.clone(), Key { entry, public });
        }
        Ok(Self { keys })
    }

    /// The entries, by key id.
    pub fn entries(&self) -> impl Iterator<Item = &KeyEntry> {
        self.keys.values().map(|k| &k.entry)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is registered.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Everything wrong with `doc`'s signature, in the order of
    /// docs/signatures.md; empty when it is signed by a key registered for
    /// its customer, valid at its `submitted_at`, and verifies. An unknown
    /// key is the only finding when it is one (there is nothing to check
    /// the rest against); otherwise the signature is verified whatever
    /// else is wrong.
    pub fn check(&self, doc: &ForecastDocument) -> Vec<Finding> {
        let Some(signature) = &doc.signature else {
            return vec![Finding::Missing];
        };
        let Some(key) = self.keys.get(&signature.key_id) else {
            return vec![Finding::UnknownKey];
        };
        let mut findings = Vec::new();
        let entry = &key.entry;
        if entry.role != Role::Customer {
            findings.push(Finding::NotACustomersKey(entry.role));
        } else if entry.customer_id != doc.customer_id {
            findings.push(Finding::OtherCustomer(entry.customer_id.clone()));
        }
        if entry.revoked {
            findings.push(Finding::Revoked);
        }
        let at = doc.submitted_at.millis();
        if at < entry.valid_from.millis() {
            findings.push(Finding::NotYetValid(entry.valid_from));
        }
        if let Some(until) = entry.valid_until.filter(|u| at >= u.millis()) {
            findings.push(Finding::Expired(until));
        }
        if let Err(e) = signing::verify(doc, &key.public) {
            findings.push(Finding::Invalid(e.to_string()));
        }
        findings
    }

    /// The checks of the record signatures of `role`'s keys.
    pub fn checks(&self, role: Role) -> Vec<(String, Check)> {
        self.keys
            .iter()
            .filter(|(_, k)| k.entry.role == role)
            .map(|(id, k)| {
                let e = &k.entry;
                let check =
                    Check::signature(role, k.public, e.valid_from, e.valid_until, e.revoked);
                (id.clone(), check)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::SigningKey;

    fn entry(key: &SigningKey, id: &str, customer: &str) -> KeyEntry {
        KeyEntry {
            key_id: id.into(),
            role: Role::Customer,
            customer_id: customer.into(),
            public_key: signing::public_key_base64(&key.verifying_key()),
            valid_from: "2026-01-01T00:00:00Z".parse().unwrap(),
            valid_until: Some("2027-01-01T00:00:00Z".parse().unwrap()),
            revoked: false,
        }
    }

    fn text(entries: &[KeyEntry]) -> String {
        entries
            .iter()
            .map(|e| serde_json::to_string(e).unwrap() + "\n")
            .collect()
    }

    #[test]
    fn reads_lines_skipping_comments_and_blanks() {
        let k = SigningKey::from_bytes(&[7; 32]);
        let registry = KeyRegistry::from_text(
            &format!("# keys\n\n{}", text(&[entry(&k, "a", "TENCENT")])),
            "t",
        )
        .unwrap();
        assert_eq!(registry.len(), 1);
        assert_eq!(registry.entries().next().unwrap().key_id, "a");
    }

    #[test]
    fn bad_entries_name_the_line_and_never_the_key_material() {
        let k = SigningKey::from_bytes(&[7; 32]);
        let one = entry(&k, "a", "TENCENT");
        let err = |t: &str| {
            KeyRegistry::from_text(t, "keys.jsonl")
                .unwrap_err()
                .to_string()
        };
        let twice = err(&text(&[one.clone(), one.clone()]));
        assert!(
            twice.contains("line 2") && twice.contains("registered twice"),
            "{twice}"
        );
        let typo = err(&text(std::slice::from_ref(&one)).replace("\"revoked\"", "\"revokd\""));
        assert!(typo.contains("line 1") && typo.contains("revokd"), "{typo}");
        let mut backwards = one.clone();
        backwards.valid_until = Some(backwards.valid_from);
        assert!(err(&text(&[backwards])).contains("not after"));
        // One public key under two ids, or for two customers: both lines named.
        for alias in [entry(&k, "b", "TENCENT"), entry(&k, "b", "BYTEDANCE")] {
            let msg = err(&text(&[
                entry(&SigningKey::from_bytes(&[8; 32]), "c", "ALIBABA"),
                one.clone(),
                alias,
            ]));
            assert!(
                msg.contains("line 3")
                    && msg.contains("line 2")
                    && msg.contains("`b`")
                    && msg.contains("`a`"),
                "{msg}"
            );
        }
        let mut bad_key = one.clone();
        bad_key.public_key = "AAAA".into();
        let msg = err(&text(&[bad_key]));
        assert!(msg.contains("not an Ed25519 public key"), "{msg}");
    }
}
