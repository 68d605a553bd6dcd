//! The allocator's core without a broker: the worked example of
//! docs/planner.md as commits, what makes a commit due again, and that the
//! commits do not depend on the order the inputs arrived in.

#![allow(clippy::unwrap_used)]

use forecast_allocator::Book;
use forecast_model::allocation::{AllocationPolicy, Method};
use forecast_model::codec::content_digest;
use forecast_model::commit::Commit;
use forecast_model::supply::SupplyEntry;
use forecast_model::{ForecastDocument, LicenceDecision, Purpose, Timestamp};
use proptest::prelude::*;

const STREAM: &str = include_str!("../../../examples/allocation/stream.jsonl");
const LICENCES: &str = include_str!("../../../examples/allocation/licences.jsonl");

fn documents() -> Vec<ForecastDocument> {
    STREAM
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| forecast_model::parse_submission(l.as_bytes()).unwrap())
        .collect()
}

fn decisions() -> Vec<LicenceDecision> {
    forecast_model::licence::read_decisions(LICENCES, "licences.jsonl").unwrap()
}

fn supply(units: i64) -> SupplyEntry {
    SupplyEntry {
        sku: "H20-96GB".into(),
        quarter: "2026-Q3".parse().unwrap(),
        on_hand: units,
        ordered: 0,
    }
}

fn apply(book: &mut Book, doc: &ForecastDocument) {
    book.apply(doc, content_digest(doc));
}

/// The worked example, every input taken.
fn example(policy: AllocationPolicy) -> Book {
    let mut book = Book::new(policy, vec![supply(10_000)]);
    for d in decisions() {
        book.take_decision(d);
    }
    for doc in documents() {
        apply(&mut book, &doc);
    }
    book
}

/// (customer, allocated units in 2026-Q3) of each commit.
fn allocated(commits: &[Commit]) -> Vec<(String, i64)> {
    commits
        .iter()
        .map(|c| {
            let units = c
                .lines
                .iter()
                .filter(|l| l.quarter.to_string() == "2026-Q3")
                .map(|l| l.allocated_units)
                .sum();
            (c.customer_id.clone(), units)
        })
        .collect()
}

fn now() -> Timestamp {
    Timestamp::from_millis(1_790_000_000_000)
}

#[test]
fn the_worked_example_is_committed_to_each_customer_naming_the_revisions() {
    let mut book = example(AllocationPolicy::default());
    let due = book.due(now());
    assert_eq!(
        allocated(&due),
        [
            ("ALIBABA".to_owned(), 2_000),
            ("BYTEDANCE".to_owned(), 2_667),
            ("TENCENT".to_owned(), 5_333)
        ]
    );
    let tencent = &due[2];
    assert_eq!(tencent.method, Method::ProRata);
    let q3 = tencent
        .lines
        .iter()
        .find(|l| l.quarter.to_string() == "2026-Q3")
        .unwrap();
    assert_eq!(q3.requested_units, 8_000);
    assert_eq!(q3.documents.len(), 1);
    assert_eq!(q3.documents[0].document_id, "TCT-ALLOC-1");
    assert_eq!(q3.documents[0].revision, 1);
    // Nothing changed: nothing is due.
    assert!(!book.is_changed());
    assert!(book.due(now()).is_empty());
}

#[test]
fn a_new_revision_supersedes_the_commit_it_changes_and_only_those() {
    let mut book = example(AllocationPolicy {
        method: Method::Priority,
        priority: vec!["TENCENT".into(), "BYTEDANCE".into(), "ALIBABA".into()],
        ..AllocationPolicy::default()
    });
    assert_eq!(book.due(now()).len(), 3);
    // ALIBABA gets nothing either way (TENCENT and BYTEDANCE take the
    // supply): its revision changes what it asked for, so its commit only.
    let mut alibaba = documents()
        .into_iter()
        .find(|d| d.customer_id == "ALIBABA")
        .unwrap();
    alibaba.revision = 2;
    alibaba.purpose = Purpose::Replace;
    alibaba.lines[0].quantity = 2_500;
    apply(&mut book, &alibaba);
    assert!(book.is_changed());
    let due = book.due(now());
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0].customer_id, "ALIBABA");
    let line = &due[0].lines[0];
    assert_eq!((line.requested_units, line.allocated_units), (2_500, 0));
    assert_eq!(line.documents[0].revision, 2);
    // TENCENT asks for less: BYTEDANCE gets what it freed.
    let mut tencent = documents()
        .into_iter()
        .find(|d| d.customer_id == "TENCENT")
        .unwrap();
    tencent.revision = 2;
    tencent.purpose = Purpose::Replace;
    tencent.lines[0].quantity = 7_000;
    apply(&mut book, &tencent);
    let due = book.due(now());
    assert_eq!(
        allocated(&due),
        [
            ("BYTEDANCE".to_owned(), 3_000),
            ("TENCENT".to_owned(), 7_000)
        ]
    );
}

