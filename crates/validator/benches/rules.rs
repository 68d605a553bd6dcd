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

    // Signed submissions (docs/signatures.md): the canonical content alone,
    // and the service's per-record work with signatures required.
    let signer = forecast_model::signing::Signer::new(
        forecast_model::signing::SigningKey::from_bytes(&[7; 32]),
        None,
    );
    let mut signed = doc.clone();
    signer.sign(&mut signed);
    let signed_record = wire::encode_document(&signed);
    let keys = forecast_validator::KeyRegistry::from_entries(vec![
        forecast_validator::KeyEntry::for_signer(
            &signer,
            "TENCENT",
            forecast_model::Timestamp::from_millis(0),
            None,
        ),
    ])
    .expect("registry");
    let verifying = Validator::new(policy().with_key_registry(keys).expect("policy with keys"));
    assert!(
        check(&signed, verifying.policy()).passed(),
        "the signed benchmark document is accepted"
    );
    g.bench_function("canonical_content_12_lines", |b| {
        b.iter(|| forecast_model::signing::canonical_content(black_box(&signed)))
    });
    let canonical = forecast_model::signing::canonical_content(&signed);
    let public = signer.public_key();
    let signature = {
        use ed25519_dalek::Signer as _;
        ed25519_dalek::SigningKey::from_bytes(&[7; 32]).sign(&canonical)
    };
    g.bench_function("ed25519_verify_strict", |b| {
        b.iter(|| {
            public
                .verify_strict(black_box(&canonical), &signature)
                .expect("verifies")
        })
    });
    g.bench_function("avro_decode_reusing_rules_and_signature_12_lines", |b| {
        let mut spare = None;
        b.iter(|| {
            verifying
                .judge_framed_reusing(
                    black_box(&signed_record),
                    Registry::embedded(),
                    usize::MAX,
                    &mut spare,
                )
                .recycle(&mut spare)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
