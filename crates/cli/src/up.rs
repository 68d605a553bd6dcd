//! `forecastctl up`: the whole pipeline on one machine, with an embedded
//! default broker.
//!
//! Its phases, one file each: the broker started ([`forecast_broker`]), the
//! keys and token of the run (`up/keys.rs`), the services started
//! (`up/start.rs`), the examples submitted, and what the pipeline published
//! checked against `replay` of the same file and shown (`up/verify.rs`).
//!
//! The broker is tansu (a Kafka-protocol broker written in Rust), run as a
//! child process on loopback with in-memory storage; it stops with this
//! command. The validator and the aggregator run in this process, exactly
//! as `forecastctl validate` and `aggregate` run them.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use forecast_broker::{DEFAULT_CACHE_DIR, Tansu, tansu_path};
use forecast_kafka::KafkaArgs;
use forecast_runtime::config::{LogArgs, LogFormat, TopicArgs};
use forecast_runtime::supervise::blocking;
use tokio_util::sync::CancellationToken;

use crate::services::{self, LayoutArgs};
use crate::{PolicyArgs, submit};

mod keys;
mod start;
mod verify;

/// Arguments of `up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Port of the embedded broker on 127.0.0.1.
    #[arg(long, env = "FORECAST_UP_PORT", default_value_t = 19092)]
    pub port: u16,
    /// tansu binary; by default the build of scripts/install-tansu (tansu
    /// 0.6.0 with deploy/tansu.patch) in the cache folder, made there with
    /// cargo the first time.
    #[arg(long, env = "FORECAST_TANSU", value_name = "PATH")]
    pub tansu: Option<PathBuf>,
    /// Where the broker is built and kept.
    #[arg(
        long,
        env = "FORECAST_CACHE_DIR",
        default_value = DEFAULT_CACHE_DIR,
        value_name = "DIR"
    )]
    pub cache_dir: PathBuf,
    /// Forecasts to submit once the pipeline runs.
    #[arg(long, default_value = "examples/stream.jsonl", value_name = "FILE")]
    pub examples: PathBuf,
    /// Serve the dashboard, the planner API, and /metrics, /healthz and
    /// /readyz of the validator here (the aggregator's under /aggregator,
    /// the planner's under /planner).
    #[arg(
        long,
        env = "FORECAST_HTTP",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub http: std::net::SocketAddr,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Supply plan shown against demand (CSV: sku,quarter,on_hand,ordered).
    #[arg(long, default_value = "examples/supply.csv", value_name = "FILE")]
    pub supply: PathBuf,
    /// Licence decisions published (`licences load`) before the examples
    /// are submitted; demand by licence status is shown after the demand.
    #[arg(long, default_value = "examples/licences.jsonl", value_name = "FILE")]
    pub licences: PathBuf,
    /// Stop after showing the demand instead of running until Ctrl-C.
    #[arg(long)]
    pub once: bool,
    /// Also write the planner token made for this run to this file (mode
    /// 0600), for scripts; it is printed on standard error either way.
    #[arg(long, value_name = "FILE")]
    pub token_out: Option<PathBuf>,
    #[command(flatten)]
    pub tls: forecast_runtime::http::TlsArgs,
    #[command(flatten)]
    pub limits: forecast_runtime::http::HttpLimits,
}

