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

use forecast_model::{DocumentKind, DocumentLimits, EndUseCategory};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::keys::{KeyRegistry, KeyRegistryError};
use forecast_model::screening::{RestrictedListError, RestrictedParties, ScreeningList};
use forecast_model::text::{case_fold, words};

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
    #[error(transparent)]
    KeyRegistry(#[from] KeyRegistryError),
}

/// Whether submissions must carry a signature (docs/signatures.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureMode {
    /// Every submission must be signed by a key registered for its customer.
    Required,
    /// A signature is checked when present; an unsigned submission passes.
    Optional,
    /// Signatures are not looked at (the spec's behaviour).
    Off,
}

impl std::str::FromStr for SignatureMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "required" => Ok(Self::Required),
            "optional" => Ok(Self::Optional),
            "off" => Ok(Self::Off),
            other => Err(format!(
                "`{other}` is not a signature policy: required, optional or off"
            )),
        }
    }
}

/// Largest distance between `submitted_at` and the broker's timestamp the
/// live validator accepts from a signed submission, unless set: 5 minutes.
pub const DEFAULT_MAX_SUBMITTED_AT_SKEW_SECONDS: u64 = 300;

fn is_default_skew(seconds: &u64) -> bool {
    *seconds == DEFAULT_MAX_SUBMITTED_AT_SKEW_SECONDS
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
    /// Whether submissions must be signed. Unset: `required` when a key
    /// registry is configured, `off` otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signatures: Option<SignatureMode>,
    /// Key registry (JSON Lines, [`crate::keys`]), relative to the policy
    /// file. None: no keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_keys: Option<PathBuf>,
    /// With signatures required, the live validator rejects a submission
    /// whose `submitted_at` is further than this from the record's broker
    /// timestamp (`SUBMITTED_AT_SKEW`), so that a stolen expired key cannot
    /// backdate. Offline replay has no broker time and skips it.
    #[serde(skip_serializing_if = "is_default_skew")]
    pub max_submitted_at_skew_seconds: u64,
    /// Largest document, as its Avro record (`DOCUMENT_TOO_LARGE`).
    #[serde(skip_serializing_if = "is_default_bytes")]
    pub max_document_bytes: usize,
    /// Most lines of one document (`DOCUMENT_TOO_LARGE`).
    #[serde(skip_serializing_if = "is_default_lines")]
    pub max_document_lines: usize,
    /// Longest `document_id` and `customer_id` in bytes (`DOCUMENT_TOO_LARGE`).
    #[serde(skip_serializing_if = "is_default_id_bytes")]
    pub max_id_bytes: usize,
}

// Left out of the policy version while at their defaults, as the skew is:
// a policy's version does not change by this build knowing more settings.
fn is_default_bytes(v: &usize) -> bool {
    *v == DocumentLimits::DEFAULT.max_document_bytes
}
fn is_default_lines(v: &usize) -> bool {
    *v == DocumentLimits::DEFAULT.max_document_lines
}
fn is_default_id_bytes(v: &usize) -> bool {
    *v == DocumentLimits::DEFAULT.max_id_bytes
}

impl PolicySettings {
    /// Reads a policy file's settings, without the files it names (which
    /// are made relative to it).
    pub fn read(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mut settings: PolicySettings =
            toml::from_str(&text).map_err(|e| PolicyError::Parse {
                path: path.display().to_string(),
                source: Box::new(e),
            })?;
        // Files named in the policy file are relative to it.
        let dir = path.parent().unwrap_or(Path::new("."));
        for named in [&mut settings.restricted_parties, &mut settings.signing_keys] {
            if let Some(file) = named.as_mut().filter(|p| p.is_relative()) {
                *file = dir.join(&*file);
            }
        }
        Ok(settings)
    }

    /// The document size limits.
    pub fn limits(&self) -> DocumentLimits {
        DocumentLimits {
            max_document_bytes: self.max_document_bytes,
            max_document_lines: self.max_document_lines,
            max_id_bytes: self.max_id_bytes,
        }
    }
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
            signatures: None,
            signing_keys: None,
            max_submitted_at_skew_seconds: DEFAULT_MAX_SUBMITTED_AT_SKEW_SECONDS,
            max_document_bytes: DocumentLimits::DEFAULT.max_document_bytes,
            max_document_lines: DocumentLimits::DEFAULT.max_document_lines,
            max_id_bytes: DocumentLimits::DEFAULT.max_id_bytes,
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
    keys: Option<KeyRegistry>,
    signatures: SignatureMode,
    version: String,
    /// The version of the list `restricted` came from, when it was
    /// published (`screening.lists`) rather than read from a file.
    screening_version: Option<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Self::new(PolicySettings::default(), RestrictedParties::empty())
            .unwrap_or_else(|_| unreachable!("the default policy is valid"))
    }
}

impl Policy {
    /// A policy from settings and a restricted-party list, with no key
    /// registry (the settings' paths are not read here).
    pub fn new(
        settings: PolicySettings,
        restricted: RestrictedParties,
    ) -> Result<Self, PolicyError> {
        Self::with_keys(settings, restricted, None)
    }

