//! Harness of the end-to-end tests: a tansu broker per test (or an external
//! one named by `FORECAST_TEST_BROKERS`), unique topic names, the services
//! as child processes of the real `forecastctl` binary, and readers that
//! take a topic in full.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod pipeline;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

pub fn forecastctl() -> &'static str {
    env!("CARGO_BIN_EXE_forecastctl")
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn conformance() -> PathBuf {
    std::env::var_os("FORECAST_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/conformance"))
}

/// The tansu binary: `FORECAST_TANSU`, the CI cache, or PATH.
fn tansu() -> PathBuf {
    if let Some(p) = std::env::var_os("FORECAST_TANSU") {
        return p.into();
    }
    let cached = PathBuf::from("/var/cache/forecast/tansu-0.6.0/bin/tansu");
    if cached.exists() {
        return cached;
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("tansu")).find(|p| p.exists()))
        .expect("no tansu broker: set FORECAST_TANSU, install it (see .ci/run), or set FORECAST_TEST_BROKERS")
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
    /// The `--topic-*` flags of every command.
    pub fn topic_flags(&self) -> Vec<String> {
        let mut v = Vec::new();
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
    let mut args = vec![
        service.to_owned(),
        "--brokers".to_owned(),
        broker.brokers.clone(),
    ];
    args.extend(names.topic_flags());
    args.push("--group".into());
    args.push(format!("{service}-{}", names.suffix));
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(forecastctl())
        .args(&args)
        .current_dir(repo())
        .env("RUST_LOG", "info,rdkafka=warn")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap()
}

/// One record of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// Every record of `topic`, read until it has been quiet for `quiet`.
pub fn read_all(brokers: &str, topic: &str, quiet: Duration) -> Vec<Record> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "e2e-reader")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("max.partition.fetch.bytes", "16777216")
        .set("receive.message.max.bytes", "67109376")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Offset(0))
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default(),
            });
            last = Instant::now();
        }
    }
    out
}

/// A raw record: key and value, either possibly null.
pub type RawRecord<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Produces raw records (poison pills) straight to a topic.
pub fn produce_raw(brokers: &str, topic: &str, records: &[RawRecord<'_>]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("message.max.bytes", "10000000")
        .create()
        .unwrap();
    for (key, value) in records {
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        if let Some(k) = key {
            r = r.key(k);
        }
        if let Some(v) = value {
            r = r.payload(v);
        }
        p.send(r).map_err(|(e, _)| e).unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// The conformance sample repeated `copies` times with fresh document ids:
/// every rule code, every sequencing case, duplicates and lines that do not
/// decode, in the proportions of a real stream.
pub fn generated_stream(copies: usize, path: &Path) -> usize {
    let text = std::fs::read_to_string(conformance().join("stream.jsonl")).unwrap();
    let mut out = String::new();
    let mut n = 0;
    for k in 0..copies {
        for line in text
            .trim_start_matches('\u{feff}')
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let renamed = match serde_json::from_str::<serde_json::Value>(line) {
                Ok(mut v) if v.get("document_id").is_some_and(|d| d.is_string()) => {
                    let id = format!("{}-{k}", v["document_id"].as_str().unwrap());
                    v["document_id"] = id.into();
                    v.to_string()
                }
                _ => line.to_owned(),
            };
            out.push_str(&renamed);
            out.push('\n');
            n += 1;
        }
    }
    std::fs::write(path, out).unwrap();
    n
}

/// Waits until `check` holds, polling; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Counts of items, for multiset comparison.
pub fn multiset<T: std::hash::Hash + Eq>(items: impl IntoIterator<Item = T>) -> HashMap<T, usize> {
    let mut m = HashMap::new();
    for i in items {
        *m.entry(i).or_insert(0) += 1;
    }
    m
}
