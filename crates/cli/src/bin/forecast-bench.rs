//! `forecast-bench`: the pipeline benchmark harness (dev-only).
//!
//! Against one broker (tansu on memory storage started here, or
//! `--brokers`), on fresh topics for each figure, it measures:
//! (a) a bare consume -> produce passthrough with the services' own client
//! settings and consume loop, (b) the validator alone, (c) the aggregator
//! alone on pre-validated input, (d) end to end from submit to demand,
//! (e) the planner view reading (d)'s output from its start;
//! `--repeat` times, reporting medians. Then end-to-end latency (submit ->
//! the demand snapshot that includes the document) at half the
//! passthrough rate and at half of what end to end sustained, or at each
//! `--latency-rate`. The services run as
//! `forecastctl` child processes, so each has its own peak RSS.
//! Throughput is timed from the first record consumed to the last one
//! settled, from the same counters for all three (group joins are not
//! counted). Submitted records are encoded before any clock starts.
//! The planner (the API's read model) is not part of (d): it is a reader
//! of the output topics, in a process of its own, as it is deployed.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use forecast_model::{ForecastDocument, Purpose, wire};
use forecast_runtime::config::{KafkaArgs, TopicArgs};
use forecast_runtime::inflight::{
    Batch, BatchProducer, FlightArgs, Handler, batch_producer, group_consumer,
};
use forecast_runtime::kafka::{
    TopicLayout, create_topics, enqueue, producer_config, reader_config, send_waiting,
};
use forecast_runtime::metrics::Metrics;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, FutureProducer, FutureRecord, Producer as _, ProducerContext,
    ThreadedProducer,
};

/// The same allocator as `forecastctl`, so the passthrough and the
/// services are measured alike.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Measure the pipeline against the broker's own limit.
#[derive(Debug, Parser)]
struct Args {
    /// Use this broker instead of starting tansu.
    #[arg(long, env = "FORECAST_BROKERS")]
    brokers: Option<String>,
    /// tansu binary to start (default: as `forecastctl up` finds it, in
    /// /var/cache/forecast or on PATH, installed there when missing).
    #[arg(
        long,
        env = "FORECAST_TANSU",
        value_name = "PATH",
        conflicts_with = "brokers"
    )]
    tansu: Option<PathBuf>,
    /// A librdkafka property for every client of the run (the passthrough's
    /// and the services'), `-X key=value`, repeatable: to try a setting.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = forecast_runtime::config::parse_property)]
    properties: Vec<(String, String)>,
    /// Documents per figure.
    #[arg(long, default_value_t = 50_000)]
    documents: usize,
    /// Seconds of offered load for each latency figure.
    #[arg(long, default_value_t = 10)]
    latency_seconds: u64,
    /// Offered load of a latency figure, documents/s; repeatable (default:
    /// half the passthrough rate, the target's load, and half of what end
    /// to end sustains, a load below saturation).
    #[arg(long, value_parser = positive_rate)]
    latency_rate: Vec<f64>,
    /// Runs of (a) to (d), each on fresh topics; figures are their medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Partitions of every topic.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn forecastctl() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("forecastctl")))
        .unwrap_or_else(|| "forecastctl".into())
}

/// A `--latency-rate`: documents/s above zero.
fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a rate above zero (documents/s)")),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn topics(run: &str) -> TopicArgs {
    TopicArgs {
        topic_submitted: format!("bench.{run}.submitted"),
        topic_validated: format!("bench.{run}.validated"),
        topic_rejected: format!("bench.{run}.rejected"),
        topic_audit: format!("bench.{run}.audit"),
        topic_demand: format!("bench.{run}.demand"),
        topic_supply: format!("bench.{run}.supply"),
    }
}

/// The customers of the generated documents.
const CUSTOMERS: [&str; 3] = ["TENCENT", "BYTEDANCE", "ALIBABA"];

/// A 12-line document (a copy of one parsed once).
fn twelve_lines(id: String, customer: &str) -> ForecastDocument {
    static TEMPLATE: std::sync::OnceLock<ForecastDocument> = std::sync::OnceLock::new();
    let mut doc = TEMPLATE
        .get_or_init(|| forecast_model::fixtures::twelve_line_document("TEMPLATE", "TENCENT"))
        .clone();
    doc.document_id = id;
    doc.customer_id = customer.to_owned();
    doc
}

/// The mix of a real stream: mostly accepted originals, some replaces,
/// duplicates and rejections.
fn stream(n: usize, prefix: &str) -> Vec<ForecastDocument> {
    let mut out: Vec<ForecastDocument> = Vec::with_capacity(n);
    for i in 0..n {
        let doc = match i % 20 {
            15 | 16 if i >= 5 => {
                let mut d = out[i - 5].clone();
                d.revision += 1;
                d.purpose = Purpose::Replace;
                d.lines[0].quantity += 7;
                d
            }
            18 if i >= 1 => out[i - 1].clone(),
            19 => {
                let mut d = twelve_lines(format!("{prefix}-{i:07}"), CUSTOMERS[i % 3]);
                d.lines[3].sku = "A100".into();
                d
            }
            _ => twelve_lines(format!("{prefix}-{i:07}"), CUSTOMERS[i % 3]),
        };
        out.push(doc);
    }
    out
}

