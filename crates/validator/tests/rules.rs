//! Every rule code of the spec: a passing and a failing case each, built by
//! editing one valid document.

#![allow(clippy::unwrap_used)]

use forecast_model::{ForecastDocument, RuleCode, WarningCode};
use forecast_validator::{Judged, Policy, PolicySettings, RestrictedParties, Validator, check};
use serde_json::{Value, json};

use RuleCode::*;

fn base() -> Value {
    json!({
        "document_id": "TCT-2026-0001", "revision": 1, "purpose": "ORIGINAL",
        "customer_id": "TENCENT", "submitted_at": "2026-07-15T08:00:00Z",
        "horizon": {"start": "2026-Q3", "end": "2027-Q2"}, "bucket": "QUARTER",
        "lines": [
            {"sku": "H20-96GB", "period_start": "2026-07-01", "quantity": 40000, "confidence": "FIRM",
             "ship_to": {"site": "SZ-DC-04", "country": "CN"}},
            {"sku": "H20-96GB", "period_start": "2026-10-01", "quantity": 30000, "confidence": "PLANNING"},
            {"sku": "H20-141GB", "period_start": "2027-01-01", "quantity": 0, "confidence": "FIRM"},
            {"sku": "H20-141GB", "period_start": "2027-04-01", "quantity": 200000, "confidence": "PLANNING"}
        ],
        "end_use": {"category": "AI_INFERENCE",
                    "description": "Inference serving for recommendation and LLM chat products; defensive caching",
                    "end_users": [{"name": "Tencent Cloud Computing (Beijing) Co., Ltd.", "country": "CN"}]},
        "documents": [
            {"kind": "END_USE_STATEMENT", "reference": "EUS-1", "issued_on": "2026-06-01", "expires_on": "2027-12-31",
             "sha256": "4a44dc15364204a80fe80e9039455cc1608281820fe2b24f1e5233ade6af1dd5", "signed_by": "J. Doe"},
            {"kind": "END_USER_CERTIFICATE", "reference": "EUC-1", "issued_on": "2026-07-15", "expires_on": "2027-06-30",
             "sha256": "4FC82B26AECB47D2868C4EFBE3581732A3E7CBCC6C2EFB32062C08170A05EEB8"},
            {"kind": "NON_REEXPORT_ATTESTATION", "reference": "NRA-1", "issued_on": "2026-01-01", "expires_on": "2027-09-30",
             "sha256": "6b51d431df5d7f141cbececcf79edf3dd861c3b4069f0b11661a3eefacbba918"}
        ],
        "export_license": {"status": "PENDING", "application_number": "Z-1234567"}
    })
}

fn policy() -> Policy {
    let list = "name,alt_names\n\"Red Lantern Advanced Systems Co., Ltd.\",RLAS; Red Lantern Systems Group\n";
    Policy::new(
        PolicySettings::default(),
        RestrictedParties::from_reader(list.as_bytes(), "test").unwrap(),
    )
    .unwrap()
}

fn codes_of(doc: &Value) -> Vec<RuleCode> {
    let validator = Validator::new(policy());
    match validator.judge_json(doc.to_string().as_bytes()) {
        Judged::Undecodable(_) => vec![SchemaInvalid],
        Judged::Checked { report, .. } => report.codes(),
    }
}

/// Applies an edit to the base document.
fn with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut doc = base();
    edit(&mut doc);
    doc
}

#[track_caller]
fn assert_codes(doc: &Value, expected: &[RuleCode]) {
    assert_eq!(codes_of(doc), expected, "document: {doc}");
}

#[test]
fn the_base_document_passes_every_rule() {
    assert_codes(&base(), &[]);
    // The boundaries in it pass: quantity == limit, a zero line filling a
    // quarter, an upper-case digest, a document issued on the submission
    // date, exactly 4 quarters, and `defensive`.
}

