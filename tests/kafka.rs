//! Reading and writing topics from a test, outside the pipeline.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// One record of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// A header's value as text.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// Every record of `topic`: read up to the high watermark each partition
/// reported when reading began, then until the topic has been quiet for
/// `quiet` (a record produced meanwhile is read too). A slow first fetch
/// (a broker reading a large backlog from disk) is waited for, up to two
/// minutes.
///
/// # Panics
/// When the broker does not answer, the topic does not exist, or the
/// reported end is not reached within two minutes.
pub fn read_all(brokers: &str, topic: &str, quiet: Duration) -> Vec<Record> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "e2e-reader")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("max.partition.fetch.bytes", "16777216")
        .set("receive.message.max.bytes", "67109376")
        .create()
        .expect("a consumer");
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    let mut ends = std::collections::HashMap::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Offset(0))
            .expect("a partition");
        let (_, high) = c
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .expect("watermarks");
        if high > 0 {
            ends.insert(p.id(), high);
        }
    }
    c.assign(&tpl).expect("assigned");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut out = Vec::new();
    let mut last = Instant::now();
    while !ends.is_empty() || last.elapsed() < quiet {
        assert!(
            Instant::now() < deadline,
            "{topic}: the reported end of partitions {ends:?} not reached in 2 minutes"
        );
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.expect("a record");
            if ends
                .get(&m.partition())
                .is_some_and(|end| m.offset() + 1 >= *end)
            {
                ends.remove(&m.partition());
            }
            out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default(),
            });
            last = Instant::now();
        }
    }
    out
}

/// A raw record: key and value, either possibly null.
pub type RawRecord<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Produces raw records (poison pills) straight to a topic.
///
/// # Panics
/// When a record is not delivered within 30 s.
pub fn produce_raw(brokers: &str, topic: &str, records: &[RawRecord<'_>]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("message.max.bytes", "10000000")
        .create()
        .expect("a producer");
    for (key, value) in records {
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        if let Some(k) = key {
            r = r.key(k);
        }
        if let Some(v) = value {
            r = r.payload(v);
        }
        p.send(r).map_err(|(e, _)| e).expect("queued");
    }
    p.flush(Duration::from_secs(30)).expect("delivered");
}

/// Produces one record with `headers` (key, value), as any client may.
///
/// # Panics
/// When the broker does not take it.
pub fn produce_with_headers(
    brokers: &str,
    topic: &str,
    key: &[u8],
    value: &[u8],
    headers: &[(&str, &str)],
) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .create()
        .expect("a producer");
    let mut owned = OwnedHeaders::new();
    for (k, v) in headers {
        owned = owned.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    let r: BaseRecord<'_, [u8], [u8]> =
        BaseRecord::to(topic).key(key).payload(value).headers(owned);
    p.send(r).map_err(|(e, _)| e).expect("queued");
    p.flush(Duration::from_secs(30)).expect("delivered");
}

/// Commits `offset` (the next record to read) for `group` on `topic`
/// partition `partition`, as a member of the group that stopped there would.
///
/// # Panics
/// When the broker does not take the commit.
pub fn commit_offset(brokers: &str, group: &str, topic: &str, partition: i32, offset: i64) {
    use rdkafka::consumer::CommitMode;
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .expect("a partition");
    c.commit(&tpl, CommitMode::Sync).expect("committed");
}
