//! The one harness of the end-to-end suites: the pipeline as processes
//! ([`processes`], for `crates/cli/tests`) or as containers
//! ([`containers`], for `faults.rs` and `deploy.rs` beside this file), and
//! what both share: reading and writing topics ([`kafka`]), the generated
//! stream and poison pills ([`stream`]), and the comparison with `replay`
//! ([`outcome`]).

#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    missing_debug_implementations,
    unreachable_pub,
    dead_code
)]

pub mod containers;
pub mod kafka;
pub mod outcome;
pub mod processes;
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

/// A plain HTTP GET: status line and body, or None when nothing answers.
pub fn http_get(addr: &str, path: &str) -> Option<(String, String)> {
    http_get_as(addr, path, None)
}

/// [`http_get`] with `Authorization: Bearer <token>` when a token is given.
pub fn http_get_as(addr: &str, path: &str, token: Option<&str>) -> Option<(String, String)> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Some((
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    ))
}

/// Counts of items, for multiset comparison.
pub fn multiset<T: std::hash::Hash + Eq>(items: impl IntoIterator<Item = T>) -> HashMap<T, usize> {
    let mut m = HashMap::new();
    for i in items {
        *m.entry(i).or_insert(0) += 1;
    }
    m
}
