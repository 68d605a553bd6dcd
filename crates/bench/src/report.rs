//! The figures: per-document CPU, throughput and latency, their medians,
//! and how they are printed.

/// CPU microseconds per document of each process between two readings.
pub(crate) fn per_document(before: [f64; 4], after: [f64; 4], documents: usize) -> [f64; 4] {
    std::array::from_fn(|i| (after[i] - before[i]) * 1e6 / documents as f64)
}

/// A timed stage: wall-clock and CPU seconds of the process doing it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timed {
    pub(crate) seconds: f64,
    pub(crate) cpu_seconds: f64,
    /// Seconds its threads waited for a core meanwhile.
    pub(crate) wait_seconds: f64,
    /// CPU seconds of the broker meanwhile (NaN: not started here).
    pub(crate) broker_seconds: f64,
}

/// End-to-end latency at an offered load.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Latency {
    /// Submit to the first demand snapshot that includes the document.
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    /// Documents whose snapshot was seen.
    pub(crate) seen: usize,
    /// Submit to the broker's acknowledgement (the first hop).
    pub(crate) ack_p50_ms: f64,
    pub(crate) ack_p99_ms: f64,
    /// Submit to the aggregator producing that snapshot (the record's
    /// create time, ms resolution): the rest is the snapshot's way to the
    /// reader (a producer batch, the broker, a fetch).
    pub(crate) produced_p50_ms: f64,
    pub(crate) produced_p99_ms: f64,
    /// CPU microseconds per document by process, as in (d), from the
    /// first submit until every document was seen.
    pub(crate) cpu_us: [f64; 4],
    /// What the broker took meanwhile, per document: resident bytes, and
    /// pages touched for the first time (a memory-storage broker keeps
    /// every record; on a VM each fresh page costs microseconds).
    pub(crate) broker_bytes: f64,
    pub(crate) broker_faults: f64,
}

/// One run of the throughput figures (a) to (d), documents/s.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Throughput {
    pub(crate) passthrough: f64,
    pub(crate) validator: f64,
    pub(crate) aggregator: f64,
    pub(crate) end_to_end: f64,
    /// (e): documents of (d) per second the planner view catches up on.
    pub(crate) planner: f64,
    pub(crate) validator_rss_mib: f64,
    pub(crate) aggregator_rss_mib: f64,
    pub(crate) planner_rss_mib: f64,
    /// CPU microseconds per document of the process doing (a), (b), (c):
    /// the harness for (a), the service for the others.
    pub(crate) passthrough_cpu_us: f64,
    pub(crate) validator_cpu_us: f64,
    pub(crate) aggregator_cpu_us: f64,
    pub(crate) planner_cpu_us: f64,
    /// CPU microseconds per document in (d): broker, validator,
    /// aggregator, harness.
    pub(crate) end_to_end_cpu_us: [f64; 4],
    /// Microseconds per document the threads of the process doing (a),
    /// (b), (c) waited for a core (runnable, another thread on it).
    pub(crate) core_wait_us: [f64; 3],
    /// CPU microseconds per document the broker took during (a), (b), (c)
    /// (NaN when it was not started here, `--brokers`).
    pub(crate) broker_cpu_us: [f64; 3],
}

impl Throughput {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "passthrough_docs_per_s": self.passthrough,
            "validator_docs_per_s": self.validator,
            "aggregator_docs_per_s": self.aggregator,
            "end_to_end_docs_per_s": self.end_to_end,
            "planner_docs_per_s": self.planner,
            "validator_peak_rss_mib": self.validator_rss_mib,
            "aggregator_peak_rss_mib": self.aggregator_rss_mib,
            "planner_peak_rss_mib": self.planner_rss_mib,
            "passthrough_cpu_us_per_doc": self.passthrough_cpu_us,
            "validator_cpu_us_per_doc": self.validator_cpu_us,
            "aggregator_cpu_us_per_doc": self.aggregator_cpu_us,
            "planner_cpu_us_per_doc": self.planner_cpu_us,
            "end_to_end_cpu_us_per_doc": EndToEndCpu(self.end_to_end_cpu_us).json(),
            "core_wait_us_per_doc": {
                "passthrough": self.core_wait_us[0],
                "validator": self.core_wait_us[1],
                "aggregator": self.core_wait_us[2],
            },
            "broker_cpu_us_per_doc": {
                "passthrough": self.broker_cpu_us[0],
                "validator": self.broker_cpu_us[1],
                "aggregator": self.broker_cpu_us[2],
            },
        })
    }
}

/// CPU microseconds per document in (d), by process: broker (NaN when
/// not started by the harness), validator, aggregator, harness.
pub(crate) struct EndToEndCpu(pub(crate) [f64; 4]);

impl EndToEndCpu {
    pub(crate) const PROCESSES: [&str; 4] = ["broker", "validator", "aggregator", "harness"];

    /// By process name; an unmeasured one is null.
    pub(crate) fn json(&self) -> serde_json::Value {
        Self::PROCESSES
            .iter()
            .zip(self.0)
            .map(|(name, us)| (name.to_string(), serde_json::json!(us)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

impl std::fmt::Display for EndToEndCpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, us)) in Self::PROCESSES.iter().zip(self.0).enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            if us.is_nan() {
                write!(f, "{sep}{name} not measured")?;
            } else {
                write!(f, "{sep}{name} {us:.1}")?;
            }
        }
        Ok(())
    }
}

/// The median of the runs' figures: of an even number of runs, the mean
/// of the middle two (the upper middle value would make `--repeat 2`
/// report the larger of its two runs for every figure).
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 0 => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        n => values[n / 2],
    }
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn the_median_of_an_even_number_of_runs_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![3.0, 1.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![5.0, 1.0, 3.0]), 3.0);
        assert!(median(Vec::new()).is_nan());
    }
}
