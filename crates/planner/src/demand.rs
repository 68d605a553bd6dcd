//! Reading demand back from `demand.by-customer` (the aggregators' compacted
//! topic): to its end, then following it. What `forecastctl demand` (and
//! its `--watch`) and `forecastctl up` show.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use forecast_kafka::{KafkaArgs, from_start, partition_ids, reader_config};
use forecast_model::demand::DemandView;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, TopicPartitionList};

/// Takes a record of the demand topic into `view`; an undecodable one is
/// logged and skipped. Returns whether the view may have changed.
pub fn apply(view: &mut DemandView, key: &[u8], value: Option<&[u8]>) -> bool {
    view.update(key, value)
        .inspect_err(|e| tracing::warn!(error = %e, "undecodable demand snapshot skipped"))
        .unwrap_or(false)
}

/// How long the topic must stay quiet, once the reported end is reached,
/// before reading stops. Some Kafka-protocol brokers (tansu 0.6) report a
/// high watermark below the last record, so the watermark is only a lower
/// bound of the end.
const QUIET: Duration = Duration::from_millis(1000);

/// Reads the demand topic from its start to its current end.
pub fn read_to_end(
    kafka: &KafkaArgs,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<(DemandView, BaseConsumer)> {
    let reader: BaseConsumer = reader_config(kafka).create()?;
    let partitions = partition_ids(reader.client(), topic, timeout)?;
    if partitions.is_empty() {
        anyhow::bail!(
            "topic {topic} does not exist (is the aggregator running against these --brokers?)"
        );
    }
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, from_start())?;
        let (low, high) = reader.fetch_watermarks(topic, *p, timeout)?;
        if high > low {
            ends.insert(*p, high);
        }
    }
    reader.assign(&tpl)?;
    let mut view = DemandView::default();
    let deadline = Instant::now() + timeout;
    let mut last = Instant::now();
    loop {
        if Instant::now() > deadline {
            anyhow::bail!("reading {topic} to its end took longer than {timeout:?}");
        }
        match reader.poll(Duration::from_millis(100)) {
            Some(m) => {
                let m = m?;
                apply(&mut view, m.key().unwrap_or_default(), m.payload());
                if ends
                    .get(&m.partition())
                    .is_some_and(|end| m.offset() + 1 >= *end)
                {
                    ends.remove(&m.partition());
                }
                last = Instant::now();
            }
            None if ends.is_empty() && last.elapsed() >= QUIET => return Ok((view, reader)),
            None => {}
        }
    }
}

/// A record of the demand topic: its key and value (`None`: a tombstone).
pub type DemandRecord = (Vec<u8>, Option<Vec<u8>>);

/// Reads what `reader` (as [`read_to_end`] left it) receives next: up to
/// 10,000 records, waiting up to 500 ms for the first. Blocking.
pub fn next_changes(reader: &BaseConsumer) -> anyhow::Result<Vec<DemandRecord>> {
    let mut got = Vec::new();
    while let Some(m) = reader.poll(Duration::from_millis(if got.is_empty() { 500 } else { 0 })) {
        let m = m?;
        got.push((
            m.key().unwrap_or_default().to_vec(),
            m.payload().map(<[u8]>::to_vec),
        ));
        if got.len() >= 10_000 {
            break;
        }
    }
    Ok(got)
}
