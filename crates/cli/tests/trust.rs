//! Trust between stages on a real broker: records no validator attested
//! (a foreign record, an unsigned document, a validated record moved to
//! another key) never reach demand; forged verdict headers never reach a
//! verdict; licence decisions signed by no compliance key move nothing; a
//! demand snapshot no aggregator attested is not shown by `forecastctl
//! demand` (docs/security.md, "Trust between stages").

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use forecast_tests::processes::pipeline::*;
use forecast_tests::processes::*;
use serde_json::Value;

#[test]
fn a_foreign_record_on_the_validated_topic_is_dead_lettered_by_the_aggregator() {
    let p = Pipeline::start_with("foreign", &[], &[]);
    // Only validators write this topic; anything else that does is kept
    // whole on the dead-letter topic, not dropped with a log line.
    let value: &[u8] = b"\x00\x00\x00\x00\x01not a document";
    produce_raw(
        &p.broker.brokers,
        &p.names.topic("forecasts.validated"),
        &[(Some(b"FOREIGN-1".as_slice()), Some(value))],
    );
    let rejected = p.names.topic("forecasts.rejected");
    let mut found = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while found.is_none() && Instant::now() < deadline {
        found = read_all(&p.broker.brokers, &rejected, Duration::from_secs(1))
            .into_iter()
            .find(|r| r.key.as_deref() == Some(b"FOREIGN-1".as_slice()));
    }
    let r = found.unwrap_or_else(|| panic!("no dead letter for the foreign record\n{}", p.logs()));
    assert_eq!(r.value.as_deref(), Some(value));
    assert_eq!(r.header("forecast.errors.stage"), Some("sequence"));
    // Written by no validator: refused for that before it is read.
    assert_eq!(r.header("forecast.errors.codes"), Some("UNATTESTED"));
    assert_eq!(
        r.header("forecast.errors.topic"),
        Some(p.names.topic("forecasts.validated").as_str())
    );
}

