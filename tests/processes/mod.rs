//! The pipeline as processes, for `crates/cli/tests`: a tansu broker per
//! test (or an external one named by `FORECAST_TEST_BROKERS`), unique topic
//! names, the services as child processes of the real `forecastctl` binary
//! ([`pipeline`]), and readers that take a topic in full.

pub mod pipeline;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The `forecastctl` binary: `FORECASTCTL`, or the one cargo built beside
/// the running test (`target/<profile>/forecastctl`; `cargo test -p
/// forecastctl` builds it before its tests).
pub fn forecastctl() -> PathBuf {
    if let Some(p) = std::env::var_os("FORECASTCTL") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> -> target/<profile>/forecastctl
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("forecastctl"))
        .expect("a target folder");
    assert!(
        bin.exists(),
        "{} not built: run the tests with cargo test -p forecastctl, or set FORECASTCTL",
        bin.display()
    );
    bin
}

/// Runs `forecastctl args` to completion from the repository's root, with
/// standard input closed and none of the environment's `FORECAST_*`
/// settings (a developer's own `FORECAST_POLICY` or `FORECAST_KEY_ID`
/// would change the outputs the tests pin).
pub fn forecastctl_clean(args: &[&str]) -> std::process::Output {
    let mut command = Command::new(forecastctl());
    command.args(args).current_dir(repo()).stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FORECAST_") {
            command.env_remove(name);
        }
    }
    command.output().expect("forecastctl runs")
}

/// The repository's root (the services run from there, as `up` does).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The broker `forecastctl up` runs: `FORECAST_TANSU`, or the build of
/// scripts/install-tansu (made the first time).
fn tansu() -> PathBuf {
    let explicit = std::env::var_os("FORECAST_TANSU").map(PathBuf::from);
    let cache = std::env::var_os("FORECAST_CACHE_DIR").map_or_else(
        || PathBuf::from(forecastctl::up::DEFAULT_CACHE_DIR),
        PathBuf::from,
    );
    forecastctl::up::tansu_path(explicit.as_deref(), &cache)
        .unwrap_or_else(|e| panic!("no tansu broker ({e:#}); or set FORECAST_TEST_BROKERS"))
}

/// A broker for one test, stopped when dropped.
pub struct Broker {
    pub brokers: String,
    _tansu: Option<forecastctl::up::Tansu>,
    _dir: Option<TempDir>,
}

/// A folder removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free `127.0.0.1:port`.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    pub fn start() -> Broker {
        if let Ok(brokers) = std::env::var("FORECAST_TEST_BROKERS") {
            return Broker {
                brokers,
                _tansu: None,
                _dir: None,
            };
        }
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("forecast-tansu-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let tansu = forecastctl::up::Tansu::start(&tansu(), port, Some(&dir.join("broker.log")))
            .expect("tansu starts");
        Broker {
            brokers: tansu.brokers.clone(),
            _tansu: Some(tansu),
            _dir: Some(TempDir(dir)),
        }
    }
}

/// Topic names and groups unique to one test.
#[derive(Clone, Debug)]
pub struct Names {
    pub suffix: String,
}

impl Names {
    pub fn new(test: &str) -> Names {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Names {
            suffix: format!("{test}-{}-{nanos}", std::process::id()),
        }
    }
    pub fn topic(&self, base: &str) -> String {
        format!("{base}.{}", self.suffix)
    }
    /// A `forecastctl` command line: `words`, then `--brokers` and this
    /// test's `--topic-*` flags.
    pub fn command(&self, words: &[&str], brokers: &str) -> Vec<String> {
        let mut v: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        v.push("--brokers".into());
        v.push(brokers.to_owned());
        for (flag, base) in [
            ("--topic-submitted", "forecasts.submitted"),
            ("--topic-validated", "forecasts.validated"),
            ("--topic-rejected", "forecasts.rejected"),
            ("--topic-audit", "forecasts.audit"),
            ("--topic-demand", "demand.by-customer"),
            ("--topic-supply", "supply.plan"),
        ] {
            v.push(flag.to_owned());
            v.push(self.topic(base));
        }
        v
    }
}

/// A broker, the names of test `test`, a folder `forecast-<kind>-<suffix>`
/// in the temporary directory, and the topics, created with `partitions`
/// partitions each.
pub fn broker_with_topics(test: &str, kind: &str, partitions: u32) -> (Broker, Names, PathBuf) {
    let broker = Broker::start();
    let names = Names::new(test);
    let dir = std::env::temp_dir().join(format!("forecast-{kind}-{}", names.suffix));
    std::fs::create_dir_all(&dir).unwrap();
    let mut args = names.command(&["topics", "create"], &broker.brokers);
    args.extend(["--partitions".into(), partitions.to_string()]);
    let out = run(&args);
    assert!(
        out.status.success(),
        "topics create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (broker, names, dir)
}

/// Runs `forecastctl` to completion.
pub fn run(args: &[String]) -> std::process::Output {
    Command::new(forecastctl())
        .args(args)
        .current_dir(repo())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// Starts a service (`validate` or `aggregate`) as a child process.
pub fn spawn_service(
    service: &str,
    broker: &Broker,
    names: &Names,
    extra: &[&str],
    log: &Path,
) -> Child {
    let mut args = names.command(&[service], &broker.brokers);
    args.push("--group".into());
    args.push(format!("{service}-{}", names.suffix));
    args.extend(extra.iter().map(|s| s.to_string()));
    spawn_logged(&args, log)
}

/// Starts `forecastctl args`, its output appended to `log`.
pub fn spawn_logged(args: &[String], log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(forecastctl())
        .args(args)
        .current_dir(repo())
        .env("RUST_LOG", "info,rdkafka=warn")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap()
}

pub use crate::kafka::*;
pub use crate::outcome::{Observed, compare, demand_diff};
pub use crate::stream::{conformance, generated_stream, poison_pills};
pub use crate::{multiset, wait_until};
