//! The planner's read model (pure): demand from `demand.by-customer`,
//! verdict history and rejections from `forecasts.audit`, and the supply
//! plan. [`crate::feed`] fills it from the topics; [`crate::api`] reads it.
//!
//! Demand comes from the snapshots the aggregators publish after applying a
//! whole revision, so no reader sees a half-applied `REPLACE`. Verdicts are
//! de-duplicated by the stage and source coordinates of the record they
//! judge: a service that crashed and judged a record again adds nothing.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

// Keyed like SipHash, faster on short keys (see forecast-aggregator state).
use ahash::{HashMap, HashSet};

use forecast_model::{
    DemandRow, DemandSnapshot, ExposureStatus, LicenceDecision, LicenceRow, LicenceSnapshot,
    LicenceView, LostDocument, Outcome, OverApproved, Quarter, RuleCode, Stage, Timestamp, Verdict,
};
use forecast_model::{DemandView, Interner};
use serde::Serialize;

use crate::supply::{SupplyEntry, SupplyPlan};

/// How many rejections [`PlannerView::rejections`] keeps (the newest).
pub const RECENT_REJECTIONS: usize = 1000;

/// Verdicts kept per document for `/v1/documents` (16 revisions of two
/// verdicts each): older ones are counted, not kept, so a document revised
/// without end takes bounded memory; `forecasts.audit` holds them all.
pub const HISTORY_KEPT: usize = 32;

/// Sources of verdicts that name no document remembered, to drop their
/// repeats; the oldest are forgotten past this.
pub const ANONYMOUS_KEPT: usize = 100_000;

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

/// One verdict as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerdictEntry {
    pub document_id: Option<Arc<str>>,
    pub revision: Option<i32>,
    pub customer_id: Option<Arc<str>>,
    pub verdict: Outcome,
    pub stage: Stage,
    pub codes: Vec<RuleCode>,
    pub warnings: Vec<forecast_model::WarningCode>,
    pub violations: Vec<ViolationEntry>,
    pub policy_version: Arc<str>,
    pub decided_at: Timestamp,
    pub source: Option<Source>,
}

/// A violated rule with its field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ViolationEntry {
    pub code: RuleCode,
    pub field: String,
    pub message: String,
}

/// The record a verdict judged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Source {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

impl VerdictEntry {
    /// The entry of `v`, its repeated strings (customer, policy version,
    /// topic) shared through `strings`.
    fn new(v: Verdict, strings: &mut Interner) -> Self {
        Self {
            document_id: v.document_id.map(Arc::from),
            revision: v.revision,
            customer_id: v.customer_id.map(|c| strings.get(&c)),
            verdict: v.outcome,
            stage: v.stage,
            codes: v.codes,
            warnings: v.warnings,
            violations: v
                .violations
                .into_iter()
                .map(|x| ViolationEntry {
                    code: x.code,
                    field: x.field,
                    message: x.message,
                })
                .collect(),
            policy_version: strings.get(&v.policy_version),
            decided_at: v.decided_at,
            source: v.source.map(|s| Source {
                topic: strings.get(&s.topic),
                partition: s.partition,
                offset: s.offset,
            }),
        }
    }
}

/// Rejections of one customer: all, and by code.
type RejectionCount = (u64, BTreeMap<&'static str, u64>);

/// A document's current state and its verdict history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentHistory {
    pub document_id: Arc<str>,
    pub customer_id: Option<Arc<str>>,
    /// The revision the aggregator applied last (`null` when none was).
    pub applied_revision: Option<i32>,
    /// The newest verdicts (at most [`HISTORY_KEPT`]), oldest first.
    pub history: Vec<VerdictEntry>,
    /// Verdicts older than `history`, counted but no longer kept.
    pub earlier_verdicts: u64,
}

/// Recent rejections and counts by code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejections {
    /// Rejections of all time matching the customer filter, by code.
    pub counts: BTreeMap<&'static str, u64>,
    /// Rejections of all time matching the customer filter.
    pub total: u64,
    /// The newest rejections matching the filters, newest first.
    pub rejections: Vec<VerdictEntry>,
}

