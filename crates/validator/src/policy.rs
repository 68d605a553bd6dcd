//! The documentation requirements as settings: a TOML policy file whose
//! defaults are exactly the spec's "Default policy" table.
//!
//! Every setting is optional in the file (a missing one keeps its default);
//! an unknown key is an error, so a typo cannot silently keep a default.
//! The policy's version is a digest of its canonical form together with the
//! restricted-party list, so two validators that judge alike carry the same
//! version, and any change of a setting or of the list changes it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use forecast_model::{DocumentKind, EndUseCategory};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::restricted::{RestrictedListError, RestrictedParties};
use crate::text::{case_fold, words};

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("policy file {path} is not a valid policy: {source}")]
    Parse {
        path: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("policy setting `{setting}` {problem}")]
    Invalid {
        setting: &'static str,
        problem: String,
    },
    #[error(transparent)]
    RestrictedList(#[from] RestrictedListError),
}

/// The settings as written in a policy file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicySettings {
    /// Customer ids allowed to submit (compared exactly).
    pub registered_customers: BTreeSet<String>,
    /// SKUs that may be forecast (compared exactly).
    pub sku_catalogue: BTreeSet<String>,
    /// Fewest quarters a horizon may span.
    pub minimum_horizon_quarters: u32,
    /// Document kinds every ORIGINAL and REPLACE must carry.
    pub required_document_kinds: BTreeSet<DocumentKind>,
    /// End-use categories that are accepted.
    pub allowed_end_use_categories: BTreeSet<EndUseCategory>,
    /// Whole words that may not appear in the end-use description (any case).
    pub prohibited_end_use_terms: BTreeSet<String>,
    /// Largest quantity on one line.
    pub max_line_quantity: i64,
    /// Restricted-party list (CSV, Consolidated Screening List layout),
    /// relative to the policy file. None: nobody is restricted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restricted_parties: Option<PathBuf>,
}

impl Default for PolicySettings {
    fn default() -> Self {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Self {
            registered_customers: strings(&["TENCENT", "BYTEDANCE", "ALIBABA"]),
            sku_catalogue: strings(&["H20-96GB", "H20-141GB"]),
            minimum_horizon_quarters: 4,
            required_document_kinds: [
                DocumentKind::EndUseStatement,
                DocumentKind::EndUserCertificate,
                DocumentKind::NonReexportAttestation,
            ]
            .into(),
            allowed_end_use_categories: [
                EndUseCategory::AiInference,
                EndUseCategory::CloudServices,
                EndUseCategory::Research,
            ]
            .into(),
            prohibited_end_use_terms: strings(&[
                "military",
                "weapon",
                "weapons",
                "defense",
                "defence",
                "surveillance",
                "nuclear",
                "missile",
            ]),
            max_line_quantity: 200_000,
            restricted_parties: None,
        }
    }
}

/// A loaded policy: settings, the restricted-party list, and the version.
#[derive(Debug, Clone)]
pub struct Policy {
    settings: PolicySettings,
    /// Prohibited terms, case-folded.
    prohibited_terms: Vec<String>,
    restricted: RestrictedParties,
    version: String,
}

impl Default for Policy {
    fn default() -> Self {
        Self::new(PolicySettings::default(), RestrictedParties::empty())
            .unwrap_or_else(|_| unreachable!("the default policy is valid"))
    }
}

impl Policy {
    /// A policy from settings and a restricted-party list (the settings'
    /// `restricted_parties` path is not read here).
    pub fn new(
        settings: PolicySettings,
        restricted: RestrictedParties,
    ) -> Result<Self, PolicyError> {
        if settings.minimum_horizon_quarters == 0 {
            return Err(PolicyError::Invalid {
                setting: "minimum_horizon_quarters",
                problem: "must be at least 1".into(),
            });
        }
        if settings.max_line_quantity < 0 {
            return Err(PolicyError::Invalid {
                setting: "max_line_quantity",
                problem: format!("must not be negative (is {})", settings.max_line_quantity),
            });
        }
        let mut prohibited_terms = Vec::new();
        for term in &settings.prohibited_end_use_terms {
            let folded = case_fold(term).into_owned();
            if words(&folded).ne([folded.as_str()]) {
                return Err(PolicyError::Invalid {
                    setting: "prohibited_end_use_terms",
                    problem: format!(
                        "holds `{term}`, which is not one word of letters and digits and so could never match"
                    ),
                });
            }
            prohibited_terms.push(folded);
        }
        prohibited_terms.sort();
        prohibited_terms.dedup();
        let version = version_of(&settings, &restricted);
        Ok(Self {
            settings,
            prohibited_terms,
            restricted,
            version,
        })
    }

