//! Demand by licence status: a decision moves a document's units at once,
//! whatever the document says and whichever arrives first; the breakdown
//! always adds up to the demand rows.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use forecast_aggregator::{Decided, DemandState};
use forecast_model::*;
use proptest::prelude::*;

mod common;

/// [`common::doc`] (an ORIGINAL at revision 1, else a REPLACE) claiming
/// `licence`: its status and application.
fn doc(
    id: &str,
    revision: i32,
    customer: &str,
    licence: (LicenseStatus, Option<&str>),
    lines: &[(&str, &str, i64, Confidence)],
) -> ForecastDocument {
    let purpose = if revision == 1 {
        Purpose::Original
    } else {
        Purpose::Replace
    };
    let mut d = common::doc(id, revision, purpose, customer, lines);
    d.export_license.status = licence.0;
    d.export_license.application_number = licence.1.map(str::to_owned);
    d
}

/// A decision for the customer whose applications these tests number:
/// Z-1 and Z-9 are TENCENT's, Z-2 BYTEDANCE's, Z-3 ALIBABA's.
fn decision(application: &str, status: DecisionStatus, at_ms: i64) -> LicenceDecision {
    let customer = match application {
        "Z-2" => "BYTEDANCE",
        "Z-3" => "ALIBABA",
        _ => "TENCENT",
    };
    decision_for(application, customer, status, at_ms)
}

fn decision_for(
    application: &str,
    customer: &str,
    status: DecisionStatus,
    at_ms: i64,
) -> LicenceDecision {
    LicenceDecision {
        application_number: application.into(),
        customer_id: customer.into(),
        status,
        decided_at: Timestamp::from_millis(at_ms),
        approved_quantity: BTreeMap::new(),
        expires_on: None,
    }
}

use Confidence::{Firm, Planning};
use LicenseStatus::{Approved, NotFiled, Pending};

/// (customer, sku, quarter, status) -> (firm, planning).
fn by_status(s: &DemandState) -> BTreeMap<(String, String, String, String), (i64, i64)> {
    s.licence_rows()
        .map(|r| {
            assert_eq!(r.total_units, r.firm_units + r.planning_units);
            (
                (
                    r.customer_id,
                    r.sku,
                    r.quarter.to_string(),
                    r.licence_status.to_string(),
                ),
                (r.firm_units, r.planning_units),
            )
        })
        .collect()
}

fn cell(s: &DemandState, customer: &str, sku: &str, quarter: &str, status: &str) -> (i64, i64) {
    by_status(s)
        .get(&(customer.into(), sku.into(), quarter.into(), status.into()))
        .copied()
        .unwrap_or_default()
}

#[test]
fn a_decision_moves_the_units_of_every_document_that_references_it() {
    let mut s = DemandState::new();
    s.apply(&doc(
        "T-1",
        1,
        "TENCENT",
        (Pending, Some("Z-1")),
        &[
            ("H20", "2026-10-01", 100, Firm),
            ("H20", "2027-01-01", 40, Planning),
        ],
    ));
    s.apply(&doc(
        "T-2",
        1,
        "TENCENT",
        (Pending, Some("Z-1")),
        &[("H20", "2026-10-01", 10, Firm)],
    ));
    s.apply(&doc(
        "B-1",
        1,
        "BYTEDANCE",
        (Approved, Some("Z-2")),
        &[("H20", "2026-10-01", 70, Firm)],
    ));
    s.apply(&doc(
        "A-1",
        1,
        "ALIBABA",
        (NotFiled, None),
        &[("H20", "2026-10-01", 5, Planning)],
    ));
    assert_eq!(cell(&s, "TENCENT", "H20", "2026-Q4", "PENDING"), (110, 0));
    assert_eq!(cell(&s, "ALIBABA", "H20", "2026-Q4", "NOT_FILED"), (0, 5));
    assert!(s.lost_firm_demand().is_empty());

    // Z-1 denied: both TENCENT documents move, the demand rows do not.
    let rows_before: Vec<_> = s.rows().collect();
    assert_eq!(
        s.take_decision(decision("Z-1", DecisionStatus::Denied, 1_000)),
        Decided::Taken {
            affected: vec!["TENCENT".into()]
        }
    );
    assert_eq!(cell(&s, "TENCENT", "H20", "2026-Q4", "PENDING"), (0, 0));
    assert_eq!(cell(&s, "TENCENT", "H20", "2026-Q4", "DENIED"), (110, 0));
    assert_eq!(cell(&s, "TENCENT", "H20", "2027-Q1", "DENIED"), (0, 40));
    assert_eq!(s.rows().collect::<Vec<_>>(), rows_before);
    let lost = s.lost_firm_demand();
    assert_eq!(
        lost.iter()
            .map(|l| (l.document_id.as_str(), l.firm_units, l.planning_units))
            .collect::<Vec<_>>(),
        [("T-1", 100, 40), ("T-2", 10, 0)]
    );
    assert_eq!(lost[0].licence_status, ExposureStatus::Denied);

    // An older decision arriving late changes nothing; a later one does.
    assert_eq!(
        s.take_decision(decision("Z-1", DecisionStatus::Approved, 999)),
        Decided::Superseded
    );
    assert_eq!(cell(&s, "TENCENT", "H20", "2026-Q4", "DENIED"), (110, 0));
    s.take_decision(decision("Z-1", DecisionStatus::Approved, 2_000));
    assert_eq!(cell(&s, "TENCENT", "H20", "2026-Q4", "APPROVED"), (110, 0));
    assert!(s.lost_firm_demand().is_empty());

    // A REPLACE that names another application counts under that one;
    // ByteDance's, for a Tencent document: a borrowed licence, lost.
    s.take_decision(decision("Z-2", DecisionStatus::Revoked, 3_000));
    assert_eq!(cell(&s, "BYTEDANCE", "H20", "2026-Q4", "REVOKED"), (70, 0));
    s.apply(&doc(
        "T-2",
        2,
        "TENCENT",
        (Pending, Some("Z-2")),
        &[("H20", "2026-10-01", 12, Firm)],
    ));
    assert_eq!(cell(&s, "TENCENT", "H20", "2026-Q4", "APPROVED"), (100, 0));
    assert_eq!(cell(&s, "TENCENT", "H20", "2026-Q4", "REVOKED"), (0, 0));
    assert_eq!(
        cell(&s, "TENCENT", "H20", "2026-Q4", "FOREIGN_LICENCE"),
        (12, 0)
    );
    assert_eq!(s.lost_firm_demand().len(), 2, "B-1 and T-2 rev 2");
}