/// A submitted record: the document id and the document as on the wire.
/// Encoded before any clock starts, so the figures are the pipeline's and
/// not the harness's.
struct Encoded {
    key: String,
    value: Vec<u8>,
}

impl Encoded {
    fn of(doc: &ForecastDocument) -> Self {
        Encoded {
            key: doc.document_id.clone(),
            value: wire::encode_document(doc),
        }
    }

    /// Hands the record to `producer` (what the producer library's
    /// `Submitter::enqueue` does once it has encoded a document).
    async fn send(
        &self,
        producer: &FutureProducer,
        topic: &str,
    ) -> anyhow::Result<rdkafka::producer::DeliveryFuture> {
        Ok(enqueue(
            producer,
            FutureRecord::to(topic)
                .key(self.key.as_bytes())
                .payload(self.value.as_slice()),
        )
        .await?)
    }
}

/// The latency runs' submitter: each delivery report writes when the
/// broker acknowledged a document, and its partition, into that document's
/// own slot. No future, task or channel per document: the harness shares
/// the two cores with what it measures, and at 100k documents/s a task per
/// document would cost it a good part of one.
struct AckClock {
    acks: Vec<std::sync::OnceLock<(Instant, Result<i32, String>)>>,
    reported: std::sync::atomic::AtomicUsize,
}

impl AckClock {
    fn new(slots: usize) -> Self {
        AckClock {
            acks: (0..slots).map(|_| std::sync::OnceLock::new()).collect(),
            reported: Default::default(),
        }
    }

    fn reported(&self) -> usize {
        self.reported.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl rdkafka::ClientContext for AckClock {}

impl ProducerContext for AckClock {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: usize) {
        let partition = match result {
            Ok(m) => Ok(m.partition()),
            Err((e, _)) => Err(e.to_string()),
        };
        if let Some(ack) = self.acks.get(slot) {
            let _ = ack.set((Instant::now(), partition));
        }
        self.reported
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }
}

impl Encoded {
    /// Hands the record to `producer`; its report goes to `slot`.
    async fn send_clocked(
        &self,
        producer: &ThreadedProducer<AckClock>,
        topic: &str,
        slot: usize,
    ) -> anyhow::Result<()> {
        let record = BaseRecord::with_opaque_to(topic, slot)
            .key(self.key.as_bytes())
            .payload(self.value.as_slice());
        // rdkafka's send gives the record back inside its error.
        #[allow(clippy::result_large_err)]
        let sent = send_waiting(record, |r| producer.send(r)).await;
        Ok(sent?)
    }
}

async fn produce_all(
    producer: &FutureProducer,
    topic: &str,
    records: &[Encoded],
) -> anyhow::Result<()> {
    let mut deliveries = Vec::with_capacity(records.len());
    for r in records {
        deliveries.push(r.send(producer, topic).await?);
    }
    for d in deliveries {
        d.await
            .map_err(|_| anyhow::anyhow!("canceled"))?
            .map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// A service child process with its metrics endpoint.
struct Service {
    child: Child,
    http: String,
    name: &'static str,
}

impl Service {
    fn validator(
        kafka: &KafkaArgs,
        t: &TopicArgs,
        group: &str,
        policy: &Path,
    ) -> anyhow::Result<Service> {
        let mut args = member_of(group);
        args.extend(["--policy".into(), policy.display().to_string()]);
        Service::start("validator", "validate", kafka, t, &args)
    }

    fn aggregator(kafka: &KafkaArgs, t: &TopicArgs, group: &str) -> anyhow::Result<Service> {
        Service::start("aggregator", "aggregate", kafka, t, &member_of(group))
    }

    fn planner(kafka: &KafkaArgs, t: &TopicArgs) -> anyhow::Result<Service> {
        Service::start("planner", "planner", kafka, t, &[])
    }

    /// `forecastctl <command>` on topics `t`, serving `--http` on a free
    /// port, with the run's `-X` properties and `args`.
    fn start(
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
            ])
            .env("RUST_LOG", "warn")
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
        Ok(Service { child, http, name })
    }

    /// The service's `/metrics` text ("" when it cannot be read).
    fn metrics_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut s) = std::net::TcpStream::connect(&self.http) {
            let asked = write!(
                s,
                "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            if asked.is_ok() && s.read_to_string(&mut text).is_err() {
                text.clear();
            }
        }
        text
    }

    fn metric(&self, name: &str) -> Option<f64> {
        value_in(&self.metrics_text(), name)
    }

    /// Its counters and span, from one read of `/metrics`.
    fn progress(&self) -> Progress {
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

    /// From the first record consumed to `target` records settled.
    fn time_until_processed(&self, target: u64, timeout: Duration) -> anyhow::Result<Timed> {
        time_until_processed(
            self.name,
            || self.progress(),
            || cpu_seconds(self.child.id()),
            target,
            timeout,
        )
    }

    /// From the first record read to `target` records read (the planner
    /// takes each record into its view as it reads it, and settles none).
    fn time_until_read(&self, target: u64, timeout: Duration) -> anyhow::Result<Timed> {
        time_until_processed(
            self.name,
            || {
                let p = self.progress();
                Progress {
                    processed: p.records_in,
                    ..p
                }
            },
            || cpu_seconds(self.child.id()),
            target,
            timeout,
        )
    }

    /// Peak resident memory (VmHWM), in MiB.
    fn peak_rss_mib(&self) -> f64 {
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

/// CPU microseconds per document of each process between two readings.
fn per_document(before: [f64; 4], after: [f64; 4], documents: usize) -> [f64; 4] {
    std::array::from_fn(|i| (after[i] - before[i]) * 1e6 / documents as f64)
}

/// The document that warms up a run's pipeline and its submitter, of a
/// customer the measured documents do not use.
fn warm(run: &str) -> Encoded {
    Encoded::of(&twelve_lines(format!("WARM-{run}"), CUSTOMERS[0]))
}

/// `--group` and `--instance-id` of a service.
fn member_of(group: &str) -> Vec<String> {
    ["--group", group, "--instance-id", group]
        .map(String::from)
        .to_vec()
}

/// The records `topics` hold, from their partitions' watermarks.
fn records_in_topics(kafka: &KafkaArgs, topics: &[&str]) -> anyhow::Result<u64> {
    let reader: BaseConsumer = reader_config(kafka).create()?;
    let mut n = 0;
    for &topic in topics {
        for p in
            forecast_runtime::kafka::partition_ids(reader.client(), topic, Duration::from_secs(10))?
        {
            let (low, high) = reader.fetch_watermarks(topic, p, Duration::from_secs(10))?;
            n += u64::try_from(high - low).unwrap_or(0);
        }
    }
    Ok(n)
}

/// (a)'s loop: every record produced unchanged to `to`.
struct Passthrough<'a> {
    producer: &'a BatchProducer,
    to: &'a str,
}

impl Handler for Passthrough<'_> {
    async fn handle(&mut self, m: &BorrowedMessage<'_>, batch: &mut Batch) -> anyhow::Result<()> {
        let mut record = FutureRecord::to(self.to).payload(m.payload().unwrap_or_default());
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        batch.send(self.producer, record).await?;
        Ok(())
    }
}

