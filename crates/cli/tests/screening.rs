//! Re-screening: a restricted-party list published after the stream holds
//! the live documents whose end users it newly names, and the list before
//! it releases them again; offline (`forecastctl replay --rescreen`), and
//! live (`forecastctl screening load` on a running pipeline), with the same
//! answer.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use forecast_model::Stage;
use forecast_tests::processes::pipeline::*;
use forecast_tests::processes::*;
use forecast_tests::wait_until;
use serde_json::{Value, json};

fn forecastctl_offline(args: &[&str]) -> Output {
    forecast_tests::processes::forecastctl_clean(args)
}

fn replay(rescreen: &[&str]) -> Value {
    let mut args = EXAMPLES_REPLAY.to_vec();
    for list in rescreen {
        args.extend(["--rescreen", list]);
    }
    args.push("examples/stream.jsonl");
    let out = forecastctl_offline(&args);
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
    let out = forecastctl_offline(&[
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

/// The re-screen verdicts as `replay --format json` writes them, sorted.
fn sorted(verdicts: &Value) -> Vec<Value> {
    let mut v = verdicts.as_array().unwrap().clone();
    v.sort_by_key(|v| v.to_string());
    v
}

/// The live pipeline: the conformance sample is judged under its list; an
/// unsigned list is refused; a list naming Volcano Engine is published
/// with `screening load`, signed by the compliance key: the
/// planner's exposure, the RESCREEN verdicts on the audit topic and what a
/// customer reads of its document equal `replay --rescreen`; a new
/// submission naming the listed end user is rejected against the new
/// version; the old list published again releases every document held.
#[test]
fn a_list_published_live_holds_and_releases_documents_as_replay_does() {
    let http = free_addr();
    let (p, _) = Pipeline::with_planner_api_fed_tokens(
        "screening",
        &http,
        &["planner", "customer:BYTEDANCE", "customer:TENCENT"],
    );
    let stream = conformance().join("stream.jsonl");
    let old = conformance().join("restricted.csv");
    let update = p.dir.join("update.csv");
    let mut text = std::fs::read_to_string(&old).unwrap();
    text.push_str("idv,Entity List (EL),,Entity,,\"Beijing Volcano Engine Technology Co., Ltd.\",,,,,,,,,,,,,,,,,,,,,,,\n");
    std::fs::write(&update, text).unwrap();
    let replayed = |lists: &[&Path]| {
        let mut extra = Vec::new();
        for l in lists {
            extra.extend(["--rescreen", l.to_str().unwrap()]);
        }
        replay_with(&stream, &extra)
    };
    let exposure = || -> Value {
        let e: Value =
            serde_json::from_str(&p.api_get(&http, "/v1/exposure").1).unwrap_or_default();
        e["by_status"].clone()
    };
    let rescreens = |outcome: &str| -> Vec<Value> {
        let mut v: Vec<Value> = p
            .verdicts()
            .into_iter()
            .filter(|(v, _, _)| v.stage == Stage::Rescreen && v.outcome.as_str() == outcome)
            .map(|(v, _, _)| {
                json!({
                    "customer_id": v.customer_id,
                    "document_id": v.document_id,
                    "revision": v.revision,
                    "verdict": v.outcome.as_str(),
                    "stage": v.stage.as_str(),
                    "codes": v.codes.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                })
            })
            .collect();
        v.sort_by_key(|v| v.to_string());
        v
    };
    let baseline = replayed(&[&old]);

    // A list no compliance key signed holds nothing: both services refuse it.
    p.load_as(&["screening", "load"], &["--unsigned"], &update);
    wait_until(
        Duration::from_secs(60),
        "the validator and the aggregator to refuse the unsigned list",
        || p.logs().matches("restricted-party list refused").count() >= 2,
    );
    assert_eq!(exposure(), baseline["licences"]["by_status"]);
    assert!(rescreens("REJECTED").is_empty());

    p.load_screening(&update);
    let held = replayed(&[&update]);
    let want_held = sorted(&held["rescreen"][0]["verdicts"]);
    assert!(
        want_held.len() > 10,
        "the update holds documents: {want_held:?}"
    );
    assert_ne!(
        held["licences"]["by_status"],
        baseline["licences"]["by_status"]
    );
    wait_until(
        Duration::from_secs(120),
        "the exposure replay gives with the update",
        || exposure() == held["licences"]["by_status"],
    );
    wait_until(
        Duration::from_secs(60),
        "the RESCREEN verdicts replay gives",
        || rescreens("REJECTED") == want_held,
    );
    let version = held["rescreen"][0]["version"].as_str().unwrap();
    assert!(
        p.verdicts()
            .iter()
            .filter(|(v, _, _)| v.stage == Stage::Rescreen)
            .all(|(v, _, _)| v.screening_version.as_deref() == Some(version))
    );
    // Its customer sees it held; another customer does not see it at all.
    let id = want_held[0]["document_id"].as_str().unwrap();
    let path = format!("/v1/documents/{id}");
    let (status, body) = forecast_tests::http_get_as(&http, &path, Some(&p.tokens[1])).unwrap();
    assert!(status.contains("200"), "{status} {body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["screening_hold"], true, "{doc}");
    let last = doc["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (&last["stage"], &last["codes"], &last["screening_version"]),
        (
            &json!("RESCREEN"),
            &json!(["END_USER_RESTRICTED"]),
            &json!(version)
        )
    );
    let (status, _) = forecast_tests::http_get_as(&http, &path, Some(&p.tokens[2])).unwrap();
    assert!(status.contains("404"), "{status}");

    // New submissions are screened against the new version.
    let mut doc = Pipeline::sample_document("SCREENED-NEW-1");
    doc["end_use"]["end_users"][0]["name"] = "BEIJING VOLCANO ENGINE TECHNOLOGY LIMITED".into();
    let file = p.dir.join("new.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    p.submit(&file);
    let mut seen = Vec::new();
    wait_until(
        Duration::from_secs(60),
        "the validator's verdict on the new submission",
        || {
            seen = p
                .verdicts()
                .into_iter()
                .filter(|(v, _, _)| v.document_id.as_deref() == Some("SCREENED-NEW-1"))
                .map(|(v, _, _)| (v.stage, v.codes, v.screening_version))
                .collect();
            !seen.is_empty()
        },
    );
    assert_eq!(
        seen[0],
        (
            Stage::Validate,
            vec![forecast_model::RuleCode::EndUserRestricted],
            Some(version.to_owned())
        ),
        "{seen:?}\n{}",
        p.logs()
    );

    // The old list again releases every document held.
    p.load_screening(&old);
    let released = replayed(&[&update, &old]);
    assert_eq!(
        released["licences"]["by_status"],
        baseline["licences"]["by_status"]
    );
    wait_until(
        Duration::from_secs(120),
        "the exposure of the old list again",
        || exposure() == baseline["licences"]["by_status"],
    );
    wait_until(
        Duration::from_secs(60),
        "a RESCREEN release of every document held",
        || rescreens("ACCEPTED") == sorted(&released["rescreen"][1]["verdicts"]),
    );
    let (_, body) = forecast_tests::http_get_as(&http, &path, Some(&p.tokens[1])).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["screening_hold"],
        false
    );
}
