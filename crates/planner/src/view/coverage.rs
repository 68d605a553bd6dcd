//! Coverage: demand of all customers against the supply plan, per SKU x
//! quarter and per quarter.

use std::collections::BTreeMap;

use forecast_model::Quarter;
use serde::Serialize;

use super::{DemandFilter, PlannerView};

/// Demand against supply of one SKU (or all SKUs) in one quarter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoverageRow {
    /// `null` in the per-quarter totals.
    pub sku: Option<String>,
    pub quarter: Quarter,
    pub firm_units: i64,
    pub planning_units: i64,
    pub total_units: i64,
    pub on_hand: i64,
    pub ordered: i64,
    pub supply_units: i64,
    /// Supply over total demand (`null` without demand).
    pub coverage: Option<f64>,
    /// Supply over firm demand (`null` without firm demand).
    pub firm_coverage: Option<f64>,
}

impl CoverageRow {
    fn new(sku: Option<String>, quarter: Quarter) -> Self {
        Self {
            sku,
            quarter,
            firm_units: 0,
            planning_units: 0,
            total_units: 0,
            on_hand: 0,
            ordered: 0,
            supply_units: 0,
            coverage: None,
            firm_coverage: None,
        }
    }

    fn add(&mut self, other: &CoverageRow) {
        self.firm_units += other.firm_units;
        self.planning_units += other.planning_units;
        self.total_units += other.total_units;
        self.on_hand += other.on_hand;
        self.ordered += other.ordered;
        self.supply_units += other.supply_units;
    }

    fn finish(mut self) -> Self {
        let ratio = |units: i64| (units > 0).then(|| self.supply_units as f64 / units as f64);
        self.coverage = ratio(self.total_units);
        self.firm_coverage = ratio(self.firm_units);
        self
    }
}

/// Coverage per SKU x quarter, and per quarter over all SKUs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coverage {
    pub rows: Vec<CoverageRow>,
    pub by_quarter: Vec<CoverageRow>,
}

impl PlannerView {
    /// Demand of all customers against supply, per SKU x quarter and per
    /// quarter, for the SKUs and quarters matching `filter` (its customer
    /// narrows the demand side only).
    pub fn coverage(&self, filter: &DemandFilter) -> Coverage {
        let mut cells: BTreeMap<(String, Quarter), CoverageRow> = BTreeMap::new();
        for r in self.demand(filter).rows {
            let cell = cells
                .entry((r.sku.clone(), r.quarter))
                .or_insert_with(|| CoverageRow::new(Some(r.sku.clone()), r.quarter));
            cell.firm_units += r.firm_units;
            cell.planning_units += r.planning_units;
            cell.total_units += r.total_units;
        }
        for s in self.supply.entries() {
            if filter.sku.as_ref().is_some_and(|f| *f != s.sku)
                || filter.quarter.is_some_and(|q| q != s.quarter)
            {
                continue;
            }
            let cell = cells
                .entry((s.sku.clone(), s.quarter))
                .or_insert_with(|| CoverageRow::new(Some(s.sku.clone()), s.quarter));
            cell.on_hand += s.on_hand;
            cell.ordered += s.ordered;
            cell.supply_units += s.available();
        }
        let mut by_quarter: BTreeMap<Quarter, CoverageRow> = BTreeMap::new();
        for c in cells.values() {
            by_quarter
                .entry(c.quarter)
                .or_insert_with(|| CoverageRow::new(None, c.quarter))
                .add(c);
        }
        Coverage {
            rows: cells.into_values().map(CoverageRow::finish).collect(),
            by_quarter: by_quarter.into_values().map(CoverageRow::finish).collect(),
        }
    }
}
