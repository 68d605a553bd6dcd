//! Service metrics in the Prometheus text format. Labels are bounded: topic,
//! stage, rule code; never a document or customer id.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use forecast_model::{RuleCode, Stage};

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Counters of one service.
#[derive(Debug)]
pub struct Metrics {
    service: &'static str,
    records_in: AtomicU64,
    records_out: [AtomicU64; 5],
    rejections: Vec<AtomicU64>,
    dead_letters: [AtomicU64; 3],
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    consumer_lag: AtomicI64,
    rereads: AtomicU64,
    offsets_passed: AtomicU64,
    ready: AtomicBool,
    /// Unix microseconds of the first record consumed (0: none yet).
    first_in_micros: AtomicU64,
    /// Unix microseconds when a batch's outputs were last all acknowledged.
    last_processed_micros: AtomicU64,
}

/// Output topics, as metric labels.
#[derive(Debug, Clone, Copy)]
pub enum Output {
    Validated = 0,
    Rejected = 1,
    Audit = 2,
    Demand = 3,
    Submitted = 4,
}

const OUTPUT_NAMES: [&str; 5] = ["validated", "rejected", "audit", "demand", "submitted"];

impl Metrics {
    /// Metrics of `service` (`validator`, `aggregator`).
    pub fn new(service: &'static str) -> Self {
        Self {
            service,
            records_in: AtomicU64::new(0),
            records_out: Default::default(),
            rejections: RuleCode::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            dead_letters: Default::default(),
            latency_buckets: Default::default(),
            latency_count: AtomicU64::new(0),
            latency_sum_micros: AtomicU64::new(0),
            consumer_lag: AtomicI64::new(-1),
            rereads: AtomicU64::new(0),
            offsets_passed: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            first_in_micros: AtomicU64::new(0),
            last_processed_micros: AtomicU64::new(0),
        }
    }

    pub fn record_in(&self) {
        if self.records_in.fetch_add(1, Relaxed) == 0 {
            self.first_in_micros.store(unix_micros(), Relaxed);
        }
    }

    pub fn record_out(&self, output: Output) {
        self.records_out[output as usize].fetch_add(1, Relaxed);
    }

    pub fn rejected(&self, codes: &[RuleCode]) {
        for c in codes {
            self.rejections[c.index()].fetch_add(1, Relaxed);
        }
    }

    pub fn dead_letter(&self, stage: Stage) {
        self.dead_letters[stage.index()].fetch_add(1, Relaxed);
    }

    /// Records the processing times (from receiving a record to all its
    /// outputs acknowledged) of a batch's records: counted locally, then
    /// one atomic add per histogram bucket (not per record and bucket).
    pub fn latencies(&self, times: impl IntoIterator<Item = Duration>) {
        let mut first_fit = [0u64; BUCKETS.len()];
        let (mut count, mut micros) = (0u64, 0u64);
        for d in times {
            let s = d.as_secs_f64();
            if let Some(i) = BUCKETS.iter().position(|b| s <= *b) {
                first_fit[i] += 1;
            }
            count += 1;
            micros += d.as_micros() as u64;
        }
        if count > 0 {
            self.last_processed_micros.store(unix_micros(), Relaxed);
        }
        // Buckets are cumulative: one that fits in `le` fits every larger.
        let mut cumulative = 0;
        for (bucket, n) in self.latency_buckets.iter().zip(first_fit) {
            cumulative += n;
            if cumulative > 0 {
                bucket.fetch_add(cumulative, Relaxed);
            }
        }
        self.latency_count.fetch_add(count, Relaxed);
        self.latency_sum_micros.fetch_add(micros, Relaxed);
    }

    /// A seek back to read records the broker passed over
    /// ([`crate::continuity`]).
    pub fn reread(&self) {
        self.rereads.fetch_add(1, Relaxed);
    }

    /// Offsets with no record the broker can return, passed over.
    pub fn offsets_passed(&self, n: i64) {
        self.offsets_passed.fetch_add(n.max(0) as u64, Relaxed);
    }

