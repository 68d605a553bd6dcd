//! `forecastctl status` and `submit --wait`: a customer reads its verdicts
//! back from the planner API, with its own `customer:<ID>` token (it sees
//! its own documents only; docs/security.md).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use forecast_producer::verdicts::{VerdictClient, VerdictEntry};

/// Where the planner API is, and the token to read it with.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// The planner API (`https://host:port`).
    #[arg(long = "api", env = "FORECAST_API", value_name = "URL")]
    pub url: Option<String>,
    /// Bearer token to read it with (a `customer:<ID>` or planner token).
    /// Prefer the environment variable: a flag's value shows in `ps`.
    #[arg(
        long = "api-token",
        env = "FORECAST_API_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Trust these CA certificates (PEM) for the API instead of the public ones.
    #[arg(long = "api-ca", env = "FORECAST_API_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

impl ApiArgs {
    /// The client, when --api is given.
    pub fn client(&self) -> anyhow::Result<VerdictClient> {
        let url = self.url.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "--api URL (or FORECAST_API) is needed: the planner API this reads from"
            )
        })?;
        Ok(VerdictClient::new(
            url,
            self.token.clone(),
            self.ca.as_deref(),
        )?)
    }
}

/// Arguments of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Whose documents (document ids are each customer's own); a customer
    /// token reads its own without it, a planner token names one when an
    /// id is several customers'.
    #[arg(long, env = "FORECAST_CUSTOMER", value_name = "ID")]
    pub customer: Option<String>,
    /// Documents to show.
    #[arg(required = true, value_name = "DOCUMENT_ID")]
    pub documents: Vec<String>,
}

/// One line for a verdict: `REJECTED (VALIDATE) KEY_EXPIRED, ...` and its
/// violations below it.
pub fn describe(v: &VerdictEntry) -> String {
    let mut text = format!(
        "rev {} {} ({})",
        v.revision.map_or("?".into(), |r| r.to_string()),
        v.verdict,
        v.stage
    );
    if !v.codes.is_empty() {
        let codes: Vec<&str> = v.codes.iter().map(|c| c.as_str()).collect();
        text += &format!(" {}", codes.join(", "));
    }
    for violation in &v.violations {
        text += &format!(
            "\n    {} at {}: {}",
            violation.code, violation.field, violation.message
        );
    }
    text
}

/// Prints each document's verdicts; returns whether each one's latest
/// verdict is an acceptance.
pub async fn status(args: &StatusArgs) -> anyhow::Result<bool> {
    let client = args.api.client()?;
    let mut all_accepted = true;
    for id in &args.documents {
        let (client, id2, customer) = (client.clone(), id.clone(), args.customer.clone());
        let document =
            tokio::task::spawn_blocking(move || client.document(customer.as_deref(), &id2))
                .await??;
        match document {
            None => {
                all_accepted = false;
                println!("{id}: no verdict (not received yet, or not a document of yours)");
            }
            Some(d) => {
                println!(
                    "{id}: applied revision {}{}",
                    d.applied_revision.map_or("none".into(), |r| r.to_string()),
                    if d.screening_hold {
                        "; HELD: an end user is on the restricted-party list in force (SCREENING_HOLD)"
                    } else {
                        ""
                    }
                );
                for v in &d.history {
                    println!("  {}", describe(v));
                }
                all_accepted &= d.latest().is_some_and(VerdictEntry::accepted);
            }
        }
    }
    Ok(all_accepted)
}

/// Waits for the verdict of each delivered submission, printing it;
/// returns whether every one was accepted.
pub async fn wait_all(
    client: &VerdictClient,
    delivered: Vec<(crate::submit::Sent, forecast_producer::Receipt)>,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let mut all_accepted = true;
    for (sent, receipt) in delivered {
        let client = client.clone();
        let s = sent.clone();
        let settled = tokio::task::spawn_blocking(move || {
            client.wait(
                &s.customer_id,
                &s.document_id,
                s.revision,
                &receipt,
                timeout,
            )
        })
        .await?;
        let (origin, line, id) = (&sent.origin, sent.line, &sent.document_id);
        match settled {
            Ok(v) => {
                all_accepted &= v.accepted();
                println!("{origin}:{line}: {id} {}", describe(&v));
            }
            Err(e) => {
                all_accepted = false;
                println!("{origin}:{line}: {id} rev {}: {e}", sent.revision);
            }
        }
    }
    Ok(all_accepted)
}
