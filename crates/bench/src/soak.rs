//! The soak (`--soak-minutes`): the whole pipeline (validator, aggregator,
//! planner) at a steady rate for a long run, with live SSE clients on the
//! planner, sampling every process's resident memory and the consumer lag;
//! optionally an HTTP load on the planner API from a second process (wrk)
//! in one window of the run. At the end the planner's demand must equal
//! what `replay` computes for everything offered.
//!
//! The documents are revisions of a fixed set (`--soak-documents`), as
//! customers revise their forecasts: the state a correct pipeline keeps
//! is then bounded, so memory that keeps growing is a leak, not data.
//! Some revisions are rejected (an unknown SKU) and some are sent twice
//! (duplicates), so every verdict kind flows through the whole run.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::procs::{Service, status_bytes};
use crate::stages::Bench;
use crate::workload::{CUSTOMERS, Encoded, produce_all, twelve_lines, warm};
use anyhow::Context;
use forecast_model::{ForecastDocument, Purpose};
use forecast_pipeline::Replay;

/// What a soak runs.
#[derive(Debug, Clone)]
pub(crate) struct SoakPlan {
    pub(crate) minutes: f64,
    /// Documents offered per second.
    pub(crate) rate: f64,
    /// Distinct documents; each round offers a new revision of each.
    pub(crate) documents: usize,
    pub(crate) sse_clients: usize,
    pub(crate) sample: Duration,
    pub(crate) csv: PathBuf,
    /// An HTTP load on `/v1/demand` (wrk): when it starts and how long.
    pub(crate) load: Option<LoadWindow>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadWindow {
    pub(crate) at_minute: f64,
    pub(crate) seconds: u64,
    pub(crate) connections: u32,
}

/// One sample of the run (a CSV row).
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    seconds: f64,
    offered: u64,
    validator_processed: u64,
    aggregator_processed: u64,
    planner_read: u64,
    validator_lag: f64,
    aggregator_lag: f64,
    /// Resident MiB: broker (NaN with `--brokers`), validator, aggregator,
    /// planner, this harness.
    rss: [f64; 5],
    sse_events: u64,
    sse_open: u64,
    load: bool,
}

const CSV_HEADER: &str = "seconds,offered,validator_processed,aggregator_processed,planner_read,validator_lag,aggregator_lag,broker_rss_mib,validator_rss_mib,aggregator_rss_mib,planner_rss_mib,harness_rss_mib,sse_events,sse_open,http_load";

const PROCESSES: [&str; 5] = ["broker", "validator", "aggregator", "planner", "harness"];

impl Sample {
    fn csv(&self) -> String {
        let r = self.rss;
        format!(
            "{:.1},{},{},{},{},{},{},{:.1},{:.1},{:.1},{:.1},{:.1},{},{},{}",
            self.seconds,
            self.offered,
            self.validator_processed,
            self.aggregator_processed,
            self.planner_read,
            self.validator_lag,
            self.aggregator_lag,
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            self.sse_events,
            self.sse_open,
            u8::from(self.load),
        )
    }
}

/// What the soak found.
#[derive(Debug)]
pub(crate) struct SoakReport {
    pub(crate) offered: u64,
    pub(crate) seconds: f64,
    /// Resident MiB of each of [`PROCESSES`] at minute 5 and at the end.
    pub(crate) rss_at_5: [f64; 5],
    pub(crate) rss_at_end: [f64; 5],
    pub(crate) max_lag: [f64; 2],
    pub(crate) sse_events_min: u64,
    pub(crate) demand_rows: usize,
    pub(crate) load: Option<LoadResult>,
}

#[derive(Debug, Clone)]
pub(crate) struct LoadResult {
    pub(crate) requests_per_s: f64,
    pub(crate) p99_ms: f64,
    pub(crate) non_2xx: u64,
    /// Documents/s the aggregator settled during the load and in as long
    /// a window just before it, and the rate offered.
    pub(crate) processed_during: f64,
    pub(crate) processed_before: f64,
    pub(crate) offered: f64,
}

impl SoakReport {
    /// Growth of resident memory from minute 5 to the end, per process.
    pub(crate) fn growth(&self) -> [f64; 5] {
        std::array::from_fn(|i| self.rss_at_end[i] / self.rss_at_5[i] - 1.0)
    }

