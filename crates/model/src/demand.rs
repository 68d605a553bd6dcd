//! Demand as planners read it: per customer x SKU x quarter.

use serde::Serialize;

use crate::time::{Quarter, Timestamp};

/// Units of one SKU in one quarter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Units {
    pub firm_units: i64,
    pub planning_units: i64,
}

impl Units {
    /// Firm plus planning.
    pub fn total(self) -> i64 {
        self.firm_units + self.planning_units
    }
}

/// One row of demand, as `replay --format json` and `demand --format json` print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DemandRow {
    pub customer_id: String,
    pub sku: String,
    pub quarter: Quarter,
    pub firm_units: i64,
    pub planning_units: i64,
    pub total_units: i64,
}

impl DemandRow {
    /// A row from its key and units.
    pub fn new(customer_id: &str, sku: &str, quarter: Quarter, units: Units) -> Self {
        Self {
            customer_id: customer_id.to_owned(),
            sku: sku.to_owned(),
            quarter,
            firm_units: units.firm_units,
            planning_units: units.planning_units,
            total_units: units.total(),
        }
    }
}

/// One SKU x quarter of a customer's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    pub sku: String,
    pub quarter: Quarter,
    pub units: Units,
}

/// The whole demand of one customer: the value of `demand.by-customer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemandSnapshot {
    pub customer_id: String,
    /// Increases with every change of this customer's demand.
    pub sequence: i64,
    pub as_of: Timestamp,
    /// Sorted by SKU then quarter; rows with no units left out.
    pub rows: Vec<SnapshotRow>,
}

impl DemandSnapshot {
    /// The snapshot as planner rows.
    pub fn demand_rows(&self) -> impl Iterator<Item = DemandRow> + '_ {
        self.rows
            .iter()
            .map(|r| DemandRow::new(&self.customer_id, &r.sku, r.quarter, r.units))
    }
}
