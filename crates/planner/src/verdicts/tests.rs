use super::*;
use forecast_model::SourceCoordinates;
use forecast_model::Timestamp;

fn verdict(
    doc: &str,
    rev: i32,
    outcome: Outcome,
    stage: Stage,
    codes: &[RuleCode],
    offset: i64,
) -> Verdict {
    Verdict {
        document_id: Some(doc.into()),
        revision: Some(rev),
        outcome,
        stage,
        codes: codes.to_vec(),
        warnings: vec![],
        violations: vec![],
        policy_version: "sha256:0".into(),
        decided_at: Timestamp::from_millis(offset),
        source: Some(SourceCoordinates {
            topic: "t".into(),
            partition: 0,
            offset,
        }),
        customer_id: Some("TENCENT".into()),
        screening_version: None,
    }
}

/// `customer`'s rejection of `doc`, read from source offset `offset`.
fn rejected_of(customer: &str, doc: &str, offset: i64) -> Verdict {
    Verdict {
        customer_id: Some(customer.into()),
        ..verdict(
            doc,
            1,
            Outcome::Rejected,
            Stage::Validate,
            &[RuleCode::SkuUnknown],
            offset,
        )
    }
}

#[test]
fn verdicts_are_taken_once_per_stage_and_source() {
    let mut v = VerdictBook::default();
    assert!(v.on_verdict(verdict("D", 1, Outcome::Accepted, Stage::Validate, &[], 0)));
    assert!(v.on_verdict(verdict("D", 1, Outcome::Accepted, Stage::Sequence, &[], 0)));
    // A restarted validator judging offset 0 again adds nothing.
    assert!(!v.on_verdict(verdict("D", 1, Outcome::Accepted, Stage::Validate, &[], 0)));
    assert!(v.on_verdict(verdict("D", 2, Outcome::Accepted, Stage::Validate, &[], 1)));
    assert!(v.on_verdict(verdict(
        "D",
        2,
        Outcome::Rejected,
        Stage::Sequence,
        &[RuleCode::RevisionConflict],
        1
    )));
    let d = v.document(Some("TENCENT"), "D").unwrap();
    assert_eq!((d.applied_revision, d.history.len()), (Some(1), 4));
    assert!(v.document(Some("TENCENT"), "E").is_none());
    let r = v.rejections(&RejectionFilter {
        limit: 10,
        ..RejectionFilter::default()
    });
    assert_eq!((r.total, r.counts.get("REVISION_CONFLICT")), (1, Some(&1)));
    let none = v.rejections(&RejectionFilter {
        customer: Some("ALIBABA".into()),
        limit: 10,
        ..RejectionFilter::default()
    });
    assert_eq!((none.total, none.rejections.len()), (0, 0));
}

/// The verdict of an undecodable record at `offset`: it names no document.
fn undecodable(offset: i64) -> Verdict {
    Verdict {
        document_id: None,
        revision: None,
        customer_id: None,
        ..verdict(
            "-",
            0,
            Outcome::Rejected,
            Stage::Deserialize,
            &[RuleCode::SchemaInvalid],
            offset,
        )
    }
}

#[test]
fn verdicts_naming_no_document_are_taken_once_per_stage_and_source() {
    let mut v = VerdictBook::default();
    assert!(v.on_verdict(undecodable(7)));
    assert!(!v.on_verdict(undecodable(7)));
    assert!(v.on_verdict(undecodable(8)));
    // The same offset of another document is not a repeat.
    assert!(v.on_verdict(verdict("D", 1, Outcome::Accepted, Stage::Validate, &[], 7)));
    let r = v.rejections(&RejectionFilter {
        limit: 10,
        ..RejectionFilter::default()
    });
    assert_eq!((r.total, r.counts.get("SCHEMA_INVALID")), (2, Some(&2)));
}

