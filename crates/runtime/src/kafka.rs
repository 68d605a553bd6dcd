//! Kafka clients with the pipeline's settings, and topic creation.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::config::{KafkaArgs, TopicArgs};
use crate::continuity::{Admit, Change, Changes, Positions};
use crate::metrics::Metrics;

fn base(kafka: &KafkaArgs) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.brokers);
    c
}

fn finish(mut c: ClientConfig, kafka: &KafkaArgs) -> ClientConfig {
    for (k, v) in kafka.overrides() {
        c.set(k, v);
    }
    c
}

/// Largest record the services forward to the dead-letter topic with its
/// value; a larger one is dead-lettered without it (see the validator).
pub const MAX_DEAD_LETTER_BYTES: usize = 20 << 20;

/// Where readers start: offset 0, or the earliest kept when retention
/// removed it. An explicit offset, because some brokers (tansu 0.6) answer
/// the "earliest"/"latest" offset queries wrongly.
pub fn from_start() -> rdkafka::Offset {
    rdkafka::Offset::Offset(0)
}

/// The partition ids of `topic` (a consumer's or producer's `client()`);
/// empty when the topic does not exist.
pub fn partition_ids<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, KafkaError> {
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// An idempotent producer: `acks=all`, retries without reordering or
/// duplicates, deliveries reported per record. Uncompressed, batches of up
/// to 10 ms: what the producer library and `forecastctl submit` use, for
/// documents sent a few at a time, where a submit waiting for its receipt
/// waits out the batch (`-X compression.type=lz4 -X linger.ms=25` for bulk
/// submitters; a flush sends at once whatever the linger).
pub fn producer_config(kafka: &KafkaArgs) -> ClientConfig {
    idempotent_producer(kafka, "none", SUBMIT_LINGER_MS)
}

/// The services' producer: lz4 batches of up to 25 ms. Their outputs are
/// many similar records per batch (a document's copy, its verdicts,
/// snapshots), which lz4 shrinks about twelvefold: the broker keeps,
/// copies and sends that much less. The longer batches are fewer produce
/// requests under load, and tansu 0.6 pays for each (it serializes its
/// producer state on every idempotent batch): at a steady 55,000
/// documents/s on two cores the broker took 7.7 instead of 8.4 µs per
/// document, and the pipeline kept up with 25 ms and fell behind with 10
/// (docs/performance.md). At low load each of the two service hops waits
/// up to 25 ms.
pub fn service_producer_config(kafka: &KafkaArgs) -> ClientConfig {
    idempotent_producer(kafka, "lz4", SERVICE_LINGER_MS)
}

/// `linger.ms` of [`producer_config`].
pub const SUBMIT_LINGER_MS: u32 = 10;
/// `linger.ms` of [`service_producer_config`]; the consume loop's
/// default window (`--max-in-flight`) covers this much of a stage's
/// throughput with room for the produce round trip.
pub const SERVICE_LINGER_MS: u32 = 25;

fn idempotent_producer(kafka: &KafkaArgs, compression: &str, linger_ms: u32) -> ClientConfig {
    let mut c = base(kafka);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set("compression.type", compression)
        // Dead letters carry oversized records byte for byte (up to this).
        .set("message.max.bytes", MAX_DEAD_LETTER_BYTES.to_string());
    finish(c, kafka)
}

/// A consumer in `group` that stores offsets only when told to (after the
/// records produced for a message are acknowledged) and commits the stored
/// ones in the background.
///
/// `instance` is the static group membership id (KIP-345): an instance that
/// restarts with the same id takes its partitions back at once instead of
/// waiting for the group to notice the old one is gone, which some brokers
/// (tansu 0.6) never do. It must be unique per running instance.
pub fn consumer_config(kafka: &KafkaArgs, group: &str, instance: Option<&str>) -> ClientConfig {
    let mut c = base(kafka);
    if let Some(id) = instance {
        c.set("group.instance.id", id);
    }
    c.set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "10000")
        // Also the rebalance timeout: how long a join waits for members that
        // stopped without leaving (tansu 0.6 waits this long, not the session
        // timeout). The loops poll continuously, so 15 s is ample.
        .set("max.poll.interval.ms", "15000")
        // Fetch records far above the accepted size, so an oversized one is
        // read and dead-lettered instead of stalling its partition (brokers
        // without KIP-74, such as tansu 0.6, never return a batch larger
        // than the fetch size).
        .set("max.partition.fetch.bytes", "16777216")
        .set("fetch.max.bytes", "67108864")
        .set("receive.message.max.bytes", "67109376")
        // Statistics every 5 s feed the consumer-lag gauge (GroupContext).
        .set("statistics.interval.ms", "5000");
    fetch_timing(&mut c);
    finish(c, kafka)
}