/// A timed stage: wall-clock and CPU seconds of the process doing it.
#[derive(Debug, Clone, Copy)]
struct Timed {
    seconds: f64,
    cpu_seconds: f64,
}

/// The numeric fields of `/proc/PID/stat` after the command name (which
/// may hold spaces), from the state on (the state itself reads as NaN);
/// empty if unreadable.
fn proc_stat(pid: u32) -> Vec<f64> {
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
fn cpu_seconds(pid: u32) -> f64 {
    let fields = proc_stat(pid);
    fields
        .get(11)
        .zip(fields.get(12))
        .map_or(0.0, |(u, s)| (u + s) / 100.0)
}

/// A field of `/proc/PID/status` given in kB (`VmRSS:`, `VmHWM:`), in
/// bytes; `None` if unreadable.
fn status_bytes(pid: u32, field: &str) -> Option<f64> {
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
fn memory_taken(pid: u32) -> [f64; 2] {
    [
        status_bytes(pid, "VmRSS:").unwrap_or(f64::NAN),
        proc_stat(pid).get(7).copied().unwrap_or(f64::NAN),
    ]
}

/// What a stage's counters say: records consumed and settled, and when
/// (Unix seconds, by the process's own clock) it consumed its first record
/// and last settled a batch; 0 where none yet.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    records_in: u64,
    processed: u64,
    span: (f64, f64),
}

fn value_in(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// From the first record consumed to `target` records settled, by the
/// stage's own clock (its first-record and last-processed times), looked
/// at every `POLL`. The CPU time `cpu` is counted from the last look
/// before the first record to the look that finds `target` settled, so
/// it takes in a little idle time rather than leave out work.
fn time_until_processed(
    what: &str,
    progress: impl Fn() -> Progress,
    cpu: impl Fn() -> f64,
    target: u64,
    timeout: Duration,
) -> anyhow::Result<Timed> {
    let deadline = Instant::now() + timeout;
    let mut idle_cpu = cpu();
    let mut started = false;
    loop {
        let cpu_now = cpu();
        let p = progress();
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what} processed {} of {target} in {timeout:?}",
            p.processed
        );
        if !started {
            if p.records_in == 0 {
                idle_cpu = cpu_now;
            }
            started = p.records_in > 0;
        }
        if started && p.processed >= target {
            let (first, last) = p.span;
            // A stage that settles nothing (the planner) has no last
            // batch: it is timed to this look.
            let last = if last > 0.0 { last } else { unix_seconds() };
            return Ok(Timed {
                seconds: last - first,
                cpu_seconds: cpu() - idle_cpu,
            });
        }
        std::thread::sleep(POLL);
    }
}

/// How often the harness reads the counters it waits on. Each look at a
/// service is an HTTP request it serves; at every 5 ms they were a tenth
/// of the validator's CPU samples in (b). The times themselves come from
/// the services' clocks.
const POLL: Duration = Duration::from_millis(25);