#[test]
fn a_document_citing_another_customers_licence_borrows_nothing() {
    // The case: Tencent cites ByteDance's approved Z-2450685.
    let mut s = DemandState::new();
    let mut approval = decision_for("Z-2450685", "BYTEDANCE", DecisionStatus::Approved, 1);
    approval.approved_quantity = [("H20".to_owned(), 100)].into();
    for order in [true, false] {
        let mut s2 = DemandState::new();
        let tencent = doc(
            "TCT-1",
            1,
            "TENCENT",
            (Approved, Some("Z-2450685")),
            &[("H20", "2026-10-01", 90, Firm)],
        );
        let bytedance = doc(
            "BYT-1",
            1,
            "BYTEDANCE",
            (Approved, Some("Z-2450685")),
            &[("H20", "2026-10-01", 60, Firm)],
        );
        // Decision before or after the documents: the same answer.
        if order {
            s2.take_decision(approval.clone());
        }
        s2.apply(&tencent);
        s2.apply(&bytedance);
        if !order {
            s2.take_decision(approval.clone());
        }
        assert_eq!(cell(&s2, "TENCENT", "H20", "2026-Q4", "APPROVED"), (0, 0));
        assert_eq!(
            cell(&s2, "TENCENT", "H20", "2026-Q4", "FOREIGN_LICENCE"),
            (90, 0)
        );
        assert_eq!(
            cell(&s2, "BYTEDANCE", "H20", "2026-Q4", "APPROVED"),
            (60, 0)
        );
        // Listed with the lost demand, under its own status.
        let lost = s2.lost_firm_demand();
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert_eq!(
            (lost[0].customer_id.as_str(), lost[0].licence_status),
            ("TENCENT", ExposureStatus::ForeignLicence)
        );
        // ByteDance's 60 of 100: Tencent's 90 never count against the cap.
        assert!(s2.over_approved().is_empty(), "{:?}", s2.over_approved());
        assert_eq!(
            s2.licence_snapshot("TENCENT", Timestamp::from_millis(0))
                .lost
                .len(),
            1
        );
        s = s2;
    }
    // A revocation moves ByteDance's units, Tencent's stay foreign.
    s.take_decision(decision_for(
        "Z-2450685",
        "BYTEDANCE",
        DecisionStatus::Revoked,
        2,
    ));
    assert_eq!(cell(&s, "BYTEDANCE", "H20", "2026-Q4", "REVOKED"), (60, 0));
    assert_eq!(
        cell(&s, "TENCENT", "H20", "2026-Q4", "FOREIGN_LICENCE"),
        (90, 0)
    );
}

