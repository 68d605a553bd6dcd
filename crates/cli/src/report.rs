//! Output formats: the spec's JSON forms and text for people.

use std::io::{self, Write};

use forecast_model::screening::ScreeningList;
use forecast_model::{DemandRow, Outcome, Verdict, WarningCode};
use serde::Serialize;

/// A verdict in the spec's JSON form (`replay --format json`).
#[derive(Debug, Serialize)]
pub struct VerdictJson<'a> {
    pub document_id: Option<&'a str>,
    pub revision: Option<i32>,
    pub verdict: &'static str,
    pub codes: Vec<&'static str>,
    pub warnings: Vec<&'static str>,
}

impl<'a> From<&'a Verdict> for VerdictJson<'a> {
    fn from(v: &'a Verdict) -> Self {
        Self {
            document_id: v.document_id.as_deref(),
            revision: v.revision,
            verdict: v.outcome.as_str(),
            codes: v.codes.iter().map(|c| c.as_str()).collect(),
            warnings: v.warnings.iter().map(|c| c.as_str()).collect(),
        }
    }
}

/// The verdicts one restricted-party list version gave when it re-screened
/// the live documents (`replay --rescreen --format json`).
#[derive(Debug, Serialize)]
pub struct RescreenJson<'a> {
    pub version: &'a str,
    pub sha256: &'a str,
    pub verdicts: Vec<RescreenVerdictJson<'a>>,
}

/// One re-screen verdict: `REJECTED` with `END_USER_RESTRICTED` (held) or
/// `ACCEPTED` (released), at stage `RESCREEN`.
#[derive(Debug, Serialize)]
pub struct RescreenVerdictJson<'a> {
    pub customer_id: Option<&'a str>,
    pub document_id: Option<&'a str>,
    pub revision: Option<i32>,
    pub verdict: &'static str,
    pub stage: &'static str,
    pub codes: Vec<&'static str>,
}

/// The `rescreen` member of `replay --format json`.
pub fn rescreen_json<'a>(
    rescreens: &'a [(&'a ScreeningList, Vec<Verdict>)],
) -> Vec<RescreenJson<'a>> {
    rescreens
        .iter()
        .map(|(list, verdicts)| RescreenJson {
            version: &list.version,
            sha256: &list.sha256,
            verdicts: verdicts
                .iter()
                .map(|v| RescreenVerdictJson {
                    customer_id: v.customer_id.as_deref(),
                    document_id: v.document_id.as_deref(),
                    revision: v.revision,
                    verdict: v.outcome.as_str(),
                    stage: v.stage.as_str(),
                    codes: v.codes.iter().map(|c| c.as_str()).collect(),
                })
                .collect(),
        })
        .collect()
}

/// The re-screens for people: per list version, each document held or
/// released.
pub fn write_rescreen_text(
    out: &mut impl Write,
    rescreens: &[(&ScreeningList, Vec<Verdict>)],
) -> io::Result<()> {
    for (list, verdicts) in rescreens {
        writeln!(
            out,
            "\nRe-screened against restricted-party list {} ({} entries, sha256 {}): {} document(s) changed",
            list.version,
            list.entries.len(),
            list.sha256,
            verdicts.len()
        )?;
        for v in verdicts {
            let whose = format!(
                "{}/{}",
                v.customer_id.as_deref().unwrap_or("?"),
                v.document_id.as_deref().unwrap_or("?")
            );
            let rev = v.revision.unwrap_or_default();
            if v.outcome == Outcome::Rejected {
                writeln!(out, "  {whose} rev {rev}  HELD (SCREENING_HOLD)")?;
                for x in &v.violations {
                    writeln!(out, "    {}: {}", x.code, x.message)?;
                }
            } else {
                writeln!(
                    out,
                    "  {whose} rev {rev}  RELEASED: no end user is on this list; its units count under its licence again"
                )?;
            }
        }
    }
    Ok(())
}

/// A verdict with its violations and origin (`check --format json`).
#[derive(Debug, Serialize)]
pub struct DetailedVerdictJson<'a> {
    pub source: &'a str,
    pub line: usize,
    #[serde(flatten)]
    pub verdict: VerdictJson<'a>,
    pub violations: Vec<ViolationJson<'a>>,
    pub policy_version: &'a str,
}

/// One violation with its field.
#[derive(Debug, Serialize)]
pub struct ViolationJson<'a> {
    pub code: &'static str,
    pub field: &'a str,
    pub message: &'a str,
}

impl<'a> DetailedVerdictJson<'a> {
    pub fn new(source: &'a str, line: usize, v: &'a Verdict) -> Self {
        Self {
            source,
            line,
            verdict: v.into(),
            violations: v
                .violations
                .iter()
                .map(|x| ViolationJson {
                    code: x.code.as_str(),
                    field: &x.field,
                    message: &x.message,
                })
                .collect(),
            policy_version: &v.policy_version,
        }
    }
}

/// Writes a value as compact JSON.
pub fn write_json(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(io::Error::other)
}

