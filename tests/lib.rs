//! Support shared by the end-to-end suites: `crates/cli/tests` (the
//! services as child processes) and the container suites beside this file
//! (`faults.rs`, `deploy.rs`): reading and writing topics, the generated
//! stream and poison pills, and the comparison with `replay`.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod kafka;
pub mod outcome;
pub mod stream;

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Waits until `check` holds, polling; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Counts of items, for multiset comparison.
pub fn multiset<T: std::hash::Hash + Eq>(items: impl IntoIterator<Item = T>) -> HashMap<T, usize> {
    let mut m = HashMap::new();
    for i in items {
        *m.entry(i).or_insert(0) += 1;
    }
    m
}
