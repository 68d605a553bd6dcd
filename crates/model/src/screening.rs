//! Restricted-party screening: the list in the layout of the U.S.
//! Consolidated Screening List (its CSV export or its JSON form), its
//! versions as `forecastctl screening load` publishes them, the index an
//! end user is matched against, and the delta between two versions that
//! re-screening looks up (never every document against every entry).

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::Timestamp;
use crate::text::normalize_party_name;

/// Why a restricted-party list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RestrictedListError {
    #[error("cannot read restricted-party list {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("restricted-party list {path} is not a readable CSV: {source}")]
    Csv {
        path: String,
        #[source]
        source: csv::Error,
    },
    #[error(
        "restricted-party list {path} is not the Consolidated Screening List's JSON form ({{\"results\": [{{\"name\": ..., \"alt_names\": [...]}}]}} or a bare array of such entries): {problem}"
    )]
    Json { path: String, problem: String },
    #[error(
        "restricted-party list {path} has no `name` column; expected the Consolidated Screening List layout (columns name, alt_names, ...)"
    )]
    NoNameColumn { path: String },
}

/// One entry of a list: a restricted party and its other names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The list's own id for it (`_id` or `id`; empty when the file has none).
    pub id: String,
    pub name: String,
    /// Its other names (CSV: the `alt_names` column split at `;`).
    pub alt_names: Vec<String>,
}

const BOM: &str = "\u{feff}";

/// Reads the entries of a list file: the CSV export (columns `name` and
/// `alt_names` used, `_id` or `id` kept, the rest ignored; a BOM, empty
/// fields and quoted newlines are fine) or the JSON form (an object whose
/// `results` is an array of entries, or a bare array; `alt_names` an array
/// or a `;`-separated string). `origin` names the file in errors.
pub fn read_entries(bytes: &[u8], origin: &str) -> Result<Vec<ListEntry>, RestrictedListError> {
    let bytes = bytes.strip_prefix(BOM.as_bytes()).unwrap_or(bytes);
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{' | b'[') => json_entries(bytes, origin),
        _ => csv_entries(bytes, origin),
    }
}

fn csv_entries(bytes: &[u8], origin: &str) -> Result<Vec<ListEntry>, RestrictedListError> {
    let csv_err = |source| RestrictedListError::Csv {
        path: origin.to_owned(),
        source,
    };
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let headers = reader.headers().map_err(csv_err)?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().trim_start_matches(BOM) == name)
    };
    let name_col = column("name").ok_or_else(|| RestrictedListError::NoNameColumn {
        path: origin.to_owned(),
    })?;
    let alt_col = column("alt_names");
    let id_col = column("_id").or_else(|| column("id"));
    let mut entries = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_err)?;
        let field = |c: Option<usize>| c.and_then(|c| record.get(c)).unwrap_or_default();
        entries.push(ListEntry {
            id: field(id_col).trim().to_owned(),
            name: field(Some(name_col)).trim().to_owned(),
            alt_names: split_alt_names(field(alt_col)),
        });
    }
    Ok(entries)
}

fn split_alt_names(s: &str) -> Vec<String> {
    s.split(';')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

fn json_entries(bytes: &[u8], origin: &str) -> Result<Vec<ListEntry>, RestrictedListError> {
    use serde_json::Value;
    let fail = |problem: String| RestrictedListError::Json {
        path: origin.to_owned(),
        problem,
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| fail(e.to_string()))?;
    let results = match value {
        Value::Array(items) => items,
        Value::Object(mut o) => match o.remove("results") {
            Some(Value::Array(items)) => items,
            _ => return Err(fail("the object has no `results` array".into())),
        },
        _ => unreachable!("read_entries sends only `{{` or `[` here"),
    };
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    results
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let Value::Object(o) = item else {
                return Err(fail(format!("results[{i}] is not an object")));
            };
            let alt_names = match o.get("alt_names") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(s)) => split_alt_names(s),
                Some(Value::Array(names)) => names
                    .iter()
                    .filter_map(Value::as_str)
                    .flat_map(split_alt_names)
                    .collect(),
                Some(_) => {
                    return Err(fail(format!(
                        "results[{i}].alt_names is neither an array nor a string"
                    )));
                }
            };
            Ok(ListEntry {
                id: text(o.get("id").or_else(|| o.get("_id"))),
                name: text(o.get("name")),
                alt_names,
            })
        })
        .collect()
}

/// One version of the list: what `forecastctl screening load` publishes to
/// the compacted topic `screening.lists`, and what the validator screens
/// new submissions and the aggregator re-screens live documents against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScreeningList {
    /// Its id (given to `screening load`, or `csl-` and the first 12 hex
    /// digits of `sha256`).
    pub version: String,
    /// When its publisher says it takes effect (informative: the version
    /// in force is the one published last).
    pub effective_from: Timestamp,
    /// SHA-256 of the file it was read from, hex (what `sha256sum FILE`
    /// prints).
    pub sha256: String,
    pub entries: Vec<ListEntry>,
}