/// Filters of the rejections view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RejectionFilter {
    pub customer: Option<String>,
    pub code: Option<RuleCode>,
    pub limit: usize,
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
/// demand whose licence was denied or revoked, and approved quantities
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

/// Stage and source (partition, offset, topic) of a verdict.
type AnonymousSource = (Stage, i32, i64, String);

/// Everything the planner API reads.
#[derive(Debug, Default)]
pub struct PlannerView {
    demand: DemandView,
    changes: u64,
    documents: HashMap<Arc<str>, DocumentHistory>,
    /// Customer ids, policy versions and topics: a few values that every
    /// verdict repeats, kept once.
    strings: Interner,
    /// Stage and source of each verdict taken that names no document, to
    /// drop repeats (a document's own history says which it has).
    seen_anonymous: HashSet<AnonymousSource>,
    /// The same, oldest first, to forget the oldest past [`ANONYMOUS_KEPT`].
    anonymous_order: VecDeque<AnonymousSource>,
    rejections: VecDeque<VerdictEntry>,
    /// Per customer (`None`: unknown): rejections, and rejections by code.
    rejection_counts: HashMap<Option<Arc<str>>, RejectionCount>,
    supply: SupplyPlan,
    licences: LicenceView,
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

    /// Takes a verdict of the audit topic; false when it repeats one taken.
    pub fn on_verdict(&mut self, verdict: Verdict) -> bool {
        if let Some(s) = &verdict.source {
            let repeat = match &verdict.document_id {
                // A record names one document: a repeat is in its history.
                Some(id) => self.documents.get(id.as_str()).is_some_and(|d| {
                    d.history.iter().any(|e| {
                        e.stage == verdict.stage
                            && e.source.as_ref().is_some_and(|e| {
                                e.offset == s.offset
                                    && e.partition == s.partition
                                    && *e.topic == *s.topic
                            })
                    })
                }),
                None => {
                    let source = (verdict.stage, s.partition, s.offset, s.topic.clone());
                    let repeat = !self.seen_anonymous.insert(source.clone());
                    if !repeat {
                        self.anonymous_order.push_back(source);
                        if self.anonymous_order.len() > ANONYMOUS_KEPT
                            && let Some(oldest) = self.anonymous_order.pop_front()
                        {
                            self.seen_anonymous.remove(&oldest);
                        }
                    }
                    repeat
                }
            };
            if repeat {
                return false;
            }
        }
        let entry = VerdictEntry::new(verdict, &mut self.strings);
        if entry.verdict == Outcome::Rejected {
            let (total, by_code) = self
                .rejection_counts
                .entry(entry.customer_id.clone())
                .or_default();
            *total += 1;
            for code in &entry.codes {
                *by_code.entry(code.as_str()).or_default() += 1;
            }
            if self.rejections.len() == RECENT_REJECTIONS {
                self.rejections.pop_front();
            }
            self.rejections.push_back(entry.clone());
        }
        if let Some(id) = entry.document_id.clone() {
            let doc = self
                .documents
                .entry(id.clone())
                .or_insert_with(|| DocumentHistory {
                    document_id: id,
                    customer_id: None,
                    applied_revision: None,
                    // Most documents get two verdicts (validator, aggregator).
                    history: Vec::with_capacity(2),
                    earlier_verdicts: 0,
                });
            if entry.stage == Stage::Sequence && entry.verdict == Outcome::Accepted {
                doc.applied_revision = doc.applied_revision.max(entry.revision);
                doc.customer_id.clone_from(&entry.customer_id);
            } else if doc.applied_revision.is_none() && entry.customer_id.is_some() {
                doc.customer_id.clone_from(&entry.customer_id);
            }
            if doc.history.len() == HISTORY_KEPT {
                doc.history.remove(0);
                doc.earlier_verdicts += 1;
            }
            doc.history.push(entry);
        }
        true
    }

