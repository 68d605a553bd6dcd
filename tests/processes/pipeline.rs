//! A running pipeline for the end-to-end tests: a broker, the topics, a
//! validator and an aggregator (and, for the API's tests, the planner) as
//! child processes, and what reads back.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use forecast_model::{Registry, Verdict, wire};
use serde_json::Value;

use super::*;

pub const RESTRICTED: &str = "--restricted-parties";

pub struct Pipeline {
    pub broker: Broker,
    pub names: Names,
    pub dir: std::path::PathBuf,
    pub validator: Child,
    pub aggregator: Child,
    /// `forecastctl planner`, when the test serves the API.
    pub planner: Option<Child>,
    /// The planner API's tokens, when it was started with some.
    pub tokens: Vec<String>,
}

impl Pipeline {
    /// Starts the services with extra flags (never killing an instance that
    /// may still be joining its group: tansu 0.6 can then leave the group
    /// waiting forever).
    pub fn start_with(test: &str, validator_extra: &[&str], aggregator_extra: &[&str]) -> Pipeline {
        let (broker, names, dir) = broker_with_topics(test, "e2e", 3);
        let validator = Pipeline::spawn_validator_with(&broker, &names, &dir, validator_extra);
        let aggregator = spawn_service(
            "aggregate",
            &broker,
            &names,
            aggregator_extra,
            &dir.join("aggregator.log"),
        );
        Pipeline {
            broker,
            names,
            dir,
            validator,
            aggregator,
            planner: None,
            tokens: Vec::new(),
        }
    }

    /// The pipeline with `forecastctl planner` serving the API on `http`,
    /// with the example supply plan.
    pub fn with_planner_api(test: &str, http: &str) -> Pipeline {
        Pipeline::with_planner_api_tokens(test, http, &[])
    }

    /// [`Pipeline::with_planner_api`] answering only the holders of tokens
    /// made for `roles` (`planner`, `customer:<ID>`), by
    /// `forecastctl tokens generate`; `tokens` holds them in that order.
    pub fn with_planner_api_tokens(test: &str, http: &str, roles: &[&str]) -> Pipeline {
        Pipeline::with_planner_api_args(test, http, roles, &[])
    }

    /// [`Pipeline::with_planner_api_tokens`] with `extra` planner flags.
    pub fn with_planner_api_args(
        test: &str,
        http: &str,
        roles: &[&str],
        extra: &[String],
    ) -> Pipeline {
        let mut p = Pipeline::start_with(test, &[], &[]);
        let mut args = p.names.command(&["planner"], &p.broker.brokers);
        args.extend(["--http", http, "--supply", "examples/supply.csv"].map(String::from));
        args.extend(extra.iter().cloned());
        if !roles.is_empty() {
            let file = p.dir.join("tokens.jsonl");
            let mut entries = String::new();
            for (i, role) in roles.iter().enumerate() {
                let out_file = p.dir.join(format!("token-{i}"));
                let out = run(&[
                    "tokens".into(),
                    "generate".into(),
                    "--role".into(),
                    role.to_string(),
                    "--name".into(),
                    format!("test-{i}"),
                    "--out".into(),
                    out_file.display().to_string(),
                ]);
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                entries += &String::from_utf8(out.stdout).unwrap();
                p.tokens.push(
                    std::fs::read_to_string(&out_file)
                        .unwrap()
                        .trim()
                        .to_owned(),
                );
            }
            std::fs::write(&file, entries).unwrap();
            args.extend(["--tokens".to_owned(), file.display().to_string()]);
        }
        p.planner = Some(spawn_logged(&args, &p.dir.join("planner.log")));
        p
    }

    /// GET `path` of the planner API at `http`, with the first token if
    /// there are tokens (a planner's, by convention).
    pub fn api_get(&self, http: &str, path: &str) -> (String, String) {
        crate::http_get_as(http, path, self.tokens.first().map(String::as_str))
            .unwrap_or_else(|| panic!("GET {path}: nothing answers at {http}"))
    }

    /// [`Pipeline::with_planner_api`] fed the conformance sample, once the
    /// API's demand equals replay's; also returns replay's output.
    pub fn with_planner_api_fed(test: &str, http: &str) -> (Pipeline, Value) {
        Pipeline::with_planner_api_fed_tokens(test, http, &[])
    }

