//! One round of the allocator: the supply allocated again over every live
//! document and the commits compared with those in force, with 100,000
//! live 12-line documents of 30 customers (what `--settle-ms` bounds the
//! rate of); and what one round costs when one revision changed.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use forecast_allocator::Book;
use forecast_model::allocation::AllocationPolicy;
use forecast_model::codec::content_digest;
use forecast_model::supply::SupplyEntry;
use forecast_model::{ForecastDocument, Timestamp};

const LIVE: usize = 100_000;
const CUSTOMERS: usize = 30;

/// A 12-line document whose content depends on its id and revision.
fn document(id: usize, revision: i32) -> ForecastDocument {
    forecast_model::fixtures::numbered_revision(
        id,
        &format!("CUSTOMER-{:02}", id % CUSTOMERS),
        revision,
    )
}

fn bench(c: &mut Criterion) {
    let first = document(0, 1);
    // Supply of every SKU x quarter the documents name: half the demand.
    let mut cells = std::collections::BTreeSet::new();
    for l in &first.lines {
        cells.insert((l.sku.clone(), l.period_start.quarter()));
    }
    let supply = cells
        .into_iter()
        .map(|(sku, quarter)| SupplyEntry {
            sku,
            quarter,
            on_hand: 250 * LIVE as i64,
            ordered: 0,
        })
        .collect();
    let mut book = Book::new(AllocationPolicy::default(), supply);
    for i in 0..LIVE {
        let d = document(i, 1);
        book.apply(&d, content_digest(&d));
    }
    let due = book.due(Timestamp::now());
    println!(
        "{} live documents of {CUSTOMERS} customers: {} commits, {} lines",
        book.state().live_documents(),
        due.len(),
        due.iter().map(|c| c.lines.len()).sum::<usize>()
    );
    let mut g = c.benchmark_group("allocator");
    g.sample_size(10);
    let mut revision = 1;
    g.bench_function("round_after_one_revision_100k_live", |b| {
        b.iter_batched(
            || {
                revision += 1;
                document(revision as usize % LIVE, revision)
            },
            |d| {
                book.apply(&d, content_digest(&d));
                black_box(book.due(Timestamp::now()))
            },
            criterion::BatchSize::SmallInput,
        )
    });
    // Its parts: the demand lines, the allocation, the revisions each
    // commit line names.
    g.bench_function("demand_lines_100k_live", |b| {
        b.iter(|| black_box(book.state().demand_lines()))
    });
    g.bench_function("allocated_100k_live", |b| {
        b.iter(|| black_box(book.allocated()))
    });
    let allocated = book.allocated();
    g.bench_function("commits_100k_live", |b| {
        b.iter(|| {
            black_box(forecast_allocator::commits(
                book.state(),
                &allocated.allocations,
                forecast_model::allocation::Method::ProRata,
                Timestamp::now(),
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
