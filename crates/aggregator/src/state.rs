//! Sequencing and demand state: the aggregator's pure core.
//!
//! [`DemandState::apply`] compares a document that passed every rule with
//! the last applied revision of the same `customer_id` and `document_id`
//! (document ids are each customer's own) and either applies it
//! (retracting that revision's lines and adding the new ones in the same
//! call, so nobody can observe a half-applied `REPLACE`), ignores it as a
//! `DUPLICATE`, or rejects it with a sequencing code.

use std::collections::{BTreeMap, BTreeSet};

// Keyed (randomly seeded per process) and several times faster than
// SipHash on short keys; document ids come from customers, so the hasher
// must stay keyed.
use ahash::HashMap;
use std::sync::Arc;

mod licences;
mod screening;

use licences::{Licences, add_units};
use screening::Screening;
pub use screening::{Rescreened, rescreen_verdict};

use forecast_model::Interner;
use forecast_model::codec::content_digest;
use forecast_model::{
    Confidence, DemandRow, DemandSnapshot, ExposureStatus, ForecastDocument, LOST_LISTED,
    LicenceCell, LicenceDecision, LicenceRow, LicenceSnapshot, LicenseStatus, LostDocument,
    OverApproved, Purpose, Quarter, Reference, RuleCode, SnapshotRow, Timestamp, Units,
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
    /// Rejected: `DOCUMENT_UNKNOWN`, `REVISION_CONFLICT` or `REVISION_STALE`.
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
    /// The licence status the document claims, and its application.
    claimed: LicenseStatus,
    application: Option<Arc<str>>,
    /// Its end users' names, normalised, sorted.
    end_users: Box<[Box<str>]>,
    /// An end user is on the restricted-party list in force.
    held: bool,
}

/// One customer's demand.
#[derive(Debug, Clone, Default)]
struct CustomerDemand {
    /// Non-zero cells only.
    cells: BTreeMap<(Arc<str>, Quarter), Units>,
    /// Number of changes so far.
    sequence: i64,
}

/// Each customer's documents, by document id.
type Documents = HashMap<Arc<str>, HashMap<Box<str>, Applied>>;

/// Last applied revision per customer's document and demand per customer
/// x SKU x quarter; and the same demand by licence status, with the
/// licence decisions taken.
#[derive(Debug, Clone, Default)]
pub struct DemandState {
    /// Per customer, its documents: two customers' documents of the same
    /// id are two documents.
    documents: Documents,
    customers: BTreeMap<Arc<str>, CustomerDemand>,
    /// Interned customer ids, SKUs and application numbers: a few distinct
    /// values shared by many documents.
    interned: Interner,
    licences: Licences,
    screening: Screening,
}

