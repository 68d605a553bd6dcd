//! Avro binary codecs of the current schema versions, written by hand over
//! the crate's Avro reader and writer (field order = the `.avsc` files),
//! plus the content digest. Framing and older versions: [`crate::wire`].

use crate::DecodeError;
use crate::avro::{Reader, Writer};
use crate::demand::{DemandSnapshot, SnapshotRow, Units};
use crate::document::*;
use crate::licence::{
    DecisionStatus, ExposureStatus, LicenceCell, LicenceDecision, LicenceSnapshot, LostDocument,
    Reference,
};
use crate::screening::{ListEntry, ScreeningList};
use crate::time::{Date, Quarter, Timestamp};
use crate::verdict::*;

/// Appends the Avro datum of `doc` (schema `forecast-document.v3`) to `buf`.
pub fn encode_document(doc: &ForecastDocument, buf: &mut Vec<u8>) {
    encode_content(doc, doc.submitted_at.offset_minutes(), buf);
    encode_signature(doc.signature.as_ref(), buf);
}

/// The fields before `signature` (the document's content), with
/// `submitted_at` written with `offset_minutes` instead of its own offset
/// (the same instant).
fn encode_content(doc: &ForecastDocument, offset_minutes: i32, buf: &mut Vec<u8>) {
    let mut w = Writer::new(buf);
    w.string(&doc.document_id);
    w.int(doc.revision);
    w.enum_index(doc.purpose.index());
    w.string(&doc.customer_id);
    w.long(doc.submitted_at.millis());
    w.int(offset_minutes);
    w.string(&doc.horizon.start);
    w.string(&doc.horizon.end);
    w.enum_index(doc.bucket.index());
    w.array(&doc.lines, |w, l| {
        w.string(&l.sku);
        w.int(l.period_start.days());
        w.long(l.quantity);
        w.enum_index(l.confidence.index());
        w.optional(l.ship_to.as_ref(), |w, s| {
            w.string(&s.site);
            w.string(&s.country);
        });
    });
    w.enum_index(doc.end_use.category.index());
    w.string(&doc.end_use.description);
    w.array(&doc.end_use.end_users, |w, u| {
        w.string(&u.name);
        w.string(&u.country);
    });
    w.array(&doc.documents, |w, d| {
        w.enum_index(d.kind.index());
        w.string(&d.reference);
        w.int(d.issued_on.days());
        w.int(d.expires_on.days());
        w.string(&d.sha256);
        w.optional(d.signed_by.as_ref(), |w, s| w.string(s));
    });
    w.enum_index(doc.export_license.status.index());
    w.optional(doc.export_license.application_number.as_ref(), |w, s| {
        w.string(s)
    });
}

/// The last field, `signature`.
fn encode_signature(signature: Option<&Signature>, buf: &mut Vec<u8>) {
    Writer::new(buf).optional(signature, |w, s| {
        w.string(&s.key_id);
        w.string(&s.value);
    });
}

/// Decodes an Avro datum written with schema `forecast-document.v3`.
pub fn decode_document(datum: &[u8]) -> Result<ForecastDocument, DecodeError> {
    let mut doc = ForecastDocument::default();
    decode_document_into(datum, &mut doc)?;
    Ok(doc)
}

/// Decodes an Avro datum written with schema `forecast-document.v3` into
/// `doc`, reusing its strings and vectors: a service decoding record after
/// record into one document allocates only where a record is larger than
/// every one before. On an error `doc` holds part of the record.
pub fn decode_document_into(datum: &[u8], doc: &mut ForecastDocument) -> Result<(), DecodeError> {
    read_document(&mut Reader::new(datum), doc).map(drop)
}

/// Decodes for sequencing: reads into `doc` the fields sequencing and
/// demand use (`document_id`, `revision`, `purpose`, `customer_id`,
/// `submitted_at`, `bucket`, the lines' SKU, period, quantity and
/// confidence, and the export licence's status and application number)
/// and passes over its other strings (the horizon, free text,
/// references: left empty, not checked as UTF-8); returns the document's
/// [`content_digest`], which still covers every field. The digest is taken
/// from the datum's own bytes where they are the only encoding of its
/// values (what this codec, and Avro writers as usually configured,
/// write): no second encoding of the document.
pub fn decode_sequencing_digest(
    datum: &[u8],
    doc: &mut ForecastDocument,
) -> Result<[u8; 16], DecodeError> {
    let mut r = Reader::skimming(datum);
    let at = read_document(&mut r, doc)?;
    if !r.canonical() {
        // Other bytes for the same values: the digest needs the document whole.
        decode_document_into(datum, doc)?;
        return Ok(content_digest(doc));
    }
    // What content_digest encodes: these bytes up to the signature, with
    // the offset written as 0.
    Ok(digest_with(|buf| {
        buf.extend_from_slice(&datum[..at.offset.start]);
        Writer::new(buf).int(0);
        buf.extend_from_slice(&datum[at.offset.end..at.signature]);
    }))
}