    /// [`Self::new`] with a key registry.
    pub fn with_keys(
        settings: PolicySettings,
        restricted: RestrictedParties,
        keys: Option<KeyRegistry>,
    ) -> Result<Self, PolicyError> {
        let signatures = settings.signatures.unwrap_or(if keys.is_some() {
            SignatureMode::Required
        } else {
            SignatureMode::Off
        });
        if signatures != SignatureMode::Off && keys.is_none() {
            return Err(PolicyError::Invalid {
                setting: "signatures",
                problem: format!(
                    "is {signatures:?} but no key registry is configured (`signing_keys` in the policy file, or --keys)"
                ),
            });
        }
        if settings.minimum_horizon_quarters == 0 {
            return Err(PolicyError::Invalid {
                setting: "minimum_horizon_quarters",
                problem: "must be at least 1".into(),
            });
        }
        if let Some(bad) = settings
            .registered_customers
            .iter()
            .find(|c| c.is_empty() || c.contains('/'))
        {
            return Err(PolicyError::Invalid {
                setting: "registered_customers",
                problem: format!(
                    "holds {bad:?}: a customer id must be non-empty and hold no `/` (it begins the `customer/document` keys)"
                ),
            });
        }
        for (setting, value) in [
            ("max_document_bytes", settings.max_document_bytes),
            ("max_document_lines", settings.max_document_lines),
            ("max_id_bytes", settings.max_id_bytes),
        ] {
            if value == 0 {
                return Err(PolicyError::Invalid {
                    setting,
                    problem: "must be at least 1".into(),
                });
            }
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
        let version = version_of(&settings, &restricted, keys.as_ref());
        Ok(Self {
            settings,
            prohibited_terms,
            restricted,
            keys,
            signatures,
            version,
            screening_version: None,
        })
    }

    /// Reads a policy file. `restricted_override` and `keys_override`, when
    /// given, replace the file's `restricted_parties` and `signing_keys`.
    pub fn load(
        path: Option<&Path>,
        restricted_override: Option<&Path>,
        keys_override: Option<&Path>,
    ) -> Result<Self, PolicyError> {
        let settings = match path {
            None => PolicySettings::default(),
            Some(path) => PolicySettings::read(path)?,
        };
        let list_path = restricted_override.or(settings.restricted_parties.as_deref());
        let restricted = match list_path {
            Some(p) => RestrictedParties::from_path(p)?,
            None => RestrictedParties::empty(),
        };
        let keys = keys_override
            .or(settings.signing_keys.as_deref())
            .map(KeyRegistry::from_path)
            .transpose()?;
        Self::with_keys(settings, restricted, keys)
    }

    /// The settings.
    pub fn settings(&self) -> &PolicySettings {
        &self.settings
    }

    /// The restricted-party list.
    pub fn restricted_parties(&self) -> &RestrictedParties {
        &self.restricted
    }

    /// This policy with `signatures` set to `mode`.
    pub fn with_signature_mode(self, mode: SignatureMode) -> Result<Self, PolicyError> {
        let settings = PolicySettings {
            signatures: Some(mode),
            ..self.settings
        };
        Self::with_keys(settings, self.restricted, self.keys)
            .map(|p| p.screened_by(self.screening_version))
    }

    /// This policy screening end users against a published list version
    /// (its id goes into every verdict; the policy version changes with
    /// the list's names).
    pub fn with_screening_list(self, list: &ScreeningList) -> Result<Self, PolicyError> {
        Self::with_keys(self.settings, list.parties(), self.keys)
            .map(|p| p.screened_by(Some(list.version.clone())))
    }

    fn screened_by(self, screening_version: Option<String>) -> Self {
        Self {
            screening_version,
            ..self
        }
    }

    /// The published list version end users are screened against (`None`:
    /// the list file, or no list).
    pub fn screening_version(&self) -> Option<&str> {
        self.screening_version.as_deref()
    }

    /// This policy checking signatures against `keys` (required unless the
    /// settings say otherwise).
    pub fn with_key_registry(self, keys: KeyRegistry) -> Result<Self, PolicyError> {
        Self::with_keys(self.settings, self.restricted, Some(keys))
            .map(|p| p.screened_by(self.screening_version))
    }

    /// This policy with `max_submitted_at_skew_seconds` set.
    pub fn with_max_skew_seconds(self, seconds: u64) -> Result<Self, PolicyError> {
        let settings = PolicySettings {
            max_submitted_at_skew_seconds: seconds,
            ..self.settings
        };
        Self::with_keys(settings, self.restricted, self.keys)
            .map(|p| p.screened_by(self.screening_version))
    }

    /// The key registry, if one is configured.
    pub fn keys(&self) -> Option<&KeyRegistry> {
        self.keys.as_ref()
    }

    /// Whether signatures are required, optional or not looked at.
    pub fn signatures(&self) -> SignatureMode {
        self.signatures
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

fn version_of(
    settings: &PolicySettings,
    restricted: &RestrictedParties,
    keys: Option<&KeyRegistry>,
) -> String {
    // Canonical form: the settings as JSON (sets are sorted; the files'
    // paths are left out since their contents are hashed), then the list,
    // then the keys. Settings at their defaults are not written, so a
    // policy without keys has the version it had before keys existed.
    let mut canonical = settings.clone();
    canonical.restricted_parties = None;
    canonical.signing_keys = None;
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(&canonical).unwrap_or_default());
    for name in restricted.normal_forms() {
        hasher.update(b"\n");
        hasher.update(name.as_bytes());
    }
    for entry in keys.into_iter().flat_map(KeyRegistry::entries) {
        hasher.update(b"\nkey ");
        hasher.update(serde_json::to_vec(entry).unwrap_or_default());
    }
    let digest = hasher.finalize();
    let hex = forecast_model::hex(&digest[..8]);
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
        shipped_no_list.signing_keys = None;
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
        for bad in ["", "TEN/CENT"] {
            let s = PolicySettings {
                registered_customers: ["TENCENT".to_string(), bad.to_string()].into(),
                ..PolicySettings::default()
            };
            let err = Policy::new(s, RestrictedParties::empty()).unwrap_err();
            assert!(err.to_string().contains("registered_customers"), "{err}");
        }
    }
}
