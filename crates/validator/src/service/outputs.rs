//! What the validator writes for one record, decided without a broker: the
//! accepted document forwarded, or the dead letter, and the verdict. The
//! service's `handle` only turns these into records, sends and counts.

use forecast_model::{Outcome, SourceCoordinates, Stage, Verdict, wire};
use forecast_stage::headers;

use crate::judge::Judged;

/// The outputs of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outputs {
    /// The accepted document, to `forecasts.validated`.
    pub forward: Option<Forward>,
    /// Why it is dead-lettered, to `forecasts.rejected`.
    pub dead_letter: Option<DeadLetter>,
    /// Its verdict, to `forecasts.audit`.
    pub audit: Audit,
}

/// An accepted document forwarded: the record's value as it came, under
/// the document's key, with the verdict's fields as headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// `customer_id/document_id`.
    pub key: String,
    /// The policy version, the warning codes, where it was read and the
    /// restricted-party list version.
    pub headers: [(&'static str, String); 4],
}

impl Forward {
    /// The headers the forwarded record gets besides the record's own, as
    /// (name, value), in order, with room for the attestation after them.
    /// One whose value is empty (no warnings, no restricted-party list
    /// version) is left out: readers take a missing verdict header as
    /// empty, and the attestation covers every `forecast.*` header present,
    /// so one added afterwards fails it. Two headers fewer on most records
    /// is less for librdkafka to copy, write and free on each side.
    pub fn added(&self) -> Vec<(&'static str, &[u8])> {
        let mut added = Vec::with_capacity(self.headers.len() + 1);
        added.extend(
            self.headers
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (*k, v.as_bytes())),
        );
        added
    }
}

/// Why a record is dead-lettered (the record itself goes whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// `deserialize` or `validate`.
    pub stage: Stage,
    /// Rule codes, comma-separated.
    pub codes: String,
    /// What went wrong, for people.
    pub message: String,
}

/// The verdict as the audit topic holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// `customer_id/document_id` when the verdict names both; `None`: the
    /// record's own key.
    pub key: Option<String>,
    /// The encoded verdict.
    pub value: Vec<u8>,
}

