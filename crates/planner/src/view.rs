//! The planner's read model (pure), one module per view: demand from
//! `demand.by-customer` (here), verdict history and rejections from
//! `forecasts.audit` (per customer, [`crate::verdicts`]), coverage against
//! the supply plan ([`coverage`]), licence exposure from
//! `demand.by-licence` ([`exposure`]) and the supplier's commits
//! ([`crate::commits`]). [`crate::feed`] fills it from
//! the topics; [`crate::api`] reads it.
//!
//! Demand comes from the snapshots the aggregators publish after applying a
//! whole revision, so no reader sees a half-applied `REPLACE`.

use forecast_model::DemandView;
use forecast_model::{
    DemandRow, DemandSnapshot, LicenceDecision, LicenceSnapshot, LicenceView, Quarter, Timestamp,
    Verdict,
};
use serde::Serialize;

use crate::supply::{SupplyEntry, SupplyPlan};

pub mod coverage;
pub mod exposure;

pub use coverage::{Coverage, CoverageRow};
pub use exposure::{Exposure, ExposureRow};

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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use forecast_model::ExposureStatus;
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