/// (a) consume -> produce unchanged, with the services' settings and loop,
/// timed as the services are.
async fn passthrough(kafka: &KafkaArgs, from: &str, to: &str, n: usize) -> anyhow::Result<Timed> {
    // Warmed with one record first, as the services' producers are by the
    // time they have joined their group: a new idempotent producer's first
    // send waits for its producer id (0.8 s on tansu), which the clock
    // would otherwise count as throughput.
    let producer = batch_producer(kafka)?;
    let warm = Encoded::of(&twelve_lines("WARM-passthrough".into(), CUSTOMERS[0]));
    let record = FutureRecord::to(to)
        .key(warm.key.as_bytes())
        .payload(warm.value.as_slice());
    Batch::default().send(&producer, record).await?;
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30))?;
    let metrics = Arc::new(Metrics::new("passthrough"));
    let consumer = group_consumer(
        kafka,
        from,
        &format!("pass-{from}"),
        Some("none"),
        "passthrough",
        &metrics,
    )?;
    let token = tokio_util::sync::CancellationToken::new();
    let mut handler = Passthrough {
        producer: &producer,
        to,
    };
    let timed = async {
        let m = metrics.clone();
        let elapsed = tokio::task::spawn_blocking(move || {
            time_until_processed(
                "passthrough",
                || Progress {
                    records_in: m.records_in_total(),
                    processed: m.processed_total(),
                    span: m.span_seconds(),
                },
                || cpu_seconds(std::process::id()),
                n as u64,
                Duration::from_secs(600),
            )
        })
        .await;
        token.cancel();
        elapsed?
    };
    let run = FlightArgs::default().in_flight().run(
        &consumer,
        &producer,
        from,
        &metrics,
        &token,
        &mut handler,
    );
    let (result, elapsed) = tokio::join!(run, timed);
    result?;
    elapsed
}

/// End-to-end latency at an offered load.
#[derive(Debug, Clone, Copy)]
struct Latency {
    /// Submit to the first demand snapshot that includes the document.
    p50_ms: f64,
    p99_ms: f64,
    /// Documents whose snapshot was seen.
    seen: usize,
    /// Submit to the broker's acknowledgement (the first hop).
    ack_p50_ms: f64,
    ack_p99_ms: f64,
    /// Submit to the aggregator producing that snapshot (the record's
    /// create time, ms resolution): the rest is the snapshot's way to the
    /// reader (a producer batch, the broker, a fetch).
    produced_p50_ms: f64,
    produced_p99_ms: f64,
    /// CPU microseconds per document by process, as in (d), from the
    /// first submit until every document was seen.
    cpu_us: [f64; 4],
    /// What the broker took meanwhile, per document: resident bytes, and
    /// pages touched for the first time (a memory-storage broker keeps
    /// every record; on a VM each fresh page costs microseconds).
    broker_bytes: f64,
    broker_faults: f64,
}

/// One run of the throughput figures (a) to (d), documents/s.
#[derive(Debug, Clone, Copy)]
struct Throughput {
    passthrough: f64,
    validator: f64,
    aggregator: f64,
    end_to_end: f64,
    /// (e): documents of (d) per second the planner view catches up on.
    planner: f64,
    validator_rss_mib: f64,
    aggregator_rss_mib: f64,
    planner_rss_mib: f64,
    /// CPU microseconds per document of the process doing (a), (b), (c):
    /// the harness for (a), the service for the others.
    passthrough_cpu_us: f64,
    validator_cpu_us: f64,
    aggregator_cpu_us: f64,
    planner_cpu_us: f64,
    /// CPU microseconds per document in (d): broker, validator,
    /// aggregator, harness.
    end_to_end_cpu_us: [f64; 4],
}

impl Throughput {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "passthrough_docs_per_s": self.passthrough,
            "validator_docs_per_s": self.validator,
            "aggregator_docs_per_s": self.aggregator,
            "end_to_end_docs_per_s": self.end_to_end,
            "planner_docs_per_s": self.planner,
            "validator_peak_rss_mib": self.validator_rss_mib,
            "aggregator_peak_rss_mib": self.aggregator_rss_mib,
            "planner_peak_rss_mib": self.planner_rss_mib,
            "passthrough_cpu_us_per_doc": self.passthrough_cpu_us,
            "validator_cpu_us_per_doc": self.validator_cpu_us,
            "aggregator_cpu_us_per_doc": self.aggregator_cpu_us,
            "planner_cpu_us_per_doc": self.planner_cpu_us,
            "end_to_end_cpu_us_per_doc": EndToEndCpu(self.end_to_end_cpu_us).json(),
        })
    }
}

/// CPU microseconds per document in (d), by process: broker (NaN when
/// not started by the harness), validator, aggregator, harness.
struct EndToEndCpu([f64; 4]);

impl EndToEndCpu {
    const PROCESSES: [&str; 4] = ["broker", "validator", "aggregator", "harness"];

    /// By process name; an unmeasured one is null.
    fn json(&self) -> serde_json::Value {
        Self::PROCESSES
            .iter()
            .zip(self.0)
            .map(|(name, us)| (name.to_string(), serde_json::json!(us)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

impl std::fmt::Display for EndToEndCpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, us)) in Self::PROCESSES.iter().zip(self.0).enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            if us.is_nan() {
                write!(f, "{sep}{name} not measured")?;
            } else {
                write!(f, "{sep}{name} {us:.1}")?;
            }
        }
        Ok(())
    }
}

/// What every run shares: the broker, the policy and the documents.
struct Bench<'a> {
    kafka: &'a KafkaArgs,
    layout: TopicLayout,
    policy: &'a Path,
    producer: &'a FutureProducer,
    records: &'a [Encoded],
    /// The broker's process, when the harness started it.
    broker_pid: Option<u32>,
}

