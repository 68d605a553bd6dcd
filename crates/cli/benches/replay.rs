//! `replay` throughput: JSON parse, rules, sequencing and demand over a
//! stream with the mix of a real one (mostly accepted originals, replaces,
//! duplicates, cancels and rejections).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use forecast_validator::Policy;
use forecastctl::{Format, replay};
use serde_json::{Value, json};

/// `n` submissions built from the examples, with distinct document ids.
fn stream(n: usize) -> Vec<u8> {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/");
    let read = |name: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(format!("{examples}{name}")).expect("example"),
        )
        .expect("json")
    };
    let originals = [
        read("tencent-original.json"),
        read("bytedance-original.json"),
        read("alibaba-original.json"),
    ];
    let rejected = read("rejected-paperwork.json");
    let mut out = Vec::new();
    let mut push = |v: &Value| {
        out.extend_from_slice(v.to_string().as_bytes());
        out.push(b'\n');
    };
    let mut i = 0;
    while i < n {
        let mut doc = originals[i % 3].clone();
        doc["document_id"] = json!(format!("DOC-{i:08}"));
        push(&doc);
        i += 1;
        match i % 10 {
            // A replace with one changed line.
            1 | 4 | 7 => {
                doc["revision"] = json!(2);
                doc["purpose"] = json!("REPLACE");
                doc["lines"][0]["quantity"] = json!(1234);
                push(&doc);
                i += 1;
            }
            // A duplicate delivery.
            2 => {
                push(&doc);
                i += 1;
            }
            // A cancel.
            5 => {
                doc["revision"] = json!(2);
                doc["purpose"] = json!("CANCEL");
                doc["lines"] = json!([]);
                push(&doc);
                i += 1;
            }
            // A rejected submission.
            8 => {
                let mut r = rejected.clone();
                r["document_id"] = json!(format!("REJ-{i:08}"));
                push(&r);
                i += 1;
            }
            _ => {}
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let n = 20_000;
    let input = stream(n);
    let submissions = input.iter().filter(|b| **b == b'\n').count();
    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Elements(submissions as u64));
    g.sample_size(10);
    g.bench_function(format!("json_{submissions}_submissions"), |b| {
        b.iter(|| {
            replay::run(
                Policy::default(),
                black_box(&input[..]),
                std::path::Path::new("bench"),
                Format::Json,
                &mut std::io::sink(),
            )
            .expect("replays")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
