//! `forecastctl demand`: the demand read back from `demand.by-customer`
//! (forecast_planner::demand), printed once or followed (`--watch`). Like
//! the planner, it takes only what the aggregator attested (and, with
//! `--by-licence`, decisions a compliance key signed).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use forecast_kafka::KafkaArgs;
use forecast_model::DemandView;
use forecast_planner::demand::{Unbelieved, apply, next_changes, read_to_end};
use forecast_planner::feed::Believed;
use forecast_runtime::config::TopicArgs;
use forecast_stage::trust::{RoleKeyArgs, Trust, TrustArgs};
use tokio_util::sync::CancellationToken;

use crate::report;

/// Arguments of `demand`.
#[derive(Debug, Args)]
pub struct DemandArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    /// The aggregator's stage key (`--stage-keys`): demand it did not
    /// attest is skipped, with a warning.
    #[command(flatten)]
    pub trust: TrustArgs,
    /// The compliance office's keys (`--role-keys`), for `--by-licence`.
    #[command(flatten)]
    pub roles: RoleKeyArgs,
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
    /// Demand by licence status instead (`demand.by-licence` and
    /// `licences.decisions`): the rows, the firm demand whose licence was
    /// denied or revoked or is another customer's, and approved quantities exceeded; as text or as
    /// the `licences` object of `replay --licences --format json`.
    #[arg(long, conflicts_with = "watch")]
    pub by_licence: bool,
    /// How long reading the topic to its end may wait for a record (the
    /// broker's metadata, or the next record before the end) before it
    /// gives up.
    #[arg(long, default_value = "30", value_name = "SECONDS")]
    pub timeout_secs: u64,
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

/// Prints the demand read from the compacted topic.
pub async fn demand(args: &DemandArgs, token: CancellationToken) -> anyhow::Result<()> {
    let believed = Believed::from_trust(&Trust::load(&args.trust, Some(&args.roles), None)?);
    if args.by_licence {
        return by_licence(args, believed).await;
    }
    let kafka = args.kafka.clone();
    let topic = args.topics.topic_demand.clone();
    let timeout = Duration::from_secs(args.timeout_secs);
    let verifier = Arc::new(believed.demand);
    let v = verifier.clone();
    let (mut view, reader, unbelieved) =
        tokio::task::spawn_blocking(move || read_to_end(&kafka, &topic, &v, timeout)).await??;
    warn_unbelieved(&unbelieved);
    let mut changes = 0u64;
    print_demand(&view, args, changes)?;
    if !args.watch {
        return Ok(());
    }
    // Follow: print again after each batch of changes.
    let reader = Arc::new(reader);
    loop {
        let (r, v) = (reader.clone(), verifier.clone());
        let (batch, unbelieved) = tokio::select! {
            _ = token.cancelled() => return Ok(()),
            b = tokio::task::spawn_blocking(move || next_changes(&r, &v)) => b??,
        };
        warn_unbelieved(&unbelieved);
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

/// Tells the user about the records a read skipped, if any.
fn warn_unbelieved(unbelieved: &Unbelieved) {
    if let Some(warning) = unbelieved.warning() {
        eprintln!("warning: {warning}");
    }
}

/// `demand --by-licence`.
async fn by_licence(args: &DemandArgs, believed: Believed) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.format != DemandFormat::Csv,
        "--by-licence prints text or JSON, not CSV"
    );
    let (kafka, topics) = (args.kafka.clone(), args.topics.clone());
    let timeout = Duration::from_secs(args.timeout_secs);
    let (view, unbelieved) = tokio::task::spawn_blocking(move || {
        forecast_planner::demand::read_licences_to_end(&kafka, &topics, &believed, timeout)
    })
    .await??;
    warn_unbelieved(&unbelieved);
    let exposure = view.exposure(&forecast_planner::view::DemandFilter {
        customer: args.customer.clone(),
        ..Default::default()
    });
    let mut out = std::io::stdout().lock();
    match args.format {
        DemandFormat::Json => {
            report::write_json(
                &mut out,
                &report::licences_json(
                    &exposure.by_status,
                    &exposure.lost_firm_demand,
                    &exposure.over_approved,
                ),
            )?;
            writeln!(out)?;
        }
        _ => report::write_licence_tables(
            &mut out,
            &exposure.by_status,
            &exposure.lost_firm_demand,
            &exposure.over_approved,
        )?,
    }
    out.flush()?;
    Ok(())
}