    /// [`Pipeline::with_planner_api_fed`] with tokens for `roles`
    /// ([`Pipeline::with_planner_api_tokens`]); the first must be a planner's.
    pub fn with_planner_api_fed_tokens(
        test: &str,
        http: &str,
        roles: &[&str],
    ) -> (Pipeline, Value) {
        let p = Pipeline::with_planner_api_tokens(test, http, roles);
        let stream = conformance().join("stream.jsonl");
        p.submit(&stream);
        let replayed = replay(&stream);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let body: Value =
                serde_json::from_str(&p.api_get(http, "/v1/demand").1).unwrap_or_default();
            if body["rows"] == replayed["demand"] {
                return (p, replayed);
            }
            assert!(
                Instant::now() < deadline,
                "the API's demand never equalled replay's:\n{}\n{}",
                demand_diff(&body["rows"], &replayed["demand"]),
                p.logs()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The sample's accepted TENCENT document TEN-000001 under another id.
    pub fn sample_document(id: &str) -> Value {
        let text = std::fs::read_to_string(conformance().join("stream.jsonl")).unwrap();
        let line = text.lines().find(|l| l.contains("\"TEN-000001\"")).unwrap();
        let mut doc: Value = serde_json::from_str(line).unwrap();
        doc["document_id"] = id.into();
        doc
    }

    /// SIGTERM both services; they must finish in-flight work and exit 0.
    pub fn stop_gracefully(&mut self) {
        for (name, c) in [
            ("validator", &mut self.validator),
            ("aggregator", &mut self.aggregator),
        ] {
            stop_with_sigterm(c, name, &self.dir, Duration::from_secs(30));
        }
    }

    pub fn spawn_validator_with(
        broker: &Broker,
        names: &Names,
        dir: &Path,
        extra: &[&str],
    ) -> Child {
        let list = conformance().join("restricted.csv");
        let mut args = vec![RESTRICTED, list.to_str().unwrap()];
        args.extend_from_slice(extra);
        spawn_service("validate", broker, names, &args, &dir.join("validator.log"))
    }

    pub fn submit(&self, file: &Path) -> String {
        self.submit_with(file, &[])
    }

    /// `forecastctl submit` of `file` with `extra` flags; returns its summary line.
    pub fn submit_with(&self, file: &Path, extra: &[&str]) -> String {
        let mut args = self.names.command(&["submit"], &self.broker.brokers);
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(file.display().to_string());
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(stderr.contains(" sent, "), "submit: {stderr}");
        stderr.lines().last().unwrap().to_owned()
    }

    /// Starts `forecastctl allocator` beside the pipeline, with the test
    /// supplier key and the example supply plan, logging to
    /// allocator.log.
    pub fn spawn_allocator(&self) -> Child {
        let mut args = self.names.command(&["allocator"], &self.broker.brokers);
        args.extend([
            "--signing-key".to_owned(),
            test_keys().supplier.display().to_string(),
            "--supply".to_owned(),
            "examples/supply.csv".to_owned(),
            "--settle-ms".to_owned(),
            "100".to_owned(),
        ]);
        spawn_logged(&args, &self.dir.join("allocator.log"))
    }

    /// `forecastctl licences load` of `file`, which must succeed.
    pub fn load_licences(&self, file: &Path) {
        self.load_signed(&["licences", "load"], file);
    }

    /// `forecastctl screening load` of `file`, which must succeed.
    pub fn load_screening(&self, file: &Path) {
        self.load_signed(&["screening", "load"], file);
    }

    /// `forecastctl WORDS FILE` signed by the compliance key, which must
    /// succeed.
    fn load_signed(&self, words: &[&str], file: &Path) {
        let key = test_keys().compliance.display().to_string();
        self.load_as(words, &["--signing-key", &key], file);
    }

    /// `forecastctl WORDS SIGNING FILE` (`SIGNING`: `--unsigned`, or
    /// `--signing-key KEY`), which must succeed.
    pub fn load_as(&self, words: &[&str], signing: &[&str], file: &Path) {
        let mut args = self.names.command(words, &self.broker.brokers);
        args.extend(signing.iter().map(|s| s.to_string()));
        args.push(file.display().to_string());
        let out = run(&args);
        assert!(
            out.status.success(),
            "{}: {}",
            words.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn demand(&self) -> Value {
        self.demand_with(&[])
    }

    /// `forecastctl demand --format json` with `extra` flags, parsed.
    pub fn demand_with(&self, extra: &[&str]) -> Value {
        let mut words = vec!["demand", "--format", "json"];
        words.extend_from_slice(extra);
        let args = self.names.command(&words, &self.broker.brokers);
        let out = run(&args);
        assert!(
            out.status.success(),
            "demand: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn verdicts(&self) -> Vec<(Verdict, i32, i64)> {
        read_all(
            &self.broker.brokers,
            &self.names.topic("forecasts.audit"),
            Duration::from_secs(2),
        )
        .into_iter()
        .map(|r| {
            (
                wire::decode_verdict(r.value.as_deref().unwrap(), Registry::embedded()).unwrap(),
                r.partition,
                r.offset,
            )
        })
        .collect()
    }

    pub fn logs(&self) -> String {
        [
            "validator.log",
            "aggregator.log",
            "allocator.log",
            "planner.log",
        ]
        .iter()
        .map(|f| {
            format!(
                "--- {f}\n{}",
                std::fs::read_to_string(self.dir.join(f)).unwrap_or_default()
            )
        })
        .collect()
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        for c in [&mut self.validator, &mut self.aggregator]
            .into_iter()
            .chain(self.planner.as_mut())
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("service logs kept in {}", self.dir.display());
        }
    }
}

/// Sends SIGTERM to `child`, the process `name` logging to
/// `dir/<name>.log`, and requires it to exit 0 within `within`.
pub fn stop_with_sigterm(child: &mut Child, name: &str, dir: &Path, within: Duration) {
    let logs = || std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + within;
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not stop within {within:?} of SIGTERM\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        exit.success(),
        "{name} exited with {exit} after SIGTERM\n{}",
        logs()
    );
}

pub fn replay(stream: &Path) -> Value {
    replay_with(stream, &[])
}

/// `forecastctl replay --format json` of `stream` with `extra` flags.
pub fn replay_with(stream: &Path, extra: &[&str]) -> Value {
    let list = conformance().join("restricted.csv");
    let mut args: Vec<String> = vec![
        "replay".into(),
        "--format".into(),
        "json".into(),
        RESTRICTED.into(),
        list.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(stream.display().to_string());
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A plain HTTP GET on loopback: status line and body.
pub fn http_get(addr: &str, path: &str) -> (String, String) {
    crate::http_get(addr, path).unwrap_or_else(|| panic!("GET {path}: nothing answers at {addr}"))
}
