//! The planner view: taking the verdicts of a document (a validator and an
//! aggregator verdict, as the audit topic has them) with 100,000 documents
//! already kept, and the memory the view keeps per document.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use forecast_model::testing::resident_bytes;
use forecast_model::{Outcome, SourceCoordinates, Stage, Timestamp, Verdict};
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
    };
    [verdict(Stage::Validate), verdict(Stage::Sequence)]
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