    /// A document's history, if any verdict names it.
    pub fn document(&self, id: &str) -> Option<&DocumentHistory> {
        self.documents.get(id)
    }

    /// Rejections matching `filter`, newest first, at most `filter.limit`.
    pub fn rejections(&self, filter: &RejectionFilter) -> Rejections {
        let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut total = 0;
        for (customer, (rejected, by_code)) in &self.rejection_counts {
            if filter
                .customer
                .as_ref()
                .is_none_or(|c| customer.as_deref() == Some(c.as_str()))
            {
                total += rejected;
                for (code, n) in by_code {
                    *counts.entry(code).or_default() += n;
                }
            }
        }
        let rejections = self
            .rejections
            .iter()
            .rev()
            .filter(|r| {
                filter
                    .customer
                    .as_ref()
                    .is_none_or(|c| r.customer_id.as_deref() == Some(c.as_str()))
                    && filter.code.is_none_or(|c| r.codes.contains(&c))
            })
            .take(filter.limit)
            .cloned()
            .collect();
        Rejections {
            counts,
            total,
            rejections,
        }
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
    use forecast_model::{SnapshotRow, SourceCoordinates, Units};

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

    fn verdict(
        doc: &str,
        rev: i32,
        outcome: Outcome,
        stage: Stage,
        codes: &[RuleCode],
        offset: i64,
    ) -> Verdict {
        Verdict {
            document_id: Some(doc.into()),
            revision: Some(rev),
            outcome,
            stage,
            codes: codes.to_vec(),
            warnings: vec![],
            violations: vec![],
            policy_version: "sha256:0".into(),
            decided_at: Timestamp::from_millis(offset),
            source: Some(SourceCoordinates {
                topic: "t".into(),
                partition: 0,
                offset,
            }),
            customer_id: Some("TENCENT".into()),
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
    fn verdicts_are_taken_once_per_stage_and_source() {
        let mut v = PlannerView::default();
        assert!(v.on_verdict(verdict("D", 1, Outcome::Accepted, Stage::Validate, &[], 0)));
        assert!(v.on_verdict(verdict("D", 1, Outcome::Accepted, Stage::Sequence, &[], 0)));
        // A restarted validator judging offset 0 again adds nothing.
        assert!(!v.on_verdict(verdict("D", 1, Outcome::Accepted, Stage::Validate, &[], 0)));
        assert!(v.on_verdict(verdict("D", 2, Outcome::Accepted, Stage::Validate, &[], 1)));
        assert!(v.on_verdict(verdict(
            "D",
            2,
            Outcome::Rejected,
            Stage::Sequence,
            &[RuleCode::RevisionConflict],
            1
        )));
        let d = v.document("D").unwrap();
        assert_eq!((d.applied_revision, d.history.len()), (Some(1), 4));
        assert!(v.document("E").is_none());
        let r = v.rejections(&RejectionFilter {
            limit: 10,
            ..RejectionFilter::default()
        });
        assert_eq!((r.total, r.counts.get("REVISION_CONFLICT")), (1, Some(&1)));
        let none = v.rejections(&RejectionFilter {
            customer: Some("ALIBABA".into()),
            limit: 10,
            ..RejectionFilter::default()
        });
        assert_eq!((none.total, none.rejections.len()), (0, 0));
    }

    /// The verdict of an undecodable record at `offset`: it names no document.
    fn undecodable(offset: i64) -> Verdict {
        Verdict {
            document_id: None,
            revision: None,
            customer_id: None,
            ..verdict(
                "-",
                0,
                Outcome::Rejected,
                Stage::Deserialize,
                &[RuleCode::SchemaInvalid],
                offset,
            )
        }
    }

    #[test]
    fn verdicts_naming_no_document_are_taken_once_per_stage_and_source() {
        let mut v = PlannerView::default();
        assert!(v.on_verdict(undecodable(7)));
        assert!(!v.on_verdict(undecodable(7)));
        assert!(v.on_verdict(undecodable(8)));
        // The same offset of another document is not a repeat.
        assert!(v.on_verdict(verdict("D", 1, Outcome::Accepted, Stage::Validate, &[], 7)));
        let r = v.rejections(&RejectionFilter {
            limit: 10,
            ..RejectionFilter::default()
        });
        assert_eq!((r.total, r.counts.get("SCHEMA_INVALID")), (2, Some(&2)));
    }

    #[test]
    fn a_document_revised_without_end_keeps_its_newest_verdicts_and_counts_the_rest() {
        let mut v = PlannerView::default();
        let revisions = HISTORY_KEPT as i32 * 3;
        for rev in 1..=revisions {
            let offset = i64::from(rev);
            assert!(v.on_verdict(verdict(
                "D",
                rev,
                Outcome::Accepted,
                Stage::Validate,
                &[],
                offset
            )));
            assert!(v.on_verdict(verdict(
                "D",
                rev,
                Outcome::Accepted,
                Stage::Sequence,
                &[],
                offset
            )));
        }
        let d = v.document("D").unwrap();
        assert_eq!(d.history.len(), HISTORY_KEPT);
        assert_eq!(
            d.earlier_verdicts,
            2 * revisions as u64 - HISTORY_KEPT as u64
        );
        assert_eq!(d.applied_revision, Some(revisions));
        let kept: Vec<_> = d.history.iter().map(|e| e.revision).collect();
        assert_eq!(
            kept.first(),
            Some(&Some(revisions - HISTORY_KEPT as i32 / 2 + 1)),
            "oldest first: {kept:?}"
        );
        assert_eq!(kept.last(), Some(&Some(revisions)));
        // A repeat of a kept verdict is still found.
        let offset = i64::from(revisions);
        assert!(!v.on_verdict(verdict(
            "D",
            revisions,
            Outcome::Accepted,
            Stage::Sequence,
            &[],
            offset
        )));
    }

    #[test]
    fn the_sources_of_anonymous_verdicts_remembered_are_bounded() {
        let mut v = PlannerView::default();
        let n = ANONYMOUS_KEPT as i64 + 10;
        for offset in 0..n {
            assert!(v.on_verdict(undecodable(offset)));
        }
        assert_eq!(v.seen_anonymous.len(), ANONYMOUS_KEPT);
        assert_eq!(v.anonymous_order.len(), ANONYMOUS_KEPT);
        assert!(
            !v.on_verdict(undecodable(n - 1)),
            "a recent repeat is dropped"
        );
        assert!(v.on_verdict(undecodable(0)), "the oldest is forgotten");
    }

    #[test]
    fn only_the_newest_rejections_are_kept_but_all_are_counted() {
        let mut v = PlannerView::default();
        let n = RECENT_REJECTIONS as i64 + 5;
        for i in 0..n {
            let code = if i % 2 == 0 {
                RuleCode::SkuUnknown
            } else {
                RuleCode::DocExpired
            };
            v.on_verdict(verdict(
                &format!("D{i}"),
                1,
                Outcome::Rejected,
                Stage::Validate,
                &[code],
                i,
            ));
        }
        let all = v.rejections(&RejectionFilter {
            limit: usize::MAX,
            ..RejectionFilter::default()
        });
        assert_eq!(all.total, n as u64);
        assert_eq!(all.rejections.len(), RECENT_REJECTIONS);
        assert_eq!(
            all.rejections[0].document_id.as_deref(),
            Some(format!("D{}", n - 1).as_str()),
            "newest first"
        );
        let expired = v.rejections(&RejectionFilter {
            code: Some(RuleCode::DocExpired),
            limit: 3,
            ..RejectionFilter::default()
        });
        assert_eq!(expired.rejections.len(), 3);
        assert!(
            expired
                .rejections
                .iter()
                .all(|r| r.codes == [RuleCode::DocExpired])
        );
        assert_eq!(
            all.counts["SKU_UNKNOWN"] + all.counts["DOC_EXPIRED"],
            n as u64
        );
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
