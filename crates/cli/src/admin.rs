//! `forecastctl topics create`, `forecastctl supply load`,
//! `forecastctl licences load` and `forecastctl screening load`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use forecast_kafka::KafkaArgs;
use forecast_model::attest::Attester;
use forecast_runtime::config::TopicArgs;

use crate::services::LayoutArgs;

/// `topics` subcommands.
#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create the pipeline's topics when missing (compacted demand topic,
    /// unlimited retention for validated and audit).
    Create {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        topics: TopicArgs,
        #[command(flatten)]
        layout: LayoutArgs,
    },
}

/// `supply` subcommands.
#[derive(Debug, Subcommand)]
pub enum SupplyCommand {
    /// Publish a supply plan file (CSV: sku,quarter,on_hand,ordered) to the
    /// supply.plan topic, one record per SKU and quarter (key SKU/QUARTER,
    /// JSON value); a later load replaces those SKUs and quarters.
    Load {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        topics: TopicArgs,
        #[command(flatten)]
        signing: RecordSigningArgs,
        /// The plan.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// `licences` subcommands.
#[derive(Debug, Subcommand)]
pub enum LicencesCommand {
    /// Publish licence decisions (JSON Lines: application_number,
    /// customer_id, status APPROVED|DENIED|PENDING|REVOKED, decided_at,
    /// optional approved_quantity per SKU and expires_on) to the
    /// licences.decisions topic, one record per decision (key
    /// application_number/decided_at, Avro). A decision applies to the live
    /// documents of its customer that reference the application (another
    /// customer's count as FOREIGN_LICENCE); of two decisions on one
    /// application the one decided later counts. The whole file is checked before anything is sent.
    /// The aggregators take each decision as it arrives: demand moves
    /// between licence statuses at once (`demand --by-licence`,
    /// /v1/exposure).
    Load {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        topics: TopicArgs,
        #[command(flatten)]
        signing: RecordSigningArgs,
        /// The decisions.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// `screening` subcommands.
#[derive(Debug, Subcommand)]
pub enum ScreeningCommand {
    /// Publish a restricted-party list version (the Consolidated Screening
    /// List's CSV export or its JSON form; `name` and `alt_names` are used)
    /// to the screening.lists topic: one record, key `list`, holding the
    /// version id, when it takes effect, the file's sha256 and the entries.
    /// The version published last is in force: the validators screen new
    /// submissions against it, and the aggregators re-screen the live
    /// documents its changes touch (held: SCREENING_HOLD, with a RESCREEN
    /// verdict; released when a later version drops the name).
    Load {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        topics: TopicArgs,
        #[command(flatten)]
        signing: RecordSigningArgs,
        /// The version's id, carried by every verdict screened against it
        /// (default: `csl-` and the first 12 hex digits of the file's sha256).
        #[arg(long = "list-version", id = "list_version", value_name = "ID")]
        version: Option<String>,
        /// When the list takes effect, RFC 3339 (default: now); informative,
        /// the version published last is the one in force.
        #[arg(long, value_name = "TIME")]
        effective_from: Option<forecast_model::Timestamp>,
        /// The list.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// How `licences load`, `supply load` and `screening load` sign what they
/// publish.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct RecordSigningArgs {
    /// Sign every record with this private key (PKCS#8 PEM, as `keys
    /// generate --role compliance` or `--role operator` writes it), whose
    /// public key the registry holds under that role: the services believe
    /// nothing else.
    #[arg(long, env = "FORECAST_RECORD_SIGNING_KEY", value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
    /// Publish unsigned: only services run with --insecure-no-attestation
    /// take the records.
    #[arg(long)]
    pub unsigned: bool,
}

impl RecordSigningArgs {
    /// What signs the records (`None`: --unsigned).
    pub fn attester(&self) -> anyhow::Result<Option<Attester>> {
        match &self.signing_key {
            None => Ok(None),
            Some(path) => Ok(Some(forecast_producer::read_signer(path, None)?.attester())),
        }
    }
}

/// Publishes a licence file's decisions to the licences topic, which must
/// exist; nothing is sent when any line of the file is wrong.
pub async fn load_licences(
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    signing: &RecordSigningArgs,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    let attester = signing.attester()?;
    let decisions = crate::read_licences(file).map_err(|e| anyhow::anyhow!("{e}"))?;
    publish_licences(kafka, topics, &decisions, attester.as_ref()).await
}

/// Publishes decisions to the licences topic, which must exist, one record
/// each keyed `application_number/decided_at` and signed by `attester`;
/// fails on the first not delivered.
pub async fn publish_licences(
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    decisions: &[forecast_model::LicenceDecision],
    attester: Option<&Attester>,
) -> anyhow::Result<()> {
    let records: Vec<Signed> = decisions
        .iter()
        .map(|d| Signed {
            key: d.key(),
            value: forecast_model::wire::encode_decision(d),
            what: format!("decision on {}", d.application_number),
        })
        .collect();
    publish_signed(kafka, &topics.topic_licences, &records, attester).await?;
    eprintln!(
        "{} licence decisions published to {}",
        decisions.len(),
        topics.topic_licences
    );
    Ok(())
}

/// A record `publish_signed` sends.
struct Signed {
    key: String,
    value: Vec<u8>,
    /// What it is, for the error when it is not delivered.
    what: String,
}

/// Sends `records` to `topic`, which must exist, each signed by `attester`;
/// fails on the first not delivered.
async fn publish_signed(
    kafka: &KafkaArgs,
    topic: &str,
    records: &[Signed],
    attester: Option<&Attester>,
) -> anyhow::Result<()> {
    forecast_runtime::topics::require_topic(kafka, topic).await?;
    let producer: rdkafka::producer::FutureProducer =
        forecast_kafka::producer_config(kafka).create()?;
    let mut deliveries = Vec::with_capacity(records.len());
    for r in records {
        let record = rdkafka::producer::FutureRecord::to(topic)
            .key(r.key.as_bytes())
            .payload(r.value.as_slice());
        let record = forecast_stage::headers::attested(record, attester);
        deliveries.push(forecast_kafka::enqueue(&producer, record).await?);
    }
    for (r, delivery) in records.iter().zip(deliveries) {
        delivery
            .await
            .map_err(|_| anyhow::anyhow!("the producer went away"))?
            .map_err(|(e, _)| {
                anyhow::Error::new(forecast_runtime::delivery::DeliveryFailure {
                    topic: topic.to_owned(),
                    error: e,
                })
                .context(format!("{} not published", r.what))
            })?;
    }
    Ok(())
}

/// Publishes a supply plan file to the supply topic, which must exist.
pub async fn load_supply(
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    signing: &RecordSigningArgs,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    let attester = signing.attester()?;
    let entries = forecast_planner::supply::load(file)?;
    forecast_runtime::topics::require_topic(kafka, &topics.topic_supply).await?;
    forecast_planner::supply::publish(kafka, &topics.topic_supply, &entries, attester.as_ref())
        .await?;
    eprintln!(
        "{} supply entries published to {}",
        entries.len(),
        topics.topic_supply
    );
    Ok(())
}

/// Key of the one record of `screening.lists`: compaction keeps the
/// version published last.
pub const SCREENING_KEY: &str = "list";

/// Reads a list file and publishes it as the version in force.
pub async fn load_screening(
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    signing: &RecordSigningArgs,
    version: Option<String>,
    effective_from: Option<forecast_model::Timestamp>,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    let attester = signing.attester()?;
    let list = forecast_model::screening::ScreeningList::read(
        file,
        version,
        effective_from.unwrap_or_else(forecast_model::Timestamp::now),
    )?;
    publish_screening(kafka, topics, &list, attester.as_ref()).await
}

/// Publishes a restricted-party list version to the screening topic, which
/// must exist, signed by `attester`.
pub async fn publish_screening(
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    list: &forecast_model::screening::ScreeningList,
    attester: Option<&Attester>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !list.version.is_empty() && list.version.len() <= 128,
        "a list version id must be 1 to 128 bytes long (is {})",
        list.version.len()
    );
    let value = forecast_model::wire::encode_screening_list(list);
    anyhow::ensure!(
        value.len() <= forecast_kafka::MAX_SCREENING_LIST_BYTES,
        "the list's names encode to {} bytes, over the {} one list version may have (a single record that every validator and aggregator holds whole): is the file a restricted-party list?",
        value.len(),
        forecast_kafka::MAX_SCREENING_LIST_BYTES
    );
    let topic = &topics.topic_screening;
    let record = Signed {
        key: SCREENING_KEY.into(),
        value,
        what: format!("restricted-party list {}", list.version),
    };
    publish_signed(kafka, topic, &[record], attester).await?;
    eprintln!(
        "restricted-party list {} ({} entries, sha256 {}) published to {topic}",
        list.version,
        list.entries.len(),
        list.sha256
    );
    Ok(())
}
