//! The supplier's reply: a short supply allocated among the customers, per
//! SKU x quarter, under an allocation policy (docs/planner.md,
//! "Allocation"). A pure function of the demand by licence status, the
//! supply and the licence decisions: `forecastctl allocate` and the live
//! commits call the same [`allocate`].
//!
//! - Only eligible demand gets anything: units under a licence status the
//!   policy names (default `APPROVED`); never a document on
//!   `SCREENING_HOLD`.
//! - Never more than the supply of a SKU x quarter (with what earlier
//!   quarters of the SKU left unallocated, when the policy carries it
//!   over), nor, for units under an approved licence that states a
//!   quantity for the SKU, more than what that quantity has left after
//!   earlier quarters.
//! - Firm demand first, then planning (unless the policy says otherwise);
//!   each customer's minimum first, then the method: `pro_rata` (shares by
//!   eligible demand, capped shares' surplus shared again, the last units
//!   by largest remainder, ties by customer id) or `priority` (in the
//!   policy's order, then the others by customer id).
//!
//! The result depends on none of the inputs' order.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::demand::Units;
use crate::document::symbols;
use crate::licence::{DecisionStatus, ExposureStatus, LicenceDecision};
use crate::time::Quarter;

symbols!(
    /// How supply is shared among customers.
    Method {
        /// Shares by eligible demand.
        ProRata = "pro_rata",
        /// In the policy's order.
        Priority = "priority",
    }
);

/// A customer's bounds, per SKU x quarter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    /// Units it gets first, as far as its eligible demand and its licence
    /// allow.
    #[serde(default)]
    pub min: Option<i64>,
    /// Units it never gets more than.
    #[serde(default)]
    pub max: Option<i64>,
}

/// An allocation policy: the TOML of `--allocation-policy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocationPolicy {
    pub method: Method,
    /// `priority`: the customers in order (those not listed come after
    /// them, by customer id).
    #[serde(default)]
    pub priority: Vec<String>,
    /// The licence statuses whose units may get supply.
    #[serde(default = "default_eligible")]
    pub eligible: Vec<ExposureStatus>,
    /// Firm units before planning units.
    #[serde(default = "yes")]
    pub firm_first: bool,
    /// Unallocated supply of a SKU carries over to its later quarters.
    #[serde(default = "yes")]
    pub carry_over: bool,
    /// Per customer: a minimum and a maximum per SKU x quarter.
    #[serde(default)]
    pub customers: BTreeMap<String, Bounds>,
}

fn default_eligible() -> Vec<ExposureStatus> {
    vec![ExposureStatus::Approved]
}

fn yes() -> bool {
    true
}

impl Default for AllocationPolicy {
    /// `pro_rata` of `APPROVED` demand, firm first, carried over.
    fn default() -> Self {
        Self {
            method: Method::ProRata,
            priority: Vec::new(),
            eligible: default_eligible(),
            firm_first: true,
            carry_over: true,
            customers: BTreeMap::new(),
        }
    }
}

impl AllocationPolicy {
    /// What is wrong with the policy, if anything.
    pub fn check(&self) -> Result<(), String> {
        if self.method == Method::Priority && self.priority.is_empty() {
            return Err("method \"priority\" needs `priority`, the customers in order".into());
        }
        let mut seen = BTreeSet::new();
        if let Some(twice) = self.priority.iter().find(|c| !seen.insert(c.as_str())) {
            return Err(format!("`priority` lists {twice} twice"));
        }
        if self.eligible.contains(&ExposureStatus::ScreeningHold) {
            return Err(
                "`eligible` holds SCREENING_HOLD: a document held by the restricted-party list gets nothing"
                    .into(),
            );
        }
        for (customer, b) in &self.customers {
            if b.min.is_some_and(|m| m < 0) || b.max.is_some_and(|m| m < 0) {
                return Err(format!(
                    "customers.{customer}: min and max must not be negative"
                ));
            }
            if let (Some(min), Some(max)) = (b.min, b.max)
                && min > max
            {
                return Err(format!(
                    "customers.{customer}: min {min} is above max {max}"
                ));
            }
        }
        Ok(())
    }