#[test]
fn schema_invalid_stands_alone() {
    for bad in [
        with(|d| d["lines"][0]["quantity"] = json!(1.5)),
        with(|d| d["lines"][0]["quantity"] = json!(1.0)),
        with(|d| d["revision"] = json!("2")),
        with(|d| d["revision"] = json!(2_147_483_648i64)),
        with(|d| d["lines"][0]["quantity"] = json!(9_223_372_036_854_775_808u64)),
        with(|d| d["purpose"] = json!("AMEND")),
        with(|d| d["bucket"] = json!("WEEK")),
        with(|d| d["submitted_at"] = json!("yesterday")),
        with(|d| d["submitted_at"] = json!("2026-07-15T08:00:00")),
        with(|d| d["lines"][0]["period_start"] = json!("2026-02-30")),
        with(|d| d["documents"][0]["kind"] = json!("PASSPORT")),
        with(|d| d["end_use"]["end_users"][0]["name"] = json!(42)),
        with(|d| d["export_license"] = Value::Null),
        with(|d| {
            d.as_object_mut().unwrap().remove("customer_id");
        }),
        with(|d| d["lines"][0]["ship_to"] = json!({"site": "X"})),
        json!([1, 2, 3]),
    ] {
        // Other rules would fire too (customer, revision ...), but only SCHEMA_INVALID is reported.
        let mut bad = bad;
        if bad.is_object() {
            bad["customer_id"] = bad
                .get("customer_id")
                .map(|_| json!("NOBODY"))
                .unwrap_or(Value::Null);
            if bad["customer_id"].is_null() {
                bad.as_object_mut().unwrap().remove("customer_id");
            }
        }
        assert_codes(&bad, &[SchemaInvalid]);
    }
    // Optional fields may be absent or null; unknown fields are ignored.
    assert_codes(
        &with(|d| {
            d["lines"][0]["ship_to"] = Value::Null;
            d["documents"][0]["signed_by"] = Value::Null;
            d["documents"][0]["future_field"] = json!({"x": 1});
            d["unknown"] = json!(true);
        }),
        &[],
    );
    // Offsets other than Z are fine.
    assert_codes(
        &with(|d| d["submitted_at"] = json!("2026-07-15T16:00:00.250+08:00")),
        &[],
    );
}

#[test]
fn customer_unknown() {
    assert_codes(
        &with(|d| d["customer_id"] = json!("tencent")),
        &[CustomerUnknown],
    );
    assert_codes(&with(|d| d["customer_id"] = json!("ALIBABA")), &[]);
}

#[test]
fn revision_invalid() {
    assert_codes(&with(|d| d["revision"] = json!(2)), &[RevisionInvalid]);
    assert_codes(&with(|d| d["revision"] = json!(-1)), &[RevisionInvalid]);
    assert_codes(
        &with(|d| d["purpose"] = json!("REPLACE")),
        &[RevisionInvalid],
    );
    assert_codes(
        &with(|d| {
            d["purpose"] = json!("REPLACE");
            d["revision"] = json!(7);
        }),
        &[],
    );
}

#[test]
fn lines_empty_and_on_cancel() {
    // An ORIGINAL without lines also leaves every quarter of its horizon empty.
    assert_codes(&with(|d| d["lines"] = json!([])), &[HorizonGap, LinesEmpty]);
    let cancel = |lines: Value| {
        with(|d| {
            d["purpose"] = json!("CANCEL");
            d["revision"] = json!(2);
            d["lines"] = lines;
        })
    };
    assert_codes(&cancel(json!([])), &[]);
    assert_codes(&cancel(base()["lines"].clone()), &[LinesOnCancel]);
}

#[test]
fn a_cancel_is_checked_only_for_customer_revision_and_lines() {
    let cancel = with(|d| {
        d["purpose"] = json!("CANCEL");
        d["revision"] = json!(1);
        d["customer_id"] = json!("NOBODY");
        d["lines"] = json!([{"sku": "X", "period_start": "2026-07-02", "quantity": -1, "confidence": "FIRM"}]);
        d["horizon"] = json!({"start": "bad", "end": "2020-Q1"});
        d["documents"] = json!([]);
        d["end_use"]["category"] = json!("OTHER");
        d["end_use"]["end_users"] = json!([]);
        d["export_license"] = json!({"status": "DENIED"});
    });
    assert_codes(&cancel, &[CustomerUnknown, LinesOnCancel, RevisionInvalid]);
}

