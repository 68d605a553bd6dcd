//! From bytes to the validator's verdict: decode (JSON or framed Avro), then
//! the rules. The validating service and `forecastctl check`/`replay` all
//! call this, so they cannot judge differently.

use forecast_model::{
    DecodeError, ForecastDocument, InvalidSubmission, Outcome, Registry, RuleCode,
    SourceCoordinates, Stage, Timestamp, Verdict, Violation, WarningCode,
};

use crate::policy::{Policy, SignatureMode};
use crate::rules::{MAX_VIOLATION_FIELD_BYTES, MAX_VIOLATION_MESSAGE_BYTES, Report, check};
use forecast_model::limits::bounded;

/// Why a submission is `SCHEMA_INVALID`.
#[derive(Debug, thiserror::Error)]
pub enum Undecodable {
    /// The JSON form does not decode.
    #[error(transparent)]
    Json(#[from] InvalidSubmission),
    /// The framed Avro record does not decode.
    #[error(transparent)]
    Avro(#[from] DecodeError),
    /// The record is larger than the policy or the service accepts: not
    /// read (`DOCUMENT_TOO_LARGE`).
    #[error("the record is {size} bytes, over the limit of {limit} bytes; it was not read")]
    TooLarge { size: usize, limit: usize },
}

impl Undecodable {
    /// A short stable name of the failure, for metrics and dead-letter headers.
    pub fn kind(&self) -> &'static str {
        match self {
            Undecodable::Json(_) => "json",
            Undecodable::Avro(e) => e.kind(),
            Undecodable::TooLarge { .. } => "too_large",
        }
    }
}

impl Undecodable {
    /// The code: `DOCUMENT_TOO_LARGE` for a record not read, else
    /// `SCHEMA_INVALID`.
    pub fn code(&self) -> RuleCode {
        match self {
            Undecodable::TooLarge { .. } => RuleCode::DocumentTooLarge,
            Undecodable::Json(_) | Undecodable::Avro(_) => RuleCode::SchemaInvalid,
        }
    }

    fn violation(&self) -> Violation {
        let field = match self {
            Undecodable::Json(e) => e.field.clone(),
            Undecodable::Avro(_) | Undecodable::TooLarge { .. } => String::new(),
        };
        Violation {
            code: self.code(),
            field: bounded(&field, MAX_VIOLATION_FIELD_BYTES).into_owned(),
            message: bounded(&self.to_string(), MAX_VIOLATION_MESSAGE_BYTES).into_owned(),
        }
    }
}

/// A submission after decoding and the stateless rules.
#[derive(Debug)]
pub enum Judged {
    /// Could not be decoded: `SCHEMA_INVALID`, and no other check ran.
    Undecodable(Undecodable),
    /// Decoded and checked.
    Checked {
        document: Box<ForecastDocument>,
        report: Report,
    },
}

impl Judged {
    /// True when the document decoded and broke no rule: it goes on to sequencing.
    pub fn passed(&self) -> bool {
        matches!(self, Judged::Checked { report, .. } if report.passed())
    }

    /// Gives the decoded document back to `spare` for the next
    /// [`Validator::judge_framed_reusing`].
    pub fn recycle(self, spare: &mut Option<Box<ForecastDocument>>) {
        if let Judged::Checked { document, .. } = self {
            *spare = Some(document);
        }
    }