    /// The order `priority` serves `customers` in.
    fn order<'a>(&self, customers: &[&'a str]) -> Vec<&'a str> {
        let rank = |c: &str| {
            self.priority
                .iter()
                .position(|p| p == c)
                .unwrap_or(usize::MAX)
        };
        let mut v = customers.to_vec();
        v.sort_by(|a, b| (rank(a), *a).cmp(&(rank(b), *b)));
        v
    }
}

/// Units of one customer's live documents in one SKU x quarter under one
/// licence status and application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemandLine {
    pub customer_id: String,
    pub sku: String,
    pub quarter: Quarter,
    pub status: ExposureStatus,
    /// The application the documents cite (`None`: none).
    pub application: Option<String>,
    pub units: Units,
}

symbols!(
    /// Why a customer got less than it asked for.
    ShortfallReason {
        /// Eligible, within every cap: the supply did not cover it.
        SupplyShort = "SUPPLY_SHORT",
        /// Its licence is applied for, not decided.
        LicencePending = "LICENCE_PENDING",
        /// No licence applied for.
        LicenceNotFiled = "LICENCE_NOT_FILED",
        /// Its licence was denied or revoked.
        LicenceDenied = "LICENCE_DENIED",
        /// It cites another customer's licence.
        ForeignLicence = "FOREIGN_LICENCE",
        /// Beyond what its approved licence's quantity had left.
        LicenceCap = "LICENCE_CAP",
        /// Beyond the policy's maximum for the customer.
        CustomerMax = "CUSTOMER_MAX",
        /// An end user is on the restricted-party list in force.
        ScreeningHold = "SCREENING_HOLD",
        /// Under a status the policy does not make eligible.
        NotEligible = "NOT_ELIGIBLE",
    }
);

impl ShortfallReason {
    /// Why units under `status`, which the policy does not make eligible,
    /// get nothing.
    fn of(status: ExposureStatus) -> Self {
        match status {
            ExposureStatus::Pending => Self::LicencePending,
            ExposureStatus::NotFiled => Self::LicenceNotFiled,
            ExposureStatus::Denied | ExposureStatus::Revoked => Self::LicenceDenied,
            ExposureStatus::ForeignLicence => Self::ForeignLicence,
            ExposureStatus::ScreeningHold => Self::ScreeningHold,
            ExposureStatus::Approved => Self::NotEligible,
        }
    }
}

/// Units not allocated, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortfall {
    pub reason: ShortfallReason,
    pub units: i64,
}

/// One customer's allocation in one SKU x quarter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Allocation {
    pub customer_id: String,
    pub sku: String,
    pub quarter: Quarter,
    /// Every unit of its live documents (firm and planning, any status).
    pub requested_units: i64,
    pub allocated_units: i64,
    /// `requested_units - allocated_units`, by reason; none of zero units.
    pub shortfalls: Vec<Shortfall>,
}

/// What [`allocate`] gives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocated {
    /// Sorted by customer, SKU, quarter.
    pub allocations: Vec<Allocation>,
    /// Units allocated under each approved licence that caps them:
    /// (customer, application, SKU) -> units.
    pub licence_used: BTreeMap<(String, String, String), i64>,
    /// Supply of each SKU x quarter (with what was carried over into it)
    /// left unallocated.
    pub unallocated: BTreeMap<(String, Quarter), i64>,
}

/// One customer's eligible units in a cell, by application.
#[derive(Debug, Default, Clone)]
struct Eligible {
    /// (application or none) -> units.
    by_application: BTreeMap<Option<String>, Units>,
}

impl Eligible {
    fn units(&self) -> Units {
        self.by_application
            .values()
            .fold(Units::default(), |a, u| Units {
                firm_units: a.firm_units + u.firm_units,
                planning_units: a.planning_units + u.planning_units,
            })
    }
}

