//! Licence decisions: what compliance officers decided on an export
//! licence application for one customer, published with `forecastctl
//! licences load FILE` to the compacted topic `licences.decisions`, keyed
//! by application number.
//!
//! A decision applies to the live documents of its customer that reference
//! its application (`export_license.application_number`), whatever status
//! the document itself claims; demand is then counted under the decision's
//! status ([`ExposureStatus::under`]). Another customer's document that
//! cites the application borrows nothing: its units count as
//! `FOREIGN_LICENCE` (lost demand), and never against the licence's
//! approved quantity. Of two decisions on one application the
//! one decided later counts, whichever arrived first, so the result does
//! not depend on the order decisions and documents arrive in.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::demand::Units;
use crate::document::{LicenseStatus, symbols};
use crate::time::{Date, Quarter, Timestamp};

symbols!(
    /// A decision on a licence application.
    DecisionStatus {
        Approved = "APPROVED",
        Denied = "DENIED",
        Pending = "PENDING",
        Revoked = "REVOKED",
    }
);

symbols!(
    /// The licence status a document's units are counted under.
    ExposureStatus {
        /// Approved: the units can ship.
        Approved = "APPROVED",
        /// Applied for, not decided: the units are at risk.
        Pending = "PENDING",
        /// No application (planning lines only: firm lines need one).
        NotFiled = "NOT_FILED",
        /// Denied after the document was accepted.
        Denied = "DENIED",
        /// Approved once, then revoked.
        Revoked = "REVOKED",
        /// The document cites an application decided for another customer:
        /// nothing of that licence is its to ship.
        ForeignLicence = "FOREIGN_LICENCE",
        /// An end user is on the newest restricted-party list: nothing
        /// ships, whatever the licence, until a list releases it.
        ScreeningHold = "SCREENING_HOLD",
    }
);

impl ExposureStatus {
    /// The status `customer`'s document's units count under: its
    /// application's decision when there is one and it is for `customer`,
    /// `FOREIGN_LICENCE` when it is for another customer, else what the
    /// document says.
    pub fn under(
        claimed: LicenseStatus,
        decision: Option<&LicenceDecision>,
        customer: &str,
    ) -> Self {
        match decision {
            Some(d) if d.customer_id != customer => Self::ForeignLicence,
            Some(d) => Self::decided(d.status),
            None => Self::claimed(claimed),
        }
    }

    /// The status a document's units count under with no decision on its
    /// application: what it claims.
    pub fn claimed(claimed: LicenseStatus) -> Self {
        match claimed {
            LicenseStatus::Approved => Self::Approved,
            LicenseStatus::Pending => Self::Pending,
            LicenseStatus::NotFiled => Self::NotFiled,
            // The validator rejects a document that says DENIED; one
            // that got here anyway counts as denied.
            LicenseStatus::Denied => Self::Denied,
        }
    }

    /// The status a decision puts its documents' units under, whatever
    /// they claim.
    pub fn decided(decision: DecisionStatus) -> Self {
        match decision {
            DecisionStatus::Approved => Self::Approved,
            DecisionStatus::Denied => Self::Denied,
            DecisionStatus::Pending => Self::Pending,
            DecisionStatus::Revoked => Self::Revoked,
        }
    }

    /// Whether the units have no buyer unless the decision changes.
    pub fn is_lost(self) -> bool {
        matches!(self, Self::Denied | Self::Revoked | Self::ForeignLicence)
    }
}

/// A decision on one customer's licence application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenceDecision {
    pub application_number: String,
    /// The customer the licence is for: only its documents count under it.
    pub customer_id: String,
    pub status: DecisionStatus,
    pub decided_at: Timestamp,
    /// Units the licence allows, per SKU (empty or null: none stated).
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub approved_quantity: BTreeMap<String, i64>,
    /// The last day the licence is valid, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_on: Option<Date>,
}

/// `null` reads as absent, as the other optional fields do.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, i64>, D::Error> {
    Ok(Option::<BTreeMap<String, i64>>::deserialize(d)?.unwrap_or_default())
}

impl LicenceDecision {
    /// What serde cannot check: an application number, and quantities
    /// that are whole units.
    pub fn check(&self) -> Result<(), String> {
        if self.application_number.trim().is_empty() {
            return Err("an empty application_number".into());
        }
        if self.customer_id.trim().is_empty() {
            return Err(
                "no customer_id: a decision names the customer its licence is for (a licence-decision v1 record names none; load it again with customer_id)".into(),
            );
        }
        if let Some((sku, q)) = self.approved_quantity.iter().find(|(_, q)| **q < 0) {
            return Err(format!("approved_quantity of {sku} is {q}, below 0"));
        }
        if let Some(sku) = self.approved_quantity.keys().find(|s| s.trim().is_empty()) {
            return Err(format!("approved_quantity names an empty SKU {sku:?}"));
        }
        Ok(())
    }

