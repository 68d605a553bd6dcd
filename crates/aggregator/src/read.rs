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
    /// The latest snapshot of each key, grouped by the snapshot's customer,
    /// so one customer's rows are found without looking at the others'.
    by_customer: HashMap<String, HashMap<Vec<u8>, DemandSnapshot>>,
    /// The customer of each key's latest snapshot.
    customer_of: HashMap<Vec<u8>, String>,
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
        let previous = match &snapshot {
            // The usual case: the key keeps its customer.
            Some(s) if self.customer_of.get(key) == Some(&s.customer_id) => None,
            Some(s) => self.customer_of.insert(key.to_vec(), s.customer_id.clone()),
            None => self.customer_of.remove(key),
        };
        let removed = previous.is_some_and(|customer| {
            let Some(group) = self.by_customer.get_mut(&customer) else {
                return false;
            };
            let removed = group.remove(key).is_some();
            if group.is_empty() {
                self.by_customer.remove(&customer);
            }
            removed
        });
        match snapshot {
            None => removed,
            Some(s) => {
                self.by_customer
                    .entry(s.customer_id.clone())
                    .or_default()
                    .insert(key.to_vec(), s);
                true
            }
        }
    }

    /// Demand rows with a non-zero total, sorted by customer, SKU and
    /// quarter, optionally of one customer.
    pub fn rows(&self, customer: Option<&str>) -> Vec<DemandRow> {
        let mut cells: BTreeMap<(&str, &str, Quarter), Units> = BTreeMap::new();
        let groups: Vec<&HashMap<Vec<u8>, DemandSnapshot>> = match customer {
            Some(c) => self.by_customer.get(c).into_iter().collect(),
            None => self.by_customer.values().collect(),
        };
        for s in groups.into_iter().flat_map(HashMap::values) {
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

#[cfg(test)]
mod tests {
    use forecast_model::{SnapshotRow, Timestamp};
    use proptest::prelude::*;

    use super::*;

    fn snapshot(customer: &str, rows: &[(&str, i64)]) -> DemandSnapshot {
        DemandSnapshot {
            customer_id: customer.into(),
            sequence: 1,
            as_of: Timestamp::from_millis(0),
            rows: rows
                .iter()
                .map(|&(sku, firm)| SnapshotRow {
                    sku: sku.into(),
                    quarter: Quarter::new(2027, 1).expect("a quarter"),
                    units: Units {
                        firm_units: firm,
                        planning_units: 0,
                    },
                })
                .collect(),
        }
    }

    fn firm(view: &DemandView, customer: Option<&str>) -> Vec<(String, String, i64)> {
        view.rows(customer)
            .into_iter()
            .map(|r| (r.customer_id, r.sku, r.firm_units))
            .collect()
    }

    #[test]
    fn sums_the_latest_snapshot_of_each_partition() {
        let mut view = DemandView::default();
        view.set(b"A/0", Some(snapshot("A", &[("H20", 5)])));
        view.set(b"A/1", Some(snapshot("A", &[("H20", 7)])));
        view.set(b"A/0", Some(snapshot("A", &[("H20", 1)])));
        view.set(b"B/0", Some(snapshot("B", &[("H20", 2)])));
        assert_eq!(
            firm(&view, None),
            vec![("A".into(), "H20".into(), 8), ("B".into(), "H20".into(), 2)]
        );
        assert_eq!(firm(&view, Some("B")), vec![("B".into(), "H20".into(), 2)]);
        assert!(firm(&view, Some("C")).is_empty());
    }

    #[test]
    fn a_tombstone_removes_its_key_and_says_whether_it_held_one() {
        let mut view = DemandView::default();
        view.set(b"A/0", Some(snapshot("A", &[("H20", 5)])));
        assert!(view.set(b"A/0", None));
        assert!(!view.set(b"A/0", None));
        assert!(firm(&view, None).is_empty());
    }

    #[test]
    fn a_key_that_names_another_customer_leaves_the_first() {
        let mut view = DemandView::default();
        view.set(b"K/0", Some(snapshot("A", &[("H20", 5)])));
        view.set(b"K/0", Some(snapshot("B", &[("H20", 3)])));
        assert!(firm(&view, Some("A")).is_empty());
        assert_eq!(firm(&view, None), vec![("B".into(), "H20".into(), 3)]);
    }

    proptest! {
        /// The grouped view gives what summing every key's latest snapshot gives.
        #[test]
        fn rows_match_a_plain_latest_per_key(
            ops in proptest::collection::vec((0..4u8, proptest::option::of((0..3u8, 0..3u8, -5..20i64))), 0..40)
        ) {
            let mut view = DemandView::default();
            let mut plain: HashMap<Vec<u8>, DemandSnapshot> = HashMap::new();
            let customers = ["A", "B", "C"];
            let skus = ["H20", "H20E", "L20"];
            for (key, value) in ops {
                let key = format!("K{key}/0").into_bytes();
                let snap = value.map(|(c, s, units)| snapshot(customers[c as usize], &[(skus[s as usize], units)]));
                let held = plain.contains_key(&key);
                let changed = view.set(&key, snap.clone());
                match snap {
                    Some(s) => { plain.insert(key, s); prop_assert!(changed); }
                    None => { plain.remove(&key); prop_assert_eq!(changed, held); }
                }
            }
            for customer in [None, Some("A"), Some("B"), Some("C")] {
                let mut cells: BTreeMap<(String, String), i64> = BTreeMap::new();
                for s in plain.values().filter(|s| customer.is_none_or(|c| c == s.customer_id)) {
                    for r in &s.rows {
                        *cells.entry((s.customer_id.clone(), r.sku.clone())).or_default() += r.units.firm_units;
                    }
                }
                let expected: Vec<(String, String, i64)> = cells
                    .into_iter()
                    .filter(|(_, u)| *u != 0)
                    .map(|((c, s), u)| (c, s, u))
                    .collect();
                prop_assert_eq!(firm(&view, customer), expected);
            }
        }
    }
}