#[test]
fn horizon_invalid_skips_what_needs_the_horizon() {
    for (start, end) in [
        ("2027-Q5", "2027-Q2"),
        ("2026-Q3", "2027Q2"),
        ("2026-q3", "2027-Q2"),
        ("2027-Q3", "2026-Q3"),
    ] {
        let doc = with(|d| {
            d["horizon"] = json!({"start": start, "end": end});
            // Would be PERIOD_OUTSIDE_HORIZON / HORIZON_GAP with a valid horizon.
            d["lines"][0]["period_start"] = json!("2030-01-01");
            d["documents"][0]["expires_on"] = json!("2026-08-01");
        });
        assert_codes(&doc, &[HorizonInvalid]);
        let judged = Validator::new(policy()).judge_json(doc.to_string().as_bytes());
        assert!(
            judged.warning_codes().is_empty(),
            "no expiry warning without a horizon"
        );
    }
}

#[test]
fn horizon_too_short() {
    let three = with(|d| {
        d["horizon"]["end"] = json!("2027-Q1");
        d["lines"].as_array_mut().unwrap().pop();
    });
    assert_codes(&three, &[HorizonTooShort]);
    let one = with(|d| {
        d["horizon"] = json!({"start": "2026-Q3", "end": "2026-Q3"});
        d["lines"] = json!([d["lines"][0].clone()]);
    });
    assert_codes(&one, &[HorizonTooShort]);
}

#[test]
fn horizon_gap() {
    assert_codes(
        &with(|d| {
            d["lines"].as_array_mut().unwrap().remove(1);
        }),
        &[HorizonGap],
    );
    // A monthly line covers its quarter; a zero line states zero demand.
    let monthly = with(|d| {
        d["bucket"] = json!("MONTH");
        d["lines"][1]["period_start"] = json!("2026-12-01");
    });
    assert_codes(&monthly, &[]);
}

#[test]
fn period_misaligned() {
    assert_codes(
        &with(|d| d["lines"][1]["period_start"] = json!("2026-11-01")),
        &[PeriodMisaligned],
    );
    assert_codes(
        &with(|d| d["lines"][1]["period_start"] = json!("2026-10-02")),
        &[PeriodMisaligned],
    );
    let monthly = |date: &str| {
        with(|d| {
            d["bucket"] = json!("MONTH");
            d["lines"][1]["period_start"] = json!(date);
        })
    };
    assert_codes(&monthly("2026-11-01"), &[]);
    assert_codes(&monthly("2026-11-15"), &[PeriodMisaligned]);
}

#[test]
fn period_outside_horizon() {
    let doc = with(|d| {
        let mut extra = d["lines"][0].clone();
        extra["period_start"] = json!("2027-07-01");
        d["lines"].as_array_mut().unwrap().push(extra);
    });
    assert_codes(&doc, &[PeriodOutsideHorizon]);
    assert_codes(
        &with(|d| d["horizon"]["end"] = json!("2027-Q3")),
        &[HorizonGap],
    );
}

#[test]
fn quantity_invalid_and_exceeds_limit() {
    assert_codes(
        &with(|d| d["lines"][0]["quantity"] = json!(-1)),
        &[QuantityInvalid],
    );
    assert_codes(
        &with(|d| d["lines"][0]["quantity"] = json!(200_001)),
        &[QuantityExceedsLimit],
    );
    assert_codes(&with(|d| d["lines"][0]["quantity"] = json!(0)), &[]);
    assert_codes(
        &with(|d| d["lines"][0]["quantity"] = json!(i64::MAX)),
        &[QuantityExceedsLimit],
    );
}

#[test]
fn sku_unknown() {
    assert_codes(
        &with(|d| d["lines"][2]["sku"] = json!("h20-141gb")),
        &[SkuUnknown],
    );
    assert_codes(&with(|d| d["lines"][2]["sku"] = json!("H20-96GB")), &[]);
}

#[test]
fn duplicate_line() {
    let doc = with(|d| {
        let dup = d["lines"][1].clone();
        d["lines"].as_array_mut().unwrap().push(dup);
    });
    assert_codes(&doc, &[DuplicateLine]);
    // Same SKU and period, other confidence: two lines, not a duplicate.
    let doc = with(|d| {
        let mut other = d["lines"][1].clone();
        other["confidence"] = json!("FIRM");
        d["lines"].as_array_mut().unwrap().push(other);
    });
    assert_codes(&doc, &[]);
}

#[test]
fn doc_missing() {
    assert_codes(
        &with(|d| {
            d["documents"].as_array_mut().unwrap().remove(2);
        }),
        &[DocMissing],
    );
    assert_codes(
        &with(|d| d["documents"][2]["kind"] = json!("OTHER")),
        &[DocMissing],
    );
}