/// Runs the whole pipeline locally.
pub async fn up(args: &UpArgs, token: CancellationToken) -> anyhow::Result<()> {
    let started = Instant::now();
    // Both block (an install of minutes the first time; then up to 30 s
    // until the broker listens): off the async workers.
    let tansu = blocking(|| tansu_path(args.tansu.as_deref(), &args.cache_dir))?;
    let broker = blocking(|| Tansu::start(&tansu, args.port, None))?;
    let brokers = broker.brokers.clone();
    eprintln!(
        "broker: tansu {} on {brokers} (in-memory storage)",
        tansu.display()
    );

    let kafka = KafkaArgs {
        brokers: brokers.clone(),
        properties: Vec::new(),
    };
    let topics = TopicArgs::default();
    // Taken first: an address in use (or a bad certificate) stops `up`
    // before it starts anything.
    let tls = args.tls.config()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = forecast_runtime::http::bind(args.http).await?;
    // Tansu::start waited until it listens; create_topics checks it answers.
    services::create_topics(&kafka, &topics, &LayoutArgs::default()).await?;
    let decisions = crate::read_licences(&args.licences)
        .map_err(|e| anyhow::anyhow!("{e} (see --licences)"))?;
    // The stages attest, and the licence decisions are signed, with keys
    // made for this run.
    let keys::RunKeys {
        trust,
        stage_lines,
        compliance,
        supplier,
    } = keys::run_keys()?;
    let stage_keys = Removed(keys::write_stage_keys(&stage_lines)?);
    crate::admin::publish_licences(&kafka, &topics, &decisions, Some(&compliance)).await?;

    // The API and dashboard answer a token made for this run.
    let (planner_token, access) = keys::planner_token(args.token_out.as_deref())?;
    let policy = args
        .policy
        .load()
        .map_err(|e| anyhow::anyhow!("{e} (see --policy / --restricted-parties / --keys)"))?;
    // Submissions signed, as customers send them: unless --keys names a
    // registry (then the examples are sent as they are), each registered
    // customer of the examples gets a key for this run, and the examples
    // are signed with their customer's key.
    let (policy, examples) = match args.policy.keys {
        Some(_) => (policy, args.examples.clone()),
        None => keys::sign_examples(policy, &args.examples)?,
    };
    // The signed copy is the run's own file.
    let _signed = (examples != args.examples).then(|| Removed(examples.clone()));
    let supply = forecast_planner::supply::load(&args.supply)
        .map_err(|e| anyhow::anyhow!("{e} (see --supply)"))?;
    let tasks = start::start(start::Run {
        kafka: &kafka,
        topics: &topics,
        trust: &trust,
        supplier,
        policy: &policy,
        supply,
        supply_file: &args.supply,
        access,
        listener,
        tls,
        limits: args.limits.clone(),
        token: &token,
    })?;
    // What the pipeline must end with: the same code, offline.
    let expected = verify::expected(policy, decisions, &examples)?;
    // The services run supervised while this task submits and waits: the
    // first of them to fail stops everything (and the wait below).
    let supervised = tokio::spawn(tasks.run());
    let submit_args = submit::SubmitArgs {
        kafka: kafka.clone(),
        topics: topics.clone(),
        log: LogArgs {
            log_format: LogFormat::Text,
        },
        max_record_bytes: forecast_producer::DEFAULT_MAX_RECORD_BYTES,
        policy: None,
        signing_key: None,
        key_id: None,
        wait: false,
        wait_timeout: 0,
        api: crate::status::ApiArgs {
            url: None,
            token: None,
            ca: None,
        },
        files: vec![examples.clone()],
    };
    eprintln!("submitting {}", examples.display());
    submit::submit(&submit_args).await?;

    let believed = forecast_planner::feed::Believed::from_trust(&trust);
    verify::show(
        &kafka,
        &topics,
        &believed,
        &token,
        expected,
        started,
        &args.licences,
    )
    .await?;
    let key_file = stage_keys.0.display();
    eprintln!(
        "broker:  {brokers}   (forecastctl demand --brokers {brokers} --stage-keys {key_file}, forecastctl submit --brokers {brokers} FILE)\n\
         stage keys of this run (readable by you only, removed when `up` stops): {key_file}\n\
         dashboard: {scheme}://{0}/   API: {scheme}://{0}/v1/demand (described at /openapi.json)\n\
         planner token (the dashboard asks for it; the API wants `Authorization: Bearer <token>`): {planner_token}\n\
         the supplier's commits (allocated under the default policy, signed with a key of this run): {scheme}://{0}/v1/commits\n\
         metrics: {scheme}://{0}/metrics  {scheme}://{0}/aggregator/metrics  {scheme}://{0}/allocator/metrics  {scheme}://{0}/planner/metrics   health: /healthz /readyz\n\
         {1}",
        args.http,
        if args.once {
            "stopping (--once)"
        } else {
            "running; Ctrl-C stops everything"
        }
    );
    if args.once {
        token.cancel();
    }
    let result = supervised.await?;
    // The broker last: the services flush and commit to it on the way out.
    drop(broker);
    result
}

/// A file of the run, removed when the run ends, however it ends.
struct Removed(std::path::PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