/// Writes one verdict for people: a headline, then each violation with the
/// field it points at, what was found, and what the rule asks.
pub fn write_verdict_text(
    out: &mut impl Write,
    origin: &str,
    v: &Verdict,
    warnings: &[forecast_model::Warning],
) -> io::Result<()> {
    let id = v.document_id.as_deref().unwrap_or("(no document_id)");
    let rev = v
        .revision
        .map_or_else(|| "?".to_string(), |r| r.to_string());
    writeln!(out, "{origin}  {id} rev {rev}  {}", v.outcome)?;
    if v.outcome == Outcome::Duplicate {
        writeln!(
            out,
            "    same revision and content as the applied one; ignored, not counted twice"
        )?;
    }
    for x in &v.violations {
        let field = if x.field.is_empty() {
            String::new()
        } else {
            format!(" at {}", x.field)
        };
        writeln!(out, "    {}{field}: {}", x.code, x.message)?;
        writeln!(out, "        rule: {}", x.code.explain())?;
    }
    for w in warnings {
        writeln!(out, "    warning {} at {}: {}", w.code, w.field, w.message)?;
    }
    // Warnings known only by code (e.g. from an audit record).
    if warnings.is_empty() {
        for w in &v.warnings {
            writeln!(out, "    warning {w}: {}", WarningCode::explain(*w))?;
        }
    }
    Ok(())
}

/// Groups digits in threes: 1234567 -> 1,234,567.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Writes demand as CSV with a header line (RFC 4180 quoting, by the
/// `csv` crate; the columns are the JSON form's fields, in its order).
pub fn write_demand_csv(out: &mut impl Write, rows: &[DemandRow]) -> io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    if rows.is_empty() {
        w.write_record(DEMAND_COLUMNS)?;
    }
    for r in rows {
        w.serialize(r)?;
    }
    w.flush()
}

/// The demand CSV's header (`DemandRow`'s fields).
const DEMAND_COLUMNS: [&str; 6] = [
    "customer_id",
    "sku",
    "quarter",
    "firm_units",
    "planning_units",
    "total_units",
];

/// Writes demand rows as an aligned text table with a total row.
pub fn write_demand_table(out: &mut impl Write, rows: &[DemandRow]) -> io::Result<()> {
    if rows.is_empty() {
        return writeln!(out, "(no demand: no accepted document has a non-zero line)");
    }
    let (firm, planning) = rows.iter().fold((0i64, 0i64), |(f, p), r| {
        (
            f.saturating_add(r.firm_units),
            p.saturating_add(r.planning_units),
        )
    });
    let body = rows.iter().map(|r| {
        vec![
            r.customer_id.clone(),
            r.sku.clone(),
            r.quarter.to_string(),
            thousands(r.firm_units),
            thousands(r.planning_units),
            thousands(r.total_units),
        ]
    });
    let total = ["TOTAL", "", ""]
        .map(String::from)
        .into_iter()
        .chain([firm, planning, firm.saturating_add(planning)].map(thousands))
        .collect();
    write_table(
        out,
        &["CUSTOMER", "SKU", "QUARTER", "FIRM", "PLANNING", "TOTAL"],
        3,
        body,
        Some(total),
    )
}

/// The `licences` object of `replay --licences --format json`, which
/// `demand --by-licence --format json` prints alone.
pub fn licences_json(
    rows: &[forecast_model::LicenceRow],
    lost: &[forecast_model::LostDocument],
    over: &[forecast_model::OverApproved],
) -> serde_json::Value {
    serde_json::json!({
        "by_status": rows,
        "lost_firm_demand": lost,
        "over_approved": over,
    })
}

