//! Re-screening: which live documents the newest restricted-party list
//! holds. A document is held while one of its end users matches the list
//! in force; its units then count as `SCREENING_HOLD` in demand by licence
//! status, whatever its licence, and its demand per customer (what the
//! customer asked for) is unchanged.
//!
//! A new list is looked up by its delta only: the names it lists that the
//! old one did not, and the reverse, each looked up in an index of the live
//! documents' end users. No document is compared with every entry.

use std::collections::BTreeSet;
use std::sync::Arc;

use ahash::HashMap;
use forecast_model::screening::{RestrictedParties, ScreeningList};
use forecast_model::text::normalize_party_name;
use forecast_model::{
    ExposureStatus, ForecastDocument, Outcome, RuleCode, Stage, Timestamp, Verdict, Violation,
};

use super::{Applied, DemandState};

/// The list in force and the index of the live documents' end users.
#[derive(Debug, Clone, Default)]
pub(super) struct Screening {
    parties: RestrictedParties,
    /// The version in force (`None`: no list published yet).
    version: Option<String>,
    /// Per end-user normal form, the live documents (customer, id) that
    /// name it.
    by_end_user: HashMap<Box<str>, BTreeSet<DocumentKey>>,
}

/// A live document: its customer and id.
type DocumentKey = (Arc<str>, Box<str>);

impl Screening {
    /// The normal forms of `doc`'s end users, sorted, unique, empty ones
    /// left out.
    pub(super) fn end_users(doc: &ForecastDocument) -> Box<[Box<str>]> {
        let mut names: Vec<Box<str>> = doc
            .end_use
            .end_users
            .iter()
            .map(|u| normalize_party_name(&u.name))
            .filter(|n| !n.is_empty())
            .map(String::into_boxed_str)
            .collect();
        names.sort_unstable();
        names.dedup();
        names.into_boxed_slice()
    }

    /// Whether the list in force names one of `end_users`.
    pub(super) fn holds(&self, end_users: &[Box<str>]) -> bool {
        end_users
            .iter()
            .any(|n| self.parties.matches_normal(n).is_some())
    }

    /// Swaps `customer`'s `document_id`'s end users in the index: `out`
    /// (the revision replaced) for `into`.
    pub(super) fn index(
        &mut self,
        customer: &Arc<str>,
        document_id: &str,
        out: &[Box<str>],
        into: &[Box<str>],
    ) {
        for name in out.iter().filter(|n| !into.contains(n)) {
            if let Some(docs) = self.by_end_user.get_mut(name) {
                docs.remove(&(customer.clone(), document_id.into()));
                if docs.is_empty() {
                    self.by_end_user.remove(name);
                }
            }
        }
        for name in into.iter().filter(|n| !out.contains(n)) {
            self.by_end_user
                .entry(name.clone())
                .or_default()
                .insert((customer.clone(), document_id.into()));
        }
    }

    /// The version in force.
    pub(super) fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }
}

/// The names of `parties` that `end_users` (normal forms) match, as
/// listed, sorted and unique.
fn listed_names(parties: &RestrictedParties, end_users: &[Box<str>]) -> Vec<String> {
    let mut names: Vec<String> = end_users
        .iter()
        .filter_map(|n| parties.matches_normal(n).map(str::to_owned))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// A live document whose hold a new list changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rescreened {
    pub customer_id: String,
    pub document_id: String,
    /// Its last applied revision.
    pub revision: i32,
    /// Held now (`END_USER_RESTRICTED`), or released.
    pub held: bool,
    /// Held: the listed names its end users match; released: the names
    /// that held it and are no longer listed. Sorted.
    pub names: Vec<String>,
}

impl DemandState {
    /// Makes `list` the list in force and re-screens the live documents its
    /// delta touches: those newly matched are held, those no longer matched
    /// released. Returns the documents whose hold changed, sorted by
    /// customer and document id.
    pub fn rescreen(&mut self, list: &ScreeningList) -> Vec<Rescreened> {
        self.screen_against(&list.version, list.parties())
    }