/// A submitter cannot set a verdict field: a submission re-sent with the
/// headers `forecast.policy.version` and `forecast.source` forged gets its
/// verdicts with the validator's policy version and its true source (the
/// validator drops every incoming `forecast.*` header).
#[test]
fn forged_forecast_headers_never_reach_a_verdict() {
    let p = Pipeline::start_with("forged", &[], &[]);
    let doc = Pipeline::sample_document("FORGED-1");
    let file = p.dir.join("doc.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    p.submit(&file);
    let parsed = forecast_model::ForecastDocument::from_json(doc.to_string().as_bytes()).unwrap();
    produce_with_headers(
        &p.broker.brokers,
        &p.names.topic("forecasts.submitted"),
        parsed.key().as_bytes(),
        &forecast_model::wire::encode_document(&parsed),
        &[
            ("forecast.policy.version", "FORGED"),
            ("forecast.source", "forged/0/0"),
            ("forecast.warnings", "DOC_EXPIRES_BEFORE_HORIZON_END"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut verdicts = Vec::new();
    while Instant::now() < deadline {
        verdicts = p.verdicts();
        let sequenced = verdicts
            .iter()
            .filter(|(v, _, _)| v.stage == forecast_model::Stage::Sequence)
            .count();
        if sequenced == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let outcomes: Vec<_> = verdicts
        .iter()
        .filter(|(v, _, _)| v.stage == forecast_model::Stage::Sequence)
        .map(|(v, _, _)| v.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [
            forecast_model::Outcome::Accepted,
            forecast_model::Outcome::Duplicate
        ],
        "{}",
        p.logs()
    );
    let submitted = p.names.topic("forecasts.submitted");
    for (v, _, _) in &verdicts {
        assert_ne!(v.policy_version, "FORGED", "{v:?}");
        assert!(v.policy_version.starts_with("sha256:"), "{v:?}");
        let source = v.source.as_ref().unwrap();
        assert_eq!(source.topic, submitted, "{v:?}");
        assert!(v.warnings.is_empty(), "{v:?}");
    }
}

/// Records written straight to the validated topic, past the validator:
/// an unsigned document (the repro), and a record the validator
/// did attest, copied with its headers under another customer's key. Neither
/// is attested for where it lies, so each is dead-lettered with
/// `UNATTESTED`, audited without naming a customer, and demand does not
/// move; a restarted aggregator (which restores from the topic) agrees.
#[test]
fn records_no_validator_attested_are_dead_lettered_and_never_reach_demand() {
    let mut p = Pipeline::start_with("unattested", &[], &[]);
    let doc = Pipeline::sample_document("REAL-1");
    let file = p.dir.join("doc.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    p.submit(&file);
    let validated = p.names.topic("forecasts.validated");
    let rejected = p.names.topic("forecasts.rejected");
    wait_until(Duration::from_secs(60), "the document's demand", || {
        p.demand().as_array().is_some_and(|r| !r.is_empty())
    });
    let before = p.demand();

    // An unsigned document of another customer, with made-up verdict
    // fields and a made-up attestation.
    let mut forged = Pipeline::sample_document("FORGED-1");
    forged["customer_id"] = "BYTEDANCE".into();
    let parsed =
        forecast_model::ForecastDocument::from_json(forged.to_string().as_bytes()).unwrap();
    produce_with_headers(
        &p.broker.brokers,
        &validated,
        parsed.key().as_bytes(),
        &forecast_model::wire::encode_document(&parsed),
        &[
            ("forecast.policy.version", "FORGED"),
            ("forecast.attestation", "hmac-sha256:0000000000000000 AAAA"),
        ],
    );
    // The validator's own record, copied whole under another key.
    let real = read_all(&p.broker.brokers, &validated, Duration::from_secs(1));
    let real = real
        .iter()
        .find(|r| r.header("forecast.attestation").is_some())
        .unwrap_or_else(|| panic!("the validator attests what it writes: {real:?}"));
    let headers: Vec<(&str, &str)> = real
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                std::str::from_utf8(v.as_deref().unwrap()).unwrap(),
            )
        })
        .collect();
    produce_with_headers(
        &p.broker.brokers,
        &validated,
        b"ALIBABA/REAL-1",
        real.value.as_deref().unwrap(),
        &headers,
    );

    let unattested = |records: &[Record]| {
        records
            .iter()
            .filter(|r| r.header("forecast.errors.codes") == Some("UNATTESTED"))
            .count()
    };
    wait_until(
        Duration::from_secs(60),
        "two UNATTESTED dead letters",
        || {
            unattested(&read_all(
                &p.broker.brokers,
                &rejected,
                Duration::from_millis(500),
            )) == 2
        },
    );
    let letters = read_all(&p.broker.brokers, &rejected, Duration::from_millis(500));
    for letter in letters
        .iter()
        .filter(|r| r.header("forecast.errors.codes") == Some("UNATTESTED"))
    {
        assert_eq!(letter.header("forecast.errors.stage"), Some("sequence"));
        assert_eq!(
            letter.header("forecast.errors.topic"),
            Some(validated.as_str())
        );
        // The dead letter is the aggregator's, attested as such.
        assert!(
            letter.header("forecast.attestation").is_some(),
            "{letter:?}"
        );
    }
    let refused: Vec<_> = p
        .verdicts()
        .into_iter()
        .filter(|(v, _, _)| v.codes == [forecast_model::RuleCode::Unattested])
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    for (v, _, _) in &refused {
        assert_eq!(v.outcome, forecast_model::Outcome::Rejected);
        assert_eq!(
            (v.customer_id.as_deref(), v.document_id.as_deref()),
            (None, None),
            "{v:?}"
        );
        assert_eq!(v.source.as_ref().unwrap().topic, validated);
    }
    assert_eq!(p.demand(), before, "{}", p.logs());

    // A restarted aggregator restores its partitions from the topic
    // before it applies the next record: the same.
    stop_with_sigterm(
        &mut p.aggregator,
        "aggregator",
        &p.dir,
        Duration::from_secs(30),
    );
    p.aggregator = spawn_service(
        "aggregate",
        &p.broker,
        &p.names,
        &[],
        &p.dir.join("aggregator-2.log"),
    );
    let more = p.dir.join("more.json");
    std::fs::write(&more, Pipeline::sample_document("REAL-2").to_string()).unwrap();
    p.submit(&more);
    let replayed = replay(&{
        let both = p.dir.join("both.jsonl");
        std::fs::write(
            &both,
            format!("{doc}\n{}\n", Pipeline::sample_document("REAL-2")),
        )
        .unwrap();
        both
    });
    wait_until(
        Duration::from_secs(120),
        "demand of the two real documents",
        || p.demand() == replayed["demand"],
    );
}

/// Licence decisions not signed by a compliance key (unsigned, or signed by
/// the operator's key) are refused by the aggregator and the planner: the
/// exposure stays what the signed decisions give, though the rogue one
/// would have moved it.
#[test]
fn licence_decisions_signed_by_no_compliance_key_move_nothing() {
    let http = free_addr();
    let p = Pipeline::with_planner_api("rogue", &http);
    let stream = conformance().join("stream.jsonl");
    let signed = p.dir.join("signed.jsonl");
    let rogue = p.dir.join("rogue.jsonl");
    let both = p.dir.join("both.jsonl");
    let signed_text = "{\"application_number\": \"Z-8318200\", \"customer_id\": \"ALIBABA\", \"status\": \"REVOKED\", \"decided_at\": \"2026-12-01T00:00:00Z\"}\n";
    let rogue_text = "{\"application_number\": \"Z-1806916\", \"customer_id\": \"BYTEDANCE\", \"status\": \"DENIED\", \"decided_at\": \"2026-12-05T00:00:00Z\"}\n";
    std::fs::write(&signed, signed_text).unwrap();
    std::fs::write(&rogue, rogue_text).unwrap();
    std::fs::write(&both, format!("{signed_text}{rogue_text}")).unwrap();
    p.load_licences(&signed);
    p.submit(&stream);
    let licences = |decisions: &Path| {
        replay_with(&stream, &["--licences", decisions.to_str().unwrap()])["licences"].clone()
    };
    let want = licences(&signed);
    assert_ne!(
        licences(&both),
        want,
        "the rogue decision would move demand"
    );
    let exposure = || -> Value {
        let e: Value =
            serde_json::from_str(&p.api_get(&http, "/v1/exposure").1).unwrap_or_default();
        serde_json::json!({
            "by_status": e["by_status"],
            "lost_firm_demand": e["lost_firm_demand"],
            "over_approved": e["over_approved"],
        })
    };
    wait_until(
        Duration::from_secs(120),
        "the exposure of the signed decision",
        || exposure() == want,
    );

    let operator = test_keys().operator.display().to_string();
    for signing in [vec!["--unsigned"], vec!["--signing-key", operator.as_str()]] {
        p.load_as(&["licences", "load"], &signing, &rogue);
    }
    wait_until(
        Duration::from_secs(60),
        "both services to refuse both rogue decisions",
        || {
            let logs = p.logs();
            logs.matches("licence decision refused").count() >= 2
                && logs.matches("record not believed").count() >= 2
        },
    );
    assert_eq!(exposure(), want, "{}", p.logs());
}

/// `forecastctl demand` believes only what the aggregator attested, as the
/// planner does: a tombstone anyone wrote to `demand.by-customer` (which
/// would erase a customer's demand) is skipped, with a warning.
#[test]
fn a_demand_snapshot_no_aggregator_attested_is_not_shown() {
    let p = Pipeline::start_with("demand-forged", &[], &[]);
    let file = p.dir.join("doc.json");
    std::fs::write(&file, Pipeline::sample_document("REAL-1").to_string()).unwrap();
    p.submit(&file);
    wait_until(Duration::from_secs(60), "the document's demand", || {
        p.demand().as_array().is_some_and(|r| !r.is_empty())
    });
    let before = p.demand();
    let topic = p.names.topic("demand.by-customer");
    let snapshots = read_all(&p.broker.brokers, &topic, Duration::from_secs(2));
    let key = snapshots[0].key.clone().unwrap();
    produce_raw(&p.broker.brokers, &topic, &[(Some(key.as_slice()), None)]);
    wait_until(Duration::from_secs(30), "the forged tombstone", || {
        read_all(&p.broker.brokers, &topic, Duration::from_secs(1)).len() > snapshots.len()
    });

    let args = p
        .names
        .command(&["demand", "--format", "json"], &p.broker.brokers);
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        shown, before,
        "the forged tombstone changed the demand shown"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 record(s) not believed were skipped")
            && stderr.contains("no attestation"),
        "{stderr}"
    );

    // Believed, the same tombstone erases the customer's demand: what the
    // check above keeps out.
    let believed = p.demand_with(&["--insecure-no-attestation"]);
    assert_ne!(believed, before);
}
