//! Confluent wire framing: magic byte `0`, the schema id as 4 bytes
//! big-endian, then the Avro datum.
//!
//! Decoding looks the id up in a [`Registry`]: the current version is read
//! by the hand-written codec; an older version of the same subject is first
//! resolved to the current schema by `apache-avro` (Avro's writer/reader
//! schema resolution: defaults for added fields, dropped fields skipped).

use crate::DecodeError;
use crate::codec;
use crate::demand::{DemandSnapshot, DemandView};
use crate::document::ForecastDocument;
use crate::licence::{LicenceDecision, LicenceSnapshot, LicenceView};
use crate::schema::{Registry, Subject};
use crate::screening::ScreeningList;
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
    preflight(&writer.schema, datum)?;
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

/// A licence decision, framed with the current licence-decision schema id.
pub fn encode_decision(d: &LicenceDecision) -> Vec<u8> {
    frame(Subject::LicenceDecision.current_id(), |b| {
        codec::encode_decision(d, b)
    })
}

/// Decodes a framed licence decision.
pub fn decode_decision(record: &[u8], registry: &Registry) -> Result<LicenceDecision, DecodeError> {
    decode(
        record,
        registry,
        Subject::LicenceDecision,
        codec::decode_decision,
    )
}

/// Frames a licence snapshot with the current licence-snapshot schema.
pub fn encode_licence_snapshot(s: &LicenceSnapshot) -> Vec<u8> {
    frame(Subject::LicenceSnapshot.current_id(), |b| {
        codec::encode_licence_snapshot(s, b)
    })
}

/// Decodes a framed licence snapshot.
pub fn decode_licence_snapshot(
    record: &[u8],
    registry: &Registry,
) -> Result<LicenceSnapshot, DecodeError> {
    decode(
        record,
        registry,
        Subject::LicenceSnapshot,
        codec::decode_licence_snapshot,
    )
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

/// Walks `datum` as `schema` writes it, building nothing, and fails where
/// a length or an array's count is more than the bytes left (every item of
/// every array of the registered schemas takes at least one byte), or where
/// the datum ends early.
///
/// apache-avro reserves room for an array's count before it reads the
/// items: a record of an older schema version claiming 50 million lines in
/// five bytes made it ask for 2.4 GB, and the validator abort (found by
/// fuzzing: `fuzz/seeds/framed_document/oom-*`). The hand-written codec of
/// the current versions checks the same as it reads.
fn preflight(schema: &apache_avro::Schema, datum: &[u8]) -> Result<(), DecodeError> {
    let resolved = apache_avro::schema::ResolvedSchema::try_from(schema).map_err(|e| {
        DecodeError::Invalid {
            what: "schema",
            offset: 0,
            detail: e.to_string(),
        }
    })?;
    let mut walk = Walk {
        names: resolved.get_names(),
        datum,
        pos: 0,
    };
    walk.value(schema, 0)
}

struct Walk<'a> {
    names: &'a std::collections::HashMap<apache_avro::schema::Name, &'a apache_avro::Schema>,
    datum: &'a [u8],
    pos: usize,
}

