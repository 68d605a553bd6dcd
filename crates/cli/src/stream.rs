//! The commands that talk to Kafka: `submit`, `validate`, `aggregate`,
//! `demand` and `topics create`.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use forecast_aggregator::read::{DemandView, read_to_end};
use forecast_aggregator::service::AggregatorArgs;
use forecast_producer::Submitter;
use forecast_runtime::config::{KafkaArgs, LogArgs, TopicArgs};
use forecast_runtime::kafka::TopicLayout;
use forecast_runtime::metrics::Metrics;
use forecast_validator::service::ValidatorArgs;
use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::Message;
use tokio_util::sync::CancellationToken;

use crate::{Format, PolicyArgs, input, report};

/// Arguments of `submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    #[command(flatten)]
    pub log: LogArgs,
    /// Largest encoded document sent (bytes); larger ones are refused locally.
    #[arg(long, env = "FORECAST_MAX_RECORD_BYTES", default_value_t = forecast_producer::DEFAULT_MAX_RECORD_BYTES)]
    pub max_record_bytes: usize,
    /// Files holding one JSON document, or JSON Lines; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Arguments of the services.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub layout: LayoutArgs,
    /// Serve /metrics, /healthz and /readyz on this address (e.g. 127.0.0.1:9464).
    #[arg(long, env = "FORECAST_HTTP", value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,
}

/// Partitions of topics this command creates when missing.
#[derive(Debug, Clone, Args)]
pub struct LayoutArgs {
    /// Partitions of each topic created (the most instances that share the work).
    #[arg(long, env = "FORECAST_PARTITIONS", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,
    /// Replication factor of each topic created.
    #[arg(long, env = "FORECAST_REPLICATION", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub replication: i32,
}

impl LayoutArgs {
    fn layout(&self) -> TopicLayout {
        TopicLayout {
            partitions: self.partitions,
            replication: self.replication,
        }
    }
}

/// Arguments of `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub validator: ValidatorArgs,
}

/// Arguments of `aggregate`.
#[derive(Debug, Args)]
pub struct AggregateArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub aggregator: AggregatorArgs,
}

/// Arguments of `demand`.
#[derive(Debug, Args)]
pub struct DemandArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    /// Output format (JSON: the `demand` array of `replay --format json`).
    #[arg(long, env = "FORECAST_FORMAT", value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Only this customer.
    #[arg(long, value_name = "ID")]
    pub customer: Option<String>,
    /// Keep reading and print the demand again after every change.
    #[arg(long)]
    pub watch: bool,
    /// How long reading the topic to its end may take.
    #[arg(long, default_value = "30", value_name = "SECONDS")]
    pub timeout_secs: u64,
}

/// `topics` subcommands.
#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create the pipeline's topics when missing (compacted demand topic,
    /// unlimited retention for validated and audit).
    Create {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        topics: TopicArgs,
        #[command(flatten)]
        layout: LayoutArgs,
    },
}

/// Submits documents; returns whether every one was delivered.
pub async fn submit(args: &SubmitArgs) -> anyhow::Result<bool> {
    let submitter = Submitter::new(&args.kafka, &args.topics.topic_submitted)?
        .with_max_record_bytes(args.max_record_bytes);
    let mut tally = Tally::default();
    // Hidden when standard error is not a terminal.
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} documents delivered ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut in_flight = FuturesUnordered::new();
    for path in &args.files {
        let origin = path.display().to_string();
        let submissions = input::open(path)
            .and_then(input::read_all)
            .map_err(|e| anyhow::anyhow!("cannot read {origin}: {e}"))?;
        bar.inc_length(submissions.len() as u64);
        for sub in submissions {
            match forecast_model::parse_submission(&sub.bytes) {
                Err(e) => {
                    let field = if e.field.is_empty() {
                        String::new()
                    } else {
                        format!(" at {}", e.field)
                    };
                    tally.refused(
                        &bar,
                        format!(
                            "{origin}:{}: refused, not sent: SCHEMA_INVALID{field}: {}",
                            sub.line, e.message
                        ),
                    );
                }
                Ok(doc) => match submitter.enqueue(&doc).await {
                    Ok(pending) => {
                        let origin = origin.clone();
                        in_flight.push(async move { (origin, sub.line, pending.receipt().await) });
                    }
                    Err(e) => tally.refused(
                        &bar,
                        format!("{origin}:{}: refused, not sent: {e}", sub.line),
                    ),
                },
            }
            // Bound memory: settle deliveries as they come.
            while in_flight.len() >= 10_000 {
                if let Some(r) = in_flight.next().await {
                    tally.settled(&bar, r);
                }
            }
        }
    }
    while let Some(r) = in_flight.next().await {
        tally.settled(&bar, r);
    }
    bar.finish_and_clear();
    eprintln!(
        "{} sent, {} refused locally, {} failed",
        tally.sent, tally.refused, tally.failed
    );
    Ok(tally.refused == 0 && tally.failed == 0)
}

