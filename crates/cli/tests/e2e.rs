//! The pipeline on a real Kafka-protocol broker (tansu): a generated stream
//! of 2,400 submissions covering every rule code, every sequencing case,
//! duplicates and undecodable records goes through `forecastctl submit`,
//! `validate` and `aggregate`; the demand read back equals `replay` of the
//! same stream, every verdict equals replay's, the audit topic holds one
//! validator verdict per record, and every dead letter keeps its bytes.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::pipeline::*;
use common::*;
use forecast_model::{Stage, wire};
use serde_json::Value;

fn verdict_key(
    document_id: &Value,
    revision: &Value,
    verdict: &str,
    codes: Vec<String>,
    warnings: Vec<String>,
) -> String {
    format!(
        "{document_id}|{revision}|{verdict}|{}|{}",
        codes.join(","),
        warnings.join(",")
    )
}

/// What every run must end with, whatever faults happened on the way.
fn assert_pipeline_agrees_with_replay(p: &Pipeline, stream: &Path, sent: usize, poison: usize) {
    let expected = replay(stream);
    let mut last = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(240);
    while Instant::now() < deadline {
        last = p.demand();
        if last == expected["demand"] {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(
        last == expected["demand"],
        "demand differs from replay:\n{}\n{}",
        demand_diff(&last, &expected["demand"]),
        p.logs()
    );

    // Audit: one validator verdict per submitted record (after dedup by source).
    let verdicts = p.verdicts();
    let mut by_source: HashMap<(String, i32, i64, Stage), usize> = HashMap::new();
    for (v, _, _) in &verdicts {
        let s = v.source.as_ref().expect("every verdict names its source");
        *by_source
            .entry((
                s.topic.clone(),
                s.partition,
                s.offset,
                if v.stage == Stage::Sequence {
                    Stage::Sequence
                } else {
                    Stage::Validate
                },
            ))
            .or_default() += 1;
    }
    let validator_sources: HashSet<(i32, i64)> = by_source
        .keys()
        .filter(|k| k.3 == Stage::Validate)
        .map(|k| (k.1, k.2))
        .collect();
    if validator_sources.len() != sent + poison {
        let all = read_all(
            &p.broker.brokers,
            &p.names.topic("forecasts.submitted"),
            Duration::from_secs(2),
        );
        let missing: Vec<String> = all
            .iter()
            .filter(|r| !validator_sources.contains(&(r.partition, r.offset)))
            .map(|r| {
                format!(
                    "{}@{} key {:?} ({} bytes)",
                    r.partition,
                    r.offset,
                    r.key.as_deref().map(String::from_utf8_lossy),
                    r.value.as_ref().map_or(0, Vec::len)
                )
            })
            .collect();
        panic!(
            "{} validator verdicts for {} submitted records ({} on the topic); without a verdict:\n{}\n{}",
            validator_sources.len(),
            sent + poison,
            all.len(),
            missing.join("\n"),
            p.logs()
        );
    }

    // Final verdicts, deduplicated by source and stage, equal replay's
    // (lines that do not decode are refused by submit and never sent).
    let mut seen = HashSet::new();
    let mut got = Vec::new();
    for (v, _, _) in &verdicts {
        let s = v.source.as_ref().unwrap();
        if !seen.insert((s.partition, s.offset, v.stage)) || v.stage == Stage::Deserialize {
            continue;
        }
        // An accepted verdict of the validator is completed by the aggregator's.
        if v.stage == Stage::Validate && v.outcome == forecast_model::Outcome::Accepted {
            continue;
        }
        got.push(verdict_key(
            &serde_json::to_value(&v.document_id).unwrap(),
            &serde_json::to_value(v.revision).unwrap(),
            v.outcome.as_str(),
            v.codes.iter().map(|c| c.as_str().to_owned()).collect(),
            v.warnings.iter().map(|c| c.as_str().to_owned()).collect(),
        ));
    }
    let want: Vec<String> = expected["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["codes"] != serde_json::json!(["SCHEMA_INVALID"]))
        .map(|v| {
            let strings = |a: &Value| {
                a.as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_owned())
                    .collect()
            };
            verdict_key(
                &v["document_id"],
                &v["revision"],
                v["verdict"].as_str().unwrap(),
                strings(&v["codes"]),
                strings(&v["warnings"]),
            )
        })
        .collect();
    let (g, w) = (multiset(got), multiset(want));
    if g != w {
        let mut diff: Vec<String> = w
            .iter()
            .filter(|(k, n)| g.get(*k) != Some(n))
            .map(|(k, n)| format!("want {n} x {k}, got {}", g.get(k).unwrap_or(&0)))
            .collect();
        diff.extend(
            g.iter()
                .filter(|(k, _)| !w.contains_key(*k))
                .map(|(k, n)| format!("unexpected {n} x {k}")),
        );
        diff.sort();
        panic!("verdicts differ from replay:\n{}", diff.join("\n"));
    }

    // Dead letters keep the original key, value and headers byte for byte.
    let submitted: HashMap<(i32, i64), Record> = read_all(
        &p.broker.brokers,
        &p.names.topic("forecasts.submitted"),
        Duration::from_secs(2),
    )
    .into_iter()
    .map(|r| ((r.partition, r.offset), r))
    .collect();
    let rejected = read_all(
        &p.broker.brokers,
        &p.names.topic("forecasts.rejected"),
        Duration::from_secs(2),
    );
    let rejected_sources: HashSet<(i32, i64)> = rejected
        .iter()
        .map(|d| {
            let at = (
                d.header("forecast.errors.partition")
                    .unwrap()
                    .parse()
                    .unwrap(),
                d.header("forecast.errors.offset").unwrap().parse().unwrap(),
            );
            let original = &submitted[&at];
            assert_eq!(
                (&d.key, &d.value),
                (&original.key, &original.value),
                "dead letter of {at:?} keeps key and value"
            );
            assert_eq!(
                &d.headers[..original.headers.len()],
                &original.headers[..],
                "dead letter of {at:?} keeps headers"
            );
            for h in [
                "forecast.errors.topic",
                "forecast.errors.stage",
                "forecast.errors.codes",
                "forecast.errors.message",
            ] {
                assert!(
                    d.header(h).is_some_and(|v| !v.is_empty()),
                    "dead letter of {at:?} has {h}"
                );
            }
            at
        })
        .collect();
    let rejected_verdicts: HashSet<(i32, i64)> = verdicts
        .iter()
        .filter(|(v, _, _)| {
            v.stage != Stage::Sequence && v.outcome == forecast_model::Outcome::Rejected
        })
        .map(|(v, _, _)| {
            (
                v.source.as_ref().unwrap().partition,
                v.source.as_ref().unwrap().offset,
            )
        })
        .collect();
    assert_eq!(
        rejected_sources, rejected_verdicts,
        "every rejected or undecodable record is dead-lettered, and only those"
    );
}

/// Poison pills: not Avro, bad magic, unknown schema id, truncated Avro, a
/// 2 MB record, an empty value, a null value and a null key.
fn poison_pills(p: &Pipeline) -> usize {
    let doc = forecast_model::ForecastDocument::from_json(
        &std::fs::read(repo().join("examples/tencent-original.json")).unwrap(),
    )
    .unwrap();
    let good = wire::encode_document(&doc);
    let mut unknown_id = good.clone();
    unknown_id[1..5].copy_from_slice(&77u32.to_be_bytes());
    let mut bad_magic = good.clone();
    bad_magic[0] = 9;
    let truncated = good[..good.len() / 2].to_vec();
    let mut huge = good.clone();
    huge.resize(2 << 20, 0);
    let pills: Vec<RawRecord<'_>> = vec![
        (Some(b"pill-1"), Some(b"this is not avro")),
        (Some(b"pill-2"), Some(&bad_magic)),
        (Some(b"pill-3"), Some(&unknown_id)),
        (Some(b"pill-4"), Some(&truncated)),
        (Some(b"pill-5"), Some(&huge)),
        (Some(b"pill-6"), Some(b"")),
        (Some(b"pill-7"), None),
        (None, Some(b"\x00\x00\x00\x00\x02garbage")),
    ];
    produce_raw(
        &p.broker.brokers,
        &p.names.topic("forecasts.submitted"),
        &pills,
    );
    pills.len()
}

fn sent_count(summary: &str) -> usize {
    summary.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_stream_through_kafka_ends_as_replay_says() {
    // The validator serves its metrics and health.
    let http = format!(
        "127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let mut p = Pipeline::start_with("e2e", &["--http", &http], &[]);
    let stream = p.dir.join("stream.jsonl");
    let n = generated_stream(4, &stream);
    assert!(n >= 2000);
    let started = Instant::now();
    let summary = p.submit(&stream);
    let poison = poison_pills(&p);
    let sent = sent_count(&summary);
    assert_pipeline_agrees_with_replay(&p, &stream, sent, poison);
    eprintln!(
        "{n} submissions ({summary}) + {poison} poison pills: demand equal to replay after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    assert_eq!(http_get(&http, "/healthz").0, "HTTP/1.1 200 OK");
    assert_eq!(http_get(&http, "/readyz").0, "HTTP/1.1 200 OK");
    let (status, metrics) = http_get(&http, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
            .parse()
            .unwrap()
    };
    assert_eq!(
        value("forecast_records_in_total{service=\"validator\"}") as usize,
        sent + poison
    );
    assert!(value("forecast_rejections_total{service=\"validator\",code=\"HORIZON_GAP\"}") > 0.0);
    assert!(
        value("forecast_dead_letters_total{service=\"validator\",stage=\"deserialize\"}")
            >= poison as f64
    );
    assert_eq!(
        value("forecast_processing_seconds_count{service=\"validator\"}") as usize,
        sent + poison
    );
    p.stop_gracefully();
}

#[test]
fn sigkill_of_both_services_mid_stream_loses_nothing_and_counts_nothing_twice() {
    // Each instance serves its metrics, so the test kills it only once it
    // has joined its group and consumed records (tansu 0.6 can leave a
    // group waiting forever for a member killed in the middle of joining).
    let port = || {
        format!(
            "127.0.0.1:{}",
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        )
    };
    let (mut validator_http, mut aggregator_http) = (port(), port());
    let mut p = Pipeline::start_with(
        "kill",
        &["--http", &validator_http],
        &["--http", &aggregator_http],
    );
    let restart_validator = |p: &mut Pipeline| -> String {
        let http = port();
        p.validator =
            Pipeline::spawn_validator_with(&p.broker, &p.names, &p.dir, &["--http", &http]);
        http
    };
    let restart_aggregator = |p: &mut Pipeline| -> String {
        let http = port();
        p.aggregator = spawn_service(
            "aggregate",
            &p.broker,
            &p.names,
            &["--http", &http],
            &p.dir.join("aggregator.log"),
        );
        http
    };
    let stream = p.dir.join("stream.jsonl");
    let n = generated_stream(4, &stream);
    let text = std::fs::read_to_string(&stream).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let chunks: Vec<&[&str]> = lines.chunks(lines.len().div_ceil(4)).collect();
    let mut sent = 0;
    let (mut validator_kills, mut aggregator_kills) = (0, 0);
    for (i, chunk) in chunks.iter().enumerate() {
        let part = p.dir.join(format!("part-{i}.jsonl"));
        std::fs::write(&part, chunk.join("\n") + "\n").unwrap();
        sent += sent_count(&p.submit(&part));
        if i == chunks.len() - 1 {
            break;
        }
        // Kill them hard once they are into the stream.
        consuming(&validator_http, "validator");
        unsafe_kill(&mut p.validator);
        validator_kills += 1;
        if i % 2 == 0 {
            consuming(&aggregator_http, "aggregator");
            unsafe_kill(&mut p.aggregator);
            aggregator_kills += 1;
            aggregator_http = restart_aggregator(&mut p);
        }
        validator_http = restart_validator(&mut p);
    }
    assert_pipeline_agrees_with_replay(&p, &stream, sent, 0);
    eprintln!(
        "{n} submissions with {validator_kills} SIGKILLs of the validator and {aggregator_kills} of the aggregator: equal to replay"
    );
}

/// Waits until the service behind `http` has consumed records.
fn consuming(http: &str, service: &str) {
    let name = format!("forecast_records_in_total{{service=\"{service}\"}}");
    wait_until(
        Duration::from_secs(120),
        &format!("the {service} to consume"),
        || {
            std::net::TcpStream::connect(http).is_ok()
                && http_get(http, "/metrics")
                    .1
                    .lines()
                    .any(|l| l.starts_with(&name) && !l.ends_with(" 0"))
        },
    );
}

/// SIGKILL: no clean shutdown, no final commit, no flush.
fn unsafe_kill(c: &mut Child) {
    c.kill().unwrap();
    c.wait().unwrap();
}

#[test]
fn up_runs_everything_and_shows_the_demand_replay_gives() {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (port, http) = (free(), free());
    let out = run(&[
        "up".into(),
        "--once".into(),
        "--port".into(),
        port.to_string(),
        "--http".into(),
        format!("127.0.0.1:{http}"),
        RESTRICTED.into(),
        "examples/restricted-parties.csv".into(),
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "up failed: {stderr}");
    assert!(
        stderr.contains("it equals `forecastctl replay` of the same file"),
        "{stderr}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("TOTAL") && l.ends_with("306,000")),
        "{stdout}"
    );
}