impl Bench<'_> {
    /// (a) to (e) on fresh topics named after `run`.
    async fn throughput(&self, run: &str) -> anyhow::Result<Throughput> {
        let (kafka, layout, policy, producer, docs) = (
            self.kafka,
            self.layout,
            self.policy,
            self.producer,
            self.records,
        );
        let n = docs.len();
        let t = topics(&format!("{run}-b"));
        create_topics(kafka, &t, layout).await?;
        produce_all(producer, &t.topic_submitted, docs).await?;

        // (a) passthrough
        let pass_to = format!("bench.{run}.passthrough");
        create_topics(
            kafka,
            &TopicArgs {
                topic_submitted: pass_to.clone(),
                ..topics(&format!("{run}-p"))
            },
            layout,
        )
        .await?;
        let a = passthrough(kafka, &t.topic_submitted, &pass_to, n).await?;

        // (b) validator alone
        let v = Service::validator(kafka, &t, &format!("bv-{run}"), policy)?;
        let b = v.time_until_processed(n as u64, Duration::from_secs(600))?;
        let accepted = v
            .metric("forecast_records_out_total{service=\"validator\",output=\"validated\"}")
            .unwrap_or(0.0) as u64;
        let validator_rss_mib = v.peak_rss_mib();
        drop(v);

        // (c) aggregator alone, on the validated topic (b) wrote
        let ag = Service::aggregator(kafka, &t, &format!("ba-{run}"))?;
        let c = ag.time_until_processed(accepted, Duration::from_secs(600))?;
        let aggregator_rss_mib = ag.peak_rss_mib();
        drop(ag);

        // (d) end to end: submit (as the producer library does), until the
        // aggregator settled all
        let (te, ve, ae) = self.pipeline(&format!("{run}-e")).await?;
        produce_all(producer, &te.topic_submitted, &[warm(run)]).await?;
        ae.time_until_processed(1, Duration::from_secs(120))?;
        let cpu = || self.cpu_seconds(&ve, &ae);
        let cpu_before = cpu();
        let start = unix_seconds();
        produce_all(producer, &te.topic_submitted, docs).await?;
        let deadline = Instant::now() + Duration::from_secs(600);
        let d = loop {
            let p = ae.progress();
            // The warm-up record and every accepted document.
            if p.processed > accepted {
                // To the aggregator's last settled batch, by its clock.
                break p.span.1 - start;
            }
            anyhow::ensure!(Instant::now() < deadline, "end to end did not finish");
            std::thread::sleep(POLL);
        };
        let cpu_after = cpu();
        let end_to_end_cpu_us = per_document(cpu_before, cpu_after, n);
        drop((ve, ae));

        // (e) the planner view, reading what (d) wrote from its start
        let records = records_in_topics(kafka, &[&te.topic_audit, &te.topic_demand])?;
        let pl = Service::planner(kafka, &te)?;
        let e = pl.time_until_read(records, Duration::from_secs(600))?;
        let planner_rss_mib = pl.peak_rss_mib();
        drop(pl);

        let per_doc = |t: Timed, docs: u64| t.cpu_seconds * 1e6 / docs as f64;
        Ok(Throughput {
            passthrough: n as f64 / a.seconds,
            validator: n as f64 / b.seconds,
            aggregator: accepted as f64 / c.seconds,
            end_to_end: n as f64 / d,
            planner: n as f64 / e.seconds,
            validator_rss_mib,
            aggregator_rss_mib,
            planner_rss_mib,
            passthrough_cpu_us: per_doc(a, n as u64),
            validator_cpu_us: per_doc(b, n as u64),
            aggregator_cpu_us: per_doc(c, accepted),
            planner_cpu_us: per_doc(e, n as u64),
            end_to_end_cpu_us,
        })
    }

    /// CPU seconds so far of each process of a pipeline: broker (NaN when
    /// not started here, `--brokers`), validator, aggregator, harness.
    fn cpu_seconds(&self, validator: &Service, aggregator: &Service) -> [f64; 4] {
        [
            self.broker_pid.map_or(f64::NAN, cpu_seconds),
            cpu_seconds(validator.child.id()),
            cpu_seconds(aggregator.child.id()),
            cpu_seconds(std::process::id()),
        ]
    }

    /// A validator and an aggregator on fresh topics named after `run`.
    /// The caller warms them up with [`warm`] through the producer it
    /// measures with (its producer id and metadata are then in place, as in
    /// a running system) and waits for the aggregator to have handled it.
    async fn pipeline(&self, run: &str) -> anyhow::Result<(TopicArgs, Service, Service)> {
        let t = topics(run);
        create_topics(self.kafka, &t, self.layout).await?;
        let v = Service::validator(self.kafka, &t, &format!("v-{run}"), self.policy)?;
        let a = Service::aggregator(self.kafka, &t, &format!("a-{run}"))?;
        Ok((t, v, a))
    }
    /// Offers `count` documents at `rate` per second, through a validator
    /// and an aggregator on fresh topics named after `run`; returns the
    /// latency of each document seen (ms, sorted) and how many were seen.
    ///
    /// A document is seen when a demand snapshot of its customer and
    /// partition first includes it. Every latency document adds the same
    /// units, and a partition's documents are applied in order, so the
    /// k-th document of a customer in a partition is included once that
    /// snapshot's units reach k times a document's.
    async fn latency(&self, run: &str, rate: f64, count: usize) -> anyhow::Result<Latency> {
        let kafka = self.kafka;
        // Slot `count` is the warm-up document's.
        let producer: ThreadedProducer<AckClock> =
            producer_config(kafka).create_with_context(AckClock::new(count + 1))?;
        let (tl, vl, al) = self.pipeline(run).await?;
        warm(run)
            .send_clocked(&producer, &tl.topic_submitted, count)
            .await?;
        al.time_until_processed(1, Duration::from_secs(120))?;

        let measured = &CUSTOMERS[1..];
        let template = twelve_lines(String::new(), measured[0]);
        let units_per_doc: i64 = template.lines.iter().map(|l| l.quantity).sum();
        let counts: Arc<Mutex<Counts>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let (counts, stop, kafka, topic) = (
                counts.clone(),
                stop.clone(),
                kafka.clone(),
                tl.topic_demand.clone(),
            );
            std::thread::spawn(move || watch_demand(&kafka, &topic, units_per_doc, &counts, &stop))
        };
        std::thread::sleep(Duration::from_secs(2)); // the watcher is assigned

        let records: Vec<(&str, Encoded)> = (0..count)
            .map(|i| {
                let mut doc = template.clone();
                doc.document_id = format!("LAT-{run}-{i:07}");
                let customer = measured[i % measured.len()];
                doc.customer_id = customer.to_owned();
                (customer, Encoded::of(&doc))
            })
            .collect();
        let mut sent_at = Vec::with_capacity(count);
        let cpu_before = self.cpu_seconds(&vl, &al);
        let broker_before = self.broker_pid.map_or([f64::NAN; 2], memory_taken);
        let begin = Instant::now();
        // Record create times are wall-clock milliseconds.
        let begin_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs_f64()
            * 1000.0;
        for (i, (_, record)) in records.iter().enumerate() {
            let due = begin + Duration::from_secs_f64(i as f64 / rate);
            // Paced in steps of at least a millisecond: a timer per
            // document would cost the harness more than the document.
            if let Some(wait) = due.checked_duration_since(Instant::now())
                && wait >= Duration::from_millis(1)
            {
                tokio::time::sleep(wait).await;
            }
            sent_at.push(Instant::now());
            record
                .send_clocked(&producer, &tl.topic_submitted, i)
                .await?;
        }
        let clock = producer.context();
        let deadline = Instant::now() + Duration::from_secs(60);
        while clock.reported() < count + 1 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} of {count} submits acknowledged in 60 s",
                clock.reported()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The rank of each document among its customer's in its partition.
        let mut ranks: HashMap<(String, i32), i64> = HashMap::new();
        let mut expected = Vec::with_capacity(count);
        let mut acks = Vec::with_capacity(count);
        for ((at, (customer, _)), ack) in sent_at.into_iter().zip(&records).zip(&clock.acks) {
            let (acked_at, partition) = ack.get().context("a submit was never reported")?;
            let partition = *partition
                .as_ref()
                .map_err(|e| anyhow::anyhow!("a submit failed: {e}"))?;
            // When the broker acknowledged it: the first hop's share.
            acks.push(acked_at.duration_since(at).as_secs_f64() * 1000.0);
            let rank = ranks.entry((customer.to_string(), partition)).or_default();
            *rank += 1;
            expected.push((at, (customer.to_string(), partition), *rank));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let all_seen = |counts: &Counts| {
            ranks.iter().all(|(key, n)| {
                counts
                    .get(key)
                    .and_then(|c| c.last())
                    .is_some_and(|c| c.documents >= *n)
            })
        };
        while Instant::now() < deadline
            && !all_seen(&*counts.lock().map_err(|_| anyhow::anyhow!("poisoned"))?)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        watcher
            .join()
            .map_err(|_| anyhow::anyhow!("watcher panicked"))??;
        let cpu_us = per_document(cpu_before, self.cpu_seconds(&vl, &al), count);
        let broker_after = self.broker_pid.map_or([f64::NAN; 2], memory_taken);
        let [broker_bytes, broker_faults] =
            std::array::from_fn(|i| (broker_after[i] - broker_before[i]) / count as f64);
        drop((vl, al));
        let counts = counts.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let (mut lat, mut produced): (Vec<f64>, Vec<f64>) = expected
            .iter()
            .filter_map(|(at, key, rank)| {
                let changes = counts.get(key)?;
                let first = changes.partition_point(|c| c.documents < *rank);
                let change = changes.get(first)?;
                let sent_ms = begin_ms + at.duration_since(begin).as_secs_f64() * 1000.0;
                Some((
                    change.seen.duration_since(*at).as_secs_f64() * 1000.0,
                    change.produced_ms - sent_ms,
                ))
            })
            .unzip();
        lat.sort_by(f64::total_cmp);
        produced.sort_by(f64::total_cmp);
        acks.sort_by(f64::total_cmp);
        Ok(Latency {
            p50_ms: percentile(&lat, 0.50),
            p99_ms: percentile(&lat, 0.99),
            seen: lat.len(),
            ack_p50_ms: percentile(&acks, 0.50),
            ack_p99_ms: percentile(&acks, 0.99),
            produced_p50_ms: percentile(&produced, 0.50),
            produced_p99_ms: percentile(&produced, 0.99),
            cpu_us,
            broker_bytes,
            broker_faults,
        })
    }
}

