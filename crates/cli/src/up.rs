//! `forecastctl up`: the whole pipeline on one machine, with an embedded
//! default broker.
//!
//! The broker is tansu (a Kafka-protocol broker written in Rust), run as a
//! child process on loopback with in-memory storage; it stops with this
//! command. The validator and the aggregator run in this process, exactly
//! as `forecastctl validate` and `aggregate` run them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use forecast_aggregator::service::AggregatorArgs;
use forecast_broker::{DEFAULT_CACHE_DIR, Tansu, tansu_path};
use forecast_kafka::KafkaArgs;
use forecast_model::Timestamp;
use forecast_model::allocation::AllocationPolicy;
use forecast_model::attest::{Attester, Role, StageKeyEntry, StageKeys};
use forecast_model::keys::{KeyEntry, KeyRegistry};
use forecast_model::signing::Signer;
use forecast_planner::demand::{read_licences_to_end, read_to_end};
use forecast_runtime::config::{LogArgs, LogFormat, TopicArgs};
use forecast_runtime::supervise::{Supervisor, blocking};
use forecast_stage::trust::Trust;
use forecast_validator::service::ValidatorArgs;
use tokio_util::sync::CancellationToken;

use crate::services::{self, LayoutArgs};
use crate::submit;
use crate::{PolicyArgs, report};

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
    let RunKeys {
        trust,
        compliance,
        supplier,
    } = run_keys()?;
    crate::admin::publish_licences(&kafka, &topics, &decisions, Some(&compliance)).await?;

    // The API and dashboard answer a token made for this run.
    let (planner_token, access) = {
        use forecast_planner::auth::{Access, Role, Tokens};
        let (token, entry) = Tokens::generate("up", &Role::Planner)?;
        let mut tokens = Tokens::default();
        tokens.add(entry).map_err(|e| anyhow::anyhow!(e))?;
        if let Some(path) = &args.token_out {
            // A token of an earlier run is replaced (it is worthless now).
            let _ = std::fs::remove_file(path);
            crate::signing::write_new(path, format!("{token}\n").as_bytes(), 0o600)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        (token, Access::Tokens(std::sync::Arc::new(tokens)))
    };
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
        None => sign_examples(policy, &args.examples)?,
    };
    let supply = forecast_planner::supply::load(&args.supply)
        .map_err(|e| anyhow::anyhow!("{e} (see --supply)"))?;
    let validator_metrics = Arc::new(forecast_stage::metrics::new("validator"));
    let aggregator_metrics = Arc::new(forecast_stage::metrics::new("aggregator"));
    let allocator_metrics = Arc::new(forecast_stage::metrics::new("allocator"));
    let mut tasks = Supervisor::new(token.clone(), Duration::from_secs(30));
    {
        let (kafka, topics, token, metrics, policy) = (
            kafka.clone(),
            topics.clone(),
            token.clone(),
            validator_metrics.clone(),
            policy.clone(),
        );
        let attester = trust.attester(Role::Validator);
        let lists = trust.signed_by(Role::Compliance, "restricted-party list");
        tasks.spawn("the validator", async move {
            let args = ValidatorArgs::default();
            forecast_validator::service::run(
                forecast_validator::Validator::new(policy),
                attester,
                lists,
                &kafka,
                &topics,
                &args,
                metrics,
                token,
            )
            .await
        });
    }
    {
        let (kafka, topics, token, metrics) = (
            kafka.clone(),
            topics.clone(),
            token.clone(),
            aggregator_metrics.clone(),
        );
        let keys = services::aggregator_keys(&trust);
        tasks.spawn("the aggregator", async move {
            let args = AggregatorArgs::default();
            forecast_aggregator::service::run(keys, &kafka, &topics, &args, metrics, token).await
        });
    }
    {
        let (kafka, topics, token, metrics) = (
            kafka.clone(),
            topics.clone(),
            token.clone(),
            allocator_metrics.clone(),
        );
        let keys = services::allocator_keys(&trust, supplier)?;
        let book = forecast_allocator::Book::new(AllocationPolicy::default(), supply.clone());
        tasks.spawn("the allocator", async move {
            forecast_allocator::service::run(
                book,
                keys,
                &kafka,
                &topics,
                forecast_allocator::service::DEFAULT_SETTLE,
                metrics,
                token,
            )
            .await
        });
    }
    {
        let planner = forecast_planner::PlannerArgs {
            supply: Some(args.supply.clone()),
            ..forecast_planner::PlannerArgs::default()
        }
        .planner()?;
        let planner = Arc::new(planner);
        let planner_metrics = Arc::new(forecast_stage::metrics::new("planner"));
        let feed = forecast_planner::feed::spawn(
            planner.clone(),
            kafka.clone(),
            topics.clone(),
            forecast_planner::feed::Believed::from_trust(&trust),
            planner_metrics.clone(),
            token.clone(),
        );
        tasks.spawn("the planner's feed", async move { feed.await? });
        let router = forecast_planner::auth::protect(
            forecast_runtime::http::routes(validator_metrics.clone())
                .nest(
                    "/aggregator",
                    forecast_runtime::http::routes(aggregator_metrics.clone()),
                )
                .nest(
                    "/allocator",
                    forecast_runtime::http::routes(allocator_metrics.clone()),
                )
                .nest("/planner", forecast_runtime::http::routes(planner_metrics))
                .merge(forecast_planner::api::routes(planner)),
            access,
        );
        tasks.spawn(
            "the dashboard and endpoints",
            forecast_runtime::http::serve_with(
                listener,
                router,
                tls,
                args.limits.clone(),
                token.clone(),
            ),
        );
    }

    // What the pipeline must end with: the same code, offline.
    let (expected, expected_licences) = {
        let file = crate::input::open(&examples)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", examples.display()))?;
        let mut replay = forecast_pipeline::Replay::new(policy);
        for d in decisions {
            replay.take_decision(d);
        }
        let mut lines = crate::input::JsonLines::new(file);
        while let Some((_, bytes)) = lines.next_line()? {
            replay.submit_json(bytes);
        }
        let state = replay.state();
        let licences = report::licences_json(
            &state.licence_rows().collect::<Vec<_>>(),
            &state.lost_firm_demand(),
            &state.over_approved(),
        );
        (state.rows().collect::<Vec<_>>(), licences)
    };
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

    let (k, t) = (kafka.clone(), topics.topic_demand.clone());
    let read = move || read_to_end(&k, &t, Duration::from_secs(10)).map(|(v, _)| v.rows(None));
    let (rows, equal) = read_until(Duration::from_secs(60), &token, read, |rows| {
        *rows == expected
    })
    .await?;
    let mut out = std::io::stdout().lock();
    report::write_demand_table(&mut out, &rows)?;
    drop(out);
    if equal {
        eprintln!(
            "\ndemand shown {:.1} s after start; it equals `forecastctl replay` of the same file",
            started.elapsed().as_secs_f64()
        );
    } else {
        eprintln!(
            "\nwarning: after 60 s the demand does not yet equal `forecastctl replay` of the same file"
        );
    }
    // Demand by licence status, as the live pipeline published it.
    let (k, t) = (kafka.clone(), topics.clone());
    let read = move || {
        Ok(read_licences_to_end(&k, &t, Duration::from_secs(10))?
            .exposure(&forecast_planner::view::DemandFilter::default()))
    };
    let (e, equal) = read_until(Duration::from_secs(30), &token, read, |e| {
        report::licences_json(&e.by_status, &e.lost_firm_demand, &e.over_approved)
            == expected_licences
    })
    .await?;
    let mut out = std::io::stdout().lock();
    std::io::Write::write_all(&mut out, b"\n")?;
    report::write_licence_tables(
        &mut out,
        &e.by_status,
        &e.lost_firm_demand,
        &e.over_approved,
    )?;
    drop(out);
    if equal {
        eprintln!(
            "\ndemand by licence status equals `forecastctl replay --licences {}` of the same file",
            args.licences.display()
        );
    } else {
        eprintln!(
            "\nwarning: after 30 s demand by licence status does not yet equal `forecastctl replay --licences`"
        );
    }
    eprintln!(
        "broker:  {brokers}   (forecastctl demand --brokers {brokers}, forecastctl submit --brokers {brokers} FILE)\n\
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
    if examples != args.examples {
        let _ = std::fs::remove_file(&examples);
    }
    result
}