#[test]
fn a_customer_whose_demand_is_cancelled_gets_an_empty_commit() {
    let mut book = example(AllocationPolicy::default());
    book.due(now());
    let mut cancel = documents()
        .into_iter()
        .find(|d| d.customer_id == "ALIBABA")
        .unwrap();
    cancel.revision = 2;
    cancel.purpose = Purpose::Cancel;
    // A CANCEL carries no lines (the validator dead-letters one that does).
    cancel.lines.clear();
    apply(&mut book, &cancel);
    let due = book.due(now());
    let alibaba = due.iter().find(|c| c.customer_id == "ALIBABA").unwrap();
    assert!(alibaba.lines.is_empty(), "{alibaba:?}");
    // The others share the supply ALIBABA's licence no longer takes.
    assert_eq!(
        allocated(&due),
        [
            ("ALIBABA".to_owned(), 0),
            ("BYTEDANCE".to_owned(), 3_333),
            ("TENCENT".to_owned(), 6_667)
        ]
    );
}

#[test]
fn commits_already_on_the_topic_are_not_published_again() {
    let first = example(AllocationPolicy::default()).due(now());
    // A restarted allocator: the topic's commits read back, then the same
    // inputs, made later.
    let mut book = Book::new(AllocationPolicy::default(), vec![supply(10_000)]);
    for c in first.clone() {
        book.published(c);
    }
    for d in decisions() {
        book.take_decision(d);
    }
    for doc in documents() {
        apply(&mut book, &doc);
    }
    assert!(
        book.due(Timestamp::from_millis(now().millis() + 60_000))
            .is_empty()
    );
    // A commit that could not be delivered is due again, as it was.
    book.unpublished("TENCENT");
    let again = book.due(now());
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].lines, first[2].lines);
}

#[test]
fn a_commit_read_back_differs_only_when_its_lines_or_method_do() {
    let mut book = example(AllocationPolicy::default());
    let due = book.due(now());
    // The same lines, made at another time (a second allocator): the same.
    let mut later = due[0].clone();
    later.allocated_at = Timestamp::from_millis(now().millis() + 1);
    assert!(!book.differs(&later));
    let mut other = due[0].clone();
    other.lines[0].allocated_units += 1;
    assert!(book.differs(&other));
    other = due[0].clone();
    other.method = Method::Priority;
    assert!(book.differs(&other));
    // Overwritten: due again, as it was.
    book.unpublished(&due[0].customer_id);
    assert_eq!(book.due(now())[0].lines, due[0].lines);
}

#[test]
fn supply_changes_and_tombstones_reallocate() {
    let mut book = example(AllocationPolicy::default());
    book.due(now());
    book.take_supply("H20-96GB/2026-Q3", Some(supply(15_000)));
    assert_eq!(
        allocated(&book.due(now())),
        [
            ("ALIBABA".to_owned(), 3_000),
            ("BYTEDANCE".to_owned(), 4_000),
            ("TENCENT".to_owned(), 8_000)
        ]
    );
    book.take_supply("H20-96GB/2026-Q3", None);
    assert!(allocated(&book.due(now())).iter().all(|(_, u)| *u == 0));
}

/// One input of the example.
#[derive(Debug, Clone)]
enum Input {
    Document(usize),
    Decision(usize),
    Supply,
}

proptest! {
    /// Whatever order the inputs arrive in (a document's revisions keep
    /// theirs: one partition holds them), the commits are the same.
    #[test]
    fn the_commits_do_not_depend_on_the_order_of_the_inputs(
        order in Just(vec![
            Input::Document(0), Input::Document(1), Input::Document(2),
            Input::Decision(0), Input::Decision(1), Input::Decision(2),
            Input::Supply,
        ]).prop_shuffle(),
        rounds in proptest::collection::vec(any::<bool>(), 7),
    ) {
        let expected = example(AllocationPolicy::default()).due(now());
        let docs = documents();
        let decisions = decisions();
        let mut book = Book::new(AllocationPolicy::default(), Vec::new());
        let mut last = Vec::new();
        for (input, round) in order.iter().zip(rounds) {
            match input {
                Input::Document(i) => apply(&mut book, &docs[*i]),
                Input::Decision(i) => book.take_decision(decisions[*i].clone()),
                Input::Supply => book.take_supply("H20-96GB/2026-Q3", Some(supply(10_000))),
            }
            // Rounds between inputs publish intermediate commits.
            if round {
                for c in book.due(now()) {
                    last.retain(|p: &Commit| p.customer_id != c.customer_id);
                    last.push(c);
                }
            }
        }
        for c in book.due(now()) {
            last.retain(|p: &Commit| p.customer_id != c.customer_id);
            last.push(c);
        }
        last.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
        prop_assert_eq!(last, expected);
    }
}