    pub(crate) fn print(&self) {
        println!(
            "| soak: {:.0} documents over {:.1} min | minute 5 | end | growth |\n| --- | --- | --- | --- |",
            self.offered as f64,
            self.seconds / 60.0
        );
        for (i, name) in PROCESSES.iter().enumerate() {
            println!(
                "| {name} RSS | {:.1} MiB | {:.1} MiB | {:+.1}% |",
                self.rss_at_5[i],
                self.rss_at_end[i],
                self.growth()[i] * 100.0
            );
        }
        println!(
            "| consumer lag, most after minute 5 | validator {:.0} | aggregator {:.0} | |",
            self.max_lag[0], self.max_lag[1]
        );
        println!(
            "| SSE events, fewest of one client | {} | | |",
            self.sse_events_min
        );
        if let Some(l) = &self.load {
            println!(
                "| HTTP load (wrk) on /v1/demand | {:.0} requests/s, p99 {:.2} ms, {} not 2xx | aggregator settled {:.0} docs/s during, {:.0} before (offered {:.0}) | {:+.1}% |",
                l.requests_per_s,
                l.p99_ms,
                l.non_2xx,
                l.processed_during,
                l.processed_before,
                l.offered,
                (l.processed_during / l.processed_before - 1.0) * 100.0
            );
        }
        println!(
            "| demand at the end | equals replay of every document offered ({} rows) | | |",
            self.demand_rows
        );
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        let per_process = |v: &[f64; 5]| -> serde_json::Value {
            PROCESSES
                .iter()
                .zip(v)
                .map(|(p, x)| ((*p).to_owned(), serde_json::json!(x)))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        serde_json::json!({
            "offered": self.offered,
            "seconds": self.seconds,
            "rss_mib_at_minute_5": per_process(&self.rss_at_5),
            "rss_mib_at_end": per_process(&self.rss_at_end),
            "rss_growth": per_process(&self.growth()),
            "max_lag_after_minute_5": {"validator": self.max_lag[0], "aggregator": self.max_lag[1]},
            "sse_events_fewest_of_one_client": self.sse_events_min,
            "demand_rows_equal_to_replay": self.demand_rows,
            "http_load": self.load.as_ref().map(|l| serde_json::json!({
                "requests_per_s": l.requests_per_s,
                "p99_ms": l.p99_ms,
                "non_2xx": l.non_2xx,
                "aggregator_docs_per_s_during": l.processed_during,
                "aggregator_docs_per_s_before": l.processed_before,
                "offered_docs_per_s": l.offered,
            })),
        })
    }
}

/// Revision `round + 1` of document `i` of the set: the first a NEW, then
/// REPLACEs, each with other quantities; every 20th document's odd
/// revisions name an unknown SKU (rejected; the next revision applies).
fn revision(run: &str, i: usize, round: usize) -> ForecastDocument {
    let mut doc = twelve_lines(format!("SOAK-{run}-{i:06}"), CUSTOMERS[i % CUSTOMERS.len()]);
    doc.revision = i32::try_from(round + 1).unwrap_or(i32::MAX);
    if round > 0 {
        doc.purpose = Purpose::Replace;
    }
    doc.lines[0].quantity += (round % 7) as i64 * 10;
    if i % 20 == 19 && round % 2 == 1 {
        doc.lines[3].sku = "A100".into();
    }
    doc
}

/// An SSE client of the planner's demand stream, counting the events it
/// gets until `stop`.
fn sse_client(http: String, events: Arc<AtomicU64>, open: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let Ok(mut s) = TcpStream::connect(&http) else {
        return;
    };
    let asked = write!(
        s,
        "GET /v1/demand/stream HTTP/1.1\r\nHost: {http}\r\nAccept: text/event-stream\r\n\r\n"
    );
    if asked.is_err()
        || s.set_read_timeout(Some(Duration::from_millis(500)))
            .is_err()
    {
        return;
    }
    open.fetch_add(1, Relaxed);
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    while !stop.load(Relaxed) {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) if line.starts_with("event:") => {
                events.fetch_add(1, Relaxed);
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    open.fetch_sub(1, Relaxed);
}

/// Runs `wrk` against `url` for `seconds`; its requests/s, p99 (ms) and
/// responses that were not 2xx or 3xx.
fn wrk(url: &str, seconds: u64, connections: u32) -> anyhow::Result<(f64, f64, u64)> {
    let mut cmd = std::process::Command::new("wrk");
    cmd.args([
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
    ]);
    let out = cmd
        .arg(url)
        .output()
        .context("cannot run wrk (Debian's `wrk` package): apt-get install wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |prefix: &str| {
        text.lines().find_map(|l| {
            l.trim()
                .strip_prefix(prefix)
                .map(str::trim)
                .map(str::to_owned)
        })
    };
    let rps: f64 = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output: {text}"))?;
    let p99 = field("99%")
        .and_then(|v| wrk_ms(&v))
        .with_context(|| format!("no 99% latency in wrk's output: {text}"))?;
    let non_2xx = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((rps, p99, non_2xx))
}

/// A wrk duration (`812.00us`, `1.20ms`, `2.00s`) in milliseconds.
fn wrk_ms(v: &str) -> Option<f64> {
    let (number, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

/// Demand rows by key, as the planner API serves them.
type Rows = BTreeMap<(String, String, String), (i64, i64)>;

fn api_rows(planner: &Service) -> anyhow::Result<Rows> {
    let body = http_get(&planner.http, "/v1/demand")?;
    let v: serde_json::Value = serde_json::from_str(&body).context("/v1/demand is not JSON")?;
    let mut rows = Rows::new();
    for r in v["rows"].as_array().context("/v1/demand has no rows")? {
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
        let n = |k: &str| r[k].as_i64().unwrap_or_default();
        if n("total_units") != 0 {
            rows.insert(
                (s("customer_id"), s("sku"), s("quarter")),
                (n("firm_units"), n("planning_units")),
            );
        }
    }
    Ok(rows)
}

fn replay_rows(replay: &Replay) -> Rows {
    replay
        .state()
        .rows()
        .filter(|r| r.total_units != 0)
        .map(|r| {
            (
                (r.customer_id, r.sku, r.quarter.to_string()),
                (r.firm_units, r.planning_units),
            )
        })
        .collect()
}

/// The body of `GET path` (HTTP/1.1, closed after).
fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    use std::io::Read;
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP head")?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    // The API answers with a length, not chunks, for its JSON.
    Ok(body.to_owned())
}

fn rss_mib(pid: Option<u32>) -> f64 {
    pid.and_then(|p| status_bytes(p, "VmRSS:"))
        .map_or(f64::NAN, |b| b / (1024.0 * 1024.0))
}

/// Runs the soak on fresh topics named after `run`.
pub(crate) async fn soak(
    bench: &Bench<'_>,
    run: &str,
    plan: &SoakPlan,
) -> anyhow::Result<SoakReport> {
    anyhow::ensure!(
        bench.signers.is_none(),
        "--signed is not for the soak (it measures memory and lag, not verification)"
    );
    let policy = forecast_validator::Policy::load(Some(bench.policy), None, None)?;
    let mut replay = Replay::new(policy);
    let (t, validator, aggregator) = bench.pipeline(run).await?;
    let planner = Service::planner(bench.kafka, &t)?;
    let warm_up = warm(run, None);
    produce_all(
        bench.producer,
        &t.topic_submitted,
        std::slice::from_ref(&warm_up),
    )
    .await?;
    aggregator.time_until_processed(1, Duration::from_secs(120))?;
    // The warm-up document counts in the expected demand too.
    replay.submit_framed(&warm_up.value);

    let stop = Arc::new(AtomicBool::new(false));
    let open = Arc::new(AtomicU64::new(0));
    let per_client: Vec<Arc<AtomicU64>> = (0..plan.sse_clients).map(|_| Arc::default()).collect();
    let clients: Vec<_> = per_client
        .iter()
        .map(|mine| {
            let (http, mine, open, stop) = (
                planner.http.clone(),
                mine.clone(),
                open.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || sse_client(http, mine, open, stop))
        })
        .collect();

    let offered = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let load_on = Arc::new(AtomicBool::new(false));
    let begin = Instant::now();
    let pids = [
        bench.broker_pid,
        Some(validator.child.id()),
        Some(aggregator.child.id()),
        Some(planner.child.id()),
        Some(std::process::id()),
    ];
    let mut csv = std::fs::File::create(&plan.csv)
        .with_context(|| format!("cannot write {}", plan.csv.display()))?;
    writeln!(csv, "{CSV_HEADER}")?;
    let sample = |load: bool| {
        let v = validator.progress();
        let a = aggregator.progress();
        let lag = |s: &Service| {
            s.metric(&format!("forecast_consumer_lag{{service=\"{}\"}}", s.name))
                .unwrap_or(f64::NAN)
        };
        Sample {
            seconds: begin.elapsed().as_secs_f64(),
            offered: offered.load(Relaxed),
            validator_processed: v.processed,
            aggregator_processed: a.processed,
            planner_read: planner.progress().records_in,
            validator_lag: lag(&validator),
            aggregator_lag: lag(&aggregator),
            rss: pids.map(rss_mib),
            sse_events: per_client.iter().map(|c| c.load(Relaxed)).sum(),
            sse_open: open.load(Relaxed),
            load,
        }
    };

    // Samples every `plan.sample`, and the HTTP load in its window; the
    // service probes block, so the whole run is off the async workers.
    let samples = tokio::task::block_in_place(|| {
        std::thread::scope(
            |scope| -> anyhow::Result<(Vec<Sample>, Option<LoadResult>)> {
                // The offered load, paced as the latency runs are, and replayed here
                // for the expected demand.
                let total = (plan.rate * plan.minutes * 60.0) as u64;
                let producer = bench.producer;
                let topic = t.topic_submitted.clone();
                let offer = async {
                    let mut deliveries = std::collections::VecDeque::new();
                    for k in 0..total {
                        let k_usize = k as usize;
                        let (round, i) = (k_usize / plan.documents, k_usize % plan.documents);
                        let record = Encoded::of(&revision(run, i, round));
                        let due = begin + Duration::from_secs_f64(k as f64 / plan.rate);
                        if let Some(wait) = due.checked_duration_since(Instant::now())
                            && wait >= Duration::from_millis(1)
                        {
                            tokio::time::sleep(wait).await;
                        }
                        // Every 50th document is sent twice: a DUPLICATE.
                        for _ in 0..if i % 50 == 7 { 2 } else { 1 } {
                            deliveries.push_back(record.send(producer, &topic).await?);
                            replay.submit_framed(&record.value);
                        }
                        offered.store(k + 1, Relaxed);
                        while deliveries.len() > 20_000 {
                            if let Some(d) = deliveries.pop_front() {
                                d.await
                                    .map_err(|_| anyhow::anyhow!("a submit was cancelled"))?
                                    .map_err(|(e, _)| e)?;
                            }
                        }
                    }
                    for d in deliveries {
                        d.await
                            .map_err(|_| anyhow::anyhow!("a submit was cancelled"))?
                            .map_err(|(e, _)| e)?;
                    }
                    anyhow::Ok(())
                };

                let sampler = scope.spawn(|| {
            let mut rows = Vec::new();
            while sampling.load(Relaxed) {
                let s = sample(load_on.load(Relaxed));
                let _ = writeln!(csv, "{}", s.csv()).and_then(|()| csv.flush());
                eprintln!(
                    "soak {:>6.0} s: offered {} | settled v {} a {} | lag v {:.0} a {:.0} | RSS MiB broker {:.0} v {:.0} a {:.0} planner {:.0} | SSE {} open, {} events",
                    s.seconds, s.offered, s.validator_processed, s.aggregator_processed,
                    s.validator_lag, s.aggregator_lag, s.rss[0], s.rss[1], s.rss[2], s.rss[3],
                    s.sse_open, s.sse_events
                );
                rows.push(s);
                let next = begin + plan.sample.mul_f64(rows.len() as f64);
                while sampling.load(Relaxed) && Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            rows
        });
                let loader = plan.load.map(|w| {
                    let (http, load_on, aggregator) = (&planner.http, &load_on, &aggregator);
                    scope.spawn(move || -> anyhow::Result<LoadResult> {
                        // The aggregator's rate in as long a window just before the
                        // load, then during it.
                        let start = begin + Duration::from_secs_f64(w.at_minute * 60.0);
                        let window = Duration::from_secs(w.seconds);
                        let sleep_until = |t: Instant| {
                            std::thread::sleep(t.saturating_duration_since(Instant::now()))
                        };
                        sleep_until(start.checked_sub(window).unwrap_or(begin));
                        let before_start = aggregator.progress().processed;
                        sleep_until(start);
                        let during_start = aggregator.progress().processed;
                        load_on.store(true, Relaxed);
                        let result = wrk(
                            &format!("http://{http}/v1/demand"),
                            w.seconds,
                            w.connections,
                        );
                        load_on.store(false, Relaxed);
                        let during_end = aggregator.progress().processed;
                        let (rps, p99, non_2xx) = result?;
                        let secs = w.seconds as f64;
                        Ok(LoadResult {
                            requests_per_s: rps,
                            p99_ms: p99,
                            non_2xx,
                            processed_during: (during_end - during_start) as f64 / secs,
                            processed_before: (during_start - before_start) as f64 / secs,
                            offered: plan.rate,
                        })
                    })
                });
                let offered_all = tokio::runtime::Handle::current().block_on(offer);
                // Every record offered is settled and read by the planner, and its
                // demand is the replay's.
                let want = replay_rows(&replay);
                let deadline = Instant::now() + Duration::from_secs(300);
                let mut last = Ok(Rows::new());
                while offered_all.is_ok() && Instant::now() < deadline {
                    last = api_rows(&planner);
                    if last.as_ref().is_ok_and(|got| *got == want) {
                        break;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
                sampling.store(false, Relaxed);
                let rows = sampler
                    .join()
                    .map_err(|_| anyhow::anyhow!("the sampler panicked"))?;
                let load = loader
                    .map(|l| l.join().map_err(|_| anyhow::anyhow!("the load panicked"))?)
                    .transpose()?;
                offered_all?;
                let got = last?;
                anyhow::ensure!(
                    got == want,
                    "the planner's demand is not replay's after 300 s: {} rows against {}; first difference: {:?}",
                    got.len(),
                    want.len(),
                    want.iter().find(|(k, v)| got.get(*k) != Some(*v))
                );
                Ok((rows, load))
            },
        )
    })?;
    let (rows, load) = samples;
    stop.store(true, Relaxed);
    for c in clients {
        let _ = c.join();
    }
    let sse_events_min = per_client
        .iter()
        .map(|c| c.load(Relaxed))
        .min()
        .unwrap_or(0);
    anyhow::ensure!(
        sse_events_min > 0,
        "an SSE client got no event in the whole run"
    );
    let at = |seconds: f64| {
        rows.iter()
            .find(|s| s.seconds >= seconds)
            .or(rows.last())
            .map_or([f64::NAN; 5], |s| s.rss)
    };
    let warm_rows = rows.iter().filter(|s| s.seconds >= 300.0);
    let max_lag = warm_rows.fold([0.0f64; 2], |m, s| {
        [m[0].max(s.validator_lag), m[1].max(s.aggregator_lag)]
    });
    let last = rows.last().copied().unwrap_or_default();
    Ok(SoakReport {
        offered: offered.load(Relaxed),
        seconds: last.seconds,
        rss_at_5: at(300.0),
        rss_at_end: last.rss,
        max_lag,
        sse_events_min,
        demand_rows: replay_rows(&replay).len(),
        load,
    })
}

/// Where the plot goes: the CSV's path with `.png`.
pub(crate) fn plot_path(csv: &Path) -> PathBuf {
    csv.with_extension("png")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_durations_read_in_milliseconds() {
        assert_eq!(wrk_ms("812.00us"), Some(0.812));
        assert_eq!(wrk_ms("1.20ms"), Some(1.2));
        assert_eq!(wrk_ms("2.00s"), Some(2000.0));
        assert_eq!(wrk_ms("fast"), None);
    }

    #[test]
    fn revisions_of_a_document_replace_it_and_some_are_rejected() {
        let policy = forecast_validator::Policy::default();
        let mut replay = Replay::new(policy);
        let mut verdicts = Vec::new();
        for round in 0..3 {
            for i in [0, 19] {
                let (v, _) = replay.submit_framed(&Encoded::of(&revision("t", i, round)).value);
                verdicts.push((i, round, v.outcome.to_string()));
            }
        }
        let first = revision("t", 0, 0);
        assert_eq!((first.revision, first.purpose), (1, Purpose::Original));
        assert_eq!(revision("t", 0, 2).purpose, Purpose::Replace);
        assert_ne!(
            revision("t", 0, 1).lines[0].quantity,
            first.lines[0].quantity,
            "a revision changes the content (not a duplicate)"
        );
        let rejected: Vec<_> = verdicts
            .iter()
            .filter(|(_, _, v)| v == "REJECTED")
            .map(|(i, r, _)| (*i, *r))
            .collect();
        assert_eq!(rejected, [(19, 1)], "{verdicts:?}");
        assert_eq!(replay.state().live_documents(), 2);
    }
}