#[test]
fn doc_expired_and_not_yet_valid_use_the_utc_date_of_submission() {
    assert_codes(
        &with(|d| d["documents"][2]["expires_on"] = json!("2026-07-14")),
        &[DocExpired],
    );
    // Expiring on the date of submission is still valid that day.
    assert_codes(
        &with(|d| d["documents"][2]["expires_on"] = json!("2026-07-15")),
        &[],
    );
    assert_codes(
        &with(|d| d["documents"][1]["issued_on"] = json!("2026-07-16")),
        &[DocNotYetValid],
    );
    // 2026-07-16T01:00+08:00 is 2026-07-15 in UTC: issued on 07-16 is not yet valid.
    let doc = with(|d| {
        d["submitted_at"] = json!("2026-07-16T01:00:00+08:00");
        d["documents"][1]["issued_on"] = json!("2026-07-16");
    });
    assert_codes(&doc, &[DocNotYetValid]);
    // The checks apply to every listed document, not only the required kinds.
    let doc = with(|d| {
        d["documents"].as_array_mut().unwrap().push(json!({
            "kind": "OTHER", "reference": "misc", "issued_on": "2020-01-01", "expires_on": "2021-01-01",
            "sha256": "zz"}));
    });
    assert_codes(&doc, &[DocDigestInvalid, DocExpired]);
}

#[test]
fn doc_digest_invalid() {
    let digest = "4a44dc15364204a80fe80e9039455cc1608281820fe2b24f1e5233ade6af1dd5";
    for bad in [
        &digest[1..],
        &format!("{digest}0"),
        &digest.replace('a', "g"),
        &format!(" {}", &digest[1..]),
    ] {
        assert_codes(
            &with(|d| d["documents"][0]["sha256"] = json!(bad)),
            &[DocDigestInvalid],
        );
    }
}

#[test]
fn end_use_prohibited() {
    for category in ["AI_TRAINING", "OTHER"] {
        assert_codes(
            &with(|d| d["end_use"]["category"] = json!(category)),
            &[EndUseProhibited],
        );
    }
    for category in ["AI_INFERENCE", "CLOUD_SERVICES", "RESEARCH"] {
        assert_codes(&with(|d| d["end_use"]["category"] = json!(category)), &[]);
    }
    for text in [
        "Anti-missile radar",
        "MILITARY logistics",
        "weapons_research",
        "Nuclear plant twin",
        "defence2 x",
    ] {
        let holds = !text.starts_with("defence2");
        let expected: &[RuleCode] = if holds { &[EndUseProhibited] } else { &[] };
        assert_codes(
            &with(|d| d["end_use"]["description"] = json!(text)),
            expected,
        );
    }
    for text in [
        "defensive security",
        "missiles",
        "surveil",
        "weaponry",
        "Militarily neutral",
    ] {
        assert_codes(&with(|d| d["end_use"]["description"] = json!(text)), &[]);
    }
}