    /// Its key on the compacted topic `licences.decisions`:
    /// `application_number/decided_at` (milliseconds since the epoch).
    /// Compaction keeps the last record written of each key, so it keeps,
    /// of each application, every instant decided at, and of those the
    /// decision decided last: what [`LicenceRegister`] takes from the whole
    /// topic. Keyed by application alone it kept the decision written last,
    /// and a decision loaded late but dated early won once compacted.
    pub fn key(&self) -> String {
        format!("{}/{}", self.application_number, self.decided_at.millis())
    }

    /// Whether this decision counts instead of `other`, an earlier one of
    /// the same application: it was decided at the same time or later (of
    /// two at the same time, the one taken last).
    pub fn supersedes(&self, other: &LicenceDecision) -> bool {
        self.decided_at.millis() >= other.decided_at.millis()
    }
}

/// Units of one customer x SKU x quarter under one licence status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LicenceRow {
    pub customer_id: String,
    pub sku: String,
    pub quarter: Quarter,
    pub licence_status: ExposureStatus,
    pub firm_units: i64,
    pub planning_units: i64,
    pub total_units: i64,
}

/// A live document whose licence was denied or revoked, with its units:
/// the firm demand that has no buyer unless the decision changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostDocument {
    pub document_id: String,
    pub customer_id: String,
    pub revision: i32,
    pub application_number: String,
    pub licence_status: ExposureStatus,
    pub decided_at: Timestamp,
    pub firm_units: i64,
    pub planning_units: i64,
}

/// An approved licence whose quantity for a SKU is below the demand that
/// references it (a warning, not a rejection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverApproved {
    pub application_number: String,
    pub sku: String,
    pub approved_units: i64,
    /// Units (firm and planning, every quarter) of the live documents
    /// that reference the application.
    pub demanded_units: i64,
}

/// The approved decisions among `decisions` whose quantity for a SKU is
/// below `demanded(decision, sku)`, the units of the decision's customer's
/// live documents that reference the application (another customer's
/// never count against it); sorted by application and SKU. The
/// aggregator's state and the planner's view both answer with this.
pub fn over_approved<'a>(
    decisions: impl IntoIterator<Item = &'a LicenceDecision>,
    demanded: impl Fn(&LicenceDecision, &str) -> i64,
) -> Vec<OverApproved> {
    let mut over = Vec::new();
    for decision in decisions {
        if decision.status != DecisionStatus::Approved {
            continue;
        }
        for (sku, approved) in &decision.approved_quantity {
            let units = demanded(decision, sku);
            if units > *approved {
                over.push(OverApproved {
                    application_number: decision.application_number.clone(),
                    sku: sku.clone(),
                    approved_units: *approved,
                    demanded_units: units,
                });
            }
        }
    }
    over.sort_by(|a, b| (&a.application_number, &a.sku).cmp(&(&b.application_number, &b.sku)));
    over
}

/// The decision that counts per application: of two, the one decided
/// later ([`LicenceDecision::supersedes`]).
#[derive(Debug, Clone, Default)]
pub struct LicenceRegister {
    decisions: HashMap<String, LicenceDecision>,
}

impl LicenceRegister {
    /// Takes `decision` unless one decided later counts; returns whether
    /// it counts now.
    pub fn take(&mut self, decision: LicenceDecision) -> bool {
        if let Some(taken) = self.decisions.get(&decision.application_number)
            && !decision.supersedes(taken)
        {
            return false;
        }
        self.decisions
            .insert(decision.application_number.clone(), decision);
        true
    }

    /// The decision that counts for an application.
    pub fn get(&self, application: &str) -> Option<&LicenceDecision> {
        self.decisions.get(application)
    }

    /// Every decision that counts, in no order.
    pub fn iter(&self) -> impl Iterator<Item = &LicenceDecision> + '_ {
        self.decisions.values()
    }

    /// Number of applications decided.
    pub fn len(&self) -> usize {
        self.decisions.len()
    }

    /// Whether no decision was taken.
    pub fn is_empty(&self) -> bool {
        self.decisions.is_empty()
    }
}

/// Units of one SKU x quarter under one licence status, in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenceCell {
    pub sku: String,
    pub quarter: Quarter,
    pub licence_status: ExposureStatus,
    pub units: Units,
}

/// Units of the live documents that reference an application, for one
/// SKU (every quarter, firm and planning): what the licence's approved
/// quantity is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub application_number: String,
    pub sku: String,
    pub units: i64,
}

/// Most lost documents one snapshot lists; the others are counted in
/// [`LicenceSnapshot::lost_not_listed`] (their units stay in the rows), so
/// that one revocation of thousands of documents cannot make a record the
/// producer refuses.
pub const LOST_LISTED: usize = 2000;

/// One customer's demand by licence status within one partition of the
/// validated topic: the value of the compacted topic `demand.by-licence`,
/// keyed `customer_id/partition` like `demand.by-customer`. Absolute: the
/// latest value of a key is the truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenceSnapshot {
    pub customer_id: String,
    pub as_of: Timestamp,
    /// Sorted by SKU, quarter and status; cells with no units left out.
    pub rows: Vec<LicenceCell>,
    /// Documents with firm units whose licence was denied or revoked,
    /// sorted by document id, at most [`LOST_LISTED`].
    pub lost: Vec<LostDocument>,
    /// Lost documents beyond the listed ones.
    pub lost_not_listed: i64,
    /// Sorted by application and SKU.
    pub references: Vec<Reference>,
}

