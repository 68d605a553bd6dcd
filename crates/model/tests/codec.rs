//! The hand-written codecs against the `.avsc` files (through apache-avro),
//! the JSON form, schema evolution, and typed decode errors.

#![allow(clippy::unwrap_used)]

use apache_avro::{Schema, from_avro_datum, to_avro_datum};
use forecast_model::schema::{
    FORECAST_DOCUMENT_V1, FORECAST_DOCUMENT_V2, FORECAST_DOCUMENT_V3, LICENCE_DECISION_V1,
    LICENCE_DECISION_V2, LICENCE_SNAPSHOT_V1, LICENCE_SNAPSHOT_V2, LICENCE_SNAPSHOT_V3, VERDICT_V1,
    VERDICT_V2, VERDICT_V3,
};
use forecast_model::{DecodeError, ForecastDocument, Registry, Subject, codec, testing, wire};
use proptest::prelude::*;
use serde_json::Value;

fn schema(subject: Subject) -> &'static Schema {
    &Registry::embedded()
        .get(subject.current_id())
        .unwrap()
        .schema
}

/// apache-avro reads our bytes with the schema file and writes them back
/// byte for byte: field order, types, unions and enums agree.
fn assert_agrees_with_apache_avro(subject: Subject, ours: &[u8]) -> Result<(), TestCaseError> {
    let schema = schema(subject);
    let mut rest = ours;
    let value = from_avro_datum(schema, &mut rest, None)
        .map_err(|e| TestCaseError::fail(format!("apache-avro cannot read our bytes: {e}")))?;
    prop_assert!(rest.is_empty(), "apache-avro left {} bytes", rest.len());
    let theirs = to_avro_datum(schema, value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(theirs.as_slice(), ours);
    Ok(())
}

/// What sequencing and demand read of a document.
fn sequencing_fields(d: &ForecastDocument) -> impl PartialEq + std::fmt::Debug {
    let lines: Vec<_> = d
        .lines
        .iter()
        .map(|l| (l.sku.clone(), l.period_start, l.quantity, l.confidence))
        .collect();
    let head = (
        d.document_id.clone(),
        d.revision,
        d.purpose,
        d.customer_id.clone(),
    );
    (head, d.submitted_at, d.bucket, lines)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn document_codec_matches_the_schema_file(doc in testing::document()) {
        let mut ours = Vec::new();
        codec::encode_document(&doc, &mut ours);
        assert_agrees_with_apache_avro(Subject::ForecastDocument, &ours)?;
        prop_assert_eq!(codec::decode_document(&ours).unwrap(), doc.clone());
        prop_assert_eq!(wire::decode_document(&wire::encode_document(&doc), Registry::embedded()).unwrap(), doc);
    }

    /// Decoding into a document that held another one (and then part of a
    /// record that failed to decode) leaves nothing of either behind: every
    /// field, optional and array is overwritten, arrays shrink and grow;
    /// and decoding into the same document again changes nothing.
    #[test]
    fn decoding_into_a_used_document_equals_decoding_afresh(
        first in testing::document(),
        broken in testing::document(),
        cut in 0.0..1.0f64,
        doc in testing::document(),
    ) {
        let mut buf = codec::decode_document(&{
            let mut b = Vec::new();
            codec::encode_document(&first, &mut b);
            b
        }).unwrap();
        let broken = wire::encode_document(&broken);
        let cut = wire::HEADER_LEN + ((broken.len() - wire::HEADER_LEN) as f64 * cut) as usize;
        prop_assert!(wire::decode_document_into(&broken[..cut], Registry::embedded(), &mut buf).is_err());
        wire::decode_document_into(&wire::encode_document(&doc), Registry::embedded(), &mut buf).unwrap();
        prop_assert_eq!(&buf, &doc);
        // Into a document that holds the same one: every string is equal
        // to the one it would overwrite, and is left as it is.
        wire::decode_document_into(&wire::encode_document(&doc), Registry::embedded(), &mut buf).unwrap();
        prop_assert_eq!(buf, doc);
    }

    /// The digest read off a datum is the content digest of the document it
    /// holds: from the datum's own bytes as this codec writes them, with the
    /// same instant written at another offset, and from other bytes for the
    /// same values (a padded integer), where it is taken by encoding again.
    #[test]
    fn the_digest_read_off_a_datum_is_the_content_digest(
        doc in testing::document(),
        offset in -1439i32..=1439,
    ) {
        let want = codec::content_digest(&doc);
        let digest_of = |datum: &[u8]| {
            let read = codec::decode_document(datum).unwrap();
            // Reading only what sequencing uses gives those fields of the
            // whole document, and the digest.
            let mut skimmed = ForecastDocument::default();
            let digest = codec::decode_sequencing_digest(datum, &mut skimmed).unwrap();
            assert_eq!(sequencing_fields(&skimmed), sequencing_fields(&read));
            (read, digest)
        };
        let mut datum = Vec::new();
        codec::encode_document(&doc, &mut datum);
        prop_assert_eq!(digest_of(&datum), (doc.clone(), want));

        let mut shifted = doc.clone();
        shifted.submitted_at = doc.submitted_at.with_offset_minutes(offset);
        let mut other = Vec::new();
        codec::encode_document(&shifted, &mut other);
        prop_assert_eq!(digest_of(&other), (shifted, want));

        // The revision (after the id's length and bytes) with a zero byte
        // of padding: the same document in one byte more.
        let id = doc.document_id.len();
        let at = id + if id < 64 { 1 } else if id < 8192 { 2 } else { 3 };
        let zigzag = ((doc.revision << 1) ^ (doc.revision >> 31)) as u32;
        let mut varint = Vec::new();
        let mut z = zigzag;
        while z >= 0x80 {
            varint.push((z as u8) | 0x80);
            z >>= 7;
        }
        varint.extend([(z as u8) | 0x80, 0]);
        let minimal = varint.len() - 1;
        let mut padded = datum[..at].to_vec();
        padded.extend(&varint);
        padded.extend(&datum[at + minimal..]);
        prop_assert_eq!(digest_of(&padded), (doc, want));
    }

    #[test]
    fn verdict_codec_matches_the_schema_file(v in testing::verdict()) {
        let mut ours = Vec::new();
        codec::encode_verdict(&v, &mut ours);
        assert_agrees_with_apache_avro(Subject::Verdict, &ours)?;
        prop_assert_eq!(wire::decode_verdict(&wire::encode_verdict(&v), Registry::embedded()).unwrap(), v);
    }

    #[test]
    fn snapshot_codec_matches_the_schema_file(s in testing::snapshot()) {
        let mut ours = Vec::new();
        codec::encode_snapshot(&s, &mut ours);
        assert_agrees_with_apache_avro(Subject::DemandSnapshot, &ours)?;
        prop_assert_eq!(wire::decode_snapshot(&wire::encode_snapshot(&s), Registry::embedded()).unwrap(), s);
    }

    #[test]
    fn decision_codec_matches_the_schema_file(d in testing::decision()) {
        let mut ours = Vec::new();
        codec::encode_decision(&d, &mut ours);
        assert_agrees_with_apache_avro(Subject::LicenceDecision, &ours)?;
        prop_assert_eq!(wire::decode_decision(&wire::encode_decision(&d), Registry::embedded()).unwrap(), d);
    }

    #[test]
    fn licence_snapshot_codec_matches_the_schema_file(s in testing::licence_snapshot()) {
        let mut ours = Vec::new();
        codec::encode_licence_snapshot(&s, &mut ours);
        assert_agrees_with_apache_avro(Subject::LicenceSnapshot, &ours)?;
        prop_assert_eq!(wire::decode_licence_snapshot(&wire::encode_licence_snapshot(&s), Registry::embedded()).unwrap(), s);
    }

    #[test]
    fn screening_list_codec_matches_the_schema_file(l in testing::screening_list()) {
        let mut ours = Vec::new();
        codec::encode_screening_list(&l, &mut ours);
        assert_agrees_with_apache_avro(Subject::ScreeningList, &ours)?;
        prop_assert_eq!(wire::decode_screening_list(&wire::encode_screening_list(&l), Registry::embedded()).unwrap(), l);
    }

    #[test]
    fn json_form_round_trips(doc in testing::document()) {
        prop_assert_eq!(ForecastDocument::from_json(doc.to_json().as_bytes()).unwrap(), doc);
    }

    #[test]
    fn no_prefix_of_a_record_decodes_and_none_panics(doc in testing::document()) {
        let record = wire::encode_document(&doc);
        for len in 0..record.len() {
            let err = wire::decode_document(&record[..len], Registry::embedded()).unwrap_err();
            prop_assert!(matches!(err, DecodeError::Empty | DecodeError::HeaderTruncated { .. } | DecodeError::Truncated { .. } | DecodeError::Invalid { .. }), "{len}: {err:?}");
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut framed = vec![0, 0, 0, 0, 2];
        framed.extend_from_slice(&bytes);
        let _ = wire::decode_document(&framed, Registry::embedded());
    }
}

/// Field names the current schema knows, anywhere in the record.
fn known_fields() -> std::collections::HashSet<String> {
    fn walk(v: &Value, out: &mut std::collections::HashSet<String>) {
        match v {
            Value::Object(m) => {
                if let (Some(Value::String(name)), Some(_)) = (m.get("name"), m.get("type")) {
                    out.insert(name.clone());
                }
                m.values().for_each(|v| walk(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = std::collections::HashSet::new();
    walk(
        &serde_json::from_str(include_str!("../../../schemas/forecast-document.v3.avsc")).unwrap(),
        &mut out,
    );
    out
}

/// Drops null members (an absent optional field equals null) and members the
/// schema does not know (ignored on input).
fn comparable(v: Value, known: &std::collections::HashSet<String>) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, v)| !v.is_null() && known.contains(k))
                .map(|(k, v)| (k, comparable(v, known)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(|v| comparable(v, known)).collect()),
        v => v,
    }
}

fn sample_documents() -> Vec<(String, Value)> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(format!("{root}/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.push(format!("{root}/../shared/conformance/stream.jsonl").into());
    for path in files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "jsonl"))
    {
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let docs: Vec<&str> = if path.extension().is_some_and(|e| e == "json") {
            vec![&text]
        } else {
            text.lines().collect()
        };
        for (i, doc) in docs.into_iter().enumerate() {
            if let Ok(v) = serde_json::from_str::<Value>(doc) {
                out.push((format!("{}:{}", path.display(), i + 1), v));
            }
        }
    }
    out
}

#[test]
fn every_field_of_the_json_form_round_trips_through_avro() {
    let mut checked = 0;
    let known = known_fields();
    for (origin, original) in sample_documents() {
        let Ok(doc) = ForecastDocument::from_json(original.to_string().as_bytes()) else {
            continue; // SCHEMA_INVALID samples have no Avro form
        };
        let back =
            wire::decode_document(&wire::encode_document(&doc), Registry::embedded()).unwrap();
        let json: Value = serde_json::from_str(&back.to_json()).unwrap();
        assert_eq!(
            comparable(json, &known),
            comparable(original, &known),
            "{origin}"
        );
        checked += 1;
    }
    assert!(
        checked > 500,
        "only {checked} sample documents: are examples/ and ../shared/conformance there?"
    );
}

/// Records written with the older schemas (v1: no `ship_to`, `signed_by`
/// or offset; v2: no `signature`) are read by the current one, those
/// fields defaulting to null, with the same content digest.
#[test]
fn records_of_the_older_schemas_are_read_by_the_current_one() {
    let registry = Registry::embedded();
    let current_schema = &registry.get(FORECAST_DOCUMENT_V3).unwrap().schema;
    for old_id in [FORECAST_DOCUMENT_V1, FORECAST_DOCUMENT_V2] {
        let old = &registry.get(old_id).unwrap().schema;
        let mut runner = proptest::test_runner::TestRunner::default();
        runner
            .run(&testing::document(), |mut doc| {
                // What the old writer would have had.
                doc.signature = None;
                if old_id == FORECAST_DOCUMENT_V1 {
                    doc.submitted_at =
                        forecast_model::Timestamp::from_millis(doc.submitted_at.millis());
                    for l in &mut doc.lines {
                        l.ship_to = None;
                    }
                    for d in &mut doc.documents {
                        d.signed_by = None;
                    }
                }
                let mut current = Vec::new();
                codec::encode_document(&doc, &mut current);
                // Write it with the old schema (apache-avro resolves the
                // current one to it, the old writer's shape)...
                let as_old =
                    from_avro_datum(current_schema, &mut current.as_slice(), Some(old)).unwrap();
                let datum_old = to_avro_datum(old, as_old).unwrap();
                prop_assert!(datum_old.len() < current.len());
                let record = wire::frame(old_id, |b| b.extend_from_slice(&datum_old));
                // ...and the current reader gets the document back, and its digest.
                prop_assert_eq!(
                    wire::decode_document(&record, registry).unwrap(),
                    doc.clone()
                );
                let mut read = ForecastDocument::default();
                let digest = wire::decode_sequencing_digest(&record, registry, &mut read).unwrap();
                prop_assert_eq!(digest, codec::content_digest(&doc));
                Ok(())
            })
            .unwrap();
    }
}

/// The signature is not content: a signed document has the digest of the
/// same document unsigned, through either digest path.
#[test]
fn the_signature_does_not_count_in_the_content_digest() {
    let registry = Registry::embedded();
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(&testing::document(), |mut doc| {
            let signed = wire::encode_document(&doc);
            let mut read = ForecastDocument::default();
            let digest = wire::decode_sequencing_digest(&signed, registry, &mut read).unwrap();
            doc.signature = None;
            prop_assert_eq!(digest, codec::content_digest(&doc));
            let unsigned = wire::encode_document(&doc);
            prop_assert_eq!(
                wire::decode_sequencing_digest(&unsigned, registry, &mut read).unwrap(),
                digest
            );
            Ok(())
        })
        .unwrap();
}

/// Audit records written before verdicts carried the customer (v1) or
/// the restricted-party list version (v1, v2) are still read, without them.
#[test]
fn verdicts_of_older_schemas_are_read_without_the_fields_they_lack() {
    let registry = Registry::embedded();
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(&testing::verdict(), |mut v| {
            // Older versions have no RESCREEN stage.
            if v.stage == forecast_model::Stage::Rescreen {
                v.stage = forecast_model::Stage::Sequence;
            }
            let mut current = Vec::new();
            codec::encode_verdict(&v, &mut current);
            v.screening_version = None;
            let record = as_older(&current, VERDICT_V3, VERDICT_V2);
            prop_assert_eq!(&wire::decode_verdict(&record, registry).unwrap(), &v);
            let record = as_older(&current, VERDICT_V3, VERDICT_V1);
            v.customer_id = None;
            prop_assert_eq!(wire::decode_verdict(&record, registry).unwrap(), v);
            Ok(())
        })
        .unwrap();
}

/// `datum` of schema `from` written again as schema `to` (apache-avro).
fn as_older(datum: &[u8], from: u32, to: u32) -> Vec<u8> {
    let registry = Registry::embedded();
    let (from, to_id) = (&registry.get(from).unwrap().schema, to);
    let to = &registry.get(to_id).unwrap().schema;
    let value = from_avro_datum(from, &mut &datum[..], Some(to)).unwrap();
    wire::frame(to_id, |b| {
        b.extend_from_slice(&to_avro_datum(to, value).unwrap())
    })
}

/// A licence decision written before decisions named their customer is
/// refused, saying why: nobody can tell whose licence it is. A licence
/// snapshot of the first version is still read.
#[test]
fn a_licence_decision_of_the_first_schema_is_refused_for_naming_no_customer() {
    let registry = Registry::embedded();
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(&testing::decision(), |d| {
            let mut current = Vec::new();
            codec::encode_decision(&d, &mut current);
            let record = as_older(&current, LICENCE_DECISION_V2, LICENCE_DECISION_V1);
            let err = wire::decode_decision(&record, registry).unwrap_err();
            prop_assert!(err.to_string().contains("no customer_id"), "{}", err);
            Ok(())
        })
        .unwrap();
    runner
        .run(&testing::licence_snapshot(), |s| {
            // v2 has no SCREENING_HOLD, the first version no
            // FOREIGN_LICENCE either: leave them out.
            use forecast_model::ExposureStatus::{ForeignLicence, ScreeningHold};
            let mut s = s;
            for older in [vec![ScreeningHold], vec![ScreeningHold, ForeignLicence]] {
                s.rows.retain(|r| !older.contains(&r.licence_status));
                s.lost.retain(|l| !older.contains(&l.licence_status));
                let mut current = Vec::new();
                codec::encode_licence_snapshot(&s, &mut current);
                let to = if older.len() == 1 {
                    LICENCE_SNAPSHOT_V2
                } else {
                    LICENCE_SNAPSHOT_V1
                };
                let record = as_older(&current, LICENCE_SNAPSHOT_V3, to);
                prop_assert_eq!(
                    &wire::decode_licence_snapshot(&record, registry).unwrap(),
                    &s
                );
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn decode_errors_are_typed_and_keep_their_cause() {
    let registry = Registry::embedded();
    let doc =
        ForecastDocument::from_json(include_bytes!("../../../examples/tencent-original.json"))
            .unwrap();
    let good = wire::encode_document(&doc);
    let decode = |bytes: &[u8]| wire::decode_document(bytes, registry).unwrap_err();

    assert!(matches!(decode(b""), DecodeError::Empty));
    assert!(matches!(
        decode(b"{\"document_id\": 1}"),
        DecodeError::BadMagic { found: b'{' }
    ));
    assert!(matches!(
        decode(&[0, 0, 0]),
        DecodeError::HeaderTruncated { len: 3 }
    ));
    let mut unknown = good.clone();
    unknown[1..5].copy_from_slice(&999u32.to_be_bytes());
    assert!(matches!(
        decode(&unknown),
        DecodeError::UnknownSchemaId { id: 999 }
    ));
    let mut verdict_id = good.clone();
    verdict_id[1..5].copy_from_slice(&Subject::Verdict.current_id().to_be_bytes());
    assert!(matches!(
        decode(&verdict_id),
        DecodeError::WrongSubject { .. }
    ));
    assert!(matches!(
        decode(&good[..good.len() - 3]),
        DecodeError::Truncated { .. }
    ));
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(
        decode(&trailing),
        DecodeError::TrailingBytes { count: 1 }
    ));
    // Purpose is the third field: after the id string and the revision.
    let mut bad_enum = good.clone();
    let purpose_at = 5 + 1 + doc.document_id.len() + 1;
    bad_enum[purpose_at] = 2 * 7; // zigzag 7: no such symbol
    let err = decode(&bad_enum);
    assert!(
        matches!(
            err,
            DecodeError::Invalid {
                what: "purpose",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), "wrong_type");
    // A v1 record cut short is refused before resolution.
    let err = decode(&wire::frame(FORECAST_DOCUMENT_V1, |b| b.push(2)));
    assert!(matches!(err, DecodeError::Truncated { .. }), "{err:?}");
    // One that apache-avro cannot resolve (no such purpose) keeps its error
    // as the source.
    let mut old = wire::frame(FORECAST_DOCUMENT_V1, |b| {
        b.extend_from_slice(&v1_datum(&doc))
    });
    let read = wire::decode_document(&old, registry).unwrap();
    assert_eq!(read.document_id, doc.document_id);
    old[purpose_at] = 2 * 7;
    let err = decode(&old);
    assert!(
        matches!(err, DecodeError::Resolution { id: 1, .. }),
        "{err:?}"
    );
    assert!(std::error::Error::source(&err).is_some());
}

/// `doc` as schema forecast-document.v1 writes it (its current encoding
/// resolved to v1 by apache-avro).
fn v1_datum(doc: &ForecastDocument) -> Vec<u8> {
    let registry = Registry::embedded();
    let v1 = &registry.get(FORECAST_DOCUMENT_V1).unwrap().schema;
    let v3 = &registry.get(FORECAST_DOCUMENT_V3).unwrap().schema;
    let current = wire::encode_document(doc);
    let value = from_avro_datum(v3, &mut &current[wire::HEADER_LEN..], Some(v1)).unwrap();
    to_avro_datum(v1, value).unwrap()
}

/// An older version's record that claims more array items than it has
/// bytes is refused before apache-avro reads it: apache-avro reserves room
/// for the count first, and 50 million lines in five bytes made it ask for
/// 2.4 GB (found by fuzzing; the validator aborted on such a record, and
/// again on each restart).
#[test]
fn an_old_record_claiming_more_items_than_bytes_is_refused_before_resolution() {
    let registry = Registry::embedded();
    let doc =
        ForecastDocument::from_json(include_bytes!("../../../examples/tencent-original.json"))
            .unwrap();
    let datum = v1_datum(&doc);
    // The lines' count (one byte here) is where the same document without
    // lines is first written otherwise.
    let mut no_lines = doc.clone();
    no_lines.lines.clear();
    let at = datum
        .iter()
        .zip(v1_datum(&no_lines))
        .position(|(a, b)| *a != b)
        .expect("the lines' count");
    assert_eq!(datum[at], doc.lines.len() as u8 * 2, "zigzag count");
    // 50,000,000 items (zigzag 100,000,000 as a varint).
    let mut huge = datum[..at].to_vec();
    let mut n: u64 = 100_000_000;
    while n >= 0x80 {
        huge.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    huge.push(n as u8);
    huge.extend_from_slice(&datum[at + 1..]);
    let err = wire::decode_document(
        &wire::frame(FORECAST_DOCUMENT_V1, |b| b.extend_from_slice(&huge)),
        registry,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Invalid {
                what: "datum (checked before schema resolution)",
                ..
            }
        ),
        "{err:?}"
    );
}
