//! The dashboard in a real browser: headless Chromium (Debian's `chromium`)
//! loads the page served by a running pipeline whose API wants a token; the
//! page asks for one, refuses a wrong one, opens with the right one; a
//! document is submitted; the page shows the new demand without a reload
//! (read from its DOM). A
//! screenshot is saved under the target folder and its path printed.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use forecast_tests::processes::pipeline::*;
use forecast_tests::processes::*;
use forecastctl::report::thousands;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("FORECAST_CHROMIUM") {
        return p.into();
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("no Chromium: install Debian's `chromium` package (scripts/test does) or set FORECAST_CHROMIUM")
}

/// Headless Chromium driven over the DevTools protocol.
struct Browser {
    child: Child,
    ws: WebSocket<TcpStream>,
    next_id: u64,
    session: Option<String>,
    /// Names of the events received so far.
    events: Vec<String>,
    _profile: Profile,
}

/// Chromium's profile folder, removed when dropped.
struct Profile(PathBuf);

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    fn start() -> Browser {
        let profile =
            std::env::temp_dir().join(format!("forecast-chromium-{}", std::process::id()));
        std::fs::create_dir_all(&profile).unwrap();
        let mut child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1400,1800",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let url = loop {
            let mut line = String::new();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "chromium exited before listening"
            );
            if let Some(url) = line.trim().strip_prefix("DevTools listening on ") {
                break url.to_owned();
            }
        };
        // Keep draining stderr so Chromium never blocks on it.
        std::thread::spawn(move || for _ in stderr.lines() {});
        let hostport = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let stream = TcpStream::connect(&hostport).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let (ws, _) = tungstenite::client(url.as_str(), stream).unwrap();
        Browser {
            child,
            ws,
            next_id: 0,
            session: None,
            events: Vec::new(),
            _profile: Profile(profile),
        }
    }

    /// Sends a command and waits for its result (events in between are dropped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = s.clone().into();
        }
        self.ws.send(Message::text(msg.to_string())).unwrap();
        loop {
            let reply = self.ws.read().unwrap();
            let Message::Text(text) = reply else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if let Some(event) = v["method"].as_str() {
                self.events.push(event.to_owned());
            }
            if v["id"] == id {
                assert!(v["error"].is_null(), "{method}: {}", v["error"]);
                return v["result"].clone();
            }
        }
    }

    /// Opens `url` in a new tab, attached, and waits until it has loaded.
    fn open(&mut self, url: &str) {
        let target = self.call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = self.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        self.session = Some(attached["sessionId"].as_str().unwrap().to_owned());
        self.call("Page.enable", json!({}));
        self.events.clear();
        self.call("Page.navigate", json!({"url": url}));
        while !self.events.iter().any(|e| e == "Page.loadEventFired") {
            if let Message::Text(text) = self.ws.read().unwrap() {
                let v: Value = serde_json::from_str(&text).unwrap();
                if let Some(event) = v["method"].as_str() {
                    self.events.push(event.to_owned());
                }
            }
        }
    }

    /// Evaluates a JavaScript expression in the page; returns its value.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        assert!(
            r["exceptionDetails"].is_null(),
            "{expr}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    fn wait_for(&mut self, what: &str, expr: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        // The page may still be loading: an exception means "not yet".
        let guarded =
            format!("(() => {{ try {{ return ({expr}); }} catch (e) {{ return false; }} }})()");
        loop {
            let v = self.eval(&guarded);
            if v != Value::Null && v != Value::Bool(false) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {what} ({expr})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&mut self, path: &std::path::Path) {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        std::fs::write(path, base64_decode(shot["data"].as_str().unwrap())).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn the_dashboard_asks_for_a_token_then_shows_new_demand_without_a_reload() {
    let http = free_addr();
    let (p, replayed) = Pipeline::with_planner_api_fed_tokens("dashboard", &http, &["planner"]);
    let want = &replayed["demand"];
    let api = |path: &str| -> Value { serde_json::from_str(&p.api_get(&http, path).1).unwrap() };

    let mut browser = Browser::start();
    browser.open(&format!("http://{http}/"));
    // No token yet: the page asks for one and shows no demand.
    browser.wait_for(
        "the token form",
        "!document.getElementById('login').hidden && document.getElementById('status').textContent === 'token needed'",
        Duration::from_secs(30),
    );
    assert_eq!(
        browser.eval("document.querySelectorAll('#demand tbody tr').length"),
        0
    );
    // A wrong token is refused, then the right one opens it.
    let give = |browser: &mut Browser, token: &str| {
        browser.eval(&format!(
            "document.getElementById('token').value = '{token}'; document.getElementById('login').requestSubmit(); true"
        ));
    };
    give(&mut browser, "fct_wrong");
    browser.wait_for(
        "the refusal",
        "document.getElementById('login-why').textContent.includes('refused')",
        Duration::from_secs(30),
    );
    give(&mut browser, &p.tokens[0]);
    browser.wait_for(
        "the live badge",
        "document.getElementById('status').textContent === 'live'",
        Duration::from_secs(30),
    );
    let rows = want.as_array().unwrap().len();
    browser.wait_for(
        "every demand row",
        &format!("document.querySelectorAll('#demand tbody tr').length === {rows}"),
        Duration::from_secs(30),
    );
    let cell = "TENCENT|H20-96GB|2026-Q4";
    let read_total = format!("document.querySelector('[data-row=\"{cell}\"] .total').textContent");
    let before =
        api("/v1/demand?customer=TENCENT&sku=H20-96GB&quarter=2026-Q4")["rows"][0]["total_units"]
            .as_i64()
            .unwrap();
    assert_eq!(browser.eval(&read_total), thousands(before));
    assert!(
        browser.eval("document.querySelectorAll('#chart svg rect[data-kind]').length > 0") == true,
        "the chart has bars"
    );
    // Supply is polled apart from the demand stream, so it may be drawn a
    // moment after the rows (or at the next poll, 10 s later).
    browser.wait_for(
        "supply drawn",
        "document.querySelector('#chart svg polyline') !== null",
        Duration::from_secs(30),
    );
    // Marks this page load: a reload would lose it.
    browser.eval("window.__loaded_once = 'yes'");

    // A new TENCENT document with 2026-Q4 H20-96GB units.
    let doc = Pipeline::sample_document("TEN-DASHBOARD-1");
    let added: i64 = doc["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| {
            let start = l["period_start"].as_str().unwrap();
            l["sku"] == "H20-96GB" && ("2026-10-01".."2027-01-01").contains(&start)
        })
        .map(|l| l["quantity"].as_i64().unwrap())
        .sum();
    assert!(added > 0, "the document adds 2026-Q4 H20-96GB units: {doc}");
    let file = p.dir.join("dashboard-doc.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    p.submit(&file);

    let expected = thousands(before + added);
    browser.wait_for(
        &format!("{cell} = {expected}"),
        &format!("{read_total} === '{expected}'"),
        Duration::from_secs(30),
    );
    assert_eq!(
        browser.eval("window.__loaded_once"),
        "yes",
        "the page was not reloaded"
    );
    let total = api("/v1/demand")["totals"]["total_units"].as_i64().unwrap();
    browser.wait_for(
        "the new total",
        &format!(
            "document.getElementById('total-units').textContent === '{}'",
            thousands(total)
        ),
        Duration::from_secs(10),
    );
    browser.wait_for(
        "rejections by code",
        "document.querySelectorAll('#rejection-codes [data-code]').length > 3",
        Duration::from_secs(15),
    );

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    browser.screenshot(&shot);
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
    eprintln!("dashboard screenshot: {}", shot.display());
}