/// The outputs of a record judged `judged`, whose verdict is `verdict`.
pub fn outputs(judged: &Judged, verdict: &Verdict, source: &SourceCoordinates) -> Outputs {
    let (forward, dead_letter) = match (judged, verdict.outcome) {
        (Judged::Checked { document, .. }, Outcome::Accepted) => {
            let warnings: Vec<&str> = verdict.warnings.iter().map(|w| w.as_str()).collect();
            let forward = Forward {
                key: document.key(),
                headers: [
                    (headers::POLICY_VERSION, verdict.policy_version.clone()),
                    (headers::WARNINGS, warnings.join(",")),
                    (headers::SOURCE, headers::source_value(source)),
                    (
                        headers::SCREENING_VERSION,
                        verdict.screening_version.clone().unwrap_or_default(),
                    ),
                ],
            };
            (Some(forward), None)
        }
        (judged, _) => {
            let (stage, message) = match judged {
                Judged::Undecodable(e) => (Stage::Deserialize, format!("{} ({})", e, e.kind())),
                Judged::Checked { .. } => (
                    Stage::Validate,
                    verdict
                        .violations
                        .iter()
                        .map(|v| format!("{} at {}: {}", v.code, v.field, v.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
            };
            let codes: Vec<&str> = verdict.codes.iter().map(|c| c.as_str()).collect();
            let dead_letter = DeadLetter {
                stage,
                codes: codes.join(","),
                message,
            };
            (None, Some(dead_letter))
        }
    };
    let key = match (&verdict.customer_id, &verdict.document_id) {
        (Some(c), Some(d)) => Some(forecast_model::document_key(c, d)),
        _ => None,
    };
    Outputs {
        forward,
        dead_letter,
        audit: Audit {
            key,
            value: wire::encode_verdict(verdict),
        },
    }
}

#[cfg(test)]
mod tests {
    use forecast_model::{Registry, RuleCode, Timestamp};

    use super::*;
    use crate::{Policy, Validator};

    fn source() -> SourceCoordinates {
        SourceCoordinates {
            topic: "forecasts.submitted".into(),
            partition: 2,
            offset: 41,
        }
    }

    /// Judges `document` as the service does (framed Avro) and decides.
    fn decided(document: &forecast_model::ForecastDocument) -> (Verdict, Outputs) {
        let validator = Validator::new(Policy::default());
        let framed = wire::encode_document(document);
        let judged = validator.judge_framed(&framed, Registry::embedded());
        let verdict = validator.verdict(&judged, Timestamp::from_millis(0), Some(source()));
        let out = outputs(&judged, &verdict, &source());
        (verdict, out)
    }

    #[test]
    fn an_accepted_document_is_forwarded_under_its_customers_key_with_its_verdicts_fields() {
        let doc = forecast_model::fixtures::twelve_line_document("TCT-1", "TENCENT");
        let (verdict, out) = decided(&doc);
        assert_eq!(verdict.outcome, Outcome::Accepted, "{verdict:?}");
        let forward = out.forward.expect("forwarded");
        assert_eq!(forward.key, "TENCENT/TCT-1");
        assert_eq!(
            forward.headers[0],
            (headers::POLICY_VERSION, verdict.policy_version.clone())
        );
        assert_eq!(
            forward.headers[2],
            (headers::SOURCE, "forecasts.submitted/2/41".into())
        );
        // No warnings, no list version: those headers are left off.
        let names: Vec<&str> = forward.added().iter().map(|(k, _)| *k).collect();
        assert_eq!(names, [headers::POLICY_VERSION, headers::SOURCE]);
        let mut warned = forward.clone();
        warned.headers[1].1 = "DOC_EXPIRES_BEFORE_HORIZON_END".into();
        assert_eq!(
            warned.added()[1],
            (
                headers::WARNINGS,
                b"DOC_EXPIRES_BEFORE_HORIZON_END".as_slice()
            )
        );
        assert_eq!(out.dead_letter, None);
        assert_eq!(out.audit.key.as_deref(), Some("TENCENT/TCT-1"));
        let audited = wire::decode_verdict(&out.audit.value, Registry::embedded()).unwrap();
        assert_eq!(audited, verdict);
    }

    #[test]
    fn a_rejected_document_is_dead_lettered_with_its_codes_and_violations() {
        let mut doc = forecast_model::fixtures::twelve_line_document("TCT-2", "TENCENT");
        doc.lines.clear();
        let (verdict, out) = decided(&doc);
        assert_eq!(verdict.outcome, Outcome::Rejected);
        assert!(verdict.codes.contains(&RuleCode::LinesEmpty), "{verdict:?}");
        assert_eq!(out.forward, None);
        let letter = out.dead_letter.expect("dead-lettered");
        assert_eq!(letter.stage, Stage::Validate);
        let codes: Vec<&str> = verdict.codes.iter().map(|c| c.as_str()).collect();
        assert_eq!(letter.codes, codes.join(","));
        assert!(
            letter.message.contains("LINES_EMPTY at lines"),
            "{}",
            letter.message
        );
        assert_eq!(out.audit.key.as_deref(), Some("TENCENT/TCT-2"));
    }

    #[test]
    fn undecodable_bytes_are_dead_lettered_at_deserialize_and_audited_under_the_records_key() {
        let validator = Validator::new(Policy::default());
        let judged = validator.judge_framed(b"\x00\x00\x00\x00\x01garbage", Registry::embedded());
        let verdict = validator.verdict(&judged, Timestamp::from_millis(0), Some(source()));
        let out = outputs(&judged, &verdict, &source());
        assert_eq!(out.forward, None);
        let letter = out.dead_letter.expect("dead-lettered");
        assert_eq!(letter.stage, Stage::Deserialize);
        assert_eq!(letter.codes, "SCHEMA_INVALID");
        assert!(letter.message.ends_with(')'), "{}", letter.message);
        assert_eq!(out.audit.key, None);
    }
}