#[test]
fn end_user_missing_and_restricted() {
    assert_codes(
        &with(|d| d["end_use"]["end_users"] = json!([])),
        &[EndUserMissing],
    );
    for name in [
        "Red Lantern Advanced Systems",
        "RED-LANTERN SYSTEMS GROUP LIMITED",
        "rlas inc.",
    ] {
        let doc = with(|d| {
            d["end_use"]["end_users"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": name, "country": "CN"}));
        });
        assert_codes(&doc, &[EndUserRestricted]);
    }
    for name in ["Red Lantern", "Ltd.", ""] {
        assert_codes(
            &with(|d| d["end_use"]["end_users"][0]["name"] = json!(name)),
            &[],
        );
    }
}

#[test]
fn license_rules() {
    let license = |status: &str, number: Value| {
        with(|d| d["export_license"] = json!({"status": status, "application_number": number}))
    };
    assert_codes(
        &license("DENIED", json!("Z-1")),
        &[LicenseDenied, LicenseRequiredForFirm],
    );
    assert_codes(
        &license("NOT_FILED", Value::Null),
        &[LicenseRequiredForFirm],
    );
    assert_codes(&license("APPROVED", json!("Z-1")), &[]);
    assert_codes(
        &license("APPROVED", Value::Null),
        &[LicenseReferenceMissing],
    );
    assert_codes(&license("PENDING", json!("")), &[LicenseReferenceMissing]);
    assert_codes(&license("PENDING", json!("  ")), &[LicenseReferenceMissing]);
    // Without FIRM lines no licence is needed, but a denial still rejects.
    let planning_only = |status: &str| {
        with(|d| {
            for l in d["lines"].as_array_mut().unwrap() {
                l["confidence"] = json!("PLANNING");
            }
            d["lines"].as_array_mut().unwrap().truncate(2);
            let mut more = d["lines"][0].clone();
            more["period_start"] = json!("2027-01-01");
            d["lines"].as_array_mut().unwrap().push(more.clone());
            more["period_start"] = json!("2027-04-01");
            d["lines"].as_array_mut().unwrap().push(more);
            d["export_license"] = json!({"status": status});
        })
    };
    assert_codes(&planning_only("NOT_FILED"), &[]);
    assert_codes(&planning_only("DENIED"), &[LicenseDenied]);
}

#[test]
fn every_violation_is_reported_not_only_the_first() {
    let doc = with(|d| {
        d["customer_id"] = json!("NOBODY");
        d["lines"][0]["quantity"] = json!(-5);
        d["lines"][1]["sku"] = json!("A100");
        d["lines"][3]["sku"] = json!("B200");
        d["documents"][0]["sha256"] = json!("abc");
        d["export_license"] = json!({"status": "DENIED"});
    });
    assert_codes(
        &doc,
        &[
            CustomerUnknown,
            DocDigestInvalid,
            LicenseDenied,
            LicenseRequiredForFirm,
            QuantityInvalid,
            SkuUnknown,
        ],
    );
    let parsed = ForecastDocument::from_json(doc.to_string().as_bytes()).unwrap();
    let report = check(&parsed, &policy());
    let skus: Vec<&str> = report
        .violations
        .iter()
        .filter(|v| v.code == SkuUnknown)
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(
        skus,
        ["lines[1].sku", "lines[3].sku"],
        "each violation names its field"
    );
}

#[test]
fn expiry_warning_for_required_kinds_only_and_never_rejects() {
    let validator = Validator::new(policy());
    let warnings = |doc: &Value| {
        validator
            .judge_json(doc.to_string().as_bytes())
            .warning_codes()
    };
    // The base document's certificate expires 2027-06-30, the horizon's last day: no warning.
    assert_eq!(warnings(&base()), []);
    let early = with(|d| d["documents"][1]["expires_on"] = json!("2027-06-29"));
    assert_eq!(warnings(&early), [WarningCode::DocExpiresBeforeHorizonEnd]);
    assert_codes(&early, &[]);
    // Two early documents, still one code.
    let both = with(|d| {
        d["documents"][0]["expires_on"] = json!("2027-01-01");
        d["documents"][1]["expires_on"] = json!("2027-01-01");
    });
    assert_eq!(warnings(&both), [WarningCode::DocExpiresBeforeHorizonEnd]);
    // Not a required kind: no warning.
    let other = with(|d| {
        d["documents"].as_array_mut().unwrap().push(json!({
            "kind": "OTHER", "reference": "m", "issued_on": "2026-01-01", "expires_on": "2026-12-31",
            "sha256": "4a44dc15364204a80fe80e9039455cc1608281820fe2b24f1e5233ade6af1dd5"}));
    });
    assert_eq!(warnings(&other), []);
    // Reported on rejected documents too.
    let rejected = with(|d| {
        d["documents"][1]["expires_on"] = json!("2027-06-29");
        d["customer_id"] = json!("NOBODY");
    });
    assert_eq!(
        warnings(&rejected),
        [WarningCode::DocExpiresBeforeHorizonEnd]
    );
    // Never on a CANCEL.
    let cancel = with(|d| {
        d["purpose"] = json!("CANCEL");
        d["revision"] = json!(2);
        d["lines"] = json!([]);
        d["documents"][1]["expires_on"] = json!("2026-08-01");
    });
    assert_eq!(warnings(&cancel), []);
}

// ---- bounded outputs ---------------------------------------------------

/// The pill: 150,000 bad lines. Over the line limit, it is
/// `DOCUMENT_TOO_LARGE` alone, with one violation, and no other check runs.
#[test]
fn a_document_over_the_size_limits_is_document_too_large_alone() {
    let validator = Validator::new(policy());
    let pill = with(|d| {
        d["document_id"] = json!("PILL-1");
        d["lines"] = Value::Array(
            (0..150_000)
                .map(|_| json!({"sku": "", "period_start": "1970-01-02", "quantity": -1, "confidence": "FIRM"}))
                .collect(),
        );
    });
    let judged = validator.judge_json(pill.to_string().as_bytes());
    let verdict = validator.verdict(&judged, "2026-07-15T08:00:00Z".parse().unwrap(), None);
    assert_eq!(verdict.codes, [DocumentTooLarge]);
    assert_eq!(verdict.violations.len(), 1, "{:?}", verdict.violations);
    assert!(
        verdict.violations[0].message.contains("150000 lines"),
        "{:?}",
        verdict.violations[0]
    );
    assert_eq!(verdict.document_id.as_deref(), Some("PILL-1"));
    let encoded = forecast_model::wire::encode_verdict(&verdict);
    assert!(encoded.len() < 2_000, "{} bytes", encoded.len());

    // The same as an Avro record over the byte limit: refused unread.
    let small = PolicySettings {
        max_document_bytes: 500,
        ..PolicySettings::default()
    };
    let validator = Validator::new(Policy::new(small, RestrictedParties::empty()).unwrap());
    let doc = ForecastDocument::from_json(base().to_string().as_bytes()).unwrap();
    let record = forecast_model::wire::encode_document(&doc);
    assert!(record.len() > 500);
    let judged = validator.judge_framed(&record, forecast_model::Registry::embedded());
    let verdict = validator.verdict(&judged, "2026-07-15T08:00:00Z".parse().unwrap(), None);
    assert_eq!(verdict.codes, [DocumentTooLarge]);
    // An id over max_id_bytes: refused, and echoed as null, so the verdict
    // never carries it.
    let long_id = with(|d| d["document_id"] = json!("X".repeat(100_000)));
    let validator = Validator::new(policy());
    let judged = validator.judge_json(long_id.to_string().as_bytes());
    let verdict = validator.verdict(&judged, "2026-07-15T08:00:00Z".parse().unwrap(), None);
    assert_eq!(verdict.codes, [DocumentTooLarge]);
    assert_eq!(verdict.document_id, None);
    assert_eq!(verdict.violations[0].field, "document_id");
}

/// Under the limits, many bad lines: every code is listed, but at most
/// twenty violations of each, then one saying how many more.
#[test]
fn violations_are_listed_up_to_twenty_per_code_and_the_rest_counted() {
    let validator = Validator::new(policy());
    let many = with(|d| {
        let lines = d["lines"].as_array_mut().unwrap();
        for i in 0..5_000 {
            lines.push(json!({"sku": format!("NOPE-{i}"), "period_start": "2026-07-01", "quantity": -1, "confidence": "PLANNING"}));
        }
        d["customer_id"] = json!("N".repeat(10_000) + "OBODY");
    });
    let judged = validator.judge_json(many.to_string().as_bytes());
    let verdict = validator.verdict(&judged, "2026-07-15T08:00:00Z".parse().unwrap(), None);
    // The long customer id is over max_id_bytes: DOCUMENT_TOO_LARGE.
    assert_eq!(verdict.codes, [DocumentTooLarge]);
    let many = with(|d| {
        let lines = d["lines"].as_array_mut().unwrap();
        for i in 0..5_000 {
            lines.push(json!({"sku": format!("NOPE-{i}"), "period_start": "2026-07-01", "quantity": -1, "confidence": "PLANNING"}));
        }
        d["customer_id"] = json!("NOBODY");
    });
    let judged = validator.judge_json(many.to_string().as_bytes());
    let verdict = validator.verdict(&judged, "2026-07-15T08:00:00Z".parse().unwrap(), None);
    assert_eq!(
        verdict.codes,
        [CustomerUnknown, QuantityInvalid, SkuUnknown]
    );
    for code in [QuantityInvalid, SkuUnknown] {
        let of: Vec<_> = verdict
            .violations
            .iter()
            .filter(|v| v.code == code)
            .collect();
        assert_eq!(of.len(), 21, "{code}: twenty listed and one summary");
        assert_eq!(
            of[20].message,
            format!("and 4980 more {code} violation(s), not listed")
        );
    }
    let Judged::Checked { report, .. } = &judged else {
        panic!("decodes")
    };
    assert!(report.violations_found() > 10_000);
    let encoded = forecast_model::wire::encode_verdict(&verdict);
    assert!(encoded.len() < 64 << 10, "{} bytes", encoded.len());
}
