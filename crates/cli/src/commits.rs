//! `forecastctl commits`: a customer reads the supplier's commit to it from
//! the planner API (`show`, with its own token: its own commit only), and
//! checks a commit's signature offline with the supplier's public key
//! (`verify`).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use forecast_model::commit::{Commit, SignedCommit};

use crate::report::{shortfalls_text, thousands, write_json, write_table};
use crate::status::ApiArgs;
use crate::{Format, RunError};

/// `commits` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CommitsCommand {
    /// Show the supplier's commits read from the planner API with your
    /// token: a customer token reads its own commit only, a planner token
    /// every customer's. With --out, each is also written as signed, for
    /// `commits verify`.
    Show(ShowArgs),
    /// Check that commits were signed by the supplier, byte for byte: exit
    /// 0 when every one verifies, 1 when any does not (said why), 2 on a
    /// usage error or an unreadable file.
    Verify(VerifyArgs),
}

/// Arguments of `commits show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Only this customer's commit (a customer token may name only its own).
    #[arg(long, env = "FORECAST_CUSTOMER", value_name = "ID")]
    pub customer: Option<String>,
    /// Also write each commit, as signed, to DIR/CUSTOMER.commit.json.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Output format (json: the API's answer, every commit as signed).
    #[arg(long, env = "FORECAST_FORMAT", value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Runs `commits show`.
pub fn show(args: &ShowArgs, out: &mut impl Write) -> Result<(), RunError> {
    let client = args
        .api
        .client()
        .map_err(|e| RunError::Usage(format!("{e:#}")))?;
    let signed = client
        .commits(args.customer.as_deref())
        .map_err(|e| RunError::Usage(e.to_string()))?;
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).map_err(RunError::Output)?;
        for s in &signed {
            let path = write_signed(dir, s)?;
            eprintln!("wrote {}", path.display());
        }
    }
    match args.format {
        Format::Json => {
            write_json(out, &serde_json::json!({ "commits": signed }))?;
            writeln!(out)?;
        }
        Format::Text => {
            if signed.is_empty() {
                writeln!(out, "No commit yet.")?;
            }
            for s in &signed {
                let commit: Commit = serde_json::from_str(s.commit.get()).map_err(|e| {
                    RunError::Usage(format!(
                        "the API gave a commit this client does not read ({e}); upgrade it"
                    ))
                })?;
                write_commit(out, &commit)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// One commit as a table of its lines.
fn write_commit(out: &mut impl Write, commit: &Commit) -> std::io::Result<()> {
    writeln!(
        out,
        "Commit to {} (made {}, {}):",
        commit.customer_id, commit.allocated_at, commit.method
    )?;
    let rows = commit.lines.iter().map(|l| {
        vec![
            l.sku.clone(),
            l.quarter.to_string(),
            thousands(l.requested_units),
            thousands(l.allocated_units),
            shortfalls_text(&l.shortfalls),
            l.documents
                .iter()
                .map(|d| format!("{} rev {}", d.document_id, d.revision))
                .collect::<Vec<_>>()
                .join(", "),
        ]
    });
    write_table(
        out,
        &[
            "SKU",
            "QUARTER",
            "REQUESTED",
            "ALLOCATED",
            "SHORTFALL",
            "ANSWERS",
        ],
        2,
        rows,
        None,
    )?;
    writeln!(out)
}

/// Writes a signed commit to `dir/CUSTOMER.commit.json`, the form
/// `commits verify` reads.
pub fn write_signed(dir: &Path, signed: &SignedCommit) -> Result<PathBuf, RunError> {
    let text = serde_json::to_string(signed).map_err(std::io::Error::other)?;
    // The key is a customer id the registry allows (no path separator);
    // refused all the same when it is not a plain file name.
    if signed.key.is_empty() || signed.key.contains(['/', '\\']) || signed.key.starts_with('.') {
        return Err(RunError::Usage(format!(
            "commit key {:?} is not a customer id; not written",
            signed.key
        )));
    }
    let path = dir.join(format!("{}.commit.json", signed.key));
    std::fs::write(&path, text + "\n").map_err(RunError::Output)?;
    Ok(path)
}

/// Arguments of `commits verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Key registry (JSON Lines) holding the supplier's public key (role
    /// `supplier`), as the supplier publishes it.
    #[arg(long, value_name = "FILE")]
    pub keys: PathBuf,
    /// Commit files (`allocate --commits-out` writes them).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Runs `commits verify`: whether every commit verifies.
pub fn verify(args: &VerifyArgs, out: &mut impl Write) -> Result<bool, RunError> {
    use forecast_model::attest::{Role, Verifier};
    let registry = forecast_model::keys::KeyRegistry::from_path(&args.keys)
        .map_err(|e| RunError::Usage(format!("{e} (see --keys)")))?;
    let verifier = Verifier::new("the supplier", registry.checks(Role::Supplier));
    let mut all = true;
    for path in &args.files {
        let text = std::fs::read_to_string(path).map_err(|source| RunError::Input {
            path: path.clone(),
            source,
        })?;
        let verdict = serde_json::from_str::<SignedCommit>(&text)
            .map_err(|e| e.to_string())
            .and_then(|signed| signed.verify(&verifier).map_err(|e| e.to_string()));
        match verdict {
            Ok(commit) => {
                let allocated: i64 = commit.lines.iter().map(|l| l.allocated_units).sum();
                writeln!(
                    out,
                    "{}: VALID, the supplier's commit to {} ({} lines, {} units allocated, made {})",
                    path.display(),
                    commit.customer_id,
                    commit.lines.len(),
                    thousands(allocated),
                    commit.allocated_at
                )?;
            }
            Err(why) => {
                all = false;
                writeln!(out, "{}: NOT VALID: {why}", path.display())?;
            }
        }
    }
    out.flush()?;
    Ok(all)
}
