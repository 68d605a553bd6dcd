//! `forecastctl check`: the stateless rules, one verdict per document.

use std::io::Write;
use std::path::PathBuf;

use forecast_model::{Outcome, Timestamp};
use forecast_validator::{Judged, Policy, Validator};

use crate::input;
use crate::report::{self, DetailedVerdictJson};
use crate::{Format, RunError};

/// Checks every document of every file. Returns whether all were accepted.
pub fn run(
    policy: Policy,
    files: &[PathBuf],
    format: Format,
    out: &mut impl Write,
) -> Result<bool, RunError> {
    let validator = Validator::new(policy);
    let now = Timestamp::now();
    let (mut accepted, mut rejected) = (0u64, 0u64);
    if format == Format::Json {
        out.write_all(b"{\"verdicts\":[")?;
    }
    let mut first = true;
    for path in files {
        let origin = path.display().to_string();
        let submissions = input::read_submissions(path)?;
        for sub in submissions {
            let judged = validator.judge_json(&sub.bytes);
            let verdict = validator.verdict(&judged, now, None);
            if verdict.outcome == Outcome::Accepted {
                accepted += 1;
            } else {
                rejected += 1;
            }
            match format {
                Format::Json => {
                    if !first {
                        out.write_all(b",")?;
                    }
                    out.write_all(b"\n")?;
                    report::write_json(
                        out,
                        &DetailedVerdictJson::new(&origin, sub.line, &verdict),
                    )?;
                }
                Format::Text => {
                    let warnings = match &judged {
                        Judged::Checked { report, .. } => report.warnings.as_slice(),
                        Judged::Undecodable(_) => &[],
                    };
                    report::write_verdict_text(
                        out,
                        &format!("{origin}:{}", sub.line),
                        &verdict,
                        warnings,
                    )?;
                }
            }
            first = false;
        }
    }
    match format {
        Format::Json => out.write_all(b"\n]}\n")?,
        Format::Text => writeln!(
            out,
            "\n{} document(s): {accepted} accepted, {rejected} rejected; policy {}",
            accepted + rejected,
            validator.policy().version()
        )?,
    }
    out.flush()?;
    Ok(rejected == 0)
}
