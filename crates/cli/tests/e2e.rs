//! The pipeline on a real Kafka-protocol broker (tansu): a generated stream
//! of 2,400 submissions covering every rule code, every sequencing case,
//! duplicates and undecodable records goes through `forecastctl submit`,
//! `validate` and `aggregate`; the demand read back equals `replay` of the
//! same stream, every verdict equals replay's, the audit topic holds one
//! validator verdict per record, and every dead letter keeps its bytes.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use forecast_tests::processes::pipeline::*;
use forecast_tests::processes::*;
use serde_json::Value;

/// What every run must end with, whatever faults happened on the way.
fn assert_pipeline_agrees_with_replay(p: &Pipeline, stream: &Path, sent: usize, poison: usize) {
    let expected = replay(stream);
    let mut demand = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(240);
    while Instant::now() < deadline {
        demand = p.demand();
        if demand == expected["demand"] {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let observed = Observed::read(&p.broker.brokers, |t| p.names.topic(t), demand);
    if let Err(report) = compare(&expected, &observed, sent, poison) {
        panic!("{report}\n{}", p.logs());
    }
}

/// Sends the poison pills straight to the submitted topic.
fn send_poison_pills(p: &Pipeline) -> usize {
    let pills = poison_pills();
    let raw: Vec<RawRecord<'_>> = pills
        .iter()
        .map(|(k, v)| (k.as_deref(), v.as_deref()))
        .collect();
    produce_raw(
        &p.broker.brokers,
        &p.names.topic("forecasts.submitted"),
        &raw,
    );
    raw.len()
}

fn sent_count(summary: &str) -> usize {
    summary.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_stream_through_kafka_ends_as_replay_says() {
    // The validator serves its metrics and health.
    let http = free_addr();
    let mut p = Pipeline::start_with("e2e", &["--http", &http], &[]);
    let stream = p.dir.join("stream.jsonl");
    let n = generated_stream(4, &stream);
    assert!(n >= 2000);
    let started = Instant::now();
    let summary = p.submit(&stream);
    let poison = send_poison_pills(&p);
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
        // Kill them hard once they are into the stream: both consuming
        // before either is killed (the aggregator consumes only what the
        // validator produced, and a validator killed between its first
        // record in and its first batch out leaves it nothing to consume).
        consuming(&validator_http, "validator");
        let kill_aggregator = i % 2 == 0;
        if kill_aggregator {
            consuming(&aggregator_http, "aggregator");
        }
        unsafe_kill(&mut p.validator);
        validator_kills += 1;
        if kill_aggregator {
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

/// Signed submissions through Kafka: the signature survives JSON -> Avro ->
/// the live validator, which requires it once it has keys, and compares
/// `submitted_at` with the record's broker timestamp.
#[test]
fn the_live_validator_verifies_signatures_and_the_submission_time() {
    let keys_dir = std::env::temp_dir().join(format!("forecast-e2e-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&keys_dir);
    std::fs::create_dir_all(&keys_dir).unwrap();
    let registry = keys_dir.join("keys.jsonl");
    let key = generate_key(
        &keys_dir,
        &registry,
        "TENCENT",
        "tencent",
        &[
            "--valid-from",
            "2020-01-01T00:00:00Z",
            "--valid-until",
            "2030-01-01T00:00:00Z",
        ],
    );

    let mut p = Pipeline::start_with("signed", &["--keys", registry.to_str().unwrap()], &[]);
    let now = forecast_model::Timestamp::now().millis();
    let doc = |id: &str, submitted_ms: i64| {
        let mut d = Pipeline::sample_document(id);
        d["submitted_at"] = forecast_model::Timestamp::from_millis(submitted_ms)
            .to_string()
            .into();
        d.to_string() + "\n"
    };
    let signed = p.dir.join("signed.jsonl");
    // Now, and two days ago (outside the default skew of 5 minutes).
    std::fs::write(
        &signed,
        doc("SIG-NOW", now) + &doc("SIG-OLD", now - 2 * 86_400_000),
    )
    .unwrap();
    let unsigned = p.dir.join("unsigned.jsonl");
    std::fs::write(&unsigned, doc("SIG-NONE", now)).unwrap();
    assert!(
        p.submit_with(&signed, &["--signing-key", key.to_str().unwrap()])
            .starts_with("2 sent")
    );
    assert!(p.submit(&unsigned).starts_with("1 sent"));

    let deadline = Instant::now() + Duration::from_secs(120);
    let codes = loop {
        let by_id: std::collections::BTreeMap<String, Vec<String>> = p
            .verdicts()
            .into_iter()
            .filter(|(v, _, _)| v.stage == forecast_model::Stage::Validate)
            .filter_map(|(v, _, _)| {
                Some((
                    v.document_id?,
                    v.codes.iter().map(|c| c.to_string()).collect(),
                ))
            })
            .collect();
        if by_id.len() == 3 || Instant::now() > deadline {
            break by_id;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let has = |id: &str, code: &str| codes.get(id).is_some_and(|c| c.iter().any(|x| x == code));
    assert!(
        !codes["SIG-NOW"].iter().any(|c| c.starts_with("SIGNATURE")
            || c.starts_with("KEY")
            || c == "SUBMITTED_AT_SKEW"),
        "{codes:?}\n{}",
        p.logs()
    );
    assert!(has("SIG-OLD", "SUBMITTED_AT_SKEW"), "{codes:?}");
    assert!(has("SIG-NONE", "SIGNATURE_MISSING"), "{codes:?}");

    // A burst of signed documents, one in four changed after signing: the
    // validator judges such a batch on every core; exactly the changed
    // ones are SIGNATURE_INVALID.
    let burst = p.dir.join("burst.jsonl");
    let text: String = (0..48).map(|i| doc(&format!("SIG-B{i:02}"), now)).collect();
    std::fs::write(&burst, text).unwrap();
    let out = run(&[
        "sign".into(),
        "--signing-key".into(),
        key.display().to_string(),
        burst.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tampered: String = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let mut d: Value = serde_json::from_str(line).unwrap();
            if i % 4 == 0 {
                d["lines"][0]["quantity"] = 1.into();
            }
            d.to_string() + "\n"
        })
        .collect();
    let signed_burst = p.dir.join("burst.signed.jsonl");
    std::fs::write(&signed_burst, tampered).unwrap();
    assert!(p.submit(&signed_burst).starts_with("48 sent"));
    let deadline = Instant::now() + Duration::from_secs(120);
    let burst_codes = loop {
        let by_id: std::collections::BTreeMap<String, Vec<String>> = p
            .verdicts()
            .into_iter()
            .filter(|(v, _, _)| v.stage == forecast_model::Stage::Validate)
            .filter_map(|(v, _, _)| {
                let id = v.document_id?;
                id.starts_with("SIG-B")
                    .then(|| (id, v.codes.iter().map(|c| c.to_string()).collect()))
            })
            .collect();
        if by_id.len() == 48 || Instant::now() > deadline {
            break by_id;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(burst_codes.len(), 48, "{}", p.logs());
    for (i, (id, codes)) in burst_codes.iter().enumerate() {
        let invalid = codes.iter().any(|c| c == "SIGNATURE_INVALID");
        assert_eq!(invalid, i % 4 == 0, "{id}: {codes:?}");
    }
    p.stop_gracefully();
    let _ = std::fs::remove_dir_all(&keys_dir);
}

/// `licences load` publishes each decision of a file, keyed by its
/// application number, as the aggregator reads them back; a file with one
/// wrong line sends nothing.
#[test]
fn licences_load_publishes_the_files_decisions_and_refuses_a_wrong_file_whole() {
    let (broker, names, dir) = broker_with_topics("licences", "licences", 1);
    let topic = names.topic("licences.decisions");
    let bad = dir.join("bad-licences.jsonl");
    std::fs::write(
        &bad,
        "{\"application_number\": \"Z-1\", \"customer_id\": \"TENCENT\", \"status\": \"DENIED\", \"decided_at\": \"2026-12-01T00:00:00Z\"}\n{\"application_number\": \"Z-2\", \"customer_id\": \"TENCENT\", \"status\": \"MAYBE\", \"decided_at\": \"2026-12-01T00:00:00Z\"}\n",
    )
    .unwrap();
    let mut args = names.command(&["licences", "load"], &broker.brokers);
    args.extend([
        "--signing-key".into(),
        test_keys().compliance.display().to_string(),
    ]);
    args.push(bad.display().to_string());
    let out = run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("bad-licences.jsonl, line 2") && stderr.contains("MAYBE"),
        "{stderr}"
    );
    assert!(read_all(&broker.brokers, &topic, Duration::from_secs(1)).is_empty());

    let mut args = names.command(&["licences", "load"], &broker.brokers);
    args.extend([
        "--signing-key".into(),
        test_keys().compliance.display().to_string(),
    ]);
    args.push("examples/licences.jsonl".into());
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = forecast_model::licence::read_decisions(
        &std::fs::read_to_string(repo().join("examples/licences.jsonl")).unwrap(),
        "examples",
    )
    .unwrap();
    let got: Vec<_> = read_all(&broker.brokers, &topic, Duration::from_secs(2))
        .into_iter()
        .map(|r| {
            let d = forecast_model::wire::decode_decision(
                r.value.as_deref().unwrap(),
                forecast_model::Registry::embedded(),
            )
            .unwrap();
            assert_eq!(r.key.as_deref(), Some(d.key().as_bytes()));
            d
        })
        .collect();
    assert_eq!(got, want);
}

/// Demand by licence status on the broker: a decision published before the
/// documents that reference it, the conformance sample, then decisions
/// after it (a revocation and a denial of applications live documents
/// reference). `demand --by-licence` and the planner's `/v1/exposure` end
/// equal to `replay --licences` of all the decisions, and the live stream
/// says `licences` when a decision moves demand.
#[test]
fn licence_decisions_before_and_after_the_documents_end_as_replay_says() {
    let http = free_addr();
    let p = Pipeline::with_planner_api("exposure", &http);
    let before = p.dir.join("before.jsonl");
    let after = p.dir.join("after.jsonl");
    let all = p.dir.join("all.jsonl");
    let before_text = concat!(
        "{\"application_number\": \"Z-3454487\", \"customer_id\": \"ALIBABA\", \"status\": \"REVOKED\", \"decided_at\": \"2026-11-01T00:00:00Z\"}\n",
        "{\"application_number\": \"Z-9194925\", \"customer_id\": \"BYTEDANCE\", \"status\": \"APPROVED\", \"decided_at\": \"2026-11-01T00:00:00+08:00\", \"approved_quantity\": {\"H20-96GB\": 1}}\n",
    );
    let after_text = concat!(
        "{\"application_number\": \"Z-8318200\", \"customer_id\": \"ALIBABA\", \"status\": \"REVOKED\", \"decided_at\": \"2026-12-01T00:00:00Z\"}\n",
        "{\"application_number\": \"Z-1806916\", \"customer_id\": \"BYTEDANCE\", \"status\": \"DENIED\", \"decided_at\": \"2026-12-02T00:00:00Z\"}\n",
    );
    std::fs::write(&before, before_text).unwrap();
    std::fs::write(&after, after_text).unwrap();
    std::fs::write(&all, format!("{before_text}{after_text}")).unwrap();
    let load = |file: &Path| p.load_licences(file);
    let replayed = |decisions: &Path| -> Value {
        let stream = conformance().join("stream.jsonl");
        replay_with(&stream, &["--licences", decisions.to_str().unwrap()])["licences"].clone()
    };
    let by_licence = || p.demand_with(&["--by-licence"]);
    let exposure = || -> Value {
        serde_json::from_str(&p.api_get(&http, "/v1/exposure").1).unwrap_or_default()
    };
    let licences_of = |e: &Value| {
        serde_json::json!({
            "by_status": e["by_status"],
            "lost_firm_demand": e["lost_firm_demand"],
            "over_approved": e["over_approved"],
        })
    };
    // Until both read what `want` says (or a deadline).
    let wait_for = |want: &Value, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (cli, api) = (by_licence(), licences_of(&exposure()));
            if cli == *want && api == *want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: never equal to replay --licences\nwant {want}\ndemand --by-licence {cli}\n/v1/exposure {api}\n{}",
                p.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    };

    load(&before);
    p.submit(&conformance().join("stream.jsonl"));
    let first = replayed(&before);
    assert!(
        first["lost_firm_demand"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["application_number"] == "Z-3454487"),
        "the revocation before the documents loses demand: {first}"
    );
    assert_eq!(first["over_approved"][0]["application_number"], "Z-9194925");
    wait_for(&first, "decisions before the documents");

    let mut stream = Events::open(&http, "/v1/demand/stream");
    load(&after);
    let last = replayed(&all);
    assert_ne!(last, first, "the later decisions move demand");
    for application in ["Z-8318200", "Z-1806916"] {
        assert!(
            last["lost_firm_demand"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["application_number"] == application),
            "{application} is lost: {last}"
        );
    }
    wait_for(&last, "decisions after the documents");
    assert!(
        stream.until_event("licences", Duration::from_secs(30)),
        "the live stream announced no licence change"
    );
    // Exposure per SKU x quarter adds up to the rows by status.
    let e = exposure();
    let sum = |v: &Value, f: &str| -> i64 {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r[f].as_i64().unwrap())
            .sum()
    };
    let revoked: i64 = e["by_status"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["licence_status"] == "REVOKED")
        .map(|r| r["total_units"].as_i64().unwrap())
        .sum();
    assert!(revoked > 0);
    assert_eq!(sum(&e["rows"], "revoked_units"), revoked);
    assert_eq!(sum(&e["by_quarter"], "revoked_units"), revoked);
    assert!(
        sum(&e["rows"], "supply_units") > 0,
        "the example supply plan: {e}"
    );
}

/// The event names of a live stream, read as they come.
struct Events {
    reader: std::io::BufReader<std::net::TcpStream>,
}

impl Events {
    fn open(addr: &str, path: &str) -> Events {
        use std::io::{BufRead, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        let mut reader = std::io::BufReader::new(s);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.contains(" 200 "), "GET {path}: {status}");
        Events { reader }
    }

    /// Whether an event named `name` arrives within `within`.
    fn until_event(&mut self, name: &str, within: Duration) -> bool {
        use std::io::BufRead;
        let deadline = Instant::now() + within;
        let want = format!("event: {name}");
        while Instant::now() < deadline {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return false,
                Ok(_) if line.trim_end() == want => return true,
                Ok(_) | Err(_) => {}
            }
        }
        false
    }
}

/// The last line of defence: an output the producer refuses for good (here
/// a validated copy over the validator's `message.max.bytes`) makes its
/// record a headers-only dead letter naming where it is; the partition
/// moves on, the next document is judged, and the validator stays up.
#[test]
fn a_record_whose_output_is_refused_is_dead_lettered_and_the_stream_goes_on() {
    let mut p = Pipeline::start_with("refused", &["-X", "message.max.bytes=6000"], &[]);
    let mut big = Pipeline::sample_document("BIG-1");
    big["end_use"]["description"] = "Inference serving ".repeat(600).into();
    let small = Pipeline::sample_document("SMALL-1");
    let file = p.dir.join("two.jsonl");
    std::fs::write(&file, format!("{big}\n{small}\n")).unwrap();
    p.submit(&file);
    let deadline = Instant::now() + Duration::from_secs(60);
    let accepted = |p: &Pipeline| {
        p.verdicts().into_iter().any(|(v, _, _)| {
            v.document_id.as_deref() == Some("SMALL-1")
                && v.stage == forecast_model::Stage::Sequence
                && v.outcome == forecast_model::Outcome::Accepted
        })
    };
    while !accepted(&p) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(accepted(&p), "SMALL-1 was not sequenced\n{}", p.logs());
    let letters = read_all(
        &p.broker.brokers,
        &p.names.topic("forecasts.rejected"),
        Duration::from_secs(2),
    );
    assert_eq!(letters.len(), 1, "{}", p.logs());
    let letter = &letters[0];
    assert_eq!(letter.value, None, "headers only");
    assert_eq!(letter.header("forecast.errors.stage"), Some("validate"));
    assert_eq!(letter.header("forecast.errors.offset"), Some("0"));
    assert!(
        letter
            .header("forecast.errors.message")
            .is_some_and(|m| m.contains("could not be written") && m.contains("too large")),
        "{:?}",
        letter.header("forecast.errors.message")
    );
    assert!(
        p.validator.try_wait().unwrap().is_none(),
        "the validator exited\n{}",
        p.logs()
    );
}
