//! Side inputs: a topic of signed or attested records (licence decisions,
//! restricted-party lists, the supply plan; the allocator's whole
//! `forecasts.validated`) that a service holds whole beside, or instead
//! of, a topic it consumes in a group. A thread of its own reads the topic
//! to its end, says so, then follows it, sending every record it believes,
//! decoded, to the service through a bounded channel: a service slower
//! than the topic holds the thread back, it does not buffer the topic.

use std::time::Duration;

use forecast_kafka::KafkaArgs;
use forecast_model::attest::Verifier;
use forecast_model::{DecodeError, Registry};
use rdkafka::Message;
use rdkafka::message::BorrowedMessage;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use forecast_runtime::metrics::Metrics;
use forecast_runtime::table;

use crate::headers;

/// How long a service waits at start for a side input so far before it
/// consumes; later records are taken as they arrive.
pub const SIDE_WAIT: Duration = Duration::from_secs(30);

/// A side-input topic and how its records are believed and read.
#[derive(Debug, Clone)]
pub struct SideTopic<T> {
    pub kafka: KafkaArgs,
    pub topic: String,
    /// What one record is, for logs (`licence decision`).
    pub what: &'static str,
    /// Who must have signed a record (the others are refused, counted in
    /// `forecast_unattested_records` and logged at the 1st, 2nd, 4th...).
    pub signed_by: Verifier,
    pub decode: Decode<T>,
    /// What a refused record (not signed by a key of `signed_by`) is
    /// passed on as, from its key, when the service must know of it (the
    /// allocator re-asserts a commit something else overwrote); `None`:
    /// nothing.
    pub refused: Option<fn(&[u8]) -> T>,
}

/// How a side input's record is read: from its key and value (`None`: a
/// tombstone) to what the service takes (`Ok(None)`: nothing, e.g. a
/// tombstone of a topic whose records are replaced, never deleted).
pub type Decode<T> = fn(&[u8], Option<&[u8]>, &Registry) -> Result<Option<T>, String>;

/// Records a side input's thread may decode ahead of the service.
pub const SIDE_CHANNEL: usize = 4096;

/// A [`Decode`] body for a topic of Avro values whose tombstones mean
/// nothing.
pub fn values<T>(
    value: Option<&[u8]>,
    registry: &Registry,
    decode: fn(&[u8], &Registry) -> Result<T, DecodeError>,
) -> Result<Option<T>, String> {
    value
        .map(|v| decode(v, registry))
        .transpose()
        .map_err(|e| e.to_string())
}

/// A side input being followed.
#[derive(Debug)]
pub struct Following<T> {
    /// Every record believed, decoded, in topic order.
    pub records: mpsc::Receiver<T>,
    /// Completes once the topic was read to its end.
    pub caught_up: oneshot::Receiver<()>,
    /// The thread; it ends once `records` is dropped or the token is
    /// cancelled.
    pub thread: std::thread::JoinHandle<()>,
}