/// What taking a licence decision did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// It counts now; the customers with a live document that references
    /// the application (their demand by status or their lost documents
    /// may have changed), sorted.
    Taken { affected: Vec<String> },
    /// A decision decided later already counts for the application.
    Superseded,
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
        let Some(last) = self.document(&doc.customer_id, &doc.document_id) else {
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
        let application = doc
            .export_license
            .application_number
            .as_deref()
            .filter(|a| !a.is_empty())
            .map(|a| self.interned.get(a));
        let end_users = Screening::end_users(doc);
        let held = self.screening.holds(&end_users);
        let old = self
            .documents
            .entry(customer_id.clone())
            .or_default()
            .insert(
                doc.document_id.as_str().into(),
                Applied {
                    revision: doc.revision,
                    customer_id: customer_id.clone(),
                    digest,
                    contributions,
                    claimed: doc.export_license.status,
                    application: application.clone(),
                    end_users,
                    held,
                },
            );
        let applied = &self.documents[&customer_id][doc.document_id.as_str()];
        self.screening.index(
            &customer_id,
            &doc.document_id,
            old.as_ref().map_or(&[], |o| &o.end_users),
            &applied.end_users,
        );
        // The same demand by licence status: the old revision's units out
        // under the status they counted under, the new one's in.
        if let Some(o) = &old {
            let status = self.exposure(o);
            self.licences
                .add(&o.customer_id, &o.contributions, status, -1);
            if o.application != application
                && let Some(a) = &o.application
            {
                self.licences.unreference(a, &customer_id, &doc.document_id);
            }
        }
        let applied = &self.documents[&customer_id][doc.document_id.as_str()];
        let status = self.exposure(applied);
        let new = &applied.contributions;
        self.licences.add(&customer_id, new, status, 1);
        self.licences.reference(
            &customer_id,
            old.as_ref()
                .and_then(|o| Some((o.application.as_ref()?, &*o.contributions))),
            application.as_ref().map(|a| (a, &**new)),
        );
        if let Some(a) = application {
            self.licences
                .documents
                .entry(a)
                .or_default()
                .entry(customer_id.clone())
                .or_default()
                .insert(doc.document_id.as_str().into());
        }
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

    /// Takes a licence decision: from now on the live documents that
    /// reference its application, and those that will, count under its
    /// status, unless a decision decided later already counts.
    pub fn take_decision(&mut self, decision: LicenceDecision) -> Decided {
        let application = self.interned.get(&decision.application_number);
        if self
            .licences
            .decisions
            .get(&application)
            .is_some_and(|taken| !decision.supersedes(taken))
        {
            return Decided::Superseded;
        }
        let after = decision.clone();
        let before = self
            .licences
            .decisions
            .insert(application.clone(), decision);
        let mut affected = BTreeSet::new();
        let ids = self
            .licences
            .documents
            .get(&application)
            .cloned()
            .unwrap_or_default();
        for (customer, id) in ids
            .iter()
            .flat_map(|(c, ids)| ids.iter().map(move |i| (c, i)))
        {
            let Some(d) = self.document(customer, id) else {
                continue;
            };
            affected.insert(d.customer_id.to_string());
            if d.held {
                // Its units count as SCREENING_HOLD whatever the licence.
                continue;
            }
            let (from, to) = (
                ExposureStatus::under(d.claimed, before.as_ref(), &d.customer_id),
                ExposureStatus::under(d.claimed, Some(&after), &d.customer_id),
            );
            if from != to && !d.contributions.is_empty() {
                let (customer, contributions) = (d.customer_id.clone(), d.contributions.clone());
                self.licences.add(&customer, &contributions, from, -1);
                self.licences.add(&customer, &contributions, to, 1);
            }
        }
        Decided::Taken {
            affected: affected.into_iter().collect(),
        }
    }

    /// The licence decisions taken, one per application (the one that counts).
    pub fn decisions(&self) -> impl Iterator<Item = &LicenceDecision> + '_ {
        self.licences.decisions.values()
    }

    /// Demand by licence status: rows with units, sorted by customer, SKU,
    /// quarter, status. Per customer x SKU x quarter they add up to
    /// [`rows`](Self::rows).
    pub fn licence_rows(&self) -> impl Iterator<Item = LicenceRow> + '_ {
        self.licences.cells.iter().flat_map(|(customer, cells)| {
            cells
                .iter()
                .map(move |((sku, quarter, status), units)| LicenceRow {
                    customer_id: customer.to_string(),
                    sku: sku.to_string(),
                    quarter: *quarter,
                    licence_status: *status,
                    firm_units: units.firm_units,
                    planning_units: units.planning_units,
                    total_units: units.total(),
                })
        })
    }

    /// The live documents that reference `application`, with their ids.
    fn referencing<'a>(
        &'a self,
        application: &Arc<str>,
    ) -> impl Iterator<Item = (&'a str, &'a Applied)> + 'a {
        let ids = self
            .licences
            .documents
            .get(application)
            .into_iter()
            .flatten()
            .flat_map(|(customer, ids)| ids.iter().map(move |id| (customer, id)));
        ids.filter_map(|(customer, id)| self.document(customer, id).map(|d| (&**id, d)))
    }

    /// The last applied revision of `customer_id`'s `document_id`.
    fn document(&self, customer_id: &str, document_id: &str) -> Option<&Applied> {
        self.documents.get(customer_id)?.get(document_id)
    }

    /// Live documents with firm units whose licence was denied or revoked,
    /// or that cite another customer's licence, of one customer or of all,
    /// sorted by customer and document: whom a planner calls.
    pub fn lost(&self, customer: Option<&str>) -> Vec<LostDocument> {
        let mut lost = Vec::new();
        for (application, decision) in &self.licences.decisions {
            for (id, d) in self.referencing(application) {
                if d.held || customer.is_some_and(|c| c != &*d.customer_id) {
                    continue;
                }
                let status = ExposureStatus::under(d.claimed, Some(decision), &d.customer_id);
                if !status.is_lost() {
                    continue;
                }
                let firm: i64 = d.contributions.iter().map(|c| c.units.firm_units).sum();
                if firm != 0 {
                    lost.push(LostDocument {
                        document_id: id.to_string(),
                        customer_id: d.customer_id.to_string(),
                        revision: d.revision,
                        application_number: application.to_string(),
                        licence_status: status,
                        decided_at: decision.decided_at,
                        firm_units: firm,
                        planning_units: d
                            .contributions
                            .iter()
                            .map(|c| c.units.planning_units)
                            .sum(),
                    });
                }
            }
        }
        lost.sort_by(|a, b| {
            (&a.customer_id, &a.document_id).cmp(&(&b.customer_id, &b.document_id))
        });
        lost
    }

    /// [`lost`](Self::lost) of every customer.
    pub fn lost_firm_demand(&self) -> Vec<LostDocument> {
        self.lost(None)
    }

    /// Approved licences whose quantity for a SKU is below the units of
    /// their customer's live documents that reference them, sorted by
    /// application and SKU.
    pub fn over_approved(&self) -> Vec<OverApproved> {
        forecast_model::licence::over_approved(self.licences.decisions.values(), |d, sku| {
            self.licences
                .references
                .get(d.customer_id.as_str())
                .and_then(|r| r.get(d.application_number.as_str()))
                .and_then(|by_sku| by_sku.get(sku))
                .copied()
                .unwrap_or(0)
        })
    }

    /// One customer's demand by licence status, its lost documents and what
    /// it references of each licence, as published to `demand.by-licence`.
    pub fn licence_snapshot(&self, customer_id: &str, as_of: Timestamp) -> LicenceSnapshot {
        let rows = self
            .licences
            .cells
            .get(customer_id)
            .into_iter()
            .flatten()
            .map(|((sku, quarter, status), units)| LicenceCell {
                sku: sku.to_string(),
                quarter: *quarter,
                licence_status: *status,
                units: *units,
            })
            .collect();
        let mut lost = self.lost(Some(customer_id));
        let not_listed = lost.len().saturating_sub(LOST_LISTED);
        lost.truncate(LOST_LISTED);
        let references = self
            .licences
            .references
            .get(customer_id)
            .into_iter()
            .flatten()
            .flat_map(|(application, by_sku)| {
                by_sku.iter().map(move |(sku, units)| Reference {
                    application_number: application.to_string(),
                    sku: sku.to_string(),
                    units: *units,
                })
            })
            .collect();
        LicenceSnapshot {
            customer_id: customer_id.to_owned(),
            as_of,
            rows,
            lost,
            lost_not_listed: i64::try_from(not_listed).unwrap_or(i64::MAX),
            references,
        }
    }

    /// The applied revision of `customer_id`'s document, if any.
    pub fn applied_revision(&self, customer_id: &str, document_id: &str) -> Option<i32> {
        self.document(customer_id, document_id).map(|a| a.revision)
    }

    /// Number of documents with an applied revision (cancelled ones included).
    pub fn live_documents(&self) -> usize {
        self.documents.values().map(HashMap::len).sum()
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
    add_units(cells, (c.sku.clone(), c.quarter), c.units, sign);
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
