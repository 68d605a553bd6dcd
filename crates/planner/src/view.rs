//! The planner's read model (pure): demand from `demand.by-customer`,
//! verdict history and rejections from `forecasts.audit` (per customer,
//! [`crate::verdicts`]), and the supply plan. [`crate::feed`] fills it from
//! the topics; [`crate::api`] reads it.
//!
//! Demand comes from the snapshots the aggregators publish after applying a
//! whole revision, so no reader sees a half-applied `REPLACE`.

use std::collections::BTreeMap;

use forecast_model::DemandView;
use forecast_model::{
    DemandRow, DemandSnapshot, ExposureStatus, LicenceDecision, LicenceRow, LicenceSnapshot,
    LicenceView, LostDocument, OverApproved, Quarter, Timestamp, Verdict,
};
use serde::Serialize;

use crate::supply::{SupplyEntry, SupplyPlan};

pub use crate::verdicts::{
    ANONYMOUS_KEPT, DocumentHistory, Found, HISTORY_KEPT, RECENT_REJECTIONS, RejectionFilter,
    Rejections, Source, VerdictBook, VerdictEntry, VerdictLimits, ViolationEntry,
};

/// Filters of the demand and coverage views; `None` matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemandFilter {
    pub customer: Option<String>,
    pub sku: Option<String>,
    pub quarter: Option<Quarter>,
}

impl DemandFilter {
    fn matches(&self, customer: &str, sku: &str, quarter: Quarter) -> bool {
        self.customer.as_deref().is_none_or(|c| c == customer)
            && self.sku.as_deref().is_none_or(|s| s == sku)
            && self.quarter.is_none_or(|q| q == quarter)
    }
}

/// Firm, planning and total units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub firm_units: i64,
    pub planning_units: i64,
    pub total_units: i64,
}

impl Totals {
    fn add(&mut self, row: &DemandRow) {
        self.firm_units += row.firm_units;
        self.planning_units += row.planning_units;
        self.total_units += row.total_units;
    }

    /// The totals of some rows.
    pub fn of<'a>(rows: impl IntoIterator<Item = &'a DemandRow>) -> Totals {
        let mut t = Totals::default();
        for r in rows {
            t.add(r);
        }
        t
    }
}

/// Demand rows and their totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Demand {
    pub rows: Vec<DemandRow>,
    pub totals: Totals,
}

/// A change of one customer's demand, as the live stream sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DemandChange {
    /// Counts every change this view has seen, from 1.
    pub change: u64,
    pub customer_id: String,
    /// The customer's whole demand after the change.
    pub rows: Vec<DemandRow>,
    pub totals: Totals,
    /// When the aggregator published the snapshot (the record's timestamp).
    pub applied_at: Option<Timestamp>,
}

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

/// Everything the planner API reads.
#[derive(Debug, Default)]
pub struct PlannerView {
    demand: DemandView,
    changes: u64,
    /// Verdicts, per customer.
    verdicts: VerdictBook,
    supply: SupplyPlan,
    licences: LicenceView,
    commits: crate::commits::Commits,
}

impl PlannerView {
    /// Takes a record of `demand.by-licence`, decoded (`None`: a
    /// tombstone); returns the customer whose demand by licence status
    /// changed, if it did.
    pub fn on_licence_snapshot(
        &mut self,
        key: &[u8],
        snapshot: Option<LicenceSnapshot>,
    ) -> Option<String> {
        let customer = match &snapshot {
            Some(s) => s.customer_id.clone(),
            None => std::str::from_utf8(key)
                .ok()?
                .rsplit_once('/')?
                .0
                .to_owned(),
        };
        self.licences.set(key, snapshot).then_some(customer)
    }

    /// Takes a record of the `commits` topic (`None`: a tombstone); returns
    /// the customer whose commit changed, if it did.
    pub fn on_commit(
        &mut self,
        customer: &str,
        record: Option<(
            forecast_model::commit::SignedCommit,
            forecast_model::commit::Commit,
        )>,
    ) -> Option<String> {
        self.commits
            .set(customer, record)
            .then(|| customer.to_owned())
    }

    /// The supplier's commits in force.
    pub fn commits(&self) -> &crate::commits::Commits {
        &self.commits
    }

    /// Takes a licence decision; returns whether it counts (it then
    /// changes the approved quantities exceeded).
    pub fn on_decision(&mut self, decision: LicenceDecision) -> bool {
        self.licences.take_decision(decision)
    }

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

