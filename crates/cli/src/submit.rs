//! `forecastctl submit`: documents from files to `forecasts.submitted`
//! through the customer library (`forecast-producer`), each refused locally
//! with its file, line and field when it does not decode.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use forecast_kafka::KafkaArgs;
use forecast_producer::Submitter;
use forecast_runtime::config::{LogArgs, TopicArgs};
use futures::stream::{FuturesUnordered, StreamExt};

use crate::input;

/// Arguments of `submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    #[command(flatten)]
    pub log: LogArgs,
    /// The validator's policy file, whose document limits (max_document_bytes,
    /// max_document_lines, max_id_bytes) are applied before sending: a
    /// document over them is refused locally as DOCUMENT_TOO_LARGE. Default:
    /// the default policy's limits.
    #[arg(long, env = "FORECAST_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Largest encoded document sent (bytes); larger ones are refused locally.
    #[arg(long, env = "FORECAST_MAX_RECORD_BYTES", default_value_t = forecast_producer::DEFAULT_MAX_RECORD_BYTES)]
    pub max_record_bytes: usize,
    /// Sign every document with this private key (PKCS#8 PEM, as `keys
    /// generate` writes it) as it is sent, replacing any signature it has.
    #[arg(long, env = "FORECAST_SIGNING_KEY", value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
    /// After sending, wait for each document's verdict from the planner
    /// API (--api, --api-token: the customer's own token) and print it; exit
    /// 0 only when every one was accepted.
    #[arg(long, requires = "url")]
    pub wait: bool,
    /// How long --wait waits for each verdict (seconds).
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub wait_timeout: u64,
    #[command(flatten)]
    pub api: crate::status::ApiArgs,
    /// Key id the signatures carry; default the id derived from the key.
    #[arg(
        long,
        env = "FORECAST_KEY_ID",
        value_name = "ID",
        requires = "signing_key"
    )]
    pub key_id: Option<String>,
    /// Files holding one JSON document, or JSON Lines; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Submits documents; returns whether every one was delivered.
pub async fn submit(args: &SubmitArgs) -> anyhow::Result<bool> {
    let limits = match &args.policy {
        Some(path) => forecast_validator::PolicySettings::read(path)?.limits(),
        None => forecast_model::DocumentLimits::DEFAULT,
    };
    let mut submitter = Submitter::new(&args.kafka, &args.topics.topic_submitted)?
        .with_max_record_bytes(args.max_record_bytes)
        .with_limits(limits);
    if let Some(path) = &args.signing_key {
        submitter =
            submitter.with_signer(forecast_producer::read_signer(path, args.key_id.clone())?);
    }
    let mut tally = Tally::default();
    // Hidden when standard error is not a terminal.
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} documents delivered ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut in_flight = FuturesUnordered::new();
    for path in &args.files {
        let origin = path.display().to_string();
        let submissions =
            input::read_path(path).map_err(|e| anyhow::anyhow!("cannot read {origin}: {e}"))?;
        bar.inc_length(submissions.len() as u64);
        for sub in submissions {
            match forecast_model::parse_submission(&sub.bytes) {
                Err(e) => {
                    let field = if e.field.is_empty() {
                        String::new()
                    } else {
                        format!(" at {}", e.field)
                    };
                    tally.refused(
                        &bar,
                        format!(
                            "{origin}:{}: refused, not sent: SCHEMA_INVALID{field}: {}",
                            sub.line, e.message
                        ),
                    );
                }
                Ok(doc) => match submitter.enqueue(&doc).await {
                    Ok(pending) => {
                        let sent = Sent {
                            origin: origin.clone(),
                            line: sub.line,
                            customer_id: doc.customer_id.clone(),
                            document_id: doc.document_id.clone(),
                            revision: doc.revision,
                        };
                        in_flight.push(async move { (sent, pending.receipt().await) });
                    }
                    Err(e) => tally.refused(
                        &bar,
                        format!("{origin}:{}: refused, not sent: {e}", sub.line),
                    ),
                },
            }
            // Bound memory: settle deliveries as they come.
            while in_flight.len() >= 10_000 {
                if let Some(r) = in_flight.next().await {
                    tally.settled(&bar, r);
                }
            }
        }
    }
    while let Some(r) = in_flight.next().await {
        tally.settled(&bar, r);
    }
    bar.finish_and_clear();
    eprintln!(
        "{} sent, {} refused locally, {} failed",
        tally.sent, tally.refused, tally.failed
    );
    let mut ok = tally.refused == 0 && tally.failed == 0;
    if args.wait {
        let client = args.api.client()?;
        let delivered = std::mem::take(&mut tally.delivered);
        eprintln!(
            "waiting for {} verdict(s) from {}",
            delivered.len(),
            args.api.url.as_deref().unwrap_or_default()
        );
        ok &= crate::status::wait_all(&client, delivered, Duration::from_secs(args.wait_timeout))
            .await?;
    }
    Ok(ok)
}

/// A document sent: where it came from and what it is.
#[derive(Debug, Clone)]
pub struct Sent {
    pub origin: String,
    pub line: usize,
    pub customer_id: String,
    pub document_id: String,
    pub revision: i32,
}

/// What `submit` did with each document.
#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    refused: u64,
    failed: u64,
    /// Each delivered document and where it was stored, for --wait.
    delivered: Vec<(Sent, forecast_producer::Receipt)>,
}

impl Tally {
    fn refused(&mut self, bar: &indicatif::ProgressBar, why: String) {
        self.refused += 1;
        bar.inc(1);
        bar.suspend(|| eprintln!("{why}"));
    }

    fn settled(
        &mut self,
        bar: &indicatif::ProgressBar,
        (sent, r): (
            Sent,
            Result<forecast_producer::Receipt, forecast_producer::SubmitError>,
        ),
    ) {
        bar.inc(1);
        match r {
            Ok(receipt) => {
                self.sent += 1;
                self.delivered.push((sent, receipt));
            }
            Err(e) => {
                self.failed += 1;
                bar.suspend(|| eprintln!("{}:{}: not delivered: {e}", sent.origin, sent.line));
            }
        }
    }
}
