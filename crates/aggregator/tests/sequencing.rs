//! Sequencing outcomes of the spec's table, and properties of the demand
//! state checked against a from-scratch model.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};

use forecast_aggregator::{DemandState, Sequenced};
use forecast_model::*;
use proptest::prelude::*;

mod common;
use common::doc;

use Confidence::{Firm, Planning};
use Purpose::{Cancel, Original, Replace};

fn applied(previous: Option<i32>) -> Sequenced {
    Sequenced::Applied {
        previous,
        demand_changed: true,
    }
}

fn rows(state: &DemandState) -> Vec<(String, String, String, i64, i64)> {
    state
        .rows()
        .map(|r| {
            (
                r.customer_id,
                r.sku,
                r.quarter.to_string(),
                r.firm_units,
                r.planning_units,
            )
        })
        .collect()
}

#[test]
fn every_outcome_of_the_sequencing_table() {
    let mut s = DemandState::new();
    let l = [("H20-96GB", "2026-07-01", 10, Firm)];
    // Nothing applied yet: REPLACE and CANCEL are unknown, ORIGINAL applies.
    assert_eq!(
        s.apply(&doc("D", 2, Replace, "T", &l)),
        Sequenced::Rejected(RuleCode::DocumentUnknown)
    );
    assert_eq!(
        s.apply(&doc("D", 2, Cancel, "T", &[])),
        Sequenced::Rejected(RuleCode::DocumentUnknown)
    );
    assert_eq!(s.apply(&doc("D", 1, Original, "T", &l)), applied(None));
    // Same revision: same content is a duplicate, other content a conflict.
    assert_eq!(
        s.apply(&doc("D", 1, Original, "T", &l)),
        Sequenced::Duplicate
    );
    let more = [("H20-96GB", "2026-07-01", 11, Firm)];
    assert_eq!(
        s.apply(&doc("D", 1, Original, "T", &more)),
        Sequenced::Rejected(RuleCode::RevisionConflict)
    );
    // Document ids are each customer's own: B's "D" is another document,
    // unknown to B whatever T applied under that id.
    assert_eq!(
        s.apply(&doc("D", 3, Replace, "B", &more)),
        Sequenced::Rejected(RuleCode::DocumentUnknown)
    );
    // Revisions may skip numbers.
    assert_eq!(s.apply(&doc("D", 3, Replace, "T", &more)), applied(Some(1)));
    assert_eq!(
        s.apply(&doc("D", 2, Replace, "T", &l)),
        Sequenced::Rejected(RuleCode::RevisionStale)
    );
    // B's own ORIGINAL under the same id applies beside T's.
    assert_eq!(s.apply(&doc("D", 1, Original, "B", &l)), applied(None));
    assert_eq!(s.apply(&doc("D", 2, Replace, "B", &more)), applied(Some(1)));
    assert_eq!(
        rows(&s),
        [
            ("B".into(), "H20-96GB".into(), "2026-Q3".into(), 11, 0),
            ("T".into(), "H20-96GB".into(), "2026-Q3".into(), 11, 0)
        ]
    );
    assert_eq!(s.apply(&doc("D", 3, Cancel, "B", &[])), applied(Some(2)));
    assert_eq!(
        rows(&s),
        [("T".into(), "H20-96GB".into(), "2026-Q3".into(), 11, 0)]
    );
    // CANCEL withdraws; a REPLACE after it brings the document back.
    assert_eq!(s.apply(&doc("D", 4, Cancel, "T", &[])), applied(Some(3)));
    assert!(rows(&s).is_empty());
    assert_eq!(
        s.apply(&doc("D", 4, Cancel, "T", &[])),
        Sequenced::Duplicate
    );
    assert_eq!(s.apply(&doc("D", 5, Replace, "T", &l)), applied(Some(4)));
    assert_eq!(
        rows(&s),
        [("T".into(), "H20-96GB".into(), "2026-Q3".into(), 10, 0)]
    );
    assert_eq!(s.applied_revision("T", "D"), Some(5));
    assert_eq!(s.applied_revision("B", "D"), Some(3));
    assert_eq!(s.applied_revision("A", "D"), None);
}

