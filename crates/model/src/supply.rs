//! The supply plan: units available per SKU per quarter (inventory on hand
//! plus wafer orders), from a CSV file or the `supply.plan` topic (keyed
//! `SKU/QUARTER`, the entry as JSON). The planner shows it against demand;
//! the allocator shares it among the customers.

use std::collections::BTreeMap;

use crate::Quarter;
use serde::{Deserialize, Serialize};

/// Units available of one SKU in one quarter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupplyEntry {
    pub sku: String,
    pub quarter: Quarter,
    /// Inventory on hand.
    pub on_hand: i64,
    /// Wafer orders placed, delivered within the quarter.
    pub ordered: i64,
}

impl SupplyEntry {
    /// On hand plus ordered.
    pub fn available(&self) -> i64 {
        self.on_hand + self.ordered
    }

    /// The key of this entry in the `supply.plan` topic: `SKU/QUARTER`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.sku, self.quarter)
    }

    fn check(self) -> Result<Self, String> {
        if self.sku.is_empty() {
            return Err("sku is empty".into());
        }
        if self.on_hand < 0 || self.ordered < 0 {
            return Err(format!(
                "on_hand and ordered must be 0 or more (got {} and {})",
                self.on_hand, self.ordered
            ));
        }
        Ok(self)
    }
}

/// A supply plan that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SupplyError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}:{line}: {message} (expected the header sku,quarter,on_hand,ordered and one row per SKU and quarter, e.g. H20-96G,2026-Q1,650000,300000)"
    )]
    Row {
        path: String,
        line: u64,
        message: String,
    },
    #[error(
        "record {key}: {message} (expected JSON {{\"sku\", \"quarter\", \"on_hand\", \"ordered\"}} keyed SKU/QUARTER)"
    )]
    Record { key: String, message: String },
}

/// Reads a supply plan from CSV text with the header
/// `sku,quarter,on_hand,ordered`.
pub fn parse_csv(path: &str, text: &str) -> Result<Vec<SupplyEntry>, SupplyError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let row_error = |line: u64, message: String| SupplyError::Row {
        path: path.to_owned(),
        line,
        message,
    };
    let headers = reader
        .headers()
        .map_err(|e| row_error(1, e.to_string()))?
        .clone();
    if headers.iter().collect::<Vec<_>>() != ["sku", "quarter", "on_hand", "ordered"] {
        return Err(row_error(
            1,
            format!(
                "unexpected header `{}`",
                headers.iter().collect::<Vec<_>>().join(",")
            ),
        ));
    }
    let mut entries = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, csv::Position::line);
            row_error(line, e.to_string())
        })?;
        let line = record.position().map_or(0, csv::Position::line);
        let row: SupplyEntry = record
            .deserialize(Some(&headers))
            .map_err(|e| row_error(line, e.to_string()))?;
        entries.push(row.check().map_err(|m| row_error(line, m))?);
    }
    Ok(entries)
}

/// Reads a supply plan file (CSV, see [`parse_csv`]).
pub fn load(path: &std::path::Path) -> Result<Vec<SupplyEntry>, SupplyError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SupplyError::Io {
        path: name.clone(),
        source,
    })?;
    parse_csv(&name, &text)
}

/// Reads one record of the `supply.plan` topic: `None` for a tombstone.
pub fn parse_record(key: &str, value: Option<&[u8]>) -> Result<Option<SupplyEntry>, SupplyError> {
    let Some(value) = value else { return Ok(None) };
    let record_error = |message: String| SupplyError::Record {
        key: key.to_owned(),
        message,
    };
    let entry: SupplyEntry =
        serde_json::from_slice(value).map_err(|e| record_error(e.to_string()))?;
    let entry = entry.check().map_err(record_error)?;
    if entry.key() != key {
        return Err(record_error(format!("the key should be {}", entry.key())));
    }
    Ok(Some(entry))
}

