//! Kafka clients with the pipeline's settings, written once for everything
//! that talks to the cluster: the customer library (`forecast-producer`),
//! the services and `forecastctl`. Nothing here knows the services; the
//! `clap` feature adds the command-line form of [`KafkaArgs`].

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

/// Connection to the Kafka-protocol cluster.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct KafkaArgs {
    /// Bootstrap brokers, comma-separated host:port.
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            env = "FORECAST_BROKERS",
            default_value = "localhost:9092",
            value_name = "LIST"
        )
    )]
    pub brokers: String,
    /// Any librdkafka property, `-X key=value`, repeatable (SASL, TLS, tuning);
    /// applied after the pipeline's own settings, so it can override them.
    /// Secrets belong in the environment instead, where `-X` values (shown
    /// in the process list) do not: `FORECAST_KAFKA_SASL_PASSWORD=...`
    /// sets `sasl.password`, and so on for any property.
    #[cfg_attr(
        feature = "clap",
        arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_property)
    )]
    pub properties: Vec<(String, String)>,
}

/// Parses one `-X key=value` property.
pub fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!(
            "`{s}` is not key=value (e.g. -X security.protocol=SASL_SSL)"
        )),
    }
}

impl KafkaArgs {
    /// Settings for `brokers`, with no pass-through properties.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            properties: Vec::new(),
        }
    }

    /// The pass-through properties, last one wins.
    pub fn overrides(&self) -> BTreeMap<&str, &str> {
        self.properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

fn base(kafka: &KafkaArgs) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.brokers);
    c
}

/// Prefix of the environment variables that set librdkafka properties.
pub const ENV_PREFIX: &str = "FORECAST_KAFKA_";

/// The librdkafka properties set by the environment: each variable
/// `FORECAST_KAFKA_<NAME>` sets the property `<name>` in lower case with
/// `_` read as `.` (librdkafka's names have no `_`): for instance
/// `FORECAST_KAFKA_SASL_PASSWORD` sets `sasl.password`. This is where
/// secrets go: a `-X` value shows in the process list. A variable whose
/// name ends in `_FILE` names a file holding the value instead (its first
/// line), as container secrets are given: `FORECAST_KAFKA_SASL_PASSWORD_FILE
/// =/run/secrets/validator.password` sets `sasl.password` (a file that
/// cannot be read is logged and leaves the property unset).
pub fn env_properties() -> Vec<(String, String)> {
    properties_from(
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        |path| {
            std::fs::read_to_string(path)
                .inspect_err(|e| tracing::error!(path, error = %e, "cannot read a FORECAST_KAFKA_*_FILE secret; the property stays unset"))
                .ok()
        },
    )
}

fn properties_from(
    vars: impl Iterator<Item = (String, String)>,
    read: impl Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vars
        .filter_map(|(k, v)| {
            let name = k.strip_prefix(ENV_PREFIX)?;
            let (name, v) = match name.strip_suffix("_FILE") {
                Some(name) => (
                    name,
                    read(&v)?.lines().next().unwrap_or_default().to_owned(),
                ),
                None => (name, v),
            };
            (!name.is_empty()).then(|| (name.to_ascii_lowercase().replace('_', "."), v))
        })
        .collect();
    out.sort();
    out
}

/// The pipeline's settings, then the environment's properties, then `-X`.
fn finish(mut c: ClientConfig, kafka: &KafkaArgs) -> ClientConfig {
    for (k, v) in env_properties() {
        c.set(k, v);
    }
    for (k, v) in kafka.overrides() {
        c.set(k, v);
    }
    c
}

/// A client with only the brokers and the pass-through properties (for
/// metadata and admin requests).
pub fn client_config(kafka: &KafkaArgs) -> ClientConfig {
    finish(base(kafka), kafka)
}

/// Largest document record the pipeline takes, in bytes (brokers commonly
/// accept 1 MB): the producer refuses larger ones before sending, the
/// validator dead-letters them unread.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;

/// Largest record the services forward to the dead-letter topic with its
/// value; a larger one is dead-lettered without it (see the validator).
pub const MAX_DEAD_LETTER_BYTES: usize = 20 << 20;

/// Largest restricted-party list version `screening load` publishes, in
/// bytes, encoded (one record: readers fetch up to 16 MiB per partition).
/// The Consolidated Screening List's names and other names are about 3 MB.
pub const MAX_SCREENING_LIST_BYTES: usize = 12 << 20;