    /// Warnings, sorted and unique (none for an undecodable submission).
    pub fn warning_codes(&self) -> Vec<WarningCode> {
        match self {
            Judged::Undecodable(_) => Vec::new(),
            Judged::Checked { report, .. } => report.warning_codes(),
        }
    }
}

/// The validator's pure core: a policy and the schemas it reads with.
#[derive(Debug, Clone)]
pub struct Validator {
    policy: Policy,
}

impl Validator {
    /// A validator that judges by `policy`.
    pub fn new(policy: Policy) -> Self {
        Self { policy }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Judges one JSON document; its size is that of its Avro record, what
    /// `submit` would send.
    pub fn judge_json(&self, json: &[u8]) -> Judged {
        match forecast_model::parse_submission(json) {
            Ok(doc) => self.judge_document(doc),
            Err(e) => Judged::Undecodable(e.into()),
        }
    }

    /// Judges one framed Avro record of at most `limit` bytes.
    pub fn judge_framed_limited(&self, record: &[u8], registry: &Registry, limit: usize) -> Judged {
        self.judge_framed_reusing(record, registry, limit, &mut None)
    }

    /// Judges one framed Avro record.
    pub fn judge_framed(&self, record: &[u8], registry: &Registry) -> Judged {
        self.judge_framed_limited(record, registry, usize::MAX)
    }

    /// [`Self::judge_framed_limited`], decoding into the document `spare`
    /// holds, if any, and taking it: a service that gives each decoded
    /// document back ([`Judged::recycle`]) decodes record after record into
    /// the same strings and vectors instead of allocating them anew.
    pub fn judge_framed_reusing(
        &self,
        record: &[u8],
        registry: &Registry,
        limit: usize,
        spare: &mut Option<Box<ForecastDocument>>,
    ) -> Judged {
        let limit = limit.min(self.policy.settings().max_document_bytes);
        if record.len() > limit {
            return Judged::Undecodable(Undecodable::TooLarge {
                size: record.len(),
                limit,
            });
        }
        let mut document = spare.take().unwrap_or_default();
        match forecast_model::wire::decode_document_into(record, registry, &mut document) {
            Ok(()) => self.judge_sized(document, record.len()),
            Err(e) => {
                *spare = Some(document);
                Judged::Undecodable(e.into())
            }
        }
    }

    /// Runs the rules over a decoded document (its size: that of its Avro
    /// record).
    pub fn judge_document(&self, document: ForecastDocument) -> Judged {
        let size = forecast_model::wire::encode_document(&document).len();
        self.judge_sized(Box::new(document), size)
    }

    /// A document over the policy's limits is `DOCUMENT_TOO_LARGE`, and no
    /// other check runs: the work and the verdict stay bounded.
    fn judge_sized(&self, document: Box<ForecastDocument>, size: usize) -> Judged {
        let report = match self.policy.settings().limits().exceeded(&document, size) {
            Some((field, message)) => Report::too_large(field, message),
            None => check(&document, &self.policy),
        };
        Judged::Checked { document, report }
    }

    /// With signatures required, adds `SUBMITTED_AT_SKEW` to a decoded
    /// document whose `submitted_at` is further than the policy's
    /// `max_submitted_at_skew_seconds` from `received_at`, the broker's
    /// timestamp of its record: a key that expired cannot sign a document
    /// dated back into its validity. Only the live validator has that
    /// timestamp (`replay` does not, and skips this).
    pub fn check_received_at(&self, judged: &mut Judged, received_at: Timestamp) {
        if self.policy.signatures() != SignatureMode::Required {
            return;
        }
        let Judged::Checked { document, report } = judged else {
            return;
        };
        let limit = self.policy.settings().max_submitted_at_skew_seconds;
        let skew_ms = document
            .submitted_at
            .millis()
            .abs_diff(received_at.millis());
        if skew_ms > limit.saturating_mul(1000) {
            report.violation(
                RuleCode::SubmittedAtSkew,
                "submitted_at",
                format!(
                    "submitted_at {} is {} s from the broker's timestamp {received_at}; at most {limit} s is accepted",
                    document.submitted_at,
                    skew_ms / 1000
                ),
            );
        }
    }

    /// The validator's verdict: `REJECTED` at stage `DESERIALIZE` or
    /// `VALIDATE`, or `ACCEPTED` at stage `VALIDATE` (subject to sequencing).
    pub fn verdict(
        &self,
        judged: &Judged,
        decided_at: Timestamp,
        source: Option<SourceCoordinates>,
    ) -> Verdict {
        let policy_version = self.policy.version().to_owned();
        match judged {
            Judged::Undecodable(err) => {
                let (document_id, revision, customer_id) = match err {
                    Undecodable::Json(e) => {
                        (e.document_id.clone(), e.revision, e.customer_id.clone())
                    }
                    Undecodable::Avro(_) | Undecodable::TooLarge { .. } => (None, None, None),
                };
                Verdict {
                    document_id: self.echo(document_id.as_deref()),
                    revision,
                    outcome: Outcome::Rejected,
                    stage: Stage::Deserialize,
                    codes: vec![err.code()],
                    warnings: Vec::new(),
                    violations: vec![err.violation()],
                    policy_version,
                    decided_at,
                    source,
                    customer_id: self.echo(customer_id.as_deref()),
                    screening_version: None,
                }
            }
            Judged::Checked { document, report } => Verdict {
                document_id: self.echo(Some(&document.document_id)),
                revision: Some(document.revision),
                outcome: if report.passed() {
                    Outcome::Accepted
                } else {
                    Outcome::Rejected
                },
                stage: Stage::Validate,
                codes: report.codes(),
                warnings: report.warning_codes(),
                violations: report.details(),
                policy_version,
                decided_at,
                source,
                customer_id: self.echo(Some(&document.customer_id)),
                screening_version: self.policy.screening_version().map(str::to_owned),
            },
        }
    }

    /// An id as a verdict echoes it: only within the policy's
    /// `max_id_bytes` (a longer one is `DOCUMENT_TOO_LARGE`, echoed as
    /// null), so that every verdict's size is bounded.
    fn echo(&self, id: Option<&str>) -> Option<String> {
        id.filter(|id| self.policy.settings().limits().id_fits(id))
            .map(str::to_owned)
    }
}
