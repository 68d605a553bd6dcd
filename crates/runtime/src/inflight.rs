//! The at-least-once bookkeeping both services share: a consumer in a group
//! with the lag gauge, records in flight until every output is
//! acknowledged, and offsets stored only then.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaErrorCode;

mod batch;
use batch::Settled;
pub use batch::{AckContext, Acks, Batch, BatchProducer, Consumed, Refused, Sent, batch_producer};

use crate::continuity::Positions;
use crate::group::{GroupContext, default_instance_id, follow};
use crate::metrics::Metrics;
use forecast_kafka::{KafkaArgs, consumer_config};
use tokio_util::sync::CancellationToken;

/// The consumer the services use.
pub type GroupConsumer = StreamConsumer<GroupContext>;

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
    let context = GroupContext {
        metrics: metrics.clone(),
        changes: Arc::default(),
    };
    let consumer: GroupConsumer =
        consumer_config(kafka, group, instance.as_deref()).create_with_context(context)?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

/// The last record consumed of each partition, in the order partitions
/// were last seen: storing its offset leaves the consumer where storing
/// every record's in turn would (after a rebalance mid-batch a partition
/// may even restart lower, and then the lower offset is the right one).
fn last_per_partition(records: &[Consumed]) -> Vec<(i32, i64)> {
    let mut last: Vec<(i32, i64)> = Vec::new();
    for c in records.iter().rev() {
        if !last.iter().any(|&(p, _)| p == c.partition) {
            last.push((c.partition, c.offset));
        }
    }
    last
}

/// Stores the offsets of a settled batch (committed in the background),
/// or says why its records must be read again.
fn store(
    consumer: &GroupConsumer,
    topic: &str,
    s: Settled,
    metrics: &Metrics,
) -> anyhow::Result<()> {
    let Settled {
        records, result, ..
    } = s;
    result.map_err(|e| {
        let at = |c: Option<&Consumed>| {
            c.map_or(String::new(), |c| format!("{}@{}", c.partition, c.offset))
        };
        e.context(format!(
            "{} record(s) of {topic} ({} .. {}) not stored; they will be read again",
            records.len(),
            at(records.first()),
            at(records.last())
        ))
    })?;
    for (partition, offset) in last_per_partition(&records) {
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
    }
    // One clock read for the batch: all its records settle now.
    let now = Instant::now();
    metrics.latencies(
        records
            .iter()
            .map(|c| now.saturating_duration_since(c.received)),
    );
    Ok(())
}

/// Dead-letters the records of a settled batch whose own outputs were
/// refused ([`Handler::refused`]) and waits until every dead letter is
/// acknowledged; an error when one is not (then nothing is stored).
async fn dead_letter_refused<H: Handler>(
    topic: &str,
    done: &Settled,
    handler: &mut H,
) -> anyhow::Result<()> {
    if done.refused.is_empty() || done.result.is_err() {
        return Ok(());
    }
    let mut letters = Batch::default();
    for r in &done.refused {
        tracing::error!(
            topic,
            partition = r.partition,
            offset = r.offset,
            error = %r.failure,
            "the broker refused an output of this record for good; the record is dead-lettered and its partition moves on"
        );
        handler.refused(topic, r, &mut letters).await?;
    }
    letters.settle().await.result.map_err(|e| {
        e.context("the dead letter of a record whose outputs were refused was not delivered")
    })
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

/// Who a service is on the broker: what [`FlightArgs::serve`] joins.
#[derive(Debug, Clone, Copy)]
pub struct Service<'a> {
    pub kafka: &'a KafkaArgs,
    /// The topic it consumes.
    pub topic: &'a str,
    /// Its consumer group.
    pub group: &'a str,
    /// Its static membership id (see [`group_consumer`]).
    pub instance: Option<&'a str>,
    /// Its name, in logs and the default instance id.
    pub name: &'static str,
    pub metrics: &'a Arc<Metrics>,
}

