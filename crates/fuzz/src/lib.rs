//! Fuzz targets: every decoder of outside input, as a function of the bytes
//! it is given. A target panics only on a bug: a decoder that panics, or a
//! decoded value that does not survive its own round trip.
//!
//! AFL++ runs them through `fuzz/afl` (`scripts/fuzz TARGET MINUTES`); the
//! tests run each over its committed seeds (`fuzz/seeds/TARGET/`) and
//! bounded mutations of them, so CI exercises every target on every run.

use std::sync::{Arc, OnceLock};

use forecast_model::signing::{self, Signer, SigningKey};
use forecast_model::{ForecastDocument, Registry, Timestamp, wire};
use forecast_validator::{KeyEntry, KeyRegistry, Policy, PolicySettings, Validator};

/// A fuzz target: panics only on a bug.
pub type Target = fn(&[u8]);

/// The targets, by name (the folder of their seeds).
pub const TARGETS: &[(&str, Target)] = &[
    ("framed_document", framed_document),
    ("framed_records", framed_records),
    ("json_document", json_document),
    ("screening_list", screening_list),
    ("policy_toml", policy_toml),
    ("supply", supply),
    ("key_registry", key_registry),
    ("tokens_file", tokens_file),
    ("licence_file", licence_file),
    ("api_request", api_request),
];

/// The target named `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// The seed key of the fuzzing registry (RFC 8032's first test key), so
/// that documents signed with it reach the signature's checks.
pub fn seed_signer() -> Signer {
    let secret: [u8; 32] = [
        0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c,
        0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae,
        0x7f, 0x60,
    ];
    Signer::new(SigningKey::from_bytes(&secret), None)
}

/// A validator that requires signatures, with the seed key registered for
/// TENCENT.
fn validator() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| {
        let entry =
            KeyEntry::for_signer(&seed_signer(), "TENCENT", Timestamp::from_millis(0), None);
        let keys = KeyRegistry::from_entries(vec![entry]).expect("one key");
        let policy = Policy::with_keys(
            PolicySettings::default(),
            forecast_validator::RestrictedParties::empty(),
            Some(keys),
        )
        .expect("the default policy with a key");
        Validator::new(policy)
    })
}

/// `doc` through the current Avro schema and back: the same document.
/// Returns the framed record.
fn assert_wire_round_trip(doc: &ForecastDocument) -> Vec<u8> {
    let framed = wire::encode_document(doc);
    let again = wire::decode_document(&framed, Registry::embedded())
        .unwrap_or_else(|e| panic!("a document encoded here does not decode: {e}"));
    assert_eq!(&again, doc, "Avro round trip");
    framed
}

/// A framed Avro document of any schema id (resolution of old versions
/// included), judged by the validator as the service judges a record.
pub fn framed_document(data: &[u8]) {
    let registry = Registry::embedded();
    if let Ok(doc) = wire::decode_document(data, registry) {
        assert_wire_round_trip(&doc);
        // Whatever a decoded document holds, its signed form can be written.
        signing::canonical_content(&doc);
    }
    let v = validator();
    let judged = v.judge_framed(data, registry);
    let _ = v.verdict(&judged, Timestamp::from_millis(0), None);
}

/// The other framed records the services read: verdicts, demand and
/// licence snapshots, licence decisions (their topics are written by the services, but a consumer
/// must not fall over whatever lands there).
pub fn framed_records(data: &[u8]) {
    let registry = Registry::embedded();
    if let Ok(verdict) = wire::decode_verdict(data, registry) {
        let again = wire::decode_verdict(&wire::encode_verdict(&verdict), registry)
            .expect("a verdict encoded here decodes");
        assert_eq!(again, verdict, "verdict round trip");
    }
    if let Ok(snapshot) = wire::decode_snapshot(data, registry) {
        let again = wire::decode_snapshot(&wire::encode_snapshot(&snapshot), registry)
            .expect("a snapshot encoded here decodes");
        assert_eq!(again, snapshot, "snapshot round trip");
    }
    if let Ok(decision) = wire::decode_decision(data, registry) {
        let again = wire::decode_decision(&wire::encode_decision(&decision), registry)
            .expect("a decision encoded here decodes");
        assert_eq!(again, decision, "licence decision round trip");
    }
    if let Ok(snapshot) = wire::decode_licence_snapshot(data, registry) {
        let again =
            wire::decode_licence_snapshot(&wire::encode_licence_snapshot(&snapshot), registry)
                .expect("a licence snapshot encoded here decodes");
        assert_eq!(again, snapshot, "licence snapshot round trip");
    }
}

