//! Restricted-party screening against a list in the layout of the U.S.
//! Consolidated Screening List CSV export.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

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
        "restricted-party list {path} has no `name` column; expected the Consolidated Screening List layout (columns name, alt_names, ...)"
    )]
    NoNameColumn { path: String },
}

/// Normalised restricted-party names, each with the listed name it came from.
#[derive(Debug, Clone, Default)]
pub struct RestrictedParties {
    by_normal_form: HashMap<String, String>,
}

impl RestrictedParties {
    /// An empty list: nobody is restricted.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Reads a CSV file in the Consolidated Screening List layout.
    pub fn from_path(path: &Path) -> Result<Self, RestrictedListError> {
        let file = std::fs::File::open(path).map_err(|source| RestrictedListError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_reader(file, &path.display().to_string())
    }

    /// Reads CSV text in the Consolidated Screening List layout; `origin`
    /// names it in errors. The `name` column and the `;`-separated
    /// `alt_names` column are used; other columns are ignored.
    pub fn from_reader(input: impl Read, origin: &str) -> Result<Self, RestrictedListError> {
        let csv_err = |source| RestrictedListError::Csv {
            path: origin.to_owned(),
            source,
        };
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
        let headers = reader.headers().map_err(csv_err)?.clone();
        let column = |name: &str| {
            headers
                .iter()
                .position(|h| h.trim().trim_start_matches('\u{feff}') == name)
        };
        let name_col = column("name").ok_or_else(|| RestrictedListError::NoNameColumn {
            path: origin.to_owned(),
        })?;
        let alt_col = column("alt_names");
        let mut list = Self::default();
        for record in reader.records() {
            let record = record.map_err(csv_err)?;
            let listed = record.get(name_col).unwrap_or_default();
            list.add(listed, listed);
            if let Some(alts) = alt_col.and_then(|c| record.get(c)) {
                for alt in alts.split(';') {
                    list.add(alt, listed);
                }
            }
        }
        Ok(list)
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
        self.by_normal_form.get(&key).map(String::as_str)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "_id,source,name,alt_names,addresses\n\
        id0,EL,\"Red Lantern Advanced Systems Co., Ltd.\",RLAS; Red Lantern Systems Group,\"x, CN\"\n\
        id1,EL,Jade River Computing Corporation,,\n\
        id2,EL,\"Co., Ltd.\",,\n";

    #[test]
    fn matches_names_and_alt_names_after_normalising() {
        let list = RestrictedParties::from_reader(CSV.as_bytes(), "test").unwrap();
        let listed = Some("Red Lantern Advanced Systems Co., Ltd.");
        assert_eq!(list.matches("RED LANTERN advanced systems"), listed);
        assert_eq!(list.matches("rlas"), listed);
        assert_eq!(list.matches("Red-Lantern Systems"), listed);
        assert_eq!(
            list.matches("Jade River Computing Co Ltd"),
            Some("Jade River Computing Corporation")
        );
        assert_eq!(list.matches("Jade River"), None);
        // Names that normalise to nothing match nothing, even an empty-named entry.
        assert_eq!(list.matches("Ltd."), None);
        assert_eq!(list.matches(""), None);
        assert_eq!(list.len(), 4);
    }

    #[test]
    fn a_list_without_a_name_column_is_refused() {
        let err =
            RestrictedParties::from_reader("id,entity\n1,x\n".as_bytes(), "list.csv").unwrap_err();
        assert!(err.to_string().contains("no `name` column"), "{err}");
    }
}
