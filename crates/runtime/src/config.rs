//! Configuration every command that talks to Kafka shares: brokers, topic
//! names, librdkafka pass-through and logging.

use std::collections::BTreeMap;

use clap::{Args, ValueEnum};

/// Connection to the Kafka-protocol cluster.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Bootstrap brokers, comma-separated host:port.
    #[arg(
        long,
        env = "FORECAST_BROKERS",
        default_value = "localhost:9092",
        value_name = "LIST"
    )]
    pub brokers: String,
    /// Any librdkafka property, `-X key=value`, repeatable (SASL, TLS, tuning);
    /// applied after the pipeline's own settings, so it can override them.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!(
            "`{s}` is not key=value (e.g. -X security.protocol=SASL_SSL)"
        )),
    }
}

impl KafkaArgs {
    /// The pass-through properties, last one wins.
    pub fn overrides(&self) -> BTreeMap<&str, &str> {
        self.properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

/// Topic names (defaults from the design; every one overridable).
#[derive(Debug, Clone, Args)]
pub struct TopicArgs {
    /// Topic customers submit to (key document_id, Avro ForecastDocument).
    #[arg(
        long,
        env = "FORECAST_TOPIC_SUBMITTED",
        default_value = "forecasts.submitted"
    )]
    pub topic_submitted: String,
    /// Accepted documents (key document_id), the system of record for demand.
    #[arg(
        long,
        env = "FORECAST_TOPIC_VALIDATED",
        default_value = "forecasts.validated"
    )]
    pub topic_validated: String,
    /// Dead letters: original key, value and headers, plus context headers.
    #[arg(
        long,
        env = "FORECAST_TOPIC_REJECTED",
        default_value = "forecasts.rejected"
    )]
    pub topic_rejected: String,
    /// Every verdict (key document_id, Avro Verdict).
    #[arg(long, env = "FORECAST_TOPIC_AUDIT", default_value = "forecasts.audit")]
    pub topic_audit: String,
    /// Demand snapshots (compacted; key customer/partition, Avro DemandSnapshot).
    #[arg(
        long,
        env = "FORECAST_TOPIC_DEMAND",
        default_value = "demand.by-customer"
    )]
    pub topic_demand: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging: format by flag, level by `RUST_LOG` (default `info`).
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long, env = "FORECAST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_key_value() {
        assert_eq!(
            parse_property("a.b=c=d").unwrap(),
            ("a.b".into(), "c=d".into())
        );
        assert!(parse_property("novalue").unwrap_err().contains("key=value"));
        assert!(parse_property("=x").is_err());
    }
}
