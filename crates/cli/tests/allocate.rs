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

/// The supplier signs each customer's commit; the customer checks it with
/// the supplier's public key: one byte changed, or a key of another role,
/// and it is not valid.
#[test]
fn commits_are_signed_by_the_supplier_and_one_byte_changed_fails_verification() {
    let dir = std::env::temp_dir().join(format!("forecast-commits-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).display().to_string();
    let mut registries = Vec::new();
    for role in ["supplier", "compliance"] {
        let out = forecastctl(&["keys", "generate", "--role", role, "--out", &path(role)]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(path(&format!("{role}.jsonl")), &out.stdout).unwrap();
        registries.push(path(&format!("{role}.jsonl")));
    }
    let commits = path("commits");
    let out = forecastctl(&[
        "allocate",
        "--supply",
        "examples/allocation/supply.csv",
        "--licences",
        APPROVED,
        "--commits-out",
        &commits,
        "--signing-key",
        &path("supplier.key"),
        "examples/allocation/stream.jsonl",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tencent = format!("{commits}/TENCENT.commit.json");
    let text = std::fs::read_to_string(&tencent).unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(file["key"], "TENCENT");
    assert_eq!(file["commit"]["lines"][0]["allocated_units"], 5333);
    assert_eq!(
        file["commit"]["lines"][0]["documents"],
        json!([{"document_id": "TCT-ALLOC-1", "revision": 1}])
    );
    let verify = |registry: &str| {
        let out = forecastctl(&["commits", "verify", "--keys", registry, &tencent]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, said) = verify(&registries[0]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("VALID, the supplier's commit to TENCENT"),
        "{said}"
    );
    // A registry without the supplier's key believes nothing.
    let (code, said) = verify(&registries[1]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("NOT VALID"), "{said}");
    // One byte changed: an allocation raised by one unit.
    std::fs::write(&tencent, text.replacen("5333", "5334", 1)).unwrap();
    let (code, said) = verify(&registries[0]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("does not match"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}
