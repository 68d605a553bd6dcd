//! What the harness reads while a run goes: the services' `/metrics`, the
//! topics' watermarks, and the demand snapshots as they change.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::report::Timed;
use forecast_kafka::KafkaArgs;
use forecast_kafka::reader_config;
use forecast_model::wire;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// The records `topics` hold, from their partitions' watermarks.
pub(crate) fn records_in_topics(kafka: &KafkaArgs, topics: &[&str]) -> anyhow::Result<u64> {
    let reader: BaseConsumer = reader_config(kafka).create()?;
    let mut n = 0;
    for &topic in topics {
        for p in forecast_kafka::partition_ids(reader.client(), topic, Duration::from_secs(10))? {
            let (low, high) = reader.fetch_watermarks(topic, p, Duration::from_secs(10))?;
            n += u64::try_from(high - low).unwrap_or(0);
        }
    }
    Ok(n)
}

/// What a stage's counters say: records consumed and settled, and when
/// (Unix seconds, by the process's own clock) it consumed its first record
/// and last settled a batch; 0 where none yet.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Progress {
    pub(crate) records_in: u64,
    pub(crate) processed: u64,
    pub(crate) span: (f64, f64),
}

pub(crate) fn value_in(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

pub(crate) fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// From the first record consumed to `target` records settled, by the
/// stage's own clock (its first-record and last-processed times), looked
/// at every `POLL`. `cpu` gives the process's CPU seconds, seconds its
/// threads waited for a core, and the broker's CPU seconds; each is
/// counted from the last look before the first record to the look that
/// finds `target` settled, so they take in a little idle time rather than
/// leave out work.
pub(crate) fn time_until_processed(
    what: &str,
    progress: impl Fn() -> Progress,
    cpu: impl Fn() -> [f64; 3],
    target: u64,
    timeout: Duration,
) -> anyhow::Result<Timed> {
    let deadline = Instant::now() + timeout;
    let mut idle_cpu = cpu();
    let mut started = false;
    loop {
        let cpu_now = cpu();
        let p = progress();
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what} processed {} of {target} in {timeout:?}",
            p.processed
        );
        if !started {
            if p.records_in == 0 {
                idle_cpu = cpu_now;
            }
            started = p.records_in > 0;
        }
        if started && p.processed >= target {
            let (first, last) = p.span;
            // A stage that settles nothing (the planner) has no last
            // batch: it is timed to this look.
            let last = if last > 0.0 { last } else { unix_seconds() };
            return Ok(Timed {
                seconds: last - first,
                cpu_seconds: cpu_now[0] - idle_cpu[0],
                wait_seconds: cpu_now[1] - idle_cpu[1],
                broker_seconds: cpu_now[2] - idle_cpu[2],
            });
        }
        std::thread::sleep(POLL);
    }
}

/// How often the harness reads the counters it waits on. Each look at a
/// service is an HTTP request it serves; at every 5 ms they were a tenth
/// of the validator's CPU samples in (b). The times themselves come from
/// the services' clocks.
pub(crate) const POLL: Duration = Duration::from_millis(25);

/// A rise of the number of documents in a customer/partition snapshot.
pub(crate) struct Change {
    /// When the reader got the snapshot.
    pub(crate) seen: Instant,
    /// The snapshot record's create time, ms since the epoch.
    pub(crate) produced_ms: f64,
    pub(crate) documents: i64,
}

/// The rises of each customer/partition snapshot, in order.
pub(crate) type Counts = HashMap<(String, i32), Vec<Change>>;

/// Reads `topic` (demand snapshots) until `stop`, recording when the
/// number of documents in each customer/partition snapshot changed.
pub(crate) fn watch_demand(
    kafka: &KafkaArgs,
    topic: &str,
    units_per_doc: i64,
    counts: &Mutex<Counts>,
    stop: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<()> {
    let reader: BaseConsumer = reader_config(kafka).create()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in forecast_kafka::partition_ids(reader.client(), topic, Duration::from_secs(10))? {
        tpl.add_partition_offset(topic, p, forecast_kafka::from_start())?;
    }
    anyhow::ensure!(tpl.count() > 0, "no partitions of {topic}");
    reader.assign(&tpl)?;
    let registry = forecast_model::Registry::embedded();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let Some(m) = reader.poll(Duration::from_millis(50)) else {
            continue;
        };
        let m = m?;
        let now = Instant::now();
        let Some(snapshot) = m
            .payload()
            .and_then(|v| wire::decode_snapshot(v, registry).ok())
        else {
            continue;
        };
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        let Some(partition) = key.rsplit_once('/').and_then(|(_, p)| p.parse().ok()) else {
            continue;
        };
        let units: i64 = snapshot.rows.iter().map(|r| r.units.total()).sum();
        anyhow::ensure!(
            units % units_per_doc == 0,
            "snapshot {key} holds {units} units, not a whole number of documents of {units_per_doc}"
        );
        let docs = units / units_per_doc;
        let mut counts = counts.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let changes = counts.entry((snapshot.customer_id, partition)).or_default();
        if changes.last().is_none_or(|c| c.documents < docs) {
            changes.push(Change {
                seen: now,
                produced_ms: m.timestamp().to_millis().unwrap_or(0) as f64,
                documents: docs,
            });
        }
    }
    Ok(())
}
