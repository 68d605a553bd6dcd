//! What the aggregator writes for one record of `forecasts.validated`,
//! decided without a broker: the record refused (not attested by a
//! validator, or undecodable) with its dead letter and verdict, or
//! sequenced into the partition's state with its verdict and what changed.
//! The service's `handle` only sends and counts.

use forecast_model::attest::Unattested;
use forecast_model::{
    Outcome, RuleCode, SourceCoordinates, Stage, Timestamp, Verdict, Violation, WarningCode,
};

use super::inputs::Decoder;
use crate::state::{DemandState, Sequenced, rescreen_verdict, sequenced_verdict};

/// A record of the validated topic, as the aggregator reads it.
#[derive(Debug)]
pub struct Received<'a> {
    /// Where it lies (on the validated topic).
    pub at: SourceCoordinates,
    /// Its value.
    pub value: &'a [u8],
    /// Whether a validator attested it, or why not.
    pub attested: Result<(), Unattested>,
    /// The verdict fields of its headers (believed only when attested):
    /// the policy version, the warning codes (comma-separated), where the
    /// validator read it, the restricted-party list version (empty: none).
    pub policy_version: &'a str,
    pub screening_version: &'a str,
    pub warnings: &'a str,
    pub submitted: Option<SourceCoordinates>,
    /// The record's broker time.
    pub decided_at: Timestamp,
}

/// What one record makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outputs {
    /// Dead-lettered whole (stage `sequence`) with `code` and `message`;
    /// `audit`, its verdict, when it has one of its own (an unattested
    /// record: an undecodable one was audited by the validator that wrote
    /// it).
    Refused {
        code: RuleCode,
        message: String,
        audit: Option<Verdict>,
    },
    /// Sequenced: its verdict, under the document's key, and what changed;
    /// `held`, the RESCREEN verdict of a revision applied while the list in
    /// force names one of its end users (the validator screened it against
    /// an older list).
    Sequenced {
        key: String,
        verdict: Verdict,
        change: Option<CustomerChange>,
        held: Option<Box<Verdict>>,
    },
}

/// What applying a document changed: its customer, the record's time, and
/// whether the customer's demand (not only its demand by licence status)
/// changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerChange {
    pub customer: String,
    pub at: Timestamp,
    pub demand_changed: bool,
}

/// Decides `record`: refused, or sequenced into `state` (decoded with
/// `decoder`).
pub fn outputs(state: &mut DemandState, decoder: &mut Decoder, record: Received<'_>) -> Outputs {
    if let Err(why) = &record.attested {
        return Outputs::Refused {
            code: RuleCode::Unattested,
            message: format!(
                "{why}; written by something other than the validator, it is not applied"
            ),
            audit: Some(unattested_verdict(record.at, why, record.decided_at)),
        };
    }
    let (doc, digest) = match decoder.decode(record.value) {
        Ok(decoded) => decoded,
        // The validator only passes documents it decoded: a validator of
        // another schema wrote it.
        Err(e) => {
            return Outputs::Refused {
                code: RuleCode::SchemaInvalid,
                message: format!("{e} ({})", e.kind()),
                audit: None,
            };
        }
    };
    let outcome = state.apply_digested(doc, digest);
    let accepted = Verdict {
        document_id: Some(doc.document_id.clone()),
        revision: Some(doc.revision),
        outcome: Outcome::Accepted,
        stage: Stage::Validate,
        codes: Vec::new(),
        warnings: record
            .warnings
            .split(',')
            .filter_map(WarningCode::from_symbol)
            .collect(),
        violations: Vec::new(),
        policy_version: record.policy_version.to_owned(),
        decided_at: record.decided_at,
        source: record.submitted,
        customer_id: Some(doc.customer_id.clone()),
        screening_version: Some(record.screening_version)
            .filter(|v| !v.is_empty())
            .map(str::to_owned),
    };
    let verdict = sequenced_verdict(accepted, &outcome);
    let (change, held) = match outcome {
        Sequenced::Applied { demand_changed, .. } => (
            Some(CustomerChange {
                customer: doc.customer_id.clone(),
                at: record.decided_at,
                demand_changed,
            }),
            state.hold(&doc.customer_id, &doc.document_id).map(|r| {
                let version = state.screening_version().unwrap_or_default();
                Box::new(rescreen_verdict(&r, version, record.decided_at))
            }),
        ),
        _ => (None, None),
    };
    Outputs::Sequenced {
        key: doc.key(),
        verdict,
        change,
        held,
    }
}

/// The verdict on a record of the validated topic that no validator
/// attested: rejected at the sequencing stage with `UNATTESTED`, naming no
/// customer and no document (nothing in it can be attributed), with the
/// record's coordinates as its source.
pub fn unattested_verdict(
    source: SourceCoordinates,
    why: &Unattested,
    decided_at: Timestamp,
) -> Verdict {
    Verdict {
        document_id: None,
        revision: None,
        outcome: Outcome::Rejected,
        stage: Stage::Sequence,
        codes: vec![RuleCode::Unattested],
        warnings: Vec::new(),
        violations: vec![Violation {
            code: RuleCode::Unattested,
            field: String::new(),
            message: why.to_string(),
        }],
        policy_version: String::new(),
        decided_at,
        source: Some(source),
        customer_id: None,
        screening_version: None,
    }
}

#[cfg(test)]
mod tests {
    use forecast_model::{ForecastDocument, wire};

    use super::*;

