//! The allocator's pure core: the demand the aggregator holds (the same
//! [`DemandState`], fed the same records), the supply plan, and the
//! commits last published; from them, the commits that changed.
//!
//! [`allocation`] and [`commits`] are what `forecastctl allocate` runs on a
//! replayed stream; [`Book`] runs them on the live one.

use std::collections::{BTreeMap, BTreeSet};

use forecast_aggregator::{Decided, DemandState, Sequenced};
use forecast_model::allocation::{Allocated, Allocation, AllocationPolicy, Method, allocate};
use forecast_model::commit::{Answered, Commit, CommitLine};
use forecast_model::screening::RestrictedParties;
use forecast_model::supply::{SupplyEntry, SupplyPlan};
use forecast_model::{ForecastDocument, LicenceDecision, Timestamp};

/// The supply of `plan` allocated among the demand of `state`, under
/// `policy`, with the approved quantities of the licence decisions that
/// count in `state`.
pub fn allocation(policy: &AllocationPolicy, state: &DemandState, plan: &SupplyPlan) -> Allocated {
    let mut decisions: Vec<LicenceDecision> = state.decisions().cloned().collect();
    decisions.sort_by(|a, b| a.application_number.cmp(&b.application_number));
    allocate(policy, &state.demand_lines(), &plan.available(), &decisions)
}

/// The commit to each customer of `allocations`, made `at`, each line
/// naming the revisions of the customer's live documents in `state` with
/// units in its SKU x quarter. Sorted by customer.
pub fn commits(
    state: &DemandState,
    allocations: &[Allocation],
    method: Method,
    at: Timestamp,
) -> Vec<Commit> {
    let mut customers: Vec<&str> = allocations.iter().map(|a| a.customer_id.as_str()).collect();
    customers.dedup();
    customers
        .into_iter()
        .map(|customer| commit_of(state, customer, allocations, method, at))
        .collect()
}

/// The commit to `customer` of `allocations` (every customer's), made
/// `at`, each line naming the revisions of its live documents in `state`
/// with units in the line's SKU x quarter.
fn commit_of(
    state: &DemandState,
    customer: &str,
    allocations: &[Allocation],
    method: Method,
    at: Timestamp,
) -> Commit {
    let revisions = state.revisions_of(customer);
    Commit::of(customer, allocations, method, at, |sku, quarter| {
        revisions
            .get(&(sku.to_owned(), quarter))
            .into_iter()
            .flatten()
            .map(|(document_id, revision)| Answered {
                document_id: document_id.clone(),
                revision: *revision,
            })
            .collect()
    })
}

/// Whether `lines` (a commit's) hold the figures of `allocations` (one
/// customer's, sorted by SKU and quarter), the revisions aside.
fn same_figures(lines: &[CommitLine], allocations: &[&Allocation]) -> bool {
    lines.len() == allocations.len()
        && lines.iter().zip(allocations).all(|(l, a)| {
            l.sku == a.sku
                && l.quarter == a.quarter
                && l.requested_units == a.requested_units
                && l.allocated_units == a.allocated_units
                && l.shortfalls == a.shortfalls
        })
}

/// What the allocator holds: every input, and the commit in force per
/// customer.
#[derive(Debug)]
pub struct Book {
    policy: AllocationPolicy,
    state: DemandState,
    supply: SupplyPlan,
    /// Per customer, the commit on the topic (the last published, or read
    /// back at start).
    published: BTreeMap<String, Commit>,
    /// Customers whose last commit could not be published: due again.
    failed: BTreeSet<String>,
    /// Customers with a revision applied since the last [`Book::due`]:
    /// the revisions their commit names may have changed.
    revised: BTreeSet<String>,
    /// Whether an input changed since [`Book::due`] last ran.
    changed: bool,
}

impl Book {
    /// An empty book under `policy`, with `supply` (a file's entries; the
    /// topic's replace them per SKU x quarter).
    pub fn new(policy: AllocationPolicy, supply: Vec<SupplyEntry>) -> Self {
        Self {
            policy,
            state: DemandState::new(),
            supply: SupplyPlan::of(supply),
            published: BTreeMap::new(),
            failed: BTreeSet::new(),
            revised: BTreeSet::new(),
            changed: true,
        }
    }