/// A customer's demand in one SKU x quarter.
#[derive(Debug, Default, Clone)]
struct Cell {
    requested: i64,
    ineligible: BTreeMap<ShortfallReason, i64>,
    eligible: Eligible,
}

/// Allocates `supply` ((SKU, quarter) -> units available) among `demand`
/// under `policy`, with the approved quantities of `decisions`.
pub fn allocate(
    policy: &AllocationPolicy,
    demand: &[DemandLine],
    supply: &BTreeMap<(String, Quarter), i64>,
    decisions: &[LicenceDecision],
) -> Allocated {
    // (sku, quarter) -> customer -> cell
    let mut cells: BTreeMap<(String, Quarter), BTreeMap<String, Cell>> = BTreeMap::new();
    for line in demand {
        let cell = cells
            .entry((line.sku.clone(), line.quarter))
            .or_default()
            .entry(line.customer_id.clone())
            .or_default();
        let total = line.units.total();
        cell.requested += total;
        if policy.eligible.contains(&line.status) && line.status != ExposureStatus::ScreeningHold {
            let u = cell
                .eligible
                .by_application
                .entry(line.application.clone())
                .or_default();
            u.firm_units += line.units.firm_units;
            u.planning_units += line.units.planning_units;
        } else {
            *cell
                .ineligible
                .entry(ShortfallReason::of(line.status))
                .or_default() += total;
        }
    }
    // What each approved licence that states a quantity has left, per SKU:
    // (customer, application, sku) -> units.
    let mut left: BTreeMap<(String, String, String), i64> = BTreeMap::new();
    for d in decisions {
        if d.status == DecisionStatus::Approved {
            for (sku, units) in &d.approved_quantity {
                left.insert(
                    (
                        d.customer_id.clone(),
                        d.application_number.clone(),
                        sku.clone(),
                    ),
                    *units,
                );
            }
        }
    }
    let mut out = Allocated::default();
    let skus: BTreeSet<&String> = cells.keys().chain(supply.keys()).map(|(s, _)| s).collect();
    for sku in skus {
        let quarters: BTreeSet<Quarter> = cells
            .keys()
            .chain(supply.keys())
            .filter(|(s, _)| s == sku)
            .map(|(_, q)| *q)
            .collect();
        let mut carried = 0i64;
        for quarter in quarters {
            let key = (sku.clone(), quarter);
            let available = supply.get(&key).copied().unwrap_or(0).max(0) + carried;
            let empty = BTreeMap::new();
            let customers = cells.get(&key).unwrap_or(&empty);
            let given = allocate_cell(
                policy,
                (sku, quarter),
                customers,
                available,
                &mut left,
                &mut out,
            );
            let rest = available - given;
            out.unallocated.insert(key, rest);
            carried = if policy.carry_over { rest } else { 0 };
        }
    }
    out.allocations.sort_by(|a, b| {
        (&a.customer_id, &a.sku, a.quarter).cmp(&(&b.customer_id, &b.sku, b.quarter))
    });
    out
}

/// One customer's eligible units of a cell and its caps, as allocation
/// proceeds.
struct Claim<'a> {
    customer: &'a str,
    cell: &'a Cell,
    /// Eligible units not given yet: (firm, planning).
    firm: i64,
    planning: i64,
    /// Units given so far.
    given: i64,
    /// What the policy still lets it get.
    max_left: i64,
}

