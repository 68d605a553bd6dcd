//! `forecastctl allocate`: the worked example of docs/planner.md,
//! "Allocation", through the command line, and what it refuses.

#![allow(clippy::unwrap_used)]

use std::process::Output;

use serde_json::{Value, json};

fn forecastctl(args: &[&str]) -> Output {
    forecast_tests::processes::forecastctl_clean(args)
}

/// `allocate --format json` of the example with `licences` and `policy`:
/// (customer, allocated) in customer order, and the whole output.
fn allocate(licences: &str, policy: Option<&str>) -> (Vec<(String, i64)>, Value) {
    let mut args = vec![
        "allocate",
        "--format",
        "json",
        "--supply",
        "examples/allocation/supply.csv",
        "--licences",
        licences,
    ];
    if let Some(p) = policy {
        args.extend(["--allocation-policy", p]);
    }
    args.push("examples/allocation/stream.jsonl");
    let out = forecastctl(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let got = v["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["customer_id"].as_str().unwrap().to_owned(),
                a["allocated_units"].as_i64().unwrap(),
            )
        })
        .collect();
    (got, v)
}

fn pairs(v: &[(&str, i64)]) -> Vec<(String, i64)> {
    v.iter().map(|(c, u)| (c.to_string(), *u)).collect()
}

const APPROVED: &str = "examples/allocation/licences.jsonl";

#[test]
fn the_worked_example_holds_through_the_command_line() {
    let (got, v) = allocate(APPROVED, Some("examples/allocation/pro-rata.toml"));
    assert_eq!(
        got,
        pairs(&[("ALIBABA", 2_000), ("BYTEDANCE", 2_667), ("TENCENT", 5_333)])
    );
    assert_eq!(
        v["allocations"][2],
        json!({
            "customer_id": "TENCENT",
            "sku": "H20-96GB",
            "quarter": "2026-Q3",
            "requested_units": 8000,
            "allocated_units": 5333,
            "shortfalls": [{"reason": "SUPPLY_SHORT", "units": 2667}],
        })
    );
    // pro_rata is the default.
    assert_eq!(allocate(APPROVED, None).0, got);
    let (got, _) = allocate(APPROVED, Some("examples/allocation/priority.toml"));
    assert_eq!(
        got,
        pairs(&[("ALIBABA", 0), ("BYTEDANCE", 2_000), ("TENCENT", 8_000)])
    );
    let (got, v) = allocate("examples/allocation/licences-alibaba-denied.jsonl", None);
    assert_eq!(
        got,
        pairs(&[("ALIBABA", 0), ("BYTEDANCE", 3_333), ("TENCENT", 6_667)])
    );
    assert_eq!(
        v["allocations"][0]["shortfalls"],
        json!([{"reason": "LICENCE_DENIED", "units": 3000}])
    );
}

#[test]
fn a_bad_allocation_policy_is_refused_naming_the_file_and_the_problem() {
    let dir = std::env::temp_dir().join(format!("forecast-allocate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text, says) in [
        ("unknown.toml", "method = \"lottery\"\n", "lottery"),
        (
            "no-order.toml",
            "method = \"priority\"\n",
            "needs `priority`",
        ),
        (
            "bounds.toml",
            "method = \"pro_rata\"\n[customers.TENCENT]\nmin = 5\nmax = 1\n",
            "above max",
        ),
        (
            "typo.toml",
            "method = \"pro_rata\"\nfirm_frist = true\n",
            "firm_frist",
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let out = forecastctl(&[
            "allocate",
            "--supply",
            "examples/allocation/supply.csv",
            "--licences",
            APPROVED,
            "--allocation-policy",
            path.to_str().unwrap(),
            "examples/allocation/stream.jsonl",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(name) && stderr.contains(says),
            "{name}: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