    /// Applies a validated document, exactly as the aggregator does.
    pub fn apply(&mut self, doc: &ForecastDocument, digest: [u8; 16]) {
        if let Sequenced::Applied { .. } = self.state.apply_digested(doc, digest) {
            self.changed = true;
            if !self.revised.contains(&doc.customer_id) {
                self.revised.insert(doc.customer_id.clone());
            }
        }
    }

    /// Takes a licence decision, unless one decided later counts.
    pub fn take_decision(&mut self, decision: LicenceDecision) {
        if let Decided::Taken { .. } = self.state.take_decision(decision) {
            self.changed = true;
        }
    }

    /// Makes `parties` the restricted-party list in force.
    pub fn take_list(&mut self, version: &str, parties: RestrictedParties) {
        if !self.state.screen_against(version, parties).is_empty() {
            self.changed = true;
        }
    }

    /// Takes a record of the supply plan's topic (`None`: a tombstone,
    /// which removes the entry of `key`, `SKU/QUARTER`).
    pub fn take_supply(&mut self, key: &str, entry: Option<SupplyEntry>) {
        match entry {
            Some(e) => self.supply.set(e),
            None => {
                self.supply.remove_key(key);
            }
        }
        self.changed = true;
    }

    /// Notes a commit found on the topic: it is in force until one that
    /// differs is published.
    pub fn published(&mut self, commit: Commit) {
        self.published.insert(commit.customer_id.clone(), commit);
    }

    /// Whether an input changed since the last [`Book::due`].
    pub fn is_changed(&self) -> bool {
        self.changed
    }

    /// The allocation of the inputs held.
    pub fn allocated(&self) -> Allocated {
        allocation(&self.policy, &self.state, &self.supply)
    }

    /// The commits that differ from those in force (in their method or
    /// their lines; not in when they were made), made `at`, sorted by
    /// customer; they are in force from now. A customer that had a commit
    /// and has no live demand left gets one with no lines.
    ///
    /// The supply is allocated again whole; a commit is built (its lines
    /// naming their revisions) only for a customer whose allocation
    /// differs from its commit in force, or that has a revision applied
    /// since, or whose commit could not be published.
    pub fn due(&mut self, at: Timestamp) -> Vec<Commit> {
        self.changed = false;
        let allocated = self.allocated();
        let method = self.policy.method;
        let mut by_customer: BTreeMap<&str, Vec<&Allocation>> = BTreeMap::new();
        for a in &allocated.allocations {
            by_customer.entry(&a.customer_id).or_default().push(a);
        }
        for customer in self.published.keys().chain(&self.failed) {
            by_customer.entry(customer).or_default();
        }
        let mut due = Vec::new();
        for (customer, allocations) in by_customer {
            let in_force = self.published.get(customer);
            let unchanged = !self.revised.contains(customer)
                && !self.failed.contains(customer)
                && in_force
                    .is_some_and(|p| p.method == method && same_figures(&p.lines, &allocations));
            if unchanged {
                continue;
            }
            // A customer without allocations (no live demand left) gets a
            // commit with no lines.
            let commit = commit_of(&self.state, customer, &allocated.allocations, method, at);
            let same =
                in_force.is_some_and(|p| p.method == commit.method && p.lines == commit.lines);
            if !same || self.failed.contains(customer) {
                due.push(commit);
            }
        }
        self.failed.clear();
        self.revised.clear();
        for c in &due {
            self.published.insert(c.customer_id.clone(), c.clone());
        }
        due
    }

    /// Whether `commit` (one read back) has other lines or another method
    /// than the one in force for its customer.
    pub fn differs(&self, commit: &Commit) -> bool {
        self.published
            .get(&commit.customer_id)
            .is_none_or(|p| p.method != commit.method || p.lines != commit.lines)
    }

    /// Notes that `customer`'s commit must be published again (it could
    /// not be, or something overwrote it): the next [`Book::due`] gives
    /// it.
    pub fn unpublished(&mut self, customer: &str) {
        self.failed.insert(customer.to_owned());
        self.changed = true;
    }

    /// The demand held.
    pub fn state(&self) -> &DemandState {
        &self.state
    }
}
