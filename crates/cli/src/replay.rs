//! `forecastctl replay`: the validator and the aggregator's pure cores run
//! in order over a JSON Lines stream, exactly as the services run them.

use std::io::{BufRead, Write};
use std::path::Path;

use forecast_aggregator::{DemandState, sequenced_verdict};
use forecast_model::{DemandRow, Outcome, Timestamp, Verdict, Warning};
use forecast_validator::{Judged, Policy, Validator};

use crate::input::JsonLines;
use crate::report::{self, VerdictJson};
use crate::{Format, RunError};

/// The two pure cores, chained: what the pipeline decides for a stream.
#[derive(Debug)]
pub struct Replay {
    validator: Validator,
    state: DemandState,
    decided_at: Timestamp,
    /// Threads for the stateless step (read once: asking the OS is not free).
    threads: usize,
}

impl Replay {
    /// A replay under `policy`, from an empty state.
    pub fn new(policy: Policy) -> Self {
        Self {
            validator: Validator::new(policy),
            state: DemandState::new(),
            decided_at: Timestamp::now(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// Judges one JSON submission and, when it passes the rules, sequences
    /// and applies it. Returns the final verdict and the warnings in detail.
    pub fn submit_json(&mut self, json: &[u8]) -> (Verdict, Vec<Warning>) {
        let judged = self.judge(json);
        self.sequence(judged)
    }

    /// [`submit_json`](Self::submit_json) for many submissions, in order:
    /// decoding and the rules (stateless) run on all cores, sequencing (the
    /// only stateful step) runs in input order on this thread.
    pub fn submit_batch(&mut self, batch: &[&[u8]]) -> Vec<(Verdict, Vec<Warning>)> {
        let chunk = batch.len().div_ceil(self.threads).max(64);
        let judged: Vec<(Judged, Verdict)> = if batch.len() <= chunk {
            batch.iter().map(|json| self.judge(json)).collect()
        } else {
            let this = &*self;
            std::thread::scope(|scope| {
                let parts: Vec<_> = batch
                    .chunks(chunk)
                    .map(|part| {
                        scope.spawn(move || {
                            part.iter().map(|json| this.judge(json)).collect::<Vec<_>>()
                        })
                    })
                    .collect();
                parts
                    .into_iter()
                    .flat_map(|p| {
                        p.join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                    })
                    .collect()
            })
        };
        judged.into_iter().map(|j| self.sequence(j)).collect()
    }

    /// Decoding and the stateless rules: the validating service's step.
    fn judge(&self, json: &[u8]) -> (Judged, Verdict) {
        let judged = self.validator.judge_json(json);
        let verdict = self.validator.verdict(&judged, self.decided_at, None);
        (judged, verdict)
    }

    /// Sequencing and demand: the aggregating service's step.
    fn sequence(&mut self, (judged, verdict): (Judged, Verdict)) -> (Verdict, Vec<Warning>) {
        match judged {
            Judged::Checked { document, report } if report.passed() => {
                let outcome = self.state.apply(&document);
                (sequenced_verdict(verdict, &outcome), report.warnings)
            }
            Judged::Checked { report, .. } => (verdict, report.warnings),
            Judged::Undecodable(_) => (verdict, Vec::new()),
        }
    }

    /// The demand state so far.
    pub fn state(&self) -> &DemandState {
        &self.state
    }
}

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
    let read_error = |source| RunError::Input {
        path: origin.to_path_buf(),
        source,
    };
    let name = origin.display().to_string();
    let mut replay = Replay::new(policy);
    let mut lines = JsonLines::new(input);
    let mut summary = Summary::default();
    if format == Format::Json {
        out.write_all(b"{\"verdicts\":[")?;
    }
    // Batches bound memory (at most BATCH lines held) and let the
    // stateless step run in parallel.
    const BATCH: usize = 1024;
    let mut first = true;
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
            summary.count(verdict.outcome);
            match format {
                Format::Json => {
                    if !first {
                        out.write_all(b",")?;
                    }
                    out.write_all(b"\n")?;
                    report::write_json(out, &VerdictJson::from(&verdict))?;
                }
                Format::Text => {
                    report::write_verdict_text(out, &format!("{name}:{line}"), &verdict, &warnings)?
                }
            }
            first = false;
        }
    }
    let rows: Vec<DemandRow> = replay.state().rows().collect();
    match format {
        Format::Json => {
            out.write_all(b"\n],\"demand\":")?;
            report::write_json(out, &rows)?;
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
                replay.validator.policy().version()
            )?;
            report::write_demand_table(out, &rows)?;
        }
    }
    out.flush()?;
    Ok(summary)
}
