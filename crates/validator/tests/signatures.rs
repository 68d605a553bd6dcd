//! Signed submissions (docs/signatures.md): each signature and key code
//! with a failing and a boundary-passing case, key rotation, the skew check,
//! and that without a key registry nothing changes.

#![allow(clippy::unwrap_used)]

use forecast_model::signing::{self, Signer, SigningKey};
use forecast_model::{ForecastDocument, RuleCode, Timestamp};
use forecast_validator::{
    Judged, KeyEntry, KeyRegistry, Policy, PolicySettings, RestrictedParties, SignatureMode,
    Validator,
};
use proptest::prelude::*;

use RuleCode::*;

const EXAMPLE: &[u8] = include_bytes!("../../../examples/tencent-original.json");

fn document() -> ForecastDocument {
    ForecastDocument::from_json(EXAMPLE).unwrap()
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn key(seed: u8) -> Signer {
    Signer::new(SigningKey::from_bytes(&[seed; 32]), None)
}

fn entry(signer: &Signer, customer: &str, from: &str, until: Option<&str>) -> KeyEntry {
    KeyEntry {
        key_id: signer.key_id().to_owned(),
        role: forecast_model::attest::Role::Customer,
        customer_id: customer.into(),
        public_key: signing::public_key_base64(&signer.public_key()),
        valid_from: ts(from),
        valid_until: until.map(ts),
        revoked: false,
    }
}

fn validator(entries: Vec<KeyEntry>, mode: Option<SignatureMode>) -> Validator {
    let settings = PolicySettings {
        signatures: mode,
        ..PolicySettings::default()
    };
    let keys = KeyRegistry::from_entries(entries).unwrap();
    Validator::new(Policy::with_keys(settings, RestrictedParties::empty(), Some(keys)).unwrap())
}

/// Tencent's key, valid for 2026.
fn tencent() -> (Signer, KeyEntry) {
    let k = key(1);
    let e = entry(
        &k,
        "TENCENT",
        "2026-01-01T00:00:00Z",
        Some("2027-01-01T00:00:00Z"),
    );
    (k, e)
}

fn signed(signer: &Signer, mut doc: ForecastDocument) -> ForecastDocument {
    signer.sign(&mut doc);
    doc
}

fn codes(v: &Validator, doc: ForecastDocument) -> Vec<RuleCode> {
    match v.judge_document(doc) {
        Judged::Checked { report, .. } => report.codes(),
        Judged::Undecodable(e) => panic!("{e}"),
    }
}

fn messages(v: &Validator, doc: ForecastDocument) -> Vec<String> {
    match v.judge_document(doc) {
        Judged::Checked { report, .. } => report
            .violations
            .iter()
            .map(|v| v.message.clone())
            .collect(),
        Judged::Undecodable(e) => panic!("{e}"),
    }
}

#[test]
fn the_example_signed_with_its_customers_key_passes() {
    let (k, e) = tencent();
    assert_eq!(codes(&validator(vec![e], None), signed(&k, document())), []);
}

#[test]
fn signature_missing_when_required_and_not_when_optional() {
    let (_, e) = tencent();
    assert_eq!(
        codes(&validator(vec![e.clone()], None), document()),
        [SignatureMissing]
    );
    assert_eq!(
        codes(
            &validator(vec![e.clone()], Some(SignatureMode::Required)),
            document()
        ),
        [SignatureMissing]
    );
    assert_eq!(
        codes(
            &validator(vec![e], Some(SignatureMode::Optional)),
            document()
        ),
        []
    );
}

#[test]
fn optional_still_checks_a_signature_that_is_there() {
    let (k, e) = tencent();
    let mut doc = signed(&k, document());
    doc.lines[0].quantity += 1;
    assert_eq!(
        codes(&validator(vec![e], Some(SignatureMode::Optional)), doc),
        [SignatureInvalid]
    );
}

#[test]
fn off_looks_at_no_signature() {
    let (k, e) = tencent();
    let mut doc = signed(&k, document());
    doc.lines[0].quantity += 1;
    assert_eq!(
        codes(&validator(vec![e], Some(SignatureMode::Off)), doc),
        []
    );
}

#[test]
fn without_a_key_registry_nothing_changes() {
    let v = Validator::new(Policy::default());
    assert_eq!(v.policy().signatures(), SignatureMode::Off);
    let mut doc = signed(&key(9), document());
    doc.signature.as_mut().unwrap().value = "garbage".into();
    assert_eq!(codes(&v, doc), []);
    assert_eq!(codes(&v, document()), []);
}

#[test]
fn signatures_required_without_keys_is_a_policy_error() {
    for mode in [SignatureMode::Required, SignatureMode::Optional] {
        let settings = PolicySettings {
            signatures: Some(mode),
            ..PolicySettings::default()
        };
        let err = Policy::new(settings, RestrictedParties::empty()).unwrap_err();
        assert!(err.to_string().contains("no key registry"), "{err}");
    }
}

#[test]
fn key_unknown() {
    let (_, e) = tencent();
    let v = validator(vec![e], None);
    let doc = signed(&key(2), document());
    let id = doc.signature.as_ref().unwrap().key_id.clone();
    assert_eq!(codes(&v, doc.clone()), [KeyUnknown]);
    // The verdict names the key.
    assert!(messages(&v, doc).iter().any(|m| m.contains(&id)));
}

#[test]
fn key_not_for_the_documents_customer() {
    let (k, e) = tencent();
    let v = validator(vec![e], None);
    let mut doc = document();
    doc.customer_id = "BYTEDANCE".into();
    assert_eq!(codes(&v, signed(&k, doc)), [KeyNotForCustomer]);
    assert_eq!(codes(&v, signed(&k, document())), []);
}

#[test]
fn key_not_yet_valid_at_the_boundary() {
    let k = key(1);
    let v = validator(
        vec![entry(&k, "TENCENT", "2026-07-01T00:00:00Z", None)],
        None,
    );
    let mut doc = document();
    doc.submitted_at = ts("2026-06-30T23:59:59.999Z");
    assert_eq!(codes(&v, signed(&k, doc.clone())), [KeyNotYetValid]);
    doc.submitted_at = ts("2026-07-01T00:00:00Z");
    assert_eq!(codes(&v, signed(&k, doc)), []);
}

#[test]
fn key_expired_at_the_boundary() {
    let (k, e) = tencent();
    let v = validator(vec![e], None);
    let mut doc = document();
    doc.submitted_at = ts("2026-12-31T23:59:59.999Z");
    assert_eq!(codes(&v, signed(&k, doc.clone())), []);
    doc.submitted_at = ts("2027-01-01T00:00:00Z");
    assert_eq!(codes(&v, signed(&k, doc.clone())), [KeyExpired]);
    // The same instant written in Beijing time is the same instant.
    doc.submitted_at = ts("2027-01-01T08:00:00+08:00");
    assert_eq!(codes(&v, signed(&k, doc)), [KeyExpired]);
}

#[test]
fn key_revoked_whatever_the_date() {
    let (k, mut e) = tencent();
    e.revoked = true;
    let v = validator(vec![e], None);
    let msgs = messages(&v, signed(&k, document()));
    assert_eq!(codes(&v, signed(&k, document())), [KeyRevoked]);
    assert!(
        msgs.iter()
            .any(|m| m.contains(k.key_id()) && m.contains("revoked")),
        "{msgs:?}"
    );
}

#[test]
fn every_finding_is_listed_with_the_other_rules() {
    // Revoked, for another customer, and the content changed; plus a rule
    // of the spec: every code, not only the first.
    let (k, mut e) = tencent();
    e.revoked = true;
    let v = validator(vec![e], None);
    let mut doc = document();
    doc.customer_id = "BYTEDANCE".into();
    let mut doc = signed(&k, doc);
    doc.lines[0].sku = "H100".into();
    assert_eq!(
        codes(&v, doc),
        [KeyNotForCustomer, KeyRevoked, SignatureInvalid, SkuUnknown]
    );
}

#[test]
fn a_cancel_is_checked_for_its_signature_too() {
    let (k, e) = tencent();
    let v = validator(vec![e], None);
    let mut cancel = document();
    cancel.purpose = forecast_model::Purpose::Cancel;
    cancel.revision = 2;
    cancel.lines.clear();
    assert_eq!(codes(&v, cancel.clone()), [SignatureMissing]);
    assert_eq!(codes(&v, signed(&k, cancel)), []);
}

#[test]
fn rotation_two_keys_overlap_then_the_old_one_expires() {
    let old = key(1);
    let new = key(2);
    let v = validator(
        vec![
            entry(
                &old,
                "TENCENT",
                "2026-01-01T00:00:00Z",
                Some("2026-09-01T00:00:00Z"),
            ),
            entry(
                &new,
                "TENCENT",
                "2026-08-01T00:00:00Z",
                Some("2027-08-01T00:00:00Z"),
            ),
        ],
        None,
    );
    let at = |when: &str| {
        let mut doc = document();
        doc.submitted_at = ts(when);
        doc
    };
    // Before the overlap only the old key signs.
    assert_eq!(codes(&v, signed(&old, at("2026-07-31T00:00:00Z"))), []);
    assert_eq!(
        codes(&v, signed(&new, at("2026-07-31T00:00:00Z"))),
        [KeyNotYetValid]
    );
    // During it, either.
    assert_eq!(codes(&v, signed(&old, at("2026-08-15T00:00:00Z"))), []);
    assert_eq!(codes(&v, signed(&new, at("2026-08-15T00:00:00Z"))), []);
    // After it, only the new one.
    assert_eq!(
        codes(&v, signed(&old, at("2026-09-01T00:00:00Z"))),
        [KeyExpired]
    );
    assert_eq!(codes(&v, signed(&new, at("2026-09-01T00:00:00Z"))), []);
}

#[test]
fn submitted_at_skew_from_the_broker_timestamp() {
    let (k, e) = tencent();
    let v = validator(vec![e.clone()], None);
    let limit = v.policy().settings().max_submitted_at_skew_seconds as i64;
    let doc = signed(&k, document());
    let at = doc.submitted_at.millis();
    let judged_at = |v: &Validator, received: i64| {
        let mut judged = v.judge_document(doc.clone());
        v.check_received_at(&mut judged, Timestamp::from_millis(received));
        match judged {
            Judged::Checked { report, .. } => report.codes(),
            Judged::Undecodable(e) => panic!("{e}"),
        }
    };
    assert_eq!(judged_at(&v, at + limit * 1000), []);
    assert_eq!(judged_at(&v, at - limit * 1000), []);
    assert_eq!(judged_at(&v, at + limit * 1000 + 1), [SubmittedAtSkew]);
    assert_eq!(judged_at(&v, at - limit * 1000 - 1), [SubmittedAtSkew]);
    // Only where signatures are required.
    let optional = validator(vec![e], Some(SignatureMode::Optional));
    assert_eq!(judged_at(&optional, at + 86_400_000), []);
}

#[test]
fn the_policy_version_covers_the_keys() {
    let (_, e) = tencent();
    let base = validator(vec![e.clone()], None);
    let mut revoked = e;
    revoked.revoked = true;
    assert_ne!(
        base.policy().version(),
        validator(vec![revoked], None).policy().version()
    );
    assert_ne!(base.policy().version(), Policy::default().version());
}

proptest! {
    /// Any change of any byte of the content breaks the signature: a
    /// string field gets one character more, or a number one more.
    #[test]
    fn any_change_of_content_is_signature_invalid(field in 0usize..9, extra in "[ -~]") {
        let (k, e) = tencent();
        let v = validator(vec![e], None);
        let mut doc = signed(&k, document());
        match field {
            0 => doc.document_id.push_str(&extra),
            1 => doc.revision += 1,
            2 => doc.horizon.end.push_str(&extra),
            3 => doc.lines[0].quantity += 1,
            4 => doc.lines[0].sku.push_str(&extra),
            5 => doc.end_use.description.push_str(&extra),
            6 => doc.end_use.end_users[0].name.push_str(&extra),
            7 => doc.documents[0].sha256.push_str(&extra),
            _ => doc.submitted_at = Timestamp::from_millis(doc.submitted_at.millis() + 1),
        }
        prop_assert!(codes(&v, doc).contains(&SignatureInvalid));
    }
}
