//! Header names the pipeline writes, in the style of Kafka Connect's
//! dead-letter context headers.

/// Topic the record was read from.
pub const ERR_TOPIC: &str = "forecast.errors.topic";
/// Partition it was read from.
pub const ERR_PARTITION: &str = "forecast.errors.partition";
/// Offset it was read at.
pub const ERR_OFFSET: &str = "forecast.errors.offset";
/// `deserialize`, `validate` or `sequence`.
pub const ERR_STAGE: &str = "forecast.errors.stage";
/// Rule codes, comma-separated.
pub const ERR_CODES: &str = "forecast.errors.codes";
/// What went wrong, for people.
pub const ERR_MESSAGE: &str = "forecast.errors.message";
/// Policy version of the verdict.
pub const POLICY_VERSION: &str = "forecast.policy.version";
/// Warning codes of the verdict, comma-separated (on validated records).
pub const WARNINGS: &str = "forecast.warnings";
/// topic/partition/offset the validated record came from.
pub const SOURCE: &str = "forecast.source";
/// Set when a dead letter's value was too large to forward: why.
pub const VALUE_OMITTED: &str = "forecast.errors.value.omitted";
