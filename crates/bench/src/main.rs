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
//!
//! `--soak-minutes` runs the soak instead (`soak`): the whole pipeline at
//! half of what end to end sustains (or `--soak-rate`) for that long, with
//! SSE clients on the planner and an HTTP load on its API in one window,
//! memory and lag sampled into a CSV (`scripts/plot-soak` draws it).

mod probe;
mod procs;
mod report;
mod soak;
mod stages;
mod workload;

use std::path::{Path, PathBuf};

use crate::procs::free_port;
use crate::report::{EndToEndCpu, Throughput, median};
use crate::stages::Bench;
use crate::workload::{CUSTOMERS, Encoded, stream};
use clap::Parser;
use forecast_kafka::KafkaArgs;
use forecast_kafka::producer_config;
use forecast_runtime::config::TopicArgs;
use forecast_runtime::topics::TopicLayout;
use rdkafka::producer::FutureProducer;

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
    /// tansu binary to start (default: the one `forecastctl up` runs, the
    /// build of scripts/install-tansu in /var/cache/forecast).
    #[arg(
        long,
        env = "FORECAST_TANSU",
        value_name = "PATH",
        conflicts_with = "brokers"
    )]
    tansu: Option<PathBuf>,
    /// The started broker's storage: `memory://tansu/` (it keeps every
    /// record in memory) or `sqlite:///RELATIVE/PATH.db` (on disk, relative
    /// to the working folder; `sqlite:////tmp/x.db` for an absolute path: the soak.s,
    /// whose records would not fit in memory).
    #[arg(long, default_value = "memory://tansu/", conflicts_with = "brokers")]
    storage: String,
    /// A librdkafka property for every client of the run (the passthrough's
    /// and the services'), `-X key=value`, repeatable: to try a setting.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = forecast_kafka::parse_property)]
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
    /// Sign every document (a key per customer) and run the validator with
    /// their key registry, signatures required: the cost of verification
    /// (docs/signatures.md).
    #[arg(long)]
    signed: bool,
    /// Run the soak for this many minutes instead of the figures.
    #[arg(long, value_name = "MINUTES", value_parser = positive_rate)]
    soak_minutes: Option<f64>,
    /// Documents/s the soak offers (default: half of what one end-to-end
    /// run of `--documents` sustains, measured first).
    #[arg(long, value_parser = positive_rate, requires = "soak_minutes")]
    soak_rate: Option<f64>,
    /// Distinct documents of the soak; each round offers a new revision of
    /// each.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    soak_documents: u64,
    /// Live SSE clients on the planner's demand stream during the soak.
    #[arg(long, default_value_t = 20)]
    soak_sse_clients: usize,
    /// Seconds between two samples of the soak.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    soak_sample_seconds: u64,
    /// Where the soak writes its samples (CSV).
    #[arg(long, default_value = "soak.csv")]
    soak_csv: PathBuf,
    /// Seconds of HTTP load (wrk, from a second process) on the planner's
    /// `/v1/demand` during the soak; 0: none.
    #[arg(long, default_value_t = 60)]
    soak_load_seconds: u64,
    /// Minute of the soak at which the HTTP load starts (default: the
    /// middle of the run).
    #[arg(long)]
    soak_load_at_minute: Option<f64>,
    /// wrk's connections.
    #[arg(long, default_value_t = 16)]
    soak_load_connections: u32,
}

/// A `--latency-rate`: documents/s above zero.
fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a rate above zero (documents/s)")),
    }
}

