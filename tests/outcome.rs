//! What every run must end with, whatever faults happened on the way: the
//! demand and verdicts `forecastctl replay` gives for the same stream, one
//! validator verdict per submitted record, and dead letters equal to their
//! originals. A failure names the rows, documents and records concerned.

use std::collections::{HashMap, HashSet};

use forecast_model::{Outcome, Registry, Stage, Verdict, wire};
use serde_json::Value;

use crate::kafka::Record;
use crate::multiset;

/// What a run left on its topics.
#[derive(Debug)]
pub struct Observed {
    /// Demand rows as `forecastctl demand --format json` prints them.
    pub demand: Value,
    pub submitted: Vec<Record>,
    pub audit: Vec<Record>,
    pub rejected: Vec<Record>,
}

impl Observed {
    /// Reads the submitted, audit and rejected topics (`topic` maps the
    /// default name to the run's) of `brokers`, with the demand read already.
    pub fn read(brokers: &str, topic: impl Fn(&str) -> String, demand: Value) -> Observed {
        let all =
            |t: &str| crate::kafka::read_all(brokers, &topic(t), std::time::Duration::from_secs(3));
        Observed {
            demand,
            submitted: all("forecasts.submitted"),
            audit: all("forecasts.audit"),
            rejected: all("forecasts.rejected"),
        }
    }
}

/// Which demand rows differ, one line each (empty when equal).
///
/// # Panics
/// When either side is not an array of rows.
pub fn demand_diff(got: &Value, want: &Value) -> String {
    let key = |r: &Value| format!("{} {} {}", r["customer_id"], r["sku"], r["quarter"]);
    let rows = |v: &Value| -> HashMap<String, Value> {
        v.as_array()
            .expect("demand rows")
            .iter()
            .map(|r| (key(r), r.clone()))
            .collect()
    };
    let (g, w) = (rows(got), rows(want));
    let mut lines = Vec::new();
    for (k, wv) in &w {
        match g.get(k) {
            None => lines.push(format!("missing {k}: want {wv}")),
            Some(gv) if gv != wv => lines.push(format!("differs {k}: got {gv}, want {wv}")),
            _ => {}
        }
    }
    for k in g.keys().filter(|k| !w.contains_key(*k)) {
        lines.push(format!("extra {k}: {}", g[k]));
    }
    lines.sort();
    lines.join("\n")
}

fn verdict_key(
    document_id: &Value,
    revision: &Value,
    verdict: &str,
    codes: &[String],
    warnings: &[String],
) -> String {
    format!(
        "{document_id}|{revision}|{verdict}|{}|{}",
        codes.join(","),
        warnings.join(",")
    )
}

