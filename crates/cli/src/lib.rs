//! `forecastctl`: the pipeline's command line.
//!
//! The binary (`main.rs`) only parses arguments and calls [`run`]. Each
//! subcommand is a module over the library crates:
//! - [`check`]: stateless rules, one verdict per document;
//! - [`replay`]: validator and aggregator cores in order over a stream
//!   (`--rescreen`: restricted-party lists published after it);
//! - [`allocate`]: a stream's eligible demand allocated the supply;
//! - [`submit`], [`services`] (`validate`, `aggregate`, `planner`),
//!   [`demand`], [`admin`] (`topics create`, `supply load`, `licences load`,
//!   `screening load`): the commands
//!   that talk to Kafka, wiring the libraries;
//! - [`up`]: everything on one machine with an embedded broker;
//! - [`signing`]: `keys generate` and `sign`, for signed submissions;
//! - [`tokens`]: `tokens generate`, bearer tokens of the planner API;
//! - [`input`], [`report`]: reading submissions, writing verdicts and demand.

pub mod admin;
pub mod allocate;
pub mod check;
pub mod commits;
pub mod demand;
pub mod input;
pub mod replay;
pub mod report;
pub mod services;
pub mod signing;
pub mod status;
pub mod submit;
pub mod tokens;
pub mod up;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use forecast_model::Timestamp;
use forecast_model::screening::ScreeningList;
use forecast_validator::Policy;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people: verdicts explained in words, demand as a table.
    Text,
    /// For programs: the JSON forms of the spec.
    Json,
}

/// Submit, validate and aggregate H20 order forecasts with their
/// export-compliance documentation.
#[derive(Debug, Parser)]
#[command(name = "forecastctl", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check documents against the documentation requirements (stateless,
    /// no broker). Exit 0 when all are accepted, 1 when any is rejected,
    /// 2 on a usage error or an unreadable file.
    Check(CheckArgs),
    /// Run validation and aggregation over a JSON Lines file in order, as
    /// the services would, and print every verdict and the final demand.
    /// Exit 0 whatever the verdicts, 2 on a usage error or an unreadable file.
    Replay(ReplayArgs),
    /// Allocate the supply plan among the customers' eligible demand under
    /// an allocation policy (docs/planner.md, "Allocation"), after
    /// replaying a stream with the licence decisions taken. Exit 0, 2 on a
    /// usage error or an unreadable file.
    Allocate(allocate::AllocateArgs),
    /// Read the supplier's commits from the planner API, and check their
    /// signatures (docs/planner.md, "Allocation").
    #[command(subcommand)]
    Commits(commits::CommitsCommand),
    /// Manage signing keys (docs/signatures.md).
    #[command(subcommand)]
    Keys(signing::KeysCommand),
    /// Manage bearer tokens of the planner API (docs/security.md).
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// Sign documents with a customer's key and print them (JSON Lines),
    /// the signature inside each document. Exit 0 when every document was
    /// signed, 1 when any did not decode (reported, not printed), 2 on a
    /// usage error or an unreadable file or key.
    Sign(signing::SignArgs),
    /// Send documents to the pipeline (Avro, keyed by document_id). A
    /// document that does not decode is reported with its line and not
    /// sent. Exit 0 when every document was delivered, 1 otherwise.
    Submit(submit::SubmitArgs),
    /// Show the verdicts of documents, read from the planner API with your
    /// token (a customer token sees its own documents only). Exit 0 when
    /// each one's latest verdict is an acceptance, 1 otherwise.
    Status(status::StatusArgs),
    /// Run the validating service: forecasts.submitted -> validated,
    /// rejected (dead letters) and audit. Stops cleanly on SIGINT/SIGTERM.
    Validate(services::ValidateArgs),
    /// Run the aggregating service: forecasts.validated -> demand.by-customer,
    /// demand.by-licence (demand by licence status, following
    /// licences.decisions) and audit (sequencing verdicts). Stops cleanly on
    /// SIGINT/SIGTERM.
    Aggregate(services::AggregateArgs),
    /// Run the allocating service: reads forecasts.validated (whole, no
    /// group), licences.decisions, screening.lists and supply.plan,
    /// allocates the supply under the allocation policy as `allocate`
    /// does, and publishes each customer's changed commit, signed with the
    /// supplier's key, to commits. Run one instance. Stops cleanly on
    /// SIGINT/SIGTERM.
    Allocator(services::AllocatorServiceArgs),
    /// Serve the planner API and dashboard: demand, coverage against the
    /// supply plan, licence exposure, rejections, a live stream. Reads
    /// demand.by-customer, demand.by-licence, licences.decisions,
    /// forecasts.audit and supply.plan from their start (no consumer group:
    /// every instance sees all). Stops cleanly on SIGINT/SIGTERM.
    Planner(services::PlannerServiceArgs),
    /// Print the demand read from demand.by-customer (or, with
    /// --by-licence, demand by licence status from demand.by-licence).
    Demand(demand::DemandArgs),
    /// Manage the pipeline's topics.
    #[command(subcommand)]
    Topics(admin::TopicsCommand),
    /// Manage the supply plan planners compare demand with.
    #[command(subcommand)]
    Supply(admin::SupplyCommand),
    /// Publish the licence decisions demand is counted by (docs/planner.md,
    /// "Licence exposure").
    #[command(subcommand)]
    Licences(admin::LicencesCommand),
    /// Publish the restricted-party list end users are screened against,
    /// live (docs/screening.md).
    #[command(subcommand)]
    Screening(admin::ScreeningCommand),
    /// Run everything on this machine: an embedded broker (tansu), the
    /// validator and the aggregator; submit the examples and show demand.
    Up(up::UpArgs),
}

