//! What the aggregator's test binaries share.

#![allow(clippy::unwrap_used, unreachable_pub, dead_code)]

use forecast_model::*;

/// A document that passed the rules: only what sequencing and demand read varies.
pub fn doc(
    id: &str,
    revision: i32,
    purpose: Purpose,
    customer: &str,
    lines: &[(&str, &str, i64, Confidence)],
) -> ForecastDocument {
    let base = r#"{"document_id":"X","revision":1,"purpose":"ORIGINAL","customer_id":"C","submitted_at":"2026-07-15T08:00:00Z",
        "horizon":{"start":"2026-Q3","end":"2027-Q2"},"bucket":"QUARTER","lines":[],
        "end_use":{"category":"AI_INFERENCE","description":"d","end_users":[{"name":"n","country":"CN"}]},
        "documents":[],"export_license":{"status":"PENDING","application_number":"Z-1"}}"#;
    let mut d = ForecastDocument::from_json(base.as_bytes()).unwrap();
    d.document_id = id.into();
    d.revision = revision;
    d.purpose = purpose;
    d.customer_id = customer.into();
    d.lines = lines
        .iter()
        .map(|(sku, period, quantity, confidence)| Line {
            sku: (*sku).into(),
            period_start: period.parse().unwrap(),
            quantity: *quantity,
            confidence: *confidence,
            ship_to: None,
        })
        .collect();
    d
}