/// How many records a service handles at once.
#[derive(Debug, Clone, clap::Args)]
pub struct FlightArgs {
    /// Records handled at once, waiting for their outputs to be acknowledged.
    #[arg(long, env = "FORECAST_MAX_IN_FLIGHT", default_value_t = FlightArgs::MAX_IN_FLIGHT, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,
    /// Most records handled as one batch. A batch takes only records already
    /// fetched (it never waits for more); outputs that cover several records,
    /// the aggregator's demand snapshots, are written once per batch.
    #[arg(long, env = "FORECAST_MAX_BATCH", default_value_t = FlightArgs::MAX_BATCH, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_batch: u32,
}

impl Default for FlightArgs {
    fn default() -> Self {
        Self {
            max_in_flight: Self::MAX_IN_FLIGHT,
            max_batch: Self::MAX_BATCH,
        }
    }
}

impl FlightArgs {
    /// Default of `--max-in-flight`: a stage's outputs wait up to
    /// `linger.ms` (25 ms, [`forecast_kafka::SERVICE_LINGER_MS`]) plus a
    /// produce round trip before they are acknowledged, and 20,000 records
    /// cover 200,000 records/s over 100 ms of that.
    pub const MAX_IN_FLIGHT: u32 = 20_000;
    /// Default of `--max-batch`.
    pub const MAX_BATCH: u32 = 500;

    /// An empty consume loop with these bounds.
    pub fn in_flight(&self) -> InFlight {
        InFlight::new(self.max_in_flight as usize, self.max_batch as usize)
    }

    /// Runs a service: joins its group on its topic (see [`Service`] and
    /// [`group_consumer`]), says it is ready, and hands every record to
    /// `handler` until `token` is cancelled or an output cannot be
    /// delivered.
    pub async fn serve<H: Handler + Send>(
        &self,
        service: &Service<'_>,
        producer: &BatchProducer,
        token: &CancellationToken,
        handler: &mut H,
    ) -> anyhow::Result<()> {
        self.serve_with_side(service, producer, token, &mut Alone(handler))
            .await
    }

    /// [`serve`](Self::serve) for a handler with side input.
    pub async fn serve_with_side<H: SideInput>(
        &self,
        service: &Service<'_>,
        producer: &BatchProducer,
        token: &CancellationToken,
        handler: &mut H,
    ) -> anyhow::Result<()> {
        let Service {
            kafka,
            topic,
            group,
            instance,
            name: service,
            metrics,
        } = *service;
        let consumer = group_consumer(kafka, topic, group, instance, service, metrics)?;
        metrics.set_ready(true);
        let result = self
            .in_flight()
            .run_with_side(&consumer, producer, topic, metrics, token, handler)
            .await;
        if result.is_ok() {
            tracing::info!(service, "stopped");
        }
        result
    }
}

