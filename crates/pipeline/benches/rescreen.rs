//! Re-screening at scale: 100,000 live documents (every customer's last
//! applied revision), a 20,000-entry restricted-party list, and an update
//! that adds 100 entries, 40 of them naming end users of live documents.
//! Prints how long the re-screen takes (the new list's index built, its
//! delta looked up, the held documents moved), and the validator's
//! throughput (documents judged per second, framed Avro, on one thread)
//! alone and while the re-screen and the validator's own switch to the new
//! list run beside it.
//!
//! `cargo bench -p forecast-pipeline --bench rescreen`
//! (`-- --documents N --entries N --added N` to change the sizes).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use forecast_aggregator::DemandState;
use forecast_model::screening::{ListEntry, ScreeningList};
use forecast_model::{EndUser, Registry, Timestamp, fixtures, wire};
use forecast_validator::{Policy, Validator};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().unwrap())
}

/// A made-up party name, distinct per `i` after normalising.
fn party(kind: &str, i: usize) -> String {
    format!("{kind} Party {} Technology Co., Ltd.", words(i))
}

/// `i` spelled with letters (digits alone would make names that differ
/// only by a number: fine, but less like a list).
fn words(mut i: usize) -> String {
    const SYLLABLES: [&str; 16] = [
        "ka", "lo", "mi", "su", "ra", "te", "no", "vi", "ze", "pa", "qu", "do", "xi", "ba", "fe",
        "gu",
    ];
    let mut s = String::new();
    loop {
        s.push_str(SYLLABLES[i % 16]);
        i /= 16;
        if i == 0 {
            return s;
        }
    }
}

fn list(version: &str, names: impl Iterator<Item = String>) -> ScreeningList {
    ScreeningList {
        version: version.into(),
        effective_from: Timestamp::from_millis(0),
        sha256: String::new(),
        entries: names
            .enumerate()
            .map(|(i, name)| ListEntry {
                id: format!("e{i}"),
                alt_names: vec![format!("{name} Group Holdings")],
                name,
            })
            .collect(),
    }
}

/// Judges `records` in a loop until `stop`, counting into `judged`.
fn judge_until(validator: &Validator, records: &[Vec<u8>], stop: &AtomicBool, judged: &AtomicU64) {
    let registry = Registry::embedded();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for r in records.iter().take(256) {
            std::hint::black_box(validator.judge_framed(r, registry));
        }
        n += 256.min(records.len() as u64);
        judged.store(n, Ordering::Relaxed);
    }
}

/// Documents/s judged by a thread running beside `work`, over the time
/// `work` takes (at least `at_least`: `work` of nothing measures the
/// validator alone).
fn throughput_during(
    validator: &Validator,
    records: &[Vec<u8>],
    at_least: Duration,
    work: impl FnOnce(),
) -> f64 {
    let (stop, judged) = (AtomicBool::new(false), AtomicU64::new(0));
    std::thread::scope(|s| {
        s.spawn(|| judge_until(validator, records, &stop, &judged));
        // The judging thread under way first.
        while judged.load(Ordering::Relaxed) == 0 {
            std::hint::spin_loop();
        }
        let (from, started) = (judged.load(Ordering::Relaxed), Instant::now());
        work();
        std::thread::sleep(at_least.saturating_sub(started.elapsed()));
        let n = judged.load(Ordering::Relaxed) - from;
        let elapsed = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        n as f64 / elapsed
    })
}

fn main() {
    let documents = arg("--documents", 100_000);
    let entries = arg("--entries", 20_000);
    let added = arg("--added", 100);
    let customers = ["TENCENT", "BYTEDANCE", "ALIBABA"];

    let old = list("v1", (0..entries).map(|i| party("Listed", i)));
    // The update: the old entries, and `added` new ones, 40% of them
    // naming end users of live documents.
    let naming = added * 2 / 5;
    let new = list(
        "v2",
        (0..entries)
            .map(|i| party("Listed", i))
            .chain((0..naming).map(|i| party("Customer", i)))
            .chain((naming..added).map(|i| party("Nobody", i))),
    );

    let started = Instant::now();
    let mut state = DemandState::new();
    state.rescreen(&old);
    let mut doc = fixtures::twelve_line_document("X", "TENCENT");
    for i in 0..documents {
        doc.document_id = format!("DOC-{i:07}");
        doc.customer_id = customers[i % 3].into();
        // About a thousand end users shared by the documents.
        doc.end_use.end_users = vec![EndUser {
            name: party("Customer", i % 1_000),
            country: "CN".into(),
        }];
        state.apply(&doc);
    }
    println!(
        "{} live documents applied under a {}-entry list in {:.2} s",
        state.live_documents(),
        old.entries.len(),
        started.elapsed().as_secs_f64()
    );

    let policy = Policy::default().with_screening_list(&old).unwrap();
    let validator = Validator::new(policy.clone());
    let records: Vec<Vec<u8>> = (0..256)
        .map(|i| {
            let mut d = fixtures::twelve_line_document(&format!("NEW-{i}"), customers[i % 3]);
            d.end_use.end_users[0].name = party("Customer", 5_000 + i);
            wire::encode_document(&d)
        })
        .collect();
    let alone = throughput_during(&validator, &records, Duration::from_secs(3), || {});

    // The update, then the old list again (releasing what it held), ten
    // times: each is a re-screen of the same size.
    const ROUNDS: usize = 10;
    let mut took = Vec::new();
    let mut held = 0;
    let during = throughput_during(&validator, &records, Duration::ZERO, || {
        for _ in 0..ROUNDS {
            for l in [&new, &old] {
                let started = Instant::now();
                let changed = state.rescreen(l);
                // The validator's own switch to the list (its index built).
                std::hint::black_box(policy.clone().with_screening_list(l).unwrap());
                took.push(started.elapsed().as_secs_f64());
                if std::ptr::eq(l, &new) {
                    held = changed.len();
                }
            }
        }
    });
    took.sort_by(f64::total_cmp);
    println!(
        "re-screen of {documents} live documents, a {entries}-entry list plus {added} entries ({held} documents held, then released; {} re-screens): median {:.3} s, slowest {:.3} s",
        took.len(),
        took[took.len() / 2],
        took[took.len() - 1]
    );
    println!(
        "validator throughput (one thread, framed Avro): {alone:.0} documents/s alone, {during:.0} documents/s while the re-screens run on the other core ({:+.1}%)",
        100.0 * (during - alone) / alone
    );
}
