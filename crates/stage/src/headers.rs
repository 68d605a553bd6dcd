//! Header names the pipeline writes, in the style of Kafka Connect's
//! dead-letter context headers, and the dead-letter record both services
//! write.

use rdkafka::Message as _;
use rdkafka::message::{BorrowedMessage, Header, Headers as _, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use forecast_model::attest::{Attester, Covered, Role, Unattested, Verifier};
use forecast_model::{SourceCoordinates, Stage};

use forecast_runtime::inflight::{Batch, BatchProducer, Refused};
use forecast_runtime::metrics::{Metrics, Output};

use crate::metrics::Counts as _;

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
/// The restricted-party list version of the verdict (on validated records;
/// empty: none published).
pub const SCREENING_VERSION: &str = "forecast.screening.version";
/// Warning codes of the verdict, comma-separated (on validated records).
pub const WARNINGS: &str = "forecast.warnings";
/// topic/partition/offset the validated record came from.
pub const SOURCE: &str = "forecast.source";
/// The value of [`SOURCE`]: `topic/partition/offset`, in one allocation
/// of the right size (`format!` grows its string from nothing, for every
/// record forwarded).
pub fn source_value(at: &SourceCoordinates) -> String {
    use std::fmt::Write as _;
    // Room for the topic, two slashes, an i32 and an i64.
    let mut value = String::with_capacity(at.topic.len() + 2 + 11 + 20);
    // Writing to a String cannot fail.
    let _ = write!(value, "{}/{}/{}", at.topic, at.partition, at.offset);
    value
}

/// A [`source_value`] read back; `None` if `value` is not one.
pub fn source_from(value: &str) -> Option<SourceCoordinates> {
    let mut parts = value.rsplitn(3, '/');
    let offset = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    Some(SourceCoordinates {
        topic: parts.next()?.to_owned(),
        partition,
        offset,
    })
}

/// Set when a dead letter's value was too large to forward: why.
pub const VALUE_OMITTED: &str = "forecast.errors.value.omitted";

/// The prefix of every header the stages write: the stages' own, so a
/// record's headers of that name are never passed on (a submitter cannot
/// set a verdict field, such as the policy version or the source, that a
/// later stage reads).
pub const RESERVED_PREFIX: &str = forecast_model::attest::RESERVED_PREFIX;

/// The stage's attestation of the record (`forecast_model::attest`).
pub const ATTESTATION: &str = forecast_model::attest::HEADER;

/// `record` with `attester`'s attestation appended to its headers (none:
/// attestation off, the record as it is). Call it last: a header added
/// after it is not attested, and one of the pipeline's namespace fails the
/// check.
pub fn attested<'a>(
    mut record: FutureRecord<'a, [u8], [u8]>,
    attester: Option<&Attester>,
) -> FutureRecord<'a, [u8], [u8]> {
    let Some(attester) = attester else {
        return record;
    };
    let headers = record.headers.take().unwrap_or_default();
    let covered = Covered {
        topic: record.topic,
        key: record.key,
        value: record.payload,
    };
    let mark = attester.attest(covered, headers.iter().map(|h| (h.key, h.value)));
    record.headers = Some(headers.insert(Header {
        key: ATTESTATION,
        value: Some(mark.as_bytes()),
    }));
    record
}

/// The value [`attested`] would append as [`ATTESTATION`] to a record to
/// `topic` with `key` and `value` whose headers of the pipeline's namespace
/// are `covered`, in order (headers outside it are not covered): worked out
/// before the record is made, on any thread, from the (name, value) pairs
/// themselves rather than read back from librdkafka's header list; append
/// it after every other header.
pub fn attestation(
    attester: &Attester,
    topic: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    covered: &[(&str, &[u8])],
) -> String {
    attester.attest(
        Covered { topic, key, value },
        covered.iter().map(|&(name, v)| (name, Some(v))),
    )
}

