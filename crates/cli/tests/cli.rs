//! `forecastctl check` and `replay` as a user runs them (and the usage
//! errors of the services): output formats,
//! exit codes, and the public conformance sample reproduced exactly.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use forecast_tests::processes::EXAMPLES_REPLAY;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `../shared/conformance` beside the repository, or `FORECAST_CONFORMANCE_DIR`.
fn conformance() -> PathBuf {
    std::env::var_os("FORECAST_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/conformance"))
}

fn forecastctl(args: &[&str]) -> Output {
    forecast_tests::processes::forecastctl_clean(args)
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn replay_reproduces_the_public_conformance_sample_exactly() {
    let dir = conformance();
    assert!(
        dir.join("stream.jsonl").exists(),
        "no conformance sample at {} (set FORECAST_CONFORMANCE_DIR)",
        dir.display()
    );
    let out = forecastctl(&[
        "replay",
        "--format",
        "json",
        "--restricted-parties",
        dir.join("restricted.csv").to_str().unwrap(),
        dir.join("stream.jsonl").to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = stdout_json(&out);
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let (g, e) = (
        got["verdicts"].as_array().unwrap(),
        expected["verdicts"].as_array().unwrap(),
    );
    assert_eq!(g.len(), e.len(), "one verdict per non-blank input line");
    for (i, (g, e)) in g.iter().zip(e).enumerate() {
        assert_eq!(g, e, "verdict {i} (input order)");
    }
    assert_eq!(got["demand"], expected["demand"]);
}

#[test]
fn replay_of_the_examples_applies_replace_and_cancel() {
    let out = forecastctl(&[
        "replay",
        "--format",
        "json",
        "--policy",
        "examples/policy.toml",
        "examples/stream.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v = stdout_json(&out);
    let verdicts: Vec<(String, String)> = v["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["document_id"].as_str().unwrap_or("null").to_owned(),
                v["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let text = std::fs::read_to_string(repo().join("examples/stream.jsonl")).unwrap();
    assert_eq!(
        verdicts.len(),
        text.lines().filter(|l| !l.trim().is_empty()).count()
    );
    assert_eq!(
        verdicts.last().unwrap(),
        &("null".to_owned(), "REJECTED".to_owned()),
        "a line that is not JSON"
    );
    assert!(verdicts.contains(&("TCT-2026-0001".into(), "DUPLICATE".into())));
    let demand = v["demand"].as_array().unwrap();
    // The cancelled document's H20-141GB planning lines are gone for Alibaba.
    assert!(
        !demand
            .iter()
            .any(|r| r["customer_id"] == "ALIBABA" && r["sku"] == "H20-141GB")
    );
    // The replace raised Tencent's 2026-Q4 firm units from 35,000 to 45,000.
    let q4 = demand
        .iter()
        .find(|r| {
            r["customer_id"] == "TENCENT" && r["sku"] == "H20-96GB" && r["quarter"] == "2026-Q4"
        })
        .unwrap();
    assert_eq!(
        (q4["firm_units"].as_i64(), q4["total_units"].as_i64()),
        (Some(45_000), Some(45_000))
    );
}

#[test]
fn replay_text_explains_rejections_and_prints_a_table() {
    let out = forecastctl(&[
        "replay",
        "--policy",
        "examples/policy.toml",
        "examples/stream.jsonl",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("END_USER_RESTRICTED at end_use.end_users[0].name"),
        "{text}"
    );
    assert!(
        text.contains("rule: an end user matches the restricted-party list"),
        "{text}"
    );
    assert!(
        text.contains("CUSTOMER     SKU") || text.contains("CUSTOMER   SKU"),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("TOTAL")), "{text}");
}

#[test]
fn replay_reads_standard_input_and_fails_with_2_on_an_unreadable_file() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_forecastctl"))
        .args(["replay", "--format", "json", "-"])
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"\xef\xbb\xbf[1]\n\n{\"document_id\": \"A\"}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let v = stdout_json(&out);
    assert_eq!(v["verdicts"].as_array().unwrap().len(), 2);
    assert_eq!(v["verdicts"][1]["document_id"], "A");
    assert_eq!(
        v["verdicts"][1]["codes"],
        serde_json::json!(["SCHEMA_INVALID"])
    );
    assert_eq!(v["demand"], serde_json::json!([]));

    let out = forecastctl(&["replay", "no/such/file.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read no/such/file.jsonl"));
}

#[test]
fn check_exits_0_when_all_are_accepted_1_when_any_is_rejected() {
    let ok = forecastctl(&[
        "check",
        "examples/tencent-original.json",
        "examples/bytedance-original.json",
    ]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let text = String::from_utf8(ok.stdout).unwrap();
    assert!(
        text.contains("2 document(s): 2 accepted, 0 rejected"),
        "{text}"
    );

    let bad = forecastctl(&[
        "check",
        "--format",
        "json",
        "examples/tencent-original.json",
        "examples/rejected-lines.json",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    let v = stdout_json(&bad);
    let verdicts = v["verdicts"].as_array().unwrap();
    assert_eq!(verdicts.len(), 2);
    assert_eq!(verdicts[1]["verdict"], "REJECTED");
    assert_eq!(verdicts[1]["source"], "examples/rejected-lines.json");
    let fields: Vec<&str> = verdicts[1]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"lines[1].sku") && fields.contains(&"lines[0].quantity"),
        "{fields:?}"
    );
    assert!(
        verdicts[1]["policy_version"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
}

#[test]
fn check_is_stateless_and_reads_json_lines() {
    // check never sequences: a REPLACE with no ORIGINAL before it is judged
    // only by the rules, and a repeated revision is not a DUPLICATE.
    let out = forecastctl(&["check", "--format", "json", "examples/tencent-replace.json"]);
    assert_eq!(out.status.code(), Some(0));
    let out = forecastctl(&[
        "check",
        "--format",
        "json",
        "--restricted-parties",
        "examples/restricted-parties.csv",
        "examples/stream.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v = stdout_json(&out);
    let duplicates = v["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["verdict"] == "DUPLICATE")
        .count();
    assert_eq!(duplicates, 0, "check judges each document alone");
}

#[test]
fn usage_errors_exit_2_and_name_the_problem() {
    let cases: &[(&[&str], &str)] = &[
        (&["check"], "FILE"),
        (
            &["check", "--format", "xml", "examples/tencent-original.json"],
            "xml",
        ),
        (&["check", "no-such.json"], "cannot read no-such.json"),
        (
            &[
                "check",
                "--policy",
                "no-such.toml",
                "examples/tencent-original.json",
            ],
            "no-such.toml",
        ),
        (
            &[
                "replay",
                "--restricted-parties",
                "no-such.csv",
                "examples/stream.jsonl",
            ],
            "no-such.csv",
        ),
        (
            &["replay", "--policy", "Cargo.toml", "examples/stream.jsonl"],
            "not a valid policy",
        ),
        (&["frobnicate"], "frobnicate"),
    ];
    for (args, needle) in cases {
        let out = forecastctl(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn every_subcommand_has_help() {
    use clap::CommandFactory;
    // Every command of the clap tree, nested ones too: a new command is
    // covered without touching this test.
    fn walk(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, Vec<String>)>) {
        let flags = cmd
            .get_arguments()
            .filter(|a| !a.is_hide_set())
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect();
        out.push((path.clone(), flags));
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let mut p = path.clone();
            p.push(sub.get_name().to_owned());
            walk(sub, p, out);
        }
    }
    let mut commands = Vec::new();
    walk(&forecastctl::Cli::command(), Vec::new(), &mut commands);
    // The root, its ten commands, and `topics create` and `supply load`
    // under their groups.
    assert!(commands.len() >= 13, "{commands:?}");
    for (path, flags) in &commands {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = forecastctl(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let usage = format!("Usage: forecastctl {}", path.join(" "));
        assert!(text.contains(usage.trim_end()), "{args:?}: {text}");
        for flag in flags {
            assert!(
                text.contains(flag.as_str()),
                "{args:?} --help lacks {flag}: {text}"
            );
        }
        if flags.iter().any(|f| f == "--brokers") {
            assert!(text.contains("FORECAST_BROKERS"), "{args:?}: {text}");
        }
    }
    let text = String::from_utf8(forecastctl(&["replay", "--help"]).stdout).unwrap();
    for flag in [
        "--policy",
        "--restricted-parties",
        "--format",
        "FORECAST_POLICY",
    ] {
        assert!(text.contains(flag), "replay --help lacks {flag}: {text}");
    }
    for service in ["validate", "aggregate", "planner"] {
        let text = String::from_utf8(forecastctl(&[service, "--help"]).stdout).unwrap();
        assert!(text.contains("--shutdown-timeout"), "{service}: {text}");
    }
}

#[test]
fn planner_refuses_an_unreadable_supply_plan_before_it_serves() {
    // No broker is needed to find that out: the plan is read first.
    let out = forecastctl(&[
        "planner",
        "--brokers",
        "127.0.0.1:9",
        "--http",
        "127.0.0.1:0",
        "--supply",
        "no-such-supply.csv",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no-such-supply.csv") && stderr.contains("--supply"),
        "{stderr}"
    );
    // The aggregator no longer serves the API: its supply flag is gone.
    let out = forecastctl(&["aggregate", "--supply", "examples/supply.csv"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--supply"));
}

/// `replay --licences`: the examples' demand by licence status adds up to
/// their demand, the revoked application's firm units are listed by
/// document, and the approved quantity the demand exceeds is a warning;
/// without the flag the output has no licence part (the conformance
/// sample's form).
#[test]
fn replay_with_licences_breaks_the_demand_down_by_decision() {
    let base = EXAMPLES_REPLAY;
    let plain = stdout_json(&forecastctl(
        &[&base[..], &["examples/stream.jsonl"]].concat(),
    ));
    assert!(plain.get("licences").is_none(), "{plain}");
    let out = forecastctl(
        &[
            &base[..],
            &[
                "--licences",
                "examples/licences.jsonl",
                "examples/stream.jsonl",
            ],
        ]
        .concat(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = stdout_json(&out);
    assert_eq!(
        got["demand"], plain["demand"],
        "the demand rows do not change"
    );
    let mut by_status: std::collections::BTreeMap<String, i64> = Default::default();
    for r in got["licences"]["by_status"].as_array().unwrap() {
        *by_status
            .entry(r["licence_status"].as_str().unwrap().into())
            .or_default() += r["total_units"].as_i64().unwrap();
    }
    let total: i64 = plain["demand"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["total_units"].as_i64().unwrap())
        .sum();
    assert_eq!(by_status.values().sum::<i64>(), total);
    assert_eq!(
        by_status,
        [
            ("APPROVED", 117_000),
            ("PENDING", 152_000),
            ("REVOKED", 37_000)
        ]
        .map(|(s, n)| (s.to_owned(), n))
        .into()
    );
    let lost = &got["licences"]["lost_firm_demand"];
    assert_eq!(lost.as_array().unwrap().len(), 1, "{lost}");
    assert_eq!(
        (
            &lost[0]["document_id"],
            &lost[0]["application_number"],
            &lost[0]["firm_units"]
        ),
        (&json!("ALI-2026-0001"), &json!("Z-7201843"), &json!(10_000))
    );
    assert_eq!(
        got["licences"]["over_approved"],
        json!([{"application_number": "Z-2450685", "sku": "H20-141GB", "approved_units": 100_000, "demanded_units": 105_000}])
    );

    // A wrong licence file is a usage error naming the file and line.
    let dir = std::env::temp_dir().join(format!("forecast-licences-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("l.jsonl");
    std::fs::write(
        &bad,
        "\n{\"application_number\": \"Z-1\", \"customer_id\": \"TENCENT\", \"status\": \"DENIED\"}\n",
    )
    .unwrap();
    let out = forecastctl(
        &[
            &base[..],
            &["--licences", bad.to_str().unwrap(), "examples/stream.jsonl"],
        ]
        .concat(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("l.jsonl, line 2") && stderr.contains("decided_at"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A licence is its customer's: a Tencent document citing ByteDance's
/// approved Z-2450685 adds no APPROVED units for Tencent, is listed with
/// the lost demand, and does not count against ByteDance's approved
/// quantity.
#[test]
fn replay_with_licences_lends_no_customer_another_customers_licence() {
    let dir = std::env::temp_dir().join(format!("forecast-borrowed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut borrowed: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("examples/tencent-original.json")).unwrap(),
    )
    .unwrap();
    borrowed["document_id"] = "TCT-BORROWED".into();
    borrowed["export_license"] = json!({"status": "APPROVED", "application_number": "Z-2450685"});
    let stream = dir.join("stream.jsonl");
    let mut text = std::fs::read_to_string(repo().join("examples/stream.jsonl")).unwrap();
    text.push_str(&format!("\n{borrowed}\n"));
    std::fs::write(&stream, text).unwrap();
    let replay = |stream: &Path| {
        let licences = [
            "--licences",
            "examples/licences.jsonl",
            stream.to_str().unwrap(),
        ];
        stdout_json(&forecastctl(&[&EXAMPLES_REPLAY[..], &licences].concat()))
    };
    let got = replay(&stream);
    let before = replay(&repo().join("examples/stream.jsonl"));
    let units = |v: &Value, customer: &str, status: &str| -> i64 {
        v["licences"]["by_status"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["customer_id"] == customer && r["licence_status"] == status)
            .map(|r| r["total_units"].as_i64().unwrap())
            .sum()
    };
    let added: i64 = borrowed["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["quantity"].as_i64().unwrap())
        .sum();
    assert!(added > 0);
    assert_eq!(
        units(&got, "TENCENT", "APPROVED"),
        units(&before, "TENCENT", "APPROVED")
    );
    assert_eq!(units(&got, "TENCENT", "FOREIGN_LICENCE"), added);
    assert_eq!(
        units(&got, "BYTEDANCE", "APPROVED"),
        units(&before, "BYTEDANCE", "APPROVED")
    );
    let lost = got["licences"]["lost_firm_demand"].as_array().unwrap();
    assert!(
        lost.iter().any(|l| l["document_id"] == "TCT-BORROWED"
            && l["licence_status"] == "FOREIGN_LICENCE"),
        "{lost:?}"
    );
    // ByteDance's cap is measured against ByteDance's demand alone.
    assert_eq!(
        got["licences"]["over_approved"],
        before["licences"]["over_approved"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A service that cannot take its `--http` address stops at once, before
/// any broker is asked, saying which address and flag, with the exit code
/// of a deployment to fix (78), not of a broker to wait for (75).
#[test]
fn a_service_whose_http_address_is_taken_exits_78_naming_it() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    for service in ["validate", "aggregate", "planner"] {
        let started = std::time::Instant::now();
        let out = forecastctl(&[
            service,
            "--brokers",
            "127.0.0.1:9",
            "--http",
            &addr,
            "--insecure-no-attestation",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{service}: {stderr}");
        assert!(
            stderr.contains(&format!("cannot listen on {addr} (--http / FORECAST_HTTP)"))
                && stderr.contains("not retriable as is"),
            "{service}: {stderr}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{service} waited for the broker first ({:?})",
            started.elapsed()
        );
    }
}

/// `FORECAST_KAFKA_<NAME>` sets librdkafka's `<name>` (where secrets go,
/// since `-X` values show in the process list), and a secret set there is
/// never printed.
#[test]
fn kafka_properties_come_from_the_environment_and_secrets_stay_out_of_output() {
    let out = Command::new(env!("CARGO_BIN_EXE_forecastctl"))
        .args(["topics", "create", "--brokers", "127.0.0.1:1"])
        .current_dir(repo())
        .env("FORECAST_KAFKA_SECURITY_PROTOCOL", "not-a-protocol")
        .env("FORECAST_KAFKA_SASL_PASSWORD", "hunter2-secret")
        .stdin(Stdio::null())
        .output()
        .expect("forecastctl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A setting librdkafka refuses: the deployment's to fix (exit 78).
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("security.protocol"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hunter2"));
}

/// Secure by default: a service given no stage keys refuses to start, and
/// the planner refuses to serve without tokens off loopback; each says what
/// to give, exits 78 (a deployment to fix) and asks no broker first.
#[test]
fn services_refuse_to_start_without_keys_or_open_off_loopback() {
    for service in ["validate", "aggregate", "planner"] {
        let out = forecastctl(&[service, "--brokers", "127.0.0.1:9", "--http", "127.0.0.1:0"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{service}: {stderr}");
        assert!(
            stderr.contains("no stage keys") && stderr.contains("--stage-keys"),
            "{service}: {stderr}"
        );
    }
    let dir = std::env::temp_dir().join(format!("forecast-cli-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = dir.join("stage-keys.jsonl");
    let _ = std::fs::remove_file(&keys);
    let keys = keys.display().to_string();
    let made = forecastctl(&["keys", "stage", "--stage", "validator", "--out", &keys]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let text = std::fs::read_to_string(&keys).unwrap();
    let secret = serde_json::from_str::<Value>(text.lines().next().unwrap()).unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!String::from_utf8_lossy(&made.stderr).contains(&secret));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // A file without the aggregator's key: named, with the command that adds one.
    let out = forecastctl(&[
        "aggregate",
        "--brokers",
        "127.0.0.1:9",
        "--stage-keys",
        &keys,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("keys stage --stage aggregator"), "{stderr}");
    assert!(!stderr.contains(&secret));
    let out = forecastctl(&[
        "planner",
        "--brokers",
        "127.0.0.1:9",
        "--http",
        "0.0.0.0:0",
        "--stage-keys",
        &keys,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("without --tokens") && stderr.contains("--insecure-open-api"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
