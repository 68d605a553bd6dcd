use std::collections::BTreeMap;

use super::*;
use crate::allocation::{AllocationPolicy, DemandLine, allocate};
use crate::demand::Units;
use crate::keys::{KeyEntry, KeyRegistry};
use crate::licence::ExposureStatus;
use crate::signing::{self, Signer};

fn q(s: &str) -> Quarter {
    s.parse().unwrap()
}

/// A signer of `role` and a verifier believing the registry's `supplier` keys.
fn keys(role: Role) -> (Attester, Verifier) {
    let signer = Signer::new(signing::generate_key().unwrap(), None);
    let since = Timestamp::from_millis(0);
    let entry = KeyEntry {
        role,
        ..KeyEntry::for_signer(&signer, "", since, None)
    };
    let registry = KeyRegistry::from_entries(vec![entry]).unwrap();
    let verifier = Verifier::new("the supplier", registry.checks(Role::Supplier));
    (signer.attester(), verifier)
}

fn commit() -> Commit {
    let line = |customer: &str, firm| DemandLine {
        customer_id: customer.into(),
        sku: "H20-96GB".into(),
        quarter: q("2026-Q3"),
        status: ExposureStatus::Approved,
        application: None,
        units: Units {
            firm_units: firm,
            planning_units: 0,
        },
    };
    let supply = BTreeMap::from([(("H20-96GB".to_owned(), q("2026-Q3")), 10_000)]);
    let a = allocate(
        &AllocationPolicy::default(),
        &[line("TENCENT", 8_000), line("BYTEDANCE", 4_000)],
        &supply,
        &[],
    );
    Commit::of(
        "TENCENT",
        &a.allocations,
        Method::ProRata,
        Timestamp::from_millis(1_790_000_000_000),
        |_, _| {
            vec![Answered {
                document_id: "TCT-1".into(),
                revision: 2,
            }]
        },
    )
}

#[test]
fn a_signed_commit_verifies_and_one_byte_changed_does_not() {
    let (signer, verifier) = keys(Role::Supplier);
    let c = commit();
    assert_eq!(c.lines.len(), 1);
    assert_eq!(c.lines[0].allocated_units, 6_667);
    let file =
        serde_json::to_string(&SignedCommit::sign(&c, COMMITS_TOPIC, &signer).unwrap()).unwrap();
    let read: SignedCommit = serde_json::from_str(&file).unwrap();
    assert_eq!(read.verify(&verifier).unwrap(), c);
    // Every byte of the commit counts: a digit, or a space.
    for (from, to) in [
        ("6667", "6668"),
        ("\"TCT-1\"", "\"TCT-9\""),
        (",\"lines\"", ", \"lines\""),
    ] {
        let changed = file.replacen(from, to, 1);
        assert_ne!(changed, file);
        let read: SignedCommit = serde_json::from_str(&changed).unwrap();
        let err = read.verify(&verifier).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{from}: {err}");
    }
    // Another customer's name on the record.
    let moved = file.replacen("\"key\":\"TENCENT\"", "\"key\":\"BYTEDANCE\"", 1);
    let read: SignedCommit = serde_json::from_str(&moved).unwrap();
    assert!(matches!(
        read.verify(&verifier),
        Err(CommitError::OtherCustomer { .. })
    ));
}

#[test]
fn a_commit_signed_by_a_key_of_another_role_is_refused() {
    let (compliance, _) = keys(Role::Compliance);
    let (_, verifier) = keys(Role::Supplier);
    let signed = SignedCommit::sign(&commit(), COMMITS_TOPIC, &compliance).unwrap();
    let err = signed.verify(&verifier).unwrap_err();
    assert!(
        err.to_string().contains("not a key of the supplier"),
        "{err}"
    );
}
