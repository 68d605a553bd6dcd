//! Verdicts: what the pipeline decided about one submission, and why.

use crate::document::symbols;
use crate::time::Timestamp;

symbols!(
    /// A rule a submission can violate (spec: "Rule codes" and "Sequencing").
    RuleCode {
        SchemaInvalid = "SCHEMA_INVALID",
        CustomerUnknown = "CUSTOMER_UNKNOWN",
        RevisionInvalid = "REVISION_INVALID",
        LinesEmpty = "LINES_EMPTY",
        LinesOnCancel = "LINES_ON_CANCEL",
        HorizonInvalid = "HORIZON_INVALID",
        HorizonTooShort = "HORIZON_TOO_SHORT",
        HorizonGap = "HORIZON_GAP",
        PeriodMisaligned = "PERIOD_MISALIGNED",
        PeriodOutsideHorizon = "PERIOD_OUTSIDE_HORIZON",
        QuantityInvalid = "QUANTITY_INVALID",
        QuantityExceedsLimit = "QUANTITY_EXCEEDS_LIMIT",
        SkuUnknown = "SKU_UNKNOWN",
        DuplicateLine = "DUPLICATE_LINE",
        DocMissing = "DOC_MISSING",
        DocExpired = "DOC_EXPIRED",
        DocNotYetValid = "DOC_NOT_YET_VALID",
        DocDigestInvalid = "DOC_DIGEST_INVALID",
        EndUseProhibited = "END_USE_PROHIBITED",
        EndUserMissing = "END_USER_MISSING",
        EndUserRestricted = "END_USER_RESTRICTED",
        LicenseDenied = "LICENSE_DENIED",
        LicenseRequiredForFirm = "LICENSE_REQUIRED_FOR_FIRM",
        LicenseReferenceMissing = "LICENSE_REFERENCE_MISSING",
        DocumentUnknown = "DOCUMENT_UNKNOWN",
        RevisionConflict = "REVISION_CONFLICT",
        RevisionStale = "REVISION_STALE",
        /// Retired on 2026-12-06 (document ids are each customer's own):
        /// never given now, kept so that audit records written before
        /// still decode.
        CustomerChanged = "CUSTOMER_CHANGED",
        SignatureMissing = "SIGNATURE_MISSING",
        SignatureInvalid = "SIGNATURE_INVALID",
        KeyUnknown = "KEY_UNKNOWN",
        KeyNotForCustomer = "KEY_NOT_FOR_CUSTOMER",
        KeyNotYetValid = "KEY_NOT_YET_VALID",
        KeyExpired = "KEY_EXPIRED",
        KeyRevoked = "KEY_REVOKED",
        SubmittedAtSkew = "SUBMITTED_AT_SKEW",
        DocumentTooLarge = "DOCUMENT_TOO_LARGE",
        Unattested = "UNATTESTED",
    }
);

impl RuleCode {
    /// What the rule means, in words, for people reading a verdict.
    pub const fn explain(self) -> &'static str {
        use RuleCode::*;
        match self {
            SchemaInvalid => {
                "the document cannot be decoded: bad JSON or Avro, a missing required field, a wrong type, a value outside an enum or an impossible date"
            }
            CustomerUnknown => "the customer is not registered in the policy",
            RevisionInvalid => {
                "ORIGINAL must be revision 1; REPLACE and CANCEL must be revision 2 or more"
            }
            LinesEmpty => "an ORIGINAL or REPLACE must have at least one line",
            LinesOnCancel => "a CANCEL must not carry lines",
            HorizonInvalid => "the horizon is malformed (YYYY-Qn expected) or starts after it ends",
            HorizonTooShort => "the horizon spans fewer quarters than the policy's minimum",
            HorizonGap => {
                "a quarter of the horizon has no line (state zero demand with a line of quantity 0)"
            }
            PeriodMisaligned => {
                "period_start is not the first day of its bucket (quarter or month)"
            }
            PeriodOutsideHorizon => "a line's quarter is outside the horizon",
            QuantityInvalid => "a quantity is negative",
            QuantityExceedsLimit => "a quantity is above the policy's largest quantity on one line",
            SkuUnknown => "the SKU is not in the catalogue",
            DuplicateLine => "two lines share SKU, period_start and confidence",
            DocMissing => "a required document kind is absent",
            DocExpired => "a document expired before the date of submission",
            DocNotYetValid => "a document is issued after the date of submission",
            DocDigestInvalid => "a sha256 is not exactly 64 hexadecimal characters",
            EndUseProhibited => {
                "the end-use category is not allowed, or the description holds a prohibited term"
            }
            EndUserMissing => "no end users are listed",
            EndUserRestricted => "an end user matches the restricted-party list",
            LicenseDenied => "the export licence was denied",
            LicenseRequiredForFirm => "FIRM lines need a licence that is PENDING or APPROVED",
            LicenseReferenceMissing => "a PENDING or APPROVED licence needs an application_number",
            DocumentUnknown => "a REPLACE or CANCEL for a document with no applied revision",
            RevisionConflict => "same revision as the applied one, with different content",
            RevisionStale => "revision lower than the applied one",
            CustomerChanged => {
                "retired: a later revision named another customer than the applied one (document ids are now each customer's own)"
            }
            SignatureMissing => "the policy requires a signature and the document carries none",
            SignatureInvalid => {
                "the signature does not verify: the content changed after signing, or it was made with another key"
            }
            KeyUnknown => "the signing key is not in the key registry",
            KeyNotForCustomer => "the signing key is registered for another customer",
            KeyNotYetValid => "submitted_at is before the signing key's valid_from",
            KeyExpired => "submitted_at is at or after the signing key's valid_until",
            KeyRevoked => "the signing key is revoked",
            SubmittedAtSkew => {
                "submitted_at is further from the broker's timestamp than the policy allows"
            }
            Unattested => {
                "the record on a stage's input carries no attestation by a key of the stage before it: the pipeline did not write it, or it was changed since"
            }
            DocumentTooLarge => {
                "the document is over the policy's size limits (bytes, lines or id length); no other check runs: split it or shorten its ids"
            }
        }
    }
}

