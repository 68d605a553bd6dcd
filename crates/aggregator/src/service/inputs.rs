//! The aggregator's inputs besides the record it handles: a partition's
//! state restored from the partition's start (the side inputs are
//! `forecast_stage::side`'s).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use forecast_kafka::{KafkaArgs, reader_config};
use forecast_model::attest::Verifier;
use forecast_model::{DecodeError, ForecastDocument, Registry, SourceCoordinates, Timestamp, wire};
use forecast_runtime::config::TopicArgs;
use forecast_runtime::continuity::Positions;
use forecast_runtime::group::follow;
use forecast_stage::headers;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, TopicPartitionList};

use super::{PartitionState, Sides, seeded};
use crate::state::DemandState;

/// The state of partition `p`, ready for the record at offset `o`: rebuilt
/// from the partition's start when continuity broke, with the decisions of
/// `sides`; then each of its customers is noted in `republish`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn restored<'p>(
    partitions: &'p mut HashMap<i32, PartitionState>,
    sides: &Sides,
    republish: &mut BTreeMap<(i32, String), Timestamp>,
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    believed: &Verifier,
    p: i32,
    o: i64,
) -> anyhow::Result<&'p mut PartitionState> {
    let part = partitions
        .entry(p)
        .or_insert_with(|| PartitionState::new(sides));
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
            seeded(sides),
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

/// The submitted record a validated one came from (`topic/partition/offset`).
pub(super) fn source_of(m: &BorrowedMessage<'_>) -> Option<SourceCoordinates> {
    headers::source_from(headers::value(m, headers::SOURCE)?)
}
