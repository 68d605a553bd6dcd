//! The planner API served by `forecastctl planner`, reading what a real
//! validator and aggregator wrote to a real broker: every endpoint, every
//! error case, readiness, and the live stream (with the delay from the
//! aggregator publishing a change to the stream delivering it).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use forecast_tests::processes::pipeline::*;
use forecast_tests::processes::*;
use serde_json::{Value, json};

/// GET returning the status code and the body as JSON.
fn get_json(addr: &str, path: &str) -> (u16, Value) {
    let (status, body) = http_get(addr, path);
    let code: u16 = status.split(' ').nth(1).unwrap().parse().unwrap();
    let value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("GET {path}: {status}: body is not JSON ({e}): {body}"));
    (code, value)
}

/// Asserts a JSON error with the status and a message containing `says`.
fn assert_error(addr: &str, path: &str, status: u16, says: &str) {
    let (code, body) = get_json(addr, path);
    assert_eq!(code, status, "GET {path}: {body}");
    let msg = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("GET {path}: no error message: {body}"));
    assert!(
        msg.contains(says),
        "GET {path}: `{msg}` does not say `{says}`"
    );
}

/// A Server-Sent Events client (HTTP/1.0, so the body is not chunked).
struct Events {
    reader: BufReader<TcpStream>,
}

impl Events {
    fn open(addr: &str, path: &str) -> Events {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.contains(" 200 "), "GET {path}: {status}");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some(ct) = line.to_ascii_lowercase().strip_prefix("content-type:") {
                assert!(ct.contains("text/event-stream"), "{line}");
            }
        }
        Events { reader }
    }

    /// The next event: its name and data, and when it was read.
    fn next(&mut self) -> (String, Value, std::time::SystemTime) {
        let (mut event, mut data) = (String::new(), String::new());
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).unwrap();
            assert!(n > 0, "the event stream ended");
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !data.is_empty() {
                    return (
                        event,
                        serde_json::from_str(&data).unwrap(),
                        std::time::SystemTime::now(),
                    );
                }
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
    }
}

fn millis(t: &Value) -> i64 {
    let s = t.as_str().unwrap();
    let ts: forecast_model::Timestamp = s.parse().unwrap();
    ts.millis()
}

