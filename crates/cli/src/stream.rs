//! The commands that talk to Kafka: `submit`, `validate`, `aggregate`,
//! `planner`, `demand`, `topics create` and `supply load`.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use forecast_aggregator::service::AggregatorArgs;
use forecast_kafka::KafkaArgs;
use forecast_model::DemandView;
use forecast_planner::demand::{apply, next_changes, read_to_end};
use forecast_producer::Submitter;
use forecast_runtime::config::{LogArgs, TopicArgs};
use forecast_runtime::metrics::Metrics;
use forecast_runtime::supervise::Supervisor;
use forecast_runtime::topics::TopicLayout;
use forecast_validator::service::ValidatorArgs;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::{PolicyArgs, input, report};

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
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
}

/// How long a stopping service may take.
#[derive(Debug, Clone, Copy, Args)]
pub struct ShutdownArgs {
    /// Seconds a service has, once told to stop (SIGINT, SIGTERM, or one of
    /// its tasks failing), to finish what is in flight, flush and commit;
    /// then it is aborted (records not committed are read again). A second
    /// signal exits at once.
    #[arg(
        long = "shutdown-timeout",
        env = "FORECAST_SHUTDOWN_TIMEOUT",
        default_value_t = 30,
        value_name = "SECONDS"
    )]
    pub seconds: u64,
}

impl ShutdownArgs {
    fn drain(self) -> Duration {
        Duration::from_secs(self.seconds)
    }
}

/// Partitions of topics this command creates when missing.
#[derive(Debug, Clone, Args)]
pub struct LayoutArgs {
    /// Partitions of each topic created (the most instances that share the work).
    #[arg(long, env = "FORECAST_PARTITIONS", default_value_t = LayoutArgs::default().partitions, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,
    /// Replication factor of each topic created.
    #[arg(long, env = "FORECAST_REPLICATION", default_value_t = LayoutArgs::default().replication, value_parser = clap::value_parser!(i32).range(1..))]
    pub replication: i32,
}

/// The command line's defaults: 3 partitions, no replication (one broker).
impl Default for LayoutArgs {
    fn default() -> Self {
        Self {
            partitions: 3,
            replication: 1,
        }
    }
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

/// Arguments of `planner`.
#[derive(Debug, Args)]
pub struct PlannerServiceArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    #[command(flatten)]
    pub log: LogArgs,
    /// Serve the planner API, the dashboard, /metrics, /healthz and /readyz
    /// (ready once the view holds what the topics held at start) here.
    #[arg(
        long,
        env = "FORECAST_HTTP",
        value_name = "ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub http: std::net::SocketAddr,
    #[command(flatten)]
    pub planner: forecast_planner::PlannerArgs,
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
}

/// Arguments of `demand`.
#[derive(Debug, Args)]
pub struct DemandArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    /// Output format: a table, JSON (the `demand` array of `replay --format
    /// json`) or CSV with a header line (for spreadsheets).
    #[arg(long, env = "FORECAST_FORMAT", value_enum, default_value_t = DemandFormat::Text)]
    pub format: DemandFormat,
    /// Only this customer.
    #[arg(long, value_name = "ID")]
    pub customer: Option<String>,
    /// Keep reading and show the demand again after every change: on a
    /// terminal the table is redrawn in place; otherwise each new demand is
    /// appended (a table, a JSON line or a CSV block).
    #[arg(long)]
    pub watch: bool,
    /// How long reading the topic to its end may take.
    #[arg(long, default_value = "30", value_name = "SECONDS")]
    pub timeout_secs: u64,
}