/// The current plan: the latest entry per SKU and quarter.
#[derive(Debug, Clone, Default)]
pub struct SupplyPlan {
    entries: BTreeMap<(String, Quarter), SupplyEntry>,
}

impl SupplyPlan {
    /// Sets (or replaces) the entry of its SKU and quarter.
    pub fn set(&mut self, entry: SupplyEntry) {
        self.entries
            .insert((entry.sku.clone(), entry.quarter), entry);
    }

    /// Removes the entry under a topic key `SKU/QUARTER`; false when the key
    /// names none.
    pub fn remove_key(&mut self, key: &str) -> bool {
        let Some((sku, quarter)) = key.rsplit_once('/') else {
            return false;
        };
        let Ok(quarter) = quarter.parse::<Quarter>() else {
            return false;
        };
        self.entries.remove(&(sku.to_owned(), quarter)).is_some()
    }

    /// Entries sorted by SKU then quarter.
    pub fn entries(&self) -> impl Iterator<Item = &SupplyEntry> {
        self.entries.values()
    }

    /// Units available (on hand plus ordered) per SKU x quarter: what
    /// allocation shares.
    pub fn available(&self) -> BTreeMap<(String, Quarter), i64> {
        self.entries
            .iter()
            .map(|(k, e)| (k.clone(), e.available()))
            .collect()
    }

    /// A plan of `entries` (a later entry of a SKU x quarter replaces an
    /// earlier one).
    pub fn of(entries: impl IntoIterator<Item = SupplyEntry>) -> Self {
        let mut plan = Self::default();
        for e in entries {
            plan.set(e);
        }
        plan
    }

    /// The entry of one SKU and quarter.
    pub fn get(&self, sku: &str, quarter: Quarter) -> Option<&SupplyEntry> {
        self.entries.get(&(sku.to_owned(), quarter))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_plan_reads_from_csv_with_comments_and_spaces() {
        let text = "\u{feff}sku,quarter,on_hand,ordered\n# wafer orders of March\nH20-96G, 2026-Q1, 650000, 300000\nH20-141G,2026-Q2,0,120000\n";
        let plan = parse_csv("plan.csv", text).unwrap();
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].available(), 950_000);
        assert_eq!(plan[1].key(), "H20-141G/2026-Q2");
    }

    #[test]
    fn bad_rows_name_the_file_and_line() {
        let err = parse_csv(
            "p.csv",
            "sku,quarter,on_hand,ordered\nH20-96G,2026-Q5,1,2\n",
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("p.csv:2: "), "{err}");
        let err = parse_csv(
            "p.csv",
            "sku,quarter,on_hand,ordered\nH20-96G,2026-Q1,-1,2\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("0 or more"), "{err}");
        let err = parse_csv("p.csv", "sku,quarter,units\nH20-96G,2026-Q1,1\n").unwrap_err();
        assert!(
            err.to_string().starts_with("p.csv:1: unexpected header"),
            "{err}"
        );
    }

    #[test]
    fn topic_records_are_checked_against_their_key() {
        let v = br#"{"sku":"H20-96G","quarter":"2026-Q1","on_hand":5,"ordered":6}"#;
        assert_eq!(
            parse_record("H20-96G/2026-Q1", Some(v))
                .unwrap()
                .unwrap()
                .available(),
            11
        );
        assert!(parse_record("H20-96G/2026-Q2", Some(v)).is_err());
        assert!(parse_record("H20-96G/2026-Q1", Some(b"{}")).is_err());
        assert!(parse_record("H20-96G/2026-Q1", None).unwrap().is_none());
        let mut plan = SupplyPlan::default();
        plan.set(parse_record("H20-96G/2026-Q1", Some(v)).unwrap().unwrap());
        assert!(plan.remove_key("H20-96G/2026-Q1"));
        assert!(!plan.remove_key("H20-96G/2026-Q1"));
        assert!(!plan.remove_key("nonsense"));
    }
}
