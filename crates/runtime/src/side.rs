//! Side inputs: a compacted topic of signed records (licence decisions,
//! restricted-party lists) that a service holds whole beside the topic it
//! consumes. A thread of its own reads the topic to its end, says so, then
//! follows it, sending every record it believes, decoded, to the service.

use std::time::Duration;

use forecast_kafka::KafkaArgs;
use forecast_model::attest::Verifier;
use forecast_model::{DecodeError, Registry};
use rdkafka::Message;
use rdkafka::message::BorrowedMessage;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::headers;
use crate::metrics::Metrics;
use crate::table;

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
    pub decode: fn(&[u8], &Registry) -> Result<T, DecodeError>,
}

/// A side input being followed.
#[derive(Debug)]
pub struct Following<T> {
    /// Every record believed, decoded, in topic order.
    pub records: mpsc::UnboundedReceiver<T>,
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
        let (tx, records) = mpsc::unbounded_channel();
        let (read, caught_up) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(self.topic.clone())
            .spawn(move || self.run(&tx, read, &token, &metrics))?;
        Ok(Following {
            records,
            caught_up,
            thread,
        })
    }

    /// Reads the topic to its end (then `read` is sent), then follows it,
    /// sending every record believed to `tx`, until `token` is cancelled or
    /// the receiver is gone. A topic that cannot be read is retried every
    /// 5 s; an undecodable record is logged and skipped; a tombstone is
    /// ignored (a record is replaced by a later one, never deleted).
    fn run(
        &self,
        tx: &mpsc::UnboundedSender<T>,
        read: oneshot::Sender<()>,
        token: &CancellationToken,
        metrics: &Metrics,
    ) {
        let (topic, what) = (self.topic.as_str(), self.what);
        let take = |m: &BorrowedMessage<'_>| {
            let Some(value) = m.payload() else { return };
            if let Err(e) = headers::verify(m, &self.signed_by) {
                let n = metrics.unattested(topic);
                if Metrics::worth_logging(n) {
                    tracing::warn!(topic, partition = m.partition(), offset = m.offset(), reason = %e, count = n, "{what} refused: not signed by a key it must be signed with (logged at the 1st, 2nd, 4th...; forecast_unattested_records counts all)");
                }
                return;
            }
            match (self.decode)(value, Registry::embedded()) {
                Ok(record) => {
                    let _ = tx.send(record);
                }
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
        let _ = read.send(());
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
        match tokio::time::timeout(SIDE_WAIT, &mut self.caught_up).await {
            Ok(Ok(())) => {
                while let Ok(r) = self.records.try_recv() {
                    so_far.push(r);
                }
                tracing::info!(count = so_far.len(), topic, "{what}s read");
            }
            _ => tracing::warn!(
                topic,
                "{what}s not read to their end within {SIDE_WAIT:?}; consuming anyway, they apply when they arrive"
            ),
        }
        so_far
    }
}
