//! `forecastctl tokens generate`: a bearer token for the planner API.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use forecast_planner::auth::{Role, Tokens};

use crate::RunError;

/// `forecastctl tokens ...`.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Make a bearer token for the planner API: prints on standard output
    /// only its entry for the tokens file (its SHA-256, never the token),
    /// so that `>> tokens.jsonl` adds it; the token itself goes to --out
    /// (mode 0600, never replacing a file) or, without it, to standard
    /// error, once: it cannot be recovered from the entry.
    Generate(GenerateTokenArgs),
}

/// Arguments of `tokens generate`.
#[derive(Debug, Args)]
pub struct GenerateTokenArgs {
    /// `planner` (every route) or `customer:<ID>` (that customer's own
    /// documents and rejections, nothing else).
    #[arg(long, value_parser = Role::parse)]
    pub role: Role,
    /// Who holds it, for the operator's records (never the token).
    #[arg(long)]
    pub name: String,
    /// Write the token here instead of to standard error.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Makes a token and prints its entry.
pub fn generate(args: &GenerateTokenArgs, out: &mut impl Write) -> Result<ExitCode, RunError> {
    let (token, entry) =
        Tokens::generate(&args.name, &args.role).map_err(|e| RunError::Key(e.to_string()))?;
    if let Some(path) = &args.out {
        crate::signing::write_new(path, format!("{token}\n").as_bytes(), 0o600)?;
    }
    let line = serde_json::to_string(&entry).map_err(|e| RunError::Key(e.to_string()))?;
    writeln!(out, "{line}")?;
    out.flush()?;
    match &args.out {
        Some(path) => eprintln!(
            "token for {} ({}) written to {}; its entry is on standard output",
            args.name,
            args.role,
            path.display()
        ),
        None => eprintln!(
            "token for {} ({}), shown once: {token}\nits entry is on standard output",
            args.name, args.role
        ),
    }
    Ok(ExitCode::SUCCESS)
}
