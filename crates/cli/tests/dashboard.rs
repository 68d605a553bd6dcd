//! The dashboard in a real browser: headless Chromium (Debian's `chromium`)
//! loads the page served by a running pipeline whose API wants a token; the
//! page asks for one, refuses a wrong one, opens with the right one; a
//! document is submitted; the page shows the new demand without a reload
//! (read from its DOM). A
//! screenshot is saved under the target folder and its path printed.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use forecast_tests::processes::pipeline::*;
use forecast_tests::processes::*;
use forecastctl::report::thousands;
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{LaunchOptions, Tab};
use serde_json::Value;

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

/// Headless Chromium (the given binary, never a download), its profile in
/// a folder of its own that goes with it.
fn browser() -> headless_chrome::Browser {
    let options = LaunchOptions::default_builder()
        .path(Some(chromium()))
        .headless(true)
        .sandbox(false)
        .window_size(Some((1400, 1800)))
        .args(vec![std::ffi::OsStr::new("--disable-dev-shm-usage")])
        // The test waits up to a minute between two calls at most.
        .idle_browser_timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    headless_chrome::Browser::new(options).unwrap()
}

/// Evaluates a JavaScript expression in the page; returns its value.
fn eval(tab: &Tab, expr: &str) -> Value {
    let r = tab
        .evaluate(expr, false)
        .unwrap_or_else(|e| panic!("{expr}: {e}"));
    r.value.unwrap_or(Value::Null)
}

fn wait_for(tab: &Tab, what: &str, expr: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    // The page may still be loading: an exception means "not yet".
    let guarded =
        format!("(() => {{ try {{ return ({expr}); }} catch (e) {{ return false; }} }})()");
    loop {
        let v = eval(tab, &guarded);
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

#[test]
fn the_dashboard_asks_for_a_token_then_shows_new_demand_without_a_reload() {
    let http = free_addr();
    let (p, replayed) = Pipeline::with_planner_api_fed_tokens("dashboard", &http, &["planner"]);
    let want = &replayed["demand"];
    let api = |path: &str| -> Value { serde_json::from_str(&p.api_get(&http, path).1).unwrap() };

    let browser = browser();
    let tab: Arc<Tab> = browser.new_tab().unwrap();
    tab.navigate_to(&format!("http://{http}/"))
        .and_then(|t| t.wait_until_navigated())
        .unwrap();
    // No token yet: the page asks for one and shows no demand.
    wait_for(
        &tab,
        "the token form",
        "!document.getElementById('login').hidden && document.getElementById('status').textContent === 'token needed'",
        Duration::from_secs(30),
    );
    assert_eq!(
        eval(&tab, "document.querySelectorAll('#demand tbody tr').length"),
        0
    );
    // A wrong token is refused, then the right one opens it.
    let give = |token: &str| {
        eval(
            &tab,
            &format!(
                "document.getElementById('token').value = '{token}'; document.getElementById('login').requestSubmit(); true"
            ),
        );
    };
    give("fct_wrong");
    wait_for(
        &tab,
        "the refusal",
        "document.getElementById('login-why').textContent.includes('refused')",
        Duration::from_secs(30),
    );
    give(&p.tokens[0]);
    wait_for(
        &tab,
        "the live badge",
        "document.getElementById('status').textContent === 'live'",
        Duration::from_secs(30),
    );
    let rows = want.as_array().unwrap().len();
    wait_for(
        &tab,
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
    assert_eq!(eval(&tab, &read_total), thousands(before));
    assert!(
        eval(
            &tab,
            "document.querySelectorAll('#chart svg rect[data-kind]').length > 0"
        ) == true,
        "the chart has bars"
    );
    // Supply is polled apart from the demand stream, so it may be drawn a
    // moment after the rows (or at the next poll, 10 s later).
    wait_for(
        &tab,
        "supply drawn",
        "document.querySelector('#chart svg polyline') !== null",
        Duration::from_secs(30),
    );
    // Marks this page load: a reload would lose it.
    eval(&tab, "window.__loaded_once = 'yes'");

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
    wait_for(
        &tab,
        &format!("{cell} = {expected}"),
        &format!("{read_total} === '{expected}'"),
        Duration::from_secs(30),
    );
    assert_eq!(
        eval(&tab, "window.__loaded_once"),
        "yes",
        "the page was not reloaded"
    );
    let total = api("/v1/demand")["totals"]["total_units"].as_i64().unwrap();
    wait_for(
        &tab,
        "the new total",
        &format!(
            "document.getElementById('total-units').textContent === '{}'",
            thousands(total)
        ),
        Duration::from_secs(10),
    );
    wait_for(
        &tab,
        "rejections by code",
        "document.querySelectorAll('#rejection-codes [data-code]').length > 3",
        Duration::from_secs(15),
    );

    // A licence revoked after its documents were accepted: the exposure
    // panel moves their units and lists them, without a reload.
    wait_for(
        &tab,
        "the exposure panel",
        "document.querySelectorAll('#exposure tbody tr').length > 0",
        Duration::from_secs(30),
    );
    assert_eq!(
        eval(&tab, "document.querySelectorAll('#lost tbody tr').length"),
        0
    );
    let decisions = p.dir.join("revoked.jsonl");
    std::fs::write(
        &decisions,
        "{\"application_number\": \"Z-3454487\", \"customer_id\": \"ALIBABA\", \"status\": \"REVOKED\", \"decided_at\": \"2026-12-01T00:00:00Z\"}\n",
    )
    .unwrap();
    p.load_licences(&decisions);
    let lost = api("/v1/exposure");
    wait_for(
        &tab,
        "the revoked documents listed",
        "document.querySelector('#lost tbody tr[data-document=\"ALI-000016\"]') !== null",
        Duration::from_secs(60),
    );
    assert_eq!(
        eval(&tab, "window.__loaded_once"),
        "yes",
        "the page was not reloaded"
    );
    let revoked: i64 = api("/v1/exposure")["by_quarter"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["revoked_units"].as_i64().unwrap())
        .sum();
    assert!(revoked > 0, "before {lost}");

    // The allocator started: the allocation panel shows the supplier's
    // commits, allocated against requested per quarter, without a reload.
    let mut allocator = p.spawn_allocator();
    wait_for(
        &tab,
        "the allocation panel",
        "document.querySelectorAll('#allocation tbody tr').length > 0",
        Duration::from_secs(60),
    );
    // Once the planner holds a commit to each customer with demand, the
    // panel's allocated units are theirs.
    let customers = want
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["customer_id"].as_str().unwrap())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let mut commits = api("/v1/commits");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while commits["commits"].as_array().unwrap().len() < customers {
        assert!(std::time::Instant::now() < deadline, "{commits}");
        std::thread::sleep(Duration::from_millis(300));
        commits = api("/v1/commits");
    }
    let allocated: i64 = commits["commits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["commit"]["lines"].as_array().unwrap().clone())
        .map(|l| l["allocated_units"].as_i64().unwrap())
        .sum();
    assert!(allocated > 0, "{commits}");
    wait_for(
        &tab,
        "the panel's allocated units to be the commits'",
        &format!(
            "[...document.querySelectorAll('#allocation tbody tr')].map(r => Number(r.children[2].textContent.replace(/,/g, ''))).reduce((a, b) => a + b, 0) === {allocated}"
        ),
        Duration::from_secs(30),
    );
    let _ = allocator.kill();
    let _ = allocator.wait();

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    std::fs::write(&shot, &png).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
    eprintln!("dashboard screenshot: {}", shot.display());
}
