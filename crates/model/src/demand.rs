//! Demand as planners read it: per customer x SKU x quarter.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::time::{Quarter, Timestamp};

/// Units of one SKU in one quarter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Units {
    pub firm_units: i64,
    pub planning_units: i64,
}

impl Units {
    /// Firm plus planning.
    pub fn total(self) -> i64 {
        self.firm_units + self.planning_units
    }
}

/// One row of demand, as `replay --format json` and `demand --format json` print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DemandRow {
    pub customer_id: String,
    pub sku: String,
    pub quarter: Quarter,
    pub firm_units: i64,
    pub planning_units: i64,
    pub total_units: i64,
}

impl DemandRow {
    /// A row from its key and units.
    pub fn new(customer_id: &str, sku: &str, quarter: Quarter, units: Units) -> Self {
        Self {
            customer_id: customer_id.to_owned(),
            sku: sku.to_owned(),
            quarter,
            firm_units: units.firm_units,
            planning_units: units.planning_units,
            total_units: units.total(),
        }
    }
}

/// One SKU x quarter of a customer's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    pub sku: String,
    pub quarter: Quarter,
    pub units: Units,
}

/// The whole demand of one customer: the value of `demand.by-customer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemandSnapshot {
    pub customer_id: String,
    /// Increases with every change of this customer's demand.
    pub sequence: i64,
    pub as_of: Timestamp,
    /// Sorted by SKU then quarter; rows with no units left out.
    pub rows: Vec<SnapshotRow>,
}

impl DemandSnapshot {
    /// The snapshot as planner rows.
    pub fn demand_rows(&self) -> impl Iterator<Item = DemandRow> + '_ {
        self.rows
            .iter()
            .map(|r| DemandRow::new(&self.customer_id, &r.sku, r.quarter, r.units))
    }
}

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

#[cfg(test)]
mod tests {
    use crate::Timestamp;
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
