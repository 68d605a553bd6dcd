//! Reading compacted topics whole, as tables: from their start to their
//! current end, then following them. What `forecastctl demand` reads, and
//! the licence decisions every aggregator holds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use forecast_kafka::{KafkaArgs, from_start, partition_ids, reader_config};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, TopicPartitionList};

/// How long the topics must stay quiet, once the reported ends are
/// reached, before reading stops. Works around a broker bug: tansu 0.6
/// reports a high watermark below the last record, so the watermark is
/// only a lower bound of the end.
const QUIET: Duration = Duration::from_millis(1000);

/// Reads `topics` from their start to their current end, handing every
/// record to `on_record`; returns the reader, positioned after them, to
/// follow the topics with. Fails when a topic does not exist, or when no
/// record arrives for `timeout` before the end is reached (a topic of any
/// length is read, however long that takes, as long as it moves: the
/// allocator reads the whole of `forecasts.validated` this way, at the
/// pace its consumer of `on_record` takes them).
pub fn read_to_end(
    kafka: &KafkaArgs,
    topics: &[&str],
    timeout: Duration,
    mut on_record: impl FnMut(&BorrowedMessage<'_>),
) -> anyhow::Result<BaseConsumer> {
    let reader: BaseConsumer = reader_config(kafka).create()?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for topic in topics {
        let partitions = partition_ids(reader.client(), topic, timeout)?;
        anyhow::ensure!(!partitions.is_empty(), "topic {topic} does not exist");
        for p in &partitions {
            tpl.add_partition_offset(topic, *p, from_start())?;
            let (low, high) = reader.fetch_watermarks(topic, *p, timeout)?;
            if high > low {
                ends.insert((topic.to_string(), *p), high);
            }
        }
    }
    reader.assign(&tpl)?;
    let mut last = Instant::now();
    loop {
        if !ends.is_empty() && last.elapsed() > timeout {
            anyhow::bail!(
                "reading {} to the end: no record arrived for {timeout:?}",
                topics.join(", ")
            );
        }
        match reader.poll(Duration::from_millis(100)) {
            Some(m) => {
                let m = m?;
                on_record(&m);
                let key = (m.topic().to_owned(), m.partition());
                if ends.get(&key).is_some_and(|end| m.offset() + 1 >= *end) {
                    ends.remove(&key);
                }
                last = Instant::now();
            }
            None if ends.is_empty() && last.elapsed() >= QUIET => return Ok(reader),
            None => {}
        }
    }
}
