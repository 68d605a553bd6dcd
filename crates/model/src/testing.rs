//! Proptest strategies for the domain types, and what the benchmarks
//! share (feature `testing`).

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use crate::*;

fn pick<T: Copy + std::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(all)
}

/// Any text, including non-ASCII and empty strings.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,12}", "[A-Z0-9-]{1,10}"]
}

/// Dates from year 1 to 9999.
pub fn date() -> impl Strategy<Value = Date> {
    (-719_162i32..2_932_896).prop_map(Date::from_days)
}

/// Any line.
pub fn line() -> impl Strategy<Value = Line> {
    (
        text(),
        date(),
        any::<i64>(),
        pick(Confidence::ALL),
        option::of((text(), text())),
    )
        .prop_map(|(sku, period_start, quantity, confidence, ship)| Line {
            sku,
            period_start,
            quantity,
            confidence,
            ship_to: ship.map(|(site, country)| ShipTo { site, country }),
        })
}

/// Any supporting document.
pub fn supporting_document() -> impl Strategy<Value = SupportingDocument> {
    (
        pick(DocumentKind::ALL),
        text(),
        date(),
        date(),
        text(),
        option::of(text()),
    )
        .prop_map(
            |(kind, reference, issued_on, expires_on, sha256, signed_by)| SupportingDocument {
                kind,
                reference,
                issued_on,
                expires_on,
                sha256,
                signed_by,
            },
        )
}

/// Any document the schema can hold (not necessarily one the rules accept).
pub fn document() -> impl Strategy<Value = ForecastDocument> {
    (
        (text(), any::<i32>(), pick(Purpose::ALL), text()),
        (
            -62_135_596_700_000i64..253_402_200_799_999,
            -1439i32..1440,
            text(),
            text(),
            pick(Bucket::ALL),
        ),
        vec(line(), 0..6),
        (
            pick(EndUseCategory::ALL),
            text(),
            vec((text(), text()), 0..3),
        ),
        vec(supporting_document(), 0..4),
        (pick(LicenseStatus::ALL), option::of(text())),
        option::of((text(), text())),
    )
        .prop_map(
            |(
                (document_id, revision, purpose, customer_id),
                (ts, offset, start, end, bucket),
                lines,
                eu,
                documents,
                lic,
                signature,
            )| {
                ForecastDocument {
                    document_id,
                    revision,
                    purpose,
                    customer_id,
                    submitted_at: Timestamp::from_millis(ts).with_offset_minutes(offset),
                    horizon: Horizon { start, end },
                    bucket,
                    lines,
                    end_use: EndUse {
                        category: eu.0,
                        description: eu.1,
                        end_users: eu
                            .2
                            .into_iter()
                            .map(|(name, country)| EndUser { name, country })
                            .collect(),
                    },
                    documents,
                    export_license: ExportLicense {
                        status: lic.0,
                        application_number: lic.1,
                    },
                    signature: signature.map(|(key_id, value)| Signature { key_id, value }),
                }
            },
        )
}

/// Any verdict.
pub fn verdict() -> impl Strategy<Value = Verdict> {
    (
        (
            option::of(text()),
            option::of(any::<i32>()),
            pick(Outcome::ALL),
            pick(Stage::ALL),
        ),
        (
            vec(pick(RuleCode::ALL), 0..4),
            vec(pick(WarningCode::ALL), 0..2),
        ),
        vec((pick(RuleCode::ALL), text(), text()), 0..3),
        (
            text(),
            any::<i64>(),
            option::of((text(), any::<i32>(), any::<i64>())),
            option::of(text()),
            option::of(text()),
        ),
    )
        .prop_map(
            |(
                (document_id, revision, outcome, stage),
                (codes, warnings),
                violations,
                (pv, at, src, customer_id, screening_version),
            )| Verdict {
                document_id,
                revision,
                outcome,
                stage,
                codes,
                warnings,
                violations: violations
                    .into_iter()
                    .map(|(code, field, message)| Violation {
                        code,
                        field,
                        message,
                    })
                    .collect(),
                policy_version: pv,
                decided_at: Timestamp::from_millis(at),
                source: src.map(|(topic, partition, offset)| SourceCoordinates {
                    topic,
                    partition,
                    offset,
                }),
                customer_id,
                screening_version,
            },
        )
}