/// Writes demand by licence status, the firm demand whose licence was
/// denied or revoked or is another customer's, and the licences whose approved quantity the demand
/// exceeds (`replay --licences`, `demand --by-licence`).
pub fn write_licence_tables(
    out: &mut impl Write,
    rows: &[forecast_aggregator::LicenceRow],
    lost: &[forecast_aggregator::LostDocument],
    over: &[forecast_aggregator::OverApproved],
) -> io::Result<()> {
    writeln!(out, "Demand by licence status:")?;
    if rows.is_empty() {
        writeln!(out, "(no demand)")?;
    } else {
        let mut by_status: std::collections::BTreeMap<&str, (i64, i64)> = Default::default();
        for r in rows {
            let s = by_status.entry(r.licence_status.as_str()).or_default();
            s.0 = s.0.saturating_add(r.firm_units);
            s.1 = s.1.saturating_add(r.planning_units);
        }
        write_table(
            out,
            &[
                "CUSTOMER", "SKU", "QUARTER", "LICENCE", "FIRM", "PLANNING", "TOTAL",
            ],
            4,
            rows.iter().map(|r| {
                vec![
                    r.customer_id.clone(),
                    r.sku.clone(),
                    r.quarter.to_string(),
                    r.licence_status.to_string(),
                    thousands(r.firm_units),
                    thousands(r.planning_units),
                    thousands(r.total_units),
                ]
            }),
            None,
        )?;
        writeln!(out)?;
        write_table(
            out,
            &["LICENCE", "FIRM", "PLANNING", "TOTAL"],
            1,
            by_status.iter().map(|(status, (f, p))| {
                vec![
                    (*status).to_owned(),
                    thousands(*f),
                    thousands(*p),
                    thousands(f.saturating_add(*p)),
                ]
            }),
            None,
        )?;
    }
    writeln!(
        out,
        "\nFirm demand whose licence was denied or revoked, or is another customer's:"
    )?;
    if lost.is_empty() {
        writeln!(out, "(none)")?;
    } else {
        write_table(
            out,
            &[
                "DOCUMENT",
                "CUSTOMER",
                "REV",
                "APPLICATION",
                "LICENCE",
                "DECIDED AT",
                "FIRM",
                "PLANNING",
            ],
            6,
            lost.iter().map(|l| {
                vec![
                    l.document_id.clone(),
                    l.customer_id.clone(),
                    l.revision.to_string(),
                    l.application_number.clone(),
                    l.licence_status.to_string(),
                    l.decided_at.to_string(),
                    thousands(l.firm_units),
                    thousands(l.planning_units),
                ]
            }),
            None,
        )?;
    }
    writeln!(out, "\nApproved quantities the demand exceeds (warnings):")?;
    if over.is_empty() {
        return writeln!(out, "(none)");
    }
    write_table(
        out,
        &["APPLICATION", "SKU", "APPROVED", "DEMANDED", "OVER BY"],
        2,
        over.iter().map(|o| {
            vec![
                o.application_number.clone(),
                o.sku.clone(),
                thousands(o.approved_units),
                thousands(o.demanded_units),
                thousands(o.demanded_units.saturating_sub(o.approved_units)),
            ]
        }),
        None,
    )
}

/// Writes an aligned text table: the header, a rule, the rows, and, when
/// given, a rule and a total row. Columns from `numbers_from` on are
/// numbers, aligned right.
pub fn write_table(
    out: &mut impl Write,
    header: &[&str],
    numbers_from: usize,
    rows: impl IntoIterator<Item = Vec<String>>,
    total: Option<Vec<String>>,
) -> io::Result<()> {
    let rows: Vec<Vec<String>> = rows.into_iter().collect();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows.iter().chain(&total) {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut dyn Write, row: &[&str]| -> io::Result<()> {
        let cells: Vec<String> = row
            .iter()
            .zip(&width)
            .enumerate()
            .map(|(i, (c, w))| {
                if i >= numbers_from {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        writeln!(out, "{}", cells.join("  "))
    };
    let rule: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
    let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
    line(out, header)?;
    line(out, &rule)?;
    for row in &rows {
        line(out, &row.iter().map(String::as_str).collect::<Vec<_>>())?;
    }
    if let Some(total) = &total {
        line(out, &rule)?;
        line(out, &total.iter().map(String::as_str).collect::<Vec<_>>())?;
    }
    Ok(())
}

/// Shortfalls as `REASON units, ...`.
pub fn shortfalls_text(shortfalls: &[forecast_model::allocation::Shortfall]) -> String {
    shortfalls
        .iter()
        .map(|s| format!("{} {}", s.reason, thousands(s.units)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(-45_603), "-45,603");
    }

    #[test]
    fn table_is_aligned_with_totals() {
        let q = "2026-Q3".parse().unwrap();
        let rows = vec![
            DemandRow::new(
                "TENCENT",
                "H20-96GB",
                q,
                forecast_model::Units {
                    firm_units: 40_000,
                    planning_units: 5,
                },
            ),
            DemandRow::new(
                "ALIBABA",
                "H20-141GB",
                q,
                forecast_model::Units {
                    firm_units: 7,
                    planning_units: 0,
                },
            ),
        ];
        let mut out = Vec::new();
        write_demand_table(&mut out, &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{text}");
        assert!(lines[2].ends_with("40,000         5  40,005"), "{text}");
        assert!(
            lines[5].starts_with("TOTAL") && lines[5].ends_with("40,012"),
            "{text}"
        );
    }

    #[test]
    fn demand_csv_has_the_json_columns_and_quotes_what_needs_it() {
        let q = forecast_model::Quarter::new(2026, 3).unwrap();
        let units = forecast_model::Units {
            firm_units: 10,
            planning_units: 2,
        };
        let rows = vec![
            DemandRow::new("TENCENT", "H20-96GB", q, units),
            DemandRow::new("A, \"B\" Co", "H20", q, units),
        ];
        let mut out = Vec::new();
        write_demand_csv(&mut out, &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "customer_id,sku,quarter,firm_units,planning_units,total_units\n\
             TENCENT,H20-96GB,2026-Q3,10,2,12\n\
             \"A, \"\"B\"\" Co\",H20,2026-Q3,10,2,12\n"
        );
        let mut empty = Vec::new();
        write_demand_csv(&mut empty, &[]).unwrap();
        assert_eq!(
            String::from_utf8(empty).unwrap(),
            "customer_id,sku,quarter,firm_units,planning_units,total_units\n"
        );
    }
}
