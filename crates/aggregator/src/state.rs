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
use ahash::{HashMap, HashSet};
use std::sync::Arc;

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

/// Strings kept once however often they are taken: for the few distinct
/// values (customer ids, SKUs, policy versions, topics) that every
/// document or verdict repeats.
#[derive(Debug, Clone, Default)]
pub struct Interner(HashSet<Arc<str>>);

impl Interner {
    /// The kept copy of `s`, kept now if it is new.
    pub fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.0.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.0.insert(a.clone());
        a
    }
}

impl DemandState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// What [`apply`](Self::apply) would decide, without changing anything.
    /// The digest is computed only when the revision equals the applied one.
    pub fn sequence(&self, doc: &ForecastDocument) -> Sequenced {
        decide(self.documents.get(doc.document_id.as_str()), doc, || {
            content_digest(doc)
        })
    }

    /// Sequences a document that passed every rule and, when it is applied,
    /// swaps its lines for those of the revision it replaces in one step.
    pub fn apply(&mut self, doc: &ForecastDocument) -> Sequenced {
        self.apply_digested(doc, content_digest(doc))
    }

    /// [`apply`](Self::apply) of a document whose
    /// [`content_digest`] is known, as decoding a record gives it
    /// (`wire::decode_document_digest`) without encoding the document again.
    pub fn apply_digested(&mut self, doc: &ForecastDocument, digest: [u8; 16]) -> Sequenced {
        // One lookup serves the decision and the swap.
        let last = self.documents.get_mut(doc.document_id.as_str());
        let outcome = decide(last.as_deref(), doc, || digest);
        let Sequenced::Applied { previous, .. } = outcome else {
            return outcome;
        };
        // A revision keeps its document's customer (CUSTOMER_CHANGED otherwise).
        let customer_id = match &last {
            Some(last) => last.customer_id.clone(),
            None => self.interned.get(&doc.customer_id),
        };
        let applied = Applied {
            revision: doc.revision,
            customer_id: customer_id.clone(),
            digest,
            contributions: contributions(&mut self.interned, doc),
        };
        let demand = self.customers.entry(customer_id).or_default();
        let demand_changed = match last {
            Some(slot) => {
                let old = std::mem::replace(slot, applied);
                swap(&mut demand.cells, &old.contributions, &slot.contributions)
            }
            None => {
                let changed = swap(&mut demand.cells, &[], &applied.contributions);
                self.documents
                    .insert(doc.document_id.as_str().into(), applied);
                changed
            }
        };
        if demand_changed {
            demand.sequence += 1;
        }
        Sequenced::Applied {
            previous,
            demand_changed,
        }
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

/// What sequencing decides for `doc` given its document's last applied
/// revision; `digest` is called only when the revisions are equal.
fn decide(
    last: Option<&Applied>,
    doc: &ForecastDocument,
    digest: impl FnOnce() -> [u8; 16],
) -> Sequenced {
    let Some(last) = last else {
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

/// A document's lines summed per SKU x quarter, sorted by SKU and quarter,
/// cells of no units left out. Sorting the lines and merging neighbours
/// costs one small vector, where a map cost a node per cell.
fn contributions(interned: &mut Interner, doc: &ForecastDocument) -> Box<[Contribution]> {
    let mut cells: Vec<(&str, Quarter, Units)> = doc
        .lines
        .iter()
        .map(|line| {
            let units = match line.confidence {
                Confidence::Firm => Units {
                    firm_units: line.quantity,
                    planning_units: 0,
                },
                Confidence::Planning => Units {
                    firm_units: 0,
                    planning_units: line.quantity,
                },
            };
            (line.sku.as_str(), line.period_start.quarter(), units)
        })
        .collect();
    cells.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    // `later` is merged into `kept` when both are the same cell.
    cells.dedup_by(|later, kept| {
        let same = (later.0, later.1) == (kept.0, kept.1);
        if same {
            kept.2 = plus(kept.2, later.2);
        }
        same
    });
    let mut sku: Option<Arc<str>> = None;
    cells
        .into_iter()
        .filter(|cell| cell.2 != Units::default())
        .map(|(name, quarter, units)| {
            // Sorted, so a SKU's cells are neighbours: interned once.
            let shared = match sku.take() {
                Some(s) if *s == *name => s,
                _ => interned.get(name),
            };
            sku = Some(shared.clone());
            Contribution {
                sku: shared,
                quarter,
                units,
            }
        })
        .collect()
}

/// Retracts the `old` contributions and adds the `new` ones (each sorted by
/// SKU and quarter, as [`contributions`] makes them), touching each cell
/// once with the difference; drops cells that become zero. Returns true
/// when some cell changed.
fn swap(
    cells: &mut BTreeMap<(Arc<str>, Quarter), Units>,
    old: &[Contribution],
    new: &[Contribution],
) -> bool {
    use std::cmp::Ordering;
    let (mut i, mut j, mut changed) = (0, 0, false);
    while i < old.len() || j < new.len() {
        let order = match (old.get(i), new.get(j)) {
            (Some(o), Some(n)) => (&*o.sku, o.quarter).cmp(&(&*n.sku, n.quarter)),
            (Some(_), None) => Ordering::Less,
            (None, _) => Ordering::Greater,
        };
        let (cell, delta) = match order {
            Ordering::Less => (&old[i], minus(Units::default(), old[i].units)),
            Ordering::Greater => (&new[j], new[j].units),
            Ordering::Equal => (&new[j], minus(new[j].units, old[i].units)),
        };
        i += usize::from(order.is_le());
        j += usize::from(order.is_ge());
        if delta == Units::default() {
            continue;
        }
        changed = true;
        let key = (cell.sku.clone(), cell.quarter);
        let units = cells.entry(key.clone()).or_default();
        *units = plus(*units, delta);
        if *units == Units::default() {
            cells.remove(&key);
        }
    }
    changed
}

// Saturating: quantities are bounded by policy, but the state must not
// panic on any input it is given.
fn plus(a: Units, b: Units) -> Units {
    Units {
        firm_units: a.firm_units.saturating_add(b.firm_units),
        planning_units: a.planning_units.saturating_add(b.planning_units),
    }
}

fn minus(a: Units, b: Units) -> Units {
    Units {
        firm_units: a.firm_units.saturating_sub(b.firm_units),
        planning_units: a.planning_units.saturating_sub(b.planning_units),
    }
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