/// The keys of a run: a stage key each for the validator and the
/// aggregator, a compliance key that signs the licence decisions and a
/// supplier key that signs the commits (each registered under its role);
/// none leaves the process.
struct RunKeys {
    trust: Trust,
    compliance: Attester,
    supplier: Attester,
}

fn run_keys() -> anyhow::Result<RunKeys> {
    let now = Timestamp::now();
    let mut lines = String::new();
    for stage in [Role::Validator, Role::Aggregator] {
        lines += &StageKeyEntry::generate(stage, now)?.line();
        lines.push('\n');
    }
    let stage_keys = StageKeys::from_text(&lines, "the keys of this run")?;
    let mut entries = Vec::new();
    let mut signers = Vec::new();
    for role in [Role::Compliance, Role::Supplier] {
        let signer = Signer::new(forecast_model::signing::generate_key()?, None);
        entries.push(KeyEntry {
            role,
            ..KeyEntry::for_signer(&signer, "", now, None)
        });
        signers.push(signer.attester());
    }
    let registry = KeyRegistry::from_entries(entries)?;
    let supplier = signers
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no supplier key"))?;
    let compliance = signers
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no compliance key"))?;
    Ok(RunKeys {
        trust: Trust::from_keys(stage_keys, registry),
        compliance,
        supplier,
    })
}

