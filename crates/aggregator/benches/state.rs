//! The demand state: apply of a 12-line REPLACE with 100,000 live documents
//! in state, and the memory each live document costs (goal: <= 2 KiB).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use forecast_aggregator::DemandState;
use forecast_model::{Confidence, ForecastDocument, Purpose};

const LIVE: usize = 100_000;

/// A 12-line document (2 SKUs x 4 quarters, firm and planning).
fn document(id: usize, revision: i32) -> ForecastDocument {
    let mut doc =
        ForecastDocument::from_json(include_bytes!("../../../examples/tencent-original.json"))
            .expect("example parses");
    doc.document_id = format!("DOC-{id:08}");
    doc.revision = revision;
    doc.purpose = if revision == 1 {
        Purpose::Original
    } else {
        Purpose::Replace
    };
    doc.customer_id = ["TENCENT", "BYTEDANCE", "ALIBABA"][id % 3].into();
    let template = doc.lines[0].clone();
    doc.lines.clear();
    for (i, sku) in ["H20-96GB", "H20-141GB"].iter().enumerate() {
        for (q, start) in ["2026-07-01", "2026-10-01", "2027-01-01", "2027-04-01"]
            .iter()
            .enumerate()
        {
            let mut line = template.clone();
            line.sku = sku.to_string();
            line.period_start = start.parse().expect("date");
            line.quantity = (id as i64 % 1000) + revision as i64 + q as i64;
            line.confidence = Confidence::Firm;
            doc.lines.push(line.clone());
            if i == 0 {
                line.confidence = Confidence::Planning;
                doc.lines.push(line);
            }
        }
    }
    assert_eq!(doc.lines.len(), 12);
    doc
}

/// Resident memory of this process, in bytes (Linux).
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn bench(c: &mut Criterion) {
    let docs: Vec<ForecastDocument> = (0..LIVE).map(|i| document(i, 1)).collect();
    let before = rss();
    let mut state = DemandState::new();
    for d in &docs {
        state.apply(d);
    }
    if let (Some(b), Some(a)) = (before, rss()) {
        println!(
            "memory per live document: {:.0} bytes ({} documents, RSS +{:.1} MiB)",
            a.saturating_sub(b) as f64 / LIVE as f64,
            state.live_documents(),
            a.saturating_sub(b) as f64 / (1 << 20) as f64
        );
    }
    let mut revision = 2;
    let mut g = c.benchmark_group("demand_state");
    g.throughput(Throughput::Elements(1));
    g.bench_function("apply_12_line_replace_100k_live", |b| {
        b.iter_batched(
            || {
                revision += 1;
                document(revision as usize % LIVE, revision)
            },
            |d| black_box(state.apply(&d)),
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
