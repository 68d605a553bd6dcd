//! `forecastctl replay`: [`forecast_pipeline::Replay`] over a JSON Lines
//! stream, its verdicts and demand written as text or JSON.

use std::io::{BufRead, Write};
use std::path::Path;

use forecast_model::screening::ScreeningList;
use forecast_model::{DemandRow, LicenceDecision, Outcome, Verdict, Warning};
use forecast_pipeline::Replay;
use forecast_validator::Policy;

use crate::input::JsonLines;
use crate::report::{self, VerdictJson};
use crate::{Format, RunError};

/// Counts of verdicts, for the summary line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub accepted: u64,
    pub rejected: u64,
    pub duplicate: u64,
}

impl Summary {
    fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Accepted => self.accepted += 1,
            Outcome::Rejected => self.rejected += 1,
            Outcome::Duplicate => self.duplicate += 1,
        }
    }
}

/// Replays `input` and writes verdicts and final demand to `out`.
///
/// Memory stays bounded by the demand state: input is read a line at a
/// time and every verdict is written as soon as it is decided.
pub fn run(
    policy: Policy,
    input: impl BufRead,
    origin: &Path,
    format: Format,
    out: &mut impl Write,
) -> Result<Summary, RunError> {
    run_with(policy, Extras::default(), input, origin, format, out)
}

/// What a replay takes besides the stream.
#[derive(Debug, Default)]
pub struct Extras {
    /// Licence decisions, taken before the stream (the result does not
    /// depend on their order against it); with them, demand by licence
    /// status is written after the demand.
    pub licences: Option<Vec<LicenceDecision>>,
    /// Restricted-party lists published after the stream, in order: each
    /// re-screens the live documents; their verdicts are written per list,
    /// and demand by licence status too.
    pub rescreen: Vec<ScreeningList>,
}

/// [`run`], with `extras`.
pub fn run_with(
    policy: Policy,
    extras: Extras,
    input: impl BufRead,
    origin: &Path,
    format: Format,
    out: &mut impl Write,
) -> Result<Summary, RunError> {
    let name = origin.display().to_string();
    let mut replay = Replay::new(policy);
    let with_licences = extras.licences.is_some() || !extras.rescreen.is_empty();
    for d in extras.licences.into_iter().flatten() {
        replay.take_decision(d);
    }
    let mut summary = Summary::default();
    if format == Format::Json {
        out.write_all(b"{\"verdicts\":[")?;
    }
    let mut first = true;
    feed(&mut replay, input, origin, |line, verdict, warnings| {
        summary.count(verdict.outcome);
        match format {
            Format::Json => {
                if !first {
                    out.write_all(b",")?;
                }
                out.write_all(b"\n")?;
                report::write_json(out, &VerdictJson::from(verdict))?;
            }
            Format::Text => {
                report::write_verdict_text(out, &format!("{name}:{line}"), verdict, warnings)?
            }
        }
        first = false;
        Ok(())
    })?;
    let mut rescreens = Vec::with_capacity(extras.rescreen.len());
    for list in &extras.rescreen {
        let verdicts = replay.rescreen(list).map_err(RunError::Policy)?;
        rescreens.push((list, verdicts));
    }
    let rows: Vec<DemandRow> = replay.state().rows().collect();
    match format {
        Format::Json => {
            out.write_all(b"\n],\"demand\":")?;
            report::write_json(out, &rows)?;
            if !rescreens.is_empty() {
                out.write_all(b",\"rescreen\":")?;
                report::write_json(out, &report::rescreen_json(&rescreens))?;
            }
            if with_licences {
                let state = replay.state();
                out.write_all(b",\"licences\":")?;
                report::write_json(
                    out,
                    &report::licences_json(
                        &state.licence_rows().collect::<Vec<_>>(),
                        &state.lost_firm_demand(),
                        &state.over_approved(),
                    ),
                )?;
            }
            out.write_all(b"}\n")?;
        }
        Format::Text => {
            writeln!(
                out,
                "\n{} submission(s): {} accepted, {} rejected, {} duplicate(s); policy {}\n",
                summary.accepted + summary.rejected + summary.duplicate,
                summary.accepted,
                summary.rejected,
                summary.duplicate,
                replay.policy().version()
            )?;
            report::write_demand_table(out, &rows)?;
            report::write_rescreen_text(out, &rescreens)?;
            if with_licences {
                let state = replay.state();
                writeln!(out)?;
                report::write_licence_tables(
                    out,
                    &state.licence_rows().collect::<Vec<_>>(),
                    &state.lost_firm_demand(),
                    &state.over_approved(),
                )?;
            }
        }
    }
    out.flush()?;
    Ok(summary)
}

/// Submits every line of `input` to `replay` in order, handing each
/// verdict to `each` with its line number as soon as it is decided.
///
/// Memory stays bounded by the demand state: batches of at most 1,024
/// lines, whose stateless step runs on all cores.
pub fn feed(
    replay: &mut Replay,
    input: impl BufRead,
    origin: &Path,
    mut each: impl FnMut(usize, &Verdict, &[Warning]) -> std::io::Result<()>,
) -> Result<(), RunError> {
    let read_error = |source| RunError::Input {
        path: origin.to_path_buf(),
        source,
    };
    let mut lines = JsonLines::new(input);
    const BATCH: usize = 1024;
    let mut batch: Vec<(usize, Vec<u8>)> = Vec::with_capacity(BATCH);
    let mut done = false;
    while !done {
        batch.clear();
        while batch.len() < BATCH {
            match lines.next_line().map_err(read_error)? {
                Some((line, bytes)) => batch.push((line, bytes.to_vec())),
                None => {
                    done = true;
                    break;
                }
            }
        }
        let inputs: Vec<&[u8]> = batch.iter().map(|(_, b)| b.as_slice()).collect();
        for ((line, _), (verdict, warnings)) in batch.iter().zip(replay.submit_batch(&inputs)) {
            each(*line, &verdict, &warnings)?;
        }
    }
    Ok(())
}
