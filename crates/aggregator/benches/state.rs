//! The demand state: apply of a 12-line REPLACE with 100,000 live documents
//! in state (alone, and after decoding its record as the service does), and
//! the memory each live document costs (goal: <= 2 KiB).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use forecast_aggregator::DemandState;
use forecast_model::testing::resident_bytes;
use forecast_model::{ForecastDocument, Registry, wire};

const LIVE: usize = 100_000;

/// A 12-line document whose content depends on its id and revision.
fn document(id: usize, revision: i32) -> ForecastDocument {
    forecast_model::fixtures::numbered_revision(
        id,
        ["TENCENT", "BYTEDANCE", "ALIBABA"][id % 3],
        revision,
    )
}

fn bench(c: &mut Criterion) {
    let docs: Vec<ForecastDocument> = (0..LIVE).map(|i| document(i, 1)).collect();
    let before = resident_bytes();
    let mut state = DemandState::new();
    for d in &docs {
        state.apply(d);
    }
    if let (Some(b), Some(a)) = (before, resident_bytes()) {
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
    // What the service does per record: decode the validated record, then
    // apply; the whole document with its digest taken by encoding it again
    // (`apply`), or what sequencing reads with the digest read off the
    // record (`apply_digested`, as the aggregator does).
    let registry = Registry::embedded();
    let mut decoded = ForecastDocument::default();
    for digest_from_record in [false, true] {
        let name = if digest_from_record {
            "record_decode_sequencing_digest_then_apply_digested_100k_live"
        } else {
            "record_decode_then_apply_100k_live"
        };
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    revision += 1;
                    wire::encode_document(&document(revision as usize % LIVE, revision))
                },
                |record| {
                    if digest_from_record {
                        let digest =
                            wire::decode_sequencing_digest(&record, registry, &mut decoded).ok();
                        digest.map(|d| state.apply_digested(&decoded, d))
                    } else {
                        let ok = wire::decode_document_into(&record, registry, &mut decoded);
                        ok.ok().map(|()| state.apply(&decoded))
                    }
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