    pub fn set_lag(&self, lag: i64) {
        self.consumer_lag.store(lag, Relaxed);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Relaxed)
    }

    /// Records whose outputs are all acknowledged.
    pub fn processed_total(&self) -> u64 {
        self.latency_count.load(Relaxed)
    }

    pub fn records_in_total(&self) -> u64 {
        self.records_in.load(Relaxed)
    }

    /// Unix seconds of the first record consumed and of the last batch
    /// processed (0 where none yet): a run's span by the service's clock.
    pub fn span_seconds(&self) -> (f64, f64) {
        let seconds = |a: &AtomicU64| a.load(Relaxed) as f64 / 1e6;
        (
            seconds(&self.first_in_micros),
            seconds(&self.last_processed_micros),
        )
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let svc = self.service;
        let mut o = String::new();
        single(
            &mut o,
            svc,
            "forecast_records_in_total",
            "Records consumed.",
            "counter",
            self.records_in.load(Relaxed),
        );
        let _ = writeln!(
            o,
            "# HELP forecast_records_out_total Records produced, by output topic.\n# TYPE forecast_records_out_total counter"
        );
        for (i, n) in OUTPUT_NAMES.iter().enumerate() {
            let _ = writeln!(
                o,
                "forecast_records_out_total{{service=\"{svc}\",output=\"{n}\"}} {}",
                self.records_out[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            o,
            "# HELP forecast_rejections_total Rejections, by rule code.\n# TYPE forecast_rejections_total counter"
        );
        for (code, n) in RuleCode::ALL.iter().zip(&self.rejections) {
            let _ = writeln!(
                o,
                "forecast_rejections_total{{service=\"{svc}\",code=\"{code}\"}} {}",
                n.load(Relaxed)
            );
        }
        let _ = writeln!(
            o,
            "# HELP forecast_dead_letters_total Records dead-lettered, by stage.\n# TYPE forecast_dead_letters_total counter"
        );
        for (stage, n) in Stage::ALL.iter().zip(&self.dead_letters) {
            let stage = stage.as_str().to_ascii_lowercase();
            let _ = writeln!(
                o,
                "forecast_dead_letters_total{{service=\"{svc}\",stage=\"{stage}\"}} {}",
                n.load(Relaxed)
            );
        }
        let _ = writeln!(
            o,
            "# HELP forecast_processing_seconds From consuming a record to its outputs acknowledged.\n# TYPE forecast_processing_seconds histogram"
        );
        for (b, n) in BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(
                o,
                "forecast_processing_seconds_bucket{{service=\"{svc}\",le=\"{b}\"}} {}",
                n.load(Relaxed)
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(
            o,
            "forecast_processing_seconds_bucket{{service=\"{svc}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            o,
            "forecast_processing_seconds_sum{{service=\"{svc}\"}} {}",
            self.latency_sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            o,
            "forecast_processing_seconds_count{{service=\"{svc}\"}} {count}"
        );
        single(
            &mut o,
            svc,
            "forecast_consumer_lag",
            "Records behind the end of the input topic (-1: unknown).",
            "gauge",
            self.consumer_lag.load(Relaxed),
        );
        single(
            &mut o,
            svc,
            "forecast_consumer_rereads_total",
            "Seeks back to read records the broker passed over (a fetch that skipped part of a batch).",
            "counter",
            self.rereads.load(Relaxed),
        );
        let (first_in, last_processed) = self.span_seconds();
        single(
            &mut o,
            svc,
            "forecast_first_record_in_timestamp_seconds",
            "When the first record was consumed, Unix seconds (0: none yet).",
            "gauge",
            format_args!("{first_in:.6}"),
        );
        single(
            &mut o,
            svc,
            "forecast_last_processed_timestamp_seconds",
            "When a record's outputs were last all acknowledged, Unix seconds (0: none yet).",
            "gauge",
            format_args!("{last_processed:.6}"),
        );
        single(
            &mut o,
            svc,
            "forecast_consumer_offsets_passed_total",
            "Input offsets with no record the broker could return (deleted, or transaction markers), passed over.",
            "counter",
            self.offsets_passed.load(Relaxed),
        );
        o
    }
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Writes a metric of one value, labelled with the service, with its help
/// and type lines.
fn single(
    o: &mut String,
    svc: &str,
    name: &str,
    help: &str,
    kind: &str,
    value: impl std::fmt::Display,
) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    let _ = writeln!(o, "{name}{{service=\"{svc}\"}} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_span_starts_at_the_first_record_in() {
        let m = Metrics::new("t");
        assert_eq!(m.span_seconds(), (0.0, 0.0));
        m.record_in();
        let (first, _) = m.span_seconds();
        std::thread::sleep(Duration::from_millis(20));
        m.record_in();
        m.latencies([Duration::from_millis(1)]);
        let (again, last) = m.span_seconds();
        assert_eq!(again, first, "the first record's time is kept");
        assert!(last - first >= 0.019, "{first} .. {last}");
        assert!(
            m.render().contains(&format!(
                "forecast_first_record_in_timestamp_seconds{{service=\"t\"}} {first:.6}"
            )),
            "{}",
            m.render()
        );
    }

    fn bucket(rendered: &str, le: &str) -> u64 {
        let prefix = format!("forecast_processing_seconds_bucket{{service=\"t\",le=\"{le}\"}} ");
        rendered
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no bucket le={le} in\n{rendered}"))
    }

    #[test]
    fn batch_latencies_fill_cumulative_buckets() {
        let m = Metrics::new("t");
        let ms = Duration::from_millis;
        m.latencies([Duration::from_micros(500), ms(3), ms(2_000), ms(10_000)]);
        m.latencies([ms(1)]);
        let r = m.render();
        assert_eq!(bucket(&r, "0.001"), 2, "0.5 ms and the 1 ms on the bound");
        assert_eq!(bucket(&r, "0.0025"), 2);
        assert_eq!(bucket(&r, "0.005"), 3);
        assert_eq!(bucket(&r, "1"), 3);
        assert_eq!(bucket(&r, "5"), 4, "10 s is above every bound");
        assert_eq!(m.processed_total(), 5);
        let (_, last) = m.span_seconds();
        assert!(
            last > 1.7e9,
            "the last batch processed is now, in Unix seconds: {last}"
        );
        assert!(
            r.contains("forecast_processing_seconds_sum{service=\"t\"} 12.0045"),
            "{r}"
        );
    }
}