/// Largest commit the allocator publishes, in bytes (one customer's lines,
/// each naming the document revisions it answers: about 60 bytes per
/// revision and SKU x quarter). A larger one is not published; the
/// allocator says so and counts it.
pub const MAX_COMMIT_BYTES: usize = 8 << 20;

/// Where readers start: offset 0, or the earliest kept when retention
/// removed it. An explicit offset, because some brokers (tansu 0.6) answer
/// the "earliest"/"latest" offset queries wrongly.
pub fn from_start() -> rdkafka::Offset {
    rdkafka::Offset::Offset(0)
}

/// The partition ids of `topic` (a consumer's or producer's `client()`);
/// empty when the topic does not exist.
pub fn partition_ids<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, KafkaError> {
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// An idempotent producer: `acks=all`, retries without reordering or
/// duplicates, deliveries reported per record. Uncompressed, batches of up
/// to 10 ms: what the producer library and `forecastctl submit` use, for
/// documents sent a few at a time, where a submit waiting for its receipt
/// waits out the batch (`-X compression.type=lz4 -X linger.ms=25` for bulk
/// submitters; a flush sends at once whatever the linger).
pub fn producer_config(kafka: &KafkaArgs) -> ClientConfig {
    idempotent_producer(kafka, "none", SUBMIT_LINGER_MS)
}

/// The services' producer: lz4 batches of up to 25 ms. Their outputs are
/// many similar records per batch (a document's copy, its verdicts,
/// snapshots), which lz4 shrinks about twelvefold: the broker keeps,
/// copies and sends that much less. The longer batches are fewer produce
/// requests under load, and tansu 0.6 pays for each (it serializes its
/// producer state on every idempotent batch): with 25 ms the pipeline keeps
/// up with a steady 55,000 documents/s on two cores, with 10 it does not
/// (docs/performance.md, with the command). At low load each of the two
/// service hops waits up to 25 ms.
pub fn service_producer_config(kafka: &KafkaArgs) -> ClientConfig {
    idempotent_producer(kafka, "lz4", SERVICE_LINGER_MS)
}

/// `linger.ms` of [`producer_config`].
pub const SUBMIT_LINGER_MS: u32 = 10;
/// `linger.ms` of [`service_producer_config`]; the consume loop's
/// default window (`--max-in-flight`) covers this much of a stage's
/// throughput with room for the produce round trip.
pub const SERVICE_LINGER_MS: u32 = 25;

fn idempotent_producer(kafka: &KafkaArgs, compression: &str, linger_ms: u32) -> ClientConfig {
    let mut c = base(kafka);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set("compression.type", compression)
        // Dead letters carry oversized records byte for byte (up to this).
        .set("message.max.bytes", MAX_DEAD_LETTER_BYTES.to_string());
    finish(c, kafka)
}

/// A consumer in `group` that stores offsets only when told to (after the
/// records produced for a message are acknowledged) and commits the stored
/// ones in the background.
///
/// `instance` is the static group membership id (KIP-345): an instance that
/// restarts with the same id takes its partitions back at once instead of
/// waiting for the group to notice the old one is gone (the session
/// timeout). It must be unique per running instance.
pub fn consumer_config(kafka: &KafkaArgs, group: &str, instance: Option<&str>) -> ClientConfig {
    let mut c = base(kafka);
    if let Some(id) = instance {
        c.set("group.instance.id", id);
    }
    c.set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "10000")
        // Also the rebalance timeout: how long a join waits for members that
        // stopped without leaving (tansu 0.6 waits this long, not the session
        // timeout). The loops poll continuously, so 15 s is ample.
        .set("max.poll.interval.ms", "15000")
        // Fetch records far above the accepted size, so an oversized one is
        // read and dead-lettered instead of stalling its partition (brokers
        // without KIP-74, such as tansu 0.6, never return a batch larger
        // than the fetch size).
        .set("max.partition.fetch.bytes", "16777216")
        .set("fetch.max.bytes", "67108864")
        .set("receive.message.max.bytes", "67109376")
        // Statistics every 5 s feed the consumer-lag gauge (GroupContext).
        .set("statistics.interval.ms", "5000");
    fetch_timing(&mut c);
    finish(c, kafka)
}

