//! Sequencing and demand state: the aggregator's pure core.
//!
//! [`DemandState::apply`] compares a document that passed every rule with
//! the last applied revision of its `document_id` and either applies it
//! (retracting that revision's lines and adding the new ones in the same
//! call, so nobody can observe a half-applied `REPLACE`), ignores it as a
//! `DUPLICATE`, or rejects it with a sequencing code.

use std::collections::BTreeMap;

// Keyed (randomly seeded per process) and several times faster than
// SipHash on short keys; document ids come from customers, so the hasher
// must stay keyed.
use ahash::HashMap;
use std::sync::Arc;

use forecast_model::Interner;
use forecast_model::codec::content_digest;
use forecast_model::{
    Confidence, DemandRow, DemandSnapshot, ForecastDocument, Purpose, Quarter, RuleCode,
    SnapshotRow, Timestamp, Units,
};

/// What sequencing decided for one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sequenced {
    /// Applied: it is now the document's last applied revision.
    Applied {
        /// The revision it replaced, if any.
        previous: Option<i32>,
        /// True when the customer's demand changed.
        demand_changed: bool,
    },
    /// Same revision and content as the applied one: ignored.
    Duplicate,
    /// Rejected: `DOCUMENT_UNKNOWN`, `REVISION_CONFLICT`, `REVISION_STALE` or `CUSTOMER_CHANGED`.
    Rejected(RuleCode),
}

/// Units one applied revision adds to one SKU x quarter.
#[derive(Debug, Clone)]
struct Contribution {
    sku: Arc<str>,
    quarter: Quarter,
    units: Units,
}

/// The last applied revision of a document: what sequencing compares with,
/// and what a later revision retracts.
#[derive(Debug, Clone)]
struct Applied {
    revision: i32,
    customer_id: Arc<str>,
    digest: [u8; 16],
    contributions: Box<[Contribution]>,
}

/// One customer's demand.
#[derive(Debug, Clone, Default)]
struct CustomerDemand {
    /// Non-zero cells only.
    cells: BTreeMap<(Arc<str>, Quarter), Units>,
    /// Number of changes so far.
    sequence: i64,
}

/// Last applied revision per document and demand per customer x SKU x quarter.
#[derive(Debug, Clone, Default)]
pub struct DemandState {
    documents: HashMap<Box<str>, Applied>,
    customers: BTreeMap<Arc<str>, CustomerDemand>,
    /// Interned customer ids and SKUs: a few distinct values shared by all documents.
    interned: Interner,
}

