//! The supplier's reply, live: `forecastctl allocator` beside the
//! pipeline publishes a signed commit per customer that equals what
//! `forecastctl allocate` gives offline; customers read their own through
//! the planner API and `forecastctl commits show`, and verify it offline.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use forecast_tests::processes::pipeline::*;
use forecast_tests::processes::*;
use forecast_tests::wait_until;
use serde_json::{Value, json};

const SUPPLY: &str = "examples/supply.csv";

/// `allocate --format json` of `stream` with `licences`, the pipeline's
/// restricted-party list and the example supply: per customer, its
/// allocations without the customer id (what its commit's lines hold
/// besides the revisions they answer).
fn offline(stream: &Path, licences: &Path) -> Value {
    let list = conformance().join("restricted.csv");
    let out = run(&[
        "allocate",
        "--format",
        "json",
        RESTRICTED,
        list.to_str().unwrap(),
        "--supply",
        SUPPLY,
        "--licences",
        licences.to_str().unwrap(),
        stream.to_str().unwrap(),
    ]
    .map(String::from));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut by_customer = serde_json::Map::new();
    for a in v["allocations"].as_array().unwrap() {
        let mut line = a.clone();
        let customer = line["customer_id"].as_str().unwrap().to_owned();
        line.as_object_mut().unwrap().remove("customer_id");
        by_customer
            .entry(customer)
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .unwrap()
            .push(line);
    }
    Value::Object(by_customer)
}

/// The commits the API gives `token`: per customer, its lines without the
/// revisions they answer; and the whole answer.
fn live(http: &str, token: &str) -> (Value, Value) {
    let (status, body) = forecast_tests::http_get_as(http, "/v1/commits", Some(token)).unwrap();
    assert!(status.contains("200"), "{status} {body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let mut by_customer = serde_json::Map::new();
    for signed in answer["commits"].as_array().unwrap() {
        let commit = &signed["commit"];
        let lines: Vec<Value> = commit["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                let mut l = l.clone();
                l.as_object_mut().unwrap().remove("documents");
                l
            })
            .collect();
        by_customer.insert(
            commit["customer_id"].as_str().unwrap().to_owned(),
            json!(lines),
        );
    }
    (Value::Object(by_customer), answer)
}

