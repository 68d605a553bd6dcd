//! The verdict of a submission, read back from the planner API with the
//! customer's own token (`customer:<ID>`: it sees its own documents only).
//!
//! ```no_run
//! # fn example(receipt: forecast_producer::Receipt) -> Result<(), forecast_producer::verdicts::VerdictError> {
//! use forecast_producer::verdicts::VerdictClient;
//! let client = VerdictClient::new("https://planner.example:8443", Some("fct_...".into()), None)?;
//! let verdict = client.wait("TENCENT", "TCT-2026-0001", 1, &receipt, std::time::Duration::from_secs(60))?;
//! println!("{} {:?}", verdict.verdict, verdict.codes);
//! # Ok(()) }
//! ```
//!
//! A submission is settled when the validator rejected it, or when the
//! aggregator gave its sequencing verdict (`ACCEPTED`, `DUPLICATE`, or a
//! sequencing `REJECTED`). The validator's verdict is found by where the
//! submission was stored (the [`crate::Receipt`]), so a revision sent twice
//! is told apart; the aggregator's is the next sequencing verdict of that
//! revision after it (a document's verdicts are kept in order: the audit
//! topic is keyed `customer_id/document_id`).

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::Receipt;

/// Why a verdict could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VerdictError {
    /// The API refused the token (401) or the route (403).
    #[error("the planner API refused the request ({status}): {message}")]
    Refused { status: u16, message: String },
    /// Another HTTP status, or a body that is not the API's.
    #[error("the planner API answered {status}: {message}")]
    Api { status: u16, message: String },
    /// The API could not be reached.
    #[error("cannot reach the planner API at {url}: {message}")]
    Unreachable { url: String, message: String },
    /// The CA file could not be read.
    #[error("cannot read the CA certificates {path} (--api-ca): {message}")]
    Ca { path: String, message: String },
    /// No settled verdict within the time given.
    #[error(
        "no verdict for {document_id} revision {revision} within {seconds} s; ask later with `forecastctl status {document_id}`"
    )]
    Timeout {
        document_id: String,
        revision: i32,
        seconds: u64,
    },
}

/// A document as `/v1/documents/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DocumentStatus {
    pub document_id: String,
    pub customer_id: Option<String>,
    /// The revision the aggregator applied last.
    pub applied_revision: Option<i32>,
    /// Held: an end user is on the restricted-party list in force.
    #[serde(default)]
    pub screening_hold: bool,
    /// Every verdict, oldest first.
    pub history: Vec<VerdictView>,
}

/// One verdict.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VerdictView {
    pub document_id: Option<String>,
    pub revision: Option<i32>,
    /// `ACCEPTED`, `REJECTED` or `DUPLICATE`.
    pub verdict: String,
    /// `DESERIALIZE`, `VALIDATE`, `SEQUENCE` or `RESCREEN`.
    pub stage: String,
    pub codes: Vec<String>,
    #[serde(default)]
    pub violations: Vec<ViolationView>,
    pub decided_at: String,
    pub source: Option<SourceView>,
}

/// A violated rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ViolationView {
    pub code: String,
    pub field: String,
    pub message: String,
}

/// Where the verdict's record was read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SourceView {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl VerdictView {
    /// True for `ACCEPTED` and `DUPLICATE` (the revision counts once).
    pub fn accepted(&self) -> bool {
        self.verdict != "REJECTED"
    }
}

impl DocumentStatus {
    /// The settled verdict of the submission stored at `receipt` (revision
    /// `revision`), if it is settled.
    pub fn settled(&self, revision: i32, receipt: &Receipt) -> Option<&VerdictView> {
        let at = self.history.iter().position(|v| {
            v.stage != "SEQUENCE"
                && v.source.as_ref().is_some_and(|s| {
                    s.topic == receipt.topic
                        && s.partition == receipt.partition
                        && s.offset == receipt.offset
                })
        })?;
        let first = &self.history[at];
        if !first.accepted() {
            return Some(first);
        }
        self.history[at + 1..]
            .iter()
            .find(|v| v.stage == "SEQUENCE" && v.revision == Some(revision))
    }

    /// The newest verdict of the newest revision that has one (history is
    /// oldest first, and `max_by_key` keeps the last of equal maxima).
    pub fn latest(&self) -> Option<&VerdictView> {
        self.history.iter().max_by_key(|v| v.revision)
    }
}