    /// Takes a record of `demand.by-customer`, decoded (`None`: a
    /// tombstone); returns the customer's new demand when it changed.
    pub fn on_demand(
        &mut self,
        key: &[u8],
        snapshot: Option<DemandSnapshot>,
        published: Option<Timestamp>,
    ) -> Option<DemandChange> {
        // The snapshot's customer, or for a tombstone the key's part before
        // the last `/`.
        let before = match &snapshot {
            Some(s) => s.customer_id.clone(),
            None => std::str::from_utf8(key)
                .ok()?
                .rsplit_once('/')?
                .0
                .to_owned(),
        };
        let old = self.demand.rows(Some(&before));
        if !self.demand.set(key, snapshot) {
            return None;
        }
        let rows = self.demand.rows(Some(&before));
        if rows == old {
            return None;
        }
        self.changes += 1;
        Some(DemandChange {
            change: self.changes,
            totals: Totals::of(&rows),
            customer_id: before,
            rows,
            applied_at: published,
        })
    }

    /// How many demand changes this view has taken.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Demand rows matching `filter`, sorted by customer, SKU and quarter.
    pub fn demand(&self, filter: &DemandFilter) -> Demand {
        let rows: Vec<DemandRow> = self
            .demand
            .rows(filter.customer.as_deref())
            .into_iter()
            .filter(|r| filter.matches(&r.customer_id, &r.sku, r.quarter))
            .collect();
        Demand {
            totals: Totals::of(&rows),
            rows,
        }
    }

    /// Forgets the verdicts taken, keeping at most `limits` of each
    /// customer's from now on.
    pub fn forget_verdicts_keeping(&mut self, limits: VerdictLimits) {
        self.verdicts = VerdictBook::new(limits);
    }

    /// Takes a verdict of the audit topic; false when it repeats one taken.
    pub fn on_verdict(&mut self, verdict: Verdict) -> bool {
        self.verdicts.on_verdict(verdict)
    }

    /// The verdicts, per customer.
    pub fn verdicts(&self) -> &VerdictBook {
        &self.verdicts
    }

    /// Rejections matching `filter`, newest first, at most `filter.limit`.
    pub fn rejections(&self, filter: &RejectionFilter) -> Rejections {
        self.verdicts.rejections(filter)
    }

    /// Sets or removes a supply entry.
    pub fn on_supply(&mut self, key: &str, entry: Option<SupplyEntry>) {
        match entry {
            Some(e) => self.supply.set(e),
            None => {
                self.supply.remove_key(key);
            }
        }
    }

    /// The supply plan.
    pub fn supply(&self) -> &SupplyPlan {
        &self.supply
    }

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use forecast_model::{SnapshotRow, Units};

    fn snapshot(customer: &str, sku: &str, q: &str, firm: i64, planning: i64) -> DemandSnapshot {
        DemandSnapshot {
            customer_id: customer.into(),
            sequence: 1,
            as_of: Timestamp::from_millis(0),
            rows: vec![SnapshotRow {
                sku: sku.into(),
                quarter: q.parse().unwrap(),
                units: Units {
                    firm_units: firm,
                    planning_units: planning,
                },
            }],
        }
    }

    #[test]
    fn demand_sums_partitions_and_reports_each_change_once() {
        let mut v = PlannerView::default();
        let c1 = v
            .on_demand(
                b"TENCENT/0",
                Some(snapshot("TENCENT", "H20", "2026-Q3", 10, 5)),
                None,
            )
            .unwrap();
        assert_eq!((c1.change, c1.totals.total_units), (1, 15));
        let c2 = v
            .on_demand(
                b"TENCENT/1",
                Some(snapshot("TENCENT", "H20", "2026-Q3", 1, 0)),
                None,
            )
            .unwrap();
        assert_eq!(c2.rows[0].firm_units, 11, "partitions add up");
        // The same snapshot again (a redelivery) changes nothing.
        assert!(
            v.on_demand(
                b"TENCENT/1",
                Some(snapshot("TENCENT", "H20", "2026-Q3", 1, 0)),
                None
            )
            .is_none()
        );
        // Another customer's change names that customer only.
        let c3 = v
            .on_demand(
                b"ALIBABA/0",
                Some(snapshot("ALIBABA", "H20", "2026-Q4", 0, 7)),
                None,
            )
            .unwrap();
        assert_eq!((c3.customer_id.as_str(), c3.rows.len()), ("ALIBABA", 1));
        // A tombstone retracts that partition's part.
        let c4 = v.on_demand(b"TENCENT/0", None, None).unwrap();
        assert_eq!(
            (c4.customer_id.as_str(), c4.totals.total_units),
            ("TENCENT", 1)
        );
        let f = DemandFilter {
            quarter: Some("2026-Q4".parse().unwrap()),
            ..DemandFilter::default()
        };
        assert_eq!(v.demand(&f).totals.total_units, 7);
        assert_eq!(v.changes(), 4);
    }