/// `supply` subcommands.
#[derive(Debug, Subcommand)]
pub enum SupplyCommand {
    /// Publish a supply plan file (CSV: sku,quarter,on_hand,ordered) to the
    /// supply.plan topic, one record per SKU and quarter (key SKU/QUARTER,
    /// JSON value); a later load replaces those SKUs and quarters.
    Load {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        topics: TopicArgs,
        /// The plan.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// Publishes a supply plan file to the supply topic.
pub async fn load_supply(
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let entries = forecast_planner::supply::load(file)?;
    forecast_runtime::topics::check_reachable(kafka, Duration::from_secs(15)).await?;
    let producer: FutureProducer = forecast_kafka::producer_config(kafka).create()?;
    let (p, topic) = (producer.clone(), topics.topic_supply.clone());
    let exists = tokio::task::spawn_blocking(move || {
        use rdkafka::producer::Producer as _;
        forecast_kafka::partition_ids(p.client(), &topic, Duration::from_secs(10))
            .map(|ids| !ids.is_empty())
    })
    .await??;
    anyhow::ensure!(
        exists,
        "topic {} does not exist: run `forecastctl topics create` (or start the services) first",
        topics.topic_supply
    );
    let mut deliveries = FuturesUnordered::new();
    for e in &entries {
        let (key, value) = (e.key(), serde_json::to_vec(e)?);
        let record = FutureRecord::to(&topics.topic_supply)
            .key(key.as_bytes())
            .payload(value.as_slice());
        deliveries.push(forecast_kafka::enqueue(&producer, record).await?);
    }
    while let Some(d) = deliveries.next().await {
        d?.map_err(|(e, _)| anyhow::anyhow!("supply record not delivered: {e}"))?;
    }
    eprintln!(
        "{} supply entries published to {}",
        entries.len(),
        topics.topic_supply
    );
    Ok(())
}

/// Output format of `demand`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DemandFormat {
    /// An aligned table with a total line.
    Text,
    /// The `demand` array of `replay --format json`, on one line.
    Json,
    /// CSV with the header customer_id,sku,quarter,firm_units,planning_units,total_units.
    Csv,
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
    let created = forecast_runtime::topics::create_topics(kafka, topics, layout.layout()).await?;
    if !created.is_empty() {
        tracing::info!(topics = %created.join(","), partitions = layout.partitions, "created topics");
    }
    Ok(())
}

/// Creates the topics, serves `--http` (the operational routes and
/// `routes`), and runs a service until it stops.
async fn run_service<F: std::future::Future<Output = anyhow::Result<()>>>(
    service: &ServiceArgs,
    name: &'static str,
    token: CancellationToken,
    routes: axum::Router,
    run: impl FnOnce(Arc<Metrics>, CancellationToken) -> F,
) -> anyhow::Result<()> {
    // Taken first: an address in use stops the process before it starts work.
    let listener = match service.http {
        Some(addr) => Some(forecast_runtime::http::bind(addr).await?),
        None => None,
    };
    create_topics(&service.kafka, &service.topics, &service.layout).await?;
    let metrics = Arc::new(Metrics::new(name));
    let mut tasks = Supervisor::new(token.clone(), service.shutdown.drain());
    if let Some(listener) = listener {
        let router = forecast_runtime::http::routes(metrics.clone()).merge(routes);
        tasks.spawn(
            "the HTTP endpoints",
            forecast_runtime::http::serve_on(listener, router, token.clone()),
        );
    }
    tasks.run_foreground(name, run(metrics, token)).await
}

/// Runs the validating service until SIGINT/SIGTERM.
pub async fn validate(args: &ValidateArgs, token: CancellationToken) -> anyhow::Result<()> {
    let policy = args
        .policy
        .load()
        .map_err(|e| anyhow::anyhow!("{e} (see --policy / --restricted-parties)"))?;
    let validator = forecast_validator::Validator::new(policy);
    let service = &args.service;
    run_service(
        service,
        "validator",
        token,
        axum::Router::new(),
        |metrics, token| {
            forecast_validator::service::run(
                validator,
                &service.kafka,
                &service.topics,
                &args.validator,
                metrics,
                token,
            )
        },
    )
    .await
}

/// Runs the aggregating service until SIGINT/SIGTERM.
pub async fn aggregate(args: &AggregateArgs, token: CancellationToken) -> anyhow::Result<()> {
    let service = &args.service;
    run_service(
        service,
        "aggregator",
        token,
        axum::Router::new(),
        |metrics, token| {
            forecast_aggregator::service::run(
                &service.kafka,
                &service.topics,
                &args.aggregator,
                metrics,
                token,
            )
        },
    )
    .await
}

/// Runs the planner API and dashboard until SIGINT/SIGTERM, or until its
/// feed or its listener fails.
pub async fn planner(args: &PlannerServiceArgs, token: CancellationToken) -> anyhow::Result<()> {
    let planner = Arc::new(
        args.planner
            .planner()
            .map_err(|e| anyhow::anyhow!("{e} (see --supply)"))?,
    );
    let listener = forecast_runtime::http::bind(args.http).await?;
    let metrics = Arc::new(Metrics::new("planner"));
    let feed = forecast_planner::feed::spawn(
        planner.clone(),
        args.kafka.clone(),
        args.topics.clone(),
        metrics.clone(),
        token.clone(),
    );
    let router =
        forecast_runtime::http::routes(metrics).merge(forecast_planner::api::routes(planner));
    let mut tasks = Supervisor::new(token.clone(), args.shutdown.drain());
    tasks.spawn(
        "the planner API",
        forecast_runtime::http::serve_on(listener, router, token),
    );
    tasks.spawn("the planner's feed", async move { feed.await? });
    tasks.run().await
}

/// Prints the demand read from the compacted topic.
pub async fn demand(args: &DemandArgs, token: CancellationToken) -> anyhow::Result<()> {
    let kafka = args.kafka.clone();
    let topic = args.topics.topic_demand.clone();
    let timeout = Duration::from_secs(args.timeout_secs);
    let (mut view, reader) =
        tokio::task::spawn_blocking(move || read_to_end(&kafka, &topic, timeout)).await??;
    let mut changes = 0u64;
    print_demand(&view, args, changes)?;
    if !args.watch {
        return Ok(());
    }
    // Follow: print again after each batch of changes.
    let reader = Arc::new(reader);
    loop {
        let r = reader.clone();
        let batch = tokio::select! {
            _ = token.cancelled() => return Ok(()),
            b = tokio::task::spawn_blocking(move || next_changes(&r)) => b??,
        };
        let mut changed = false;
        for (k, v) in &batch {
            if apply(&mut view, k, v.as_deref()) {
                changed = true;
                changes += 1;
            }
        }
        if changed {
            print_demand(&view, args, changes)?;
        }
    }
}

fn print_demand(view: &DemandView, args: &DemandArgs, changes: u64) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    let rows = view.rows(args.customer.as_deref());
    let mut out = std::io::stdout().lock();
    match args.format {
        DemandFormat::Json => {
            report::write_json(&mut out, &rows)?;
            writeln!(out)?;
        }
        DemandFormat::Csv => report::write_demand_csv(&mut out, &rows)?,
        DemandFormat::Text => {
            if args.watch {
                let at = forecast_model::Timestamp::now();
                if out.is_terminal() {
                    // Redraw in place: cursor home, clear the screen.
                    write!(out, "\x1b[H\x1b[2J")?;
                    writeln!(
                        out,
                        "demand at {at}  ({changes} changes seen; Ctrl-C stops)\n"
                    )?;
                } else {
                    writeln!(out, "\n# demand at {at} ({changes} changes seen)")?;
                }
            }
            report::write_demand_table(&mut out, &rows)?;
        }
    }
    out.flush()?;
    Ok(())
}
