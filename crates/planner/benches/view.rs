//! The planner view: taking the verdicts of a document (a validator and an
//! aggregator verdict, as the audit topic has them) with 100,000 documents
//! already kept, and the memory the view keeps per document; then one
//! customer's flood of 1,000,000 distinct document ids, against the
//! default bound of 100,000 documents per customer, with another
//! customer's documents still served.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use forecast_model::testing::resident_bytes;
use forecast_model::{Outcome, RuleCode, SourceCoordinates, Stage, Timestamp, Verdict, Violation};
use forecast_planner::view::PlannerView;

const DOCUMENTS: usize = 100_000;

/// The two verdicts of document `id`, read from source offset `id`.
fn verdicts(id: usize) -> [Verdict; 2] {
    let verdict = |stage| Verdict {
        document_id: Some(format!("FC-2026-{id:08}")),
        revision: Some(1),
        outcome: Outcome::Accepted,
        stage,
        codes: Vec::new(),
        warnings: Vec::new(),
        violations: Vec::new(),
        policy_version: format!("sha256:{}", "7f".repeat(32)),
        decided_at: Timestamp::from_millis(1_780_000_000_000 + id as i64),
        source: Some(SourceCoordinates {
            topic: "forecasts.submitted".into(),
            partition: (id % 3) as i32,
            offset: id as i64,
        }),
        customer_id: Some(["TENCENT", "BYTEDANCE", "ALIBABA"][id % 3].into()),
        screening_version: None,
    };
    [verdict(Stage::Validate), verdict(Stage::Sequence)]
}

/// A rejection of `customer`'s document `id` (three violations, as a
/// typical bad document has), read from source offset `offset`.
fn rejection(customer: &str, id: String, offset: i64) -> Verdict {
    let violation = |code: RuleCode, field: &str| Violation {
        code,
        field: field.into(),
        message: code.explain().into(),
    };
    Verdict {
        document_id: Some(id),
        revision: Some(1),
        outcome: Outcome::Rejected,
        stage: Stage::Validate,
        codes: vec![
            RuleCode::SkuUnknown,
            RuleCode::QuantityInvalid,
            RuleCode::DocMissing,
        ],
        warnings: Vec::new(),
        violations: vec![
            violation(RuleCode::SkuUnknown, "lines[0].sku"),
            violation(RuleCode::QuantityInvalid, "lines[1].quantity"),
            violation(RuleCode::DocMissing, "documents"),
        ],
        policy_version: format!("sha256:{}", "7f".repeat(8)),
        decided_at: Timestamp::from_millis(1_780_000_000_000 + offset),
        source: Some(SourceCoordinates {
            topic: "forecasts.submitted".into(),
            partition: 0,
            offset,
        }),
        customer_id: Some(customer.into()),
        screening_version: None,
    }
}

/// ByteDance sends 1,000,000 distinct document ids; Tencent's 1,000
/// documents, judged before, must all still be served.
fn flood() {
    const FLOOD: i64 = 1_000_000;
    const OWN: i64 = 1_000;
    let before = resident_bytes();
    let mut view = PlannerView::default();
    for i in 0..OWN {
        view.on_verdict(rejection("TENCENT", format!("TCT-{i:06}"), i));
    }
    let started = std::time::Instant::now();
    for i in 0..FLOOD {
        view.on_verdict(rejection("BYTEDANCE", format!("SPAM-{i:08}"), OWN + i));
    }
    let elapsed = started.elapsed();
    let after = resident_bytes();
    let book = view.verdicts();
    let served = (0..OWN)
        .filter(|i| {
            book.document(Some("TENCENT"), &format!("TCT-{i:06}"))
                .is_some()
        })
        .count();
    let (kept, evicted) = book.documents_kept(Some("BYTEDANCE"));
    println!(
        "planner flood: {FLOOD} distinct document ids of one customer in {:.2} s ({:.2} us per verdict); kept {kept}, forgotten {evicted}; the other customer's {OWN} documents served: {served}",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / FLOOD as f64
    );
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "planner flood: RSS +{:.1} MiB ({:.0} bytes per document kept, a rejection each)",
            a.saturating_sub(b) as f64 / (1 << 20) as f64,
            a.saturating_sub(b) as f64 / (kept as i64 + OWN) as f64
        );
    }
    assert_eq!(
        served as i64, OWN,
        "another customer's documents were pushed out"
    );
}

fn bench(c: &mut Criterion) {
    // Filled from empty three times (the state grows, as a live view's
    // does); the fastest fill is reported, and the first fill's memory.
    let mut fills = Vec::new();
    let mut view = PlannerView::default();
    for _ in 0..3 {
        drop(view);
        let before = resident_bytes();
        view = PlannerView::default();
        let started = std::time::Instant::now();
        // Made one by one: what the view keeps is all that stays allocated.
        for v in (0..DOCUMENTS).flat_map(verdicts) {
            assert!(view.on_verdict(v));
        }
        fills.push((started.elapsed(), before, resident_bytes()));
    }
    // Memory from the first fill: later ones reuse the pages freed before.
    let (_, before, after) = fills[0];
    let elapsed = fills.iter().map(|f| f.0).min().unwrap_or_default();
    println!(
        "planner view, filled from empty with {DOCUMENTS} documents: {:.2} us per verdict (making it included)",
        elapsed.as_secs_f64() * 1e6 / (2 * DOCUMENTS) as f64
    );
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "planner view memory per document (2 verdicts): {:.0} bytes (RSS +{:.1} MiB)",
            a.saturating_sub(b) as f64 / DOCUMENTS as f64,
            a.saturating_sub(b) as f64 / (1 << 20) as f64
        );
    }
    flood();
    let mut next = DOCUMENTS;
    let mut g = c.benchmark_group("planner_view");
    g.throughput(Throughput::Elements(2));
    g.bench_function("two_verdicts_100k_documents_kept", |b| {
        b.iter_batched(
            || {
                next += 1;
                verdicts(next)
            },
            |[v, s]| black_box((view.on_verdict(v), view.on_verdict(s))),
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
