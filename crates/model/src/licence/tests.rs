use super::*;
use crate::{DecodeError, wire};

fn snapshot(customer: &str, firm: i64, application: &str, lost: &[&str]) -> LicenceSnapshot {
    LicenceSnapshot {
        customer_id: customer.into(),
        as_of: Timestamp::from_millis(0),
        rows: vec![LicenceCell {
            sku: "H20".into(),
            quarter: Quarter::new(2026, 4).unwrap(),
            licence_status: ExposureStatus::Approved,
            units: Units {
                firm_units: firm,
                planning_units: 1,
            },
        }],
        lost: lost
            .iter()
            .map(|id| LostDocument {
                document_id: (*id).into(),
                customer_id: customer.into(),
                revision: 1,
                application_number: application.into(),
                licence_status: ExposureStatus::Revoked,
                decided_at: Timestamp::from_millis(5),
                firm_units: 3,
                planning_units: 0,
            })
            .collect(),
        lost_not_listed: 1,
        references: vec![Reference {
            application_number: application.into(),
            sku: "H20".into(),
            units: firm + 1,
        }],
    }
}

#[test]
fn the_view_sums_the_latest_snapshot_of_every_partition() {
    let mut v = LicenceView::default();
    assert!(v.set(b"T/0", Some(snapshot("T", 10, "Z-1", &["D-2"]))));
    assert!(v.set(b"T/1", Some(snapshot("T", 5, "Z-1", &["D-1"]))));
    assert!(v.set(b"A/0", Some(snapshot("A", 7, "Z-2", &[]))));
    // The same snapshot again is no change.
    assert!(!v.set(b"T/1", Some(snapshot("T", 5, "Z-1", &["D-1"]))));
    let rows = v.rows(Some("T"));
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            rows[0].firm_units,
            rows[0].planning_units,
            rows[0].total_units
        ),
        (15, 2, 17)
    );
    assert_eq!(v.rows(None).len(), 2);
    let (lost, not_listed) = v.lost(Some("T"));
    let ids: Vec<_> = lost.iter().map(|l| l.document_id.as_str()).collect();
    assert_eq!((ids, not_listed), (vec!["D-1", "D-2"], 2));
    // Approved quantities against the units of every customer.
    let approve = |application: &str, units: i64, at: i64| LicenceDecision {
        application_number: application.into(),
        customer_id: if application == "Z-2" { "A" } else { "T" }.into(),
        status: DecisionStatus::Approved,
        decided_at: Timestamp::from_millis(at),
        approved_quantity: [("H20".to_owned(), units)].into(),
        expires_on: None,
    };
    assert!(v.take_decision(approve("Z-1", 17, 1)));
    assert!(v.take_decision(approve("Z-2", 8, 1)));
    assert!(v.over_approved().is_empty(), "17 of 17, 8 of 8");
    assert!(!v.take_decision(approve("Z-1", 1, 0)), "decided earlier");
    assert!(v.take_decision(approve("Z-1", 16, 2)));
    let over = v.over_approved();
    assert_eq!(
        over.iter()
            .map(|o| (
                o.application_number.as_str(),
                o.approved_units,
                o.demanded_units
            ))
            .collect::<Vec<_>>(),
        [("Z-1", 16, 17)]
    );
    // A tombstone takes the partition's snapshot out.
    assert!(v.set(b"T/0", None));
    assert!(!v.set(b"T/0", None));
    assert_eq!(v.rows(Some("T"))[0].firm_units, 5);
    assert!(v.over_approved().is_empty());
}

#[test]
fn an_undecodable_snapshot_leaves_the_view_as_it_was() {
    let mut v = LicenceView::default();
    let good = wire::encode_licence_snapshot(&snapshot("T", 10, "Z-1", &[]));
    assert!(wire::take_licence_snapshot(&mut v, b"T/0", Some(&good)).unwrap());
    let err =
        wire::take_licence_snapshot(&mut v, b"T/0", Some(&good[..good.len() - 1])).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Truncated { .. } | DecodeError::Invalid { .. }
        ),
        "{err:?}"
    );
    assert_eq!(v.rows(None)[0].firm_units, 10);
}

#[test]
fn a_decision_overrides_the_documents_own_status() {
    use ExposureStatus as E;
    let decided = |status| LicenceDecision {
        application_number: "Z-1".into(),
        customer_id: "T".into(),
        status,
        decided_at: Timestamp::from_millis(0),
        approved_quantity: BTreeMap::new(),
        expires_on: None,
    };
    let (revoked, approved) = (
        decided(DecisionStatus::Revoked),
        decided(DecisionStatus::Approved),
    );
    for claimed in LicenseStatus::ALL {
        assert_eq!(E::under(*claimed, Some(&revoked), "T"), E::Revoked);
        assert_eq!(E::under(*claimed, Some(&approved), "T"), E::Approved);
        // Another customer's licence: borrowed, whatever it says.
        assert_eq!(E::under(*claimed, Some(&approved), "B"), E::ForeignLicence);
    }
    assert_eq!(E::under(LicenseStatus::Pending, None, "T"), E::Pending);
    assert_eq!(E::under(LicenseStatus::NotFiled, None, "T"), E::NotFiled);
    assert!(E::Denied.is_lost() && E::Revoked.is_lost() && !E::Pending.is_lost());
    assert!(E::ForeignLicence.is_lost());
}

