//! Sample documents for benchmarks and tests.

use crate::{Confidence, ForecastDocument, Purpose};

const TENCENT_EXAMPLE: &[u8] = include_bytes!("../../../examples/tencent-original.json");

/// The Tencent example (`examples/tencent-original.json`) grown to 12 lines:
/// H20-96GB firm and planning and H20-141GB firm, in each of its horizon's
/// 4 quarters. It passes every rule of the default policy.
pub fn twelve_line_document(document_id: &str, customer_id: &str) -> ForecastDocument {
    // The example is part of the build and tested to parse (tests/codec.rs).
    #[allow(clippy::expect_used)]
    let mut doc =
        ForecastDocument::from_json(TENCENT_EXAMPLE).expect("the embedded example parses");
    doc.document_id = document_id.to_owned();
    doc.customer_id = customer_id.to_owned();
    let template = doc.lines[0].clone();
    doc.lines.clear();
    for (i, sku) in ["H20-96GB", "H20-141GB"].into_iter().enumerate() {
        for (q, first_day) in [(7, 2026), (10, 2026), (1, 2027), (4, 2027)]
            .into_iter()
            .enumerate()
        {
            let mut line = template.clone();
            line.sku = sku.to_owned();
            line.period_start =
                crate::Date::from_ymd(first_day.1, first_day.0, 1).unwrap_or(line.period_start);
            line.quantity = 1_000 + 100 * q as i64 + 10 * i as i64;
            line.confidence = Confidence::Firm;
            doc.lines.push(line.clone());
            if i == 0 {
                line.confidence = Confidence::Planning;
                doc.lines.push(line);
            }
        }
    }
    doc
}

/// Document `DOC-<id>` of `customer_id` at `revision` (an `ORIGINAL` at 1,
/// a `REPLACE` after): [`twelve_line_document`] with quantities that depend
/// on its id and revision, so that each revision changes its demand.
pub fn numbered_revision(id: usize, customer_id: &str, revision: i32) -> ForecastDocument {
    let mut doc = twelve_line_document(&format!("DOC-{id:08}"), customer_id);
    doc.revision = revision;
    doc.purpose = if revision == 1 {
        Purpose::Original
    } else {
        Purpose::Replace
    };
    for (q, line) in doc.lines.iter_mut().enumerate() {
        line.quantity = (id as i64 % 1000) + revision as i64 + q as i64;
    }
    doc
}

#[cfg(test)]
mod tests {
    #[test]
    fn has_twelve_lines_over_the_horizon() {
        let d = super::twelve_line_document("X-1", "TENCENT");
        assert_eq!(d.lines.len(), 12);
        let quarters: std::collections::BTreeSet<String> = d
            .lines
            .iter()
            .map(|l| l.period_start.quarter().to_string())
            .collect();
        assert_eq!(
            quarters.into_iter().collect::<Vec<_>>(),
            ["2026-Q3", "2026-Q4", "2027-Q1", "2027-Q2"]
        );
    }
}
