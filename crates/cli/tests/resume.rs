//! A service resuming in the middle of a record batch. tansu 0.6 answers a
//! fetch from an offset inside a batch with the batches that start after
//! it, so a validator taking over a partition whose committed offset fell
//! inside a batch used to miss the rest of that batch: the scaling fault
//! scenario lost 165 records that way. The services read a resumed
//! partition from further back and drop what was committed
//! (`forecast_runtime::continuity`).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::pipeline::{Pipeline, RESTRICTED};
use common::*;
use forecast_model::{Registry, Stage, wire};

const DOCUMENTS: i64 = 300;
const COMMITTED: i64 = 100;

/// The offset of the first record a plain consumer gets when it asks for
/// `offset` (`None`: nothing within 5 s).
fn first_offset_served(brokers: &str, topic: &str, offset: i64) -> Option<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
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

/// Source offsets of the validator's verdicts in the audit topic.
fn judged(brokers: &str, names: &Names) -> BTreeSet<i64> {
    read_all(
        brokers,
        &names.topic("forecasts.audit"),
        Duration::from_secs(1),
    )
    .iter()
    .filter_map(|r| wire::decode_verdict(r.value.as_deref()?, Registry::embedded()).ok())
    .filter(|v| v.stage != Stage::Sequence)
    .filter_map(|v| v.source.map(|s| s.offset))
    .collect()
}

#[test]
fn a_validator_resuming_inside_a_batch_judges_the_rest_of_it() {
    let broker = Broker::start();
    let names = Names::new("resume");
    let dir = std::env::temp_dir().join(format!("forecast-resume-{}", names.suffix));
    std::fs::create_dir_all(&dir).unwrap();
    let mut args = names.command(&["topics", "create"], &broker.brokers);
    args.extend(["--partitions".into(), "1".into()]);
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // One producer batch: the documents wait in the producer for up to 2 s.
    let file = dir.join("documents.jsonl");
    let lines: Vec<String> = (0..DOCUMENTS)
        .map(|k| Pipeline::sample_document(&format!("TEN-RESUME-{k}")).to_string())
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let mut args = names.command(&["submit", "-X", "linger.ms=2000"], &broker.brokers);
    args.push(file.display().to_string());
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The group stopped inside the batch, as a validator scaled away does.
    let submitted = names.topic("forecasts.submitted");
    commit_offset(
        &broker.brokers,
        &format!("validate-{}", names.suffix),
        &submitted,
        0,
        COMMITTED,
    );
    let served = first_offset_served(&broker.brokers, &submitted, COMMITTED);
    eprintln!(
        "asked for offset {COMMITTED} inside the batch, the broker served {}",
        served.map_or("nothing".to_owned(), |o| format!("offset {o} first"))
    );

    let restricted = conformance().join("restricted.csv");
    let mut validator = spawn_service(
        "validate",
        &broker,
        &names,
        &[RESTRICTED, restricted.to_str().unwrap()],
        &dir.join("validator.log"),
    );
    let want: BTreeSet<i64> = (COMMITTED..DOCUMENTS).collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut got = judged(&broker.brokers, &names);
    while got != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        got = judged(&broker.brokers, &names);
    }
    let _ = validator.kill();
    let _ = validator.wait();
    let log = std::fs::read_to_string(dir.join("validator.log")).unwrap_or_default();
    assert_eq!(
        got.difference(&want).count(),
        0,
        "records before the committed offset were judged again:\n{log}"
    );
    let missing: Vec<&i64> = want.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "{} records after the committed offset {COMMITTED} were never judged (first {:?}):\n{log}",
        missing.len(),
        missing.first()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
