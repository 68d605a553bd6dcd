//! A batch of consumed records and the outputs made for them: what the
//! producer's delivery reports count against, and which record an output
//! refused for good belongs to.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::task::AtomicWaker;
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, FutureRecord, ProducerContext, ThreadedProducer,
};

use crate::delivery::{DeliveryFailure, Domain};
use forecast_kafka::KafkaArgs;

/// The services' producer: idempotent, lz4
/// ([`forecast_kafka::service_producer_config`]),
/// its deliveries counted per [`Batch`] rather than reported by a future
/// per record (one allocation, channel and wake-up per output saved).
pub type BatchProducer = ThreadedProducer<AckContext>;

/// A producer for [`Batch::send`].
pub fn batch_producer(kafka: &KafkaArgs) -> Result<BatchProducer, KafkaError> {
    forecast_kafka::service_producer_config(kafka).create_with_context(AckContext)
}

/// Producer context of [`BatchProducer`]: each delivery report counts
/// against the batch its record was sent for.
#[derive(Debug, Clone, Copy)]
pub struct AckContext;

impl rdkafka::ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Box<Sent>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Sent>) {
        if let Err((e, m)) = result {
            sent.acks.failed(
                sent.record,
                DeliveryFailure {
                    topic: m.topic().to_owned(),
                    error: e.clone(),
                },
            );
        }
        sent.acks.ack();
    }
}

/// What a delivery report counts against: its batch, and the consumed
/// record the output was made for (`None`: an output covering the whole
/// batch, as the aggregator's snapshots).
#[derive(Debug)]
pub struct Sent {
    acks: Arc<Acks>,
    record: Option<Consumed>,
}

/// A consumed record whose output the broker refused for good (too large,
/// invalid): trying again cannot help, so the record is dead-lettered
/// instead ([`Handler::refused`](super::Handler::refused)) and its partition moves on.
#[derive(Debug, Clone)]
pub struct Refused {
    pub partition: i32,
    pub offset: i64,
    pub failure: DeliveryFailure,
}

/// The acknowledgements a batch waits for: one count per output sent and
/// not yet reported, plus one while the batch is still open for outputs,
/// so the count reaches zero only once the batch is complete and every
/// output is reported. The first failure is kept; refusals of a record's
/// own outputs are kept apart, one per record.
#[derive(Debug)]
pub struct Acks {
    pub(super) pending: AtomicUsize,
    failure: Mutex<Option<DeliveryFailure>>,
    refused: Mutex<Vec<Refused>>,
    waker: AtomicWaker,
}

impl Default for Acks {
    fn default() -> Self {
        Self {
            pending: AtomicUsize::new(1),
            failure: Mutex::new(None),
            refused: Mutex::new(Vec::new()),
            waker: AtomicWaker::new(),
        }
    }
}

impl Acks {
    /// One output more to wait for.
    pub(super) fn expect(&self) {
        self.pending.fetch_add(1, Ordering::Relaxed);
    }

    /// One output reported (or the batch closed): wakes the waiter at zero.
    pub(super) fn ack(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.waker.wake();
        }
    }

    /// An output failed: a refusal of a record's own output when the
    /// broker refused the record itself, else a failure of the batch.
    pub(super) fn failed(&self, record: Option<Consumed>, failure: DeliveryFailure) {
        match record {
            Some(c) if failure.domain() == Domain::BadData => {
                let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
                if !refused
                    .iter()
                    .any(|r| (r.partition, r.offset) == (c.partition, c.offset))
                {
                    refused.push(Refused {
                        partition: c.partition,
                        offset: c.offset,
                        failure,
                    });
                }
            }
            _ => {
                let mut first = self.failure.lock().unwrap_or_else(|e| e.into_inner());
                first.get_or_insert(failure);
            }
        }
    }

    /// Closes the batch and waits until every output is reported; the first
    /// failure, if any.
    pub(super) async fn settled(&self) -> Result<(), DeliveryFailure> {
        self.ack();
        std::future::poll_fn(|cx| {
            self.waker.register(cx.waker());
            if self.pending.load(Ordering::Acquire) == 0 {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        let failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.clone().map_or(Ok(()), Err)
    }

    pub(super) fn take_refused(&self) -> Vec<Refused> {
        std::mem::take(&mut *self.refused.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Records consumed together and every record produced for them: they
/// settle together, and their offsets are stored only once every output is
/// acknowledged. A batch lets a service write one output for several
/// records (the aggregator's demand snapshots) without storing an offset
/// before the output that covers its record is acknowledged.
#[derive(Debug, Default)]
pub struct Batch {
    /// Each consumed record, in consumption order.
    records: Vec<Consumed>,
    acks: Arc<Acks>,
    /// The record being handled, whose outputs [`Batch::send`] makes;
    /// `None` while the outputs covering the batch are made.
    current: Option<Consumed>,
}

impl Batch {
    /// Adds a consumed record, the one handled next.
    pub(super) fn consumed(&mut self, partition: i32, offset: i64) {
        let c = Consumed {
            partition,
            offset,
            received: Instant::now(),
        };
        self.records.push(c);
        self.current = Some(c);
    }

    /// From now on, outputs cover the whole batch.
    pub(super) fn covering(&mut self) {
        self.current = None;
    }

    /// Sends an output that must be acknowledged before the batch settles,
    /// waiting while the producer's local queue is full.
    ///
    /// An output of the record being handled that the producer refuses at
    /// once for good (over `message.max.bytes`, say) is not an error here:
    /// like one the broker refuses later, it makes the record
    /// [`Refused`], dead-lettered once the batch settles. Any other failure
    /// is returned, and stops the service.
    pub async fn send(
        &mut self,
        producer: &BatchProducer,
        record: FutureRecord<'_, [u8], [u8]>,
    ) -> Result<(), KafkaError> {
        let topic = record.topic;
        let record = BaseRecord {
            topic: record.topic,
            partition: record.partition,
            payload: record.payload,
            key: record.key,
            timestamp: record.timestamp,
            headers: record.headers,
            delivery_opaque: Box::new(Sent {
                acks: self.acks.clone(),
                record: self.current,
            }),
        };
        self.acks.expect();
        // rdkafka's send gives the record back inside its error.
        #[allow(clippy::result_large_err)]
        let sent = forecast_kafka::send_waiting(record, |r| producer.send(r)).await;
        if let Err(error) = sent {
            // Never handed over: no report will count it.
            self.acks.ack();
            let failure = DeliveryFailure {
                topic: topic.to_owned(),
                error,
            };
            if self.current.is_some() && failure.domain() == Domain::BadData {
                self.acks.failed(self.current, failure);
                return Ok(());
            }
            return Err(failure.error);
        }
        Ok(())
    }

    /// Records consumed.
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    /// Waits for every delivery of this batch.
    pub(super) async fn settle(self) -> Settled {
        let result = self.acks.settled().await.map_err(anyhow::Error::new);
        Settled {
            records: self.records,
            refused: self.acks.take_refused(),
            result,
        }
    }
}

/// A batch whose outputs are all acknowledged, or the first that failed;
/// with the records whose own outputs were refused.
#[derive(Debug)]
pub(super) struct Settled {
    pub(super) records: Vec<Consumed>,
    pub(super) refused: Vec<Refused>,
    pub(super) result: anyhow::Result<()>,
}

/// A consumed record: where it was and when it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Consumed {
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) received: Instant,
}