/// Allocates one SKU x quarter; returns the units given.
fn allocate_cell(
    policy: &AllocationPolicy,
    (sku, quarter): (&str, Quarter),
    customers: &BTreeMap<String, Cell>,
    available: i64,
    left: &mut BTreeMap<(String, String, String), i64>,
    out: &mut Allocated,
) -> i64 {
    let mut claims: Vec<Claim<'_>> = customers
        .iter()
        .map(|(customer, cell)| {
            let u = cell.eligible.units();
            Claim {
                customer,
                cell,
                firm: u.firm_units,
                planning: u.planning_units,
                given: 0,
                max_left: policy
                    .customers
                    .get(customer)
                    .and_then(|b| b.max)
                    .unwrap_or(i64::MAX),
            }
        })
        .collect();
    // The licence caps as the cell starts (for the shortfalls).
    let licence_caps: Vec<i64> = claims
        .iter()
        .map(|c| licence_cap(c.customer, sku, &c.cell.eligible, left))
        .collect();
    let mut supply = available;
    // Tiers: the minimums, then firm, then planning (or firm and planning
    // together). A claim's cap in a tier: its units of the tier, its
    // licence's quantity left, the policy's maximum left.
    #[derive(Clone, Copy, PartialEq)]
    enum Tier {
        Minimum,
        Firm,
        Planning,
        All,
    }
    let tiers: &[Tier] = if policy.firm_first {
        &[Tier::Minimum, Tier::Firm, Tier::Planning]
    } else {
        &[Tier::Minimum, Tier::All]
    };
    for &tier in tiers {
        let wants: Vec<(i64, i64)> = claims
            .iter()
            .map(|c| {
                let licence = licence_cap(c.customer, sku, &c.cell.eligible, left);
                let units = match tier {
                    Tier::Minimum => policy
                        .customers
                        .get(c.customer)
                        .and_then(|b| b.min)
                        .unwrap_or(0)
                        .min(c.firm + c.planning),
                    Tier::Firm => c.firm,
                    Tier::Planning => c.planning,
                    Tier::All => c.firm + c.planning,
                };
                let cap = units.min(licence).min(c.max_left).max(0);
                // Weighed by eligible demand of the tier.
                (units, cap)
            })
            .collect();
        let names: Vec<&str> = claims.iter().map(|c| c.customer).collect();
        let shares = share(policy, &names, supply, &wants);
        for (c, x) in claims.iter_mut().zip(shares) {
            if x == 0 {
                continue;
            }
            supply -= x;
            c.given += x;
            c.max_left = c.max_left.saturating_sub(x);
            // Firm units first, whatever the tier.
            let from_firm = x.min(c.firm);
            c.firm -= from_firm;
            c.planning -= x - from_firm;
            consume(
                c.customer,
                sku,
                &c.cell.eligible,
                x,
                left,
                &mut out.licence_used,
            );
        }
    }
    let mut given = 0;
    for (c, licence) in claims.iter().zip(licence_caps) {
        given += c.given;
        let eligible = c.cell.eligible.units().total();
        let within_licence = eligible.min(licence);
        let max = policy
            .customers
            .get(c.customer)
            .and_then(|b| b.max)
            .unwrap_or(i64::MAX);
        let within_max = within_licence.min(max);
        let mut shortfalls: Vec<Shortfall> = c
            .cell
            .ineligible
            .iter()
            .map(|(reason, units)| Shortfall {
                reason: *reason,
                units: *units,
            })
            .collect();
        shortfalls.extend(
            [
                (ShortfallReason::LicenceCap, eligible - within_licence),
                (ShortfallReason::CustomerMax, within_licence - within_max),
                (ShortfallReason::SupplyShort, within_max - c.given),
            ]
            .map(|(reason, units)| Shortfall { reason, units }),
        );
        shortfalls.retain(|s| s.units != 0);
        shortfalls.sort_by_key(|s| s.reason.as_str());
        out.allocations.push(Allocation {
            customer_id: c.customer.to_owned(),
            sku: sku.to_owned(),
            quarter,
            requested_units: c.cell.requested,
            allocated_units: c.given,
            shortfalls,
        });
    }
    given
}

