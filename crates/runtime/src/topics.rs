//! The pipeline's topics: created when missing, with their retention and
//! compaction; and a check that a broker answers.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use crate::config::TopicArgs;
use crate::failure::{Classified, Domain};
use forecast_kafka::{
    KafkaArgs, MAX_COMMIT_BYTES, MAX_DEAD_LETTER_BYTES, MAX_SCREENING_LIST_BYTES, client_config,
};

/// How many partitions each topic gets when created.
#[derive(Debug, Clone, Copy)]
pub struct TopicLayout {
    pub partitions: i32,
    pub replication: i32,
}

/// Fails, naming the flag, when no broker answers within `timeout`, with
/// the last error librdkafka reported (a refused SASL authentication, a
/// TLS failure); an authentication refused fails at once, since waiting
/// would not change it.
pub async fn check_reachable(kafka: &KafkaArgs, timeout: Duration) -> anyhow::Result<()> {
    let config = client_config(kafka);
    let brokers = kafka.brokers.clone();
    tokio::task::spawn_blocking(move || {
        let client: rdkafka::consumer::BaseConsumer<LastError> =
            config.create_with_context(LastError::default())?;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let attempt = left.min(Duration::from_secs(1));
            let error = match rdkafka::consumer::Consumer::fetch_metadata(&client, None, attempt) {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            // Serves the error callbacks (nothing is subscribed).
            let _ = client.poll(Duration::ZERO);
            let last = rdkafka::consumer::Consumer::context(&client).get();
            let authentication = last.as_ref().is_some_and(|(code, _)| {
                *code == Some(RDKafkaErrorCode::Authentication)
            });
            if authentication || left <= attempt {
                let why = last.map_or_else(String::new, |(_, reason)| format!("; librdkafka: {reason}"));
                let (domain, what) = if authentication {
                    (
                        Domain::Internal,
                        format!("the broker at {brokers} refused to authenticate this client"),
                    )
                } else {
                    (
                        Domain::Broker,
                        format!("no broker answered at {brokers} within {timeout:?} ({error})"),
                    )
                };
                return Err(Classified::new(
                    domain,
                    format!("{what}{why}; check --brokers / FORECAST_BROKERS and the security settings (-X, FORECAST_KAFKA_*: credentials, SASL mechanism)"),
                )
                .into());
            }
        }
    })
    .await?
}

/// A client context that keeps the most telling error librdkafka reported
/// (its code, if any, and reason), for [`check_reachable`] to say why no
/// broker answered: the latest error, except that "all brokers are down"
/// never replaces the error before it, and a connection's failure ("FAIL":
/// reset by the peer, refused, a TLS error) is kept only when there is no
/// error yet.
#[derive(Default)]
struct LastError(std::sync::Mutex<Option<(Option<RDKafkaErrorCode>, String)>>);

impl LastError {
    fn kept(&self) -> std::sync::MutexGuard<'_, Option<(Option<RDKafkaErrorCode>, String)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self) -> Option<(Option<RDKafkaErrorCode>, String)> {
        self.kept().clone()
    }
}

impl rdkafka::ClientContext for LastError {
    /// Logs as rdkafka does, keeping a connection's failure.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", "{fac} {log_message}")
            }
            L::Warning => tracing::warn!(target: "librdkafka", "{fac} {log_message}"),
            L::Notice | L::Info => tracing::info!(target: "librdkafka", "{fac} {log_message}"),
            L::Debug => tracing::debug!(target: "librdkafka", "{fac} {log_message}"),
        }
        if fac == "FAIL" {
            let mut kept = self.kept();
            if kept.is_none() {
                *kept = Some((None, log_message.to_owned()));
            }
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        let mut kept = self.kept();
        if code != Some(RDKafkaErrorCode::AllBrokersDown) || kept.is_none() {
            *kept = Some((code, reason.to_owned()));
        }
    }
}

impl rdkafka::consumer::ConsumerContext for LastError {}

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
    let max_list = (MAX_SCREENING_LIST_BYTES + 4096).to_string();
    let max_commit = (MAX_COMMIT_BYTES + 4096).to_string();
    let new = [
        // The broker's clock, not the sender's, in each record's timestamp:
        // the validator's submitted_at skew check compares against it
        // (docs/security.md, "Stolen key").
        NewTopic::new(&topics.topic_submitted, p, rf())
            .set("retention.ms", "604800000")
            .set("message.timestamp.type", "LogAppendTime"),
        // The system of record for demand: kept until deleted by hand.
        NewTopic::new(&topics.topic_validated, p, rf()).set("retention.ms", "-1"),
        NewTopic::new(&topics.topic_rejected, p, rf())
            .set("retention.ms", "2592000000")
            .set("max.message.bytes", &max_dead_letter),
        NewTopic::new(&topics.topic_audit, p, rf()).set("retention.ms", "-1"),
        NewTopic::new(&topics.topic_demand, p, rf()).set("cleanup.policy", "compact"),
        NewTopic::new(&topics.topic_licence_demand, p, rf()).set("cleanup.policy", "compact"),
        // Small: one partition keeps the plan in one ordered log.
        NewTopic::new(&topics.topic_supply, 1, rf()).set("cleanup.policy", "compact"),
        // Read whole by every reader (a table, not a stream): one partition,
        // the latest decision per application kept.
        NewTopic::new(&topics.topic_licences, 1, rf()).set("cleanup.policy", "compact"),
        // One key, the list in force: a whole list version is one record.
        NewTopic::new(&topics.topic_screening, 1, rf())
            .set("cleanup.policy", "compact")
            .set("max.message.bytes", &max_list),
        // One record per customer, the commit in force: read whole by the
        // planner and the allocator.
        NewTopic::new(&topics.topic_commits, 1, rf())
            .set("cleanup.policy", "compact")
            .set("max.message.bytes", &max_commit),
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
