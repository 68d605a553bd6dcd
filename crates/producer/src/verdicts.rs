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

use forecast_model::Stage;

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

/// A document as `/v1/documents/{id}` shows it, and one of its verdicts:
/// the planner API's own types.
pub use forecast_model::api::{CommitList, DocumentHistory, Source, VerdictEntry, ViolationEntry};
pub use forecast_model::commit::SignedCommit;

/// The settled verdict of `document`'s submission stored at `receipt`
/// (revision `revision`), if it is settled: the validator's when it
/// rejected it, else the aggregator's next sequencing verdict of that
/// revision.
pub fn settled<'d>(
    document: &'d DocumentHistory,
    revision: i32,
    receipt: &Receipt,
) -> Option<&'d VerdictEntry> {
    let history = &document.history;
    let at = history.iter().position(|v| {
        v.stage != Stage::Sequence
            && v.source.as_ref().is_some_and(|s| {
                *s.topic == *receipt.topic
                    && s.partition == receipt.partition
                    && s.offset == receipt.offset
            })
    })?;
    let first = &history[at];
    if !first.accepted() {
        return Some(first);
    }
    history[at + 1..]
        .iter()
        .find(|v| v.stage == Stage::Sequence && v.revision == Some(revision))
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
    ) -> Result<Option<DocumentHistory>, VerdictError> {
        let mut path = format!("/v1/documents/{}", encode_path(document_id));
        if let Some(c) = customer {
            path += &format!("?customer={}", encode_path(c));
        }
        self.get(&path)
    }

    /// The supplier's commits the token may read, as signed (check each
    /// with `SignedCommit::verify` and the supplier's public key, or
    /// `forecastctl commits verify`): a customer token reads its own
    /// commit only; a planner token every customer's, or `customer`'s.
    pub fn commits(&self, customer: Option<&str>) -> Result<Vec<SignedCommit>, VerdictError> {
        let mut path = "/v1/commits".to_owned();
        if let Some(c) = customer {
            path += &format!("?customer={}", encode_path(c));
        }
        Ok(self
            .get::<CommitList>(&path)?
            .map(|l| l.commits)
            .unwrap_or_default())
    }

    /// GETs `path` of the API: its JSON, `None` on 404.
    fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<Option<T>, VerdictError> {
        let url = format!("{}{path}", self.base);
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
                    message: format!(
                        "not an answer this client reads ({e}); a client older than the planner may not know a new code: upgrade it"
                    ),
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
    ) -> Result<VerdictEntry, VerdictError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(settled) = self
                .document(Some(customer), document_id)?
                .and_then(|d| settled(&d, revision, receipt).cloned())
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
    use forecast_model::Outcome;

    fn verdict(stage: Stage, outcome: Outcome, revision: i32, offset: Option<i64>) -> VerdictEntry {
        VerdictEntry {
            document_id: Some("D".into()),
            revision: Some(revision),
            customer_id: Some("TENCENT".into()),
            verdict: outcome,
            stage,
            codes: vec![],
            warnings: vec![],
            violations: vec![],
            policy_version: "sha256:0".into(),
            screening_version: None,
            decided_at: forecast_model::Timestamp::from_millis(0),
            source: offset.map(|offset| Source {
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
        use Outcome::{Accepted, Duplicate, Rejected};
        use Stage::{Sequence, Validate};
        let status = DocumentHistory {
            document_id: "D".into(),
            customer_id: Some("TENCENT".into()),
            applied_revision: Some(1),
            screening_hold: false,
            history: vec![
                verdict(Validate, Accepted, 1, Some(5)),
                verdict(Sequence, Accepted, 1, None),
                // The same revision sent again: a duplicate.
                verdict(Validate, Accepted, 1, Some(9)),
                verdict(Sequence, Duplicate, 1, None),
                // A rejected revision 2, and one not sequenced yet.
                verdict(Validate, Rejected, 2, Some(12)),
                verdict(Validate, Accepted, 3, Some(14)),
            ],
            earlier_verdicts: 0,
        };
        let of = |revision, offset| settled(&status, revision, &receipt(offset)).map(|v| v.verdict);
        assert_eq!(of(1, 5), Some(Accepted));
        assert_eq!(of(1, 9), Some(Duplicate));
        assert_eq!(of(2, 12), Some(Rejected));
        assert_eq!(of(3, 14), None);
        assert_eq!(of(1, 99), None);
        assert_eq!(status.latest().unwrap().revision, Some(3));
        // Of a revision's verdicts, the newest: the aggregator's after the
        // validator's.
        let settled_rev1 = DocumentHistory {
            history: status.history[..4].to_vec(),
            ..status.clone()
        };
        let latest = settled_rev1.latest().unwrap();
        assert_eq!((latest.stage, latest.verdict), (Sequence, Duplicate));
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_path("TCT-2026_0001.x~"), "TCT-2026_0001.x~");
        assert_eq!(encode_path("a/b c?"), "a%2Fb%20c%3F");
    }
}