/// The units of `eligible` its licences let `customer` get now: units
/// under an application whose approved licence states a quantity for
/// `sku` count up to what that quantity has left; the others in full.
fn licence_cap(
    customer: &str,
    sku: &str,
    eligible: &Eligible,
    left: &BTreeMap<(String, String, String), i64>,
) -> i64 {
    eligible
        .by_application
        .iter()
        .map(|(application, units)| {
            let units = units.total();
            match application
                .as_ref()
                .and_then(|a| left.get(&(customer.to_owned(), a.clone(), sku.to_owned())))
            {
                Some(l) => units.min((*l).max(0)),
                None => units,
            }
        })
        .sum()
}

/// Takes `x` units given to `customer` off its licences' quantities left,
/// application by application (those without a quantity first: they cost
/// no licence).
fn consume(
    customer: &str,
    sku: &str,
    eligible: &Eligible,
    mut x: i64,
    left: &mut BTreeMap<(String, String, String), i64>,
    used: &mut BTreeMap<(String, String, String), i64>,
) {
    let key = |a: &String| (customer.to_owned(), a.clone(), sku.to_owned());
    let (uncapped, capped): (Vec<_>, Vec<_>) = eligible
        .by_application
        .iter()
        .partition(|(a, _)| a.as_ref().is_none_or(|a| !left.contains_key(&key(a))));
    let uncapped: i64 = uncapped.iter().map(|(_, u)| u.total()).sum();
    x -= x.min(uncapped);
    for (application, units) in capped {
        if x == 0 {
            return;
        }
        let Some(application) = application else {
            continue;
        };
        let k = key(application);
        let Some(l) = left.get_mut(&k) else { continue };
        let take = x.min(units.total()).min(*l);
        *l -= take;
        *used.entry(k).or_default() += take;
        x -= take;
    }
}

/// Splits `supply` among claims `wants` (weight, cap), in the order of
/// `customers`, under the policy's method. Never gives a claim more than
/// its cap, nor more than `supply` in all.
fn share(
    policy: &AllocationPolicy,
    customers: &[&str],
    supply: i64,
    wants: &[(i64, i64)],
) -> Vec<i64> {
    let mut given = vec![0i64; wants.len()];
    let mut supply = supply.max(0);
    match policy.method {
        Method::Priority => {
            for c in policy.order(customers) {
                let Some(i) = customers.iter().position(|x| *x == c) else {
                    continue;
                };
                let x = wants[i].1.min(supply);
                given[i] = x;
                supply -= x;
            }
        }
        Method::ProRata => {
            let mut open: Vec<usize> = (0..wants.len())
                .filter(|&i| wants[i].0 > 0 && wants[i].1 > 0)
                .collect();
            // Water-filling: the claims whose share reaches their cap get
            // the cap, and the rest is shared again among the others.
            while !open.is_empty() && supply > 0 {
                let weights: i128 = open.iter().map(|&i| i128::from(wants[i].0)).sum();
                let full: Vec<usize> = open
                    .iter()
                    .copied()
                    .filter(|&i| {
                        i128::from(supply) * i128::from(wants[i].0)
                            >= i128::from(wants[i].1) * weights
                    })
                    .collect();
                if !full.is_empty() {
                    for &i in &full {
                        given[i] = wants[i].1;
                        supply -= wants[i].1;
                    }
                    open.retain(|i| !full.contains(i));
                    continue;
                }
                // Nobody reaches its cap: floors, then the last units by
                // largest remainder, ties by customer id.
                let mut remainders = Vec::with_capacity(open.len());
                let mut spent = 0i64;
                for &i in &open {
                    let exact = i128::from(supply) * i128::from(wants[i].0);
                    let floor = i64::try_from(exact / weights).unwrap_or(0);
                    given[i] = floor;
                    spent += floor;
                    remainders.push((exact % weights, i));
                }
                remainders
                    .sort_by(|(ra, a), (rb, b)| rb.cmp(ra).then(customers[*a].cmp(customers[*b])));
                for (_, i) in remainders
                    .into_iter()
                    .take(usize::try_from(supply - spent).unwrap_or(0))
                {
                    given[i] += 1;
                }
                break;
            }
        }
    }
    given
}

#[cfg(test)]
mod tests;