/// Which policy judges.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Policy file (TOML); without it the spec's default policy applies.
    #[arg(long, env = "FORECAST_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Restricted-party list (CSV in the Consolidated Screening List layout);
    /// replaces the policy file's `restricted_parties`.
    #[arg(long, env = "FORECAST_RESTRICTED_PARTIES", value_name = "FILE")]
    pub restricted_parties: Option<PathBuf>,
    /// Key registry (JSON Lines, one key per line, as `keys generate`
    /// prints them) that signatures are checked against; replaces the
    /// policy file's `signing_keys`. With keys, signatures are required
    /// unless --signatures or the policy file says otherwise.
    #[arg(long = "keys", env = "FORECAST_SIGNING_KEYS", value_name = "FILE")]
    pub keys: Option<PathBuf>,
    /// Whether documents must be signed: required, optional (checked when
    /// present) or off; replaces the policy file's `signatures`.
    #[arg(long, env = "FORECAST_SIGNATURES", value_name = "MODE")]
    pub signatures: Option<forecast_validator::SignatureMode>,
}

impl PolicyArgs {
    /// The policy these arguments name.
    pub fn load(&self) -> Result<Policy, forecast_validator::PolicyError> {
        let policy = Policy::load(
            self.policy.as_deref(),
            self.restricted_parties.as_deref(),
            self.keys.as_deref(),
        )?;
        match self.signatures {
            Some(mode) => policy.with_signature_mode(mode),
            None => Ok(policy),
        }
    }
}

/// Arguments of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Output format.
    #[arg(long, env = "FORECAST_FORMAT", value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Files holding one JSON document, or JSON Lines with one per line; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Arguments of `replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Output format.
    #[arg(long, env = "FORECAST_FORMAT", value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// JSON Lines file, one submission per line, in order; `-` reads standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Licence decisions (JSON Lines, as `licences load` takes them):
    /// also print demand by licence status, the firm demand whose licence
    /// was denied or revoked or is another customer's, and approved quantities the demand exceeds.
    /// An empty file gives the breakdown by the documents' own statuses.
    #[arg(long, value_name = "FILE")]
    pub licences: Option<PathBuf>,
    /// A restricted-party list (the Consolidated Screening List's CSV or
    /// JSON form) published after the stream; repeat for several, applied
    /// in order. Each re-screens the live documents: those whose end users
    /// it newly names are held (SCREENING_HOLD), those it no longer names
    /// released. Prints each list's verdicts and demand by licence status.
    #[arg(long, value_name = "FILE")]
    pub rescreen: Vec<PathBuf>,
}

