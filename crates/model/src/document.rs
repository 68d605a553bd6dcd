//! The forecast document: the domain type, which is also its JSON form.
//!
//! Serde gives the JSON form exactly as `spec/forecast-document.md` writes
//! it: integers must be integers that fit (`1.0` or a revision beyond 32
//! bits do not decode), enums are their symbols, dates and timestamps are
//! parsed strictly, `ship_to`, `signed_by` and `application_number` may be
//! absent or null, and fields the schema does not know are ignored.

use serde::{Deserialize, Serialize};

use crate::time::{Date, Timestamp};

/// Declares a closed set of symbols that is both an Avro enum (by index, in
/// schema order) and a JSON string (by symbol).
macro_rules! symbols {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $symbol:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in the order of the Avro schema's symbols.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The symbol as written in JSON and in the Avro schema.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $symbol),+ }
            }

            /// The value with this symbol.
            pub fn from_symbol(s: &str) -> Option<Self> {
                match s { $($symbol => Some($name::$variant),)+ _ => None }
            }

            /// Position in the Avro schema's symbols.
            pub fn index(self) -> usize {
                self as usize
            }

            /// The value at this position of the Avro schema's symbols.
            pub fn from_index(i: usize) -> Option<Self> {
                Self::ALL.get(i).copied()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = crate::UnknownSymbol;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_symbol(s).ok_or_else(|| crate::UnknownSymbol::new(s, stringify!($name), &[$($symbol),+]))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::from_symbol(&s).ok_or_else(|| serde::de::Error::unknown_variant(&s, &[$($symbol),+]))
            }
        }
    };
}
pub(crate) use symbols;

symbols!(
    /// What a revision does to the document's demand.
    Purpose {
        /// Revision 1: the document's first lines.
        Original = "ORIGINAL",
        /// Revision 2 or later: replaces every line of the last applied revision.
        Replace = "REPLACE",
        /// Revision 2 or later, no lines: withdraws the document's demand.
        Cancel = "CANCEL",
    }
);

symbols!(
    /// The granularity of `period_start`.
    Bucket { Quarter = "QUARTER", Month = "MONTH" }
);

symbols!(
    /// How committed a line is.
    Confidence {
        /// Committed.
        Firm = "FIRM",
        /// Indicative.
        Planning = "PLANNING",
    }
);

symbols!(
    /// Declared end use of the accelerators.
    EndUseCategory {
        AiInference = "AI_INFERENCE",
        AiTraining = "AI_TRAINING",
        CloudServices = "CLOUD_SERVICES",
        Research = "RESEARCH",
        Other = "OTHER",
    }
);

symbols!(
    /// Kind of a supporting compliance document.
    DocumentKind {
        EndUseStatement = "END_USE_STATEMENT",
        EndUserCertificate = "END_USER_CERTIFICATE",
        NonReexportAttestation = "NON_REEXPORT_ATTESTATION",
        LicenseApplicationCopy = "LICENSE_APPLICATION_COPY",
        Other = "OTHER",
    }
);

symbols!(
    /// State of the export licence.
    LicenseStatus {
        NotFiled = "NOT_FILED",
        Pending = "PENDING",
        Approved = "APPROVED",
        Denied = "DENIED",
    }
);

/// The Kafka key of one customer's document (`forecasts.validated`,
/// `forecasts.audit`): `customer_id/document_id`. Document ids are each
/// customer's own, so the key names both: compaction never merges two
/// customers' documents, and every revision of one lands in one partition.
/// Unambiguous because registered customer ids hold no `/` (the policy
/// refuses them).
pub fn document_key(customer_id: &str, document_id: &str) -> String {
    let mut key = String::with_capacity(customer_id.len() + 1 + document_id.len());
    key.push_str(customer_id);
    key.push('/');
    key.push_str(document_id);
    key
}

impl ForecastDocument {
    /// This document's [`document_key`].
    pub fn key(&self) -> String {
        document_key(&self.customer_id, &self.document_id)
    }
}

