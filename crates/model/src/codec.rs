//! Avro binary codecs of the current schema versions, written by hand over
//! [`crate::avro`] (field order = the `.avsc` files), plus the content
//! digest. Framing and older versions: [`crate::wire`].

use sha2::{Digest, Sha256};

use crate::DecodeError;
use crate::avro::{Reader, Writer};
use crate::demand::{DemandSnapshot, SnapshotRow, Units};
use crate::document::*;
use crate::time::{Date, Quarter, Timestamp};
use crate::verdict::*;

/// Appends the Avro datum of `doc` (schema `forecast-document.v2`) to `buf`.
pub fn encode_document(doc: &ForecastDocument, buf: &mut Vec<u8>) {
    let mut w = Writer::new(buf);
    w.string(&doc.document_id);
    w.int(doc.revision);
    w.enum_index(doc.purpose.index());
    w.string(&doc.customer_id);
    w.long(doc.submitted_at.millis());
    w.int(doc.submitted_at.offset_minutes());
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

/// Decodes an Avro datum written with schema `forecast-document.v2`.
pub fn decode_document(datum: &[u8]) -> Result<ForecastDocument, DecodeError> {
    let mut r = Reader::new(datum);
    let doc = ForecastDocument {
        document_id: r.string("document_id")?,
        revision: r.int("revision")?,
        purpose: r.enum_value("purpose", Purpose::from_index)?,
        customer_id: r.string("customer_id")?,
        submitted_at: {
            let at = Timestamp::from_millis(r.long("submitted_at")?);
            at.with_offset_minutes(r.int("submitted_at_offset_minutes")?)
        },
        horizon: Horizon {
            start: r.string("horizon.start")?,
            end: r.string("horizon.end")?,
        },
        bucket: r.enum_value("bucket", Bucket::from_index)?,
        lines: r.array("lines", |r| {
            Ok(Line {
                sku: r.string("lines[].sku")?,
                period_start: Date::from_days(r.int("lines[].period_start")?),
                quantity: r.long("lines[].quantity")?,
                confidence: r.enum_value("lines[].confidence", Confidence::from_index)?,
                ship_to: r.optional("lines[].ship_to", |r| {
                    Ok(ShipTo {
                        site: r.string("lines[].ship_to.site")?,
                        country: r.string("lines[].ship_to.country")?,
                    })
                })?,
            })
        })?,
        end_use: EndUse {
            category: r.enum_value("end_use.category", EndUseCategory::from_index)?,
            description: r.string("end_use.description")?,
            end_users: r.array("end_use.end_users", |r| {
                Ok(EndUser {
                    name: r.string("end_use.end_users[].name")?,
                    country: r.string("end_use.end_users[].country")?,
                })
            })?,
        },
        documents: r.array("documents", |r| {
            Ok(SupportingDocument {
                kind: r.enum_value("documents[].kind", DocumentKind::from_index)?,
                reference: r.string("documents[].reference")?,
                issued_on: Date::from_days(r.int("documents[].issued_on")?),
                expires_on: Date::from_days(r.int("documents[].expires_on")?),
                sha256: r.string("documents[].sha256")?,
                signed_by: r.optional("documents[].signed_by", |r| {
                    r.string("documents[].signed_by")
                })?,
            })
        })?,
        export_license: ExportLicense {
            status: r.enum_value("export_license.status", LicenseStatus::from_index)?,
            application_number: r.optional("export_license.application_number", |r| {
                r.string("export_license.application_number")
            })?,
        },
    };
    r.finish()?;
    Ok(doc)
}

/// Digest of a document's content: SHA-256 of its Avro datum in the current
/// schema. Every field the schema knows counts, an absent optional field
/// equals null, and fields the schema does not know (dropped when the JSON
/// was decoded) do not count: the spec's notion of "same content".
/// `submitted_at` counts as an instant: the offset it was written with
/// does not (`10:30+08:00` and `02:30Z` are the same content).
pub fn content_digest(doc: &ForecastDocument) -> [u8; 32] {
    let mut buf = Vec::with_capacity(1024);
    if doc.submitted_at.offset_minutes() == 0 {
        encode_document(doc, &mut buf);
    } else {
        let mut utc = doc.clone();
        utc.submitted_at = Timestamp::from_millis(doc.submitted_at.millis());
        encode_document(&utc, &mut buf);
    }
    Sha256::digest(&buf).into()
}

/// Appends the Avro datum of `v` (schema `verdict.v2`) to `buf`.
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

/// Decodes an Avro datum written with schema `verdict.v2`.
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
