//! Domain types of the forecast pipeline and their wire forms.
//!
//! - [`document`]: the forecast document; its serde form is the JSON form
//!   of `spec/forecast-document.md`.
//! - [`time`]: strict dates, RFC 3339 timestamps and quarters.
//! - [`verdict`], [`demand`]: what the pipeline decides and publishes, and
//!   the demand read back from its topic ([`DemandView`]).
//! - [`intern`]: strings kept once.
//! - [`licence`]: licence decisions (each for one customer) and demand by
//!   licence status.
//! - [`screening`]: restricted-party lists (the Consolidated Screening
//!   List's CSV and JSON forms), their versions, and the delta between two.
//! - [`text`]: the word and party-name normalisation screening and the
//!   end-use rules use.
//! - [`limits`]: how large a document the pipeline takes, and bounded text.
//! - [`json`]: the JSON form's strict decoding, with the field at fault.
//! - [`schema`]: the `.avsc` files of `schemas/`, embedded, with fixed ids.
//! - [`commit`]: the supplier's commit to a customer, signed, and its
//!   check.
//! - [`codec`]: Avro binary codecs of the current schemas, and the content
//!   digest used for duplicate detection.
//! - [`wire`]: Confluent framing, and resolution of older schema versions.
//! - [`signing`]: the canonical content a sender signs, Ed25519 signing and
//!   verification, key texts.
//! - [`keys`]: the key registry of customers' and roles' public keys.
//! - [`supply`]: the supply plan, per SKU x quarter, as a file or a topic
//!   record gives it.
//! - [`allocation`]: the supplier's reply: a short supply allocated among
//!   customers under an allocation policy.
//! - [`api`]: the planner API's JSON types, for the server and its clients.
//! - [`attest`]: the attestation each stage puts on the records it writes,
//!   and the check of it by the stage that reads them; stage keys.
//!
//! Every other crate of the workspace builds on these types; nothing here
//! does I/O but reading a key registry's file.

pub mod allocation;
pub mod api;
pub mod attest;
mod avro;
pub mod codec;
pub mod commit;
pub mod demand;
pub mod document;
#[cfg(feature = "testing")]
pub mod fixtures;
pub mod intern;
pub mod json;
pub mod keys;
pub mod licence;
pub mod limits;
pub mod schema;
pub mod screening;
pub mod signing;
pub mod supply;
#[cfg(feature = "testing")]
pub mod testing;
pub mod text;
pub mod time;
pub mod verdict;
pub mod wire;

pub use demand::{DemandRow, DemandSnapshot, DemandView, SnapshotRow, Units};
pub use document::*;
pub use intern::Interner;
pub use json::{InvalidSubmission, parse_submission};
pub use licence::{
    DecisionStatus, ExposureStatus, LOST_LISTED, LicenceCell, LicenceDecision, LicenceRegister,
    LicenceRow, LicenceSnapshot, LicenceView, LostDocument, OverApproved, Reference,
};
pub use limits::DocumentLimits;
pub use schema::{Registry, Subject};
pub use time::{Date, Quarter, Timestamp};
pub use verdict::{
    Outcome, RuleCode, SourceCoordinates, Stage, Verdict, Violation, Warning, WarningCode,
};

/// `bytes` as lower-case hexadecimal (digests in key ids, the policy
/// version, the API's tokens file).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// Why bytes could not be decoded into a record. Each variant is a kind of
/// poison pill the services dead-letter with stage `deserialize`.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the record is empty")]
    Empty,
    #[error("bad magic byte {found:#04x}: not Confluent-framed Avro (expected 0x00)")]
    BadMagic { found: u8 },
    #[error("the record is {len} bytes, shorter than the 5-byte wire header")]
    HeaderTruncated { len: usize },
    #[error("unknown schema id {id}: not one of this build's schemas nor registered")]
    UnknownSchemaId { id: u32 },
    #[error("schema id {id} is a {found} schema, expected {expected}")]
    WrongSubject {
        id: u32,
        found: &'static str,
        expected: &'static str,
    },
    #[error("truncated Avro data: {what} at byte {offset} needs {needed} more byte(s)")]
    Truncated {
        what: &'static str,
        offset: usize,
        needed: usize,
    },
    #[error("invalid Avro data: {what} at byte {offset}: {detail}")]
    Invalid {
        what: &'static str,
        offset: usize,
        detail: String,
    },
    #[error("{count} byte(s) left over after the record: wrong schema or corrupt data")]
    TrailingBytes { count: usize },
    #[error("cannot resolve schema id {id} to the current schema: {source}")]
    Resolution {
        id: u32,
        #[source]
        source: Box<apache_avro::Error>,
    },
}

impl DecodeError {
    /// A short stable name of the failure, for metrics and dead-letter headers.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::BadMagic { .. } => "bad_magic",
            DecodeError::HeaderTruncated { .. } | DecodeError::Truncated { .. } => "truncated",
            DecodeError::UnknownSchemaId { .. } => "unknown_schema_id",
            DecodeError::WrongSubject { .. } => "wrong_subject",
            DecodeError::Invalid { .. } | DecodeError::TrailingBytes { .. } => "wrong_type",
            DecodeError::Resolution { .. } => "resolution",
        }
    }
}

/// A string that is not one of an enum's symbols.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{found}` is not a {kind}; expected one of {expected:?}")]
pub struct UnknownSymbol {
    found: String,
    kind: &'static str,
    expected: &'static [&'static str],
}

impl UnknownSymbol {
    pub(crate) fn new(found: &str, kind: &'static str, expected: &'static [&'static str]) -> Self {
        Self {
            found: found.chars().take(64).collect(),
            kind,
            expected,
        }
    }
}
