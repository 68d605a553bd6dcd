//! Decode + all rules on one 12-line document: the validator's per-record
//! work. Goal: >= 100k documents per second on one core.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use forecast_model::{Registry, wire};
use forecast_validator::{Policy, RestrictedParties, Validator, check};

fn policy() -> Policy {
    let list = RestrictedParties::from_path(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/restricted-parties.csv"
    )))
    .expect("example list");
    Policy::new(Default::default(), list).expect("policy")
}

fn bench(c: &mut Criterion) {
    let doc = forecast_model::fixtures::twelve_line_document("TCT-2026-0001", "TENCENT");
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
    // What the validating service does: each record decoded into the
    // document the one before it was decoded into.
    g.bench_function("avro_decode_reusing_12_lines", |b| {
        let mut buf = forecast_model::ForecastDocument::default();
        b.iter(|| {
            wire::decode_document_into(black_box(&record), Registry::embedded(), &mut buf)
                .expect("decodes")
        })
    });
    g.bench_function("avro_decode_reusing_and_rules_12_lines", |b| {
        let mut spare = None;
        b.iter(|| {
            validator
                .judge_framed_reusing(
                    black_box(&record),
                    Registry::embedded(),
                    usize::MAX,
                    &mut spare,
                )
                .recycle(&mut spare)
        })
    });
    g.bench_function("json_decode_and_rules_12_lines", |b| {
        b.iter(|| validator.judge_json(black_box(json.as_bytes())))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