#[test]
fn a_decision_that_arrives_before_its_document_is_kept_and_applied_when_it_comes() {
    let mut s = DemandState::new();
    assert_eq!(
        s.take_decision(decision("Z-9", DecisionStatus::Revoked, 5)),
        Decided::Taken { affected: vec![] }
    );
    s.apply(&doc(
        "T-9",
        1,
        "TENCENT",
        (Approved, Some("Z-9")),
        &[("H20", "2026-10-01", 30, Firm)],
    ));
    assert_eq!(cell(&s, "TENCENT", "H20", "2026-Q4", "REVOKED"), (30, 0));
    assert_eq!(cell(&s, "TENCENT", "H20", "2026-Q4", "APPROVED"), (0, 0));
    assert_eq!(s.lost_firm_demand()[0].document_id, "T-9");
}

#[test]
fn an_approved_quantity_below_the_demand_that_references_it_is_reported() {
    let mut s = DemandState::new();
    s.apply(&doc(
        "T-1",
        1,
        "TENCENT",
        (Approved, Some("Z-1")),
        &[
            ("H20", "2026-10-01", 60, Firm),
            ("H20", "2027-01-01", 30, Planning),
            ("L20", "2026-10-01", 5, Firm),
        ],
    ));
    let mut d = decision("Z-1", DecisionStatus::Approved, 1);
    d.approved_quantity = [("H20".to_owned(), 80), ("L20".to_owned(), 5)].into();
    s.take_decision(d);
    let over = s.over_approved();
    assert_eq!(over.len(), 1, "{over:?}");
    assert_eq!(
        (
            over[0].sku.as_str(),
            over[0].approved_units,
            over[0].demanded_units
        ),
        ("H20", 80, 90)
    );
    // A denial is not an approval to exceed.
    s.take_decision(decision("Z-1", DecisionStatus::Denied, 2));
    assert!(s.over_approved().is_empty());
}

#[test]
fn a_snapshot_lists_at_most_lost_listed_documents_and_counts_the_rest() {
    let mut s = DemandState::new();
    s.take_decision(decision("Z-1", DecisionStatus::Revoked, 1));
    let n = LOST_LISTED + 3;
    for i in 0..n {
        s.apply(&doc(
            &format!("T-{i:05}"),
            1,
            "TENCENT",
            (Approved, Some("Z-1")),
            &[("H20", "2026-10-01", 2, Firm)],
        ));
    }
    let snap = s.licence_snapshot("TENCENT", Timestamp::from_millis(7));
    assert_eq!(snap.lost.len(), LOST_LISTED);
    assert_eq!(snap.lost_not_listed, 3);
    assert_eq!(snap.lost[0].document_id, "T-00000");
    let units = 2 * n as i64;
    assert_eq!(snap.rows.len(), 1);
    assert_eq!(snap.rows[0].licence_status, ExposureStatus::Revoked);
    assert_eq!(snap.rows[0].units.firm_units, units);
    assert_eq!(
        snap.references,
        [Reference {
            application_number: "Z-1".into(),
            sku: "H20".into(),
            units
        }]
    );
    // Another customer's snapshot holds none of it.
    let other = s.licence_snapshot("ALIBABA", Timestamp::from_millis(7));
    assert!(other.rows.is_empty() && other.lost.is_empty() && other.references.is_empty());
}

/// A document that passed the rules, among a few ids, customers and
/// applications, with any licence status a document can be accepted with.
fn any_document() -> impl Strategy<Value = ForecastDocument> {
    let line = (0..2usize, 0..3usize, 0i64..100, any::<bool>());
    (
        0..4usize,
        1..4i32,
        0..2usize,
        0..3usize,
        0..3usize,
        proptest::collection::vec(line, 0..4),
    )
        .prop_map(|(id, revision, customer, status, application, lines)| {
            let status = [NotFiled, Pending, Approved][status];
            let application = [None, Some("Z-1"), Some("Z-2")][application];
            let lines: Vec<_> = lines
                .into_iter()
                .map(|(sku, quarter, q, firm)| {
                    (
                        ["H20", "L20"][sku],
                        ["2026-07-01", "2026-10-01", "2027-01-01"][quarter],
                        q,
                        if firm { Firm } else { Planning },
                    )
                })
                .collect();
            doc(
                &format!("D-{id}"),
                revision,
                ["TENCENT", "ALIBABA"][customer],
                (status, application),
                &lines,
            )
        })
}

#[derive(Debug, Clone)]
enum Event {
    Document(Box<ForecastDocument>),
    Decision(LicenceDecision),
}