impl ScreeningList {
    /// The list of a file's bytes; `version` defaults to one derived from
    /// the bytes' digest.
    pub fn from_bytes(
        bytes: &[u8],
        origin: &str,
        version: Option<String>,
        effective_from: Timestamp,
    ) -> Result<Self, RestrictedListError> {
        let sha256 = crate::hex(&Sha256::digest(bytes));
        Ok(Self {
            version: version.unwrap_or_else(|| format!("csl-{}", &sha256[..12])),
            effective_from,
            entries: read_entries(bytes, origin)?,
            sha256,
        })
    }

    /// Reads a list file ([`Self::from_bytes`]).
    pub fn read(
        path: &Path,
        version: Option<String>,
        effective_from: Timestamp,
    ) -> Result<Self, RestrictedListError> {
        let bytes = std::fs::read(path).map_err(|source| RestrictedListError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes, &path.display().to_string(), version, effective_from)
    }

    /// The index its entries give.
    pub fn parties(&self) -> RestrictedParties {
        RestrictedParties::from_entries(&self.entries)
    }
}

/// Normalised restricted-party names, each with the listed name it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestrictedParties {
    by_normal_form: HashMap<String, String>,
}

/// What changed from one list to the next, as normal forms: the names an
/// end user can newly match, and the names it can no longer match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListDelta {
    /// In the newer list and not in the older one; sorted.
    pub listed: Vec<String>,
    /// In the older list and not in the newer one; sorted.
    pub delisted: Vec<String>,
}

impl ListDelta {
    /// Whether no name was listed or delisted.
    pub fn is_empty(&self) -> bool {
        self.listed.is_empty() && self.delisted.is_empty()
    }
}

impl RestrictedParties {
    /// An empty list: nobody is restricted.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Reads a list file ([`read_entries`]).
    pub fn from_path(path: &Path) -> Result<Self, RestrictedListError> {
        let bytes = std::fs::read(path).map_err(|source| RestrictedListError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_reader(&bytes[..], &path.display().to_string())
    }

    /// Reads list text ([`read_entries`]); `origin` names it in errors.
    pub fn from_reader(
        mut input: impl std::io::Read,
        origin: &str,
    ) -> Result<Self, RestrictedListError> {
        let mut bytes = Vec::new();
        input
            .read_to_end(&mut bytes)
            .map_err(|source| RestrictedListError::Io {
                path: origin.to_owned(),
                source,
            })?;
        Ok(Self::from_entries(&read_entries(&bytes, origin)?))
    }

    /// The index of `entries`' names and other names. Of two entries with
    /// the same normal form, the first names it.
    pub fn from_entries(entries: &[ListEntry]) -> Self {
        let mut list = Self::default();
        for entry in entries {
            list.add(&entry.name, &entry.name);
            for alt in &entry.alt_names {
                list.add(alt, &entry.name);
            }
        }
        list
    }

    fn add(&mut self, name: &str, listed_as: &str) {
        let key = normalize_party_name(name);
        if !key.is_empty() {
            self.by_normal_form
                .entry(key)
                .or_insert_with(|| listed_as.trim().to_owned());
        }
    }

    /// The listed name `name` matches, if any. A name that normalises to
    /// nothing matches nothing.
    pub fn matches(&self, name: &str) -> Option<&str> {
        let key = normalize_party_name(name);
        if key.is_empty() {
            return None;
        }
        self.matches_normal(&key)
    }

    /// The listed name a normal form ([`normalize_party_name`]) matches.
    pub fn matches_normal(&self, normal: &str) -> Option<&str> {
        self.by_normal_form.get(normal).map(String::as_str)
    }

    /// Number of distinct normalised names.
    pub fn len(&self) -> usize {
        self.by_normal_form.len()
    }

    /// True when nobody is restricted.
    pub fn is_empty(&self) -> bool {
        self.by_normal_form.is_empty()
    }

    /// The normalised names, sorted (for the policy version).
    pub fn normal_forms(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.by_normal_form.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// What an end user can match under `newer` and not under this list,
    /// and the reverse: one pass over each list's names.
    pub fn delta(&self, newer: &Self) -> ListDelta {
        let only = |a: &Self, b: &Self| {
            let mut v: Vec<String> = a
                .by_normal_form
                .keys()
                .filter(|k| !b.by_normal_form.contains_key(*k))
                .cloned()
                .collect();
            v.sort_unstable();
            v
        };
        ListDelta {
            listed: only(newer, self),
            delisted: only(self, newer),
        }
    }
}

#[cfg(test)]
mod tests;