#[test]
fn content_ignores_unknown_fields_and_the_offset_of_submitted_at() {
    let mut s = DemandState::new();
    let a = doc("D", 1, Original, "T", &[("S", "2026-07-01", 1, Firm)]);
    assert_eq!(s.apply(&a), applied(None));
    let mut json: serde_json::Value = serde_json::from_str(&a.to_json()).unwrap();
    json["submitted_at"] = "2026-07-15T16:00:00+08:00".into();
    json["comment"] = "a field this version does not know".into();
    let same = ForecastDocument::from_json(json.to_string().as_bytes()).unwrap();
    assert_eq!(s.apply(&same), Sequenced::Duplicate);
    json["submitted_at"] = "2026-07-15T08:00:01Z".into();
    let other = ForecastDocument::from_json(json.to_string().as_bytes()).unwrap();
    assert_eq!(
        s.apply(&other),
        Sequenced::Rejected(RuleCode::RevisionConflict)
    );
}

#[test]
fn monthly_lines_count_in_their_quarter_and_firm_and_planning_are_apart() {
    let mut s = DemandState::new();
    let mut d = doc(
        "M",
        1,
        Original,
        "A",
        &[
            ("S", "2026-07-01", 5, Firm),
            ("S", "2026-08-01", 7, Firm),
            ("S", "2026-09-01", 3, Planning),
            ("S", "2026-10-01", 0, Planning),
        ],
    );
    d.bucket = Bucket::Month;
    s.apply(&d);
    assert_eq!(
        rows(&s),
        [("A".into(), "S".into(), "2026-Q3".into(), 12, 3)]
    );
    let snap = s.snapshot("A", Timestamp::from_millis(0));
    assert_eq!(snap.rows.len(), 1);
    assert_eq!(snap.rows[0].units.total(), 15);
    assert_eq!(snap.sequence, 1);
}

#[test]
fn a_revision_that_moves_no_cell_changes_no_demand() {
    let outcome = |previous, demand_changed| Sequenced::Applied {
        previous,
        demand_changed,
    };
    let mut s = DemandState::new();
    let sequence = |s: &DemandState| s.snapshot("T", Timestamp::from_millis(0)).sequence;
    let lines = [("A", "2026-07-01", 10, Firm), ("A", "2026-08-01", 5, Firm)];
    let r1 = s.apply(&doc("D", 1, Original, "T", &lines));
    assert_eq!((r1, sequence(&s)), (outcome(None, true), 1));
    // The same units per SKU x quarter, in other lines, and a line of none.
    let same = [
        ("B", "2026-10-01", 0, Planning),
        ("A", "2026-09-01", 15, Firm),
    ];
    let r2 = s.apply(&doc("D", 2, Replace, "T", &same));
    assert_eq!((r2, sequence(&s)), (outcome(Some(1), false), 1));
    // One cell the same, one new: changed.
    let more = [
        ("A", "2026-07-01", 15, Firm),
        ("B", "2026-10-01", 1, Planning),
    ];
    let r3 = s.apply(&doc("D", 3, Replace, "T", &more));
    assert_eq!((r3, sequence(&s)), (outcome(Some(2), true), 2));
    assert_eq!(
        rows(&s),
        [
            ("T".into(), "A".into(), "2026-Q3".into(), 15, 0),
            ("T".into(), "B".into(), "2026-Q4".into(), 0, 1)
        ]
    );
    // A document of no lines, applied and cancelled: nothing to change.
    let e1 = s.apply(&doc("E", 1, Original, "T", &[]));
    let e2 = s.apply(&doc("E", 2, Cancel, "T", &[]));
    assert_eq!((e1, e2), (outcome(None, false), outcome(Some(1), false)));
    assert_eq!(sequence(&s), 2);
}

#[test]
fn replaying_an_out_of_order_stream_again_is_not_idempotent() {
    // Why the service must restore state consistent with its offsets rather
    // than re-read records over a newer state: a REPLACE that came before its
    // ORIGINAL was unknown the first time and applies the second time.
    let stream = [
        doc("D", 2, Replace, "T", &[("S", "2026-07-01", 9, Firm)]),
        doc("D", 1, Original, "T", &[("S", "2026-07-01", 1, Firm)]),
    ];
    let mut s = DemandState::new();
    stream.iter().for_each(|d| {
        s.apply(d);
    });
    let once = rows(&s);
    stream.iter().for_each(|d| {
        s.apply(d);
    });
    assert_ne!(rows(&s), once);
}

// ---- properties -------------------------------------------------------

const SKUS: &[&str] = &["H20-96GB", "H20-141GB"];
const CUSTOMERS: &[&str] = &["TENCENT", "ALIBABA"];