/// A rise of the number of documents in a customer/partition snapshot.
struct Change {
    /// When the reader got the snapshot.
    seen: Instant,
    /// The snapshot record's create time, ms since the epoch.
    produced_ms: f64,
    documents: i64,
}

/// The rises of each customer/partition snapshot, in order.
type Counts = HashMap<(String, i32), Vec<Change>>;

/// Reads `topic` (demand snapshots) until `stop`, recording when the
/// number of documents in each customer/partition snapshot changed.
fn watch_demand(
    kafka: &KafkaArgs,
    topic: &str,
    units_per_doc: i64,
    counts: &Mutex<Counts>,
    stop: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<()> {
    let reader: BaseConsumer = reader_config(kafka).create()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in
        forecast_runtime::kafka::partition_ids(reader.client(), topic, Duration::from_secs(10))?
    {
        tpl.add_partition_offset(topic, p, forecast_runtime::kafka::from_start())?;
    }
    anyhow::ensure!(tpl.count() > 0, "no partitions of {topic}");
    reader.assign(&tpl)?;
    let registry = forecast_model::Registry::embedded();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let Some(m) = reader.poll(Duration::from_millis(50)) else {
            continue;
        };
        let m = m?;
        let now = Instant::now();
        let Some(snapshot) = m
            .payload()
            .and_then(|v| wire::decode_snapshot(v, registry).ok())
        else {
            continue;
        };
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        let Some(partition) = key.rsplit_once('/').and_then(|(_, p)| p.parse().ok()) else {
            continue;
        };
        let units: i64 = snapshot.rows.iter().map(|r| r.units.total()).sum();
        anyhow::ensure!(
            units % units_per_doc == 0,
            "snapshot {key} holds {units} units, not a whole number of documents of {units_per_doc}"
        );
        let docs = units / units_per_doc;
        let mut counts = counts.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let changes = counts.entry((snapshot.customer_id, partition)).or_default();
        if changes.last().is_none_or(|c| c.documents < docs) {
            changes.push(Change {
                seen: now,
                produced_ms: m.timestamp().to_millis().unwrap_or(0) as f64,
                documents: docs,
            });
        }
    }
    Ok(())
}

