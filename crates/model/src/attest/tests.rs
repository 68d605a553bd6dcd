use proptest::prelude::*;

use super::*;

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn keys_of(entries: &[StageKeyEntry]) -> StageKeys {
    let text: String = entries.iter().map(|e| e.line() + "\n").collect();
    StageKeys::from_text(&text, "test keys").unwrap()
}

fn validator_key() -> StageKeyEntry {
    StageKeyEntry::generate(Role::Validator, at("2026-01-01T00:00:00Z")).unwrap()
}

const RECORD: Covered<'static> = Covered {
    topic: "forecasts.validated",
    key: Some(b"TENCENT/TCT-1"),
    value: Some(b"\x00\x00\x00\x00\x01value"),
};

fn headers<'a>(
    list: &'a [(&'a str, &'a [u8])],
) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + Clone {
    list.iter().map(|(k, v)| (*k, Some(*v)))
}

/// `list` with the attestation of `record` by `attester` appended.
fn attested(
    attester: &Attester,
    record: Covered<'_>,
    list: &[(&str, &[u8])],
) -> Vec<(String, Vec<u8>)> {
    let mark = attester.attest(record, headers(list));
    let mut out: Vec<(String, Vec<u8>)> = list
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect();
    out.push((HEADER.into(), mark.into_bytes()));
    out
}

fn view(list: &[(String, Vec<u8>)]) -> impl Iterator<Item = (&str, Option<&[u8]>)> + Clone {
    list.iter().map(|(k, v)| (k.as_str(), Some(v.as_slice())))
}

const FIELDS: &[(&str, &[u8])] = &[
    ("customer-trace", b"abc"),
    ("forecast.policy.version", b"v1"),
    ("forecast.source", b"forecasts.submitted/0/7"),
];

#[test]
fn a_stage_attestation_verifies_and_names_its_stage() {
    let keys = keys_of(&[validator_key()]);
    let attester = keys.attester(Role::Validator, Timestamp::now()).unwrap();
    let verifier = Verifier::new("the validator", keys.checks(&[Role::Validator]));
    let list = attested(&attester, RECORD, FIELDS);
    assert_eq!(
        verifier.verify(RECORD, view(&list), None),
        Ok(Some(Role::Validator))
    );
}

#[test]
fn a_record_without_attestation_or_with_a_foreign_key_is_not_believed() {
    let keys = keys_of(&[validator_key()]);
    let verifier = Verifier::new("the validator", keys.checks(&[Role::Validator]));
    assert_eq!(
        verifier.verify(RECORD, headers(FIELDS), None),
        Err(Unattested::Missing("the validator".into()))
    );
    // A key of its own, made up by the writer: not one the reader holds.
    let forger = keys_of(&[validator_key()])
        .attester(Role::Validator, Timestamp::now())
        .unwrap();
    let list = attested(&forger, RECORD, FIELDS);
    assert!(matches!(
        verifier.verify(RECORD, view(&list), None),
        Err(Unattested::UnknownKey(..))
    ));
    // The reader's key id with a made-up MAC.
    let id = keys.entries().next().unwrap().key_id.clone();
    let mut list: Vec<(String, Vec<u8>)> = Vec::new();
    list.push((
        HEADER.into(),
        format!("{id} {}", BASE64.encode([7u8; 32])).into_bytes(),
    ));
    assert_eq!(
        verifier.verify(RECORD, view(&list), None),
        Err(Unattested::Mismatch(id.clone()))
    );
    list[0].1 = id.into_bytes();
    assert_eq!(
        verifier.verify(RECORD, view(&list), None),
        Err(Unattested::Malformed)
    );
}

#[test]
fn the_aggregators_key_does_not_pass_for_the_validators() {
    let keys = keys_of(&[
        validator_key(),
        StageKeyEntry::generate(Role::Aggregator, at("2026-01-01T00:00:00Z")).unwrap(),
    ]);
    let aggregator = keys.attester(Role::Aggregator, Timestamp::now()).unwrap();
    let verifier = Verifier::new("the validator", keys.checks(&[Role::Validator]));
    let list = attested(&aggregator, RECORD, FIELDS);
    assert!(matches!(
        verifier.verify(RECORD, view(&list), None),
        Err(Unattested::UnknownKey(..))
    ));
}