/// Where the parts of a datum that the content digest treats apart are.
struct Positions {
    /// `submitted_at_offset_minutes`.
    offset: std::ops::Range<usize>,
    /// Where `signature`, the last field, starts.
    signature: usize,
}

/// Reads a whole `forecast-document.v3` datum into `doc`.
fn read_document(r: &mut Reader<'_>, doc: &mut ForecastDocument) -> Result<Positions, DecodeError> {
    r.string_into("document_id", &mut doc.document_id)?;
    doc.revision = r.int("revision")?;
    doc.purpose = r.enum_value("purpose", Purpose::from_index)?;
    r.string_into("customer_id", &mut doc.customer_id)?;
    let at = Timestamp::from_millis(r.long("submitted_at")?);
    let offset_start = r.position();
    doc.submitted_at = at.with_offset_minutes(r.int("submitted_at_offset_minutes")?);
    let offset = offset_start..r.position();
    r.text_into("horizon.start", &mut doc.horizon.start)?;
    r.text_into("horizon.end", &mut doc.horizon.end)?;
    doc.bucket = r.enum_value("bucket", Bucket::from_index)?;
    r.array_into("lines", &mut doc.lines, Line::default, |r, l| {
        r.string_into("lines[].sku", &mut l.sku)?;
        l.period_start = Date::from_days(r.int("lines[].period_start")?);
        l.quantity = r.long("lines[].quantity")?;
        l.confidence = r.enum_value("lines[].confidence", Confidence::from_index)?;
        r.optional_into(
            "lines[].ship_to",
            &mut l.ship_to,
            ShipTo::default,
            |r, s| {
                r.text_into("lines[].ship_to.site", &mut s.site)?;
                r.text_into("lines[].ship_to.country", &mut s.country)
            },
        )
    })?;
    let end_use = &mut doc.end_use;
    end_use.category = r.enum_value("end_use.category", EndUseCategory::from_index)?;
    r.text_into("end_use.description", &mut end_use.description)?;
    r.array_into(
        "end_use.end_users",
        &mut end_use.end_users,
        EndUser::default,
        |r, u| {
            // Read even when skimming: re-screening matches them.
            r.string_into("end_use.end_users[].name", &mut u.name)?;
            r.text_into("end_use.end_users[].country", &mut u.country)
        },
    )?;
    r.array_into(
        "documents",
        &mut doc.documents,
        SupportingDocument::default,
        |r, d| {
            d.kind = r.enum_value("documents[].kind", DocumentKind::from_index)?;
            r.text_into("documents[].reference", &mut d.reference)?;
            d.issued_on = Date::from_days(r.int("documents[].issued_on")?);
            d.expires_on = Date::from_days(r.int("documents[].expires_on")?);
            r.text_into("documents[].sha256", &mut d.sha256)?;
            r.optional_into(
                "documents[].signed_by",
                &mut d.signed_by,
                String::new,
                |r, s| r.text_into("documents[].signed_by", s),
            )
        },
    )?;
    let licence = &mut doc.export_license;
    licence.status = r.enum_value("export_license.status", LicenseStatus::from_index)?;
    r.optional_into(
        "export_license.application_number",
        &mut licence.application_number,
        String::new,
        // Read even when skimming: licence decisions apply by it.
        |r, s| r.string_into("export_license.application_number", s),
    )?;
    let signature = r.position();
    r.optional_into(
        "signature",
        &mut doc.signature,
        Signature::default,
        |r, s| {
            r.text_into("signature.key_id", &mut s.key_id)?;
            r.text_into("signature.value", &mut s.value)
        },
    )?;
    r.finish().map(|()| Positions { offset, signature })
}

