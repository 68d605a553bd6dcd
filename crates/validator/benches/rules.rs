//! Decode + all rules on one 12-line document: the validator's per-record
//! work. Goal: >= 100k documents per second on one core.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use forecast_model::{ForecastDocument, Registry, wire};
use forecast_validator::{Policy, RestrictedParties, Validator, check};

/// The Tencent example grown to 12 lines (2 SKUs x 4 quarters, firm and planning).
pub fn twelve_line_document() -> ForecastDocument {
    let mut doc =
        ForecastDocument::from_json(include_bytes!("../../../examples/tencent-original.json"))
            .expect("example parses");
    let template = doc.lines[0].clone();
    doc.lines.clear();
    for (i, (sku, quarter)) in ["H20-96GB", "H20-141GB"]
        .iter()
        .flat_map(|s| ["2026-07-01", "2026-10-01", "2027-01-01", "2027-04-01"].map(|q| (*s, q)))
        .enumerate()
    {
        let mut line = template.clone();
        line.sku = sku.to_string();
        line.period_start = quarter.parse().expect("date");
        line.quantity = 1_000 * (i as i64 + 1);
        doc.lines.push(line.clone());
        if i < 4 {
            line.confidence = forecast_model::Confidence::Planning;
            doc.lines.push(line);
        }
    }
    assert_eq!(doc.lines.len(), 12);
    doc
}

fn policy() -> Policy {
    let list = RestrictedParties::from_path(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/restricted-parties.csv"
    )))
    .expect("example list");
    Policy::new(Default::default(), list).expect("policy")
}

fn bench(c: &mut Criterion) {
    let doc = twelve_line_document();
    let validator = Validator::new(policy());
    let record = wire::encode_document(&doc);
    let json = doc.to_json();
    assert!(
        check(&doc, validator.policy()).passed(),
        "the benchmark document is accepted"
    );

    let mut g = c.benchmark_group("validator");
    g.throughput(Throughput::Elements(1));
    g.bench_function("avro_decode_12_lines", |b| {
        b.iter(|| wire::decode_document(black_box(&record), Registry::embedded()).expect("decodes"))
    });
    g.bench_function("rules_12_lines", |b| {
        b.iter(|| check(black_box(&doc), validator.policy()))
    });
    g.bench_function("avro_decode_and_rules_12_lines", |b| {
        b.iter(|| validator.judge_framed(black_box(&record), Registry::embedded()))
    });
    g.bench_function("json_decode_and_rules_12_lines", |b| {
        b.iter(|| validator.judge_json(black_box(json.as_bytes())))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