impl Walk<'_> {
    /// Deeper than any registered schema nests: a guard, not a limit met.
    const MAX_DEPTH: usize = 32;

    fn invalid(&self, detail: &str) -> DecodeError {
        DecodeError::Invalid {
            what: "datum (checked before schema resolution)",
            offset: self.pos,
            detail: detail.to_owned(),
        }
    }

    fn long(&mut self) -> Result<i64, DecodeError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.datum.get(self.pos) else {
                return Err(DecodeError::Truncated {
                    what: "varint",
                    offset: self.pos,
                    needed: 1,
                });
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(self.invalid("a varint longer than 10 bytes"))
    }

    fn left(&self) -> usize {
        self.datum.len() - self.pos
    }

    fn skip(&mut self, n: u64) -> Result<(), DecodeError> {
        if n > self.left() as u64 {
            return Err(DecodeError::Truncated {
                what: "bytes or string",
                offset: self.pos,
                needed: (n - self.left() as u64) as usize,
            });
        }
        self.pos += n as usize;
        Ok(())
    }

    /// A length-prefixed bytes or string, passed over; refused when its
    /// length is negative or above the bytes left.
    fn sized(&mut self) -> Result<(), DecodeError> {
        let n = self.long()?;
        if n < 0 {
            return Err(self.invalid(&format!("a length of {n}")));
        }
        self.skip(n as u64)
    }

    fn value(&mut self, schema: &apache_avro::Schema, depth: usize) -> Result<(), DecodeError> {
        use apache_avro::Schema as S;
        if depth > Self::MAX_DEPTH {
            return Err(self.invalid("nested too deep"));
        }
        match schema {
            S::Null => Ok(()),
            S::Boolean => self.skip(1),
            S::Int
            | S::Long
            | S::Enum(_)
            | S::Date
            | S::TimeMillis
            | S::TimeMicros
            | S::TimestampMillis
            | S::TimestampMicros
            | S::TimestampNanos
            | S::LocalTimestampMillis
            | S::LocalTimestampMicros
            | S::LocalTimestampNanos => self.long().map(drop),
            S::Float => self.skip(4),
            S::Double => self.skip(8),
            S::Bytes | S::String | S::Uuid | S::BigDecimal => self.sized(),
            S::Fixed(f) => self.skip(f.size as u64),
            S::Duration => self.skip(12),
            S::Decimal(d) => self.value(&d.inner, depth + 1),
            S::Union(u) => {
                let index = self.long()?;
                let variant = usize::try_from(index)
                    .ok()
                    .and_then(|i| u.variants().get(i))
                    .ok_or_else(|| self.invalid(&format!("union index {index}")))?;
                self.value(variant, depth + 1)
            }
            S::Record(r) => r
                .fields
                .iter()
                .try_for_each(|f| self.value(&f.schema, depth + 1)),
            S::Array(a) => self.blocks(|w| w.value(&a.items, depth + 1)),
            S::Map(m) => self.blocks(|w| {
                w.sized()?;
                w.value(&m.types, depth + 1)
            }),
            S::Ref { name } => {
                let named = self
                    .names
                    .get(name)
                    .copied()
                    .ok_or_else(|| self.invalid(&format!("unknown type {}", name.name)))?;
                self.value(named, depth + 1)
            }
        }
    }

    /// Array or map blocks: a count (negative: followed by a byte size),
    /// then that many items, until a count of 0.
    fn blocks(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                self.long()?;
            }
            let count = count.unsigned_abs();
            if count > self.left() as u64 {
                return Err(self.invalid(&format!(
                    "an array or map of {count} item(s) with {} byte(s) left",
                    self.left()
                )));
            }
            for _ in 0..count {
                item(self)?;
            }
        }
    }
}

/// A restricted-party list version, framed with the current schema id.
pub fn encode_screening_list(l: &ScreeningList) -> Vec<u8> {
    frame(Subject::ScreeningList.current_id(), |b| {
        codec::encode_screening_list(l, b)
    })
}

/// Decodes a framed restricted-party list version.
pub fn decode_screening_list(
    record: &[u8],
    registry: &Registry,
) -> Result<ScreeningList, DecodeError> {
    decode(
        record,
        registry,
        Subject::ScreeningList,
        codec::decode_screening_list,
    )
}

/// Takes a record of `demand.by-customer` into `view` (a tombstone removes
/// the key); returns whether the view may have changed, or why the record
/// could not be decoded (the view is then unchanged).
pub fn take_snapshot(
    view: &mut DemandView,
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<bool, DecodeError> {
    let snapshot = value
        .map(|v| decode_snapshot(v, Registry::embedded()))
        .transpose()?;
    Ok(view.set(key, snapshot))
}

/// Takes a record of `demand.by-licence` into `view`; an undecodable one
/// leaves the view unchanged and says why.
pub fn take_licence_snapshot(
    view: &mut LicenceView,
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<bool, DecodeError> {
    let snapshot = value
        .map(|v| decode_licence_snapshot(v, Registry::embedded()))
        .transpose()?;
    Ok(view.set(key, snapshot))
}