/// Digest of a document's content: a 128-bit keyed hash of its Avro datum
/// in the current schema without its signature. Every field the schema
/// knows but `signature` counts (a revision signed again, or with another
/// key, is the same content), an absent
/// optional field equals null, and fields the schema does not know
/// (dropped when the JSON was decoded) do not count: the spec's notion of
/// "same content". `submitted_at` counts as an instant: the offset it was
/// written with does not (`10:30+08:00` and `02:30Z` are the same content).
///
/// Digests are compared only within the process that made them (the
/// aggregator's state lives in memory and is rebuilt from its topic), so
/// the keys are drawn at random once per process: unknown outside it, they
/// make two contents as unlikely to collide when crafted as by chance.
/// Two aHash hashers rather than SHA-256: the aggregator digests every
/// document it applies, and SHA-256 alone was a tenth of its main thread.
pub fn content_digest(doc: &ForecastDocument) -> [u8; 16] {
    // The datum is written with offset 0: the instant alone counts.
    digest_with(|buf| encode_content(doc, 0, buf))
}

/// The keyed hash of the bytes `fill` writes into an empty buffer (one per
/// thread, kept between calls).
fn digest_with(fill: impl FnOnce(&mut Vec<u8>)) -> [u8; 16] {
    static KEYS: std::sync::OnceLock<[ahash::RandomState; 2]> = std::sync::OnceLock::new();
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let [high, low] = KEYS.get_or_init(|| [ahash::RandomState::new(), ahash::RandomState::new()]);
    BUF.with_borrow_mut(|buf| {
        buf.clear();
        fill(buf);
        let digest = u128::from(high.hash_one(buf.as_slice())) << 64
            | u128::from(low.hash_one(buf.as_slice()));
        digest.to_be_bytes()
    })
}

/// Appends the Avro datum of `v` (schema `verdict.v3`) to `buf`.
pub fn encode_verdict(v: &Verdict, buf: &mut Vec<u8>) {
    let mut w = Writer::new(buf);
    w.optional(v.document_id.as_ref(), |w, s| w.string(s));
    w.optional(v.revision.as_ref(), |w, r| w.int(*r));
    w.enum_index(v.outcome.index());
    w.enum_index(v.stage.index());
    w.array(&v.codes, |w, c| w.string(c.as_str()));
    w.array(&v.warnings, |w, c| w.string(c.as_str()));
    w.array(&v.violations, |w, x| {
        w.string(x.code.as_str());
        w.string(&x.field);
        w.string(&x.message);
    });
    w.string(&v.policy_version);
    w.long(v.decided_at.millis());
    w.optional(v.source.as_ref(), |w, s| {
        w.string(&s.topic);
        w.int(s.partition);
        w.long(s.offset);
    });
    w.optional(v.customer_id.as_ref(), |w, s| w.string(s));
    w.optional(v.screening_version.as_ref(), |w, s| w.string(s));
}