fn strings(a: &Value) -> Vec<String> {
    a.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Documents listed at most in a report (the count says how many differ).
const SHOWN: usize = 30;

/// Sorted (partition, offset) pairs as runs of consecutive offsets, one
/// line each: `0: 4588..=4752 (165)`.
fn ranges(at: &[(i32, i64)]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut i = 0;
    while i < at.len() {
        let (p, first) = at[i];
        let mut j = i;
        while j + 1 < at.len() && at[j + 1] == (p, at[j].1 + 1) {
            j += 1;
        }
        let last = at[j].1;
        lines.push(if first == last {
            format!("{p}: {first}")
        } else {
            format!("{p}: {first}..={last} ({})", last - first + 1)
        });
        i = j + 1;
    }
    lines
}

/// Compares a run with replay's output for the same stream (`expected`:
/// `{"verdicts", "demand"}`), given how many documents were sent and how
/// many poison pills. Lines that do not decode are refused by `submit` and
/// never reach the pipeline, so replay's `SCHEMA_INVALID` verdicts are left
/// out.
///
/// # Errors
/// A report of everything that differs: demand rows; documents whose final
/// verdict is missing (lost) or repeated (counted twice); records with no
/// validator verdict, or several; dead letters that differ from their
/// originals.
pub fn compare(
    expected: &Value,
    observed: &Observed,
    sent: usize,
    poison: usize,
) -> Result<(), String> {
    let mut report = Vec::new();
    let diff = demand_diff(&observed.demand, &expected["demand"]);
    if !diff.is_empty() {
        let rows: Vec<&str> = diff.lines().collect();
        report.push(format!(
            "demand differs from replay ({} rows):\n{}",
            rows.len(),
            rows[..rows.len().min(SHOWN)].join("\n")
        ));
    }

    let verdicts: Vec<Verdict> = observed
        .audit
        .iter()
        .filter_map(|r| {
            wire::decode_verdict(r.value.as_deref().unwrap_or_default(), Registry::embedded()).ok()
        })
        .collect();
    if verdicts.len() != observed.audit.len() {
        report.push(format!(
            "{} audit records do not decode",
            observed.audit.len() - verdicts.len()
        ));
    }
    // One validator verdict per submitted record; repeats (a crash between
    // producing and committing) are dropped by source coordinates.
    let mut per_source: HashMap<(i32, i64), usize> = HashMap::new();
    let mut seen = HashSet::new();
    let mut finals = Vec::new();
    for v in &verdicts {
        let Some(s) = &v.source else {
            report.push(format!("a verdict without source: {v:?}"));
            continue;
        };
        let validator = v.stage != Stage::Sequence;
        if validator {
            *per_source.entry((s.partition, s.offset)).or_default() += 1;
        }
        if !seen.insert((s.partition, s.offset, validator)) || v.stage == Stage::Deserialize {
            continue;
        }
        // A validator's ACCEPTED is completed by the aggregator's verdict.
        if validator && v.outcome == Outcome::Accepted {
            continue;
        }
        let codes: Vec<String> = v.codes.iter().map(|c| c.as_str().to_owned()).collect();
        let warnings: Vec<String> = v.warnings.iter().map(|c| c.as_str().to_owned()).collect();
        finals.push(verdict_key(
            &serde_json::to_value(&v.document_id).unwrap_or_default(),
            &serde_json::to_value(v.revision).unwrap_or_default(),
            v.outcome.as_str(),
            &codes,
            &warnings,
        ));
    }
    let mut unjudged: Vec<(i32, i64)> = observed
        .submitted
        .iter()
        .map(|r| (r.partition, r.offset))
        .filter(|at| !per_source.contains_key(at))
        .collect();
    unjudged.sort_unstable();
    let missing = ranges(&unjudged);
    if !unjudged.is_empty()
        || per_source.len() != sent + poison
        || observed.submitted.len() != sent + poison
    {
        report.push(format!(
            "{} records submitted ({} expected), {} with a validator verdict; {} without one (partition: offsets):\n{}",
            observed.submitted.len(),
            sent + poison,
            per_source.len(),
            unjudged.len(),
            missing.join("\n")
        ));
    }
    let repeated = per_source.values().filter(|n| **n > 1).count();
    if repeated > 0 {
        // Allowed (at-least-once between produce and commit), but said.
        eprintln!("note: {repeated} records were judged more than once (deduplicated by source)");
    }

    let want: Vec<String> = expected["verdicts"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|v| v["codes"] != serde_json::json!(["SCHEMA_INVALID"]))
        .map(|v| {
            verdict_key(
                &v["document_id"],
                &v["revision"],
                v["verdict"].as_str().unwrap_or_default(),
                &strings(&v["codes"]),
                &strings(&v["warnings"]),
            )
        })
        .collect();
    let (g, w) = (multiset(finals), multiset(want));
    if g != w {
        let mut diff: Vec<String> = w
            .iter()
            .filter(|(k, n)| g.get(*k) != Some(n))
            .map(|(k, n)| {
                let got = g.get(k).copied().unwrap_or(0);
                let what = if got < *n { "lost" } else { "counted twice" };
                format!("{what}: document|revision|verdict|codes|warnings {k}: want {n}, got {got}")
            })
            .collect();
        diff.extend(
            g.iter()
                .filter(|(k, _)| !w.contains_key(*k))
                .map(|(k, n)| format!("unexpected: {n} x {k}")),
        );
        diff.sort();
        let shown = diff.len().min(SHOWN);
        report.push(format!(
            "verdicts differ from replay ({} documents{}):\n{}",
            diff.len(),
            if shown < diff.len() {
                format!(", the first {shown}")
            } else {
                String::new()
            },
            diff[..shown].join("\n")
        ));
    }

    // Dead letters: the original key, value and headers byte for byte,
    // plus context; exactly the records rejected by the validator.
    let submitted: HashMap<(i32, i64), &Record> = observed
        .submitted
        .iter()
        .map(|r| ((r.partition, r.offset), r))
        .collect();
    let mut dead_letters = HashSet::new();
    for d in &observed.rejected {
        let at = (
            d.header("forecast.errors.partition")
                .and_then(|p| p.parse().ok())
                .unwrap_or(-1),
            d.header("forecast.errors.offset")
                .and_then(|o| o.parse().ok())
                .unwrap_or(-1),
        );
        dead_letters.insert(at);
        let Some(original) = submitted.get(&at) else {
            report.push(format!("dead letter names no submitted record: {at:?}"));
            continue;
        };
        if (&d.key, &d.value) != (&original.key, &original.value) {
            report.push(format!("dead letter of {at:?} changed the key or value"));
        }
        if d.headers.get(..original.headers.len()) != Some(&original.headers[..]) {
            report.push(format!("dead letter of {at:?} changed the headers"));
        }
        for h in [
            "forecast.errors.topic",
            "forecast.errors.stage",
            "forecast.errors.codes",
            "forecast.errors.message",
        ] {
            if d.header(h).is_none_or(str::is_empty) {
                report.push(format!("dead letter of {at:?} lacks {h}"));
            }
        }
    }
    let rejected: HashSet<(i32, i64)> = verdicts
        .iter()
        .filter(|v| v.stage != Stage::Sequence && v.outcome == Outcome::Rejected)
        .filter_map(|v| v.source.as_ref().map(|s| (s.partition, s.offset)))
        .collect();
    if rejected != dead_letters {
        let mut lost: Vec<_> = rejected.difference(&dead_letters).collect();
        let mut extra: Vec<_> = dead_letters.difference(&rejected).collect();
        lost.sort();
        extra.sort();
        report.push(format!("rejected records without a dead letter: {lost:?}; dead letters of records not rejected: {extra:?}"));
    }
    if report.is_empty() {
        Ok(())
    } else {
        Err(report.join("\n\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::ranges;

    #[test]
    fn unjudged_records_are_reported_as_runs_per_partition() {
        let at = [(0, 4), (0, 5), (0, 6), (0, 9), (1, 10), (1, 11), (2, 0)];
        assert_eq!(
            ranges(&at),
            ["0: 4..=6 (3)", "0: 9", "1: 10..=11 (2)", "2: 0"]
        );
        assert!(ranges(&[]).is_empty());
    }
}