/// How long a fetch may wait for records, for every consumer of the
/// pipeline.
///
/// A fetch returns after at most 20 ms when little data is waiting
/// (default 500 ms): each hop of submit -> validator -> aggregator ->
/// reader otherwise adds up to half a second.
///
/// `fetch.min.bytes` of 1 MiB (default 1 byte) is for tansu 0.6, which
/// reads a partition when the fetch arrives and, if it holds more than
/// `fetch.min.bytes`, sleeps the rest of `fetch.wait.max.ms` and answers
/// with what it read then; otherwise it reads again once the wait is over
/// and answers with that at once (tansu-storage `service/fetch.rs`). With
/// 1 byte every record waited until the next read and then 20 ms more;
/// with 1 MiB it is sent as read: 50 ms less from submit to demand over
/// the three hops at 20k-40k documents/s (docs/performance.md), and the
/// same CPU. A backlog (a first read of more than 1 MiB) is answered as
/// before, 5 MiB per fetch. On Apache Kafka, which answers as soon as
/// `fetch.min.bytes` are waiting, `-X fetch.min.bytes=1` gives the
/// earliest answer instead.
///
/// Keep it well below tansu's 5 MiB per fetch: its second read gets only
/// what the first left of that budget, so near 5 MiB a backlog's fetch
/// (a first read just under `fetch.min.bytes`) would answer with little
/// more than one batch.
fn fetch_timing(c: &mut ClientConfig) {
    c.set("fetch.wait.max.ms", "20")
        .set("fetch.min.bytes", "1048576");
}

/// A consumer outside any group, for reading a topic from its start.
pub fn reader_config(kafka: &KafkaArgs) -> ClientConfig {
    let mut c = base(kafka);
    c.set("group.id", "forecast-reader")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("max.partition.fetch.bytes", "16777216")
        .set("receive.message.max.bytes", "67109376");
    fetch_timing(&mut c);
    finish(c, kafka)
}

/// Enqueues a record, waiting while the local queue is full.
pub async fn enqueue(
    producer: &FutureProducer,
    record: FutureRecord<'_, [u8], [u8]>,
) -> Result<DeliveryFuture, KafkaError> {
    // rdkafka's send gives the record back inside its error.
    #[allow(clippy::result_large_err)]
    let sent = send_waiting(record, |r| producer.send_result(r)).await;
    sent
}

/// Hands `record` to `send` (a producer's non-blocking send, which gives
/// the record back when it fails), again every 5 ms while the producer's
/// local queue is full; any other error is returned.
pub async fn send_waiting<R, T>(
    mut record: R,
    send: impl Fn(R) -> Result<T, (KafkaError, R)>,
) -> Result<T, KafkaError> {
    loop {
        match send(record) {
            Ok(sent) => return Ok(sent),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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

    #[test]
    fn a_file_variable_reads_the_value_from_its_file() {
        let vars = [
            ("FORECAST_KAFKA_SASL_PASSWORD_FILE", "/run/secrets/pw"),
            ("FORECAST_KAFKA_SASL_USERNAME_FILE", "/missing"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let read = |path: &str| (path == "/run/secrets/pw").then(|| "s3cret\nignored\n".to_owned());
        assert_eq!(
            properties_from(vars.into_iter(), read),
            [("sasl.password".to_owned(), "s3cret".to_owned())]
        );
    }

    #[test]
    fn environment_variables_name_properties() {
        let vars = [
            ("FORECAST_KAFKA_SASL_PASSWORD", "s3cret"),
            ("FORECAST_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("FORECAST_KAFKA_", "ignored: no name"),
            ("FORECAST_BROKERS", "not a property"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(
            properties_from(vars.into_iter(), |_| None),
            [
                ("sasl.password".to_owned(), "s3cret".to_owned()),
                ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
            ]
        );
    }

    fn kafka(properties: &[(&str, &str)]) -> KafkaArgs {
        KafkaArgs {
            brokers: "localhost:9092".into(),
            properties: properties
                .iter()
                .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    #[test]
    fn services_compress_and_batch_longer_than_submitters() {
        let k = kafka(&[]);
        assert_eq!(
            service_producer_config(&k).get("compression.type"),
            Some("lz4")
        );
        assert_eq!(producer_config(&k).get("compression.type"), Some("none"));
        assert_eq!(producer_config(&k).get("linger.ms"), Some("10"));
        assert_eq!(service_producer_config(&k).get("linger.ms"), Some("25"));
        for c in [producer_config(&k), service_producer_config(&k)] {
            assert_eq!(c.get("enable.idempotence"), Some("true"));
            assert_eq!(c.get("acks"), Some("all"));
        }
    }

    #[test]
    fn a_property_given_with_x_overrides_the_pipelines_own() {
        let k = kafka(&[("compression.type", "zstd"), ("linger.ms", "3")]);
        for c in [producer_config(&k), service_producer_config(&k)] {
            assert_eq!(c.get("compression.type"), Some("zstd"));
            assert_eq!(c.get("linger.ms"), Some("3"));
        }
    }
}