    /// [`rescreen`](Self::rescreen) with the list's index already built
    /// (`version` names it).
    pub fn screen_against(&mut self, version: &str, newer: RestrictedParties) -> Vec<Rescreened> {
        let delta = self.screening.parties.delta(&newer);
        let touched: BTreeSet<DocumentKey> = delta
            .listed
            .iter()
            .chain(&delta.delisted)
            .filter_map(|name| self.screening.by_end_user.get(name.as_str()))
            .flatten()
            .cloned()
            .collect();
        let older = std::mem::replace(&mut self.screening.parties, newer);
        self.screening.version = Some(version.to_owned());
        let mut changed = Vec::new();
        for (customer, id) in touched {
            let Some(d) = self.document(&customer, &id) else {
                continue;
            };
            let held = self.screening.holds(&d.end_users);
            if held == d.held {
                continue;
            }
            let names = listed_names(
                if held {
                    &self.screening.parties
                } else {
                    &older
                },
                &d.end_users,
            );
            let from = self.exposure(d);
            let to = if held {
                ExposureStatus::ScreeningHold
            } else {
                self.licences
                    .status(d.claimed, d.application.as_ref(), &d.customer_id)
            };
            let (contributions, revision) = (d.contributions.clone(), d.revision);
            if let Some(d) = self
                .documents
                .get_mut(&*customer)
                .and_then(|docs| docs.get_mut(&*id))
            {
                d.held = held;
            }
            self.licences.add(&customer, &contributions, from, -1);
            self.licences.add(&customer, &contributions, to, 1);
            changed.push(Rescreened {
                customer_id: customer.to_string(),
                document_id: id.into(),
                revision,
                held,
                names,
            });
        }
        changed
    }

    /// The restricted-party list version in force, if one was published.
    pub fn screening_version(&self) -> Option<&str> {
        self.screening.version()
    }

    /// `customer_id`'s `document_id` as the list in force holds it, if it
    /// does (a revision applied under a list that names its end user).
    pub fn hold(&self, customer_id: &str, document_id: &str) -> Option<Rescreened> {
        let d = self.document(customer_id, document_id).filter(|d| d.held)?;
        Some(Rescreened {
            customer_id: customer_id.to_owned(),
            document_id: document_id.to_owned(),
            revision: d.revision,
            held: true,
            names: listed_names(&self.screening.parties, &d.end_users),
        })
    }

    /// Whether `customer_id`'s `document_id` is held by the list in force.
    pub fn is_held(&self, customer_id: &str, document_id: &str) -> bool {
        self.document(customer_id, document_id)
            .is_some_and(|d| d.held)
    }

    /// The status a live document's units count under: `SCREENING_HOLD`
    /// while it is held, else its licence's.
    pub(super) fn exposure(&self, d: &Applied) -> ExposureStatus {
        if d.held {
            ExposureStatus::ScreeningHold
        } else {
            self.licences
                .status(d.claimed, d.application.as_ref(), &d.customer_id)
        }
    }
}

/// The verdict on a document whose hold a list changed (stage `RESCREEN`):
/// `REJECTED` with `END_USER_RESTRICTED` when held, `ACCEPTED` when
/// released; `version` is the list's. It carries no policy version: the
/// list alone decided it.
pub fn rescreen_verdict(r: &Rescreened, version: &str, decided_at: Timestamp) -> Verdict {
    let names = r
        .names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let (outcome, codes, violations) = if r.held {
        let code = RuleCode::EndUserRestricted;
        let message = format!(
            "an end user matches {names} on restricted-party list version {version}: the document's units are held (SCREENING_HOLD) until a list drops the name or a revision drops the end user"
        );
        (
            Outcome::Rejected,
            vec![code],
            vec![Violation {
                code,
                field: "end_use.end_users".into(),
                message,
            }],
        )
    } else {
        (Outcome::Accepted, Vec::new(), Vec::new())
    };
    Verdict {
        document_id: Some(r.document_id.clone()),
        revision: Some(r.revision),
        outcome,
        stage: Stage::Rescreen,
        codes,
        warnings: Vec::new(),
        violations,
        policy_version: String::new(),
        decided_at,
        source: None,
        customer_id: Some(r.customer_id.clone()),
        screening_version: Some(version.to_owned()),
    }
}
