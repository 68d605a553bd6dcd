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

/// `forecastctl keys generate --customer customer --out dir/name extra...`,
/// its registry entry appended to `registry`; returns the private key's
/// path. Fails the test unless it succeeds and prints the entry alone.
pub fn generate_key(
    dir: &Path,
    registry: &Path,
    customer: &str,
    name: &str,
    extra: &[&str],
) -> PathBuf {
    let prefix = dir.join(name);
    let mut args = vec![
        "keys",
        "generate",
        "--customer",
        customer,
        "--out",
        prefix.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = forecastctl_clean(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Standard output is the registry entry alone: one JSON line.
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let entry: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(entry["customer_id"], customer);
    assert_eq!(entry["revoked"], false);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(registry)
        .unwrap();
    std::io::Write::write_all(&mut file, stdout.as_bytes()).unwrap();
    prefix.with_extension("key")
}

/// `forecastctl sign --signing-key key input`, written to `output`.
pub fn sign_file(key: &Path, input: &Path, output: &Path) {
    let out = forecastctl_clean(&[
        "sign",
        "--signing-key",
        key.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(output, &out.stdout).unwrap();
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
        || PathBuf::from(forecast_broker::DEFAULT_CACHE_DIR),
        PathBuf::from,
    );
    forecast_broker::tansu_path(explicit.as_deref(), &cache)
        .unwrap_or_else(|e| panic!("no tansu broker ({e:#}); or set FORECAST_TEST_BROKERS"))
}

/// A broker for one test, stopped when dropped.
pub struct Broker {
    pub brokers: String,
    _tansu: Option<forecast_broker::Tansu>,
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

/// A SASL/SCRAM principal of the broker: what its clients pass in the
/// environment (`FORECAST_KAFKA_<NAME>`, the way the docs tell operators to
/// pass secrets), never on the command line.
#[derive(Clone, Debug)]
pub struct Principal {
    pub name: String,
    pub password: String,
}

impl Principal {
    /// `name` with a password of its own (random per test run).
    pub fn new(name: &str) -> Principal {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Principal {
            name: name.to_owned(),
            password: format!("pw-{name}-{nanos:x}-{}", std::process::id()),
        }
    }

    /// The same name with another password.
    pub fn with_password(&self, password: &str) -> Principal {
        Principal {
            name: self.name.clone(),
            password: password.to_owned(),
        }
    }

    /// The client settings of this principal, as environment variables.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("FORECAST_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("FORECAST_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256"),
            ("FORECAST_KAFKA_SASL_USERNAME", &self.name),
            ("FORECAST_KAFKA_SASL_PASSWORD", &self.password),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec()
    }
}

impl Broker {
    /// A broker (sqlite storage in its own folder) that requires SASL/SCRAM
    /// and knows only `users`. No `FORECAST_TEST_BROKERS` here: an external
    /// broker's users are not this test's to make.
    pub fn start_sasl(users: &[&Principal]) -> Broker {
        Broker::own("tansu-sasl", |dir| {
            let credentials = dir.join("scram-credentials");
            let lines: String = users
                .iter()
                .map(|u| format!("{}:{}\n", u.name, u.password))
                .collect();
            std::fs::write(&credentials, lines).unwrap();
            // tansu reads the URL's path relative to its working folder: an
            // absolute path takes one slash more.
            let storage = format!("sqlite:///{}", dir.join("tansu.db").display());
            let extra = vec![
                "--authentication".to_owned(),
                "--scram-credentials".to_owned(),
                credentials.display().to_string(),
            ];
            (storage, extra)
        })
    }

    pub fn start() -> Broker {
        if let Ok(brokers) = std::env::var("FORECAST_TEST_BROKERS") {
            return Broker {
                brokers,
                _tansu: None,
                _dir: None,
            };
        }
        Broker::own("tansu", |_| ("memory://tansu/".to_owned(), Vec::new()))
    }

    /// A tansu of this test's own on a free port, its log in the folder
    /// `forecast-<kind>-<port>` (removed when dropped); `prepare` writes what
    /// else it needs there and returns the storage URL and the extra
    /// arguments of `tansu broker`.
    fn own(kind: &str, prepare: impl FnOnce(&Path) -> (String, Vec<String>)) -> Broker {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("forecast-{kind}-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (storage, extra) = prepare(&dir);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let tansu = forecast_broker::Tansu::start_with(
            &tansu(),
            port,
            Some(&dir.join("broker.log")),
            &storage,
            &extra,
        )
        .unwrap_or_else(|e| panic!("tansu ({kind}) does not start: {e:#}"));
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
            ("--topic-licences", "licences.decisions"),
            ("--topic-licence-demand", "demand.by-licence"),
            ("--topic-screening", "screening.lists"),
            ("--topic-commits", "commits"),
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

/// The keys every pipeline of this test process runs with (docs/security.md,
/// "Trust between stages"): a stage key each for the validator and the
/// aggregator, and a registry of a compliance and an operator key, whose
/// private keys sign `licences load` and `supply load`.
#[derive(Debug)]
pub struct TestKeys {
    /// The stage-key file (`FORECAST_STAGE_KEYS`).
    pub stage: PathBuf,
    /// The role registry (`FORECAST_ROLE_KEYS`).
    pub roles: PathBuf,
    /// The compliance office's private key (`licences load --signing-key`).
    pub compliance: PathBuf,
    /// The operator's private key (`supply load --signing-key`).
    pub operator: PathBuf,
    /// The supplier's private key (`allocator --signing-key`).
    pub supplier: PathBuf,
}

/// The keys of this test process, made once.
pub fn test_keys() -> &'static TestKeys {
    static KEYS: std::sync::OnceLock<TestKeys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        use forecast_model::attest::{Role, StageKeyEntry};
        use forecast_model::keys::KeyEntry;
        use forecast_model::signing::{self, Signer};
        let dir = std::env::temp_dir().join(format!("forecast-test-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let since: forecast_model::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let stage: String = [Role::Validator, Role::Aggregator]
            .map(|r| StageKeyEntry::generate(r, since).unwrap().line() + "\n")
            .concat();
        let mut roles = String::new();
        let mut private = Vec::new();
        for role in [Role::Compliance, Role::Operator, Role::Supplier] {
            let key = signing::generate_key().unwrap();
            let pem = signing::private_key_pem(&key).unwrap();
            let entry = KeyEntry {
                role,
                ..KeyEntry::for_signer(&Signer::new(key, None), "", since, None)
            };
            roles += &(serde_json::to_string(&entry).unwrap() + "\n");
            let path = dir.join(format!("{role}.key"));
            std::fs::write(&path, pem.as_bytes()).unwrap();
            private.push(path);
        }
        let keys = TestKeys {
            stage: dir.join("stage-keys.jsonl"),
            roles: dir.join("roles.jsonl"),
            supplier: private.pop().unwrap(),
            operator: private.pop().unwrap(),
            compliance: private.pop().unwrap(),
        };
        std::fs::write(&keys.stage, stage).unwrap();
        std::fs::write(&keys.roles, roles).unwrap();
        keys
    })
}

/// `FORECAST_STAGE_KEYS` and `FORECAST_ROLE_KEYS` of [`test_keys`].
pub fn key_env() -> [(&'static str, &'static Path); 2] {
    let keys = test_keys();
    [
        ("FORECAST_STAGE_KEYS", keys.stage.as_path()),
        ("FORECAST_ROLE_KEYS", keys.roles.as_path()),
    ]
}

/// `replay --format json` with the examples' policy and restricted parties.
pub const EXAMPLES_REPLAY: [&str; 7] = [
    "replay",
    "--format",
    "json",
    "--policy",
    "examples/policy.toml",
    "--restricted-parties",
    "examples/restricted-parties.csv",
];

/// Runs `forecastctl` to completion.
pub fn run(args: &[String]) -> std::process::Output {
    run_as(args, None)
}

/// [`run`] as `principal` of a broker that requires SASL.
pub fn run_as(args: &[String], principal: Option<&Principal>) -> std::process::Output {
    Command::new(forecastctl())
        .args(args)
        .current_dir(repo())
        .env("RUST_LOG", "warn")
        .envs(key_env())
        .envs(principal.map(Principal::env).unwrap_or_default())
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
    spawn_logged_as(args, log, None)
}

/// [`spawn_logged`] as `principal` of a broker that requires SASL.
pub fn spawn_logged_as(args: &[String], log: &Path, principal: Option<&Principal>) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(forecastctl())
        .args(args)
        .current_dir(repo())
        .env("RUST_LOG", "info,rdkafka=warn")
        .envs(key_env())
        .envs(principal.map(Principal::env).unwrap_or_default())
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
