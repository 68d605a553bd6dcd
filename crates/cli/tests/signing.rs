//! Signed submissions as a customer and the supplier run them, offline:
//! `keys generate`, `sign`, `check --keys` and `replay --keys`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use forecast_tests::processes::{generate_key as generate, sign_file as sign};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn forecastctl(args: &[&str]) -> Output {
    forecast_tests::processes::forecastctl_clean(args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("forecast-signing-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn check(registry: &Path, file: &Path) -> (Option<i32>, Value) {
    let out = forecastctl(&[
        "check",
        "--format",
        "json",
        "--keys",
        registry.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    let verdicts: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    (out.status.code(), verdicts["verdicts"].clone())
}

/// `replay --format json --keys registry stream`, which must exit 0.
fn replay_with_keys(registry: &Path, stream: &Path) -> Value {
    let out = forecastctl(&[
        "replay",
        "--format",
        "json",
        "--keys",
        registry.to_str().unwrap(),
        stream.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn generate_sign_check_as_a_customer_and_the_supplier_would() {
    let dir = scratch("flow");
    let registry = dir.join("keys.jsonl");
    let key = generate(&dir, &registry, "TENCENT", "tencent", &[]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the private key is readable by others");
    }
    assert!(text(&std::fs::read(&key).unwrap()).starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(
        text(&std::fs::read(key.with_extension("pub")).unwrap())
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );

    // The example is dated 2026-07-15: a key valid from then.
    let example = repo().join("examples/tencent-original.json");
    let signed = dir.join("signed.jsonl");
    sign(&key, &example, &signed);
    let doc: Value = serde_json::from_slice(&std::fs::read(&signed).unwrap()).unwrap();
    assert!(
        doc["signature"]["key_id"]
            .as_str()
            .unwrap()
            .starts_with("ed25519:")
    );

    // The key (valid from now) is not yet valid at the example's date.
    let (code, verdicts) = check(&registry, &signed);
    assert_eq!(code, Some(1));
    assert_eq!(
        verdicts[0]["codes"],
        serde_json::json!(["KEY_NOT_YET_VALID"])
    );

    // A key valid at that date passes; unsigned and tampered copies do not.
    let registry = dir.join("keys-2026.jsonl");
    let key = generate(
        &dir,
        &registry,
        "TENCENT",
        "tencent-2026",
        &[
            "--valid-from",
            "2026-01-01T00:00:00Z",
            "--valid-until",
            "2027-01-01T00:00:00Z",
        ],
    );
    sign(&key, &example, &signed);
    assert_eq!(check(&registry, &signed).0, Some(0));
    let (code, verdicts) = check(&registry, &example);
    assert_eq!(
        (code, &verdicts[0]["codes"]),
        (Some(1), &serde_json::json!(["SIGNATURE_MISSING"]))
    );
    let tampered = dir.join("tampered.jsonl");
    std::fs::write(
        &tampered,
        text(&std::fs::read(&signed).unwrap()).replace("40000", "40001"),
    )
    .unwrap();
    let (code, verdicts) = check(&registry, &tampered);
    assert_eq!(
        (code, &verdicts[0]["codes"]),
        (Some(1), &serde_json::json!(["SIGNATURE_INVALID"]))
    );

    // ByteDance's key on Tencent's document.
    let bytedance = generate(
        &dir,
        &registry,
        "BYTEDANCE",
        "bytedance",
        &["--valid-from", "2026-01-01T00:00:00Z"],
    );
    sign(&bytedance, &example, &signed);
    let (_, verdicts) = check(&registry, &signed);
    assert_eq!(
        verdicts[0]["codes"],
        serde_json::json!(["KEY_NOT_FOR_CUSTOMER"])
    );

    // Optional: the unsigned example passes, the tampered one does not.
    let optional = |file: &Path| {
        forecastctl(&[
            "check",
            "--keys",
            registry.to_str().unwrap(),
            "--signatures",
            "optional",
            file.to_str().unwrap(),
        ])
        .status
        .code()
    };
    assert_eq!(optional(&example), Some(0));
    assert_eq!(optional(&tampered), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn generate_never_replaces_a_key_and_bad_keys_say_why_without_the_key() {
    let dir = scratch("refuse");
    let registry = dir.join("keys.jsonl");
    let key = generate(&dir, &registry, "TENCENT", "k", &[]);
    let before = std::fs::read(&key).unwrap();
    let out = forecastctl(&[
        "keys",
        "generate",
        "--customer",
        "TENCENT",
        "--out",
        dir.join("k").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("exists"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&key).unwrap(), before);

    // A public key given as the signing key: refused, and nothing of it printed.
    let public = key.with_extension("pub");
    let out = forecastctl(&[
        "sign",
        "--signing-key",
        public.to_str().unwrap(),
        "examples/tencent-original.json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("not an Ed25519 private key"), "{stderr}");
    let pem = text(&std::fs::read(&public).unwrap());
    let body = pem.lines().nth(1).unwrap();
    assert!(!stderr.contains(body), "{stderr}");
    let private = text(&before);
    assert!(private.lines().skip(1).take(1).all(|l| !stderr.contains(l)));

    // A registry with a typo: refused at start, naming file and line.
    let broken = dir.join("broken.jsonl");
    std::fs::write(
        &broken,
        text(&std::fs::read(&registry).unwrap()).replace("revoked", "revokd"),
    )
    .unwrap();
    let out = forecastctl(&[
        "check",
        "--keys",
        broken.to_str().unwrap(),
        "examples/tencent-original.json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("line 1"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_with_keys_rotation_and_a_resigned_duplicate() {
    let dir = scratch("replay");
    let registry = dir.join("keys.jsonl");
    let old = generate(
        &dir,
        &registry,
        "TENCENT",
        "old",
        &[
            "--valid-from",
            "2026-01-01T00:00:00Z",
            "--valid-until",
            "2026-07-16T00:00:00Z",
        ],
    );
    let new = generate(
        &dir,
        &registry,
        "TENCENT",
        "new",
        &["--valid-from", "2026-07-01T00:00:00Z"],
    );
    let example = repo().join("examples/tencent-original.json");
    let (a, b) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
    sign(&old, &example, &a);
    sign(&new, &example, &b);
    // The same revision signed with the old key, then the new one: one
    // document, counted once.
    let stream = dir.join("stream.jsonl");
    std::fs::write(
        &stream,
        [std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap()].concat(),
    )
    .unwrap();
    let result = replay_with_keys(&registry, &stream);
    let verdicts: Vec<&str> = result["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["ACCEPTED", "DUPLICATE"]);
    let one_line = dir.join("unsigned.jsonl");
    let doc: Value = serde_json::from_slice(&std::fs::read(&example).unwrap()).unwrap();
    std::fs::write(&one_line, doc.to_string()).unwrap();
    let result = replay_with_keys(&registry, &one_line);
    assert_eq!(
        result["verdicts"][0]["codes"],
        serde_json::json!(["SIGNATURE_MISSING"])
    );
    assert_eq!(result["demand"], serde_json::json!([]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_squat_under_another_customers_id_leaves_its_owner_unharmed() {
    let dir = scratch("squat");
    let registry = dir.join("keys.jsonl");
    let valid = ["--valid-from", "2026-01-01T00:00:00Z"];
    let tencent = generate(&dir, &registry, "TENCENT", "tencent", &valid);
    let bytedance = generate(&dir, &registry, "BYTEDANCE", "bytedance", &valid);
    // ByteDance signs an ORIGINAL under Tencent's id first, then Tencent
    // sends its own, then a REPLACE of it.
    let example = repo().join("examples/tencent-original.json");
    let mut squat: Value = serde_json::from_slice(&std::fs::read(&example).unwrap()).unwrap();
    squat["customer_id"] = "BYTEDANCE".into();
    let squat_file = dir.join("squat.json");
    std::fs::write(&squat_file, squat.to_string()).unwrap();
    let (s, t, r) = (
        dir.join("s.jsonl"),
        dir.join("t.jsonl"),
        dir.join("r.jsonl"),
    );
    sign(&bytedance, &squat_file, &s);
    sign(&tencent, &example, &t);
    sign(&tencent, &repo().join("examples/tencent-replace.json"), &r);
    let stream = dir.join("stream.jsonl");
    let parts: Vec<Vec<u8>> = [&s, &t, &r]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    std::fs::write(&stream, parts.concat()).unwrap();
    let result = replay_with_keys(&registry, &stream);
    let verdicts: Vec<(&str, i64, &str)> = result["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["document_id"].as_str().unwrap(),
                v["revision"].as_i64().unwrap(),
                v["verdict"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("TCT-2026-0001", 1, "ACCEPTED"),
            ("TCT-2026-0001", 1, "ACCEPTED"),
            ("TCT-2026-0001", 2, "ACCEPTED"),
        ]
    );
    // Both customers' demand: the squatter's own copy does not replace
    // Tencent's, nor take its revisions.
    let customers: std::collections::BTreeSet<&str> = result["demand"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["customer_id"].as_str().unwrap())
        .collect();
    assert_eq!(customers, ["BYTEDANCE", "TENCENT"].into());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_public_key_registered_twice_is_refused_naming_both_lines() {
    let dir = scratch("alias");
    let registry = dir.join("keys.jsonl");
    generate(&dir, &registry, "TENCENT", "tencent", &[]);
    // The same public key again, under another id and another customer.
    let first = std::fs::read_to_string(&registry).unwrap();
    let mut alias: Value = serde_json::from_str(first.trim()).unwrap();
    alias["key_id"] = "ed25519:alias".into();
    alias["customer_id"] = "BYTEDANCE".into();
    std::fs::write(&registry, format!("{first}{alias}\n")).unwrap();
    let out = forecastctl(&[
        "check",
        "--keys",
        registry.to_str().unwrap(),
        repo()
            .join("examples/tencent-original.json")
            .to_str()
            .unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("line 2") && stderr.contains("line 1") && stderr.contains("ed25519:alias"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
