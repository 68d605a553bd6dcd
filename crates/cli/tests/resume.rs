//! A service resuming in the middle of a record batch. tansu 0.6 as
//! released answered a fetch from an offset inside a batch with the batches
//! that start after it, so a validator taking over a partition whose
//! committed offset fell inside a batch missed the rest of that batch (the
//! scaling fault scenario lost 165 records that way). The broker everything
//! runs returns the batch holding the offset (deploy/tansu.patch), the
//! services resume at the committed offset and drop the batch's records
//! before it, and seek back when records still arrive past the offset
//! expected (`forecast_runtime::continuity`). These tests hold on either
//! broker.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use forecast_model::{Registry, Stage, wire};
use forecast_tests::processes::pipeline::{Pipeline, RESTRICTED, http_get};
use forecast_tests::processes::*;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

/// A broker with one-partition topics, and a validator group that stopped
/// at an offset inside a batch of `forecasts.submitted`.
struct Resume {
    broker: Broker,
    names: Names,
    dir: PathBuf,
}

impl Resume {
    fn new(test: &str) -> Resume {
        let (broker, names, dir) = broker_with_topics(test, "resume", 1);
        Resume { broker, names, dir }
    }

    fn submitted(&self) -> String {
        self.names.topic("forecasts.submitted")
    }

    /// Commits `offset` for the validators' group, as a validator scaled
    /// away in the middle of a batch does, and says what the broker serves
    /// from there.
    fn commit(&self, offset: i64) {
        let topic = self.submitted();
        let group = format!("validate-{}", self.names.suffix);
        commit_offset(&self.broker.brokers, &group, &topic, 0, offset);
        eprintln!(
            "asked for offset {offset} inside a batch, the broker served {}",
            first_offset_served(&self.broker.brokers, &topic, offset)
                .map_or("nothing".to_owned(), |o| format!("offset {o} first"))
        );
    }

    /// Runs a validator until the offsets it judged are `want` (at most
    /// 90 s); fails naming what it judged wrongly. Returns its metrics.
    fn validate(&self, want: &BTreeSet<i64>) -> String {
        let restricted = conformance().join("restricted.csv");
        let http = free_addr();
        let mut validator = spawn_service(
            "validate",
            &self.broker,
            &self.names,
            &[RESTRICTED, restricted.to_str().unwrap(), "--http", &http],
            &self.dir.join("validator.log"),
        );
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut got = self.judged();
        while got != *want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(1));
            got = self.judged();
        }
        let metrics = http_get(&http, "/metrics").1;
        let _ = validator.kill();
        let _ = validator.wait();
        let log = std::fs::read_to_string(self.dir.join("validator.log")).unwrap_or_default();
        let again: Vec<&i64> = got.difference(want).collect();
        assert!(
            again.is_empty(),
            "{} records before the committed offset were judged again (first {:?}):\n{log}",
            again.len(),
            again.first()
        );
        let missing: Vec<&i64> = want.difference(&got).collect();
        assert!(
            missing.is_empty(),
            "{} records after the committed offset were never judged (first {:?}):\n{log}",
            missing.len(),
            missing.first()
        );
        metrics
    }

    /// Source offsets of the validator's verdicts in the audit topic.
    fn judged(&self) -> BTreeSet<i64> {
        read_all(
            &self.broker.brokers,
            &self.names.topic("forecasts.audit"),
            Duration::from_secs(1),
        )
        .iter()
        .filter_map(|r| wire::decode_verdict(r.value.as_deref()?, Registry::embedded()).ok())
        .filter(|v| v.stage != Stage::Sequence)
        .filter_map(|v| v.source.map(|s| s.offset))
        .collect()
    }
}

impl Drop for Resume {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The offset of the first record a plain consumer gets when it asks for
/// `offset` (`None`: nothing within 5 s).
fn first_offset_served(brokers: &str, topic: &str, offset: i64) -> Option<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "resume-probe")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
        .unwrap();
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            return Some(m.offset());
        }
    }
    None
}

/// A counter's value in a `/metrics` text (0 when absent).
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_validator_resuming_inside_a_batch_judges_the_rest_of_it() {
    const DOCUMENTS: i64 = 300;
    const COMMITTED: i64 = 100;
    let r = Resume::new("resume");
    // One producer batch: the documents wait in the producer for up to 2 s.
    let file = r.dir.join("documents.jsonl");
    let lines: Vec<String> = (0..DOCUMENTS)
        .map(|k| Pipeline::sample_document(&format!("TEN-RESUME-{k}")).to_string())
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let mut args = r
        .names
        .command(&["submit", "-X", "linger.ms=2000"], &r.broker.brokers);
    args.push(file.display().to_string());
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    r.commit(COMMITTED);
    r.validate(&(COMMITTED..DOCUMENTS).collect());
}

#[test]
fn a_validator_resuming_inside_a_batch_of_12_000_records_judges_the_rest_of_it() {
    // 12,000 one-byte records (each dead-lettered and audited as
    // undecodable) in one batch, then one more in a batch of its own; the
    // group committed 11,000. A broker that serves the batch holding the
    // offset (the one everything here runs) gives the first batch; one
    // that passes it over (tansu 0.6 as released) gives the second, and the
    // validator must seek back 10,000 records and read the rest of the
    // first. Either way offsets 11,000..=12,000 are judged once.
    const FIRST: i64 = 12_000;
    const COMMITTED: i64 = 11_000;
    let r = Resume::new("resume-long");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &r.broker.brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5000")
        .set("batch.num.messages", "100000")
        .create()
        .unwrap();
    let topic = r.submitted();
    for _ in 0..FIRST {
        producer
            .send(BaseRecord::<[u8], [u8]>::to(&topic).payload(b"x"))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    producer
        .send(BaseRecord::<[u8], [u8]>::to(&topic).payload(b"y"))
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
    r.commit(COMMITTED);
    let metrics = r.validate(&(COMMITTED..=FIRST).collect());
    let passed_over = first_offset_served(&r.broker.brokers, &topic, COMMITTED - 10_000)
        .is_some_and(|o| o > COMMITTED);
    if passed_over {
        assert!(
            counter(&metrics, "forecast_consumer_rereads_total") >= 1,
            "the broker passed the batch over, yet the validator never read again:\n{metrics}"
        );
    }
    assert_eq!(
        counter(&metrics, "forecast_consumer_offsets_passed_total"),
        0,
        "{metrics}"
    );
}
