//! Service metrics, exposed in the OpenMetrics text format by
//! `prometheus-client` (the Prometheus project's Rust client). Labels are
//! bounded: service, output topic, stage, rule code; never a document or
//! customer id. Every labelled series is made when the service starts, so
//! each reads 0 before its first event and the hot path is one atomic add
//! on a handle kept here (no label lookup per record). The values of the
//! rule code and stage labels are the pipeline's ([`Labels`]; what
//! `forecast-stage` gives).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A Unix time in seconds, as a gauge.
type Seconds = Gauge<f64, AtomicU64>;

/// One label, as a family's label set.
type Label = [(&'static str, String); 1];

/// The values of the labels a service counts by index, each a series from
/// the start: rule codes (`forecast_rejections`) and stages
/// (`forecast_dead_letters`).
#[derive(Debug, Clone, Default)]
pub struct Labels {
    pub codes: Vec<String>,
    pub stages: Vec<String>,
}

/// Counters of one service, registered in its own registry (labelled with
/// the service's name), so several services can share a process (`up`).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    records_in: Counter,
    processed: Counter,
    records_out: [Counter; OUTPUT_NAMES.len()],
    rejections: Vec<Counter>,
    dead_letters: Vec<Counter>,
    processing: Histogram,
    consumer_lag: Gauge,
    rereads: Counter,
    offsets_passed: Counter,
    unattested: Family<Label, Counter>,
    /// When the first record was consumed (0: none yet).
    first_in: Seconds,
    /// When a batch's outputs were last all acknowledged (0: none yet).
    last_processed: Seconds,
    ready: AtomicBool,
}

/// Output topics, as metric labels.
#[derive(Debug, Clone, Copy)]
pub enum Output {
    Validated = 0,
    Rejected = 1,
    Audit = 2,
    Demand = 3,
    Submitted = 4,
    LicenceDemand = 5,
    Commit = 6,
}

const OUTPUT_NAMES: [&str; 7] = [
    "validated",
    "rejected",
    "audit",
    "demand",
    "submitted",
    "licence_demand",
    "commit",
];

/// Registers a family of counters under `name` with one label `key`, and
/// returns a handle per value of `values`, in their order.
fn counters(
    registry: &mut Registry,
    name: &str,
    help: &str,
    key: &'static str,
    values: impl IntoIterator<Item = String>,
) -> Vec<Counter> {
    let family = Family::<Label, Counter>::default();
    registry.register(name, help, family.clone());
    values
        .into_iter()
        .map(|v| family.get_or_create(&[(key, v)]).clone())
        .collect()
}

/// Registers `metric` under `name` and returns it.
fn registered<M>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// Metrics of `service` (`validator`, `aggregator`, `planner`), with
    /// no rule code or stage label.
    pub fn new(service: &'static str) -> Self {
        Self::labelled(service, &Labels::default())
    }

    /// Metrics of `service` counting rejections and dead letters by the
    /// codes and stages of `labels`.
    pub fn labelled(service: &'static str, labels: &Labels) -> Self {
        let mut r = Registry::with_labels([("service".into(), service.into())].into_iter());
        let records_out = counters(
            &mut r,
            "forecast_records_out",
            "Records produced, by output topic",
            "output",
            OUTPUT_NAMES.map(String::from),
        );
        let consumer_lag = Gauge::default();
        consumer_lag.set(-1);
        Self {
            records_in: registered(
                &mut r,
                "forecast_records_in",
                "Records consumed",
                Counter::default(),
            ),
            processed: registered(
                &mut r,
                "forecast_records_processed",
                "Records whose outputs were all acknowledged",
                Counter::default(),
            ),
            records_out: std::array::from_fn(|i| records_out[i].clone()),
            rejections: counters(
                &mut r,
                "forecast_rejections",
                "Rejections, by rule code",
                "code",
                labels.codes.iter().cloned(),
            ),
            dead_letters: counters(
                &mut r,
                "forecast_dead_letters",
                "Records dead-lettered, by stage",
                "stage",
                labels.stages.iter().cloned(),
            ),
            processing: registered(
                &mut r,
                "forecast_processing_seconds",
                "From consuming a record to its outputs acknowledged",
                Histogram::new(BUCKETS),
            ),
            consumer_lag: registered(
                &mut r,
                "forecast_consumer_lag",
                "Records behind the end of the input topic (-1: unknown)",
                consumer_lag,
            ),
            rereads: registered(
                &mut r,
                "forecast_consumer_rereads",
                "Seeks back to read records the broker passed over (a fetch that skipped part of a batch)",
                Counter::default(),
            ),
            unattested: registered(
                &mut r,
                "forecast_unattested_records",
                "Records refused because no key the service believes attested them, by input topic",
                Family::<Label, Counter>::default(),
            ),
            offsets_passed: registered(
                &mut r,
                "forecast_consumer_offsets_passed",
                "Input offsets with no record the broker could return (deleted, or transaction markers), passed over",
                Counter::default(),
            ),
            first_in: registered(
                &mut r,
                "forecast_first_record_in_timestamp_seconds",
                "When the first record was consumed, Unix seconds (0: none yet)",
                Seconds::default(),
            ),
            last_processed: registered(
                &mut r,
                "forecast_last_processed_timestamp_seconds",
                "When a record's outputs were last all acknowledged, Unix seconds (0: none yet)",
                Seconds::default(),
            ),
            ready: AtomicBool::new(false),
            registry: r,
        }
    }

    pub fn record_in(&self) {
        if self.records_in.inc() == 0 {
            self.first_in.set(unix_seconds());
        }
    }

    pub fn record_out(&self, output: Output) {
        self.records_out[output as usize].inc();
    }

    /// Rejections with the codes at these indices of [`Labels::codes`]
    /// (one out of range is not counted).
    pub fn rejected_at(&self, codes: impl IntoIterator<Item = usize>) {
        for i in codes {
            if let Some(c) = self.rejections.get(i) {
                c.inc();
            }
        }
    }

    /// A record of `topic` refused: not attested by a key this service
    /// believes. Returns how many of that topic so far, this one included.
    pub fn unattested(&self, topic: &str) -> u64 {
        self.unattested
            .get_or_create(&[("topic", topic.to_owned())])
            .inc()
            + 1
    }

    /// Whether the `n`-th refused record of a kind is logged: the 1st,
    /// 2nd, 4th, 8th... so that a flood of them cannot flood the logs (the
    /// metric counts every one).
    pub fn worth_logging(n: u64) -> bool {
        n.is_power_of_two()
    }

    /// A dead letter at the stage at this index of [`Labels::stages`].
    pub fn dead_letter_at(&self, stage: usize) {
        if let Some(c) = self.dead_letters.get(stage) {
            c.inc();
        }
    }

    /// Records the processing times (from receiving a record to all its
    /// outputs acknowledged) of a batch's records. The last-processed time
    /// is set before the records are counted, so a reader that sees them
    /// counted sees the time of their batch.
    pub fn latencies(&self, times: impl IntoIterator<Item = Duration>) {
        let mut times = times.into_iter().peekable();
        if times.peek().is_none() {
            return;
        }
        self.last_processed.set(unix_seconds());
        let mut count = 0;
        for d in times {
            self.processing.observe(d.as_secs_f64());
            count += 1;
        }
        self.processed.inc_by(count);
    }

    /// A seek back to read records the broker passed over
    /// ([`crate::continuity`]).
    pub fn reread(&self) {
        self.rereads.inc();
    }

    /// Offsets with no record the broker can return, passed over.
    pub fn offsets_passed(&self, n: i64) {
        self.offsets_passed.inc_by(n.max(0) as u64);
    }

    pub fn set_lag(&self, lag: i64) {
        self.consumer_lag.set(lag);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Relaxed)
    }

    /// Records whose outputs are all acknowledged.
    pub fn processed_total(&self) -> u64 {
        self.processed.get()
    }

    pub fn records_in_total(&self) -> u64 {
        self.records_in.get()
    }

    /// Unix seconds of the first record consumed and of the last batch
    /// processed (0 where none yet): a run's span by the service's clock.
    pub fn span_seconds(&self) -> (f64, f64) {
        (self.first_in.get(), self.last_processed.get())
    }

    /// The OpenMetrics text exposition ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut o = String::new();
        // Writing to a String cannot fail; the encoder fails only when its
        // writer does.
        let _ = encode(&mut o, &self.registry);
        o
    }
}

fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `series` (name and labels) in `rendered`.
    fn sample(rendered: &str, series: &str) -> f64 {
        let prefix = format!("{series} ");
        rendered
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no sample {series} in\n{rendered}"))
    }

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
        let r = m.render();
        assert_eq!(
            sample(
                &r,
                "forecast_first_record_in_timestamp_seconds{service=\"t\"}"
            ),
            first
        );
        assert_eq!(sample(&r, "forecast_records_in_total{service=\"t\"}"), 2.0);
    }

    fn bucket(rendered: &str, le: &str) -> f64 {
        sample(
            rendered,
            &format!("forecast_processing_seconds_bucket{{service=\"t\",le=\"{le}\"}}"),
        )
    }

    #[test]
    fn batch_latencies_fill_cumulative_buckets() {
        let m = Metrics::new("t");
        let ms = Duration::from_millis;
        m.latencies([Duration::from_micros(500), ms(3), ms(2_000), ms(10_000)]);
        m.latencies([ms(1)]);
        m.latencies([]);
        let r = m.render();
        assert_eq!(bucket(&r, "0.001"), 2.0, "0.5 ms and the 1 ms on the bound");
        assert_eq!(bucket(&r, "0.0025"), 2.0);
        assert_eq!(bucket(&r, "0.005"), 3.0);
        assert_eq!(bucket(&r, "1.0"), 3.0);
        assert_eq!(bucket(&r, "5.0"), 4.0, "10 s is above every bound");
        assert_eq!(bucket(&r, "+Inf"), 5.0);
        assert_eq!(m.processed_total(), 5);
        assert_eq!(
            sample(&r, "forecast_processing_seconds_count{service=\"t\"}"),
            5.0
        );
        assert_eq!(
            sample(&r, "forecast_records_processed_total{service=\"t\"}"),
            5.0
        );
        let (_, last) = m.span_seconds();
        assert!(
            last > 1.7e9,
            "the last batch processed is now, in Unix seconds: {last}"
        );
        let sum = sample(&r, "forecast_processing_seconds_sum{service=\"t\"}");
        assert!((sum - 12.0045).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn every_labelled_series_is_there_from_the_start_and_counts_its_own_events() {
        let labels = Labels {
            codes: ["A", "B", "C"].map(String::from).to_vec(),
            stages: ["deserialize", "validate", "sequence"]
                .map(String::from)
                .to_vec(),
        };
        let m = Metrics::labelled("validator", &labels);
        m.record_out(Output::Audit);
        m.rejected_at([1, 1, 7]);
        m.dead_letter_at(2);
        m.dead_letter_at(9);
        m.set_lag(7);
        let r = m.render();
        for (i, output) in OUTPUT_NAMES.iter().enumerate() {
            let want = if i == Output::Audit as usize {
                1.0
            } else {
                0.0
            };
            let series =
                format!("forecast_records_out_total{{service=\"validator\",output=\"{output}\"}}");
            assert_eq!(sample(&r, &series), want, "{series}");
        }
        for (i, code) in labels.codes.iter().enumerate() {
            let want = if i == 1 { 2.0 } else { 0.0 };
            let series =
                format!("forecast_rejections_total{{service=\"validator\",code=\"{code}\"}}");
            assert_eq!(sample(&r, &series), want, "{series}");
        }
        for (stage, want) in [("deserialize", 0.0), ("validate", 0.0), ("sequence", 1.0)] {
            let series =
                format!("forecast_dead_letters_total{{service=\"validator\",stage=\"{stage}\"}}");
            assert_eq!(sample(&r, &series), want, "{series}");
        }
        assert_eq!(
            sample(&r, "forecast_consumer_lag{service=\"validator\"}"),
            7.0
        );
        assert!(r.contains("# TYPE forecast_records_in counter\n"), "{r}");
        assert!(r.ends_with("# EOF\n"), "OpenMetrics ends with # EOF: {r}");
    }

    #[test]
    fn unattested_records_are_counted_per_topic_and_logged_ever_more_rarely() {
        let m = Metrics::new("test");
        let counts: Vec<u64> = (0..5)
            .map(|_| m.unattested("forecasts.validated"))
            .collect();
        assert_eq!(counts, [1, 2, 3, 4, 5]);
        assert_eq!(m.unattested("licences.decisions"), 1);
        let text = m.render();
        assert!(
            text.contains("forecast_unattested_records_total{service=\"test\",topic=\"forecasts.validated\"} 5"),
            "{text}"
        );
        let logged: Vec<u64> = (1..=1000).filter(|&n| Metrics::worth_logging(n)).collect();
        assert_eq!(logged, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]);
    }

    #[test]
    fn lag_is_unknown_until_set() {
        let r = Metrics::new("t").render();
        assert_eq!(sample(&r, "forecast_consumer_lag{service=\"t\"}"), -1.0);
    }
}