/// One revision of one of a few documents (that passed the rules).
fn revision_of(id: &'static str) -> impl Strategy<Value = ForecastDocument> {
    let line = (
        proptest::sample::select(SKUS),
        0i64..6,
        0i64..50,
        any::<bool>(),
    );
    (
        1i32..5,
        any::<bool>(),
        proptest::sample::select(CUSTOMERS),
        proptest::collection::vec(line, 0..5),
        any::<bool>(),
    )
        .prop_map(move |(revision, cancel, customer, lines, monthly)| {
            let purpose = match (revision, cancel) {
                (1, _) => Original,
                (_, true) => Cancel,
                _ => Replace,
            };
            let mut d = doc(id, revision, purpose, customer, &[]);
            if purpose != Cancel {
                d.bucket = if monthly {
                    Bucket::Month
                } else {
                    Bucket::Quarter
                };
                d.lines = lines
                    .into_iter()
                    .map(|(sku, q, quantity, firm)| Line {
                        sku: sku.into(),
                        period_start: Quarter::from_index(2026 * 4 + q).last_day(),
                        quantity,
                        confidence: if firm { Firm } else { Planning },
                        ship_to: None,
                    })
                    .collect();
            }
            d
        })
}

fn any_revision() -> impl Strategy<Value = ForecastDocument> {
    prop_oneof![
        revision_of("D1"),
        revision_of("D2"),
        revision_of("D3"),
        revision_of("D4")
    ]
}

fn stream() -> impl Strategy<Value = Vec<ForecastDocument>> {
    proptest::collection::vec(any_revision(), 0..40)
}

/// The spec's sequencing table and demand, written the slow and obvious way.
#[derive(Default)]
struct Model {
    /// By customer and document id.
    applied: HashMap<(String, String), ForecastDocument>,
}

impl Model {
    fn apply(&mut self, d: &ForecastDocument) -> Sequenced {
        let key = (d.customer_id.clone(), d.document_id.clone());
        let outcome = match self.applied.get(&key) {
            None if d.purpose == Original => applied(None),
            None => return Sequenced::Rejected(RuleCode::DocumentUnknown),
            Some(last) if d.revision == last.revision => {
                return if codec::content_digest(d) == codec::content_digest(last) {
                    Sequenced::Duplicate
                } else {
                    Sequenced::Rejected(RuleCode::RevisionConflict)
                };
            }
            Some(last) if d.revision < last.revision => {
                return Sequenced::Rejected(RuleCode::RevisionStale);
            }
            Some(last) => applied(Some(last.revision)),
        };
        // Demand changes when some SKU x quarter of the customer sums to
        // other units than the revision it replaces gave it.
        let before = self.applied.get(&key).map(Self::cells);
        let demand_changed = before.unwrap_or_default() != Self::cells(d);
        self.applied.insert(key, d.clone());
        match outcome {
            Sequenced::Applied { previous, .. } => Sequenced::Applied {
                previous,
                demand_changed,
            },
            other => other,
        }
    }

    /// One document's units per SKU x quarter, cells of no units left out.
    fn cells(d: &ForecastDocument) -> BTreeMap<(String, String), (i64, i64)> {
        let mut cells: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
        for l in &d.lines {
            let c = cells
                .entry((l.sku.clone(), l.period_start.quarter().to_string()))
                .or_default();
            match l.confidence {
                Firm => c.0 += l.quantity,
                Planning => c.1 += l.quantity,
            }
        }
        cells.retain(|_, units| *units != (0, 0));
        cells
    }

    fn rows(&self) -> Vec<(String, String, String, i64, i64)> {
        let mut cells: BTreeMap<(String, String, String), (i64, i64)> = BTreeMap::new();
        for d in self.applied.values() {
            for l in &d.lines {
                let q = l.period_start.quarter().to_string();
                let c = cells
                    .entry((d.customer_id.clone(), l.sku.clone(), q))
                    .or_default();
                match l.confidence {
                    Firm => c.0 += l.quantity,
                    Planning => c.1 += l.quantity,
                }
            }
        }
        cells
            .into_iter()
            .filter(|(_, (f, p))| f + p != 0)
            .map(|((c, s, q), (f, p))| (c, s, q, f, p))
            .collect()
    }
}