/// What `submit` did with each document.
#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    refused: u64,
    failed: u64,
}

impl Tally {
    fn refused(&mut self, bar: &indicatif::ProgressBar, why: String) {
        self.refused += 1;
        bar.inc(1);
        bar.suspend(|| eprintln!("{why}"));
    }

    fn settled(
        &mut self,
        bar: &indicatif::ProgressBar,
        (origin, line, r): (
            String,
            usize,
            Result<forecast_producer::Receipt, forecast_producer::SubmitError>,
        ),
    ) {
        bar.inc(1);
        match r {
            Ok(_) => self.sent += 1,
            Err(e) => {
                self.failed += 1;
                bar.suspend(|| eprintln!("{origin}:{line}: not delivered: {e}"));
            }
        }
    }
}

/// Creates the topics, logging what was created.
pub async fn create_topics(
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    layout: &LayoutArgs,
) -> anyhow::Result<()> {
    let created = forecast_runtime::kafka::create_topics(kafka, topics, layout.layout()).await?;
    if !created.is_empty() {
        tracing::info!(topics = %created.join(","), partitions = layout.partitions, "created topics");
    }
    Ok(())
}

/// Creates the topics, serves `--http`, and runs a service until it stops.
async fn run_service<F: std::future::Future<Output = anyhow::Result<()>>>(
    service: &ServiceArgs,
    name: &'static str,
    token: CancellationToken,
    run: impl FnOnce(Arc<Metrics>, CancellationToken) -> F,
) -> anyhow::Result<()> {
    create_topics(&service.kafka, &service.topics, &service.layout).await?;
    let metrics = Arc::new(Metrics::new(name));
    let http = service.http.map(|addr| {
        let router = forecast_runtime::http::routes(metrics.clone());
        tokio::spawn(forecast_runtime::http::serve(addr, router, token.clone()))
    });
    let result = run(metrics, token.clone()).await;
    token.cancel();
    if let Some(h) = http {
        h.await??;
    }
    result
}

/// Runs the validating service until SIGINT/SIGTERM.
pub async fn validate(args: &ValidateArgs, token: CancellationToken) -> anyhow::Result<()> {
    let policy = args
        .policy
        .load()
        .map_err(|e| anyhow::anyhow!("{e} (see --policy / --restricted-parties)"))?;
    let validator = forecast_validator::Validator::new(policy);
    let service = &args.service;
    run_service(service, "validator", token, |metrics, token| {
        forecast_validator::service::run(
            validator,
            &service.kafka,
            &service.topics,
            &args.validator,
            metrics,
            token,
        )
    })
    .await
}

/// Runs the aggregating service until SIGINT/SIGTERM.
pub async fn aggregate(args: &AggregateArgs, token: CancellationToken) -> anyhow::Result<()> {
    let service = &args.service;
    run_service(service, "aggregator", token, |metrics, token| {
        forecast_aggregator::service::run(
            &service.kafka,
            &service.topics,
            &args.aggregator,
            metrics,
            token,
        )
    })
    .await
}

/// Prints the demand read from the compacted topic.
pub async fn demand(args: &DemandArgs, token: CancellationToken) -> anyhow::Result<()> {
    let kafka = args.kafka.clone();
    let topic = args.topics.topic_demand.clone();
    let timeout = Duration::from_secs(args.timeout_secs);
    let (mut view, reader) =
        tokio::task::spawn_blocking(move || read_to_end(&kafka, &topic, timeout)).await??;
    print_demand(&view, args)?;
    if !args.watch {
        return Ok(());
    }
    // Follow: print again after each batch of changes.
    let reader = Arc::new(reader);
    loop {
        let r = reader.clone();
        let batch = tokio::select! {
            _ = token.cancelled() => return Ok(()),
            b = tokio::task::spawn_blocking(move || {
                let mut got = Vec::new();
                while let Some(m) = r.poll(Duration::from_millis(if got.is_empty() { 500 } else { 0 })) {
                    let m = m?;
                    got.push((m.key().unwrap_or_default().to_vec(), m.payload().map(<[u8]>::to_vec)));
                    if got.len() > 10_000 { break; }
                }
                anyhow::Ok(got)
            }) => b??,
        };
        let mut changed = false;
        for (k, v) in &batch {
            changed |= view.update(k, v.as_deref());
        }
        if changed {
            print_demand(&view, args)?;
        }
    }
}

fn print_demand(view: &DemandView, args: &DemandArgs) -> anyhow::Result<()> {
    let rows = view.rows(args.customer.as_deref());
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            report::write_json(&mut out, &rows)?;
            writeln!(out)?;
        }
        Format::Text => {
            if args.watch {
                writeln!(out, "\n# demand at {}", forecast_model::Timestamp::now())?;
            }
            report::write_demand_table(&mut out, &rows)?;
        }
    }
    out.flush()?;
    Ok(())
}