/// A forecast submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForecastDocument {
    /// Stable id of the document across its revisions.
    pub document_id: String,
    /// 1 for `ORIGINAL`, 2 or more for `REPLACE` and `CANCEL`.
    pub revision: i32,
    pub purpose: Purpose,
    pub customer_id: String,
    pub submitted_at: Timestamp,
    pub horizon: Horizon,
    pub bucket: Bucket,
    pub lines: Vec<Line>,
    pub end_use: EndUse,
    pub documents: Vec<SupportingDocument>,
    pub export_license: ExportLicense,
    /// The sender's Ed25519 signature of the document's content
    /// ([`crate::signing`]); absent or null when unsigned. Not part of the
    /// content: the same revision signed again, or with another key, is
    /// the same document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
}

/// A signature carried in the document: which key signed, and the Ed25519
/// signature of the canonical content ([`crate::signing::canonical_content`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The key's id in the pipeline's key registry.
    pub key_id: String,
    /// The 64 signature bytes in base64 (RFC 4648, standard alphabet, padded).
    /// Kept as written: a value that does not decode is `SIGNATURE_INVALID`,
    /// not a decoding failure.
    pub value: String,
}

/// First and last quarter of the forecast, inclusive, as written.
///
/// Kept as text: a malformed quarter is the rule `HORIZON_INVALID`, not a
/// decoding failure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Horizon {
    pub start: String,
    pub end: String,
}

/// One forecast line: a quantity of one SKU in one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub sku: String,
    /// First day of the line's bucket.
    pub period_start: Date,
    pub quantity: i64,
    pub confidence: Confidence,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ship_to: Option<ShipTo>,
}

/// Delivery site of a line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipTo {
    pub site: String,
    pub country: String,
}

/// Declared end use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndUse {
    pub category: EndUseCategory,
    pub description: String,
    pub end_users: Vec<EndUser>,
}

/// A declared end user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndUser {
    pub name: String,
    pub country: String,
}

/// A supporting compliance document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportingDocument {
    pub kind: DocumentKind,
    pub reference: String,
    pub issued_on: Date,
    pub expires_on: Date,
    /// Digest of the document's file, 64 hexadecimal characters when valid.
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
}

/// Export licence state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportLicense {
    pub status: LicenseStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_number: Option<String>,
}

// Empty values of the types with enum fields: buffers the Avro decoder
// fills in place (`codec::decode_document_into`), not anything a customer
// sent; the enums take their first symbol.

impl Default for ForecastDocument {
    fn default() -> Self {
        Self {
            document_id: String::new(),
            revision: 0,
            purpose: Purpose::Original,
            customer_id: String::new(),
            submitted_at: Timestamp::from_millis(0),
            horizon: Horizon::default(),
            bucket: Bucket::Quarter,
            lines: Vec::new(),
            end_use: EndUse {
                category: EndUseCategory::AiInference,
                description: String::new(),
                end_users: Vec::new(),
            },
            documents: Vec::new(),
            export_license: ExportLicense {
                status: LicenseStatus::NotFiled,
                application_number: None,
            },
            signature: None,
        }
    }
}

impl Default for Line {
    fn default() -> Self {
        Self {
            sku: String::new(),
            period_start: Date::from_days(0),
            quantity: 0,
            confidence: Confidence::Firm,
            ship_to: None,
        }
    }
}

impl Default for SupportingDocument {
    fn default() -> Self {
        Self {
            kind: DocumentKind::EndUseStatement,
            reference: String::new(),
            issued_on: Date::from_days(0),
            expires_on: Date::from_days(0),
            sha256: String::new(),
            signed_by: None,
        }
    }
}

impl ForecastDocument {
    /// Parses the JSON form of one document.
    pub fn from_json(json: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(json)
    }

    /// The JSON form of this document (compact, one line).
    pub fn to_json(&self) -> String {
        // Serializing these plain types into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}
