//! The services: `validate`, `aggregate`, `allocator` and `planner`, each
//! its library's loop under the runtime's supervisor, with its HTTP
//! endpoints.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use forecast_aggregator::service::AggregatorArgs;
use forecast_kafka::KafkaArgs;
use forecast_model::allocation::AllocationPolicy;
use forecast_model::attest::{Attester, Role};
use forecast_runtime::config::{LogArgs, TopicArgs};
use forecast_runtime::metrics::Metrics;
use forecast_runtime::supervise::Supervisor;
use forecast_runtime::topics::TopicLayout;
use forecast_stage::trust::{RoleKeyArgs, Trust, TrustArgs};
use forecast_validator::service::ValidatorArgs;
use tokio_util::sync::CancellationToken;

use crate::PolicyArgs;

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
    #[command(flatten)]
    pub trust: TrustArgs,
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
    pub role_keys: RoleKeyArgs,
    #[command(flatten)]
    pub validator: ValidatorArgs,
}

/// Arguments of `aggregate`.
#[derive(Debug, Args)]
pub struct AggregateArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub role_keys: RoleKeyArgs,
    #[command(flatten)]
    pub aggregator: AggregatorArgs,
}

/// Arguments of `allocator`.
#[derive(Debug, Args)]
pub struct AllocatorServiceArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub role_keys: RoleKeyArgs,
    /// The supplier's private key (PKCS#8 PEM, `keys generate --role
    /// supplier`; its public key in --role-keys under role `supplier`),
    /// which signs every commit.
    #[arg(long, env = "FORECAST_SUPPLIER_KEY", value_name = "FILE")]
    pub signing_key: PathBuf,
    /// Allocation policy (TOML, as `forecastctl allocate` takes it).
    /// Default: pro_rata of APPROVED demand, firm first, unallocated supply
    /// carried over.
    #[arg(long, env = "FORECAST_ALLOCATION_POLICY", value_name = "FILE")]
    pub allocation_policy: Option<PathBuf>,
    /// Supply plan (CSV: sku,quarter,on_hand,ordered); entries of the
    /// supply.plan topic replace the file's for their SKU and quarter.
    #[arg(long, env = "FORECAST_SUPPLY", value_name = "FILE")]
    pub supply: Option<PathBuf>,
    /// Milliseconds the allocator waits after an input changed before it
    /// allocates again: the changes of that time make one round of
    /// commits.
    #[arg(
        long,
        env = "FORECAST_SETTLE_MS",
        default_value_t = 250,
        value_name = "MS"
    )]
    pub settle_ms: u64,
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
    pub access: forecast_planner::auth::AccessArgs,
    #[command(flatten)]
    pub tls: forecast_runtime::http::TlsArgs,
    #[command(flatten)]
    pub limits: forecast_runtime::http::HttpLimits,
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
    #[command(flatten)]
    pub trust: TrustArgs,
    #[command(flatten)]
    pub role_keys: RoleKeyArgs,
}