/// Reads verdicts from the planner API.
#[derive(Debug, Clone)]
pub struct VerdictClient {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

impl VerdictClient {
    /// A client of the API at `base_url` (`https://host:port`), sending
    /// `token` (a `customer:<ID>` or planner token), trusting the CA
    /// certificates (PEM) in `ca` instead of the public ones when given.
    pub fn new(
        base_url: &str,
        token: Option<String>,
        ca: Option<&Path>,
    ) -> Result<Self, VerdictError> {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)));
        if let Some(path) = ca {
            use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
            let ca_error = |message: String| VerdictError::Ca {
                path: path.display().to_string(),
                message,
            };
            let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
            let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(PemItem::Certificate(c)) => Some(Ok(c)),
                    Ok(_) => None,
                    Err(e) => Some(Err(ca_error(e.to_string()))),
                })
                .collect::<Result<_, _>>()?;
            if certs.is_empty() {
                return Err(ca_error("no PEM certificate in it".into()));
            }
            config = config.tls_config(
                TlsConfig::builder()
                    .root_certs(RootCerts::new_with_certs(&certs))
                    .build(),
            );
        }
        Ok(Self {
            agent: config.build().into(),
            base: base_url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// `customer`'s document's verdicts (document ids are each customer's
    /// own; `None`: the token's own customer, or the one customer holding
    /// the id), `None` when the API has none.
    pub fn document(
        &self,
        customer: Option<&str>,
        document_id: &str,
    ) -> Result<Option<DocumentStatus>, VerdictError> {
        let mut url = format!("{}/v1/documents/{}", self.base, encode_path(document_id));
        if let Some(c) = customer {
            url += &format!("?customer={}", encode_path(c));
        }
        let mut request = self.agent.get(&url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let mut response = request.call().map_err(|e| VerdictError::Unreachable {
            url: self.base.clone(),
            message: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        let message = || {
            serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| body.chars().take(200).collect())
        };
        match status {
            200 => serde_json::from_str(&body)
                .map(Some)
                .map_err(|e| VerdictError::Api {
                    status,
                    message: format!("not a document: {e}"),
                }),
            404 => Ok(None),
            401 | 403 => Err(VerdictError::Refused {
                status,
                message: message(),
            }),
            _ => Err(VerdictError::Api {
                status,
                message: message(),
            }),
        }
    }

    /// Polls until `customer`'s submission stored at `receipt` is settled,
    /// or `timeout` passes.
    pub fn wait(
        &self,
        customer: &str,
        document_id: &str,
        revision: i32,
        receipt: &Receipt,
        timeout: Duration,
    ) -> Result<VerdictView, VerdictError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(settled) = self
                .document(Some(customer), document_id)?
                .and_then(|d| d.settled(revision, receipt).cloned())
            {
                return Ok(settled);
            }
            if Instant::now() >= deadline {
                return Err(VerdictError::Timeout {
                    document_id: document_id.to_owned(),
                    revision,
                    seconds: timeout.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Percent-encodes a path segment (RFC 3986 unreserved characters kept).
fn encode_path(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(stage: &str, outcome: &str, revision: i32, offset: Option<i64>) -> VerdictView {
        VerdictView {
            document_id: Some("D".into()),
            revision: Some(revision),
            verdict: outcome.into(),
            stage: stage.into(),
            codes: vec![],
            violations: vec![],
            decided_at: "2026-01-01T00:00:00Z".into(),
            source: offset.map(|offset| SourceView {
                topic: "forecasts.submitted".into(),
                partition: 0,
                offset,
            }),
        }
    }

    fn receipt(offset: i64) -> Receipt {
        Receipt {
            topic: "forecasts.submitted".into(),
            partition: 0,
            offset,
        }
    }

    #[test]
    fn settled_follows_the_submission_it_was_given() {
        let status = DocumentStatus {
            document_id: "D".into(),
            customer_id: Some("TENCENT".into()),
            applied_revision: Some(1),
            screening_hold: false,
            history: vec![
                verdict("VALIDATE", "ACCEPTED", 1, Some(5)),
                verdict("SEQUENCE", "ACCEPTED", 1, None),
                // The same revision sent again: a duplicate.
                verdict("VALIDATE", "ACCEPTED", 1, Some(9)),
                verdict("SEQUENCE", "DUPLICATE", 1, None),
                // A rejected revision 2, and one not sequenced yet.
                verdict("VALIDATE", "REJECTED", 2, Some(12)),
                verdict("VALIDATE", "ACCEPTED", 3, Some(14)),
            ],
        };
        assert_eq!(status.settled(1, &receipt(5)).unwrap().verdict, "ACCEPTED");
        assert_eq!(status.settled(1, &receipt(9)).unwrap().verdict, "DUPLICATE");
        assert_eq!(status.settled(2, &receipt(12)).unwrap().verdict, "REJECTED");
        assert!(status.settled(3, &receipt(14)).is_none());
        assert!(status.settled(1, &receipt(99)).is_none());
        assert_eq!(status.latest().unwrap().revision, Some(3));
        // Of a revision's verdicts, the newest: the aggregator's after the
        // validator's.
        let settled_rev1 = DocumentStatus {
            history: status.history[..4].to_vec(),
            ..status.clone()
        };
        let latest = settled_rev1.latest().unwrap();
        assert_eq!(
            (latest.stage.as_str(), latest.verdict.as_str()),
            ("SEQUENCE", "DUPLICATE")
        );
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_path("TCT-2026_0001.x~"), "TCT-2026_0001.x~");
        assert_eq!(encode_path("a/b c?"), "a%2Fb%20c%3F");
    }
}