/// What a service does with the records it consumes.
pub trait Handler {
    /// Handles one consumed record, adding what it produced for it to
    /// `batch` (the record itself is already in it). An error stops the
    /// service; the batch's offsets are not stored.
    fn handle(
        &mut self,
        m: &BorrowedMessage<'_>,
        batch: &mut Batch,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Sees a batch's records before they are handled one by one, in
    /// order: what the handler may work out for all of them at once, on
    /// every core (the validator's signatures), keeping it for
    /// [`handle`](Self::handle). Default: nothing.
    fn prepare(&mut self, records: &[BorrowedMessage<'_>]) {
        let _ = records;
    }

    /// Adds the outputs that cover the whole batch, once its last record is
    /// handled (the aggregator's demand snapshots). Default: none.
    fn flush(&mut self, batch: &mut Batch) -> impl Future<Output = anyhow::Result<()>> + Send {
        let _ = batch;
        async { Ok(()) }
    }

    /// Adds to `batch` a dead letter for a record of `topic` whose own
    /// output the broker refused for good ([`Refused`]: too large,
    /// invalid); once it is acknowledged, the record's offset is stored and
    /// its partition moves on, so that no record stops the service.
    /// Default: an error, which stops the service (the record is read again
    /// on restart).
    fn refused(
        &mut self,
        topic: &str,
        refused: &Refused,
        batch: &mut Batch,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        let _ = (topic, batch);
        let error = anyhow::Error::new(refused.failure.clone());
        async move { Err(error) }
    }
}

/// A handler with input from elsewhere than the topic it consumes (the
/// aggregator's licence decisions), taken between two batches.
pub trait SideInput: Handler {
    /// Whether [`take`](Self::take) also runs after partitions are
    /// assigned (the aggregator restores them at once, so that a side
    /// input taken meanwhile reaches their outputs). Default: no.
    const ON_ASSIGN: bool = false;

    /// Completes when there is side input to take; awaited beside the
    /// consumer, so it must be cancel safe.
    fn ready(&mut self) -> impl Future<Output = ()> + Send;

    /// Takes that input between two batches, adding its outputs to `batch`
    /// (which has no consumed record; [`Handler::flush`] follows).
    /// `assigned`: each assigned partition whose next offset is known, with
    /// it.
    fn take(
        &mut self,
        assigned: &[(i32, i64)],
        batch: &mut Batch,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A handler without side input, as the loop runs it.
struct Alone<'h, H>(&'h mut H);

impl<H: Handler + Send> Handler for Alone<'_, H> {
    fn handle(
        &mut self,
        m: &BorrowedMessage<'_>,
        batch: &mut Batch,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        self.0.handle(m, batch)
    }

    fn prepare(&mut self, records: &[BorrowedMessage<'_>]) {
        self.0.prepare(records);
    }

    fn flush(&mut self, batch: &mut Batch) -> impl Future<Output = anyhow::Result<()>> + Send {
        self.0.flush(batch)
    }

    fn refused(
        &mut self,
        topic: &str,
        refused: &Refused,
        batch: &mut Batch,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        self.0.refused(topic, refused, batch)
    }
}

impl<H: Handler + Send> SideInput for Alone<'_, H> {
    fn ready(&mut self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }

    fn take(
        &mut self,
        assigned: &[(i32, i64)],
        batch: &mut Batch,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        let _ = (assigned, batch);
        async { Ok(()) }
    }
}

/// What the consume loop handles next.
enum Next<'c> {
    Record(BorrowedMessage<'c>),
    /// [`Handler::side`].
    Side,
}

/// Records in flight: the consume loop of a service. Records are handled
/// in order, in batches of those already fetched (at most `max_batch`);
/// a batch's offsets are stored once all its outputs are acknowledged,
/// batches in order, with at most `max` records waiting.
///
/// Batches form on their own under load and stay single records when the
/// stream is slow: a batch never waits for a record, so it adds no latency
/// of its own.
pub struct InFlight {
    queue: futures::stream::FuturesOrdered<
        std::pin::Pin<Box<dyn std::future::Future<Output = Settled> + Send>>,
    >,
    /// Records in the queue's batches.
    records: usize,
    max: usize,
    max_batch: usize,
    /// Where each assigned partition goes on: records the broker passed
    /// over are read again.
    positions: Positions,
    failure: Option<anyhow::Error>,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("batches", &self.queue.len())
            .field("records", &self.records)
            .field("max", &self.max)
            .field("max_batch", &self.max_batch)
            .finish()
    }
}

impl InFlight {
    /// At most `max` records waiting for their outputs, in batches of at
    /// most `max_batch` (both at least 1; a batch at most `max`).
    pub fn new(max: usize, max_batch: usize) -> Self {
        let max = max.max(1);
        Self {
            queue: futures::stream::FuturesOrdered::new(),
            records: 0,
            max,
            max_batch: max_batch.clamp(1, max),
            positions: Positions::default(),
            failure: None,
        }
    }