/// Makes a key for each registered customer of the examples, requires
/// signatures with them, and writes the examples signed (lines that do not
/// decode as they are) to a file in the temporary folder. The examples are
/// dated in the past: the live validator is told to accept a
/// `submitted_at` as old as the oldest of them (a deployment keeps the
/// default of 5 minutes).
fn sign_examples(
    policy: forecast_validator::Policy,
    examples: &Path,
) -> anyhow::Result<(forecast_validator::Policy, PathBuf)> {
    use forecast_model::signing::{self, Signer};
    use std::collections::BTreeMap;
    use std::io::Write as _;

    let read_error = |e: std::io::Error| anyhow::anyhow!("cannot read {}: {e}", examples.display());
    let mut lines = crate::input::JsonLines::new(crate::input::open(examples).map_err(read_error)?);
    let mut docs = Vec::new();
    while let Some((_, bytes)) = lines.next_line().map_err(read_error)? {
        docs.push(match forecast_model::parse_submission(bytes) {
            Ok(doc) => Ok(doc),
            Err(_) => Err(bytes.to_vec()),
        });
    }
    let now = forecast_model::Timestamp::now();
    let mut signers: BTreeMap<String, (Signer, forecast_model::Timestamp)> = BTreeMap::new();
    for doc in docs.iter().flatten() {
        if !policy
            .settings()
            .registered_customers
            .contains(&doc.customer_id)
        {
            continue;
        }
        if let Some((_, from)) = signers.get_mut(&doc.customer_id) {
            if doc.submitted_at.millis() < from.millis() {
                *from = doc.submitted_at;
            }
            continue;
        }
        let signer = Signer::new(signing::generate_key()?, None);
        signers.insert(doc.customer_id.clone(), (signer, doc.submitted_at));
    }
    let entries = signers
        .iter()
        .map(|(customer, (signer, from))| {
            let until = forecast_model::Timestamp::from_millis(now.millis() + 24 * 3600 * 1000);
            forecast_validator::KeyEntry::for_signer(signer, customer, *from, Some(until))
        })
        .collect::<Vec<_>>();
    let oldest = entries
        .iter()
        .map(|e| e.valid_from.millis())
        .min()
        .unwrap_or(now.millis());
    let skew_seconds = (now.millis() - oldest).max(0) as u64 / 1000 + 3600;
    let policy = policy
        .with_key_registry(forecast_validator::KeyRegistry::from_entries(entries)?)?
        .with_max_skew_seconds(
            skew_seconds.max(forecast_validator::policy::DEFAULT_MAX_SUBMITTED_AT_SKEW_SECONDS),
        )?;

    let path =
        std::env::temp_dir().join(format!("forecast-up-{}.signed.jsonl", std::process::id()));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    for doc in docs {
        match doc {
            Ok(doc) => match signers.get(&doc.customer_id) {
                Some((signer, _)) => writeln!(out, "{}", crate::signing::signed_json(signer, doc))?,
                None => writeln!(out, "{}", doc.to_json())?,
            },
            Err(bytes) => {
                out.write_all(&bytes)?;
                writeln!(out)?;
            }
        }
    }
    out.flush()?;
    eprintln!(
        "signing the examples: a key for each of {} for this run, signatures required (the examples are dated in the past, so submitted_at may be up to {} days old); signed copy (removed when up stops): {}",
        signers.keys().cloned().collect::<Vec<_>>().join(", "),
        skew_seconds / 86_400,
        path.display()
    );
    Ok((policy, path))
}

/// What `read` gives (a blocking read of the topics), read again every
/// 200 ms until `equal` holds of it, `timeout` passed or `token` is
/// cancelled; with whether `equal` holds.
async fn read_until<R: Send + 'static>(
    timeout: Duration,
    token: &CancellationToken,
    read: impl Fn() -> anyhow::Result<R> + Clone + Send + 'static,
    equal: impl Fn(&R) -> bool,
) -> anyhow::Result<(R, bool)> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = tokio::task::spawn_blocking(read.clone()).await??;
        let done = equal(&got);
        if done || Instant::now() > deadline || token.is_cancelled() {
            return Ok((got, done));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