fn print_demand(view: &DemandView, args: &DemandArgs, changes: u64) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    let rows = view.rows(args.customer.as_deref());
    let mut out = std::io::stdout().lock();
    let heading = (args.watch && args.format == DemandFormat::Text).then(|| Heading {
        at: forecast_model::Timestamp::now(),
        changes,
        terminal: out.is_terminal(),
    });
    write_demand(&mut out, &rows, args.format, heading)?;
    out.flush()?;
    Ok(())
}

/// The line above each table `--watch` prints.
#[derive(Debug, Clone, Copy)]
struct Heading {
    at: forecast_model::Timestamp,
    changes: u64,
    /// On a terminal the table is redrawn in place.
    terminal: bool,
}

/// Writes `rows` in `format` (JSON: one line; CSV; text: an aligned table,
/// after `heading` when following).
fn write_demand(
    out: &mut impl Write,
    rows: &[forecast_model::DemandRow],
    format: DemandFormat,
    heading: Option<Heading>,
) -> std::io::Result<()> {
    match format {
        DemandFormat::Json => {
            report::write_json(out, &rows)?;
            writeln!(out)
        }
        DemandFormat::Csv => report::write_demand_csv(out, rows),
        DemandFormat::Text => {
            match heading {
                Some(Heading {
                    at,
                    changes,
                    terminal: true,
                }) => {
                    // Redraw in place: cursor home, clear the screen.
                    write!(out, "\x1b[H\x1b[2J")?;
                    writeln!(
                        out,
                        "demand at {at}  ({changes} changes seen; Ctrl-C stops)\n"
                    )?;
                }
                Some(Heading { at, changes, .. }) => {
                    writeln!(out, "\n# demand at {at} ({changes} changes seen)")?;
                }
                None => {}
            }
            report::write_demand_table(out, rows)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use forecast_model::{DemandRow, Quarter, Timestamp, Units};

    use super::*;

    fn rows() -> Vec<DemandRow> {
        vec![DemandRow::new(
            "TENCENT",
            "H20-96GB",
            Quarter::new(2026, 3).unwrap(),
            Units {
                firm_units: 1_000,
                planning_units: 5,
            },
        )]
    }

    fn written(format: DemandFormat, heading: Option<Heading>) -> String {
        let mut out = Vec::new();
        write_demand(&mut out, &rows(), format, heading).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_is_one_line_of_replays_demand_array() {
        let text = written(DemandFormat::Json, None);
        assert_eq!(text.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v[0]["customer_id"], "TENCENT");
        assert_eq!(v[0]["total_units"], 1_005);
    }

    #[test]
    fn csv_has_its_header_then_the_rows() {
        assert_eq!(
            written(DemandFormat::Csv, None),
            "customer_id,sku,quarter,firm_units,planning_units,total_units\n\
             TENCENT,H20-96GB,2026-Q3,1000,5,1005\n"
        );
    }

    #[test]
    fn a_followed_table_is_headed_and_redrawn_only_on_a_terminal() {
        let at = Timestamp::from_millis(0);
        let plain = written(DemandFormat::Text, None);
        assert!(
            plain.contains("TENCENT") && !plain.contains("demand at"),
            "{plain}"
        );
        let piped = written(
            DemandFormat::Text,
            Some(Heading {
                at,
                changes: 3,
                terminal: false,
            }),
        );
        assert!(piped.starts_with("\n# demand at "), "{piped}");
        assert!(
            piped.contains("(3 changes seen)") && !piped.contains('\x1b'),
            "{piped}"
        );
        let tty = written(
            DemandFormat::Text,
            Some(Heading {
                at,
                changes: 3,
                terminal: true,
            }),
        );
        assert!(tty.starts_with("\x1b[H\x1b[2J"), "{tty:?}");
        assert!(tty.ends_with(&plain), "{tty}");
    }
}