pub(crate) fn topics(run: &str) -> TopicArgs {
    TopicArgs {
        topic_submitted: format!("bench.{run}.submitted"),
        topic_validated: format!("bench.{run}.validated"),
        topic_rejected: format!("bench.{run}.rejected"),
        topic_audit: format!("bench.{run}.audit"),
        topic_demand: format!("bench.{run}.demand"),
        topic_supply: format!("bench.{run}.supply"),
        topic_licences: format!("bench.{run}.licences"),
        topic_licence_demand: format!("bench.{run}.by-licence"),
        topic_screening: format!("bench.{run}.screening"),
        topic_commits: format!("bench.{run}.commits"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The harness's own clients log as the services do (`RUST_LOG`).
    forecast_runtime::telemetry::init(&forecast_runtime::config::LogArgs::default());
    let (brokers, broker, binary) = match &args.brokers {
        Some(b) => (b.clone(), None, None),
        None => {
            let tansu = forecast_broker::tansu_path(
                args.tansu.as_deref(),
                Path::new(forecast_broker::DEFAULT_CACHE_DIR),
            )?;
            eprintln!("broker: {}", tansu.display());
            eprintln!("broker storage: {}", args.storage);
            let t =
                forecast_broker::Tansu::start_with(&tansu, free_port(), None, &args.storage, &[])?;
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
    let mut docs = stream(n, "B");
    let signers = args.signed.then(crate::workload::Signers::new);
    if let Some(signers) = &signers {
        sign_all(&mut docs, signers, &dir.join("keys.jsonl"))?;
        // The generated documents are dated in the past: no skew limit.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&policy)
            .and_then(|mut f| {
                std::io::Write::write_all(
                    &mut f,
                    b"signing_keys = \"keys.jsonl\"\nsignatures = \"required\"\nmax_submitted_at_skew_seconds = 4000000000\n",
                )
            })?;
    }
    let bench = Bench {
        kafka: &kafka,
        layout,
        policy: &policy,
        producer: &producer,
        records: &docs.iter().map(Encoded::of).collect::<Vec<_>>(),
        broker_pid: broker.as_ref().map(forecast_broker::Tansu::pid),
        signers: signers.as_ref(),
    };
    if let Some(minutes) = args.soak_minutes {
        let rate = match args.soak_rate {
            Some(r) => r,
            None => {
                let f = bench.throughput(&format!("{run}-sr")).await?;
                eprintln!(
                    "end to end sustained {:.0} docs/s; the soak offers half",
                    f.end_to_end
                );
                f.end_to_end / 2.0
            }
        };
        let plan = soak::SoakPlan {
            minutes,
            rate,
            documents: usize::try_from(args.soak_documents)?,
            sse_clients: args.soak_sse_clients,
            sample: std::time::Duration::from_secs(args.soak_sample_seconds),
            csv: args.soak_csv.clone(),
            load: (args.soak_load_seconds > 0).then(|| soak::LoadWindow {
                at_minute: args.soak_load_at_minute.unwrap_or(minutes / 2.0),
                seconds: args.soak_load_seconds,
                connections: args.soak_load_connections,
            }),
        };
        eprintln!(
            "soak: {minutes} min at {rate:.0} docs/s over {} documents, {} SSE clients; samples in {}",
            plan.documents,
            plan.sse_clients,
            plan.csv.display()
        );
        let report = soak::soak(&bench, &format!("{run}-soak"), &plan).await?;
        report.print();
        let mut json = report.json();
        json["rate_docs_per_s"] = rate.into();
        json["documents"] = plan.documents.into();
        json["csv"] = plan.csv.display().to_string().into();
        if let Some(path) = &args.json {
            std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
        }
        eprintln!(
            "plot: scripts/plot-soak {} {}",
            plan.csv.display(),
            soak::plot_path(&plan.csv).display()
        );
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
    let mut runs = Vec::new();
    for r in 0..args.repeat {
        let f = bench.throughput(&format!("{run}-{r}")).await?;
        eprintln!(
            "run {}: (a) {:.0} (b) {:.0} (c) {:.0} (d) {:.0} (e) {:.0} docs/s; b/a {:.2} c/a {:.2} d/a {:.2}; CPU per doc (a) {:.1} (b) {:.1} (c) {:.1} (e) {:.1} us; waiting for a core per doc (a) {:.1} (b) {:.1} (c) {:.1} us; broker CPU per doc (a) {:.1} (b) {:.1} (c) {:.1} us",
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
            f.core_wait_us[0],
            f.core_wait_us[1],
            f.core_wait_us[2],
            f.broker_cpu_us[0],
            f.broker_cpu_us[1],
            f.broker_cpu_us[2],
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

/// Signs each document with its customer's key and writes their key
/// registry to `registry`.
fn sign_all(
    docs: &mut [forecast_model::ForecastDocument],
    signers: &crate::workload::Signers,
    registry: &Path,
) -> anyhow::Result<()> {
    let mut entries = String::new();
    for (customer, signer) in signers.iter() {
        let entry = forecast_validator::KeyEntry::for_signer(
            signer,
            customer,
            forecast_model::Timestamp::from_millis(0),
            None,
        );
        entries += &(serde_json::to_string(&entry)? + "\n");
    }
    std::fs::write(registry, entries)?;
    for doc in docs {
        signers.sign(doc);
    }
    Ok(())
}
