//! Header names the pipeline writes, in the style of Kafka Connect's
//! dead-letter context headers, and the dead-letter record both services
//! write.

use rdkafka::Message as _;
use rdkafka::message::{BorrowedMessage, Header, Headers as _, OwnedHeaders};
use rdkafka::producer::FutureRecord;

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

/// The record's own headers, passed on byte for byte, followed by `added`
/// (key, value) in order.
pub fn headers_with(m: &BorrowedMessage<'_>, added: &[(&str, &[u8])]) -> OwnedHeaders {
    let mut out = OwnedHeaders::new();
    if let Some(h) = m.headers() {
        for header in h.iter() {
            out = out.insert(header);
        }
    }
    for &(key, value) in added {
        out = out.insert(Header {
            key,
            value: Some(value),
        });
    }
    out
}

/// Why a record is dead-lettered: the context headers it gets.
#[derive(Debug)]
pub struct DeadLetter<'a> {
    /// `deserialize`, `validate` or `sequence`.
    pub stage: &'a str,
    /// Rule codes, comma-separated.
    pub codes: &'a str,
    /// What went wrong, for people.
    pub message: &'a str,
    pub policy_version: &'a str,
}

/// `m` as a dead letter to `topic`: its key, value and headers byte for
/// byte, then the context headers (where it was read, why it failed). A
/// value larger than [`forecast_kafka::MAX_DEAD_LETTER_BYTES`] is left
/// out, with [`VALUE_OMITTED`] saying so; a null value stays null, an empty
/// one empty.
pub fn dead_letter<'m>(
    m: &'m BorrowedMessage<'m>,
    topic: &'m str,
    why: &DeadLetter<'_>,
) -> FutureRecord<'m, [u8], [u8]> {
    let partition = m.partition().to_string();
    let offset = m.offset().to_string();
    let size = m.payload().map_or(0, <[u8]>::len);
    let omitted = size > forecast_kafka::MAX_DEAD_LETTER_BYTES;
    let note = format!(
        "{size} bytes, over the {} bytes the dead-letter topic takes",
        forecast_kafka::MAX_DEAD_LETTER_BYTES
    );
    let mut added = vec![
        (ERR_TOPIC, m.topic().as_bytes()),
        (ERR_PARTITION, partition.as_bytes()),
        (ERR_OFFSET, offset.as_bytes()),
        (ERR_STAGE, why.stage.as_bytes()),
        (ERR_CODES, why.codes.as_bytes()),
        (ERR_MESSAGE, why.message.as_bytes()),
        (POLICY_VERSION, why.policy_version.as_bytes()),
    ];
    if omitted {
        added.push((VALUE_OMITTED, note.as_bytes()));
    }
    let mut record = FutureRecord::to(topic).headers(headers_with(m, &added));
    if let Some(value) = m.payload().filter(|_| !omitted) {
        record = record.payload(value);
    }
    if let Some(key) = m.key() {
        record = record.key(key);
    }
    record
}
