//! `deploy/compose.yaml` as a user runs it, secure by default: the secrets
//! made by `deploy/make-secrets`, up (a broker requiring SASL, two
//! validators requiring signatures, the aggregator, the allocator, the
//! planner API with tokens), the API refusing a caller without a token, an
//! unsigned submission rejected, each customer's examples signed and
//! submitted with the `cli` service, the demand read from the API until it
//! equals `replay` of the same files, a signed commit to each customer
//! served, and everything torn down, volumes and secrets included.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use forecast_tests::stream::repo;
use forecast_tests::{http_get, http_get_as};
use serde_json::Value;

struct Compose {
    project: String,
    port: u16,
    /// Prefix of the secrets' volumes (`FORECAST_SECRETS`).
    secrets: String,
    /// The planner token, read from the operator's vault.
    token: String,
}

impl Compose {
    fn command(&self, args: &[&str]) -> Output {
        Command::new("docker-compose")
            .args(["-p", &self.project, "-f", "deploy/compose.yaml"])
            .args(args)
            .current_dir(repo())
            .env("FORECAST_API_PORT", self.port.to_string())
            .env("FORECAST_SECRETS", &self.secrets)
            .output()
            .expect("docker-compose (Debian's docker-compose package)")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.command(args);
        assert!(
            out.status.success(),
            "docker-compose {}: {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn logs(&self) -> String {
        let out = self.command(&["logs", "--no-color", "--tail", "40"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether the planner answers `/readyz` with 200: its view holds what
    /// the topics held when it started, so the services have created them.
    fn ready(&self) -> bool {
        http_get(&format!("127.0.0.1:{}", self.port), "/readyz")
            .is_some_and(|(status, _)| status.contains(" 200 "))
    }

    fn api(&self, path: &str) -> Option<Value> {
        let (status, body) =
            http_get_as(&format!("127.0.0.1:{}", self.port), path, Some(&self.token))?;
        status
            .contains(" 200 ")
            .then(|| serde_json::from_str(&body).ok())?
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let _ = self.command(&["down", "-v", "--remove-orphans", "-t", "5"]);
        for suffix in [
            "",
            "-broker",
            "-validator",
            "-aggregator",
            "-allocator",
            "-planner",
        ] {
            let _ = Command::new("docker")
                .args(["volume", "rm", &format!("{}{suffix}", self.secrets)])
                .output();
        }
    }
}

/// The image the compose file runs (`FORECAST_IMAGE_TAG`, default `dev`).
fn image() -> String {
    format!(
        "forecast/forecastctl:{}",
        std::env::var("FORECAST_IMAGE_TAG").unwrap_or_else(|_| "dev".into())
    )
}

/// A file of the operator's vault (the `PREFIX` volume).
fn vault_file(secrets: &str, name: &str) -> String {
    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "-v",
            &format!("{secrets}:/s:ro"),
            "--entrypoint",
            "cat",
        ])
        .arg(image())
        .arg(format!("/s/{name}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Each registered customer's decodable examples, dated now (the validator refuses a
/// `submitted_at` far from the broker's time), one file each in `dir`.
fn examples_by_customer(dir: &std::path::Path) -> Vec<(String, String)> {
    let now = forecast_model::Timestamp::now().to_string();
    let text = std::fs::read_to_string(repo().join("examples/stream.jsonl")).unwrap();
    let mut files: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if forecast_model::parse_submission(line.as_bytes()).is_err() {
            continue;
        }
        let mut doc: Value = serde_json::from_str(line).unwrap();
        doc["submitted_at"] = now.clone().into();
        let customer = doc["customer_id"].as_str().unwrap().to_owned();
        // The customers make-secrets makes keys for (the registered ones).
        if !["TENCENT", "BYTEDANCE", "ALIBABA"].contains(&customer.as_str()) {
            continue;
        }
        let name = format!("{customer}.jsonl");
        let path = dir.join(&name);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, format!("{doc}\n").as_bytes()).unwrap();
        if !files.iter().any(|(c, _)| *c == customer) {
            files.push((customer, name));
        }
    }
    files
}

#[test]
fn compose_runs_the_pipeline_secured_and_serves_the_demand_replay_gives() {
    let started = Instant::now();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let project = format!("fc-compose-{}", std::process::id());
    let secrets = format!("{project}-secrets");
    let made = Command::new("deploy/make-secrets")
        .current_dir(repo())
        .env("FORECAST_SECRETS", &secrets)
        .output()
        .unwrap();
    let mut compose = Compose {
        project,
        port,
        secrets: secrets.clone(),
        token: String::new(),
    };
    assert!(
        made.status.success(),
        "make-secrets: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    compose.token = vault_file(&secrets, "planner.token");
    assert!(compose.token.starts_with("fct_"));
    compose.ok(&["up", "-d"]);
    let validators = compose.ok(&["ps", "-q", "validator"]);
    assert_eq!(validators.lines().count(), 2, "two validator replicas");
    // No password or key in what the manifest says a container runs.
    let config = compose.ok(&["config"]);
    for secret in ["validator.password", "planner.token"] {
        let value = vault_file(&secrets, secret);
        assert!(!config.contains(&value), "{secret} appears in the manifest");
    }

    // The planner is ready once the services have created the topics and
    // it has read them.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !compose.ready() || compose.api("/v1/demand").is_none() {
        assert!(
            Instant::now() < deadline,
            "the planner never became ready\n{}",
            compose.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Without a token: 401, whatever the route.
    let addr = format!("127.0.0.1:{port}");
    for path in ["/v1/demand", "/v1/rejections", "/metrics"] {
        let (status, _) = http_get(&addr, path).unwrap();
        assert!(status.contains(" 401 "), "{path}: {status}");
    }

    // Unsigned examples: sent, and every one rejected; no demand.
    let submitted = compose.command(&["run", "--rm", "cli", "submit", "examples/stream.jsonl"]);
    let stderr = String::from_utf8_lossy(&submitted.stderr);
    assert!(
        stderr.contains("11 sent, 2 refused locally, 0 failed"),
        "submit: {stderr}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rejections = compose.api("/v1/rejections").unwrap_or_default();
        let missing = rejections.to_string().matches("SIGNATURE_MISSING").count();
        if missing >= 11 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the unsigned examples were not all rejected: {rejections}\n{}",
            compose.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        compose.api("/v1/demand").unwrap()["rows"],
        Value::Array(vec![])
    );

    // Each customer's examples signed with its key, then submitted.
    let dir = std::env::temp_dir().join(&compose.project);
    std::fs::create_dir_all(&dir).unwrap();
    let mut all = String::new();
    for (customer, name) in examples_by_customer(&dir) {
        let mount = format!("{}:/work", dir.display());
        let key = format!("/run/forecast/{customer}.key");
        let out = compose.command(&[
            "run",
            "--rm",
            "-v",
            &mount,
            "cli",
            "sign",
            "--signing-key",
            &key,
            &format!("/work/{name}"),
        ]);
        assert!(
            out.status.success(),
            "sign: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        all.push_str(&String::from_utf8(out.stdout).unwrap());
    }
    std::fs::write(dir.join("signed.jsonl"), &all).unwrap();
    let mount = format!("{}:/work", dir.display());
    let submitted = compose.command(&[
        "run",
        "--rm",
        "-v",
        &mount,
        "cli",
        "submit",
        "/work/signed.jsonl",
    ]);
    assert!(
        submitted.status.success(),
        "submit: {}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    let replay = compose.ok(&[
        "run",
        "--rm",
        "-v",
        &mount,
        "cli",
        "replay",
        "--format",
        "json",
        "--policy",
        "examples/policy.toml",
        "--restricted-parties",
        "examples/restricted-parties.csv",
        "--keys",
        "/run/forecast/keys.jsonl",
        "/work/signed.jsonl",
    ]);
    let want: Value = serde_json::from_str(&replay).unwrap();
    let want = &want["demand"];
    assert!(!want.as_array().unwrap().is_empty());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = compose.api("/v1/demand").unwrap_or_default();
        if got["rows"] == *want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the API's demand never equalled replay's:\n{}\n{}",
            forecast_tests::outcome::demand_diff(&got["rows"], want),
            compose.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let supply = compose.api("/v1/supply").unwrap();
    assert_eq!(
        supply["supply"].as_array().unwrap().len(),
        9,
        "the example supply plan"
    );
    // The allocator, with the supplier key of the secrets, commits to each
    // customer with demand; the planner believes the commits.
    let customers: std::collections::BTreeSet<&str> = want
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["customer_id"].as_str().unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = compose.api("/v1/commits").unwrap_or_default();
        let committed: std::collections::BTreeSet<&str> = got["commits"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["key"].as_str())
            .collect();
        if committed == customers {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "commits to {committed:?}, not to {customers:?}\n{}",
            compose.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "compose: secrets, up, unsigned rejected, signed demand equal to replay, commits in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
