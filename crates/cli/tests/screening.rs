//! `forecastctl replay --rescreen`: a restricted-party list published after
//! the stream holds the live documents whose end users it newly names, and
//! the list before it releases them again.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Output;

use serde_json::{Value, json};

fn forecastctl(args: &[&str]) -> Output {
    forecast_tests::processes::forecastctl_clean(args)
}

fn replay(rescreen: &[&str]) -> Value {
    let mut args = vec![
        "replay",
        "--format",
        "json",
        "--policy",
        "examples/policy.toml",
        "--restricted-parties",
        "examples/restricted-parties.csv",
    ];
    for list in rescreen {
        args.extend(["--rescreen", list]);
    }
    args.push("examples/stream.jsonl");
    let out = forecastctl(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (customer, sku, quarter, status) -> total units.
fn by_status(v: &Value) -> BTreeMap<(String, String, String, String), i64> {
    v["licences"]["by_status"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_owned();
            (
                (
                    s("customer_id"),
                    s("sku"),
                    s("quarter"),
                    s("licence_status"),
                ),
                r["total_units"].as_i64().unwrap(),
            )
        })
        .collect()
}

const UPDATE: &str = "examples/restricted-parties-update.csv";
const OLD: &str = "examples/restricted-parties.csv";

#[test]
fn a_list_naming_volcano_engine_holds_bytedances_document_and_the_old_list_releases_it() {
    // The old list again changes nothing: the baseline breakdown.
    let baseline = replay(&[OLD]);
    assert_eq!(
        baseline["rescreen"],
        json!([{
            "version": baseline["rescreen"][0]["version"],
            "sha256": baseline["rescreen"][0]["sha256"],
            "verdicts": [],
        }])
    );
    let held = replay(&[UPDATE]);
    assert_eq!(
        held["verdicts"], baseline["verdicts"],
        "the stream is judged under the old list"
    );
    assert_eq!(
        held["demand"], baseline["demand"],
        "what customers asked for is unchanged"
    );
    let rescreen = &held["rescreen"][0];
    assert!(rescreen["version"].as_str().unwrap().starts_with("csl-"));
    assert_eq!(rescreen["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(
        rescreen["verdicts"],
        json!([{
            "customer_id": "BYTEDANCE",
            "document_id": "BYT-2026-0001",
            "revision": 1,
            "verdict": "REJECTED",
            "stage": "RESCREEN",
            "codes": ["END_USER_RESTRICTED"],
        }])
    );
    let (before, after) = (by_status(&baseline), by_status(&held));
    let on_hold: i64 = after
        .iter()
        .filter(|(k, _)| k.3 == "SCREENING_HOLD")
        .map(|(k, units)| {
            assert_eq!(k.0, "BYTEDANCE", "{k:?}");
            units
        })
        .sum();
    assert_eq!(on_hold, 117_000);
    // No other customer's units move.
    let others = |m: &BTreeMap<(String, String, String, String), i64>| {
        m.iter()
            .filter(|(k, _)| k.0 != "BYTEDANCE")
            .map(|(k, v)| (k.clone(), *v))
            .collect::<Vec<_>>()
    };
    assert_eq!(others(&before), others(&after));
    // BYT-2026-0001's units left APPROVED, the status it claims.
    let approved = |m: &BTreeMap<_, i64>| -> i64 {
        m.iter()
            .filter(|(k, _): &(&(String, String, String, String), _)| {
                k.0 == "BYTEDANCE" && k.3 == "APPROVED"
            })
            .map(|(_, v)| *v)
            .sum()
    };
    assert_eq!(approved(&before) - approved(&after), 117_000);

    let released = replay(&[UPDATE, OLD]);
    assert_eq!(
        released["rescreen"][1]["verdicts"],
        json!([{
            "customer_id": "BYTEDANCE",
            "document_id": "BYT-2026-0001",
            "revision": 1,
            "verdict": "ACCEPTED",
            "stage": "RESCREEN",
            "codes": [],
        }])
    );
    assert_eq!(by_status(&released), before);
}

#[test]
fn the_csl_json_form_gives_the_same_answer_and_an_unreadable_list_is_refused() {
    let dir = std::env::temp_dir().join(format!("forecast-rescreen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json_list = dir.join("update.json");
    std::fs::write(
        &json_list,
        r#"{"results": [{"id": "x", "name": "Beijing Volcano Engine Technology Co., Ltd.", "alt_names": ["Volcano Engine"]}]}"#,
    )
    .unwrap();
    let from_json = replay(&[json_list.to_str().unwrap()]);
    let from_csv = replay(&[UPDATE]);
    assert_eq!(
        from_json["rescreen"][0]["verdicts"],
        from_csv["rescreen"][0]["verdicts"]
    );
    assert_eq!(by_status(&from_json), by_status(&from_csv));

    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"data\": []}").unwrap();
    let out = forecastctl(&[
        "replay",
        "--rescreen",
        bad.to_str().unwrap(),
        "examples/stream.jsonl",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.json") && stderr.contains("results"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
