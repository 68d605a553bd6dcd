//! Reading demand back from `demand.by-customer`: the latest snapshot per
//! key, summed per customer x SKU x quarter.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use forecast_model::{DemandRow, DemandSnapshot, Quarter, Registry, Units, wire};
use forecast_runtime::config::KafkaArgs;
use forecast_runtime::kafka::reader_config;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, TopicPartitionList};

/// The latest snapshot of every key of the demand topic.
#[derive(Debug, Default, Clone)]
pub struct DemandView {
    latest: HashMap<Vec<u8>, DemandSnapshot>,
}

impl DemandView {
    /// Takes a record of the demand topic into account (a tombstone removes the key).
    pub fn update(&mut self, key: &[u8], value: Option<&[u8]>) -> bool {
        match value.map(|v| wire::decode_snapshot(v, Registry::embedded())) {
            None => self.set(key, None),
            Some(Ok(s)) => self.set(key, Some(s)),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "undecodable demand snapshot skipped");
                false
            }
        }
    }

    /// Sets the latest snapshot of a key, already decoded (`None`: a
    /// tombstone). Returns whether the view may have changed.
    pub fn set(&mut self, key: &[u8], snapshot: Option<DemandSnapshot>) -> bool {
        match snapshot {
            None => self.latest.remove(key).is_some(),
            Some(s) => {
                self.latest.insert(key.to_vec(), s);
                true
            }
        }
    }

    /// Demand rows with a non-zero total, sorted by customer, SKU and
    /// quarter, optionally of one customer.
    pub fn rows(&self, customer: Option<&str>) -> Vec<DemandRow> {
        let mut cells: BTreeMap<(&str, &str, Quarter), Units> = BTreeMap::new();
        for s in self
            .latest
            .values()
            .filter(|s| customer.is_none_or(|c| c == s.customer_id))
        {
            for r in &s.rows {
                let cell = cells
                    .entry((&s.customer_id, &r.sku, r.quarter))
                    .or_default();
                cell.firm_units += r.units.firm_units;
                cell.planning_units += r.units.planning_units;
            }
        }
        cells
            .into_iter()
            .filter(|(_, u)| u.total() != 0)
            .map(|((c, s, q), u)| DemandRow::new(c, s, q, u))
            .collect()
    }
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
    let partitions = forecast_runtime::kafka::partition_ids(reader.client(), topic, timeout)?;
    if partitions.is_empty() {
        anyhow::bail!(
            "topic {topic} does not exist (is the aggregator running against these --brokers?)"
        );
    }
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, forecast_runtime::kafka::from_start())?;
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
                view.update(m.key().unwrap_or_default(), m.payload());
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