/// Whether `verifier` believes `m`: the role whose key attested it, or
/// why not (with attestation off, `Ok(None)`).
pub fn verify(m: &BorrowedMessage<'_>, verifier: &Verifier) -> Result<Option<Role>, Unattested> {
    let covered = Covered {
        topic: m.topic(),
        key: m.key(),
        value: m.payload(),
    };
    let at = m
        .timestamp()
        .to_millis()
        .map(forecast_model::Timestamp::from_millis);
    let all: Vec<(&str, Option<&[u8]>)> = m
        .headers()
        .into_iter()
        .flat_map(|h| h.iter())
        .map(|h| (h.key, h.value))
        .collect();
    verifier.verify(covered, all.iter().copied(), at)
}

/// The value of `m`'s first header named `key`, when it is UTF-8.
pub fn value<'a>(m: &'a BorrowedMessage<'_>, key: &str) -> Option<&'a str> {
    m.headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// The record's own headers, passed on byte for byte except those of the
/// stages' own namespace ([`RESERVED_PREFIX`]), which are dropped,
/// followed by `added` (key, value) in order.
pub fn headers_with(m: &BorrowedMessage<'_>, added: &[(&str, &[u8])]) -> OwnedHeaders {
    let mut out = OwnedHeaders::new();
    if let Some(h) = m.headers() {
        for header in h.iter().filter(|h| !h.key.starts_with(RESERVED_PREFIX)) {
            out = out.insert(header);
        }
    }
    appended(out, added)
}

/// Headers `added` (key, value), in order.
pub fn only(added: &[(&str, &[u8])]) -> OwnedHeaders {
    appended(OwnedHeaders::new_with_capacity(added.len()), added)
}

/// `out` followed by `added` (key, value) in order.
fn appended(mut out: OwnedHeaders, added: &[(&str, &[u8])]) -> OwnedHeaders {
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

/// Longest value of a header the services add, in bytes: what they write
/// stays bounded whatever the record (a message listing every violation of
/// a document is cut, with how much was left out).
pub const MAX_HEADER_VALUE_BYTES: usize = 4096;

/// The context headers of a dead letter, each value bounded to
/// [`MAX_HEADER_VALUE_BYTES`].
fn context(
    topic: &str,
    partition: i32,
    offset: i64,
    why: &DeadLetter<'_>,
) -> Vec<(&'static str, String)> {
    let bound = |v: &str| forecast_model::limits::bounded(v, MAX_HEADER_VALUE_BYTES).into_owned();
    vec![
        (ERR_TOPIC, bound(topic)),
        (ERR_PARTITION, partition.to_string()),
        (ERR_OFFSET, offset.to_string()),
        (ERR_STAGE, bound(why.stage)),
        (ERR_CODES, bound(why.codes)),
        (ERR_MESSAGE, bound(why.message)),
        (POLICY_VERSION, bound(why.policy_version)),
    ]
}

/// `m` as a dead letter to `topic`: its key, value and headers byte for
/// byte (but the stages' own, [`RESERVED_PREFIX`]), then the context
/// headers (where it was read, why it failed), bounded. A value larger than [`forecast_kafka::MAX_DEAD_LETTER_BYTES`]
/// is left out, with [`VALUE_OMITTED`] saying so; a null value stays null,
/// an empty one empty.
pub fn dead_letter<'m>(
    m: &'m BorrowedMessage<'m>,
    topic: &'m str,
    why: &DeadLetter<'_>,
) -> FutureRecord<'m, [u8], [u8]> {
    let size = m.payload().map_or(0, <[u8]>::len);
    let omitted = size > forecast_kafka::MAX_DEAD_LETTER_BYTES;
    let mut added = context(m.topic(), m.partition(), m.offset(), why);
    if omitted {
        added.push((
            VALUE_OMITTED,
            format!(
                "{size} bytes, over the {} bytes the dead-letter topic takes",
                forecast_kafka::MAX_DEAD_LETTER_BYTES
            ),
        ));
    }
    let added: Vec<(&str, &[u8])> = added.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    let mut record = FutureRecord::to(topic).headers(headers_with(m, &added));
    if let Some(value) = m.payload().filter(|_| !omitted) {
        record = record.payload(value);
    }
    if let Some(key) = m.key() {
        record = record.key(key);
    }
    record
}