    fn at(offset: i64) -> SourceCoordinates {
        SourceCoordinates {
            topic: "forecasts.validated".into(),
            partition: 0,
            offset,
        }
    }

    fn received(value: &[u8], offset: i64, attested: Result<(), Unattested>) -> Received<'_> {
        Received {
            at: at(offset),
            value,
            attested,
            policy_version: "sha256:0123",
            screening_version: "csl-1",
            warnings: "DOC_EXPIRES_BEFORE_HORIZON_END,NOT_A_CODE",
            submitted: Some(SourceCoordinates {
                topic: "forecasts.submitted".into(),
                partition: 1,
                offset: 7,
            }),
            decided_at: Timestamp::from_millis(1_000),
        }
    }

    fn document() -> ForecastDocument {
        forecast_model::fixtures::twelve_line_document("TCT-1", "TENCENT")
    }

    #[test]
    fn an_attested_document_is_sequenced_with_the_validators_fields_and_a_duplicate_changes_nothing()
     {
        let (mut state, mut decoder) = (DemandState::new(), Decoder::default());
        let value = wire::encode_document(&document());
        let first = outputs(&mut state, &mut decoder, received(&value, 0, Ok(())));
        let Outputs::Sequenced {
            key,
            verdict,
            change,
            held,
        } = first
        else {
            panic!("not sequenced: {first:?}");
        };
        assert_eq!(key, "TENCENT/TCT-1");
        assert_eq!(
            (verdict.outcome, verdict.stage),
            (Outcome::Accepted, Stage::Sequence)
        );
        assert_eq!(verdict.policy_version, "sha256:0123");
        assert_eq!(verdict.warnings, [WarningCode::DocExpiresBeforeHorizonEnd]);
        assert_eq!(verdict.source.unwrap().topic, "forecasts.submitted");
        let change = change.expect("applied");
        assert!(change.demand_changed && change.customer == "TENCENT");
        assert_eq!(held, None, "no list in force");
        let again = outputs(&mut state, &mut decoder, received(&value, 1, Ok(())));
        let Outputs::Sequenced {
            verdict, change, ..
        } = again
        else {
            panic!("not sequenced: {again:?}");
        };
        assert_eq!(verdict.outcome, Outcome::Duplicate);
        assert_eq!(change, None);
    }

    #[test]
    fn a_revision_applied_under_a_list_that_names_its_end_user_is_held_with_a_rescreen_verdict() {
        let (mut state, mut decoder) = (DemandState::new(), Decoder::default());
        let doc = document();
        let name = doc.end_use.end_users[0].name.clone();
        let list = forecast_model::screening::ScreeningList::from_bytes(
            format!("name\n\"{name}\"\n").as_bytes(),
            "test",
            Some("csl-2".into()),
            Timestamp::from_millis(0),
        )
        .unwrap();
        state.rescreen(&list);
        let value = wire::encode_document(&doc);
        let out = outputs(&mut state, &mut decoder, received(&value, 0, Ok(())));
        let Outputs::Sequenced { verdict, held, .. } = out else {
            panic!("not sequenced: {out:?}");
        };
        assert_eq!(verdict.outcome, Outcome::Accepted);
        let held = held.expect("held at once");
        assert_eq!(
            (held.outcome, held.stage, held.codes.as_slice()),
            (
                Outcome::Rejected,
                Stage::Rescreen,
                &[RuleCode::EndUserRestricted][..]
            )
        );
        assert_eq!(held.screening_version.as_deref(), Some("csl-2"));
        assert_eq!(held.customer_id.as_deref(), Some("TENCENT"));
        assert!(state.is_held("TENCENT", "TCT-1"));
    }

    #[test]
    fn an_unattested_record_is_refused_audited_without_a_customer_and_leaves_the_state() {
        let (mut state, mut decoder) = (DemandState::new(), Decoder::default());
        let value = wire::encode_document(&document());
        let why = Unattested::Missing("the validator".into());
        let out = outputs(
            &mut state,
            &mut decoder,
            received(&value, 3, Err(why.clone())),
        );
        let Outputs::Refused {
            code,
            message,
            audit,
        } = out
        else {
            panic!("not refused: {out:?}");
        };
        assert_eq!(code, RuleCode::Unattested);
        assert!(
            message.contains("not written by the validator"),
            "{message}"
        );
        let audit = audit.expect("audited");
        assert_eq!(
            audit,
            unattested_verdict(at(3), &why, Timestamp::from_millis(1_000))
        );
        assert_eq!((audit.customer_id, audit.document_id), (None, None));
        assert_eq!(state.live_documents(), 0);
        // The same document attested afterwards is its first revision.
        let out = outputs(&mut state, &mut decoder, received(&value, 4, Ok(())));
        assert!(
            matches!(&out, Outputs::Sequenced { verdict, .. } if verdict.outcome == Outcome::Accepted),
            "{out:?}"
        );
    }

    #[test]
    fn an_undecodable_attested_record_is_refused_as_schema_invalid_without_a_verdict() {
        let (mut state, mut decoder) = (DemandState::new(), Decoder::default());
        let out = outputs(
            &mut state,
            &mut decoder,
            received(b"\x00\x00\x00\x00\x01x", 0, Ok(())),
        );
        let Outputs::Refused { code, audit, .. } = out else {
            panic!("not refused: {out:?}");
        };
        assert_eq!((code, audit), (RuleCode::SchemaInvalid, None));
    }
}
