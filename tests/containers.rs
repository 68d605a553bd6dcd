//! The pipeline as containers, for the suites beside this crate
//! (`faults.rs`, `deploy.rs`): a tansu broker container (memory storage, or
//! sqlite on a bind-mounted folder when a test restarts the broker), the
//! validator and aggregator as containers of the local `forecastctl` image on
//! a Docker network of the test's own (started with testcontainers), and
//! `forecastctl` one-shot containers (`submit`, `demand`, `replay`) on the
//! same network. Faults are injected with the Docker CLI (kill, start,
//! pause, network disconnect). A failing test keeps every container's log
//! in its folder and says where.
//!
//! Images come from `deploy/build-images`. `FORECAST_TEST_BROKERS` points
//! the suites at an external broker instead (it must be reachable from the
//! containers; scenarios that restart the broker then fail, saying so).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub use crate::http_get;
use crate::outcome::{Observed, compare};
use crate::stream::conformance;
use serde_json::Value;
use testcontainers::core::{Mount, WaitFor};
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, GenericImage, ImageExt};

/// The pipeline image (`deploy/build-images`; tag from `FORECAST_IMAGE_TAG`, default `dev`).
pub fn forecastctl_image() -> (String, String) {
    (
        "forecast/forecastctl".into(),
        std::env::var("FORECAST_IMAGE_TAG").unwrap_or_else(|_| "dev".into()),
    )
}

const TANSU_IMAGE: (&str, &str) = ("forecast/tansu", "0.6.0");
/// Where the test folder is mounted in every forecastctl container.
const DATA: &str = "/data";
const HTTP_PORT: u16 = 9464;

/// Broker storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Memory,
    /// sqlite in a bind-mounted folder: survives a broker restart.
    Sqlite,
}

/// Runs `docker` with `args`; returns stdout, panicking with stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The address of a container on its (only) network.
pub fn container_ip(id: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        id,
    ])
    .trim()
    .to_owned()
}

/// A service container.
pub struct Service {
    pub container: Container<GenericImage>,
    pub kind: &'static str,
}

impl Service {
    pub fn id(&self) -> String {
        self.container.id().to_owned()
    }

    /// `host:port` of its /metrics (the address may change on reconnect).
    pub fn http(&self) -> String {
        format!("{}:{HTTP_PORT}", container_ip(self.container.id()))
    }

    /// `forecast_records_in_total`, or None when it does not answer.
    pub fn records_in(&self) -> Option<u64> {
        let (_, body) = http_get(&self.http(), "/metrics")?;
        body.lines()
            .find(|l| l.starts_with("forecast_records_in_total"))?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()
    }
}

/// A broker, topics and services for one test.
pub struct Cluster {
    pub name: String,
    pub network: String,
    /// The test's folder, mounted at /data in forecastctl containers.
    pub dir: PathBuf,
    pub brokers: String,
    broker: Option<Container<GenericImage>>,
    pub services: BTreeMap<String, Service>,
    /// Faults injected, in order, for the summary.
    pub faults: Vec<String>,
    /// Logs of the services stopped so far, saved when they stopped.
    stopped_logs: Vec<String>,
    started: Instant,
}

