//! The conformance sample through the wire path the services use: every
//! decodable submission is Avro-encoded with the Confluent framing, judged
//! from those bytes, and sequenced (`forecast_pipeline::Replay`, the
//! composition `forecastctl replay` runs on JSON). Verdicts and demand must equal
//! `expected.json`, as they do for `forecastctl replay` from JSON.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use forecast_model::{Timestamp, wire};
use forecast_pipeline::Replay;
use forecast_validator::Policy;
use serde_json::{Value, json};

fn conformance() -> PathBuf {
    std::env::var_os("FORECAST_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/conformance"
            ))
        })
}

#[test]
fn avro_path_gives_the_expected_verdicts_and_demand() {
    let dir = conformance();
    let stream = std::fs::read_to_string(dir.join("stream.jsonl"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let policy = Policy::load(None, Some(&dir.join("restricted.csv")), None).unwrap();
    let mut replay = Replay::deciding_at(policy, Timestamp::from_millis(0));
    let mut verdicts = Vec::new();
    let mut framed = 0;
    for line in stream
        .trim_start_matches('\u{feff}')
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        // The producer refuses what does not decode; those keep the JSON verdict.
        let (verdict, _) = match forecast_model::parse_submission(line.as_bytes()) {
            Ok(doc) => {
                framed += 1;
                replay.submit_framed(&wire::encode_document(&doc))
            }
            Err(_) => replay.submit_json(line.as_bytes()),
        };
        verdicts.push(json!({
            "document_id": verdict.document_id,
            "revision": verdict.revision,
            "verdict": verdict.outcome.as_str(),
            "codes": verdict.codes.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            "warnings": verdict.warnings.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        }));
    }
    assert!(framed > 500, "only {framed} submissions went through Avro");
    let expected_verdicts = expected["verdicts"].as_array().unwrap();
    assert_eq!(verdicts.len(), expected_verdicts.len());
    for (i, (got, want)) in verdicts.iter().zip(expected_verdicts).enumerate() {
        assert_eq!(got, want, "verdict {i}");
    }
    let demand: Vec<Value> = replay
        .state()
        .rows()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect();
    assert_eq!(Value::Array(demand), expected["demand"]);
}