    /// Reads a policy file. `restricted_override`, when given, replaces the
    /// file's `restricted_parties`.
    pub fn load(
        path: Option<&Path>,
        restricted_override: Option<&Path>,
    ) -> Result<Self, PolicyError> {
        let settings = match path {
            None => PolicySettings::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
                let mut settings: PolicySettings =
                    toml::from_str(&text).map_err(|e| PolicyError::Parse {
                        path: path.display().to_string(),
                        source: Box::new(e),
                    })?;
                // A list named in the file is relative to the file.
                if let Some(list) = settings
                    .restricted_parties
                    .as_mut()
                    .filter(|p| p.is_relative())
                {
                    *list = path.parent().unwrap_or(Path::new(".")).join(&*list);
                }
                settings
            }
        };
        let list_path = restricted_override.or(settings.restricted_parties.as_deref());
        let restricted = match list_path {
            Some(p) => RestrictedParties::from_path(p)?,
            None => RestrictedParties::empty(),
        };
        Self::new(settings, restricted)
    }

    /// The settings.
    pub fn settings(&self) -> &PolicySettings {
        &self.settings
    }

    /// The restricted-party list.
    pub fn restricted_parties(&self) -> &RestrictedParties {
        &self.restricted
    }

    /// Prohibited end-use terms, case-folded and sorted.
    pub fn prohibited_terms(&self) -> &[String] {
        &self.prohibited_terms
    }

    /// `sha256:` and the first 16 hex digits of the digest of the canonical
    /// settings and the normalised restricted-party names.
    pub fn version(&self) -> &str {
        &self.version
    }
}

fn version_of(settings: &PolicySettings, restricted: &RestrictedParties) -> String {
    // Canonical form: the settings as JSON (sets are sorted; the list's path
    // is left out since its contents are hashed), then the list.
    let mut canonical = settings.clone();
    canonical.restricted_parties = None;
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(&canonical).unwrap_or_default());
    for name in restricted.normal_forms() {
        hasher.update(b"\n");
        hasher.update(name.as_bytes());
    }
    let digest = hasher.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_spec_table() {
        let p = PolicySettings::default();
        assert_eq!(p.registered_customers.len(), 3);
        assert!(p.registered_customers.contains("BYTEDANCE"));
        assert_eq!(
            p.sku_catalogue.iter().collect::<Vec<_>>(),
            ["H20-141GB", "H20-96GB"]
        );
        assert_eq!(p.minimum_horizon_quarters, 4);
        assert_eq!(p.max_line_quantity, 200_000);
        assert_eq!(p.prohibited_end_use_terms.len(), 8);
        assert!(
            !p.allowed_end_use_categories
                .contains(&EndUseCategory::AiTraining)
        );
        assert!(
            !p.allowed_end_use_categories
                .contains(&EndUseCategory::Other)
        );
        assert_eq!(p.required_document_kinds.len(), 3);
    }

    #[test]
    fn an_empty_file_is_the_default_policy_and_the_shipped_file_too() {
        let empty: PolicySettings = toml::from_str("").unwrap();
        assert_eq!(empty, PolicySettings::default());
        let shipped: PolicySettings =
            toml::from_str(include_str!("../../../examples/policy.toml")).unwrap();
        let mut shipped_no_list = shipped.clone();
        shipped_no_list.restricted_parties = None;
        assert_eq!(shipped_no_list, PolicySettings::default());
    }

    #[test]
    fn version_changes_with_any_setting_or_the_list() {
        let base = Policy::default();
        assert_eq!(base.version(), Policy::default().version());
        assert!(base.version().starts_with("sha256:") && base.version().len() == 23);
        let mut s = PolicySettings::default();
        s.max_line_quantity += 1;
        assert_ne!(
            Policy::new(s, RestrictedParties::empty())
                .unwrap()
                .version(),
            base.version()
        );
        let list =
            RestrictedParties::from_reader("name,alt_names\nAcme,\n".as_bytes(), "t").unwrap();
        assert_ne!(
            Policy::new(PolicySettings::default(), list)
                .unwrap()
                .version(),
            base.version()
        );
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let err = toml::from_str::<PolicySettings>("max_line_qty = 5").unwrap_err();
        assert!(err.to_string().contains("max_line_qty"), "{err}");
        let err = toml::from_str::<PolicySettings>("required_document_kinds = [\"PASSPORT\"]")
            .unwrap_err();
        assert!(err.to_string().contains("PASSPORT"), "{err}");
        let s = PolicySettings {
            prohibited_end_use_terms: ["dual use".to_string()].into(),
            ..PolicySettings::default()
        };
        let err = Policy::new(s, RestrictedParties::empty()).unwrap_err();
        assert!(
            err.to_string().contains("prohibited_end_use_terms"),
            "{err}"
        );
        let s = PolicySettings {
            minimum_horizon_quarters: 0,
            ..PolicySettings::default()
        };
        assert!(
            Policy::new(s, RestrictedParties::empty())
                .unwrap_err()
                .to_string()
                .contains("minimum_horizon_quarters")
        );
    }
}