#[test]
fn a_record_moved_to_another_topic_or_given_another_verdict_field_fails() {
    let keys = keys_of(&[validator_key()]);
    let attester = keys.attester(Role::Validator, Timestamp::now()).unwrap();
    let verifier = Verifier::new("the validator", keys.checks(&[Role::Validator]));
    let list = attested(&attester, RECORD, FIELDS);
    let moved = Covered {
        topic: "forecasts.audit",
        ..RECORD
    };
    assert!(matches!(
        verifier.verify(moved, view(&list), None),
        Err(Unattested::Mismatch(_))
    ));
    // A verdict field added after the attestation.
    let mut forged = list.clone();
    forged.insert(0, ("forecast.policy.version".into(), b"FORGED".to_vec()));
    assert!(matches!(
        verifier.verify(RECORD, view(&forged), None),
        Err(Unattested::Mismatch(_))
    ));
    // A customer's own header added: not covered, still believed.
    let mut own = list.clone();
    own.insert(0, ("x-trace".into(), b"anything".to_vec()));
    assert_eq!(
        verifier.verify(RECORD, view(&own), None),
        Ok(Some(Role::Validator))
    );
    // A tombstone is not the record it replaced.
    let tombstone = Covered {
        value: None,
        ..RECORD
    };
    assert!(matches!(
        verifier.verify(tombstone, view(&list), None),
        Err(Unattested::Mismatch(_))
    ));
}

#[test]
fn the_newest_key_in_force_attests_and_a_revoked_one_is_not_believed() {
    let old = validator_key();
    let new = StageKeyEntry::generate(Role::Validator, at("2026-06-01T00:00:00Z")).unwrap();
    let later = StageKeyEntry::generate(Role::Validator, at("2030-01-01T00:00:00Z")).unwrap();
    let keys = keys_of(&[old.clone(), new.clone(), later]);
    let now = at("2026-12-06T00:00:00Z");
    assert_eq!(
        keys.attester(Role::Validator, now).unwrap().key_id(),
        new.key_id
    );
    // What the old key attested is still believed while it is not revoked.
    let verifier = Verifier::new("the validator", keys.checks(&[Role::Validator]));
    let old_attester = keys_of(std::slice::from_ref(&old))
        .attester(Role::Validator, now)
        .unwrap();
    let list = attested(&old_attester, RECORD, FIELDS);
    assert_eq!(
        verifier.verify(RECORD, view(&list), None),
        Ok(Some(Role::Validator))
    );
    let revoked = StageKeyEntry {
        revoked: true,
        ..old.clone()
    };
    let keys = keys_of(&[revoked, new.clone()]);
    let verifier = Verifier::new("the validator", keys.checks(&[Role::Validator]));
    assert_eq!(
        verifier.verify(RECORD, view(&list), None),
        Err(Unattested::Revoked(old.key_id))
    );
    assert_eq!(
        keys.attester(Role::Validator, now).unwrap().key_id(),
        new.key_id
    );
    assert!(keys.attester(Role::Aggregator, now).is_none());
}

#[test]
fn a_signature_by_a_role_key_verifies_within_its_validity() {
    let key = crate::signing::generate_key().unwrap();
    let id = crate::signing::key_id(&key.verifying_key());
    let attester = Attester::signing(key.clone(), id.clone());
    let check = Check::signature(
        Role::Compliance,
        key.verifying_key(),
        at("2026-01-01T00:00:00Z"),
        Some(at("2027-01-01T00:00:00Z")),
        false,
    );
    let verifier = Verifier::new("the compliance office", [(id.clone(), check)]);
    let record = Covered {
        topic: "licences.decisions",
        key: Some(b"Z-1/1"),
        value: Some(b"decision"),
    };
    let list = attested(&attester, record, &[]);
    let inside = Some(at("2026-12-06T00:00:00Z"));
    assert_eq!(
        verifier.verify(record, view(&list), inside),
        Ok(Some(Role::Compliance))
    );
    assert_eq!(
        verifier.verify(record, view(&list), Some(at("2027-02-01T00:00:00Z"))),
        Err(Unattested::OutsideValidity(id.clone()))
    );
    let changed = Covered {
        value: Some(b"decisioN"),
        ..record
    };
    assert_eq!(
        verifier.verify(changed, view(&list), inside),
        Err(Unattested::Mismatch(id))
    );
}

#[test]
fn with_attestation_off_everything_is_believed() {
    assert_eq!(
        Verifier::believing_all().verify(RECORD, headers(FIELDS), None),
        Ok(None)
    );
}