/// How long a fetch may wait for records, for every consumer of the
/// pipeline.
///
/// A fetch returns after at most 20 ms when little data is waiting
/// (default 500 ms): each hop of submit -> validator -> aggregator ->
/// reader otherwise adds up to half a second.
///
/// `fetch.min.bytes` of 1 MiB (default 1 byte) is for tansu 0.6, which
/// reads a partition when the fetch arrives and, if it holds more than
/// `fetch.min.bytes`, sleeps the rest of `fetch.wait.max.ms` and answers
/// with what it read then; otherwise it reads again once the wait is over
/// and answers with that at once (tansu-storage `service/fetch.rs`). With
/// 1 byte every record waited until the next read and then 20 ms more;
/// with 1 MiB it is sent as read: 50 ms less from submit to demand over
/// the three hops at 20k-40k documents/s (docs/performance.md), and the
/// same CPU. A backlog (a first read of more than 1 MiB) is answered as
/// before, 5 MiB per fetch. On Apache Kafka, which answers as soon as
/// `fetch.min.bytes` are waiting, `-X fetch.min.bytes=1` gives the
/// earliest answer instead.
///
/// Keep it well below tansu's 5 MiB per fetch: its second read gets only
/// what the first left of that budget, so near 5 MiB a backlog's fetch
/// (a first read just under `fetch.min.bytes`) would answer with little
/// more than one batch.
fn fetch_timing(c: &mut ClientConfig) {
    c.set("fetch.wait.max.ms", "20")
        .set("fetch.min.bytes", "1048576");
}

/// Context of the services' group consumers: publishes librdkafka's
/// consumer lag as a metric, logs rebalances, and notes where each assigned
/// partition resumes (see [`crate::continuity`]).
#[derive(Debug, Clone)]
pub struct GroupContext {
    pub metrics: std::sync::Arc<Metrics>,
    pub changes: std::sync::Arc<Changes>,
}

/// Where the partitions of `tpl` resume (their committed offsets), noted
/// as changes; each partition with one is set to start reading a window
/// before it ([`crate::continuity::read_from`]), one without at its start.
/// When the broker does not answer, librdkafka finds the starts itself.
fn resume_points<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    tpl: &mut rdkafka::TopicPartitionList,
) -> Vec<Change> {
    use rdkafka::consumer::Consumer;
    let committed = consumer
        .committed_offsets(tpl.clone(), Duration::from_secs(10))
        .inspect_err(|e| {
            tracing::warn!(error = %e, "committed offsets not read; the assigned partitions resume where librdkafka finds them")
        })
        .ok();
    let partitions: Vec<(String, i32)> = tpl
        .elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect();
    let mut changes = Vec::with_capacity(partitions.len());
    for (topic, partition) in partitions {
        let from =
            committed
                .as_ref()
                .and_then(|c| match c.find_partition(&topic, partition)?.offset() {
                    rdkafka::Offset::Offset(o) => Some(o),
                    _ => None,
                });
        // With the committed offsets read, every start is explicit (a
        // partition never committed starts at 0, as `auto.offset.reset =
        // earliest` would), so librdkafka does not ask the broker again.
        let start = match from {
            Some(from) => Some(rdkafka::Offset::Offset(crate::continuity::read_from(from))),
            None if committed.is_some() => Some(from_start()),
            None => None,
        };
        // A start that could not be set leaves the resume point unknown.
        let from = match start.map(|s| tpl.set_partition_offset(&topic, partition, s)) {
            Some(Err(e)) => {
                tracing::warn!(topic, partition, error = %e, "start offset not set");
                None
            }
            _ => from,
        };
        changes.push(Change::Assigned { partition, from });
    }
    changes
}

/// `topic/partition` of each element, comma-separated.
fn describe(tpl: &rdkafka::TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
}

impl rdkafka::ClientContext for GroupContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        // Lag of the partitions this instance consumes (-1: unknown yet).
        let lags = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
            .map(|p| p.consumer_lag);
        let (mut total, mut any) = (0i64, false);
        for lag in lags {
            total += lag;
            any = true;
        }
        self.metrics.set_lag(if any { total } else { -1 });
    }
}

impl rdkafka::consumer::ConsumerContext for GroupContext {
    /// Applies a rebalance as rdkafka's default does, except that each
    /// assigned partition with a committed offset starts at an explicit
    /// offset a window before it (`resume_points`). Logs the partitions
    /// assigned or revoked: when an instance is added or removed, these
    /// lines tell that the group has rebalanced.
    fn rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        tpl: &mut rdkafka::TopicPartitionList,
    ) {
        use rdkafka::consumer::{Consumer, RebalanceProtocol};
        use rdkafka::types::RDKafkaRespErr;
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let applied = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let changes = resume_points(consumer, tpl);
                let resume: Vec<String> = changes
                    .iter()
                    .filter_map(|c| match c {
                        Change::Assigned {
                            partition,
                            from: Some(o),
                        } => Some(format!("{partition}@{o}")),
                        _ => None,
                    })
                    .collect();
                tracing::info!(partitions = %describe(tpl), committed = %resume.join(","), "partitions assigned");
                self.changes.push(changes);
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(partitions = %describe(tpl), "partitions revoked");
                self.changes
                    .push(tpl.elements().iter().map(|e| Change::Revoked {
                        partition: e.partition(),
                    }));
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::warn!(error = %RDKafkaErrorCode::from(other), "rebalance failed");
                consumer.unassign()
            }
        };
        if let Err(e) = applied {
            tracing::error!(error = %e, "the rebalance could not be applied");
        }
    }
}