/// What the aggregator attests with and believes, under `trust`.
pub fn aggregator_keys(trust: &Trust) -> forecast_aggregator::service::Keys {
    forecast_aggregator::service::Keys {
        attester: trust.attester(Role::Aggregator),
        validated: trust.stages(&[Role::Validator]),
        decisions: trust.signed_by(Role::Compliance, "licence decision"),
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
    let metrics = Arc::new(forecast_stage::metrics::new(name));
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
    let trust = Trust::load(&service.trust, Some(&args.role_keys), Some(Role::Validator))?;
    run_service(
        service,
        "validator",
        token,
        axum::Router::new(),
        |metrics, token| {
            forecast_validator::service::run(
                validator,
                trust.attester(Role::Validator),
                trust.signed_by(Role::Compliance, "restricted-party list"),
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
    let trust = Trust::load(
        &service.trust,
        Some(&args.role_keys),
        Some(Role::Aggregator),
    )?;
    let keys = aggregator_keys(&trust);
    run_service(
        service,
        "aggregator",
        token,
        axum::Router::new(),
        |metrics, token| {
            forecast_aggregator::service::run(
                keys,
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

/// What the allocator believes and signs with, under `trust`; refused
/// when `supplier` is not a supplier key `trust` believes (the planner,
/// with the same registry, would refuse every commit).
pub fn allocator_keys(
    trust: &Trust,
    supplier: Attester,
) -> anyhow::Result<forecast_allocator::service::Keys> {
    let commits = trust.signed_by(Role::Supplier, "commit");
    let probe = forecast_model::commit::Commit {
        customer_id: "probe".into(),
        allocated_at: forecast_model::Timestamp::now(),
        method: forecast_model::allocation::Method::ProRata,
        lines: Vec::new(),
    };
    forecast_model::commit::SignedCommit::sign(&probe, "commits", &supplier)?
        .verify(&commits)
        .map_err(|e| {
            deployment(format!(
                "the --signing-key is not a supplier key of --role-keys ({e}): add its public key under role `supplier` (`forecastctl keys generate --role supplier` prints the line), or readers refuse every commit"
            ))
        })?;
    Ok(forecast_allocator::service::Keys {
        supplier,
        validated: trust.stages(&[Role::Validator]),
        decisions: trust.signed_by(Role::Compliance, "licence decision"),
        supply: trust.signed_by(Role::Operator, "supply plan record"),
        commits,
    })
}

/// A setting that is wrong: the deployment needs a fix (exit 78).
fn deployment(message: String) -> anyhow::Error {
    use forecast_runtime::failure::{Classified, Domain};
    anyhow::Error::new(Classified::new(Domain::Internal, message))
}

/// Runs the allocating service until SIGINT/SIGTERM.
pub async fn allocator(
    args: &AllocatorServiceArgs,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let service = &args.service;
    let policy = match &args.allocation_policy {
        Some(path) => crate::allocate::read_policy(path).map_err(|e| deployment(e.to_string()))?,
        None => AllocationPolicy::default(),
    };
    let supply = match &args.supply {
        Some(path) => forecast_planner::supply::load(path)
            .map_err(|e| deployment(format!("{e} (see --supply)")))?,
        None => Vec::new(),
    };
    let supplier = forecast_producer::read_signer(&args.signing_key, None)
        .map_err(|e| deployment(format!("{e} (see --signing-key)")))?
        .attester();
    let trust = Trust::load(&service.trust, Some(&args.role_keys), None)?;
    let keys = allocator_keys(&trust, supplier)?;
    let settle = Duration::from_millis(args.settle_ms);
    run_service(
        service,
        "allocator",
        token,
        axum::Router::new(),
        |metrics, token| {
            forecast_allocator::service::run(
                forecast_allocator::Book::new(policy, supply),
                keys,
                &service.kafka,
                &service.topics,
                settle,
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
    let tls = args.tls.config()?;
    let trust = Trust::load(&args.trust, Some(&args.role_keys), None)?;
    // Refused before anything starts: an open API off loopback.
    let access = args
        .access
        .access(args.http)
        .map_err(|e| deployment(format!("{e} (see --tokens)")))?;
    let listener = forecast_runtime::http::bind(args.http).await?;
    let metrics = Arc::new(forecast_stage::metrics::new("planner"));
    let feed = forecast_planner::feed::spawn(
        planner.clone(),
        args.kafka.clone(),
        args.topics.clone(),
        forecast_planner::feed::Believed::from_trust(&trust),
        metrics.clone(),
        token.clone(),
    );
    if matches!(access, forecast_planner::auth::Access::Open(_)) {
        tracing::warn!(
            http = %args.http,
            "no --tokens: the planner API answers anyone who reaches {}",
            args.http
        );
    }
    let router = forecast_planner::auth::protect(
        forecast_runtime::http::routes(metrics).merge(forecast_planner::api::routes(planner)),
        access,
    );
    let mut tasks = Supervisor::new(token.clone(), args.shutdown.drain());
    tasks.spawn(
        "the planner API",
        forecast_runtime::http::serve_with(listener, router, tls, args.limits.clone(), token),
    );
    tasks.spawn("the planner's feed", async move { feed.await? });
    tasks.run().await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::{Cli, Command};

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(args).unwrap().command
    }

    #[test]
    fn the_defaults_up_runs_with_are_the_command_lines() {
        let Command::Validate(v) = parse(&["forecastctl", "validate"]) else {
            panic!("not validate");
        };
        let d = ValidatorArgs::default();
        assert_eq!(v.validator.group, d.group);
        assert_eq!(v.validator.max_record_bytes, d.max_record_bytes);
        assert_eq!(v.validator.flight.max_in_flight, d.flight.max_in_flight);
        assert_eq!(
            v.service.layout.partitions,
            LayoutArgs::default().partitions
        );
        assert_eq!(
            v.service.layout.replication,
            LayoutArgs::default().replication
        );
        assert_eq!(v.service.shutdown.drain(), Duration::from_secs(30));
        let Command::Aggregate(a) = parse(&["forecastctl", "aggregate"]) else {
            panic!("not aggregate");
        };
        assert_eq!(a.aggregator.group, AggregatorArgs::default().group);
    }

    #[test]
    fn a_shutdown_timeout_and_an_http_address_are_taken_from_the_flags() {
        let Command::Planner(p) = parse(&[
            "forecastctl",
            "planner",
            "--shutdown-timeout",
            "5",
            "--http",
            "127.0.0.1:9999",
        ]) else {
            panic!("not planner");
        };
        assert_eq!(p.shutdown.drain(), Duration::from_secs(5));
        assert_eq!(p.http.port(), 9999);
        assert!(
            Cli::try_parse_from(["forecastctl", "validate", "--shutdown-timeout", "soon"]).is_err()
        );
    }

    #[tokio::test]
    async fn an_http_address_in_use_stops_the_service_before_it_starts() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        // No broker at all: the bind must fail first, naming the flag.
        let Command::Aggregate(a) = parse(&[
            "forecastctl",
            "aggregate",
            "--brokers",
            "127.0.0.1:9",
            "--http",
            &addr,
            "--insecure-no-attestation",
        ]) else {
            panic!("not aggregate");
        };
        let error = aggregate(&a, CancellationToken::new()).await.unwrap_err();
        let text = format!("{error:#}");
        assert!(text.contains(&addr) && text.contains("--http"), "{text}");
    }
}
