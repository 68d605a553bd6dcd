//! What the stage attestation costs per record (docs/security.md, "Trust
//! between stages"): the validator's HMAC-SHA256 over a validated record
//! (a 12-line document, 867 bytes of Avro, and its verdict headers), and the
//! aggregator's check of it.
//!
//! `cargo bench -p forecast-model --bench attest`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use forecast_model::attest::{Covered, Role, StageKeyEntry, StageKeys, Verifier};
use forecast_model::{Timestamp, fixtures, wire};

fn bench(c: &mut Criterion) {
    let since = Timestamp::from_millis(0);
    let line = StageKeyEntry::generate(Role::Validator, since)
        .expect("a key")
        .line();
    let keys = StageKeys::from_text(&line, "bench").expect("the key reads");
    let attester = keys
        .attester(Role::Validator, Timestamp::now())
        .expect("a key in force");
    let verifier = Verifier::new("the validator", keys.checks(&[Role::Validator]));
    let value = wire::encode_document(&fixtures::twelve_line_document("TCT-2026-0001", "TENCENT"));
    let headers: [(&str, Option<&[u8]>); 4] = [
        ("forecast.policy.version", Some(b"sha256:0123456789abcdef")),
        ("forecast.warnings", Some(b"")),
        ("forecast.source", Some(b"forecasts.submitted/1/12345")),
        ("forecast.screening.version", Some(b"csl-5cee6ffef2b9")),
    ];
    let covered = Covered {
        topic: "forecasts.validated",
        key: Some(b"TENCENT/TCT-2026-0001"),
        value: Some(&value),
    };
    let mark = attester.attest(covered, headers);
    let mut all = headers.to_vec();
    all.push(("forecast.attestation", Some(mark.as_bytes())));

    let mut g = c.benchmark_group(format!("attest_{}_byte_record", value.len()));
    g.throughput(Throughput::Elements(1));
    g.bench_function("attest", |b| {
        b.iter(|| attester.attest(black_box(covered), headers))
    });
    g.bench_function("verify", |b| {
        b.iter(|| {
            verifier
                .verify(black_box(covered), all.iter().copied(), None)
                .expect("believed")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
