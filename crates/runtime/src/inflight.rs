//! The at-least-once bookkeeping both services share: a consumer in a group
//! with the lag gauge, records in flight until every output is
//! acknowledged, and offsets stored only then.

use std::sync::Arc;
use std::time::Instant;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::DeliveryFuture;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaArgs;
use crate::kafka::{LagContext, consumer_config, default_instance_id};
use crate::metrics::Metrics;

/// The consumer the services use.
pub type GroupConsumer = StreamConsumer<LagContext>;

/// A consumer of `topic` in `group`. `instance`: the static membership id
/// (`none` turns it off; default `<service>-<hostname>`).
pub fn group_consumer(
    kafka: &KafkaArgs,
    topic: &str,
    group: &str,
    instance: Option<&str>,
    service: &str,
    metrics: &Arc<Metrics>,
) -> Result<GroupConsumer, KafkaError> {
    let instance = match instance {
        Some("none") => None,
        Some(id) => Some(id.to_owned()),
        None => default_instance_id(service),
    };
    let context = LagContext {
        metrics: metrics.clone(),
    };
    let consumer: GroupConsumer =
        consumer_config(kafka, group, instance.as_deref()).create_with_context(context)?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

/// A consumed record whose outputs are on their way.
pub struct Pending {
    pub partition: i32,
    pub offset: i64,
    pub received: Instant,
    pub deliveries: Vec<DeliveryFuture>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("deliveries", &self.deliveries.len())
            .finish()
    }
}

/// A record whose outputs are all acknowledged, or the first that failed.
#[derive(Debug)]
pub struct Settled {
    partition: i32,
    offset: i64,
    received: Instant,
    result: anyhow::Result<()>,
}

impl Pending {
    /// Waits for every delivery of this record.
    pub async fn settle(self) -> Settled {
        let mut result = Ok(());
        for d in self.deliveries {
            match d.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, m))) => {
                    result = Err(anyhow::anyhow!(
                        "delivery to {} failed: {e}",
                        rdkafka::Message::topic(&m)
                    ));
                    break;
                }
                Err(_) => {
                    result = Err(anyhow::anyhow!("the producer dropped a delivery"));
                    break;
                }
            }
        }
        Settled {
            partition: self.partition,
            offset: self.offset,
            received: self.received,
            result,
        }
    }
}

/// Stores the offset of a settled record (committed in the background),
/// or says why it must be read again.
pub fn store(
    consumer: &GroupConsumer,
    topic: &str,
    s: Settled,
    metrics: &Metrics,
) -> anyhow::Result<()> {
    let Settled {
        partition,
        offset,
        received,
        result,
    } = s;
    result.map_err(|e| {
        e.context(format!(
            "record {topic}/{partition}@{offset} not stored; it will be read again"
        ))
    })?;
    consumer.store_offset(topic, partition, offset)?;
    metrics.latency(received.elapsed());
    Ok(())
}

/// Commits what is stored before the process ends.
pub fn final_commit(consumer: &GroupConsumer) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last automatic commit.
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => {
            tracing::warn!(error = %e, "final commit failed; the next owner re-reads from the last committed offsets")
        }
    }
}