impl<T: Send + 'static> SideTopic<T> {
    /// Starts following the topic on a thread of its own.
    pub fn follow(
        self,
        metrics: std::sync::Arc<Metrics>,
        token: CancellationToken,
    ) -> std::io::Result<Following<T>> {
        let (tx, records) = mpsc::channel(SIDE_CHANNEL);
        let (read, caught_up) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(self.topic.clone())
            .spawn(move || {
                self.run(
                    &tx,
                    || {
                        let _ = read.send(());
                    },
                    &token,
                    &metrics,
                )
            })?;
        Ok(Following {
            records,
            caught_up,
            thread,
        })
    }

    /// Starts following the topic on a thread of its own, sending every
    /// record believed, decoded, to `tx` (a channel several side inputs
    /// may share), and `end` after the last record the topic held when it
    /// was read to its end. The thread ends once `tx`'s receiver is gone
    /// or `token` is cancelled.
    pub fn follow_into(
        self,
        tx: mpsc::Sender<T>,
        end: T,
        metrics: std::sync::Arc<Metrics>,
        token: CancellationToken,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name(self.topic.clone())
            .spawn(move || {
                let ended = tx.clone();
                self.run(
                    &tx,
                    move || {
                        let _ = ended.blocking_send(end);
                    },
                    &token,
                    &metrics,
                )
            })
    }

    /// Reads the topic to its end (then calls `read`), then follows it,
    /// sending every record believed to `tx`, until `token` is cancelled or
    /// the receiver is gone. A topic that cannot be read is retried every
    /// 5 s; an undecodable record is logged and skipped.
    fn run(
        &self,
        tx: &mpsc::Sender<T>,
        read: impl FnOnce(),
        token: &CancellationToken,
        metrics: &Metrics,
    ) {
        let (topic, what) = (self.topic.as_str(), self.what);
        let take = |m: &BorrowedMessage<'_>| {
            if let Err(e) = headers::verify(m, &self.signed_by) {
                let n = metrics.unattested(topic);
                if Metrics::worth_logging(n) {
                    tracing::warn!(topic, partition = m.partition(), offset = m.offset(), reason = %e, count = n, "{what} refused: not signed by a key it must be signed with (logged at the 1st, 2nd, 4th...; forecast_unattested_records counts all)");
                }
                if let Some(refused) = self.refused {
                    let _ = tx.blocking_send(refused(m.key().unwrap_or_default()));
                }
                return;
            }
            match (self.decode)(
                m.key().unwrap_or_default(),
                m.payload(),
                Registry::embedded(),
            ) {
                Ok(Some(record)) => {
                    // Waits while the service is behind; an error is a
                    // service gone, which the loops below see.
                    let _ = tx.blocking_send(record);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(topic, partition = m.partition(), offset = m.offset(), error = %e, "undecodable {what} skipped");
                }
            }
        };
        let reader = loop {
            if token.is_cancelled() || tx.is_closed() {
                return;
            }
            match table::read_to_end(&self.kafka, &[topic], SIDE_WAIT, take) {
                Ok(reader) => break reader,
                Err(e) => {
                    tracing::warn!(topic, error = %format!("{e:#}"), "cannot read the {what}s; retrying in 5 s");
                    std::thread::sleep(Duration::from_secs(5));
                }
            }
        };
        read();
        while !token.is_cancelled() && !tx.is_closed() {
            match reader.poll(Duration::from_millis(500)) {
                Some(Ok(m)) => take(&m),
                // librdkafka recovers by itself.
                Some(Err(e)) => {
                    tracing::warn!(topic, error = %e, "{what}s: consumer error; retrying")
                }
                None => {}
            }
        }
    }
}

impl<T> Following<T> {
    /// The records so far, once the topic was read to its end or
    /// [`SIDE_WAIT`] passed (then later ones come through `records`).
    pub async fn so_far(&mut self, topic: &str, what: &str) -> Vec<T> {
        let mut so_far = Vec::new();
        let read = self.until_caught_up(SIDE_WAIT, |r| so_far.push(r)).await;
        if read {
            tracing::info!(count = so_far.len(), topic, "{what}s read");
        } else {
            tracing::warn!(
                topic,
                "{what}s not read to their end within {SIDE_WAIT:?}; consuming anyway, they apply when they arrive"
            );
        }
        so_far
    }

    /// Gives `take` every record until the topic was read to its end (then
    /// true) or `wait` passed (false). Records are taken as they come, so a
    /// topic longer than the channel is read too.
    pub async fn until_caught_up(&mut self, wait: Duration, mut take: impl FnMut(T)) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                biased;
                Some(r) = self.records.recv() => take(r),
                done = &mut self.caught_up => {
                    // Everything before the end was sent before it said so.
                    while let Ok(r) = self.records.try_recv() {
                        take(r);
                    }
                    return done.is_ok();
                }
                () = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }
}
