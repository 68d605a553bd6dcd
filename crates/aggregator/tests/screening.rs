//! Re-screening: a new restricted-party list holds the live documents whose
//! end users it names (their units move to SCREENING_HOLD in demand by
//! licence status, demand per customer unchanged) and releases them when a
//! later list drops the name; the final state does not depend on whether
//! documents or lists came first.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use forecast_aggregator::{DemandState, Rescreened};
use forecast_model::screening::ScreeningList;
use forecast_model::*;
use proptest::prelude::*;

mod common;

use Confidence::{Firm, Planning};

const LISTED: &str = "Beijing Volcano Engine Technology Co., Ltd.";

fn list(version: &str, names: &[&str]) -> ScreeningList {
    let mut csv = String::from("_id,name,alt_names\n");
    for (i, n) in names.iter().enumerate() {
        csv.push_str(&format!("e{i},\"{n}\",\n"));
    }
    ScreeningList::from_bytes(
        csv.as_bytes(),
        "test",
        Some(version.into()),
        Timestamp::from_millis(0),
    )
    .unwrap()
}

/// An ORIGINAL (revision 1) or a REPLACE of `customer`'s `id`, whose end
/// users are `end_users`, claiming an APPROVED licence `Z-1`.
fn doc(id: &str, revision: i32, customer: &str, end_users: &[&str]) -> ForecastDocument {
    let purpose = if revision == 1 {
        Purpose::Original
    } else {
        Purpose::Replace
    };
    let mut d = common::doc(
        id,
        revision,
        purpose,
        customer,
        &[
            ("H20-96GB", "2026-07-01", 100, Firm),
            ("H20-96GB", "2026-10-01", 40, Planning),
        ],
    );
    d.export_license.status = LicenseStatus::Approved;
    d.end_use.end_users = end_users
        .iter()
        .map(|n| EndUser {
            name: (*n).into(),
            country: "CN".into(),
        })
        .collect();
    d
}

/// (customer, quarter, status) -> total units.
fn by_status(s: &DemandState) -> BTreeMap<(String, String, String), i64> {
    s.licence_rows()
        .map(|r| {
            (
                (
                    r.customer_id,
                    r.quarter.to_string(),
                    r.licence_status.to_string(),
                ),
                r.total_units,
            )
        })
        .collect()
}

fn key(customer: &str, quarter: &str, status: &str) -> (String, String, String) {
    (customer.into(), quarter.into(), status.into())
}

#[test]
fn a_new_list_holds_the_document_it_names_and_the_old_list_releases_it() {
    let mut s = DemandState::new();
    s.rescreen(&list("v1", &["Red Lantern Advanced Systems"]));
    s.apply(&doc(
        "BYT-1",
        1,
        "BYTEDANCE",
        &["beijing volcano engine technology"],
    ));
    s.apply(&doc("TCT-1", 1, "TENCENT", &["Tencent Cloud"]));
    let demand_before: Vec<_> = s.rows().collect();
    let held = s.rescreen(&list("v2", &["Red Lantern Advanced Systems", LISTED]));
    assert_eq!(
        held,
        [Rescreened {
            customer_id: "BYTEDANCE".into(),
            document_id: "BYT-1".into(),
            revision: 1,
            held: true,
            names: vec![LISTED.into()],
        }]
    );
    assert!(s.is_held("BYTEDANCE", "BYT-1"));
    assert_eq!(s.screening_version(), Some("v2"));
    let rows = by_status(&s);
    assert_eq!(
        rows.get(&key("BYTEDANCE", "2026-Q3", "SCREENING_HOLD")),
        Some(&100)
    );
    assert_eq!(rows.get(&key("BYTEDANCE", "2026-Q3", "APPROVED")), None);
    // Another customer's units do not move; demand per customer is what
    // the customers asked for.
    assert_eq!(rows.get(&key("TENCENT", "2026-Q3", "APPROVED")), Some(&100));
    assert_eq!(s.rows().collect::<Vec<_>>(), demand_before);

    let released = s.rescreen(&list("v1-again", &["Red Lantern Advanced Systems"]));
    assert_eq!(released.len(), 1);
    assert!(!released[0].held);
    assert_eq!(released[0].names, [LISTED]);
    let rows = by_status(&s);
    assert_eq!(
        rows.get(&key("BYTEDANCE", "2026-Q3", "APPROVED")),
        Some(&100)
    );
    assert!(!rows.keys().any(|(_, _, st)| st == "SCREENING_HOLD"));
}

#[test]
fn a_list_that_names_nobody_live_changes_nothing() {
    let mut s = DemandState::new();
    s.apply(&doc("BYT-1", 1, "BYTEDANCE", &["Volcano Engine"]));
    let before = by_status(&s);
    assert_eq!(s.rescreen(&list("v1", &["Someone Else Entirely"])), []);
    assert_eq!(by_status(&s), before);
    // A document held by two names stays held until both are gone.
    let mut s = DemandState::new();
    s.apply(&doc("BYT-2", 1, "BYTEDANCE", &["A Corp", "B Ltd"]));
    assert_eq!(s.rescreen(&list("v1", &["A", "B"])).len(), 1);
    assert_eq!(s.rescreen(&list("v2", &["B"])), []);
    assert!(s.is_held("BYTEDANCE", "BYT-2"));
    assert_eq!(s.rescreen(&list("v3", &[])).len(), 1);
    assert!(!s.is_held("BYTEDANCE", "BYT-2"));
}