symbols!(
    /// A finding that never rejects.
    WarningCode {
        /// A required document expires before the last day of the horizon.
        DocExpiresBeforeHorizonEnd = "DOC_EXPIRES_BEFORE_HORIZON_END",
    }
);

impl WarningCode {
    /// What the warning means, in words.
    pub const fn explain(self) -> &'static str {
        match self {
            WarningCode::DocExpiresBeforeHorizonEnd => {
                "a required document expires before the last day of the horizon; renew it before then"
            }
        }
    }
}

symbols!(
    /// The verdict on a submission.
    Outcome {
        Accepted = "ACCEPTED",
        Rejected = "REJECTED",
        /// Same revision and content as the applied one: ignored, never counted twice.
        Duplicate = "DUPLICATE",
    }
);

symbols!(
    /// The step of the pipeline that decided a verdict.
    Stage {
        /// Bytes could not be decoded into a document.
        Deserialize = "DESERIALIZE",
        /// The stateless documentation rules.
        Validate = "VALIDATE",
        /// Per-document sequencing against the last applied revision.
        Sequence = "SEQUENCE",
        /// A live document screened again when the restricted-party list
        /// changed: held (`END_USER_RESTRICTED`) or released.
        Rescreen = "RESCREEN",
    }
);

/// One violated rule with the field it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub code: RuleCode,
    /// Path of the field, e.g. `lines[3].quantity`; empty for the whole document.
    pub field: String,
    /// What is wrong with this particular value.
    pub message: String,
}

/// A warning with the field it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub code: WarningCode,
    pub field: String,
    pub message: String,
}

/// Where a submission was read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceCoordinates {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// The verdict record: one per submission, written to the audit topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Echoed from the submission when it holds a string there.
    pub document_id: Option<String>,
    /// Echoed from the submission when it holds a 32-bit integer there.
    pub revision: Option<i32>,
    pub outcome: Outcome,
    pub stage: Stage,
    /// Violated rules: sorted by code symbol and unique.
    pub codes: Vec<RuleCode>,
    /// Warnings: sorted by code symbol and unique.
    pub warnings: Vec<WarningCode>,
    /// Every violation, with its field, in the order found.
    pub violations: Vec<Violation>,
    /// Version of the policy that decided (see the validator's `Policy`).
    pub policy_version: String,
    pub decided_at: Timestamp,
    pub source: Option<SourceCoordinates>,
    /// The submission's customer, when it could be read.
    pub customer_id: Option<String>,
    /// The restricted-party list version the document was screened
    /// against, when one was published (`screening.lists`).
    pub screening_version: Option<String>,
}

/// Sorts codes by their symbol and drops repeats, as verdicts list them.
pub fn sorted_codes<T: Copy + Ord>(
    codes: impl IntoIterator<Item = T>,
    symbol: impl Fn(T) -> &'static str,
) -> Vec<T> {
    let mut v: Vec<T> = codes.into_iter().collect();
    v.sort_by_key(|c| symbol(*c));
    v.dedup();
    v
}