impl Cluster {
    /// Starts a broker (or takes `FORECAST_TEST_BROKERS`) and creates the topics.
    pub fn start(test: &str, storage: Storage) -> Cluster {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("fc-{test}-{}-{nanos}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(dir.join("broker")).unwrap();
        std::fs::copy(
            conformance().join("restricted.csv"),
            dir.join("restricted.csv"),
        )
        .expect("the conformance sample (see FORECAST_CONFORMANCE_DIR)");
        // The services' keys, where the containers read them.
        let keys = crate::processes::test_keys();
        std::fs::copy(&keys.stage, dir.join("stage-keys.jsonl")).unwrap();
        std::fs::copy(&keys.roles, dir.join("roles.jsonl")).unwrap();
        let network = name.clone();
        let (broker, brokers) = match std::env::var("FORECAST_TEST_BROKERS") {
            Ok(b) => {
                docker(&["network", "create", &network]);
                (None, b)
            }
            Err(_) => {
                let storage_url = match storage {
                    Storage::Memory => "memory://tansu/".to_owned(),
                    Storage::Sqlite => "sqlite:///var/lib/tansu/tansu.db".to_owned(),
                };
                let c = GenericImage::new(TANSU_IMAGE.0, TANSU_IMAGE.1)
                    .with_wait_for(WaitFor::message_on_stdout("tansu: listening"))
                    .with_network(&network)
                    .with_container_name(format!("{name}-broker"))
                    .with_env_var("STORAGE", storage_url)
                    // Its group coordinator's evictions and leader choices
                    // (info) for the digest of a failed scenario;
                    // FORECAST_TEST_BROKER_LOG overrides (e.g. `debug`).
                    .with_env_var(
                        "RUST_LOG",
                        std::env::var("FORECAST_TEST_BROKER_LOG").unwrap_or_else(|_| {
                            "warn,tansu_broker::coordinator::group=info".into()
                        }),
                    )
                    .with_mount(Mount::bind_mount(
                        dir.join("broker").display().to_string(),
                        "/var/lib/tansu",
                    ))
                    .start()
                    .expect("the tansu image (run deploy/build-images)");
                let brokers = format!("{}:9092", container_ip(c.id()));
                (Some(c), brokers)
            }
        };
        let cluster = Cluster {
            name,
            network,
            dir,
            brokers,
            broker,
            services: BTreeMap::new(),
            faults: Vec::new(),
            stopped_logs: Vec::new(),
            started: Instant::now(),
        };
        let out = cluster.run(&["topics", "create", "--partitions", "3"]);
        assert!(
            out.status.success(),
            "topics create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    /// The flags every forecastctl command takes here.
    fn common_flags(&self) -> Vec<String> {
        vec!["--brokers".into(), self.brokers.clone()]
    }

    /// Runs a forecastctl command in a one-shot container on the network.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        let (image, tag) = forecastctl_image();
        let mount = format!("{}:{DATA}:ro", self.dir.display());
        let image = format!("{image}:{tag}");
        let mut cmd = Command::new("docker");
        cmd.args([
            "run",
            "--rm",
            "--network",
            &self.network,
            "-v",
            &mount,
            "-e",
            "RUST_LOG=warn",
            "-e",
            &format!("FORECAST_STAGE_KEYS={DATA}/stage-keys.jsonl"),
            "-e",
            &format!("FORECAST_ROLE_KEYS={DATA}/roles.jsonl"),
            &image,
        ]);
        cmd.arg(args[0]);
        if args[0] == "topics" {
            cmd.arg(args[1]);
            cmd.args(self.common_flags());
            cmd.args(&args[2..]);
        } else if args[0] == "replay" {
            cmd.args(&args[1..]);
        } else {
            cmd.args(self.common_flags());
            cmd.args(&args[1..]);
        }
        cmd.output().unwrap()
    }

    /// Starts a service container: `validate` (with the conformance
    /// restricted-party list) or `aggregate`, named `name`.
    pub fn start_service(&mut self, name: &str, kind: &'static str) {
        self.start_service_with(name, kind, &[]);
    }

    /// [`Cluster::start_service`] with extra flags.
    pub fn start_service_with(&mut self, name: &str, kind: &'static str, extra: &[&str]) {
        let (image, tag) = forecastctl_image();
        let mut cmd = vec![kind.to_owned()];
        cmd.extend(self.common_flags());
        cmd.extend(["--http".into(), format!("0.0.0.0:{HTTP_PORT}")]);
        // librdkafka's group state changes, for the log digest of a failed
        // scenario: where a member that stopped consuming was waiting.
        cmd.extend(["-X".into(), "debug=cgrp".into()]);
        if kind == "validate" {
            cmd.extend([
                "--restricted-parties".into(),
                format!("{DATA}/restricted.csv"),
            ]);
        }
        cmd.extend(extra.iter().map(|s| (*s).to_owned()));
        let started = if kind == "validate" {
            "validator started"
        } else {
            "aggregator started"
        };
        let container = GenericImage::new(image, tag)
            .with_wait_for(WaitFor::message_on_stderr(started))
            .with_cmd(cmd)
            .with_network(&self.network)
            .with_container_name(format!("{}-{name}", self.name))
            .with_env_var("RUST_LOG", "info,rdkafka=warn,librdkafka=debug")
            .with_env_var("FORECAST_LOG_FORMAT", "text")
            .with_env_var("FORECAST_STAGE_KEYS", format!("{DATA}/stage-keys.jsonl"))
            .with_env_var("FORECAST_ROLE_KEYS", format!("{DATA}/roles.jsonl"))
            .with_mount(Mount::bind_mount(self.dir.display().to_string(), DATA))
            .start()
            .unwrap_or_else(|e| {
                panic!("service {name}: {e} (images built by deploy/build-images?)")
            });
        self.services
            .insert(name.to_owned(), Service { container, kind });
    }

    pub fn service(&self, name: &str) -> &Service {
        &self.services[name]
    }

    /// Waits until the service's /metrics show it consuming (at least `n` records).
    pub fn wait_consuming(&self, name: &str, n: u64, timeout: Duration) {
        self.wait_until(&format!("{name} to consume {n} records"), timeout, || {
            self.service(name).records_in().is_some_and(|r| r >= n)
        });
    }

    /// Waits until `name` has logged a line containing `text`.
    pub fn wait_log(&self, name: &str, text: &str, timeout: Duration) {
        self.wait_until(&format!("{name} to log {text:?}"), timeout, || {
            let out = Command::new("docker")
                .args(["logs", &self.service(name).id()])
                .output()
                .unwrap();
            let logged = |b: &[u8]| String::from_utf8_lossy(b).contains(text);
            logged(&out.stdout) || logged(&out.stderr)
        });
    }

    /// Polls `done`; fails saying `what` was not reached (the logs follow
    /// the failure) when it is still false after `timeout`.
    fn wait_until(&self, what: &str, timeout: Duration, done: impl Fn() -> bool) {
        crate::wait_until(timeout, &format!("{what} (the logs follow)"), done);
    }

    /// Waits until the services' consumed counts stop moving for 2 s.
    pub fn wait_idle(&self, names: &[&str], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let counts = || {
            names
                .iter()
                .map(|n| self.service(n).records_in())
                .collect::<Vec<_>>()
        };
        let mut last = counts();
        let mut since = Instant::now();
        while since.elapsed() < Duration::from_secs(2) {
            assert!(
                Instant::now() < deadline,
                "{names:?} never went idle (the logs follow)"
            );
            std::thread::sleep(Duration::from_millis(250));
            let now = counts();
            if now != last {
                last = now;
                since = Instant::now();
            }
        }
    }

    /// Notes a fault with the time since start.
    pub fn fault(&mut self, what: String) {
        eprintln!(
            "[{}] +{:.1}s {what}",
            self.name,
            self.started.elapsed().as_secs_f64()
        );
        self.faults.push(what);
    }

    /// SIGKILL, then start the same container again (same hostname, so the
    /// same static group membership id).
    pub fn kill_and_restart(&mut self, name: &str) {
        let id = self.service(name).id();
        docker(&["kill", "--signal", "KILL", &id]);
        docker(&["start", &id]);
        self.fault(format!("SIGKILL {name}, restarted"));
    }

    /// Sends the broker `signal` (`TERM` or `KILL`), waits until it has
    /// exited, and starts the same container again (same storage folder,
    /// same address on the test's network, so clients reconnect to it).
    pub fn restart_broker(&mut self, signal: &str) {
        let id = self
            .broker
            .as_ref()
            .expect("a broker restart needs the test's own broker (unset FORECAST_TEST_BROKERS)")
            .id()
            .to_owned();
        let before = container_ip(&id);
        docker(&["kill", "--signal", signal, &id]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while docker(&["inspect", "-f", "{{.State.Running}}", &id]).trim() == "true" {
            assert!(
                Instant::now() < deadline,
                "the broker still runs 60 s after SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let code = docker(&["inspect", "-f", "{{.State.ExitCode}}", &id]);
        docker(&["start", &id]);
        let after = container_ip(&id);
        assert_eq!(
            before, after,
            "the broker came back on another address; its clients cannot follow"
        );
        self.fault(format!(
            "broker SIG{signal} (exit code {}), restarted (sqlite storage)",
            code.trim()
        ));
    }

    /// SIGTERM (the service leaves its group cleanly), then removes it;
    /// its log is saved first, for the report of a failure after it.
    pub fn stop_service(&mut self, name: &str) {
        let svc = self.services.remove(name).unwrap();
        docker(&["stop", "--time", "30", svc.container.id()]);
        let log = self.save_log(name, svc.container.id());
        self.stopped_logs.push(log);
        let code = docker(&["inspect", "-f", "{{.State.ExitCode}}", svc.container.id()]);
        assert_eq!(code.trim(), "0", "{name} exited with {code} after SIGTERM");
        self.fault(format!("SIGTERM {name} (scaled down)"));
    }

    /// Submits a file of the test folder; returns how many were sent.
    pub fn submit(&self, file: &Path) -> usize {
        let name = file.file_name().unwrap().to_str().unwrap();
        let out = self.run(&["submit", &format!("{DATA}/{name}")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let summary = stderr
            .lines()
            .find(|l| l.contains(" sent, "))
            .unwrap_or_else(|| panic!("submit {name}: {stderr}"));
        summary.split(' ').next().unwrap().parse().unwrap()
    }

    /// `forecastctl demand --format json` from a container, or its error.
    pub fn demand(&self) -> Result<Value, String> {
        let out = self.run(&["demand", "--format", "json"]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    }

    /// `forecastctl replay --format json` of a file of the test folder, from a container.
    pub fn replay(&self, file: &Path) -> Value {
        let name = file.file_name().unwrap().to_str().unwrap();
        let out = self.run(&[
            "replay",
            "--format",
            "json",
            "--restricted-parties",
            &format!("{DATA}/restricted.csv"),
            &format!("{DATA}/{name}"),
        ]);
        assert!(
            out.status.success(),
            "replay: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Waits for the demand to equal replay's, then compares everything;
    /// panics with the report (documents lost or counted twice, by id) and
    /// the logs. Prints the scenario's summary.
    pub fn assert_agrees_with_replay(&self, stream: &Path, sent: usize, poison: usize) {
        let expected = self.replay(stream);
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut demand = Value::Null;
        while Instant::now() < deadline {
            match self.demand() {
                Ok(d) if d == expected["demand"] => {
                    demand = d;
                    break;
                }
                Ok(d) => demand = d,
                // A broker that was restarted may be slow to answer at first.
                Err(e) => eprintln!("[{}] demand not read yet: {}", self.name, e.trim()),
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        assert!(
            !demand.is_null(),
            "{}: the demand could never be read (the logs follow)",
            self.name
        );
        let observed = Observed::read(&self.brokers, str::to_owned, demand);
        if let Err(report) = compare(&expected, &observed, sent, poison) {
            panic!("{}: {report}\n(the logs follow)", self.name);
        }
        eprintln!(
            "[{}] passed: {sent} documents + {poison} poison pills ({} records), faults: [{}], {:.1} s",
            self.name,
            observed.submitted.len(),
            self.faults.join("; "),
            self.started.elapsed().as_secs_f64()
        );
    }

    /// Container `id`'s log, saved in the test folder as `name.log`.
    fn save_log(&self, name: &str, id: &str) -> String {
        let out = Command::new("docker").args(["logs", id]).output().unwrap();
        let path = self.dir.join(format!("{name}.log"));
        let mut text = out.stdout;
        text.extend_from_slice(&out.stderr);
        std::fs::write(&path, &text).unwrap();
        path.display().to_string()
    }

    /// Every container's log, saved in the test folder (those of services
    /// stopped earlier were saved then): where, and the lines of each that
    /// tell what the group and the services did (the folder may be gone by
    /// the time someone reads a CI failure).
    pub fn logs(&self) -> String {
        let mut saved = self.stopped_logs.clone();
        let mut ids: Vec<(String, String)> = self
            .services
            .iter()
            .map(|(n, s)| (n.clone(), s.id()))
            .collect();
        if let Some(b) = &self.broker {
            ids.push(("broker".into(), b.id().to_owned()));
        }
        for (name, id) in ids {
            saved.push(self.save_log(&name, &id));
        }
        let digests: String = saved.iter().map(|path| digest(path)).collect();
        format!("{digests}container logs: {}", saved.join(" "))
    }
}

/// The last lines of a saved log about the group (assignments,
/// revocations), re-reads, warnings and errors.
fn digest(path: &str) -> String {
    const LINES: usize = 25;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("librdkafka:"))
        .filter(|l| {
            mentions(
                l,
                &[
                    "partitions",
                    "passed over",
                    "WARN",
                    "ERROR",
                    "stopped",
                    "rebalance",
                ],
            )
        })
        .collect();
    let shown = &lines[lines.len().saturating_sub(LINES)..];
    // The member's last group states and the responses behind them
    // (librdkafka `debug=cgrp`: the leader and member ids of each join, the
    // sync's outcome, a session that timed out), or the broker's
    // coordinator (evictions, leaders chosen).
    let joins: Vec<&str> = text
        .lines()
        .filter(|l| {
            mentions(
                l,
                &[
                    "join state",
                    "JoinGroup response",
                    "SyncGroup response",
                    "session timed out",
                    "missed heartbeat",
                    "tansu_broker::coordinator",
                ],
            )
        })
        .collect();
    let last_joins = &joins[joins.len().saturating_sub(12)..];
    format!(
        "--- {path}: {} of {} such lines\n{}\n--- its last group events:\n{}\n",
        shown.len(),
        lines.len(),
        shown.join("\n"),
        last_joins.join("\n")
    )
}

/// Whether `line` contains any of `words`.
fn mentions(line: &str, words: &[&str]) -> bool {
    words.iter().any(|w| line.contains(w))
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // FORECAST_TEST_KEEP=1 keeps a passing scenario's folder and logs
        // too (to compare with a failing one).
        let panicking = std::thread::panicking();
        let keep = panicking || std::env::var_os("FORECAST_TEST_KEEP").is_some();
        if panicking {
            eprintln!("{}", self.logs());
        } else if keep {
            eprintln!("[{}] kept: {}", self.name, self.logs());
        }
        // Containers first (testcontainers removes them), then the network.
        self.services.clear();
        self.broker = None;
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
        if !keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
