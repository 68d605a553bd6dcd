//! A planner with a little of everything, for tests and the fuzz targets
//! (feature `testing`; not in a production build).

use forecast_model::{
    DemandSnapshot, Outcome, Quarter, RuleCode, SnapshotRow, Stage, Timestamp, Units, Verdict,
};

use crate::Planner;
use crate::feed::Input;

/// A planner holding TENCENT's demand (10 firm units of H20 in 2026-Q3), a
/// rejected TENCENT document (`TCT-1`) and a rejected BYTEDANCE one
/// (`BYT-1`), and a commit to each of TENCENT and BYTEDANCE (signed with
/// a key made for it).
pub fn sample_planner() -> Planner {
    let planner = Planner::default();
    for (id, customer) in [("TCT-1", "TENCENT"), ("BYT-1", "BYTEDANCE")] {
        planner.apply(vec![Input::Verdict(Box::new(Verdict {
            document_id: Some(id.into()),
            revision: Some(1),
            outcome: Outcome::Rejected,
            stage: Stage::Validate,
            codes: vec![RuleCode::SkuUnknown],
            warnings: vec![],
            violations: vec![],
            policy_version: "sha256:0".into(),
            decided_at: Timestamp::from_millis(0),
            source: None,
            customer_id: Some(customer.into()),
            screening_version: None,
        }))]);
    }
    planner.apply(vec![Input::Demand {
        key: b"TENCENT/0".to_vec(),
        snapshot: Some(DemandSnapshot {
            customer_id: "TENCENT".into(),
            sequence: 1,
            as_of: Timestamp::from_millis(0),
            rows: vec![SnapshotRow {
                sku: "H20".into(),
                quarter: Quarter::new(2026, 3).expect("a quarter"),
                units: Units {
                    firm_units: 10,
                    planning_units: 0,
                },
            }],
        }),
        at: None,
    }]);
    let supplier = forecast_model::signing::Signer::new(
        forecast_model::signing::generate_key().expect("a key"),
        None,
    )
    .attester();
    for customer in ["TENCENT", "BYTEDANCE"] {
        let commit = forecast_model::commit::Commit {
            customer_id: customer.into(),
            allocated_at: Timestamp::from_millis(0),
            method: forecast_model::allocation::Method::ProRata,
            lines: Vec::new(),
        };
        let signed = forecast_model::commit::SignedCommit::sign(&commit, "commits", &supplier)
            .expect("a commit encodes");
        planner.apply(vec![Input::Commit {
            customer: customer.into(),
            record: Some(Box::new((signed, commit))),
        }]);
    }
    planner
}