#[test]
fn a_licence_file_reads_with_errors_naming_the_line() {
    let text = r#"# decisions of 2026-12-01
{"application_number": "Z-1", "customer_id": "TENCENT", "status": "APPROVED", "decided_at": "2026-12-01T08:00:00+08:00", "approved_quantity": {"H20-96GB": 50000}, "expires_on": "2027-12-31"}

{"application_number": "Z-2", "customer_id": "TENCENT", "status": "DENIED", "decided_at": "2026-12-02T00:00:00Z", "approved_quantity": null}
"#;
    let d = read_decisions(text, "licences.jsonl").unwrap();
    assert_eq!(d.len(), 2);
    assert!(d[1].approved_quantity.is_empty(), "null reads as absent");
    assert_eq!(d[0].approved_quantity["H20-96GB"], 50_000);
    assert_eq!(
        d[0].expires_on.map(|e| e.to_string()).as_deref(),
        Some("2027-12-31")
    );
    assert_eq!(
        (d[1].status, d[1].expires_on),
        (DecisionStatus::Denied, None)
    );
    assert!(d[1].supersedes(&d[0]), "decided later");
    assert!(!d[0].supersedes(&d[1]));

    for (line, problem) in [
        (
            r#"{"application_number": "Z-1", "customer_id": "T", "status": "DENIED", "decided_at": "2026-12-02T00:00:00Z", "reason": "x"}"#,
            "unknown field `reason`",
        ),
        (
            r#"{"application_number": "Z-1", "customer_id": "T", "status": "REFUSED", "decided_at": "2026-12-02T00:00:00Z"}"#,
            "REFUSED",
        ),
        (
            r#"{"application_number": " ", "customer_id": "T", "status": "DENIED", "decided_at": "2026-12-02T00:00:00Z"}"#,
            "empty application_number",
        ),
        (
            r#"{"application_number": "Z-1", "customer_id": "T", "status": "APPROVED", "decided_at": "2026-12-02T00:00:00Z", "approved_quantity": {"H20": -1}}"#,
            "below 0",
        ),
        (
            r#"{"application_number": "Z-1", "customer_id": "T", "status": "APPROVED"}"#,
            "decided_at",
        ),
        (
            r#"{"application_number": "Z-1", "status": "APPROVED", "decided_at": "2026-12-02T00:00:00Z"}"#,
            "customer_id",
        ),
        (
            r#"{"application_number": "Z-1", "customer_id": "", "status": "APPROVED", "decided_at": "2026-12-02T00:00:00Z"}"#,
            "no customer_id",
        ),
    ] {
        let e = read_decisions(&format!("\n{line}\n"), "l.jsonl").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("l.jsonl", 2), "{e}");
        assert!(e.problem.contains(problem), "{problem}: {e}");
    }
}

proptest::proptest! {
    /// Whatever compaction keeps (at least the last record written of
    /// each key), the decisions that count are those of the whole
    /// topic, as `replay --licences` takes them from the file.
    #[test]
    fn compaction_by_key_keeps_the_decisions_that_count(
        written in proptest::collection::vec((0usize..3, 0usize..4, 0i64..4), 0..30),
        keep in proptest::collection::vec(proptest::bool::ANY, 30),
    ) {
        let decisions: Vec<LicenceDecision> = written
            .iter()
            .map(|&(a, s, at)| LicenceDecision {
                application_number: ["Z-1", "Z-2", "Z-3"][a].into(),
                customer_id: "T".into(),
                status: DecisionStatus::ALL[s],
                decided_at: Timestamp::from_millis(at),
                approved_quantity: BTreeMap::new(),
                expires_on: None,
            })
            .collect();
        let mut whole = LicenceRegister::default();
        for d in &decisions {
            whole.take(d.clone());
        }
        // A compaction: the last record of each key, and any others
        // it has not removed yet, in the order written.
        let last: HashMap<String, usize> =
            decisions.iter().enumerate().map(|(i, d)| (d.key(), i)).collect();
        let mut compacted = LicenceRegister::default();
        for (i, d) in decisions.iter().enumerate() {
            if last[&d.key()] == i || keep[i] {
                compacted.take(d.clone());
            }
        }
        for a in ["Z-1", "Z-2", "Z-3"] {
            proptest::prop_assert_eq!(compacted.get(a), whole.get(a));
        }
    }
}

#[test]
fn a_decision_round_trips_through_json() {
    let d = LicenceDecision {
        application_number: "Z-9".into(),
        customer_id: "TENCENT".into(),
        status: DecisionStatus::Revoked,
        decided_at: Timestamp::from_millis(1_764_547_200_000),
        approved_quantity: BTreeMap::new(),
        expires_on: None,
    };
    let json = serde_json::to_string(&d).unwrap();
    assert!(
        !json.contains("approved_quantity") && !json.contains("expires_on"),
        "{json}"
    );
    assert_eq!(serde_json::from_str::<LicenceDecision>(&json).unwrap(), d);
}