#[test]
fn a_bad_key_file_names_the_line_and_never_the_secret() {
    let key = validator_key();
    let mut line = key.line();
    line = line.replace("\"validator\"", "\"compliance\"");
    let err = StageKeys::from_text(&format!("# keys\n{line}\n"), "k.jsonl")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("k.jsonl, line 2") && err.contains("not a stage"),
        "{err}"
    );
    assert!(!err.contains(&key.secret));
    let typo = key.line().replace("\"revoked\"", "\"revokd\"");
    let err = StageKeys::from_text(&typo, "k.jsonl")
        .unwrap_err()
        .to_string();
    assert!(!err.contains(&key.secret), "{err}");
    let short = StageKeyEntry {
        secret: BASE64.encode([1u8; 16]),
        ..key.clone()
    };
    let err = StageKeys::from_text(&short.line(), "k.jsonl")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not 32 bytes"), "{err}");
    let twice = format!("{}\n{}\n", key.line(), key.line());
    assert!(
        StageKeys::from_text(&twice, "k.jsonl")
            .unwrap_err()
            .to_string()
            .contains("twice")
    );
    assert!(!format!("{:?}", keys_of(std::slice::from_ref(&key))).contains(&key.secret));
    assert!(!format!("{key:?}").contains(&key.secret));
}

proptest! {
    /// Whatever byte of the topic, key, value or a covered header changes,
    /// the attestation no longer verifies.
    #[test]
    fn one_byte_changed_anywhere_covered_fails(
        value in proptest::collection::vec(any::<u8>(), 1..200),
        field in 0usize..4,
        at_byte in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let keys = keys_of(&[validator_key()]);
        let attester = keys.attester(Role::Validator, Timestamp::now()).unwrap();
        let verifier = Verifier::new("the validator", keys.checks(&[Role::Validator]));
        let record = Covered { value: Some(&value), ..RECORD };
        let list = attested(&attester, record, FIELDS);
        prop_assert_eq!(verifier.verify(record, view(&list), None), Ok(Some(Role::Validator)));
        let mut topic = record.topic.as_bytes().to_vec();
        let mut key = record.key.unwrap().to_vec();
        let mut value = value.clone();
        let mut changed = list.clone();
        let target: &mut Vec<u8> = match field {
            0 => &mut topic,
            1 => &mut key,
            2 => &mut value,
            _ => &mut changed[1].1,
        };
        let i = at_byte.index(target.len());
        target[i] ^= flip;
        let topic = String::from_utf8_lossy(&topic).into_owned();
        let record = Covered { topic: &topic, key: Some(&key), value: Some(&value) };
        prop_assert!(matches!(verifier.verify(record, view(&changed), None), Err(Unattested::Mismatch(_))));
    }
}

#[test]
fn roles_read_back_from_their_names_and_nothing_else() {
    for role in Role::ALL {
        assert_eq!(role.as_str().parse::<Role>(), Ok(role));
    }
    assert!("admin".parse::<Role>().unwrap_err().contains("not a role"));
}

/// The mark is `KEY_ID` and the standard base64 (padded) of HMAC-SHA256,
/// under the key's secret, over the framed parts, computed here by hand:
/// what other implementations of the format must give.
#[test]
fn a_stage_mark_is_the_base64_hmac_of_the_framed_record() {
    let entry = validator_key();
    let attester = keys_of(std::slice::from_ref(&entry))
        .attester(Role::Validator, Timestamp::now())
        .unwrap();
    let framed = |b: &[u8]| [&[1u8][..], &(b.len() as u64).to_be_bytes(), b].concat();
    let mut covered = b"forecast-attestation/1\0".to_vec();
    for part in [
        &b"forecasts.validated"[..],
        b"TENCENT/TCT-1",
        b"\x00\x00\x00\x00\x01value",
        b"forecast.policy.version",
        b"v1",
        b"forecast.source",
        b"forecasts.submitted/0/7",
    ] {
        covered.extend(framed(part));
    }
    let secret = BASE64.decode(&entry.secret).unwrap();
    let mut mac = <Hmac<Sha256>>::new_from_slice(&secret).unwrap();
    mac.update(&covered);
    let expected = format!(
        "{} {}",
        entry.key_id,
        BASE64.encode(mac.finalize().into_bytes())
    );
    assert_eq!(attester.attest(RECORD, headers(FIELDS)), expected);
}