/// Where a service dead-letters the records whose outputs were refused, and
/// what it says of them.
#[derive(Debug)]
pub struct Refusal<'a> {
    /// The dead-letter topic.
    pub dead_letters: &'a str,
    /// The service's stage.
    pub stage: Stage,
    /// The policy version it judges by (empty: none).
    pub policy_version: &'a str,
    /// What attests the dead letter (`None`: attestation off).
    pub attester: Option<&'a Attester>,
}

/// Sends the dead letter of a record of `topic` whose own outputs the
/// broker refused for good, and counts it: only the context headers (where
/// the record is, why its outputs could not be written, bounded) and
/// [`VALUE_OMITTED`], no key or value, since the record itself stays on its
/// topic at that offset. What both services' [`Handler::refused`] do.
///
/// [`Handler::refused`]: forecast_runtime::inflight::Handler::refused
pub async fn send_refused(
    batch: &mut Batch,
    producer: &BatchProducer,
    metrics: &Metrics,
    topic: &str,
    refused: &Refused,
    how: &Refusal<'_>,
) -> anyhow::Result<()> {
    let message = format!(
        "the outputs of this record could not be written: {}",
        refused.failure
    );
    let stage = how.stage.as_str().to_ascii_lowercase();
    let why = DeadLetter {
        stage: &stage,
        codes: "",
        message: &message,
        policy_version: how.policy_version,
    };
    let context = context(topic, refused.partition, refused.offset, &why);
    let mut added: Vec<(&str, &[u8])> = context.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    added.push((
        VALUE_OMITTED,
        "the broker refused this record's outputs; the record stays on its topic at the offset given"
            .as_bytes(),
    ));
    let out = only(&added);
    let record = attested(
        FutureRecord::to(how.dead_letters).headers(out),
        how.attester,
    );
    batch.send(producer, record).await?;
    metrics.record_out(Output::Rejected);
    metrics.dead_letter(how.stage);
    Ok(())
}

#[cfg(test)]
mod tests {
    use forecast_model::Timestamp;
    use forecast_model::attest::{StageKeyEntry, StageKeys};
    use rdkafka::message::Headers as _;

    use super::*;

    #[test]
    fn a_source_value_reads_back_as_the_coordinates_it_names() {
        let at = SourceCoordinates {
            topic: "forecasts.submitted".into(),
            partition: 2,
            offset: i64::MAX,
        };
        let value = source_value(&at);
        assert_eq!(value, format!("forecasts.submitted/2/{}", i64::MAX));
        assert_eq!(source_from(&value), Some(at));
        assert_eq!(source_from("forecasts.submitted/2"), None);
        assert_eq!(source_from("forecasts.submitted/x/7"), None);
    }

    #[test]
    fn an_attestation_made_ahead_is_the_one_attested_appends() {
        let entry = StageKeyEntry::generate(Role::Validator, Timestamp::from_millis(0)).unwrap();
        let keys = StageKeys::from_text(&entry.line(), "test keys").unwrap();
        let attester = keys.attester(Role::Validator, Timestamp::now()).unwrap();
        let covered: &[(&str, &[u8])] = &[(POLICY_VERSION, b"v1"), (SOURCE, b"s/0/7")];
        // A customer's own header first, as `headers_with` passes it on:
        // not covered, so the same mark.
        let mut all: Vec<(&str, &[u8])> = vec![("customer-trace", b"abc")];
        all.extend_from_slice(covered);
        let record = FutureRecord::<[u8], [u8]>::to("forecasts.validated")
            .key(b"TENCENT/TCT-1".as_slice())
            .payload(b"value".as_slice())
            .headers(only(&all));
        let record = attested(record, Some(&attester));
        let headers = record.headers.expect("headers");
        let last = headers.get(headers.count() - 1);
        assert_eq!(last.key, ATTESTATION);
        let ahead = attestation(
            &attester,
            "forecasts.validated",
            Some(b"TENCENT/TCT-1"),
            Some(b"value"),
            covered,
        );
        assert_eq!(last.value, Some(ahead.as_bytes()));
        // And it covers what it says: another value, another mark.
        let other = attestation(
            &attester,
            "forecasts.validated",
            Some(b"TENCENT/TCT-1"),
            Some(b"valuE"),
            covered,
        );
        assert_ne!(other, ahead);
    }
}