/// Decides about the record at `offset` of `topic`/`partition` with
/// `positions` ([`crate::continuity`]) and acts on it: seeks `consumer`
/// back when the broker passed records over, logs and counts re-reads and
/// gaps. Returns whether to hand the record on; an error naming the
/// partition when the seek failed (the record is then dropped, and the
/// records it was to re-read are not read): the caller decides whether
/// that matters.
pub fn follow<C, K>(
    positions: &mut Positions,
    consumer: &K,
    topic: &str,
    partition: i32,
    offset: i64,
    metrics: Option<&Metrics>,
) -> anyhow::Result<bool>
where
    C: rdkafka::consumer::ConsumerContext,
    K: rdkafka::consumer::Consumer<C>,
{
    match positions.admit(partition, offset) {
        Admit::Handle => Ok(true),
        Admit::Skip => Ok(false),
        Admit::AfterGap(gap) => {
            tracing::warn!(
                topic,
                partition,
                from = gap.from,
                to = gap.to,
                "offsets with no record the broker can return ({}); going on after them",
                if gap.empty {
                    "read twice around them"
                } else {
                    "the partition now starts after them: deleted"
                }
            );
            if let Some(m) = metrics {
                m.offsets_passed(gap.to - gap.from);
            }
            Ok(true)
        }
        Admit::Rewind(to) => {
            tracing::info!(
                topic,
                partition,
                // A rewind leaves the offset expected as it was.
                expected = positions.expected(partition),
                received = offset,
                from = to,
                "the broker passed over records; reading the partition again from an earlier offset"
            );
            if let Some(m) = metrics {
                m.reread();
            }
            consumer
                .seek(
                    topic,
                    partition,
                    rdkafka::Offset::Offset(to),
                    Duration::from_secs(10),
                )
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot seek {topic}/{partition} back to offset {to} to read records the broker passed over: {e}"
                    )
                })?;
            Ok(false)
        }
    }
}

/// A consumer outside any group, for reading a topic from its start.
pub fn reader_config(kafka: &KafkaArgs) -> ClientConfig {
    let mut c = base(kafka);
    c.set("group.id", "forecast-reader")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("max.partition.fetch.bytes", "16777216")
        .set("receive.message.max.bytes", "67109376");
    fetch_timing(&mut c);
    finish(c, kafka)
}

/// Enqueues a record, waiting while the local queue is full.
pub async fn enqueue(
    producer: &FutureProducer,
    record: FutureRecord<'_, [u8], [u8]>,
) -> Result<DeliveryFuture, KafkaError> {
    // rdkafka's send gives the record back inside its error.
    #[allow(clippy::result_large_err)]
    let sent = send_waiting(record, |r| producer.send_result(r)).await;
    sent
}

/// Hands `record` to `send` (a producer's non-blocking send, which gives
/// the record back when it fails), again every 5 ms while the producer's
/// local queue is full; any other error is returned.
pub async fn send_waiting<R, T>(
    mut record: R,
    send: impl Fn(R) -> Result<T, (KafkaError, R)>,
) -> Result<T, KafkaError> {
    loop {
        match send(record) {
            Ok(sent) => return Ok(sent),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// How many partitions each topic gets when created.
#[derive(Debug, Clone, Copy)]
pub struct TopicLayout {
    pub partitions: i32,
    pub replication: i32,
}

/// Fails, naming the flag, when no broker answers within `timeout`.
pub async fn check_reachable(kafka: &KafkaArgs, timeout: Duration) -> anyhow::Result<()> {
    let config = finish(base(kafka), kafka);
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
    let admin: AdminClient<DefaultClientContext> = finish(base(kafka), kafka).create()?;
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

/// The default static membership id of a service on this host:
/// `<service>-<hostname>` (unique per container, stable across restarts).
pub fn default_instance_id(service: &str) -> Option<String> {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())?;
    Some(format!("{service}-{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(properties: &[(&str, &str)]) -> KafkaArgs {
        KafkaArgs {
            brokers: "localhost:9092".into(),
            properties: properties
                .iter()
                .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    #[test]
    fn services_compress_and_batch_longer_than_submitters() {
        let k = kafka(&[]);
        assert_eq!(
            service_producer_config(&k).get("compression.type"),
            Some("lz4")
        );
        assert_eq!(producer_config(&k).get("compression.type"), Some("none"));
        assert_eq!(producer_config(&k).get("linger.ms"), Some("10"));
        assert_eq!(service_producer_config(&k).get("linger.ms"), Some("25"));
        for c in [producer_config(&k), service_producer_config(&k)] {
            assert_eq!(c.get("enable.idempotence"), Some("true"));
            assert_eq!(c.get("acks"), Some("all"));
        }
    }

    #[test]
    fn a_property_given_with_x_overrides_the_pipelines_own() {
        let k = kafka(&[("compression.type", "zstd"), ("linger.ms", "3")]);
        for c in [producer_config(&k), service_producer_config(&k)] {
            assert_eq!(c.get("compression.type"), Some("zstd"));
            assert_eq!(c.get("linger.ms"), Some("3"));
        }
    }
}