/// A licence file (JSON Lines, `licences load` and `replay --licences`):
/// its decisions survive JSON and Avro, and taking them into a demand
/// state with the examples' documents keeps the breakdown equal to the
/// demand.
pub fn licence_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(decisions) = forecast_model::licence::read_decisions(text, "fuzz") else {
        return;
    };
    let registry = Registry::embedded();
    let mut state = forecast_aggregator::DemandState::new();
    for doc in example_documents() {
        state.apply(doc);
    }
    for d in decisions {
        let json = serde_json::to_string(&d).expect("a decision serializes");
        let again: forecast_model::LicenceDecision =
            serde_json::from_str(&json).expect("a decision's JSON parses back");
        assert_eq!(again, d, "JSON round trip");
        let framed = wire::decode_decision(&wire::encode_decision(&d), registry)
            .expect("a decision encoded here decodes");
        assert_eq!(framed, d, "Avro round trip");
        state.take_decision(d);
    }
    let mut by_cell: std::collections::BTreeMap<(String, String, String), i64> = Default::default();
    for r in state.licence_rows() {
        *by_cell
            .entry((r.customer_id, r.sku, r.quarter.to_string()))
            .or_default() += r.total_units;
    }
    by_cell.retain(|_, units| *units != 0);
    let rows: std::collections::BTreeMap<_, _> = state
        .rows()
        .map(|r| ((r.customer_id, r.sku, r.quarter.to_string()), r.total_units))
        .collect();
    assert_eq!(by_cell, rows, "the breakdown adds up to the demand");
}

/// The examples' accepted documents (parsed once).
fn example_documents() -> &'static [ForecastDocument] {
    static DOCS: OnceLock<Vec<ForecastDocument>> = OnceLock::new();
    DOCS.get_or_init(|| {
        include_str!("../../../examples/stream.jsonl")
            .lines()
            .filter_map(|l| forecast_model::parse_submission(l.as_bytes()).ok())
            .collect()
    })
}

/// A JSON submission, as `submit`, `check` and `replay` read it (the
/// signature envelope included): a document that parses survives JSON and
/// Avro, and a signed one is checked as the validator checks it.
pub fn json_document(data: &[u8]) {
    let Ok(doc) = forecast_model::parse_submission(data) else {
        return;
    };
    let json = doc.to_json();
    let again = forecast_model::parse_submission(json.as_bytes())
        .unwrap_or_else(|e| panic!("to_json does not parse back: {e:?}\n{json}"));
    assert_eq!(again, doc, "JSON round trip");
    assert_eq!(
        signing::canonical_content(&again),
        signing::canonical_content(&doc),
        "canonical content"
    );
    let framed = assert_wire_round_trip(&doc);
    let v = validator();
    let judged = v.judge_framed(&framed, Registry::embedded());
    let _ = v.verdict(&judged, Timestamp::from_millis(0), None);
}

/// A restricted-party list file (the CSL's CSV export or its JSON form):
/// every name listed is matched, the version survives its Avro round trip,
/// and the delta of a list with itself is empty.
pub fn screening_list(data: &[u8]) {
    use forecast_model::screening::ScreeningList;
    let Ok(list) = ScreeningList::from_bytes(data, "fuzz", None, Timestamp::from_millis(0)) else {
        return;
    };
    let parties = list.parties();
    for name in parties.normal_forms() {
        assert!(
            parties.matches(name).is_some(),
            "{name:?} is listed but not matched"
        );
    }
    assert!(
        parties.delta(&parties).is_empty(),
        "a list differs from itself"
    );
    let framed = wire::encode_screening_list(&list);
    let back = wire::decode_screening_list(&framed, Registry::embedded()).expect("decodes");
    assert_eq!(back, list, "the Avro round trip");
}

/// The policy file (TOML), with the policy built from it.
pub fn policy_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(settings) = toml::from_str::<PolicySettings>(text) {
        let _ = Policy::with_keys(
            settings,
            forecast_validator::RestrictedParties::empty(),
            None,
        );
    }
}

/// The supply plan: a CSV file, or a `supply.plan` record (the first line
/// of the input is its key, the rest its value).
pub fn supply(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = forecast_planner::supply::parse_csv("fuzz", text);
    }
    let (key, value) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    if let Ok(key) = std::str::from_utf8(key) {
        let _ = forecast_planner::supply::parse_record(key, value);
    }
}

/// The key registry (JSON Lines).
pub fn key_registry(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = KeyRegistry::from_text(text, "fuzz");
    }
}

/// The planner's tokens file (JSON Lines).
pub fn tokens_file(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = forecast_planner::auth::Tokens::from_text(text, "fuzz");
    }
}

/// A GET of the planner API: the input is the path and query. No request
/// is answered with a server error, and every JSON answer is JSON.
pub fn api_request(data: &[u8]) {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use tower::ServiceExt as _;

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(request) =
        Request::get(format!("/{}", text.trim_start_matches('/'))).body(Body::empty())
    else {
        return;
    };
    let (runtime, router) = api();
    runtime.block_on(async {
        let response = router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        assert!(
            !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
            "{status} for {text:?}"
        );
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        // A live stream never ends: its first event is enough.
        if content_type.starts_with("text/event-stream") {
            return;
        }
        let body = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .expect("a body under 16 MiB");
        if content_type.starts_with("application/json") {
            serde_json::from_slice::<serde_json::Value>(&body)
                .unwrap_or_else(|e| panic!("{status} for {text:?}: not JSON ({e})"));
        }
    });
}

/// One runtime and one planner API (open access, the planner of
/// `forecast_planner::testing::sample_planner`) for every request of a
/// fuzzing run.
fn api() -> &'static (tokio::runtime::Runtime, axum::Router) {
    static API: OnceLock<(tokio::runtime::Runtime, axum::Router)> = OnceLock::new();
    API.get_or_init(|| {
        let planner = forecast_planner::testing::sample_planner();
        let router = forecast_planner::auth::protect(
            forecast_planner::api::routes(Arc::new(planner)),
            forecast_planner::auth::Access::open(),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        (runtime, router)
    })
}
