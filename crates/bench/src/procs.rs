//! The processes a run measures: the services as `forecastctl` child
//! processes, and what `/proc` says of their CPU and memory.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::probe::{Progress, time_until_processed, value_in};
use crate::report::Timed;
use anyhow::Context;
use forecast_kafka::KafkaArgs;
use forecast_runtime::config::TopicArgs;

pub(crate) fn forecastctl() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("forecastctl")))
        .unwrap_or_else(|| "forecastctl".into())
}

/// The stage keys the services of this run attest with and believe
/// (docs/security.md, "Trust between stages"), made once per run.
fn stage_keys() -> &'static Path {
    static KEYS: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        use forecast_model::attest::{Role, StageKeyEntry};
        let path =
            std::env::temp_dir().join(format!("forecast-bench-keys-{}.jsonl", std::process::id()));
        let since = forecast_model::Timestamp::from_millis(0);
        let lines: String = [Role::Validator, Role::Aggregator]
            .map(|r| {
                StageKeyEntry::generate(r, since)
                    .map(|e| e.line() + "\n")
                    .unwrap_or_default()
            })
            .concat();
        let _ = std::fs::write(&path, lines);
        path
    })
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A service child process with its metrics endpoint.
pub(crate) struct Service {
    pub(crate) child: Child,
    pub(crate) http: String,
    pub(crate) name: &'static str,
    /// The broker's process, whose CPU its timed figures take in too
    /// (`None`: not started by the harness, or not asked for).
    pub(crate) broker: Option<u32>,
}

impl Service {
    pub(crate) fn validator(
        kafka: &KafkaArgs,
        t: &TopicArgs,
        group: &str,
        policy: &Path,
    ) -> anyhow::Result<Service> {
        let mut args = member_of(group);
        args.extend(["--policy".into(), policy.display().to_string()]);
        Service::start("validator", "validate", kafka, t, &args)
    }

    pub(crate) fn aggregator(
        kafka: &KafkaArgs,
        t: &TopicArgs,
        group: &str,
    ) -> anyhow::Result<Service> {
        Service::start("aggregator", "aggregate", kafka, t, &member_of(group))
    }

    pub(crate) fn planner(kafka: &KafkaArgs, t: &TopicArgs) -> anyhow::Result<Service> {
        Service::start("planner", "planner", kafka, t, &[])
    }

    /// `forecastctl <command>` on topics `t`, serving `--http` on a free
    /// port, with the run's `-X` properties and `args`.
    pub(crate) fn start(
        name: &'static str,
        command: &str,
        kafka: &KafkaArgs,
        t: &TopicArgs,
        args: &[String],
    ) -> anyhow::Result<Service> {
        let http = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(forecastctl());
        cmd.arg(command)
            .args(["--brokers", &kafka.brokers, "--http", &http])
            .args(args)
            .args([
                "--topic-submitted",
                &t.topic_submitted,
                "--topic-validated",
                &t.topic_validated,
            ])
            .args([
                "--topic-rejected",
                &t.topic_rejected,
                "--topic-audit",
                &t.topic_audit,
                "--topic-demand",
                &t.topic_demand,
                "--topic-supply",
                &t.topic_supply,
                "--topic-licences",
                &t.topic_licences,
            ])
            .env("RUST_LOG", "warn")
            .env("FORECAST_STAGE_KEYS", stage_keys())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in &kafka.properties {
            cmd.arg("-X").arg(format!("{k}={v}"));
        }
        let child = cmd.spawn().with_context(|| {
            format!(
                "cannot start {} (build it: cargo build --release -p forecastctl)",
                forecastctl().display()
            )
        })?;
        Ok(Service {
            child,
            http,
            name,
            broker: None,
        })
    }

