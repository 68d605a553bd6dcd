//! The aggregator's inputs besides the record it handles: the licence
//! decisions, followed on a thread of their own, and a partition's state
//! restored from the partition's start.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use forecast_kafka::{KafkaArgs, reader_config};
use forecast_model::attest::Verifier;
use forecast_model::{
    DecodeError, ForecastDocument, LicenceDecision, LicenceRegister, Registry, SourceCoordinates,
    Timestamp, wire,
};
use forecast_runtime::config::TopicArgs;
use forecast_runtime::continuity::Positions;
use forecast_runtime::group::follow;
use forecast_runtime::headers;
use forecast_runtime::metrics::Metrics;
use forecast_runtime::table;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::{DECISIONS_WAIT, PartitionState, seeded};
use crate::state::DemandState;

/// Reads `licences.decisions` to its end (then `read` is sent), then
/// follows it, sending every decision to `tx`, until `token` is cancelled
/// or the receiver is gone. A topic that cannot be read is retried every
/// 5 s; an undecodable record is logged and skipped; a tombstone is
/// ignored (a decision is replaced by a later one, never deleted); one
/// that `signed_by` does not believe (not signed by a compliance key) is
/// logged, counted and refused.
pub(super) fn follow_decisions(
    kafka: &KafkaArgs,
    topic: &str,
    tx: &tokio::sync::mpsc::UnboundedSender<LicenceDecision>,
    read: tokio::sync::oneshot::Sender<()>,
    token: &CancellationToken,
    signed_by: &Verifier,
    metrics: &Metrics,
) {
    let take = |m: &BorrowedMessage<'_>| {
        let Some(value) = m.payload() else { return };
        if let Err(e) = headers::verify(m, signed_by) {
            let n = metrics.unattested(topic);
            if Metrics::worth_logging(n) {
                tracing::warn!(topic, partition = m.partition(), offset = m.offset(), reason = %e, count = n, "licence decision refused: not signed by a compliance key (logged at the 1st, 2nd, 4th...; forecast_unattested_records counts all)");
            }
            return;
        }
        match wire::decode_decision(value, Registry::embedded()) {
            Ok(d) => {
                let _ = tx.send(d);
            }
            Err(e) => {
                tracing::warn!(topic, partition = m.partition(), offset = m.offset(), error = %e, "undecodable licence decision skipped");
            }
        }
    };
    let reader = loop {
        if token.is_cancelled() || tx.is_closed() {
            return;
        }
        match table::read_to_end(kafka, &[topic], DECISIONS_WAIT, take) {
            Ok(reader) => break reader,
            Err(e) => {
                tracing::warn!(topic, error = %format!("{e:#}"), "cannot read the licence decisions; retrying in 5 s");
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
                tracing::warn!(topic, error = %e, "licence decisions: consumer error; retrying")
            }
            None => {}
        }
    }
}

/// The state of partition `p`, ready for the record at offset `o`: rebuilt
/// from the partition's start when continuity broke, with the decisions of
/// `register`; then each of its customers is noted in `republish`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn restored<'p>(
    partitions: &'p mut HashMap<i32, PartitionState>,
    register: &LicenceRegister,
    republish: &mut BTreeMap<(i32, String), Timestamp>,
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    believed: &Verifier,
    p: i32,
    o: i64,
) -> anyhow::Result<&'p mut PartitionState> {
    let part = partitions
        .entry(p)
        .or_insert_with(|| PartitionState::new(register));
    if part.next != o {
        // Outputs of records before `o` were produced by whoever read them.
        tracing::info!(
            partition = p,
            from = part.next,
            to = o,
            "restoring partition state"
        );
        let started = Instant::now();
        let state = restore(
            kafka.clone(),
            topics.topic_validated.clone(),
            p,
            o,
            seeded(register),
            believed.clone(),
        )
        .await?;
        tracing::info!(
            partition = p,
            documents = state.live_documents(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "restored"
        );
        let now = Timestamp::now();
        for customer in state.customers() {
            republish.insert((p, customer.to_owned()), now);
        }
        *part = PartitionState { state, next: o };
    }
    Ok(part)
}

/// `state` after applying the records of `partition` before `until` that
/// `believed` believes (the others were dead-lettered when first read).
async fn restore(
    kafka: KafkaArgs,
    topic: String,
    partition: i32,
    until: i64,
    mut state: DemandState,
    believed: Verifier,
) -> anyhow::Result<DemandState> {
    tokio::task::spawn_blocking(move || {
        if until <= 0 {
            return Ok(state);
        }
        let reader: BaseConsumer = reader_config(&kafka).create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, partition, forecast_kafka::from_start())?;
        reader.assign(&tpl)?;
        let mut decoder = Decoder::default();
        let mut idle = Instant::now();
        // Offsets must follow one another up to `until`: records the broker
        // passed over are read again (forecast_runtime::continuity).
        let mut positions = Positions::default();
        loop {
            match reader.poll(Duration::from_millis(500)) {
                Some(Ok(m)) => {
                    if !follow(&mut positions, &reader, &topic, partition, m.offset(), None)? {
                        continue;
                    }
                    if m.offset() >= until {
                        break;
                    }
                    if headers::verify(&m, &believed).is_err() {
                        // Dead-lettered when the aggregator first read it.
                    } else if let Ok((doc, digest)) =
                        decoder.decode(m.payload().unwrap_or_default())
                    {
                        state.apply_digested(doc, digest);
                    }
                    if m.offset() + 1 >= until {
                        break;
                    }
                    idle = Instant::now();
                }
                Some(Err(e)) => anyhow::bail!("cannot read {topic}/{partition} to restore its state: {e}"),
                None if idle.elapsed() > Duration::from_secs(60) => {
                    anyhow::bail!("no record of {topic}/{partition} below offset {until} arrived for 60 s while restoring")
                }
                None => {}
            }
        }
        Ok(state)
    })
    .await?
}

/// Decodes validated records, each into the document the one before it
/// was decoded into, so that its strings and vectors are reused; with
/// each its content digest, read off the record. Only what sequencing
/// and the audit verdict use is read: the other strings (free text,
/// references, the horizon) stay empty.
#[derive(Debug, Default)]
pub struct Decoder {
    document: ForecastDocument,
}

impl Decoder {
    pub fn decode(&mut self, record: &[u8]) -> Result<(&ForecastDocument, [u8; 16]), DecodeError> {
        let digest =
            wire::decode_sequencing_digest(record, Registry::embedded(), &mut self.document)?;
        Ok((&self.document, digest))
    }
}

pub(super) fn header<'a>(m: &'a BorrowedMessage<'_>, key: &str) -> Option<&'a str> {
    m.headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// The submitted record a validated one came from (`topic/partition/offset`).
pub(super) fn source_of(m: &BorrowedMessage<'_>) -> Option<SourceCoordinates> {
    let mut parts = header(m, headers::SOURCE)?.rsplitn(3, '/');
    let offset = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    Some(SourceCoordinates {
        topic: parts.next()?.to_owned(),
        partition,
        offset,
    })
}