impl DemandState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// What [`apply`](Self::apply) would decide, without changing anything.
    /// The digest is computed only when the revision equals the applied one.
    pub fn sequence(&self, doc: &ForecastDocument) -> Sequenced {
        self.decide(doc, || content_digest(doc))
    }

    /// What sequencing decides for `doc` given its document's last applied
    /// revision; `digest` is called only when the revisions are equal.
    fn decide(&self, doc: &ForecastDocument, digest: impl FnOnce() -> [u8; 16]) -> Sequenced {
        let Some(last) = self.documents.get(doc.document_id.as_str()) else {
            return if doc.purpose == Purpose::Original {
                Sequenced::Applied {
                    previous: None,
                    demand_changed: false,
                }
            } else {
                Sequenced::Rejected(RuleCode::DocumentUnknown)
            };
        };
        if doc.revision == last.revision {
            if digest() == last.digest {
                Sequenced::Duplicate
            } else {
                Sequenced::Rejected(RuleCode::RevisionConflict)
            }
        } else if doc.revision < last.revision {
            Sequenced::Rejected(RuleCode::RevisionStale)
        } else if *last.customer_id != *doc.customer_id {
            Sequenced::Rejected(RuleCode::CustomerChanged)
        } else {
            Sequenced::Applied {
                previous: Some(last.revision),
                demand_changed: false,
            }
        }
    }

    /// Sequences a document that passed every rule and, when it is applied,
    /// swaps its lines for those of the revision it replaces in one step.
    pub fn apply(&mut self, doc: &ForecastDocument) -> Sequenced {
        self.apply_digested(doc, content_digest(doc))
    }

    /// [`apply`](Self::apply) of a document whose
    /// [`content_digest`] is known, as decoding a record gives it
    /// (`wire::decode_sequencing_digest`) without encoding the document again.
    pub fn apply_digested(&mut self, doc: &ForecastDocument, digest: [u8; 16]) -> Sequenced {
        let outcome = self.decide(doc, || digest);
        let Sequenced::Applied { previous, .. } = outcome else {
            return outcome;
        };
        let customer_id = self.interned.get(&doc.customer_id);
        let contributions = self.contributions(doc);
        let old = self.documents.insert(
            doc.document_id.as_str().into(),
            Applied {
                revision: doc.revision,
                customer_id: customer_id.clone(),
                digest,
                contributions,
            },
        );
        let new = &self.documents[doc.document_id.as_str()].contributions;
        let demand = self.customers.entry(customer_id).or_default();
        let mut changed = false;
        if let Some(old) = &old {
            for c in old.contributions.iter() {
                changed |= add(&mut demand.cells, c, -1);
            }
        }
        for c in new.iter() {
            changed |= add(&mut demand.cells, c, 1);
        }
        // A retraction and an addition can cancel out cell by cell; compare
        // the result rather than trusting `changed` alone.
        let demand_changed = changed
            && old
                .as_ref()
                .is_none_or(|o| !same_units(&o.contributions, new));
        if demand_changed {
            demand.sequence += 1;
        }
        Sequenced::Applied {
            previous,
            demand_changed,
        }
    }

    /// A document's lines summed per SKU x quarter, zero cells left out.
    fn contributions(&mut self, doc: &ForecastDocument) -> Box<[Contribution]> {
        let mut sums: BTreeMap<(&str, Quarter), Units> = BTreeMap::new();
        for line in &doc.lines {
            let cell = sums
                .entry((line.sku.as_str(), line.period_start.quarter()))
                .or_default();
            match line.confidence {
                Confidence::Firm => cell.firm_units += line.quantity,
                Confidence::Planning => cell.planning_units += line.quantity,
            }
        }
        let sums: Vec<_> = sums
            .into_iter()
            .filter(|(_, u)| *u != Units::default())
            .collect();
        sums.into_iter()
            .map(|((sku, quarter), units)| Contribution {
                sku: self.interned.get(sku),
                quarter,
                units,
            })
            .collect()
    }

    /// The applied revision of a document, if any.
    pub fn applied_revision(&self, document_id: &str) -> Option<i32> {
        self.documents.get(document_id).map(|a| a.revision)
    }

    /// Number of documents with an applied revision (cancelled ones included).
    pub fn live_documents(&self) -> usize {
        self.documents.len()
    }

    /// Demand rows with a non-zero total, sorted by customer, SKU, quarter.
    pub fn rows(&self) -> impl Iterator<Item = DemandRow> + '_ {
        self.customers.iter().flat_map(|(customer, demand)| {
            demand
                .cells
                .iter()
                .filter(|(_, u)| u.total() != 0)
                .map(move |((sku, quarter), units)| DemandRow::new(customer, sku, *quarter, *units))
        })
    }

    /// Customers that have or had demand, sorted.
    pub fn customers(&self) -> impl Iterator<Item = &str> + '_ {
        self.customers.keys().map(|c| &**c)
    }

    /// The whole demand of one customer, as published to `demand.by-customer`.
    pub fn snapshot(&self, customer_id: &str, as_of: Timestamp) -> DemandSnapshot {
        let demand = self.customers.get(customer_id);
        DemandSnapshot {
            customer_id: customer_id.to_owned(),
            sequence: demand.map_or(0, |d| d.sequence),
            as_of,
            rows: demand
                .into_iter()
                .flat_map(|d| d.cells.iter())
                .filter(|(_, u)| u.total() != 0)
                .map(|((sku, quarter), units)| SnapshotRow {
                    sku: sku.to_string(),
                    quarter: *quarter,
                    units: *units,
                })
                .collect(),
        }
    }
}

/// Adds `sign` times a contribution to its cell; drops cells that become zero.
/// Returns true when the cell changed.
fn add(cells: &mut BTreeMap<(Arc<str>, Quarter), Units>, c: &Contribution, sign: i64) -> bool {
    let key = (c.sku.clone(), c.quarter);
    let cell = cells.entry(key.clone()).or_default();
    // Saturating: quantities are bounded by policy, but the state must not
    // panic on any input it is given.
    cell.firm_units = cell
        .firm_units
        .saturating_add(sign.saturating_mul(c.units.firm_units));
    cell.planning_units = cell
        .planning_units
        .saturating_add(sign.saturating_mul(c.units.planning_units));
    if *cell == Units::default() {
        cells.remove(&key);
    }
    c.units != Units::default()
}

fn same_units(a: &[Contribution], b: &[Contribution]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.sku == y.sku && x.quarter == y.quarter && x.units == y.units)
}

/// Completes the validator's `ACCEPTED` verdict with the sequencing outcome:
/// `ACCEPTED`, `DUPLICATE`, or `REJECTED` with the sequencing code, at stage
/// `SEQUENCE`. Warnings are kept whatever the outcome.
pub fn sequenced_verdict(
    mut verdict: forecast_model::Verdict,
    outcome: &Sequenced,
) -> forecast_model::Verdict {
    use forecast_model::{Outcome, Stage, Violation};
    verdict.stage = Stage::Sequence;
    match outcome {
        Sequenced::Applied { .. } => verdict.outcome = Outcome::Accepted,
        Sequenced::Duplicate => verdict.outcome = Outcome::Duplicate,
        Sequenced::Rejected(code) => {
            verdict.outcome = Outcome::Rejected;
            verdict.codes = vec![*code];
            verdict.violations = vec![Violation {
                code: *code,
                field: "revision".into(),
                message: code.explain().into(),
            }];
        }
    }
    verdict
}
