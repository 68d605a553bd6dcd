//! Flags every service and streaming command shares: topic names and
//! logging (the connection, brokers and `-X`, is `forecast_kafka::KafkaArgs`).

use clap::{Args, ValueEnum};

/// Default name of a pipeline topic.
pub const DEFAULT_TOPIC_SUBMITTED: &str = "forecasts.submitted";
/// Default name of a pipeline topic.
pub const DEFAULT_TOPIC_VALIDATED: &str = "forecasts.validated";
/// Default name of a pipeline topic.
pub const DEFAULT_TOPIC_REJECTED: &str = "forecasts.rejected";
/// Default name of a pipeline topic.
pub const DEFAULT_TOPIC_AUDIT: &str = "forecasts.audit";
/// Default name of a pipeline topic.
pub const DEFAULT_TOPIC_DEMAND: &str = "demand.by-customer";
/// Default name of a pipeline topic.
pub const DEFAULT_TOPIC_SUPPLY: &str = "supply.plan";
pub const DEFAULT_TOPIC_LICENCES: &str = "licences.decisions";
/// Default name of a pipeline topic.
pub const DEFAULT_TOPIC_LICENCE_DEMAND: &str = "demand.by-licence";
/// Default name of a pipeline topic.
pub const DEFAULT_TOPIC_SCREENING: &str = "screening.lists";
/// Default name of a pipeline topic.
pub const DEFAULT_TOPIC_COMMITS: &str = "commits";

/// Topic names (defaults from the design; every one overridable).
#[derive(Debug, Clone, Args)]
pub struct TopicArgs {
    /// Topic customers submit to (key document_id, Avro ForecastDocument).
    #[arg(
        long,
        env = "FORECAST_TOPIC_SUBMITTED",
        default_value = DEFAULT_TOPIC_SUBMITTED
    )]
    pub topic_submitted: String,
    /// Accepted documents (key customer_id/document_id), the system of record for demand.
    #[arg(
        long,
        env = "FORECAST_TOPIC_VALIDATED",
        default_value = DEFAULT_TOPIC_VALIDATED
    )]
    pub topic_validated: String,
    /// Dead letters: original key, value and headers, plus context headers.
    #[arg(
        long,
        env = "FORECAST_TOPIC_REJECTED",
        default_value = DEFAULT_TOPIC_REJECTED
    )]
    pub topic_rejected: String,
    /// Every verdict (key customer_id/document_id, Avro Verdict).
    #[arg(long, env = "FORECAST_TOPIC_AUDIT", default_value = DEFAULT_TOPIC_AUDIT)]
    pub topic_audit: String,
    /// Demand snapshots (compacted; key customer/partition, Avro DemandSnapshot).
    #[arg(
        long,
        env = "FORECAST_TOPIC_DEMAND",
        default_value = DEFAULT_TOPIC_DEMAND
    )]
    pub topic_demand: String,
    /// Supply plan (compacted; key SKU/quarter, JSON {sku, quarter, on_hand, ordered}).
    #[arg(
        long,
        env = "FORECAST_TOPIC_SUPPLY",
        default_value = DEFAULT_TOPIC_SUPPLY
    )]
    pub topic_supply: String,
    /// Licence decisions (compacted; key application_number/decided_at, Avro
    /// LicenceDecision).
    #[arg(
        long,
        env = "FORECAST_TOPIC_LICENCES",
        default_value = DEFAULT_TOPIC_LICENCES
    )]
    pub topic_licences: String,
    /// Demand by licence status (compacted; key customer/partition, Avro
    /// LicenceSnapshot).
    #[arg(
        long,
        env = "FORECAST_TOPIC_LICENCE_DEMAND",
        default_value = DEFAULT_TOPIC_LICENCE_DEMAND
    )]
    pub topic_licence_demand: String,
    /// Restricted-party list versions (compacted; one key, `list`: the
    /// version published last is in force; Avro ScreeningList).
    #[arg(
        long,
        env = "FORECAST_TOPIC_SCREENING",
        default_value = DEFAULT_TOPIC_SCREENING
    )]
    pub topic_screening: String,
    /// The supplier's commits (compacted; key customer_id, the commit as
    /// JSON, signed by a supplier key).
    #[arg(
        long,
        env = "FORECAST_TOPIC_COMMITS",
        default_value = DEFAULT_TOPIC_COMMITS
    )]
    pub topic_commits: String,
}

impl Default for TopicArgs {
    /// The default names, as the flags have them when not given.
    fn default() -> Self {
        Self {
            topic_submitted: DEFAULT_TOPIC_SUBMITTED.into(),
            topic_validated: DEFAULT_TOPIC_VALIDATED.into(),
            topic_rejected: DEFAULT_TOPIC_REJECTED.into(),
            topic_audit: DEFAULT_TOPIC_AUDIT.into(),
            topic_demand: DEFAULT_TOPIC_DEMAND.into(),
            topic_supply: DEFAULT_TOPIC_SUPPLY.into(),
            topic_licences: DEFAULT_TOPIC_LICENCES.into(),
            topic_licence_demand: DEFAULT_TOPIC_LICENCE_DEMAND.into(),
            topic_screening: DEFAULT_TOPIC_SCREENING.into(),
            topic_commits: DEFAULT_TOPIC_COMMITS.into(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging: format by flag, level by `RUST_LOG` (default `info`).
#[derive(Debug, Clone, Default, Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long, env = "FORECAST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_topics_are_the_flags_defaults() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            topics: TopicArgs,
        }
        let parsed = <Cli as clap::Parser>::parse_from(["test"]).topics;
        let default = TopicArgs::default();
        assert_eq!(
            [
                parsed.topic_submitted,
                parsed.topic_validated,
                parsed.topic_rejected,
                parsed.topic_audit,
                parsed.topic_demand
            ],
            [
                default.topic_submitted,
                default.topic_validated,
                default.topic_rejected,
                default.topic_audit,
                default.topic_demand
            ]
        );
    }
}