fn symbol<T>(
    r: &Reader<'_>,
    what: &'static str,
    s: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, DecodeError> {
    parse(s).ok_or_else(|| {
        r.invalid(
            what,
            format!("unknown code `{s}` (written by a newer version?)"),
        )
    })
}

/// Decodes an Avro datum written with schema `verdict.v3`.
pub fn decode_verdict(datum: &[u8]) -> Result<Verdict, DecodeError> {
    let mut r = Reader::new(datum);
    let v = Verdict {
        document_id: r.optional("document_id", |r| r.string("document_id"))?,
        revision: r.optional("revision", |r| r.int("revision"))?,
        outcome: r.enum_value("verdict", Outcome::from_index)?,
        stage: r.enum_value("stage", Stage::from_index)?,
        codes: r.array("codes", |r| {
            let s = r.str("codes[]")?;
            symbol(r, "codes[]", s, RuleCode::from_symbol)
        })?,
        warnings: r.array("warnings", |r| {
            let s = r.str("warnings[]")?;
            symbol(r, "warnings[]", s, WarningCode::from_symbol)
        })?,
        violations: r.array("violations", |r| {
            let s = r.str("violations[].code")?;
            Ok(Violation {
                code: symbol(r, "violations[].code", s, RuleCode::from_symbol)?,
                field: r.string("violations[].field")?,
                message: r.string("violations[].message")?,
            })
        })?,
        policy_version: r.string("policy_version")?,
        decided_at: Timestamp::from_millis(r.long("decided_at")?),
        source: r.optional("source", |r| {
            Ok(SourceCoordinates {
                topic: r.string("source.topic")?,
                partition: r.int("source.partition")?,
                offset: r.long("source.offset")?,
            })
        })?,
        customer_id: r.optional("customer_id", |r| r.string("customer_id"))?,
        screening_version: r.optional("screening_version", |r| r.string("screening_version"))?,
    };
    r.finish()?;
    Ok(v)
}

/// Appends the Avro datum of `s` (schema `demand-snapshot.v1`) to `buf`.
pub fn encode_snapshot(s: &DemandSnapshot, buf: &mut Vec<u8>) {
    let mut w = Writer::new(buf);
    w.string(&s.customer_id);
    w.long(s.sequence);
    w.long(s.as_of.millis());
    w.array(&s.rows, |w, row| {
        w.string(&row.sku);
        w.string(&row.quarter.to_string());
        w.long(row.units.firm_units);
        w.long(row.units.planning_units);
        w.long(row.units.total());
    });
}

/// Encodes a licence decision as an Avro datum of `licence-decision.v2`.
pub fn encode_decision(d: &LicenceDecision, buf: &mut Vec<u8>) {
    let mut w = Writer::new(buf);
    w.string(&d.application_number);
    w.enum_index(d.status.index());
    w.long(d.decided_at.millis());
    w.int(d.decided_at.offset_minutes());
    let approved: Vec<_> = d.approved_quantity.iter().collect();
    w.array(&approved, |w, (sku, units)| {
        w.string(sku);
        w.long(**units);
    });
    w.optional(d.expires_on.as_ref(), |w, e| w.int(e.days()));
    w.string(&d.customer_id);
}

/// Decodes an Avro datum written with schema `licence-decision.v2`, with
/// the checks of [`LicenceDecision::check`] (so a v1 record, resolved with
/// an empty `customer_id`, is refused: it names no customer).
pub fn decode_decision(datum: &[u8]) -> Result<LicenceDecision, DecodeError> {
    let mut r = Reader::new(datum);
    let application_number = r.string("application_number")?;
    let status = r.enum_value("status", DecisionStatus::from_index)?;
    let decided_at = Timestamp::from_millis(r.long("decided_at")?)
        .with_offset_minutes(r.int("decided_at_offset_minutes")?);
    let approved = r.array("approved_quantity", |r| {
        Ok((
            r.string("approved_quantity[].sku")?,
            r.long("approved_quantity[].units")?,
        ))
    })?;
    let expires_on = r.optional("expires_on", |r| Ok(Date::from_days(r.int("expires_on")?)))?;
    let customer_id = r.string("customer_id")?;
    let d = LicenceDecision {
        application_number,
        customer_id,
        status,
        decided_at,
        approved_quantity: approved.into_iter().collect(),
        expires_on,
    };
    d.check().map_err(|e| r.invalid("licence decision", e))?;
    r.finish()?;
    Ok(d)
}

/// Appends the Avro datum of `s` (schema `licence-snapshot.v3`) to `buf`.
pub fn encode_licence_snapshot(s: &LicenceSnapshot, buf: &mut Vec<u8>) {
    let mut w = Writer::new(buf);
    w.string(&s.customer_id);
    w.long(s.as_of.millis());
    w.array(&s.rows, |w, row| {
        w.string(&row.sku);
        w.string(&row.quarter.to_string());
        w.enum_index(row.licence_status.index());
        w.long(row.units.firm_units);
        w.long(row.units.planning_units);
    });
    w.array(&s.lost, |w, lost| {
        w.string(&lost.document_id);
        w.int(lost.revision);
        w.string(&lost.application_number);
        w.enum_index(lost.licence_status.index());
        w.long(lost.decided_at.millis());
        w.int(lost.decided_at.offset_minutes());
        w.long(lost.firm_units);
        w.long(lost.planning_units);
    });
    w.long(s.lost_not_listed);
    w.array(&s.references, |w, r| {
        w.string(&r.application_number);
        w.string(&r.sku);
        w.long(r.units);
    });
}

/// Decodes an Avro datum written with schema `licence-snapshot.v3`.
pub fn decode_licence_snapshot(datum: &[u8]) -> Result<LicenceSnapshot, DecodeError> {
    let mut r = Reader::new(datum);
    let customer_id = r.string("customer_id")?;
    let as_of = Timestamp::from_millis(r.long("as_of")?);
    let rows = r.array("rows", |r| {
        let sku = r.string("rows[].sku")?;
        let q = r.str("rows[].quarter")?;
        let quarter: Quarter = q
            .parse()
            .map_err(|e| r.invalid("rows[].quarter", format!("{e}")))?;
        Ok(LicenceCell {
            sku,
            quarter,
            licence_status: r.enum_value("rows[].licence_status", ExposureStatus::from_index)?,
            units: Units {
                firm_units: r.long("rows[].firm_units")?,
                planning_units: r.long("rows[].planning_units")?,
            },
        })
    })?;
    let lost = r.array("lost", |r| {
        Ok(LostDocument {
            document_id: r.string("lost[].document_id")?,
            customer_id: customer_id.clone(),
            revision: r.int("lost[].revision")?,
            application_number: r.string("lost[].application_number")?,
            licence_status: r.enum_value("lost[].licence_status", ExposureStatus::from_index)?,
            decided_at: Timestamp::from_millis(r.long("lost[].decided_at")?)
                .with_offset_minutes(r.int("lost[].decided_at_offset_minutes")?),
            firm_units: r.long("lost[].firm_units")?,
            planning_units: r.long("lost[].planning_units")?,
        })
    })?;
    let lost_not_listed = r.long("lost_not_listed")?;
    let references = r.array("references", |r| {
        Ok(Reference {
            application_number: r.string("references[].application_number")?,
            sku: r.string("references[].sku")?,
            units: r.long("references[].units")?,
        })
    })?;
    r.finish()?;
    Ok(LicenceSnapshot {
        customer_id,
        as_of,
        rows,
        lost,
        lost_not_listed,
        references,
    })
}

/// Decodes an Avro datum written with schema `demand-snapshot.v1`.
pub fn decode_snapshot(datum: &[u8]) -> Result<DemandSnapshot, DecodeError> {
    let mut r = Reader::new(datum);
    let s = DemandSnapshot {
        customer_id: r.string("customer_id")?,
        sequence: r.long("sequence")?,
        as_of: Timestamp::from_millis(r.long("as_of")?),
        rows: r.array("rows", |r| {
            let sku = r.string("rows[].sku")?;
            let q = r.str("rows[].quarter")?;
            let quarter: Quarter = q
                .parse()
                .map_err(|e| r.invalid("rows[].quarter", format!("{e}")))?;
            let units = Units {
                firm_units: r.long("rows[].firm_units")?,
                planning_units: r.long("rows[].planning_units")?,
            };
            let total = r.long("rows[].total_units")?;
            if total != units.total() {
                return Err(r.invalid(
                    "rows[].total_units",
                    format!("{total} is not firm + planning"),
                ));
            }
            Ok(SnapshotRow {
                sku,
                quarter,
                units,
            })
        })?,
    };
    r.finish()?;
    Ok(s)
}

/// Appends the Avro datum of `l` (schema `screening-list.v1`) to `buf`.
pub fn encode_screening_list(l: &ScreeningList, buf: &mut Vec<u8>) {
    let mut w = Writer::new(buf);
    w.string(&l.version);
    w.long(l.effective_from.millis());
    w.string(&l.sha256);
    w.array(&l.entries, |w, e| {
        w.string(&e.id);
        w.string(&e.name);
        w.array(&e.alt_names, |w, a| w.string(a));
    });
}

/// Decodes an Avro datum written with schema `screening-list.v1`.
pub fn decode_screening_list(datum: &[u8]) -> Result<ScreeningList, DecodeError> {
    let mut r = Reader::new(datum);
    let list = ScreeningList {
        version: r.string("version")?,
        effective_from: Timestamp::from_millis(r.long("effective_from")?),
        sha256: r.string("sha256")?,
        entries: r.array("entries", |r| {
            Ok(ListEntry {
                id: r.string("entries[].id")?,
                name: r.string("entries[].name")?,
                alt_names: r.array("entries[].alt_names", |r| r.string("entries[].alt_names[]"))?,
            })
        })?,
    };
    if list.version.is_empty() {
        return Err(r.invalid("version", "is empty: a list version needs an id"));
    }
    r.finish()?;
    Ok(list)
}