/// The latest licence snapshot of every key of `demand.by-licence`, and
/// the decisions of `licences.decisions`: demand by licence status summed
/// over partitions, what the planner and `demand --by-licence` show.
#[derive(Debug, Clone, Default)]
pub struct LicenceView {
    snapshots: HashMap<Vec<u8>, LicenceSnapshot>,
    register: LicenceRegister,
}

impl LicenceView {
    /// Sets the latest snapshot of a key (`None`: a tombstone); returns
    /// whether the view changed.
    pub fn set(&mut self, key: &[u8], snapshot: Option<LicenceSnapshot>) -> bool {
        match snapshot {
            None => self.snapshots.remove(key).is_some(),
            Some(s) if self.snapshots.get(key) == Some(&s) => false,
            Some(s) => {
                self.snapshots.insert(key.to_vec(), s);
                true
            }
        }
    }

    /// Takes a decision of `licences.decisions`; returns whether it counts.
    pub fn take_decision(&mut self, decision: LicenceDecision) -> bool {
        self.register.take(decision)
    }

    /// The decisions that count.
    pub fn decisions(&self) -> &LicenceRegister {
        &self.register
    }

    fn of<'a>(&'a self, customer: Option<&'a str>) -> impl Iterator<Item = &'a LicenceSnapshot> {
        self.snapshots
            .values()
            .filter(move |s| customer.is_none_or(|c| c == s.customer_id))
    }

    /// Demand by licence status, optionally of one customer: rows with
    /// units, sorted by customer, SKU, quarter and status.
    pub fn rows(&self, customer: Option<&str>) -> Vec<LicenceRow> {
        let mut cells: BTreeMap<(&str, &str, Quarter, ExposureStatus), Units> = BTreeMap::new();
        for s in self.of(customer) {
            for r in &s.rows {
                let cell = cells
                    .entry((&s.customer_id, &r.sku, r.quarter, r.licence_status))
                    .or_default();
                cell.firm_units = cell.firm_units.saturating_add(r.units.firm_units);
                cell.planning_units = cell.planning_units.saturating_add(r.units.planning_units);
            }
        }
        cells
            .into_iter()
            .filter(|(_, u)| *u != Units::default())
            .map(|((customer, sku, quarter, status), u)| LicenceRow {
                customer_id: customer.to_owned(),
                sku: sku.to_owned(),
                quarter,
                licence_status: status,
                firm_units: u.firm_units,
                planning_units: u.planning_units,
                total_units: u.total(),
            })
            .collect()
    }

    /// The lost documents listed, sorted by customer and document, and how
    /// many more the snapshots counted without listing them.
    pub fn lost(&self, customer: Option<&str>) -> (Vec<LostDocument>, i64) {
        let mut lost: Vec<LostDocument> = Vec::new();
        let mut not_listed = 0i64;
        for s in self.of(customer) {
            lost.extend(s.lost.iter().cloned());
            not_listed = not_listed.saturating_add(s.lost_not_listed);
        }
        lost.sort_by(|a, b| {
            (&a.customer_id, &a.document_id).cmp(&(&b.customer_id, &b.document_id))
        });
        (lost, not_listed)
    }

    /// Approved quantities their customer's demand exceeds.
    pub fn over_approved(&self) -> Vec<OverApproved> {
        let mut demanded: HashMap<(&str, &str, &str), i64> = HashMap::new();
        for s in self.snapshots.values() {
            for r in &s.references {
                let units = demanded
                    .entry((&s.customer_id, &r.application_number, &r.sku))
                    .or_default();
                *units = units.saturating_add(r.units);
            }
        }
        over_approved(self.register.iter(), |d, sku| {
            let key = (d.customer_id.as_str(), d.application_number.as_str(), sku);
            demanded.get(&key).copied().unwrap_or(0)
        })
    }
}

/// A licence file that cannot be read: its name, the line, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}, line {line}: {problem}")]
pub struct LicenceFileError {
    pub file: String,
    pub line: usize,
    pub problem: String,
}

/// The decisions of a licence file: JSON Lines, one decision a line
/// (blank lines and lines starting with `#` are skipped), in file order.
/// `file` is what errors call it.
pub fn read_decisions(text: &str, file: &str) -> Result<Vec<LicenceDecision>, LicenceFileError> {
    crate::json::settings_lines::<LicenceDecision>(text)
        .map(|(line, decision)| {
            let error = |problem: String| LicenceFileError {
                file: file.to_owned(),
                line,
                problem,
            };
            let decision = decision.map_err(|e| error(format!("not a licence decision: {e}")))?;
            decision.check().map_err(error)?;
            Ok(decision)
        })
        .collect()
}

#[cfg(test)]
mod tests;
