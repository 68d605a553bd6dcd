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
    match consumer.store_offset(topic, partition, offset) {
        Ok(()) => {}
        // The partition was taken away (a rebalance, or a session that
        // timed out while the broker was unreachable): its new owner reads
        // the record again from the last committed offset. Its outputs are
        // already written; readers drop the repeat by source coordinates
        // and sequencing makes it a DUPLICATE, so nothing counts twice.
        Err(KafkaError::StoreOffset(RDKafkaErrorCode::State)) => {
            tracing::debug!(
                topic,
                partition,
                offset,
                "partition no longer assigned here; its next owner reads the record again"
            );
        }
        Err(e) => return Err(e.into()),
    }
    metrics.latency(received.elapsed());
    Ok(())
}

/// Commits what is stored before the process ends.
fn final_commit(consumer: &GroupConsumer) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last automatic commit.
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => {
            tracing::warn!(error = %e, "final commit failed; the next owner re-reads from the last committed offsets")
        }
    }
}

/// Records in flight: the consume loop of a service. `next` returns the
/// next record to handle (storing offsets in order as records settle,
/// keeping at most `max` waiting), `push` adds the handled record, and
/// `finish` settles what is left, flushes and commits.
///
/// ```ignore
/// let mut flight = InFlight::new(max_in_flight);
/// while let Some(m) = flight.next(&consumer, topic, &metrics, &token).await {
///     if !flight.add(handle(&m).await) {
///         break;
///     }
/// }
/// flight.finish(&consumer, &producer, topic, &metrics).await
/// ```
pub struct InFlight {
    queue: futures::stream::FuturesOrdered<
        std::pin::Pin<Box<dyn std::future::Future<Output = Settled> + Send>>,
    >,
    max: usize,
    failure: Option<anyhow::Error>,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("len", &self.queue.len())
            .field("max", &self.max)
            .finish()
    }
}

impl InFlight {
    /// At most `max` records waiting for their outputs.
    pub fn new(max: usize) -> Self {
        Self {
            queue: futures::stream::FuturesOrdered::new(),
            max: max.max(1),
            failure: None,
        }
    }

    /// The next record to handle; `None` once `token` is cancelled or an
    /// output could not be delivered (then `finish` returns the error).
    pub async fn next<'c>(
        &mut self,
        consumer: &'c GroupConsumer,
        topic: &str,
        metrics: &Metrics,
        token: &tokio_util::sync::CancellationToken,
    ) -> Option<rdkafka::message::BorrowedMessage<'c>> {
        use futures::stream::StreamExt;
        loop {
            tokio::select! {
                biased;
                _ = token.cancelled() => return None,
                Some(done) = self.queue.next(), if !self.queue.is_empty() => {
                    if let Err(e) = store(consumer, topic, done, metrics) {
                        self.failure = Some(e);
                        return None;
                    }
                }
                message = consumer.recv(), if self.queue.len() < self.max => match message {
                    Ok(m) => {
                        metrics.record_in();
                        return Some(m);
                    }
                    Err(e) => tracing::warn!(error = %e, "consumer error; retrying"),
                },
            }
        }
    }

    /// A handled record, waiting for its outputs; or the error that stops
    /// the loop (then `next` returns `None`). Returns whether to go on.
    pub fn add(&mut self, handled: anyhow::Result<Pending>) -> bool {
        match handled {
            Ok(pending) => {
                self.queue.push_back(Box::pin(pending.settle()));
                true
            }
            Err(e) => {
                self.failure = Some(e);
                false
            }
        }
    }

    /// Settles what is in flight, flushes the producer and commits the
    /// stored offsets; returns the first failure, if any.
    pub async fn finish(
        mut self,
        consumer: &GroupConsumer,
        producer: &rdkafka::producer::FutureProducer,
        topic: &str,
        metrics: &Metrics,
    ) -> anyhow::Result<()> {
        use futures::stream::StreamExt;
        use rdkafka::producer::Producer;
        if self.failure.is_none() {
            while let Some(done) = self.queue.next().await {
                if let Err(e) = store(consumer, topic, done, metrics) {
                    self.failure = Some(e);
                    break;
                }
            }
        }
        if let Err(e) = producer.flush(std::time::Duration::from_secs(30)) {
            self.failure.get_or_insert(e.into());
        }
        final_commit(consumer);
        metrics.set_ready(false);
        self.failure.map_or(Ok(()), Err)
    }
}
