//! The pipeline's topics: created when missing, with their retention and
//! compaction; and a check that a broker answers.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use crate::config::TopicArgs;
use forecast_kafka::{KafkaArgs, MAX_DEAD_LETTER_BYTES, client_config};

/// How many partitions each topic gets when created.
#[derive(Debug, Clone, Copy)]
pub struct TopicLayout {
    pub partitions: i32,
    pub replication: i32,
}

/// Fails, naming the flag, when no broker answers within `timeout`.
pub async fn check_reachable(kafka: &KafkaArgs, timeout: Duration) -> anyhow::Result<()> {
    let config = client_config(kafka);
    let brokers = kafka.brokers.clone();
    tokio::task::spawn_blocking(move || {
        let client: rdkafka::consumer::BaseConsumer = config.create()?;
        rdkafka::consumer::Consumer::fetch_metadata(&client, None, timeout)
            .map(|_| ())
            .map_err(|e| {
                anyhow::anyhow!(
                    "no broker answered at {brokers} within {timeout:?} ({e}); check --brokers / FORECAST_BROKERS and any -X security settings"
                )
            })
    })
    .await?
}

/// Creates the pipeline's topics when missing; existing ones are left as they are.
pub async fn create_topics(
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    layout: TopicLayout,
) -> anyhow::Result<Vec<String>> {
    check_reachable(kafka, Duration::from_secs(15)).await?;
    // Pass-through settings (security) apply to the admin client too.
    let admin: AdminClient<DefaultClientContext> = client_config(kafka).create()?;
    let rf = || TopicReplication::Fixed(layout.replication);
    let p = layout.partitions;
    let max_dead_letter = (MAX_DEAD_LETTER_BYTES + 4096).to_string();
    let new = [
        NewTopic::new(&topics.topic_submitted, p, rf()).set("retention.ms", "604800000"),
        // The system of record for demand: kept until deleted by hand.
        NewTopic::new(&topics.topic_validated, p, rf()).set("retention.ms", "-1"),
        NewTopic::new(&topics.topic_rejected, p, rf())
            .set("retention.ms", "2592000000")
            .set("max.message.bytes", &max_dead_letter),
        NewTopic::new(&topics.topic_audit, p, rf()).set("retention.ms", "-1"),
        NewTopic::new(&topics.topic_demand, p, rf()).set("cleanup.policy", "compact"),
        // Small: one partition keeps the plan in one ordered log.
        NewTopic::new(&topics.topic_supply, 1, rf()).set("cleanup.policy", "compact"),
    ];
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let mut created = Vec::new();
    for result in admin.create_topics(new.iter(), &opts).await? {
        match result {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("cannot create topic {name}: {code}"),
        }
    }
    Ok(created)
}

/// Fails, saying how to create it, when `topic` does not exist (a reader or
/// a loader that must not create topics with the wrong settings by writing
/// to them).
pub async fn require_topic(kafka: &KafkaArgs, topic: &str) -> anyhow::Result<()> {
    check_reachable(kafka, Duration::from_secs(15)).await?;
    let config = client_config(kafka);
    let name = topic.to_owned();
    let exists = tokio::task::spawn_blocking(move || {
        let client: rdkafka::consumer::BaseConsumer = config.create()?;
        forecast_kafka::partition_ids(
            rdkafka::consumer::Consumer::client(&client),
            &name,
            Duration::from_secs(10),
        )
        .map(|ids| !ids.is_empty())
    })
    .await??;
    anyhow::ensure!(
        exists,
        "topic {topic} does not exist: run `forecastctl topics create` (or start the services) first"
    );
    Ok(())
}
