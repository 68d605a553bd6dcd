//! Demand by licence status: the decisions taken, the cells per customer x
//! SKU x quarter x status, and what each customer's live documents
//! reference of each licence.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ahash::HashMap;
use forecast_model::{ExposureStatus, LicenceDecision, LicenseStatus, Quarter, Units};

use super::Contribution;

/// Demand by licence status, and the decisions it follows.
#[derive(Debug, Clone, Default)]
pub(super) struct Licences {
    /// The decision that counts per application (the one decided last).
    pub(super) decisions: HashMap<Arc<str>, LicenceDecision>,
    /// The live documents that reference each application, per customer.
    pub(super) documents: HashMap<Arc<str>, Referencing>,
    /// Non-zero cells per customer: SKU x quarter x status.
    pub(super) cells: BTreeMap<Arc<str>, LicenceCells>,
    /// Per customer, the units (firm and planning, every quarter) of its
    /// live documents per application x SKU they reference; non-zero only.
    pub(super) references: BTreeMap<Arc<str>, References>,
    /// [`Licences::reference`]'s buffer.
    pub(super) scratch: Vec<(usize, usize, i64)>,
}

/// The ids of the live documents that reference one application, per
/// customer.
type Referencing = BTreeMap<Arc<str>, BTreeSet<Box<str>>>;

/// One customer's units per application, per SKU.
type References = BTreeMap<Arc<str>, BTreeMap<Arc<str>, i64>>;

/// One customer's units by SKU x quarter x licence status.
type LicenceCells = BTreeMap<(Arc<str>, Quarter, ExposureStatus), Units>;

impl Licences {
    /// Forgets that `customer`'s `document_id` references `application`.
    pub(super) fn unreference(
        &mut self,
        application: &Arc<str>,
        customer: &str,
        document_id: &str,
    ) {
        let Some(by_customer) = self.documents.get_mut(application) else {
            return;
        };
        if let Some(ids) = by_customer.get_mut(customer) {
            ids.remove(document_id);
            if ids.is_empty() {
                by_customer.remove(customer);
            }
        }
        if by_customer.is_empty() {
            self.documents.remove(application);
        }
    }

    /// The status `customer`'s document's units count under now.
    pub(super) fn status(
        &self,
        claimed: LicenseStatus,
        application: Option<&Arc<str>>,
        customer: &str,
    ) -> ExposureStatus {
        let decision = application.and_then(|a| self.decisions.get(a));
        ExposureStatus::under(claimed, decision, customer)
    }

    /// Adds `sign` times a document's contributions under `status`.
    pub(super) fn add(
        &mut self,
        customer: &Arc<str>,
        contributions: &[Contribution],
        status: ExposureStatus,
        sign: i64,
    ) {
        let cells = self.cells.entry(customer.clone()).or_default();
        for c in contributions {
            add_units(cells, (c.sku.clone(), c.quarter, status), c.units, sign);
        }
    }

    /// Swaps what a revision referenced (`out`: its application and
    /// units) for what the next one references (`into`), in what
    /// `customer`'s documents reference. Netted per application and SKU
    /// first: a `REPLACE` of twelve lines changes one or two entries, not
    /// twenty-four.
    pub(super) fn reference(
        &mut self,
        customer: &Arc<str>,
        out: Option<(&Arc<str>, &[Contribution])>,
        into: Option<(&Arc<str>, &[Contribution])>,
    ) {
        // (side, index of its first contribution of the SKU, units): no
        // borrow, so that the buffer is kept from one call to the next.
        let mut net = std::mem::take(&mut self.scratch);
        let sides = [out, into];
        let key = |(side, i): (usize, usize)| {
            sides[side].and_then(|(application, contributions)| {
                Some((application, &contributions.get(i)?.sku))
            })
        };
        for (side, sign) in [(0usize, -1i64), (1, 1)] {
            let Some((_, contributions)) = sides[side] else {
                continue;
            };
            for (i, c) in contributions.iter().enumerate() {
                let units = sign.saturating_mul(c.units.total());
                let here = key((side, i));
                match net.iter_mut().find(|(s, j, _)| key((*s, *j)) == here) {
                    Some(entry) => entry.2 = entry.2.saturating_add(units),
                    None => net.push((side, i, units)),
                }
            }
        }
        net.retain(|(_, _, units)| *units != 0);
        if net.is_empty() {
            self.scratch = net;
            return;
        }
        let references = match self.references.get_mut(&**customer) {
            Some(r) => r,
            None => self.references.entry(customer.clone()).or_default(),
        };
        for (application, sku, delta) in net
            .iter()
            .filter_map(|(s, i, d)| key((*s, *i)).map(|(a, sku)| (a, sku, *d)))
        {
            let by_sku = match references.get_mut(&**application) {
                Some(m) => m,
                None => references.entry(application.clone()).or_default(),
            };
            match by_sku.get_mut(&**sku) {
                Some(units) => {
                    *units = units.saturating_add(delta);
                    if *units == 0 {
                        by_sku.remove(&**sku);
                        if by_sku.is_empty() {
                            references.remove(&**application);
                        }
                    }
                }
                None => {
                    by_sku.insert(sku.clone(), delta);
                }
            }
        }
        net.clear();
        self.scratch = net;
    }
}