fn any_events() -> impl Strategy<Value = Vec<Event>> {
    let decision =
        (0..3usize, 0..3usize, 0..4usize, 0i64..4, 0i64..150).prop_map(|(a, c, s, at, q)| {
            // Any of the customers, the documents' own or another.
            let customer = ["TENCENT", "ALIBABA", "BYTEDANCE"][c];
            let mut d = decision_for(
                ["Z-1", "Z-2", "Z-3"][a],
                customer,
                DecisionStatus::ALL[s],
                at,
            );
            // Quantities around what a few documents ask for, so that some
            // are exceeded.
            d.approved_quantity = [("H20".to_owned(), q)].into();
            Event::Decision(d)
        });
    let event =
        prop_oneof![3 => any_document().prop_map(|d| Event::Document(Box::new(d))), 1 => decision];
    proptest::collection::vec(event, 0..40)
}

fn run(events: &[Event]) -> DemandState {
    let mut s = DemandState::new();
    for e in events {
        match e {
            Event::Document(d) => {
                s.apply(d);
            }
            Event::Decision(d) => {
                s.take_decision(d.clone());
            }
        }
    }
    s
}

/// Demand rows as (customer, sku, quarter) -> (firm, planning).
fn summed(s: &DemandState) -> BTreeMap<(String, String, String), (i64, i64)> {
    let mut sums: BTreeMap<_, (i64, i64)> = BTreeMap::new();
    for ((c, sku, q, _), (f, p)) in by_status(s) {
        let cell = sums.entry((c, sku, q)).or_default();
        cell.0 += f;
        cell.1 += p;
    }
    sums.retain(|_, (f, p)| *f + *p != 0);
    sums
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The live path: documents spread over partitions by id, each
    /// partition's state with every decision, every customer's licence
    /// snapshot of every partition published (through the wire codec) and
    /// summed by a `LicenceView`, as the planner does; the view answers
    /// what one state of all the documents answers (`replay`).
    #[test]
    fn snapshots_summed_over_partitions_answer_as_one_state(events in any_events()) {
        let whole = run(&events);
        let mut parts = [DemandState::new(), DemandState::new(), DemandState::new()];
        let mut view = LicenceView::default();
        for e in &events {
            match e {
                Event::Document(d) => {
                    let p = d.document_id.bytes().map(usize::from).sum::<usize>() % parts.len();
                    parts[p].apply(d);
                }
                Event::Decision(d) => {
                    for s in &mut parts {
                        s.take_decision(d.clone());
                    }
                    view.take_decision(d.clone());
                }
            }
        }
        for (p, s) in parts.iter().enumerate() {
            for customer in s.customers() {
                let snapshot = s.licence_snapshot(customer, Timestamp::from_millis(1));
                let record = wire::encode_licence_snapshot(&snapshot);
                wire::take_licence_snapshot(&mut view, format!("{customer}/{p}").as_bytes(), Some(&record)).unwrap();
            }
        }
        prop_assert_eq!(view.rows(None), whole.licence_rows().collect::<Vec<_>>());
        prop_assert_eq!(view.lost(None), (whole.lost_firm_demand(), 0));
        prop_assert_eq!(view.over_approved(), whole.over_approved());
        for customer in ["TENCENT", "ALIBABA"] {
            prop_assert_eq!(view.lost(Some(customer)).0, whole.lost(Some(customer)));
        }
    }

    /// After every document and every decision, the units by licence
    /// status add up, cell by cell, to the demand rows.
    #[test]
    fn the_breakdown_adds_up_to_the_demand_after_every_step(events in any_events()) {
        let mut s = DemandState::new();
        for e in &events {
            match e {
                Event::Document(d) => { s.apply(d); }
                Event::Decision(d) => { s.take_decision(d.clone()); }
            }
            let rows: BTreeMap<_, _> = s
                .rows()
                .map(|r| ((r.customer_id, r.sku, r.quarter.to_string()), (r.firm_units, r.planning_units)))
                .collect();
            prop_assert_eq!(summed(&s), rows);
        }
    }

    /// Decisions and documents in any interleaving (each kept in its own
    /// order) end in the same breakdown, losses and warnings.
    #[test]
    fn decisions_before_or_after_the_documents_end_the_same(events in any_events()) {
        let (docs, decisions): (Vec<_>, Vec<_>) =
            events.iter().cloned().partition(|e| matches!(e, Event::Document(_)));
        let first = run(&[decisions.clone(), docs.clone()].concat());
        let last = run(&[docs, decisions].concat());
        let mixed = run(&events);
        for s in [&last, &mixed] {
            prop_assert_eq!(by_status(s), by_status(&first));
            prop_assert_eq!(s.lost_firm_demand(), first.lost_firm_demand());
            prop_assert_eq!(s.over_approved(), first.over_approved());
        }
    }
}