fn final_rows(docs: &[ForecastDocument]) -> Vec<(String, String, String, i64, i64)> {
    let mut s = DemandState::new();
    docs.iter().for_each(|d| {
        s.apply(d);
    });
    rows(&s)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// After every step, the incremental state equals demand recomputed from
    /// the last applied revision of every document: a REPLACE never shows old
    /// and new lines together, nor neither; and an applied document says its
    /// customer's demand changed exactly when some cell's units did.
    #[test]
    fn state_matches_a_from_scratch_model_after_every_step(docs in stream()) {
        let (mut state, mut model) = (DemandState::new(), Model::default());
        for d in &docs {
            let (got, want) = (state.apply(d), model.apply(d));
            prop_assert_eq!(&got, &want, "for {} r{}", d.document_id, d.revision);
            prop_assert_eq!(rows(&state), model.rows());
        }
    }

    /// At-least-once delivery: every record delivered twice in a row changes
    /// nothing, and the second delivery of an applied one is a DUPLICATE.
    #[test]
    fn redelivering_each_record_changes_nothing(docs in stream()) {
        let mut twice = DemandState::new();
        for d in &docs {
            let first = twice.apply(d);
            let second = twice.apply(d);
            match first {
                Sequenced::Applied { .. } | Sequenced::Duplicate => prop_assert_eq!(second, Sequenced::Duplicate),
                rejected => prop_assert_eq!(second, rejected),
            }
        }
        prop_assert_eq!(rows(&twice), final_rows(&docs));
    }

    /// Applying a stream twice changes nothing, when each document's
    /// revisions arrive in order (what a per-document partition gives).
    #[test]
    fn applying_an_ordered_stream_twice_changes_nothing(mut docs in stream()) {
        docs.sort_by_key(|d| (d.customer_id.clone(), d.document_id.clone(), d.revision));
        let once = final_rows(&docs);
        let doubled: Vec<_> = docs.iter().chain(docs.iter()).cloned().collect();
        prop_assert_eq!(final_rows(&doubled), once);
    }

    /// The order of different documents does not change the final demand:
    /// any interleaving that keeps each document's own order gives the same.
    #[test]
    fn interleaving_documents_does_not_change_demand(docs in stream(), seed in any::<u64>()) {
        let mut by_doc: BTreeMap<(String, String), Vec<ForecastDocument>> = BTreeMap::new();
        for d in &docs {
            by_doc.entry((d.customer_id.clone(), d.document_id.clone())).or_default().push(d.clone());
        }
        // Deterministic pseudo-random interleaving from the seed.
        let mut queues: Vec<std::collections::VecDeque<_>> = by_doc.into_values().map(Into::into).collect();
        let mut x = seed | 1;
        let mut shuffled = Vec::new();
        while queues.iter().any(|q| !q.is_empty()) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            let live: Vec<usize> = (0..queues.len()).filter(|i| !queues[*i].is_empty()).collect();
            let pick = live[(x % live.len() as u64) as usize];
            shuffled.push(queues[pick].pop_front().unwrap());
        }
        prop_assert_eq!(final_rows(&shuffled), final_rows(&docs));
    }

    /// An ORIGINAL, a REPLACE, then a CANCEL of one document leave no trace
    /// of it, whatever else the stream holds.
    #[test]
    fn replace_then_cancel_leaves_no_trace(others in proptest::collection::vec(prop_oneof![revision_of("D1"), revision_of("D2")], 0..20),
                                           original in revision_of("X"), replace in revision_of("X"), split in 0usize..20) {
        let mut original = original;
        original.revision = 1;
        original.purpose = Original;
        let mut replace = replace;
        replace.revision = 2;
        replace.purpose = Replace;
        replace.customer_id = original.customer_id.clone();
        let cancel = doc("X", 3, Cancel, &original.customer_id, &[]);
        let split = split.min(others.len());
        let mut with_x: Vec<_> = others[..split].to_vec();
        with_x.extend([original, replace, cancel]);
        with_x.extend_from_slice(&others[split..]);
        prop_assert_eq!(final_rows(&with_x), final_rows(&others));
    }

    /// Isolation: whatever one customer submits, under whatever ids, every
    /// other customer's documents get the outcomes and the demand they get
    /// with that customer absent.
    #[test]
    fn no_customer_changes_another_customers_outcomes(docs in stream()) {
        let victim = CUSTOMERS[0];
        let alone: Vec<_> = docs.iter().filter(|d| d.customer_id == victim).cloned().collect();
        let mut mixed = DemandState::new();
        let mixed_outcomes: Vec<_> = docs
            .iter()
            .map(|d| (d.customer_id.clone(), mixed.apply(d)))
            .filter(|(c, _)| c == victim)
            .map(|(_, o)| o)
            .collect();
        let mut only = DemandState::new();
        let alone_outcomes: Vec<_> = alone.iter().map(|d| only.apply(d)).collect();
        prop_assert_eq!(mixed_outcomes, alone_outcomes);
        let victim_rows = |s: &DemandState| rows(s).into_iter().filter(|r| r.0 == victim).collect::<Vec<_>>();
        prop_assert_eq!(victim_rows(&mixed), victim_rows(&only));
    }
}