/// Adds `sign` times `units` to the cell `key`, dropping it when it
/// becomes zero.
pub(super) fn add_units<K: Ord + Clone>(
    cells: &mut BTreeMap<K, Units>,
    key: K,
    units: Units,
    sign: i64,
) {
    let cell = cells.entry(key.clone()).or_default();
    // Saturating: quantities are bounded by policy, but the state must not
    // panic on any input it is given.
    cell.firm_units = cell
        .firm_units
        .saturating_add(sign.saturating_mul(units.firm_units));
    cell.planning_units = cell
        .planning_units
        .saturating_add(sign.saturating_mul(units.planning_units));
    if *cell == Units::default() {
        cells.remove(&key);
    }
}

impl super::DemandState {
    /// Every live document's units per customer x SKU x quarter x licence
    /// status x application, summed: what allocation shares supply among
    /// (`forecast_model::allocation::allocate`). Sorted.
    pub fn demand_lines(&self) -> Vec<forecast_model::allocation::DemandLine> {
        type Key = (
            Arc<str>,
            Arc<str>,
            Quarter,
            ExposureStatus,
            Option<Arc<str>>,
        );
        // Hashed while summing (few keys, each met many times), sorted once.
        let mut sums: HashMap<Key, Units> = HashMap::default();
        for docs in self.documents.values() {
            for d in docs.values() {
                let status = self.exposure(d);
                for c in d.contributions.iter() {
                    let key = (
                        d.customer_id.clone(),
                        c.sku.clone(),
                        c.quarter,
                        status,
                        d.application.clone(),
                    );
                    let u = sums.entry(key).or_default();
                    u.firm_units = u.firm_units.saturating_add(c.units.firm_units);
                    u.planning_units = u.planning_units.saturating_add(c.units.planning_units);
                }
            }
        }
        let mut sums: Vec<(Key, Units)> = sums
            .into_iter()
            .filter(|(_, u)| *u != Units::default())
            .collect();
        sums.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        sums.into_iter()
            .map(|((customer, sku, quarter, status, application), units)| {
                forecast_model::allocation::DemandLine {
                    customer_id: customer.to_string(),
                    sku: sku.to_string(),
                    quarter,
                    status,
                    application: application.map(|a| a.to_string()),
                    units,
                }
            })
            .collect()
    }
}

impl super::DemandState {
    /// `customer_id`'s live documents with units in each SKU x quarter:
    /// (SKU, quarter) -> (document id, revision), sorted by document id.
    /// What a commit's lines name as the revisions they answer.
    pub fn revisions_of(
        &self,
        customer_id: &str,
    ) -> BTreeMap<(String, Quarter), Vec<(String, i32)>> {
        let mut out: BTreeMap<(String, Quarter), Vec<(String, i32)>> = BTreeMap::new();
        for (id, d) in self.documents.get(customer_id).into_iter().flatten() {
            for c in d.contributions.iter() {
                out.entry((c.sku.to_string(), c.quarter))
                    .or_default()
                    .push((id.to_string(), d.revision));
            }
        }
        for ids in out.values_mut() {
            ids.sort_unstable();
        }
        out
    }
}
