//! `forecastctl allocate`: the supplier's reply offline. A stream replayed
//! as `replay` does it, the licence decisions taken, then the supply of
//! each SKU x quarter shared among the customers under the allocation
//! policy (`forecast_model::allocation::allocate`, the code the live
//! commits run).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use forecast_model::allocation::AllocationPolicy;
use forecast_model::commit::{COMMITS_TOPIC, Commit, SignedCommit};
use forecast_model::supply::SupplyPlan;
use forecast_pipeline::Replay;

use crate::report::{shortfalls_text, thousands, write_json, write_table};
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
    let supply = SupplyPlan::of(
        forecast_planner::supply::load(&args.supply)
            .map_err(|e| RunError::Usage(format!("{e} (see --supply)")))?,
    );
    let input = crate::input::open(&args.file).map_err(|source| RunError::Input {
        path: args.file.clone(),
        source,
    })?;
    let mut replay = Replay::new(policy);
    for d in decisions {
        replay.take_decision(d);
    }
    crate::replay::feed(&mut replay, input, &args.file, |_, _, _| Ok(()))?;
    let allocated = forecast_allocator::allocation(&allocation, replay.state(), &supply);
    if let (Some(dir), Some(key)) = (&args.commits_out, &args.signing_key) {
        let commits = forecast_allocator::commits(
            replay.state(),
            &allocated.allocations,
            allocation.method,
            forecast_model::Timestamp::now(),
        );
        write_commits(dir, key, &commits)?;
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
                    shortfalls_text(&a.shortfalls),
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

/// Writes each commit, signed with `key`, to `dir/CUSTOMER.commit.json`.
fn write_commits(dir: &Path, key: &Path, commits: &[Commit]) -> Result<(), RunError> {
    let signer = forecast_producer::read_signer(key, None)
        .map_err(|e| RunError::Key(format!("{e} (see --signing-key)")))?
        .attester();
    std::fs::create_dir_all(dir).map_err(RunError::Output)?;
    for commit in commits {
        let signed =
            SignedCommit::sign(commit, COMMITS_TOPIC, &signer).map_err(std::io::Error::other)?;
        crate::commits::write_signed(dir, &signed)?;
    }
    Ok(())
}