/// The allocator, started beside a running pipeline fed the sample and a
/// licence decision, publishes commits equal to `allocate` of the same
/// stream; a customer token reads its own commit and no other, `commits
/// show` writes it as signed and `commits verify` believes it, not with a
/// byte changed; a new revision supersedes the commit it changes; a
/// restarted allocator publishes nothing it published already; a forged
/// commit is not served and is overwritten by the signed one.
#[test]
fn live_commits_equal_allocate_and_each_customer_reads_and_verifies_its_own() {
    let http = free_addr();
    let (mut p, _) = Pipeline::with_planner_api_fed_tokens(
        "commits",
        &http,
        &["planner", "customer:TENCENT", "customer:ALIBABA"],
    );
    let stream = conformance().join("stream.jsonl");
    let licences = p.dir.join("licences.jsonl");
    std::fs::write(
        &licences,
        "{\"application_number\": \"Z-8318200\", \"customer_id\": \"ALIBABA\", \"status\": \"REVOKED\", \"decided_at\": \"2026-12-01T00:00:00Z\"}\n",
    )
    .unwrap();
    p.load_licences(&licences);
    let mut allocator = p.spawn_allocator();
    let logs = |p: &Pipeline| p.logs();

    // Live equals offline.
    let want = offline(&stream, &licences);
    assert!(
        want.as_object().unwrap().len() >= 3,
        "the sample has customers to allocate among: {want}"
    );
    let shortfalls = want.to_string();
    assert!(
        shortfalls.contains("SUPPLY_SHORT") || shortfalls.contains("LICENCE_"),
        "the sample's allocation has a shortfall to explain: {want}"
    );
    let planner = p.tokens[0].clone();
    let mut got = Value::Null;
    let equal = wait_until_ok(Duration::from_secs(120), || {
        got = live(&http, &planner).0;
        got == want
    });
    assert!(
        equal,
        "live commits {got}\n!= allocate {want}\n{}",
        logs(&p)
    );

    // A customer reads its own commit only.
    let (own, answer) = live(&http, &p.tokens[1]);
    assert_eq!(
        own.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["TENCENT"]
    );
    assert_eq!(own["TENCENT"], want["TENCENT"]);
    let (status, _) =
        forecast_tests::http_get_as(&http, "/v1/commits?customer=ALIBABA", Some(&p.tokens[1]))
            .unwrap();
    assert!(status.contains("403"), "{status}");
    let (status, _) = forecast_tests::http_get_as(&http, "/v1/commits", None).unwrap();
    assert!(status.contains("401"), "{status}");
    // Each line names the revisions it answers.
    let line = &answer["commits"][0]["commit"]["lines"][0];
    assert!(!line["documents"].as_array().unwrap().is_empty(), "{line}");

    // `commits show` writes it as signed; `commits verify` believes it, and
    // not with one byte changed.
    let dir = p.dir.join("mine");
    let out = run_with_env(
        &[
            "commits",
            "show",
            "--api",
            &format!("http://{http}"),
            "--out",
            dir.to_str().unwrap(),
        ],
        &[("FORECAST_API_TOKEN", &p.tokens[1])],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Commit to TENCENT"), "{text}");
    assert!(!text.contains("ALIBABA"), "{text}");
    let file = dir.join("TENCENT.commit.json");
    let verify = |file: &Path| {
        run(&[
            "commits".to_owned(),
            "verify".to_owned(),
            "--keys".to_owned(),
            test_keys().roles.display().to_string(),
            file.display().to_string(),
        ])
    };
    let out = verify(&file);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let signed = std::fs::read_to_string(&file).unwrap();
    let tampered = dir.join("tampered.commit.json");
    let at = signed.find("\"allocated_units\":").unwrap() + "\"allocated_units\":".len();
    let mut bytes = signed.into_bytes();
    bytes[at] = if bytes[at] == b'9' { b'8' } else { b'9' };
    std::fs::write(&tampered, bytes).unwrap();
    let out = verify(&tampered);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOT VALID"));

    // A new revision supersedes the commit it changes.
    let before = commit_records(&p);
    let mut doc = Pipeline::sample_document("TEN-000001");
    doc["revision"] = 2.into();
    doc["purpose"] = "REPLACE".into();
    doc["lines"][0]["quantity"] = (doc["lines"][0]["quantity"].as_i64().unwrap() + 1_000).into();
    let file = p.dir.join("revision.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    p.submit(&file);
    let answers_revision_2 = || {
        let (_, answer) = live(&http, &p.tokens[1]);
        answer["commits"][0]["commit"]["lines"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|l| l["documents"].as_array().unwrap().clone())
            .any(|d| d == json!({"document_id": "TEN-000001", "revision": 2}))
    };
    wait_until(
        Duration::from_secs(60),
        "TENCENT's commit to answer revision 2",
        answers_revision_2,
    );

    // A restarted allocator reads its commits back and publishes none of
    // them again.
    stop_with_sigterm(&mut allocator, "allocator", &p.dir, Duration::from_secs(30));
    let published = commit_records(&p);
    assert!(published > before, "{published} {before}");
    let mut allocator = p.spawn_allocator();
    wait_until(
        Duration::from_secs(60),
        "the restarted allocator to read its inputs",
        || {
            std::fs::read_to_string(p.dir.join("allocator.log"))
                .unwrap_or_default()
                .matches("input read to its end")
                .count()
                >= 10
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(commit_records(&p), published, "{}", logs(&p));

    // A forged commit (no supplier's signature) under TENCENT's key: the
    // planner keeps serving the signed one, and the allocator publishes
    // it again, so that the record compaction keeps is the signed one.
    let (lines, before) = live(&http, &p.tokens[1]);
    let mut forged = before["commits"][0]["commit"].clone();
    forged["lines"][0]["allocated_units"] = 999_999_999.into();
    let forged = forged.to_string();
    produce_raw(
        &p.broker.brokers,
        &p.names.topic("commits"),
        &[(Some(b"TENCENT".as_slice()), Some(forged.as_bytes()))],
    );
    wait_until(
        Duration::from_secs(60),
        "a signed commit to TENCENT after the forged one",
        || {
            let records = read_all(
                &p.broker.brokers,
                &p.names.topic("commits"),
                Duration::from_secs(1),
            );
            let last = records
                .iter()
                .rev()
                .find(|r| r.key.as_deref() == Some(b"TENCENT".as_slice()))
                .unwrap();
            last.header("forecast.attestation").is_some()
                && records
                    .iter()
                    .any(|r| r.value.as_deref() == Some(forged.as_bytes()))
        },
    );
    // Served: the signed commit's lines (made again, at a later time).
    let (after, _) = live(&http, &p.tokens[1]);
    assert_eq!(after, lines, "{}", logs(&p));
    assert!(!after.to_string().contains("999999999"));
    let _ = allocator.kill();
    let _ = allocator.wait();
    p.stop_gracefully();
}

/// Records on the commits topic.
fn commit_records(p: &Pipeline) -> usize {
    read_all(
        &p.broker.brokers,
        &p.names.topic("commits"),
        Duration::from_secs(2),
    )
    .len()
}

/// Whether `f` holds within `timeout`, tried every 300 ms.
fn wait_until_ok(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// [`run`] with extra environment variables.
fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(forecastctl())
        .args(args)
        .current_dir(repo())
        .env("RUST_LOG", "warn")
        .envs(key_env())
        .envs(env.iter().copied())
        .output()
        .unwrap()
}
