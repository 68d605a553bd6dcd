//! `forecastctl`: the pipeline's command line.
//!
//! The binary (`main.rs`) only parses arguments and calls [`run`]. Each
//! subcommand is a module over the library crates:
//! - [`check`]: stateless rules, one verdict per document;
//! - [`replay`]: validator and aggregator cores in order over a stream;
//! - [`input`], [`report`]: reading submissions, writing verdicts and demand.

pub mod check;
pub mod input;
pub mod replay;
pub mod report;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
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
}

impl PolicyArgs {
    fn load(&self) -> Result<Policy, forecast_validator::PolicyError> {
        Policy::load(self.policy.as_deref(), self.restricted_parties.as_deref())
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
    };
    match result {
        Ok(code) => code,
        // Output closed early (e.g. `| head`): nothing more to say.
        Err(Failure::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(failure) => {
            let _ = out.flush();
            eprintln!("forecastctl: {failure}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Why a command could not do its work.
#[derive(Debug)]
enum Failure {
    Policy(forecast_validator::PolicyError),
    Input(PathBuf, io::Error),
    Output(io::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Policy(e) => write!(f, "{e} (check --policy / --restricted-parties)"),
            Failure::Input(path, e) => write!(f, "cannot read {}: {e}", path.display()),
            Failure::Output(e) => write!(f, "cannot write output: {e}"),
        }
    }
}

fn run_check(args: &CheckArgs, out: &mut impl Write) -> Result<ExitCode, Failure> {
    let policy = args.policy.load().map_err(Failure::Policy)?;
    match check::run(policy, &args.files, args.format, out) {
        Ok(true) => Ok(ExitCode::SUCCESS),
        Ok(false) => Ok(ExitCode::from(EXIT_REJECTED)),
        Err(check::CheckError::Input { path, source }) => Err(Failure::Input(path, source)),
        Err(check::CheckError::Output(e)) => Err(Failure::Output(e)),
    }
}

fn run_replay(args: &ReplayArgs, out: &mut impl Write) -> Result<ExitCode, Failure> {
    let policy = args.policy.load().map_err(Failure::Policy)?;
    let file = input::open(&args.file).map_err(|e| Failure::Input(args.file.clone(), e))?;
    let origin = args.file.display().to_string();
    replay::run(policy, file, &origin, args.format, out).map_err(|e| {
        // Reading and writing share io::Error; a read error names the file.
        if e.kind() == io::ErrorKind::BrokenPipe || e.kind() == io::ErrorKind::WriteZero {
            Failure::Output(e)
        } else {
            Failure::Input(args.file.clone(), e)
        }
    })?;
    Ok(ExitCode::SUCCESS)
}
