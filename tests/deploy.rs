//! `deploy/compose.yaml` as a user runs it: up (broker, two validators, the
//! aggregator, the planner API), submit the examples with the `cli`
//! service, read the demand from the API until it equals `replay` of the
//! same file, and tear everything down, volumes included.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use forecast_tests::containers::http_get;
use forecast_tests::stream::repo;
use serde_json::Value;

struct Compose {
    project: String,
    port: u16,
}

impl Compose {
    fn command(&self, args: &[&str]) -> Output {
        Command::new("docker-compose")
            .args(["-p", &self.project, "-f", "deploy/compose.yaml"])
            .args(args)
            .current_dir(repo())
            .env("FORECAST_API_PORT", self.port.to_string())
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
        let (status, body) = http_get(&format!("127.0.0.1:{}", self.port), path)?;
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
    }
}

#[test]
fn compose_runs_the_pipeline_and_serves_the_demand_replay_gives() {
    let started = Instant::now();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let compose = Compose {
        project: format!("fc-compose-{}", std::process::id()),
        port,
    };
    compose.ok(&["up", "-d"]);
    let validators = compose.ok(&["ps", "-q", "validator"]);
    assert_eq!(validators.lines().count(), 2, "two validator replicas");

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
    let submitted = compose.command(&["run", "--rm", "cli", "submit", "examples/stream.jsonl"]);
    let stderr = String::from_utf8_lossy(&submitted.stderr);
    assert!(
        stderr.contains("11 sent, 2 refused locally, 0 failed"),
        "submit: {stderr}"
    );
    let replay = compose.ok(&[
        "run",
        "--rm",
        "cli",
        "replay",
        "--format",
        "json",
        "--policy",
        "examples/policy.toml",
        "--restricted-parties",
        "examples/restricted-parties.csv",
        "examples/stream.jsonl",
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
    eprintln!(
        "compose: up, submit, demand equal to replay in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
