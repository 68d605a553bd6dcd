//! `forecastctl allocate`: the supplier's reply offline. A stream replayed
//! as `replay` does it, the licence decisions taken, then the supply of
//! each SKU x quarter shared among the customers under the allocation
//! policy (`forecast_model::allocation::allocate`, the code the live
//! commits run).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use forecast_model::Quarter;
use forecast_model::allocation::{AllocationPolicy, allocate};
use forecast_pipeline::Replay;

use crate::report::{thousands, write_json, write_table};
use crate::{Format, PolicyArgs, RunError};

/// Arguments of `allocate`.
#[derive(Debug, Args)]
pub struct AllocateArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Supply plan (CSV: sku,quarter,on_hand,ordered, as `supply load`
    /// takes it): on hand plus ordered is what each SKU x quarter can ship.
    #[arg(long, value_name = "FILE")]
    pub supply: PathBuf,
    /// Licence decisions (JSON Lines, as `licences load` takes them): the
    /// status each document's units count under, and the approved
    /// quantities that cap what a licence's customer gets.
    #[arg(long, value_name = "FILE")]
    pub licences: PathBuf,
    /// Allocation policy (TOML: method = "pro_rata" | "priority",
    /// priority = [...], eligible = ["APPROVED", ...], firm_first,
    /// carry_over, [customers.ID] min / max). Default: pro_rata of APPROVED
    /// demand, firm first, unallocated supply carried over.
    #[arg(long, value_name = "FILE")]
    pub allocation_policy: Option<PathBuf>,
    /// Output format.
    #[arg(long, env = "FORECAST_FORMAT", value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also write each customer's commit, signed, to DIR/CUSTOMER.commit.json
    /// (needs --signing-key): its allocation per SKU x quarter, each line
    /// naming the document revisions it answers; the customer checks it
    /// with `forecastctl commits verify`.
    #[arg(long, value_name = "DIR", requires = "signing_key")]
    pub commits_out: Option<PathBuf>,
    /// The supplier's private key (PKCS#8 PEM, `keys generate --role
    /// supplier`) that signs the commits.
    #[arg(long, value_name = "FILE", requires = "commits_out")]
    pub signing_key: Option<PathBuf>,
    /// JSON Lines file, one submission per line, in order; `-` reads standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Reads an allocation policy file.
pub fn read_policy(path: &Path) -> Result<AllocationPolicy, RunError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunError::Input {
        path: path.to_path_buf(),
        source,
    })?;
    let policy: AllocationPolicy = toml::from_str(&text).map_err(|e| {
        RunError::Usage(format!(
            "allocation policy {}: {} (see --allocation-policy)",
            path.display(),
            e.message()
        ))
    })?;
    policy.check().map_err(|e| {
        RunError::Usage(format!(
            "allocation policy {}: {e} (see --allocation-policy)",
            path.display()
        ))
    })?;
    Ok(policy)
}

/// Runs `allocate`.
pub fn run(args: &AllocateArgs, out: &mut impl Write) -> Result<(), RunError> {
    let policy = args.policy.load().map_err(RunError::Policy)?;
    let allocation = match &args.allocation_policy {
        Some(path) => read_policy(path)?,
        None => AllocationPolicy::default(),
    };
    let decisions = crate::read_licences(&args.licences)?;
    let supply: BTreeMap<(String, Quarter), i64> = forecast_planner::supply::load(&args.supply)
        .map_err(|e| RunError::Usage(format!("{e} (see --supply)")))?
        .into_iter()
        .map(|e| ((e.sku.clone(), e.quarter), e.available()))
        .collect();
    let input = crate::input::open(&args.file).map_err(|source| RunError::Input {
        path: args.file.clone(),
        source,
    })?;
    let mut replay = Replay::new(policy);
    for d in &decisions {
        replay.take_decision(d.clone());
    }
    crate::replay::feed(&mut replay, input, &args.file, |_, _, _| Ok(()))?;
    let allocated = allocate(
        &allocation,
        &replay.state().demand_lines(),
        &supply,
        &decisions,
    );
    if let (Some(dir), Some(key)) = (&args.commits_out, &args.signing_key) {
        write_commits(dir, key, &replay, &allocated.allocations, allocation.method)?;
    }
    match args.format {
        Format::Json => {
            write_json(
                out,
                &serde_json::json!({ "allocations": allocated.allocations }),
            )?;
            writeln!(out)?;
        }
        Format::Text => {
            let rows = allocated.allocations.iter().map(|a| {
                vec![
                    a.customer_id.clone(),
                    a.sku.clone(),
                    a.quarter.to_string(),
                    thousands(a.requested_units),
                    thousands(a.allocated_units),
                    a.shortfalls
                        .iter()
                        .map(|s| format!("{} {}", s.reason, thousands(s.units)))
                        .collect::<Vec<_>>()
                        .join(", "),
                ]
            });
            writeln!(
                out,
                "Allocation ({}, {} eligible{}{}):",
                allocation.method,
                allocation
                    .eligible
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" + "),
                if allocation.firm_first {
                    ", firm first"
                } else {
                    ""
                },
                if allocation.carry_over {
                    ", unallocated supply carried over"
                } else {
                    ""
                },
            )?;
            write_table(
                out,
                &[
                    "CUSTOMER",
                    "SKU",
                    "QUARTER",
                    "REQUESTED",
                    "ALLOCATED",
                    "SHORTFALL",
                ],
                3,
                rows,
                None,
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Writes each customer's commit, signed with `key`, to
/// `dir/CUSTOMER.commit.json`.
fn write_commits(
    dir: &Path,
    key: &Path,
    replay: &Replay,
    allocations: &[forecast_model::allocation::Allocation],
    method: forecast_model::allocation::Method,
) -> Result<(), RunError> {
    use forecast_model::commit::{Answered, Commit, SignedCommit};
    let signer = forecast_producer::read_signer(key, None)
        .map_err(|e| RunError::Key(format!("{e} (see --signing-key)")))?
        .attester();
    std::fs::create_dir_all(dir).map_err(RunError::Output)?;
    let customers: std::collections::BTreeSet<&str> =
        allocations.iter().map(|a| a.customer_id.as_str()).collect();
    let now = forecast_model::Timestamp::now();
    for customer in customers {
        let revisions = replay.state().revisions_of(customer);
        let commit = Commit::of(customer, allocations, method, now, |sku, quarter| {
            revisions
                .get(&(sku.to_owned(), quarter))
                .into_iter()
                .flatten()
                .map(|(document_id, revision)| Answered {
                    document_id: document_id.clone(),
                    revision: *revision,
                })
                .collect()
        });
        let signed = SignedCommit::sign(&commit, &signer).map_err(std::io::Error::other)?;
        let text = serde_json::to_string(&signed).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(format!("{customer}.commit.json")), text + "\n")
            .map_err(RunError::Output)?;
    }
    Ok(())
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

/// `commits` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CommitsCommand {
    /// Check that commits were signed by the supplier, byte for byte: exit
    /// 0 when every one verifies, 1 when any does not (said why), 2 on a
    /// usage error or an unreadable file.
    Verify(VerifyArgs),
}

/// Runs `commits verify`: whether every commit verifies.
pub fn verify(args: &VerifyArgs, out: &mut impl Write) -> Result<bool, RunError> {
    use forecast_model::attest::{Role, Verifier};
    use forecast_model::commit::SignedCommit;
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