#[test]
fn every_endpoint_answers_from_the_topics_and_rejects_bad_requests() {
    let http = free_addr();
    let (mut p, replayed) = Pipeline::with_planner_api_fed("planner", &http);
    let want_demand = &replayed["demand"];

    // Ready: its view holds what the topics held when it started; it
    // counts the records it read (two audit verdicts per accepted document,
    // the validator's and the aggregator's, besides the snapshots).
    let (status, _) = http_get(&http, "/readyz");
    assert!(status.contains(" 200 "), "/readyz: {status}");
    let read: f64 = http_get(&http, "/metrics")
        .1
        .lines()
        .find_map(|l| l.strip_prefix("forecast_records_in_total{service=\"planner\"} "))
        .expect("the planner's records-in counter")
        .parse()
        .unwrap();
    let accepted = replayed["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["verdict"] == "ACCEPTED")
        .count();
    assert!(
        accepted > 0 && read >= 2.0 * accepted as f64,
        "{read} records read, {accepted} documents accepted"
    );

    // Demand: the rows of `demand --format json`, plus totals.
    let (code, demand) = get_json(&http, "/v1/demand");
    assert_eq!(code, 200);
    assert_eq!(
        demand["rows"],
        p.demand(),
        "the API and `forecastctl demand` agree"
    );
    let sum = |rows: &Value, k: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| r[k].as_i64().unwrap())
            .sum::<i64>()
    };
    for k in ["firm_units", "planning_units", "total_units"] {
        assert_eq!(
            demand["totals"][k].as_i64().unwrap(),
            sum(&demand["rows"], k),
            "{k}"
        );
    }
    let (_, tencent) = get_json(
        &http,
        "/v1/demand?customer=TENCENT&sku=H20-96GB&quarter=2026-Q3",
    );
    let want: Vec<&Value> = want_demand
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["customer_id"] == "TENCENT" && r["sku"] == "H20-96GB" && r["quarter"] == "2026-Q3"
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(
        tencent["rows"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        want
    );
    assert_eq!(
        get_json(&http, "/v1/demand?customer=NOBODY").1,
        json!({"rows": [], "totals": {"firm_units": 0, "planning_units": 0, "total_units": 0}})
    );
    assert_error(&http, "/v1/demand?quarter=2026-Q5", 400, "YYYY-Qn");
    assert_error(&http, "/v1/demand?quarter=2026-3", 400, "YYYY-Qn");
    assert_error(
        &http,
        "/v1/demand?customr=TENCENT",
        400,
        "unknown parameter `customr`",
    );
    assert_error(&http, "/v1/demand?customer=A&customer=B", 400, "twice");

    // Documents: applied revision and every verdict, from the audit topic.
    let verdicts = replayed["verdicts"].as_array().unwrap();
    let mut by_doc: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for v in verdicts.iter().filter(|v| {
        !v["codes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "SCHEMA_INVALID")
    }) {
        if let Some(id) = v["document_id"].as_str() {
            by_doc.entry(id).or_default().push(v);
        }
    }
    let mut checked_revised = 0;
    let mut shared_ids = 0;
    for (id, vs) in &by_doc {
        let (code, doc) = get_json(&http, &format!("/v1/documents/{id}"));
        if code == 400 {
            // An id two customers use is two documents (replay's verdicts
            // do not say whose): the planner asks which one is meant.
            assert!(
                doc["error"].as_str().unwrap().contains("several customers"),
                "{id}: {doc}"
            );
            shared_ids += 1;
            continue;
        }
        assert_eq!(code, 200, "{id}: {doc}");
        let applied = vs
            .iter()
            .filter(|v| v["verdict"] == "ACCEPTED")
            .map(|v| v["revision"].as_i64().unwrap())
            .max();
        assert_eq!(doc["applied_revision"].as_i64(), applied, "{id}: {doc}");
        let history = doc["history"].as_array().unwrap();
        // One validator verdict per submission, one sequencing verdict per
        // submission the validator accepted; the final one equals replay's.
        let validator: Vec<&Value> = history
            .iter()
            .filter(|h| h["stage"] != "SEQUENCE")
            .collect();
        assert_eq!(validator.len(), vs.len(), "{id}: {doc}");
        let sequenced = history.iter().filter(|h| h["stage"] == "SEQUENCE").count();
        assert_eq!(
            sequenced,
            validator
                .iter()
                .filter(|h| h["verdict"] == "ACCEPTED")
                .count(),
            "{id}"
        );
        for h in history {
            assert!(
                h["policy_version"].as_str().unwrap().starts_with("sha256:"),
                "{h}"
            );
            assert!(
                h["decided_at"].is_string() && h["source"]["offset"].is_i64(),
                "{h}"
            );
        }
        if vs.len() > 1 && applied.is_some_and(|r| r > 1) {
            checked_revised += 1;
        }
    }
    assert!(checked_revised > 5, "the sample has revised documents");
    assert!(shared_ids > 0, "the sample has ids two customers use");
    assert_error(&http, "/v1/documents/NO-SUCH-DOC", 404, "NO-SUCH-DOC");
    assert_error(
        &http,
        "/v1/documents/TEN-000001?x=1",
        400,
        "unknown parameter",
    );

    // Rejections: one per rejected submission (lines that do not decode
    // are refused by `submit` and never reach the pipeline).
    let rejected: Vec<&Value> = by_doc
        .values()
        .flatten()
        .copied()
        .filter(|v| v["verdict"] == "REJECTED")
        .collect();
    let mut want_counts: HashMap<String, u64> = HashMap::new();
    for v in &rejected {
        for c in v["codes"].as_array().unwrap() {
            *want_counts
                .entry(c.as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    let (code, r) = get_json(&http, "/v1/rejections?limit=1000");
    assert_eq!(code, 200);
    assert_eq!(
        r["total"].as_u64().unwrap() as usize,
        rejected.len(),
        "{}",
        r["counts"]
    );
    let counts: HashMap<String, u64> = serde_json::from_value(r["counts"].clone()).unwrap();
    assert_eq!(counts, want_counts);
    assert_eq!(
        r["rejections"].as_array().unwrap().len(),
        rejected.len().min(1000)
    );
    let (_, r) = get_json(
        &http,
        "/v1/rejections?customer=BYTEDANCE&code=DOC_EXPIRED&limit=5",
    );
    let rows = r["rejections"].as_array().unwrap();
    assert!(!rows.is_empty() && rows.len() <= 5, "{r}");
    for row in rows {
        assert_eq!(row["customer_id"], "BYTEDANCE");
        assert!(
            row["codes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c == "DOC_EXPIRED"),
            "{row}"
        );
    }
    let (_, all) = get_json(&http, "/v1/rejections");
    assert_eq!(
        all["rejections"].as_array().unwrap().len(),
        100.min(rejected.len()),
        "default limit"
    );
    assert_error(
        &http,
        "/v1/rejections?code=NOT_A_RULE",
        400,
        "not a rule code",
    );
    assert_error(&http, "/v1/rejections?limit=0", 400, "limit");
    assert_error(&http, "/v1/rejections?limit=many", 400, "limit");
    assert_error(&http, "/v1/rejections?limit=1001", 400, "limit");

    // Supply and coverage.
    let (_, supply) = get_json(&http, "/v1/supply");
    let rows = supply["supply"].as_array().unwrap();
    assert_eq!(rows.len(), 9, "{supply}");
    assert_eq!(
        rows[0],
        json!({"sku": "H20-141GB", "quarter": "2026-Q3", "on_hand": 40000, "ordered": 20000, "available": 60000})
    );
    assert_error(&http, "/v1/supply?sku=X", 400, "unknown parameter");
    // `supply load` publishes to the topic; its entry replaces the file's.
    let plan = p.dir.join("supply.csv");
    std::fs::write(
        &plan,
        "sku,quarter,on_hand,ordered\nH20-141GB,2026-Q3,1,2\n",
    )
    .unwrap();
    let mut args = p.names.command(&["supply", "load"], &p.broker.brokers);
    args.extend([
        "--signing-key".into(),
        test_keys().operator.display().to_string(),
    ]);
    args.push(plan.display().to_string());
    let out = run(&args);
    assert!(
        out.status.success(),
        "supply load: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(Duration::from_secs(15), "the loaded supply entry", || {
        get_json(&http, "/v1/supply").1["supply"][0]["available"] == 3
    });
    assert_eq!(
        get_json(&http, "/v1/supply").1["supply"]
            .as_array()
            .unwrap()
            .len(),
        9
    );
    let (_, cov) = get_json(&http, "/v1/coverage?sku=H20-96GB");
    for q in cov["by_quarter"].as_array().unwrap() {
        let quarter = q["quarter"].as_str().unwrap();
        let total: i64 = want_demand
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["sku"] == "H20-96GB" && r["quarter"] == quarter)
            .map(|r| r["total_units"].as_i64().unwrap())
            .sum();
        assert_eq!(q["total_units"].as_i64().unwrap(), total, "{q}");
        if quarter == "2026-Q3" {
            assert_eq!(
                q["supply_units"], 950_000,
                "650,000 on hand + 300,000 ordered"
            );
            let ratio = q["coverage"].as_f64().unwrap();
            assert!((ratio - 950_000.0 / total as f64).abs() < 1e-9, "{q}");
        }
    }
    assert_error(&http, "/v1/coverage?quarter=Q3", 400, "YYYY-Qn");

    // The description, the dashboard, unknown paths.
    let (code, openapi) = get_json(&http, "/openapi.json");
    assert_eq!(code, 200);
    for path in [
        "/v1/demand",
        "/v1/demand/stream",
        "/v1/documents/{document_id}",
        "/v1/rejections",
        "/v1/supply",
        "/v1/coverage",
    ] {
        assert!(
            openapi["paths"][path]["get"].is_object(),
            "{path} is not described"
        );
    }
    let (status, page) = http_get(&http, "/");
    assert!(
        status.contains("200") && page.contains("/dashboard.js"),
        "{status}"
    );
    let (status, script) = http_get(&http, "/dashboard.js");
    assert!(
        status.contains("200") && script.contains("/v1/demand/stream"),
        "{status}"
    );
    assert_error(&http, "/v1/nothing-here", 404, "openapi");

    // The live stream: a snapshot first, then one event per change.
    assert_error(
        &http,
        "/v1/demand/stream?sku=H20-96GB",
        400,
        "customer only",
    );
    let mut events = Events::open(&http, "/v1/demand/stream?customer=TENCENT");
    let (name, first, _) = events.next();
    assert_eq!(name, "snapshot");
    assert_eq!(
        first["rows"],
        get_json(&http, "/v1/demand?customer=TENCENT").1["rows"]
    );
    let mut delays = Vec::new();
    // Each document also changes its customer's demand by licence status,
    // announced after its demand.
    let mut licence_events = 0;
    for k in 0..5 {
        let doc = Pipeline::sample_document(&format!("TEN-LIVE-{k}"));
        let file = p.dir.join(format!("live-{k}.json"));
        std::fs::write(&file, doc.to_string()).unwrap();
        p.submit(&file);
        let (name, change, received) = loop {
            let event = events.next();
            if event.0 != "licences" {
                break event;
            }
            assert_eq!(event.1["customer_id"], "TENCENT", "{}", event.1);
            licence_events += 1;
        };
        assert_eq!(name, "demand", "{change}");
        assert_eq!(change["customer_id"], "TENCENT");
        let applied = millis(&change["applied_at"]);
        let received = received
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        delays.push(received - applied);
        assert_eq!(
            change["rows"],
            get_json(&http, "/v1/demand?customer=TENCENT").1["rows"]
        );
        let (_, doc) = get_json(&http, &format!("/v1/documents/TEN-LIVE-{k}"));
        assert_eq!(doc["applied_revision"], 1, "{doc}");
    }
    assert!(
        licence_events >= 4,
        "a licences event after each document's demand: {licence_events}"
    );
    delays.sort_unstable();
    eprintln!(
        "live stream: change published by the aggregator -> event read by the client: {:?} ms (max {} ms)",
        delays,
        delays.last().unwrap()
    );

    // SIGTERM with a client still following the stream: the stream ends
    // and the planner exits cleanly, without waiting for the client.
    let mut planner = p.planner.take().unwrap();
    stop_with_sigterm(&mut planner, "planner", &p.dir, Duration::from_secs(10));
    drop(events);
}

/// With tokens, through the real server: no data without a token, a
/// planner reads everything, a customer only its own documents and
/// rejections, never another customer's documents, verdicts or demand.
#[test]
fn a_customer_token_reads_only_that_customers_documents_and_verdicts() {
    let http = free_addr();
    let (p, _) = Pipeline::with_planner_api_fed_tokens(
        "planner-tokens",
        &http,
        &["planner", "customer:TENCENT", "customer:BYTEDANCE"],
    );
    let as_who = |token: Option<&str>, path: &str| -> (u16, Value) {
        let (status, body) = forecast_tests::http_get_as(&http, path, token).unwrap();
        let code: u16 = status.split(' ').nth(1).unwrap().parse().unwrap();
        (code, serde_json::from_str(&body).unwrap_or(Value::Null))
    };
    let [planner, tencent, bytedance] =
        [&p.tokens[0], &p.tokens[1], &p.tokens[2]].map(|t| Some(t.as_str()));

    // Anonymous: nothing but the public files.
    for path in [
        "/v1/demand",
        "/v1/rejections",
        "/v1/documents/TEN-000001",
        "/metrics",
    ] {
        assert_eq!(as_who(None, path).0, 401, "{path}");
    }
    assert_eq!(
        forecast_tests::http_get_as(&http, "/openapi.json", None)
            .unwrap()
            .0,
        "HTTP/1.1 200 OK"
    );

    // A ByteDance document the planner sees, under an id no other customer
    // uses (an id two customers use is two documents).
    let (code, rejections) = as_who(planner, "/v1/rejections?customer=BYTEDANCE&limit=100");
    assert_eq!(code, 200);
    let byte_doc = rejections["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["document_id"].as_str())
        .find(|id| {
            let (code, doc) = as_who(planner, &format!("/v1/documents/{id}"));
            code == 200 && doc["customer_id"] == "BYTEDANCE"
        })
        .expect("a rejected document of ByteDance's")
        .to_owned();
    assert_eq!(as_who(planner, "/v1/demand").0, 200);

    // Tencent: its own document, not ByteDance's, no demand.
    let (code, own) = as_who(tencent, "/v1/documents/TEN-000001");
    assert_eq!(code, 200, "{own}");
    assert_eq!(own["customer_id"], "TENCENT");
    let (code, other) = as_who(tencent, &format!("/v1/documents/{byte_doc}"));
    assert_eq!(code, 404, "{other}");
    assert!(!other.to_string().contains("BYTEDANCE"), "{other}");
    let (code, mine) = as_who(tencent, "/v1/rejections?limit=100");
    assert_eq!(code, 200);
    let customers: std::collections::BTreeSet<&str> = mine["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["customer_id"].as_str().unwrap_or("none"))
        .collect();
    assert_eq!(customers.into_iter().collect::<Vec<_>>(), ["TENCENT"]);
    assert_eq!(as_who(tencent, "/v1/rejections?customer=BYTEDANCE").0, 403);
    for path in [
        "/v1/demand",
        "/v1/demand?customer=TENCENT",
        "/v1/coverage",
        "/v1/supply",
        "/metrics",
    ] {
        assert_eq!(as_who(tencent, path).0, 403, "{path}");
    }
    // And ByteDance sees its own, not Tencent's.
    assert_eq!(
        as_who(bytedance, &format!("/v1/documents/{byte_doc}")).0,
        200
    );
    assert_eq!(as_who(bytedance, "/v1/documents/TEN-000001").0, 404);
}

/// A customer's view of its submissions: `submit --wait` with its own
/// token, over TLS (the API started with --tls-cert/--tls-key, the client
/// trusting it with --api-ca), prints each verdict and exits 1 when one is
/// rejected; `status` shows a document's history and says when there is
/// none (what a customer also gets for another customer's document: see
/// `a_customer_token_reads_only_that_customers_documents_and_verdicts`).
#[test]
fn a_customer_waits_for_its_verdicts_over_tls_and_sees_only_its_own() {
    let http = free_addr();
    let tls_dir = std::env::temp_dir().join(format!("forecast-planner-tls-{}", std::process::id()));
    std::fs::create_dir_all(&tls_dir).unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let (cert_file, key_file) = (tls_dir.join("cert.pem"), tls_dir.join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.key_pair.serialize_pem()).unwrap();
    let p = Pipeline::with_planner_api_args(
        "planner-wait",
        &http,
        &["planner", "customer:TENCENT"],
        &[
            "--tls-cert".into(),
            cert_file.display().to_string(),
            "--tls-key".into(),
            key_file.display().to_string(),
        ],
    );
    let api = format!("https://localhost:{}", http.rsplit(':').next().unwrap());

    let good = Pipeline::sample_document("TEN-WAIT-OK");
    let mut bad = Pipeline::sample_document("TEN-WAIT-BAD");
    bad["lines"][0]["sku"] = "A100".into();
    let file = p.dir.join("wait.jsonl");
    std::fs::write(&file, format!("{good}\n{bad}\n")).unwrap();
    let mut args = p.names.command(&["submit"], &p.broker.brokers);
    args.extend(
        [
            "--wait",
            "--wait-timeout",
            "90",
            "--api",
            &api,
            "--api-ca",
            cert_file.to_str().unwrap(),
            file.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let out = std::process::Command::new(forecastctl())
        .args(&args)
        .current_dir(repo())
        .env("FORECAST_API_TOKEN", &p.tokens[1])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{stderr}\n{}",
        p.logs()
    );
    assert!(
        stdout.contains("TEN-WAIT-OK rev 1 ACCEPTED (SEQUENCE)"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("TEN-WAIT-BAD rev 1 REJECTED (VALIDATE) SKU_UNKNOWN"),
        "{stdout}"
    );
    assert!(!stderr.contains(&p.tokens[1]), "the token leaked: {stderr}");

    // status: its own document's history; another customer's is unknown.
    let status_as = |id: &str, token: &str| {
        std::process::Command::new(forecastctl())
            .args([
                "status",
                "--api",
                &api,
                "--api-ca",
                cert_file.to_str().unwrap(),
                id,
            ])
            .env("FORECAST_API_TOKEN", token)
            .output()
            .unwrap()
    };
    let status = |id: &str| status_as(id, &p.tokens[1]);
    let own = status("TEN-WAIT-OK");
    assert_eq!(
        own.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
    assert!(String::from_utf8_lossy(&own.stdout).contains("applied revision 1"));
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = forecast_tests::http_get_as(&http, "/healthz", None);
    assert!(
        plain
            .as_ref()
            .is_none_or(|(status, _)| !status.contains("200")),
        "{plain:?}"
    );
    let other = status("BYT-000001");
    assert_eq!(other.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&other.stdout).contains("no verdict"),
        "{}",
        String::from_utf8_lossy(&other.stdout)
    );
    // A wrong token is refused, saying so.
    let refused = status_as("TEN-WAIT-OK", "fct_wrong");
    assert_ne!(refused.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("refused the request (401)"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let _ = std::fs::remove_dir_all(&tls_dir);
}