    /// The service's `/metrics` text ("" when it cannot be read).
    pub(crate) fn metrics_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut s) = std::net::TcpStream::connect(&self.http) {
            let asked = write!(
                s,
                "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                self.http
            );
            if asked.is_ok() && s.read_to_string(&mut text).is_err() {
                text.clear();
            }
        }
        text
    }

    pub(crate) fn metric(&self, name: &str) -> Option<f64> {
        value_in(&self.metrics_text(), name)
    }

    /// Its counters and span, from one read of `/metrics`.
    pub(crate) fn progress(&self) -> Progress {
        let text = self.metrics_text();
        let get = |metric: &str| {
            value_in(&text, &format!("{metric}{{service=\"{}\"}}", self.name)).unwrap_or(0.0)
        };
        Progress {
            records_in: get("forecast_records_in_total") as u64,
            processed: get("forecast_processing_seconds_count") as u64,
            span: (
                get("forecast_first_record_in_timestamp_seconds"),
                get("forecast_last_processed_timestamp_seconds"),
            ),
        }
    }

    /// Its timed figures also give what broker process `pid` took meanwhile.
    pub(crate) fn with_broker(mut self, pid: Option<u32>) -> Self {
        self.broker = pid;
        self
    }

    /// From the first record consumed to `target` records settled.
    pub(crate) fn time_until_processed(
        &self,
        target: u64,
        timeout: Duration,
    ) -> anyhow::Result<Timed> {
        time_until_processed(
            self.name,
            || self.progress(),
            || usage(self.child.id(), self.broker),
            target,
            timeout,
        )
    }

    /// From the first record read to `target` records read (the planner
    /// takes each record into its view as it reads it, and settles none).
    pub(crate) fn time_until_read(&self, target: u64, timeout: Duration) -> anyhow::Result<Timed> {
        time_until_processed(
            self.name,
            || {
                let p = self.progress();
                Progress {
                    processed: p.records_in,
                    ..p
                }
            },
            || usage(self.child.id(), self.broker),
            target,
            timeout,
        )
    }

    /// Peak resident memory (VmHWM), in MiB.
    pub(crate) fn peak_rss_mib(&self) -> f64 {
        status_bytes(self.child.id(), "VmHWM:").map_or(0.0, |b| b / (1024.0 * 1024.0))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// `--group` and `--instance-id` of a service.
pub(crate) fn member_of(group: &str) -> Vec<String> {
    ["--group", group, "--instance-id", group]
        .map(String::from)
        .to_vec()
}

/// The numeric fields of `/proc/PID/stat` after the command name (which
/// may hold spaces), from the state on (the state itself reads as NaN);
/// empty if unreadable.
pub(crate) fn proc_stat(pid: u32) -> Vec<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(f64::NAN))
        .collect()
}

/// CPU seconds (user + system) process `pid` has used so far, from
/// `/proc/PID/stat` (utime and stime, in ticks of 10 ms, Linux's USER_HZ);
/// 0 if unreadable.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let fields = proc_stat(pid);
    fields
        .get(11)
        .zip(fields.get(12))
        .map_or(0.0, |(u, s)| (u + s) / 100.0)
}

/// Seconds the threads of process `pid` now alive have spent runnable but
/// waiting for a core (the second field of `/proc/PID/task/TID/schedstat`,
/// in nanoseconds): on two cores shared with the broker, what a stage
/// loses to the others; 0 if unreadable.
pub(crate) fn core_wait_seconds(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let nanos: f64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .sum();
    nanos / 1e9
}

/// [`cpu_seconds`] and [`core_wait_seconds`] of `pid`, and the CPU
/// seconds of `broker` (NaN: none).
pub(crate) fn usage(pid: u32, broker: Option<u32>) -> [f64; 3] {
    [
        cpu_seconds(pid),
        core_wait_seconds(pid),
        broker.map_or(f64::NAN, cpu_seconds),
    ]
}

/// A field of `/proc/PID/status` given in kB (`VmRSS:`, `VmHWM:`), in
/// bytes; `None` if unreadable.
pub(crate) fn status_bytes(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024.0)
}

/// Memory process `pid` has taken so far: its resident bytes (`VmRSS`) and
/// the pages it touched for the first time (minor faults, from
/// `/proc/PID/stat`); NaN if unreadable.
pub(crate) fn memory_taken(pid: u32) -> [f64; 2] {
    [
        status_bytes(pid, "VmRSS:").unwrap_or(f64::NAN),
        proc_stat(pid).get(7).copied().unwrap_or(f64::NAN),
    ]
}
