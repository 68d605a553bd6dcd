//! The planner API's JSON types, defined once: `forecast-planner` serves
//! them and the client library (`forecast-producer`) reads them back, so
//! the two cannot drift apart. `/v1/documents/{id}` answers a
//! [`DocumentHistory`]; `/v1/rejections` lists [`VerdictEntry`]s;
//! `/v1/commits` answers a [`CommitList`].
//!
//! The codes are typed: a client older than a server that added a rule
//! code, stage or outcome cannot read a verdict carrying it, and says so
//! (upgrade the client with the server).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;
use crate::verdict::{Outcome, RuleCode, Stage, WarningCode};

/// One verdict as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictEntry {
    pub document_id: Option<Arc<str>>,
    pub revision: Option<i32>,
    pub customer_id: Option<Arc<str>>,
    pub verdict: Outcome,
    pub stage: Stage,
    pub codes: Vec<RuleCode>,
    pub warnings: Vec<WarningCode>,
    pub violations: Vec<ViolationEntry>,
    pub policy_version: Arc<str>,
    /// The restricted-party list version it was screened against.
    #[serde(default)]
    pub screening_version: Option<Arc<str>>,
    pub decided_at: Timestamp,
    pub source: Option<Source>,
}

/// A violated rule with its field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolationEntry {
    pub code: RuleCode,
    pub field: String,
    pub message: String,
}

/// The record a verdict judged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Source {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

impl VerdictEntry {
    /// True for `ACCEPTED` and `DUPLICATE` (the revision counts once).
    pub fn accepted(&self) -> bool {
        self.verdict != Outcome::Rejected
    }
}

/// A document's current state and its verdict history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentHistory {
    pub document_id: Arc<str>,
    /// The customer whose document it is (`null`: nobody's: a record that
    /// named no registered customer).
    pub customer_id: Option<Arc<str>>,
    /// The revision the aggregator applied last (`null` when none was).
    pub applied_revision: Option<i32>,
    /// Held: an end user is on the restricted-party list in force (its
    /// last RESCREEN verdict rejected it); its units count as
    /// SCREENING_HOLD until a list releases it or a revision replaces it.
    #[serde(default)]
    pub screening_hold: bool,
    /// The newest verdicts (the planner keeps 32), oldest first.
    pub history: Vec<VerdictEntry>,
    /// Verdicts older than `history`, counted but no longer kept.
    pub earlier_verdicts: u64,
}

impl DocumentHistory {
    /// The newest verdict of the newest revision that has one (history is
    /// oldest first, and `max_by_key` keeps the last of equal maxima).
    pub fn latest(&self) -> Option<&VerdictEntry> {
        self.history.iter().max_by_key(|v| v.revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_server_writes_the_client_reads_back_and_an_older_answer_still_reads() {
        let entry = VerdictEntry {
            document_id: Some("TCT-1".into()),
            revision: Some(2),
            customer_id: Some("TENCENT".into()),
            verdict: Outcome::Rejected,
            stage: Stage::Rescreen,
            codes: vec![RuleCode::EndUserRestricted],
            warnings: vec![WarningCode::DocExpiresBeforeHorizonEnd],
            violations: vec![ViolationEntry {
                code: RuleCode::EndUserRestricted,
                field: "end_use.end_users".into(),
                message: "an end user matches".into(),
            }],
            policy_version: "".into(),
            screening_version: Some("csl-1".into()),
            decided_at: Timestamp::from_millis(1_700_000_000_000),
            source: Some(Source {
                topic: "forecasts.submitted".into(),
                partition: 1,
                offset: 7,
            }),
        };
        let doc = DocumentHistory {
            document_id: "TCT-1".into(),
            customer_id: Some("TENCENT".into()),
            applied_revision: Some(2),
            screening_hold: true,
            history: vec![entry],
            earlier_verdicts: 3,
        };
        let json = serde_json::to_string(&doc).unwrap();
        assert_eq!(serde_json::from_str::<DocumentHistory>(&json).unwrap(), doc);
        // A planner from before live screening: no screening fields.
        let older = json
            .replace(",\"screening_hold\":true", "")
            .replace(",\"screening_version\":\"csl-1\"", "");
        assert_ne!(older, json);
        let read: DocumentHistory = serde_json::from_str(&older).unwrap();
        assert!(!read.screening_hold);
        assert_eq!(read.history[0].screening_version, None);
        // A code this build does not know is an error, not a guess.
        let newer = json.replace("END_USER_RESTRICTED", "A_CODE_FROM_THE_FUTURE");
        assert!(serde_json::from_str::<DocumentHistory>(&newer).is_err());
    }
}

/// The supplier's commits a token may read (`/v1/commits`), each as its
/// record holds it, signed: the customer checks it with the supplier's
/// public key. Sorted by customer.
#[derive(Debug, Serialize, Deserialize)]
pub struct CommitList {
    pub commits: Vec<crate::commit::SignedCommit>,
}