    #[test]
    fn coverage_is_supply_over_demand_per_sku_and_per_quarter() {
        let mut v = PlannerView::default();
        v.on_demand(
            b"A/0",
            Some(snapshot("A", "H20-96GB", "2026-Q3", 300_000, 200_000)),
            None,
        );
        v.on_demand(
            b"B/0",
            Some(snapshot("B", "H20-141GB", "2026-Q3", 0, 100_000)),
            None,
        );
        let entry = |sku: &str, q: &str, on_hand, ordered| SupplyEntry {
            sku: sku.into(),
            quarter: q.parse().unwrap(),
            on_hand,
            ordered,
        };
        v.on_supply("", Some(entry("H20-96GB", "2026-Q3", 650_000, 300_000)));
        v.on_supply("", Some(entry("H20-96GB", "2026-Q4", 10, 0)));
        let c = v.coverage(&DemandFilter::default());
        assert_eq!(c.rows.len(), 3);
        let q3 = &c
            .rows
            .iter()
            .find(|r| r.sku.as_deref() == Some("H20-96GB") && r.quarter.to_string() == "2026-Q3")
            .unwrap();
        assert_eq!(
            (q3.supply_units, q3.coverage, q3.firm_coverage),
            (950_000, Some(1.9), Some(950_000.0 / 300_000.0))
        );
        let q4 = c
            .rows
            .iter()
            .find(|r| r.quarter.to_string() == "2026-Q4")
            .unwrap();
        assert_eq!(
            (q4.total_units, q4.coverage),
            (0, None),
            "supply without demand has no ratio"
        );
        let by_q3 = &c.by_quarter[0];
        assert_eq!(
            (by_q3.sku.clone(), by_q3.total_units, by_q3.supply_units),
            (None, 600_000, 950_000)
        );
        v.on_supply("H20-96GB/2026-Q4", None);
        assert_eq!(v.coverage(&DemandFilter::default()).rows.len(), 2);
    }

    #[test]
    fn exposure_is_supply_over_approved_and_over_approved_plus_pending_demand() {
        use forecast_model::{LicenceCell, Units};
        let cell = |sku: &str, status, firm, planning| LicenceCell {
            sku: sku.into(),
            quarter: "2026-Q3".parse().unwrap(),
            licence_status: status,
            units: Units {
                firm_units: firm,
                planning_units: planning,
            },
        };
        let licence = |customer: &str, rows| LicenceSnapshot {
            customer_id: customer.into(),
            as_of: Timestamp::from_millis(0),
            rows,
            lost: Vec::new(),
            lost_not_listed: 0,
            references: Vec::new(),
        };
        let mut v = PlannerView::default();
        assert_eq!(
            v.on_licence_snapshot(
                b"A/0",
                Some(licence(
                    "A",
                    vec![
                        cell("H20", ExposureStatus::Approved, 100, 100),
                        cell("H20", ExposureStatus::Pending, 300, 0),
                    ]
                ))
            ),
            Some("A".into())
        );
        v.on_licence_snapshot(
            b"B/1",
            Some(licence(
                "B",
                vec![cell("L20", ExposureStatus::Revoked, 50, 0)],
            )),
        );
        v.on_supply(
            "",
            Some(SupplyEntry {
                sku: "H20".into(),
                quarter: "2026-Q3".parse().unwrap(),
                on_hand: 300,
                ordered: 100,
            }),
        );
        let e = v.exposure(&DemandFilter::default());
        assert_eq!(e.by_status.len(), 3);
        let h20 = &e.rows[0];
        assert_eq!(
            (
                h20.sku.as_deref(),
                h20.approved_units,
                h20.pending_units,
                h20.supply_units
            ),
            (Some("H20"), 200, 300, 400)
        );
        assert_eq!(
            (h20.approved_coverage, h20.approved_and_pending_coverage),
            (Some(2.0), Some(0.8))
        );
        let l20 = &e.rows[1];
        assert_eq!((l20.revoked_units, l20.approved_coverage), (50, None));
        let q = &e.by_quarter[0];
        assert_eq!(
            (
                q.sku.clone(),
                q.approved_units,
                q.pending_units,
                q.revoked_units,
                q.supply_units
            ),
            (None, 200, 300, 50, 400)
        );
        // Filters narrow both sides.
        let only_b = v.exposure(&DemandFilter {
            customer: Some("B".into()),
            ..DemandFilter::default()
        });
        assert_eq!(only_b.by_status.len(), 1);
        assert_eq!(only_b.rows[0].approved_units, 0, "H20 supply, no B demand");
        let only_l20 = v.exposure(&DemandFilter {
            sku: Some("L20".into()),
            ..DemandFilter::default()
        });
        assert_eq!(only_l20.rows.len(), 1);
        // A tombstone takes the customer's partition out.
        assert_eq!(v.on_licence_snapshot(b"B/1", None), Some("B".into()));
        assert_eq!(v.exposure(&DemandFilter::default()).by_status.len(), 2);
    }
}