const EXIT_REJECTED: u8 = 1;
const EXIT_USAGE: u8 = 2;

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let result = match cli.command {
        Command::Check(args) => run_check(&args, &mut out),
        Command::Replay(args) => run_replay(&args, &mut out),
        Command::Allocate(args) => allocate::run(&args, &mut out).map(|()| ExitCode::SUCCESS),
        Command::Commits(commits::CommitsCommand::Show(args)) => {
            commits::show(&args, &mut out).map(|()| ExitCode::SUCCESS)
        }
        Command::Commits(commits::CommitsCommand::Verify(args)) => commits::verify(&args, &mut out)
            .map(|all| {
                if all {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(EXIT_REJECTED)
                }
            }),
        Command::Keys(signing::KeysCommand::Generate(args)) => signing::generate(&args, &mut out),
        Command::Keys(signing::KeysCommand::Stage(args)) => signing::stage(&args),
        Command::Sign(args) => signing::sign(&args, &mut out),
        Command::Tokens(tokens::TokensCommand::Generate(args)) => tokens::generate(&args, &mut out),
        other => {
            drop(out);
            return run_async(other);
        }
    };
    match result {
        Ok(code) => code,
        // Output closed early (e.g. `| head`): nothing more to say.
        Err(RunError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(failure) => {
            let _ = out.flush();
            eprintln!("forecastctl: {failure}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Runs a command that talks to Kafka on a Tokio runtime.
fn run_async(command: Command) -> ExitCode {
    let log = match &command {
        Command::Submit(a) => a.log.clone(),
        Command::Validate(a) => a.service.log.clone(),
        Command::Aggregate(a) => a.service.log.clone(),
        Command::Allocator(a) => a.service.log.clone(),
        Command::Planner(a) => a.log.clone(),
        _ => forecast_runtime::config::LogArgs {
            log_format: forecast_runtime::config::LogFormat::Text,
        },
    };
    forecast_runtime::telemetry::init(&log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("forecastctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<ExitCode> = runtime.block_on(async move {
        let token = forecast_runtime::shutdown::on_signals();
        match command {
            Command::Submit(a) => Ok(if submit::submit(&a).await? {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_REJECTED)
            }),
            Command::Status(a) => Ok(if status::status(&a).await? {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_REJECTED)
            }),
            Command::Validate(a) => services::validate(&a, token)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Aggregate(a) => services::aggregate(&a, token)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Allocator(a) => services::allocator(&a, token)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Planner(a) => services::planner(&a, token)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Demand(a) => demand::demand(&a, token).await.map(|()| ExitCode::SUCCESS),
            Command::Topics(admin::TopicsCommand::Create {
                kafka,
                topics,
                layout,
            }) => services::create_topics(&kafka, &topics, &layout)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Supply(admin::SupplyCommand::Load {
                kafka,
                topics,
                signing,
                file,
            }) => admin::load_supply(&kafka, &topics, &signing, &file)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Licences(admin::LicencesCommand::Load {
                kafka,
                topics,
                signing,
                file,
            }) => admin::load_licences(&kafka, &topics, &signing, &file)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Screening(admin::ScreeningCommand::Load {
                kafka,
                topics,
                signing,
                version,
                effective_from,
                file,
            }) => admin::load_screening(&kafka, &topics, &signing, version, effective_from, &file)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Up(a) => up::up(&a, token).await.map(|()| ExitCode::SUCCESS),
            Command::Check(_)
            | Command::Replay(_)
            | Command::Allocate(_)
            | Command::Commits(_)
            | Command::Keys(_)
            | Command::Sign(_)
            | Command::Tokens(_) => {
                unreachable!("offline commands run without a runtime")
            }
        }
    });
    // librdkafka threads may outlive a failed command: do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(code) => code,
        Err(e) => failed(&e),
    }
}

/// Says why a command failed and what to do, and returns its exit code:
/// the domain's (75 the broker, retry; 78 the deployment; 65 the data;
/// docs/operations.md) or 1 where the error has none.
fn failed(e: &anyhow::Error) -> ExitCode {
    let message = format!("{e:#}");
    eprintln!("forecastctl: {message}");
    match forecast_runtime::failure::Domain::of(e) {
        Some(domain) => {
            // A delivery failure says its hint already.
            if !message.contains(domain.hint()) {
                eprintln!("forecastctl: {}", domain.hint());
            }
            ExitCode::from(domain.exit_code())
        }
        None => ExitCode::FAILURE,
    }
}

/// The decisions of a licence file, or why it cannot be read.
pub fn read_licences(
    path: &std::path::Path,
) -> Result<Vec<forecast_model::LicenceDecision>, RunError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunError::Input {
        path: path.to_path_buf(),
        source,
    })?;
    forecast_model::licence::read_decisions(&text, &path.display().to_string())
        .map_err(|e| RunError::Licences(e.to_string()))
}

/// Why a command could not do its work (exit code 2).
#[derive(Debug)]
pub enum RunError {
    /// The policy or restricted-party list could not be loaded.
    Policy(forecast_validator::PolicyError),
    /// An input could not be read.
    Input { path: PathBuf, source: io::Error },
    /// A key could not be read or written (the message never holds key material).
    Key(String),
    /// Output could not be written.
    Output(io::Error),
    /// A licence file does not read (file, line and why).
    Licences(String),
    /// Another input is wrong (what, where, and the flag that named it).
    Usage(String),
}

impl From<io::Error> for RunError {
    fn from(e: io::Error) -> Self {
        RunError::Output(e)
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Policy(e) => write!(
                f,
                "{e} (see --policy / --restricted-parties / --keys / --signatures)"
            ),
            RunError::Input { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            RunError::Output(e) => write!(f, "cannot write output: {e}"),
            RunError::Key(e) => f.write_str(e),
            RunError::Licences(e) => write!(f, "{e} (see --licences)"),
            RunError::Usage(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for RunError {}

fn run_check(args: &CheckArgs, out: &mut impl Write) -> Result<ExitCode, RunError> {
    let policy = args.policy.load().map_err(RunError::Policy)?;
    let all_accepted = check::run(policy, &args.files, args.format, out)?;
    Ok(if all_accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REJECTED)
    })
}

fn run_replay(args: &ReplayArgs, out: &mut impl Write) -> Result<ExitCode, RunError> {
    let policy = args.policy.load().map_err(RunError::Policy)?;
    let file = input::open(&args.file).map_err(|source| RunError::Input {
        path: args.file.clone(),
        source,
    })?;
    let extras = replay::Extras {
        licences: args.licences.as_deref().map(read_licences).transpose()?,
        rescreen: args
            .rescreen
            .iter()
            .map(|path| ScreeningList::read(path, None, Timestamp::now()))
            .collect::<Result<_, _>>()
            .map_err(|e| RunError::Policy(e.into()))?,
    };
    replay::run_with(policy, extras, file, &args.file, args.format, out)?;
    Ok(ExitCode::SUCCESS)
}
