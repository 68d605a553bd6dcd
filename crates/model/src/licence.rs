//! Licence decisions: what compliance officers decided on an export
//! licence application, published with `forecastctl licences load FILE` to
//! the compacted topic `licences.decisions`, keyed by application number.
//!
//! A decision applies to every live document that references its
//! application (`export_license.application_number`), whatever status the
//! document itself claims; demand is then counted under the decision's
//! status ([`ExposureStatus::of`]). Of two decisions on one application the
//! one decided later counts, whichever arrived first, so the result does
//! not depend on the order decisions and documents arrive in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::document::{LicenseStatus, symbols};
use crate::time::{Date, Timestamp};

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
    }
);

impl ExposureStatus {
    /// The status a document's units count under: its application's
    /// decision when there is one, else what the document says.
    pub fn of(claimed: LicenseStatus, decision: Option<DecisionStatus>) -> Self {
        match decision {
            Some(DecisionStatus::Approved) => Self::Approved,
            Some(DecisionStatus::Denied) => Self::Denied,
            Some(DecisionStatus::Pending) => Self::Pending,
            Some(DecisionStatus::Revoked) => Self::Revoked,
            None => match claimed {
                LicenseStatus::Approved => Self::Approved,
                LicenseStatus::Pending => Self::Pending,
                LicenseStatus::NotFiled => Self::NotFiled,
                // The validator rejects a document that says DENIED; one
                // that got here anyway counts as denied.
                LicenseStatus::Denied => Self::Denied,
            },
        }
    }

    /// Whether the units have no buyer unless the decision changes.
    pub fn is_lost(self) -> bool {
        matches!(self, Self::Denied | Self::Revoked)
    }
}

/// A decision on one licence application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenceDecision {
    pub application_number: String,
    pub status: DecisionStatus,
    pub decided_at: Timestamp,
    /// Units the licence allows, per SKU (empty: none stated).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub approved_quantity: BTreeMap<String, i64>,
    /// The last day the licence is valid, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_on: Option<Date>,
}

impl LicenceDecision {
    /// What serde cannot check: an application number, and quantities
    /// that are whole units.
    pub fn check(&self) -> Result<(), String> {
        if self.application_number.trim().is_empty() {
            return Err("an empty application_number".into());
        }
        if let Some((sku, q)) = self.approved_quantity.iter().find(|(_, q)| **q < 0) {
            return Err(format!("approved_quantity of {sku} is {q}, below 0"));
        }
        if let Some(sku) = self.approved_quantity.keys().find(|s| s.trim().is_empty()) {
            return Err(format!("approved_quantity names an empty SKU {sku:?}"));
        }
        Ok(())
    }

    /// Whether this decision counts instead of `other`, an earlier one of
    /// the same application: it was decided at the same time or later (of
    /// two at the same time, the one taken last).
    pub fn supersedes(&self, other: &LicenceDecision) -> bool {
        self.decided_at.millis() >= other.decided_at.millis()
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
mod tests {
    use super::*;

    #[test]
    fn a_decision_overrides_the_documents_own_status() {
        use ExposureStatus as E;
        for claimed in LicenseStatus::ALL {
            assert_eq!(E::of(*claimed, Some(DecisionStatus::Revoked)), E::Revoked);
            assert_eq!(E::of(*claimed, Some(DecisionStatus::Approved)), E::Approved);
        }
        assert_eq!(E::of(LicenseStatus::Pending, None), E::Pending);
        assert_eq!(E::of(LicenseStatus::NotFiled, None), E::NotFiled);
        assert!(E::Denied.is_lost() && E::Revoked.is_lost() && !E::Pending.is_lost());
    }

    #[test]
    fn a_licence_file_reads_with_errors_naming_the_line() {
        let text = r#"# decisions of 2026-12-01
{"application_number": "Z-1", "status": "APPROVED", "decided_at": "2026-12-01T08:00:00+08:00", "approved_quantity": {"H20-96GB": 50000}, "expires_on": "2027-12-31"}

{"application_number": "Z-2", "status": "DENIED", "decided_at": "2026-12-02T00:00:00Z"}
"#;
        let d = read_decisions(text, "licences.jsonl").unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].approved_quantity["H20-96GB"], 50_000);
        assert_eq!(
            d[0].expires_on.map(|e| e.to_string()).as_deref(),
            Some("2027-12-31")
        );
        assert_eq!(
            (d[1].status, d[1].expires_on),
            (DecisionStatus::Denied, None)
        );
        assert!(d[1].supersedes(&d[0]), "decided later");
        assert!(!d[0].supersedes(&d[1]));

        for (line, problem) in [
            (
                r#"{"application_number": "Z-1", "status": "DENIED", "decided_at": "2026-12-02T00:00:00Z", "reason": "x"}"#,
                "unknown field `reason`",
            ),
            (
                r#"{"application_number": "Z-1", "status": "REFUSED", "decided_at": "2026-12-02T00:00:00Z"}"#,
                "REFUSED",
            ),
            (
                r#"{"application_number": " ", "status": "DENIED", "decided_at": "2026-12-02T00:00:00Z"}"#,
                "empty application_number",
            ),
            (
                r#"{"application_number": "Z-1", "status": "APPROVED", "decided_at": "2026-12-02T00:00:00Z", "approved_quantity": {"H20": -1}}"#,
                "below 0",
            ),
            (
                r#"{"application_number": "Z-1", "status": "APPROVED"}"#,
                "decided_at",
            ),
        ] {
            let e = read_decisions(&format!("\n{line}\n"), "l.jsonl").unwrap_err();
            assert_eq!((e.file.as_str(), e.line), ("l.jsonl", 2), "{e}");
            assert!(e.problem.contains(problem), "{problem}: {e}");
        }
    }

    #[test]
    fn a_decision_round_trips_through_json() {
        let d = LicenceDecision {
            application_number: "Z-9".into(),
            status: DecisionStatus::Revoked,
            decided_at: Timestamp::from_millis(1_764_547_200_000),
            approved_quantity: BTreeMap::new(),
            expires_on: None,
        };
        let json = serde_json::to_string(&d).unwrap();
        assert!(
            !json.contains("approved_quantity") && !json.contains("expires_on"),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<LicenceDecision>(&json).unwrap(), d);
    }
}