#[test]
fn a_document_revised_without_end_keeps_its_newest_verdicts_and_counts_the_rest() {
    let mut v = VerdictBook::default();
    let revisions = HISTORY_KEPT as i32 * 3;
    for rev in 1..=revisions {
        let offset = i64::from(rev);
        assert!(v.on_verdict(verdict(
            "D",
            rev,
            Outcome::Accepted,
            Stage::Validate,
            &[],
            offset
        )));
        assert!(v.on_verdict(verdict(
            "D",
            rev,
            Outcome::Accepted,
            Stage::Sequence,
            &[],
            offset
        )));
    }
    let d = v.document(Some("TENCENT"), "D").unwrap();
    assert_eq!(d.history.len(), HISTORY_KEPT);
    assert_eq!(
        d.earlier_verdicts,
        2 * revisions as u64 - HISTORY_KEPT as u64
    );
    assert_eq!(d.applied_revision, Some(revisions));
    let kept: Vec<_> = d.history.iter().map(|e| e.revision).collect();
    assert_eq!(
        kept.first(),
        Some(&Some(revisions - HISTORY_KEPT as i32 / 2 + 1)),
        "oldest first: {kept:?}"
    );
    assert_eq!(kept.last(), Some(&Some(revisions)));
    // A repeat of a kept verdict is still found.
    let offset = i64::from(revisions);
    assert!(!v.on_verdict(verdict(
        "D",
        revisions,
        Outcome::Accepted,
        Stage::Sequence,
        &[],
        offset
    )));
}

#[test]
fn the_sources_of_anonymous_verdicts_remembered_are_bounded() {
    let mut v = VerdictBook::default();
    let n = ANONYMOUS_KEPT as i64 + 10;
    for offset in 0..n {
        assert!(v.on_verdict(undecodable(offset)));
    }
    assert_eq!(v.seen_anonymous.len(), ANONYMOUS_KEPT);
    assert_eq!(v.anonymous_order.len(), ANONYMOUS_KEPT);
    assert!(
        !v.on_verdict(undecodable(n - 1)),
        "a recent repeat is dropped"
    );
    assert!(v.on_verdict(undecodable(0)), "the oldest is forgotten");
}

#[test]
fn only_the_newest_rejections_are_kept_but_all_are_counted() {
    let mut v = VerdictBook::default();
    let n = RECENT_REJECTIONS as i64 + 5;
    for i in 0..n {
        let code = if i % 2 == 0 {
            RuleCode::SkuUnknown
        } else {
            RuleCode::DocExpired
        };
        v.on_verdict(verdict(
            &format!("D{i}"),
            1,
            Outcome::Rejected,
            Stage::Validate,
            &[code],
            i,
        ));
    }
    let all = v.rejections(&RejectionFilter {
        limit: usize::MAX,
        ..RejectionFilter::default()
    });
    assert_eq!(all.total, n as u64);
    assert_eq!(all.rejections.len(), RECENT_REJECTIONS);
    assert_eq!(
        all.rejections[0].document_id.as_deref(),
        Some(format!("D{}", n - 1).as_str()),
        "newest first"
    );
    let expired = v.rejections(&RejectionFilter {
        code: Some(RuleCode::DocExpired),
        limit: 3,
        ..RejectionFilter::default()
    });
    assert_eq!(expired.rejections.len(), 3);
    assert!(
        expired
            .rejections
            .iter()
            .all(|r| r.codes == [RuleCode::DocExpired])
    );
    assert_eq!(
        all.counts["SKU_UNKNOWN"] + all.counts["DOC_EXPIRED"],
        n as u64
    );
}

