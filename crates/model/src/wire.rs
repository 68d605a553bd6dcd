//! Confluent wire framing: magic byte `0`, the schema id as 4 bytes
//! big-endian, then the Avro datum.
//!
//! Decoding looks the id up in a [`Registry`]: the current version is read
//! by the hand-written codec; an older version of the same subject is first
//! resolved to the current schema by `apache-avro` (Avro's writer/reader
//! schema resolution: defaults for added fields, dropped fields skipped).

use crate::DecodeError;
use crate::codec;
use crate::demand::DemandSnapshot;
use crate::document::ForecastDocument;
use crate::schema::{Registry, Subject};
use crate::verdict::Verdict;

/// The first byte of every framed record.
pub const MAGIC: u8 = 0;
/// Magic byte plus schema id.
pub const HEADER_LEN: usize = 5;

/// Frames a datum written by `write` under `schema_id`.
pub fn frame(schema_id: u32, write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut buf = Vec::with_capacity(1024);
    buf.push(MAGIC);
    buf.extend_from_slice(&schema_id.to_be_bytes());
    write(&mut buf);
    buf
}

/// Splits a framed record into schema id and datum.
pub fn split(record: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    match record {
        [] => Err(DecodeError::Empty),
        [m, ..] if *m != MAGIC => Err(DecodeError::BadMagic { found: *m }),
        [_, a, b, c, d, datum @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), datum)),
        _ => Err(DecodeError::HeaderTruncated { len: record.len() }),
    }
}

fn decode<T>(
    record: &[u8],
    registry: &Registry,
    subject: Subject,
    current: impl FnOnce(&[u8]) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let (id, datum) = split(record)?;
    let writer = registry
        .get(id)
        .ok_or(DecodeError::UnknownSchemaId { id })?;
    if writer.subject != subject {
        return Err(DecodeError::WrongSubject {
            id,
            found: writer.subject.name(),
            expected: subject.name(),
        });
    }
    let current_id = subject.current_id();
    if id == current_id {
        return current(datum);
    }
    let reader = registry
        .get(current_id)
        .ok_or(DecodeError::UnknownSchemaId { id: current_id })?;
    let resolution = |e: apache_avro::Error| DecodeError::Resolution {
        id,
        source: Box::new(e),
    };
    let mut rest = datum;
    let value = apache_avro::from_avro_datum(&writer.schema, &mut rest, Some(&reader.schema))
        .map_err(resolution)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { count: rest.len() });
    }
    let resolved = apache_avro::to_avro_datum(&reader.schema, value).map_err(resolution)?;
    current(&resolved)
}

/// Frames `doc` with the current document schema.
pub fn encode_document(doc: &ForecastDocument) -> Vec<u8> {
    frame(Subject::ForecastDocument.current_id(), |b| {
        codec::encode_document(doc, b)
    })
}

/// Decodes a framed document of any registered version.
pub fn decode_document(
    record: &[u8],
    registry: &Registry,
) -> Result<ForecastDocument, DecodeError> {
    decode(
        record,
        registry,
        Subject::ForecastDocument,
        codec::decode_document,
    )
}

/// Decodes a framed document of any registered version into `doc`, reusing
/// its strings and vectors ([`codec::decode_document_into`]); on an error
/// `doc` holds part of the record.
pub fn decode_document_into(
    record: &[u8],
    registry: &Registry,
    doc: &mut ForecastDocument,
) -> Result<(), DecodeError> {
    decode(record, registry, Subject::ForecastDocument, |datum| {
        codec::decode_document_into(datum, doc)
    })
}

/// Decodes a framed document of any registered version into `doc` as far
/// as sequencing reads it, returning its [`codec::content_digest`]
/// ([`codec::decode_sequencing_digest`]).
pub fn decode_sequencing_digest(
    record: &[u8],
    registry: &Registry,
    doc: &mut ForecastDocument,
) -> Result<[u8; 16], DecodeError> {
    decode(record, registry, Subject::ForecastDocument, |datum| {
        codec::decode_sequencing_digest(datum, doc)
    })
}

/// Frames a verdict with the current verdict schema.
pub fn encode_verdict(v: &Verdict) -> Vec<u8> {
    frame(Subject::Verdict.current_id(), |b| {
        codec::encode_verdict(v, b)
    })
}

/// Decodes a framed verdict.
pub fn decode_verdict(record: &[u8], registry: &Registry) -> Result<Verdict, DecodeError> {
    decode(record, registry, Subject::Verdict, codec::decode_verdict)
}

/// Frames a demand snapshot with the current snapshot schema.
pub fn encode_snapshot(s: &DemandSnapshot) -> Vec<u8> {
    frame(Subject::DemandSnapshot.current_id(), |b| {
        codec::encode_snapshot(s, b)
    })
}

/// Decodes a framed demand snapshot.
pub fn decode_snapshot(record: &[u8], registry: &Registry) -> Result<DemandSnapshot, DecodeError> {
    decode(
        record,
        registry,
        Subject::DemandSnapshot,
        codec::decode_snapshot,
    )
}