    /// Stores the offsets of a settled batch, once the records whose outputs
    /// were refused are dead-lettered; false (and the failure kept) when it
    /// failed.
    async fn settled<H: Handler>(
        &mut self,
        consumer: &GroupConsumer,
        topic: &str,
        done: Settled,
        metrics: &Metrics,
        handler: &mut H,
    ) -> bool {
        self.records -= done.records.len();
        let stored = match dead_letter_refused(topic, &done, handler).await {
            Ok(()) => store(consumer, topic, done, metrics),
            Err(e) => Err(e),
        };
        match stored {
            Ok(()) => true,
            Err(e) => {
                self.failure = Some(e);
                false
            }
        }
    }

    /// Runs the consume loop until `token` is cancelled or an output cannot
    /// be delivered, then settles what is in flight, flushes and commits.
    pub async fn run<H: Handler + Send>(
        self,
        consumer: &GroupConsumer,
        producer: &BatchProducer,
        topic: &str,
        metrics: &Metrics,
        token: &CancellationToken,
        handler: &mut H,
    ) -> anyhow::Result<()> {
        self.run_with_side(
            consumer,
            producer,
            topic,
            metrics,
            token,
            &mut Alone(handler),
        )
        .await
    }

    /// [`run`](Self::run) for a handler with side input.
    pub async fn run_with_side<H: SideInput>(
        mut self,
        consumer: &GroupConsumer,
        producer: &BatchProducer,
        topic: &str,
        metrics: &Metrics,
        token: &CancellationToken,
        handler: &mut H,
    ) -> anyhow::Result<()> {
        while let Some(next) = self.next(consumer, topic, metrics, token, handler).await {
            let mut batch = Batch::default();
            let handled = match next {
                Next::Side => {
                    consumer.context().changes.apply_to(&mut self.positions);
                    let assigned = self.positions.known();
                    match handler.take(&assigned, &mut batch).await {
                        Ok(()) => handler.flush(&mut batch).await,
                        Err(e) => Err(e),
                    }
                }
                Next::Record(m) => {
                    // The batch: the records already fetched.
                    let mut records = vec![m];
                    while let Some(next) = self.more(consumer, topic, records.len(), metrics) {
                        records.push(next);
                    }
                    handler.prepare(&records);
                    let mut handled = Ok(());
                    for m in &records {
                        batch.consumed(m.partition(), m.offset());
                        if let Err(e) = handler.handle(m, &mut batch).await {
                            handled = Err(e);
                            break;
                        }
                    }
                    match handled {
                        Ok(()) => {
                            batch.covering();
                            handler.flush(&mut batch).await
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            if !self.add(handled.map(|()| batch)) {
                break;
            }
        }
        self.finish(consumer, producer, topic, metrics, handler)
            .await
    }

    /// The next record to handle, or side input; `None` once `token` is
    /// cancelled or an output could not be delivered (then `finish`
    /// returns the error).
    async fn next<'c, H: SideInput>(
        &mut self,
        consumer: &'c GroupConsumer,
        topic: &str,
        metrics: &Metrics,
        token: &CancellationToken,
        handler: &mut H,
    ) -> Option<Next<'c>> {
        use futures::stream::StreamExt;
        if self.failure.is_some() {
            return None;
        }
        loop {
            tokio::select! {
                biased;
                _ = token.cancelled() => return None,
                Some(done) = self.queue.next(), if !self.queue.is_empty() => {
                    if !self.settled(consumer, topic, done, metrics, handler).await {
                        return None;
                    }
                }
                () = handler.ready() => return Some(Next::Side),
                () = consumer.context().changes.assigned(), if H::ON_ASSIGN => {
                    return Some(Next::Side);
                }
                message = consumer.recv(), if self.records < self.max => match message {
                    Ok(m) => {
                        if let ControlFlow::Break(m) = self.admitted(consumer, topic, m, metrics) {
                            return m.map(Next::Record);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "consumer error; retrying"),
                },
            }
        }
    }

    /// [`InFlight::admit`] as the loops use it: `Break(Some(m))` to hand
    /// `m` on, `Break(None)` to stop (the failure kept), `Continue` to read
    /// on.
    fn admitted<'c>(
        &mut self,
        consumer: &GroupConsumer,
        topic: &str,
        m: BorrowedMessage<'c>,
        metrics: &Metrics,
    ) -> ControlFlow<Option<BorrowedMessage<'c>>> {
        match self.admit(consumer, topic, &m, metrics) {
            Ok(true) => ControlFlow::Break(Some(m)),
            Ok(false) => ControlFlow::Continue(()),
            Err(e) => {
                self.failure = Some(e);
                ControlFlow::Break(None)
            }
        }
    }

    /// Whether to hand `m` on: not when it was handed on already, or when
    /// the broker passed over records before it (the partition is then
    /// sought back to read them; see [`crate::continuity`]).
    fn admit(
        &mut self,
        consumer: &GroupConsumer,
        topic: &str,
        m: &BorrowedMessage<'_>,
        metrics: &Metrics,
    ) -> anyhow::Result<bool> {
        consumer.context().changes.apply_to(&mut self.positions);
        let (partition, offset) = (m.partition(), m.offset());
        match follow(
            &mut self.positions,
            consumer,
            topic,
            partition,
            offset,
            Some(metrics),
        ) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(e) => {
                let assigned = consumer
                    .assignment()
                    .is_ok_and(|a| a.find_partition(topic, partition).is_some());
                if assigned {
                    return Err(
                        e.context("the records after the last commit are read again on restart")
                    );
                }
                // Revoked meanwhile: its next owner reads from the last commit.
                tracing::debug!(topic, partition, error = %e, "seek on a partition revoked meanwhile");
                return Ok(false);
            }
        }
        metrics.record_in();
        Ok(true)
    }