/// Any demand snapshot (units small enough that totals do not overflow).
pub fn snapshot() -> impl Strategy<Value = DemandSnapshot> {
    (
        text(),
        any::<i64>(),
        any::<i64>(),
        vec((text(), 0i64..40_000, 0i64..1 << 40, 0i64..1 << 40), 0..6),
    )
        .prop_map(|(customer_id, sequence, at, rows)| DemandSnapshot {
            customer_id,
            sequence,
            as_of: Timestamp::from_millis(at),
            rows: rows
                .into_iter()
                .map(|(sku, q, firm, planning)| SnapshotRow {
                    sku,
                    quarter: Quarter::from_index(q),
                    units: Units {
                        firm_units: firm,
                        planning_units: planning,
                    },
                })
                .collect(),
        })
}

/// Resident memory of this process, in bytes (Linux; `None` elsewhere):
/// the memory benchmarks compare it before and after filling a structure.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// A licence decision (its application number never blank, quantities
/// never negative: what [`crate::LicenceDecision::check`] lets through).
pub fn decision() -> impl Strategy<Value = crate::LicenceDecision> {
    (
        ("[A-Z]-[0-9]{1,7}", "[A-Z]{1,10}"),
        pick(crate::DecisionStatus::ALL),
        (any::<i64>(), -1439i32..=1439),
        proptest::collection::btree_map("[A-Z0-9-]{1,12}", 0i64..1 << 40, 0..4),
        option::of(-100_000i32..100_000),
    )
        .prop_map(
            |(
                (application_number, customer_id),
                status,
                (at, offset),
                approved_quantity,
                expires,
            )| {
                crate::LicenceDecision {
                    application_number,
                    customer_id,
                    status,
                    // Written with any offset: it must read back as written.
                    decided_at: Timestamp::from_millis(at).with_offset_minutes(offset),
                    approved_quantity,
                    expires_on: expires.map(crate::Date::from_days),
                }
            },
        )
}

/// A licence snapshot (its lost documents carry its customer, as decoding
/// gives them).
pub fn licence_snapshot() -> impl Strategy<Value = crate::LicenceSnapshot> {
    let status = || pick(crate::ExposureStatus::ALL);
    (
        text(),
        any::<i64>(),
        vec(
            (text(), 0i64..40_000, status(), any::<i64>(), any::<i64>()),
            0..6,
        ),
        vec(
            (
                text(),
                any::<i32>(),
                text(),
                status(),
                (any::<i64>(), -1439i32..=1439),
                any::<i64>(),
                any::<i64>(),
            ),
            0..4,
        ),
        any::<i64>(),
        vec((text(), text(), any::<i64>()), 0..4),
    )
        .prop_map(|(customer_id, at, rows, lost, not_listed, references)| {
            crate::LicenceSnapshot {
                as_of: Timestamp::from_millis(at),
                rows: rows
                    .into_iter()
                    .map(
                        |(sku, q, licence_status, firm, planning)| crate::LicenceCell {
                            sku,
                            quarter: Quarter::from_index(q),
                            licence_status,
                            units: Units {
                                firm_units: firm,
                                planning_units: planning,
                            },
                        },
                    )
                    .collect(),
                lost: lost
                    .into_iter()
                    .map(
                        |(
                            document_id,
                            revision,
                            application_number,
                            licence_status,
                            (at, offset),
                            firm,
                            planning,
                        )| {
                            crate::LostDocument {
                                document_id,
                                customer_id: customer_id.clone(),
                                revision,
                                application_number,
                                licence_status,
                                decided_at: Timestamp::from_millis(at).with_offset_minutes(offset),
                                firm_units: firm,
                                planning_units: planning,
                            }
                        },
                    )
                    .collect(),
                lost_not_listed: not_listed,
                references: references
                    .into_iter()
                    .map(|(application_number, sku, units)| crate::Reference {
                        application_number,
                        sku,
                        units,
                    })
                    .collect(),
                customer_id,
            }
        })
}

/// Any restricted-party list version (a non-empty id, as decoding requires).
pub fn screening_list() -> impl Strategy<Value = crate::screening::ScreeningList> {
    (
        "[a-z0-9-]{1,12}",
        any::<i64>(),
        text(),
        vec((text(), text(), vec(text(), 0..3)), 0..6),
    )
        .prop_map(
            |(version, at, sha256, entries)| crate::screening::ScreeningList {
                version,
                effective_from: Timestamp::from_millis(at),
                sha256,
                entries: entries
                    .into_iter()
                    .map(|(id, name, alt_names)| crate::screening::ListEntry {
                        id,
                        name,
                        alt_names,
                    })
                    .collect(),
            },
        )
}