/// The median of the runs' figures: of an even number of runs, the mean
/// of the middle two (the upper middle value would make `--repeat 2`
/// report the larger of its two runs for every figure).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 0 => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        n => values[n / 2],
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The harness's own clients log as the services do (`RUST_LOG`).
    forecast_runtime::telemetry::init(&forecast_runtime::config::LogArgs::default());
    let (brokers, broker, binary) = match &args.brokers {
        Some(b) => (b.clone(), None, None),
        None => {
            let tansu = forecastctl::up::tansu_path(
                args.tansu.as_deref(),
                Path::new("/var/cache/forecast"),
            )?;
            eprintln!("broker: {}", tansu.display());
            let t = forecastctl::up::Tansu::start(&tansu, free_port(), None)?;
            (t.brokers.clone(), Some(t), Some(tansu))
        }
    };
    let kafka = KafkaArgs {
        brokers: brokers.clone(),
        properties: args.properties.clone(),
    };
    let layout = TopicLayout {
        partitions: args.partitions,
        replication: 1,
    };
    let run = format!("{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("forecast-bench-{run}"));
    std::fs::create_dir_all(&dir)?;
    let n = args.documents;

    let customers = CUSTOMERS;
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "registered_customers = {}\n",
            serde_json::to_string(&customers)?
        ),
    )?;

    let producer: FutureProducer = producer_config(&kafka).create()?;
    let docs = stream(n, "B");
    let bench = Bench {
        kafka: &kafka,
        layout,
        policy: &policy,
        producer: &producer,
        records: &docs.iter().map(Encoded::of).collect::<Vec<_>>(),
        broker_pid: broker.as_ref().map(forecastctl::up::Tansu::pid),
    };
    let mut runs = Vec::new();
    for r in 0..args.repeat {
        let f = bench.throughput(&format!("{run}-{r}")).await?;
        eprintln!(
            "run {}: (a) {:.0} (b) {:.0} (c) {:.0} (d) {:.0} (e) {:.0} docs/s; b/a {:.2} c/a {:.2} d/a {:.2}; CPU per doc (a) {:.1} (b) {:.1} (c) {:.1} (e) {:.1} us",
            r + 1,
            f.passthrough,
            f.validator,
            f.aggregator,
            f.end_to_end,
            f.planner,
            f.validator / f.passthrough,
            f.aggregator / f.passthrough,
            f.end_to_end / f.passthrough,
            f.passthrough_cpu_us,
            f.validator_cpu_us,
            f.aggregator_cpu_us,
            f.planner_cpu_us,
        );
        runs.push(f);
    }
    let median = |f: &dyn Fn(&Throughput) -> f64| median(runs.iter().map(f).collect());
    let rate_a = median(&|f| f.passthrough);
    let rate_b = median(&|f| f.validator);
    let rate_c = median(&|f| f.aggregator);
    let rate_d = median(&|f| f.end_to_end);
    let rate_e = median(&|f| f.planner);
    let ratio_b = median(&|f| f.validator / f.passthrough);
    let ratio_c = median(&|f| f.aggregator / f.passthrough);
    let ratio_d = median(&|f| f.end_to_end / f.passthrough);
    let cpu_a = median(&|f| f.passthrough_cpu_us);
    let cpu_b = median(&|f| f.validator_cpu_us);
    let cpu_c = median(&|f| f.aggregator_cpu_us);
    let cpu_e = median(&|f| f.planner_cpu_us);
    let cpu_d: [f64; 4] = std::array::from_fn(|i| median(&|f| f.end_to_end_cpu_us[i]));
    let rss_v = runs.iter().map(|f| f.validator_rss_mib).fold(0.0, f64::max);
    let rss_a = runs
        .iter()
        .map(|f| f.aggregator_rss_mib)
        .fold(0.0, f64::max);
    let rss_e = runs.iter().map(|f| f.planner_rss_mib).fold(0.0, f64::max);
    // Latency at half the passthrough rate (the target's load) and at half
    // of what end to end sustained (below saturation).
    let rates = if args.latency_rate.is_empty() {
        vec![rate_a / 2.0, rate_d / 2.0]
    } else {
        args.latency_rate.clone()
    };
    let mut latencies = Vec::new();
    for (i, &rate) in rates.iter().enumerate() {
        let count = ((rate * args.latency_seconds as f64) as usize).max(1);
        let l = bench.latency(&format!("{run}-l{i}"), rate, count).await?;
        eprintln!(
            "latency at {rate:.0} docs/s: p50 {:.1} ms, p99 {:.1} ms ({} of {count} seen); submit acknowledged: p50 {:.1} ms, p99 {:.1} ms; snapshot produced: p50 {:.0} ms, p99 {:.0} ms; us CPU/doc: {}; per doc the broker kept {:.0} bytes more, touching {:.2} fresh pages",
            l.p50_ms,
            l.p99_ms,
            l.seen,
            l.ack_p50_ms,
            l.ack_p99_ms,
            l.produced_p50_ms,
            l.produced_p99_ms,
            EndToEndCpu(l.cpu_us),
            l.broker_bytes,
            l.broker_faults,
        );
        latencies.push((rate, count, l));
    }

    let results = serde_json::json!({
        "documents": n,
        "tansu": binary.as_ref().map(|b| b.display().to_string()),
        "partitions": args.partitions,
        "repeat": args.repeat,
        "runs": runs.iter().map(Throughput::json).collect::<Vec<_>>(),
        "passthrough_docs_per_s": rate_a,
        "validator_docs_per_s": rate_b,
        "aggregator_docs_per_s": rate_c,
        "end_to_end_docs_per_s": rate_d,
        "planner_docs_per_s": rate_e,
        "validator_over_passthrough": ratio_b,
        "aggregator_over_passthrough": ratio_c,
        "end_to_end_over_passthrough": ratio_d,
        "latency": latencies.iter().map(|(rate, count, l)| serde_json::json!({
            "offered_docs_per_s": rate,
            "documents": count,
            "seen": l.seen,
            "p50_ms": l.p50_ms,
            "p99_ms": l.p99_ms,
            "submit_ack_p50_ms": l.ack_p50_ms,
            "submit_ack_p99_ms": l.ack_p99_ms,
            "snapshot_produced_p50_ms": l.produced_p50_ms,
            "snapshot_produced_p99_ms": l.produced_p99_ms,
            "cpu_us_per_doc": EndToEndCpu(l.cpu_us).json(),
            "broker_rss_bytes_per_doc": l.broker_bytes,
            "broker_minor_faults_per_doc": l.broker_faults,
        })).collect::<Vec<_>>(),
        "validator_peak_rss_mib": rss_v,
        "aggregator_peak_rss_mib": rss_a,
        "planner_peak_rss_mib": rss_e,
        "passthrough_cpu_us_per_doc": cpu_a,
        "validator_cpu_us_per_doc": cpu_b,
        "aggregator_cpu_us_per_doc": cpu_c,
        "planner_cpu_us_per_doc": cpu_e,
        "end_to_end_cpu_us_per_doc": EndToEndCpu(cpu_d).json(),
    });
    println!(
        "| figure (median of {} runs) | result |\n| --- | --- |",
        args.repeat
    );
    println!("| (a) passthrough | {rate_a:.0} docs/s, {cpu_a:.1} us CPU/doc |");
    println!(
        "| (b) validator | {rate_b:.0} docs/s, {ratio_b:.2} of passthrough, {cpu_b:.1} us CPU/doc, peak RSS {rss_v:.0} MiB |"
    );
    println!(
        "| (c) aggregator | {rate_c:.0} docs/s, {ratio_c:.2} of passthrough, {cpu_c:.1} us CPU/doc, peak RSS {rss_a:.0} MiB |"
    );
    println!(
        "| (d) end to end | {rate_d:.0} docs/s, {ratio_d:.2} of passthrough; us CPU/doc: {} |",
        EndToEndCpu(cpu_d)
    );
    println!(
        "| (e) planner view, reading (d)'s output | {rate_e:.0} docs/s, {cpu_e:.1} us CPU/doc, peak RSS {rss_e:.0} MiB |"
    );
    for (rate, count, l) in &latencies {
        println!(
            "| latency at {rate:.0} docs/s | p50 {:.1} ms, p99 {:.1} ms ({} of {count} documents) |",
            l.p50_ms, l.p99_ms, l.seen
        );
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn the_median_of_an_even_number_of_runs_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![3.0, 1.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![5.0, 1.0, 3.0]), 3.0);
        assert!(median(Vec::new()).is_nan());
    }
}