#[test]
fn documents_are_each_customers_own_and_no_verdict_moves_another_customers() {
    let mut v = VerdictBook::default();
    assert!(v.on_verdict(rejected_of("TENCENT", "TCT-1", 0)));
    // ByteDance's verdicts under Tencent's id: another document.
    assert!(v.on_verdict(rejected_of("BYTEDANCE", "TCT-1", 1)));
    assert_eq!(
        v.document(Some("TENCENT"), "TCT-1").unwrap().history.len(),
        1
    );
    assert_eq!(
        v.document(Some("BYTEDANCE"), "TCT-1")
            .unwrap()
            .history
            .len(),
        1
    );
    assert!(matches!(v.find("TCT-1"), Found::Several(owners) if owners.len() == 2));
    // An unregistered customer's verdicts are nobody's.
    let unknown = Verdict {
        codes: vec![RuleCode::CustomerUnknown],
        ..rejected_of("TENCENT", "TCT-2", 2)
    };
    assert!(v.on_verdict(unknown));
    assert!(v.document(Some("TENCENT"), "TCT-2").is_none());
    assert!(v.document(None, "TCT-2").is_some());
    let tencent = |v: &VerdictBook| {
        v.rejections(&RejectionFilter {
            customer: Some("TENCENT".into()),
            limit: usize::MAX,
            ..RejectionFilter::default()
        })
    };
    assert_eq!(tencent(&v).total, 1);
    assert_eq!(tencent(&v).rejections.len(), 1);
}

/// The flood: one customer's endless distinct ids. It keeps at
/// most its bound of documents and rejections; every other customer's
/// documents and rejections stay.
#[test]
fn one_customers_flood_is_bounded_and_evicts_only_its_own() {
    let limits = VerdictLimits {
        documents_per_customer: 100,
        rejections_per_customer: 10,
        customers: 3,
    };
    let mut v = VerdictBook::new(limits);
    assert!(v.on_verdict(rejected_of("TENCENT", "TCT-1", 0)));
    for i in 0..10_000 {
        assert!(v.on_verdict(rejected_of("BYTEDANCE", &format!("SPAM-{i}"), i + 1)));
        // Tencent's document is given a verdict now and then: the most
        // recently touched stays whatever its age.
    }
    assert_eq!(v.documents_kept(Some("BYTEDANCE")), (100, 9_900));
    assert!(v.document(Some("BYTEDANCE"), "SPAM-9999").is_some());
    assert!(
        v.document(Some("BYTEDANCE"), "SPAM-0").is_none(),
        "least recent forgotten"
    );
    assert!(v.document(Some("TENCENT"), "TCT-1").is_some());
    let tencent = v.rejections(&RejectionFilter {
        customer: Some("TENCENT".into()),
        limit: usize::MAX,
        ..RejectionFilter::default()
    });
    assert_eq!((tencent.total, tencent.rejections.len()), (1, 1));
    let all = v.rejections(&RejectionFilter {
        limit: usize::MAX,
        ..RejectionFilter::default()
    });
    assert_eq!(all.total, 10_001);
    assert_eq!(
        all.rejections.len(),
        11,
        "ten of ByteDance's and Tencent's one"
    );
    // Customers past the bound are nobody's; the three kept stay theirs.
    assert!(v.on_verdict(rejected_of("ALIBABA", "ALI-1", 20_000)));
    assert!(v.on_verdict(rejected_of("SPRAY-1", "X", 20_001)));
    assert!(v.document(Some("SPRAY-1"), "X").is_none());
    assert!(v.document(None, "X").is_some());
    assert!(v.on_verdict(rejected_of("ALIBABA", "ALI-2", 20_002)));
    assert!(v.document(Some("ALIBABA"), "ALI-2").is_some());
}

/// Re-touching keeps a document: eviction is by the last verdict.
#[test]
fn the_document_given_a_verdict_least_recently_is_the_one_forgotten() {
    let limits = VerdictLimits {
        documents_per_customer: 2,
        ..VerdictLimits::DEFAULT
    };
    let mut v = VerdictBook::new(limits);
    v.on_verdict(verdict("A", 1, Outcome::Accepted, Stage::Validate, &[], 0));
    v.on_verdict(verdict("B", 1, Outcome::Accepted, Stage::Validate, &[], 1));
    v.on_verdict(verdict("A", 2, Outcome::Accepted, Stage::Validate, &[], 2));
    v.on_verdict(verdict("C", 1, Outcome::Accepted, Stage::Validate, &[], 3));
    let kept = |id| v.document(Some("TENCENT"), id).is_some();
    assert!(kept("A") && !kept("B") && kept("C"));
}