#[test]
fn a_revision_applied_under_a_list_that_names_it_is_held_and_a_clean_one_is_not() {
    let mut s = DemandState::new();
    s.rescreen(&list("v1", &[LISTED]));
    s.apply(&doc("BYT-1", 1, "BYTEDANCE", &[LISTED]));
    assert!(s.is_held("BYTEDANCE", "BYT-1"));
    s.apply(&doc("BYT-1", 2, "BYTEDANCE", &["Douyin Compute"]));
    assert!(!s.is_held("BYTEDANCE", "BYT-1"));
    // The replaced revision's end user no longer points at the document.
    assert_eq!(s.rescreen(&list("v2", &[])), []);
    let rows = by_status(&s);
    assert_eq!(
        rows.get(&key("BYTEDANCE", "2026-Q3", "APPROVED")),
        Some(&100)
    );
}

#[test]
fn a_licence_decision_does_not_move_a_held_document_until_it_is_released() {
    let mut s = DemandState::new();
    s.apply(&doc("TCT-1", 1, "TENCENT", &[LISTED]));
    s.rescreen(&list("v1", &[LISTED]));
    s.take_decision(LicenceDecision {
        application_number: "Z-1".into(),
        customer_id: "TENCENT".into(),
        status: DecisionStatus::Denied,
        decided_at: Timestamp::from_millis(5),
        approved_quantity: BTreeMap::new(),
        expires_on: None,
    });
    let rows = by_status(&s);
    assert_eq!(
        rows.get(&key("TENCENT", "2026-Q3", "SCREENING_HOLD")),
        Some(&100)
    );
    assert_eq!(rows.get(&key("TENCENT", "2026-Q3", "DENIED")), None);
    assert!(
        s.lost(None).is_empty(),
        "a held document is not listed as lost"
    );
    s.rescreen(&list("v2", &[]));
    let rows = by_status(&s);
    assert_eq!(rows.get(&key("TENCENT", "2026-Q3", "DENIED")), Some(&100));
    assert_eq!(s.lost(None).len(), 1);
}

/// One step: apply a revision of a document, or publish a list.
#[derive(Debug, Clone)]
enum Step {
    Apply { doc: usize, end_user: usize },
    List(Vec<usize>),
}

const CUSTOMERS: [&str; 3] = ["TENCENT", "BYTEDANCE", "ALIBABA"];
const NAMES: [&str; 5] = [
    "Alpha Compute",
    "Beta Labs",
    "Gamma Cloud",
    "Delta AI",
    "Epsilon",
];

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            3 => (0..6usize, 0..NAMES.len()).prop_map(|(doc, end_user)| Step::Apply { doc, end_user }),
            1 => prop::collection::vec(0..NAMES.len(), 0..4).prop_map(Step::List),
        ],
        1..30,
    )
}

fn run(steps: &[Step]) -> DemandState {
    let mut s = DemandState::new();
    let mut revisions = [0i32; 6];
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Apply { doc: d, end_user } => {
                revisions[*d] += 1;
                let customer = CUSTOMERS[*d % 3];
                s.apply(&doc(
                    &format!("D-{d}"),
                    revisions[*d],
                    customer,
                    &[NAMES[*end_user]],
                ));
            }
            Step::List(names) => {
                let names: Vec<&str> = names.iter().map(|n| NAMES[*n]).collect();
                s.rescreen(&list(&format!("v{i}"), &names));
            }
        }
    }
    s
}

proptest! {
    /// Holds are a function of the live documents and the list in force:
    /// applying every revision first and then only the last list gives the
    /// same breakdown as any interleaving; demand per customer never
    /// depends on lists; the breakdown adds up to demand.
    #[test]
    fn the_final_holds_do_not_depend_on_when_lists_arrived(steps in steps()) {
        let interleaved = run(&steps);
        let mut applies: Vec<Step> = steps.iter().filter(|s| matches!(s, Step::Apply { .. })).cloned().collect();
        let without_lists = run(&applies);
        if let Some(last) = steps.iter().rev().find(|s| matches!(s, Step::List(_))) {
            applies.push(last.clone());
        }
        let lists_last = run(&applies);
        prop_assert_eq!(by_status(&interleaved), by_status(&lists_last));
        prop_assert_eq!(interleaved.rows().collect::<Vec<_>>(), without_lists.rows().collect::<Vec<_>>());
        let mut totals: BTreeMap<(String, String), i64> = BTreeMap::new();
        for ((c, q, _), units) in by_status(&interleaved) {
            *totals.entry((c, q)).or_default() += units;
        }
        let demand: BTreeMap<(String, String), i64> = interleaved
            .rows()
            .map(|r| ((r.customer_id, r.quarter.to_string()), r.total_units))
            .fold(BTreeMap::new(), |mut m, (k, v)| { *m.entry(k).or_default() += v; m });
        prop_assert_eq!(totals, demand);
    }
}
