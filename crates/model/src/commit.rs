//! The supplier's commit to one customer: its allocation per SKU x
//! quarter ([`crate::allocation`]), each line naming the document
//! revisions it answers, signed with the supplier's key so that the
//! customer can verify it offline (`forecastctl commits verify`).
//!
//! A commit is the value of a record keyed by the customer's id, signed
//! the way every record between parties is ([`crate::attest`]: an Ed25519
//! signature by a `supplier` key of the registry over the topic, key and
//! value). Its file form keeps the value's bytes exactly:
//!
//! ```text
//! {"topic": "commits", "key": "TENCENT", "attestation": "KEY_ID SIGNATURE", "commit": {...}}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::allocation::{Allocation, Method, Shortfall};
use crate::attest::{Attester, Covered, HEADER, Role, Unattested, Verifier};
use crate::time::{Quarter, Timestamp};

/// The topic commits are published to, and signed for.
pub const COMMITS_TOPIC: &str = "commits";

/// A document revision a commit line answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answered {
    pub document_id: String,
    pub revision: i32,
}

/// One line of a commit: what the customer asked for in one SKU x
/// quarter, what it gets, why not more, and the revisions it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitLine {
    pub sku: String,
    pub quarter: Quarter,
    pub requested_units: i64,
    pub allocated_units: i64,
    pub shortfalls: Vec<Shortfall>,
    /// Sorted by document id.
    pub documents: Vec<Answered>,
}

/// The supplier's commit to one customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commit {
    pub customer_id: String,
    /// When the allocation it holds was made.
    pub allocated_at: Timestamp,
    /// The allocation policy's method.
    pub method: Method,
    /// Sorted by SKU and quarter.
    pub lines: Vec<CommitLine>,
}

impl Commit {
    /// The commit of `customer` from `allocations` (any customer's; its
    /// own are taken), each line with the revisions `answered` names for
    /// its SKU x quarter.
    pub fn of(
        customer: &str,
        allocations: &[Allocation],
        method: Method,
        allocated_at: Timestamp,
        mut answered: impl FnMut(&str, Quarter) -> Vec<Answered>,
    ) -> Self {
        let mut lines: Vec<CommitLine> = allocations
            .iter()
            .filter(|a| a.customer_id == customer)
            .map(|a| CommitLine {
                sku: a.sku.clone(),
                quarter: a.quarter,
                requested_units: a.requested_units,
                allocated_units: a.allocated_units,
                shortfalls: a.shortfalls.clone(),
                documents: answered(&a.sku, a.quarter),
            })
            .collect();
        lines.sort_by(|a, b| (&a.sku, a.quarter).cmp(&(&b.sku, b.quarter)));
        Self {
            customer_id: customer.to_owned(),
            allocated_at,
            method,
            lines,
        }
    }
}

impl Commit {
    /// The commit a record's value (JSON) holds, which must be `customer`'s
    /// (the record's key).
    pub fn of_record(customer: &str, value: &str) -> Result<Self, CommitError> {
        let commit: Commit =
            serde_json::from_str(value).map_err(|e| CommitError::Malformed(e.to_string()))?;
        if commit.customer_id != customer {
            return Err(CommitError::OtherCustomer {
                commit: commit.customer_id,
                key: customer.to_owned(),
            });
        }
        Ok(commit)
    }
}

/// A signed commit as a file holds it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCommit {
    pub topic: String,
    pub key: String,
    /// `KEY_ID SIGNATURE`, as the record's [`HEADER`] holds it.
    pub attestation: String,
    /// The record's value, byte for byte.
    pub commit: Box<RawValue>,
}

/// Why a commit file is not believed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("not a signed commit: {0}")]
    Malformed(String),
    #[error(transparent)]
    Unattested(#[from] Unattested),
    #[error("the commit is for {commit}, the record for {key}")]
    OtherCustomer { commit: String, key: String },
}

impl SignedCommit {
    /// `commit` signed by `signer` (a `supplier` key) for `topic` (the
    /// topic its record is published to, [`COMMITS_TOPIC`] unless renamed):
    /// its JSON is the record's value, the bytes signed.
    pub fn sign(
        commit: &Commit,
        topic: &str,
        signer: &Attester,
    ) -> Result<Self, serde_json::Error> {
        let value = serde_json::value::to_raw_value(commit)?;
        let covered = Covered {
            topic,
            key: Some(commit.customer_id.as_bytes()),
            value: Some(value.get().as_bytes()),
        };
        Ok(Self {
            topic: topic.into(),
            key: commit.customer_id.clone(),
            attestation: signer.attest(covered, std::iter::empty()),
            commit: value,
        })
    }

    /// The commit, when a key `verifier` believes signed exactly these
    /// bytes for this customer, at `at` (the time the key must be valid
    /// at: the commit's own).
    pub fn verify(&self, verifier: &Verifier) -> Result<Commit, CommitError> {
        let commit = Commit::of_record(&self.key, self.commit.get())?;
        let covered = Covered {
            topic: &self.topic,
            key: Some(self.key.as_bytes()),
            value: Some(self.commit.get().as_bytes()),
        };
        let headers = [(HEADER, Some(self.attestation.as_bytes()))];
        match verifier.verify(covered, headers, Some(commit.allocated_at))? {
            Some(Role::Supplier) | None => Ok(commit),
            Some(other) => Err(CommitError::Malformed(format!(
                "signed by a {other} key, not the supplier's"
            ))),
        }
    }
}

#[cfg(test)]
mod tests;