    /// The next record for `batch` if one is already fetched and the batch
    /// and the records in flight are below their bounds; never waits.
    fn more<'c>(
        &mut self,
        consumer: &'c GroupConsumer,
        topic: &str,
        taken: usize,
        metrics: &Metrics,
    ) -> Option<BorrowedMessage<'c>> {
        use futures::FutureExt;
        if taken >= self.max_batch || self.records + taken >= self.max {
            return None;
        }
        loop {
            match consumer.recv().now_or_never()? {
                Ok(m) => {
                    // After a failure, `next` returns `None` once this
                    // batch is added.
                    if let ControlFlow::Break(m) = self.admitted(consumer, topic, m, metrics) {
                        return m;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "consumer error; retrying");
                    return None;
                }
            }
        }
    }

    /// A handled batch, waiting for its outputs; or the error that stops
    /// the loop (then `next` returns `None`). Returns whether to go on.
    fn add(&mut self, handled: anyhow::Result<Batch>) -> bool {
        match handled {
            Ok(batch) => {
                self.records += batch.len();
                self.queue.push_back(Box::pin(batch.settle()));
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
    async fn finish<H: Handler>(
        mut self,
        consumer: &GroupConsumer,
        producer: &BatchProducer,
        topic: &str,
        metrics: &Metrics,
        handler: &mut H,
    ) -> anyhow::Result<()> {
        use futures::stream::StreamExt;
        if self.failure.is_none() {
            while let Some(done) = self.queue.next().await {
                if !self.settled(consumer, topic, done, metrics, handler).await {
                    break;
                }
            }
        }
        // Both wait on the broker: off the async worker.
        if let Err(e) =
            crate::supervise::blocking(|| producer.flush(std::time::Duration::from_secs(30)))
        {
            self.failure.get_or_insert(e.into());
        }
        crate::supervise::blocking(|| final_commit(consumer));
        metrics.set_ready(false);
        self.failure.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests;
