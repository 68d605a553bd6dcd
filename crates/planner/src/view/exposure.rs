//! Licence exposure: demand by licence status against supply, the firm
//! demand lost to a denied, revoked or borrowed licence, and approved
//! quantities exceeded.

use std::collections::BTreeMap;

use forecast_model::{ExposureStatus, LicenceRow, LostDocument, OverApproved, Quarter};
use serde::Serialize;

use super::{DemandFilter, PlannerView};

/// Demand of one SKU (or all SKUs) in one quarter by licence status
/// (units, firm and planning), against supply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExposureRow {
    /// `null` in the per-quarter totals.
    pub sku: Option<String>,
    pub quarter: Quarter,
    /// On hand + ordered.
    pub supply_units: i64,
    pub approved_units: i64,
    pub pending_units: i64,
    pub not_filed_units: i64,
    pub denied_units: i64,
    pub revoked_units: i64,
    /// Units of documents that cite another customer's licence.
    pub foreign_licence_units: i64,
    /// Units of documents held because an end user is on the newest
    /// restricted-party list (whatever their licence).
    pub screening_hold_units: i64,
    /// Supply over approved demand (`null` without approved demand).
    pub approved_coverage: Option<f64>,
    /// Supply over approved + pending demand (`null` without either).
    pub approved_and_pending_coverage: Option<f64>,
}

impl ExposureRow {
    fn new(sku: Option<String>, quarter: Quarter) -> Self {
        Self {
            sku,
            quarter,
            supply_units: 0,
            approved_units: 0,
            pending_units: 0,
            not_filed_units: 0,
            denied_units: 0,
            revoked_units: 0,
            foreign_licence_units: 0,
            screening_hold_units: 0,
            approved_coverage: None,
            approved_and_pending_coverage: None,
        }
    }

    fn status(&mut self, status: ExposureStatus) -> &mut i64 {
        match status {
            ExposureStatus::Approved => &mut self.approved_units,
            ExposureStatus::Pending => &mut self.pending_units,
            ExposureStatus::NotFiled => &mut self.not_filed_units,
            ExposureStatus::Denied => &mut self.denied_units,
            ExposureStatus::Revoked => &mut self.revoked_units,
            ExposureStatus::ForeignLicence => &mut self.foreign_licence_units,
            ExposureStatus::ScreeningHold => &mut self.screening_hold_units,
        }
    }

    fn add(&mut self, other: &ExposureRow) {
        self.supply_units += other.supply_units;
        self.approved_units += other.approved_units;
        self.pending_units += other.pending_units;
        self.not_filed_units += other.not_filed_units;
        self.denied_units += other.denied_units;
        self.revoked_units += other.revoked_units;
        self.foreign_licence_units += other.foreign_licence_units;
        self.screening_hold_units += other.screening_hold_units;
    }

    fn finish(mut self) -> Self {
        let ratio = |units: i64| (units > 0).then(|| self.supply_units as f64 / units as f64);
        self.approved_coverage = ratio(self.approved_units);
        self.approved_and_pending_coverage = ratio(self.approved_units + self.pending_units);
        self
    }
}

/// Licence exposure: demand by licence status (as `replay --licences`
/// gives it), against supply per SKU x quarter and per quarter, the firm
/// demand whose licence was denied or revoked or is another customer's, and approved quantities
/// exceeded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exposure {
    pub by_status: Vec<LicenceRow>,
    pub rows: Vec<ExposureRow>,
    pub by_quarter: Vec<ExposureRow>,
    pub lost_firm_demand: Vec<LostDocument>,
    /// Lost documents the aggregators counted without listing them (past
    /// 2,000 per customer and partition).
    pub lost_not_listed: i64,
    pub over_approved: Vec<OverApproved>,
}

impl PlannerView {
    /// Licence exposure for the SKUs and quarters matching `filter` (its
    /// customer narrows the demand side and the lost documents).
    pub fn exposure(&self, filter: &DemandFilter) -> Exposure {
        let customer = filter.customer.as_deref();
        let by_status: Vec<LicenceRow> = self
            .licences
            .rows(customer)
            .into_iter()
            .filter(|r| filter.matches(&r.customer_id, &r.sku, r.quarter))
            .collect();
        let mut cells: BTreeMap<(String, Quarter), ExposureRow> = BTreeMap::new();
        for r in &by_status {
            let cell = cells
                .entry((r.sku.clone(), r.quarter))
                .or_insert_with(|| ExposureRow::new(Some(r.sku.clone()), r.quarter));
            *cell.status(r.licence_status) += r.total_units;
        }
        for s in self.supply.entries() {
            if filter.sku.as_ref().is_some_and(|f| *f != s.sku)
                || filter.quarter.is_some_and(|q| q != s.quarter)
            {
                continue;
            }
            cells
                .entry((s.sku.clone(), s.quarter))
                .or_insert_with(|| ExposureRow::new(Some(s.sku.clone()), s.quarter))
                .supply_units += s.available();
        }
        let mut by_quarter: BTreeMap<Quarter, ExposureRow> = BTreeMap::new();
        for c in cells.values() {
            by_quarter
                .entry(c.quarter)
                .or_insert_with(|| ExposureRow::new(None, c.quarter))
                .add(c);
        }
        let (lost, lost_not_listed) = self.licences.lost(customer);
        let over_approved = self
            .licences
            .over_approved()
            .into_iter()
            .filter(|o| filter.sku.as_ref().is_none_or(|s| *s == o.sku))
            .collect();
        Exposure {
            by_status,
            rows: cells.into_values().map(ExposureRow::finish).collect(),
            by_quarter: by_quarter.into_values().map(ExposureRow::finish).collect(),
            lost_firm_demand: lost,
            lost_not_listed,
            over_approved,
        }
    }
}
