use proptest::prelude::*;

use super::*;

fn q(s: &str) -> Quarter {
    s.parse().unwrap()
}

fn line(customer: &str, status: ExposureStatus, application: &str, firm: i64) -> DemandLine {
    DemandLine {
        customer_id: customer.into(),
        sku: "H20-96GB".into(),
        quarter: q("2026-Q3"),
        status,
        application: Some(application.into()),
        units: Units {
            firm_units: firm,
            planning_units: 0,
        },
    }
}

fn supply(units: i64) -> BTreeMap<(String, Quarter), i64> {
    BTreeMap::from([(("H20-96GB".to_owned(), q("2026-Q3")), units)])
}

fn allocated(a: &Allocated) -> Vec<(&str, i64)> {
    a.allocations
        .iter()
        .map(|x| (x.customer_id.as_str(), x.allocated_units))
        .collect()
}

/// The worked example of the issue and of docs/planner.md.
fn example(alibaba: ExposureStatus) -> Vec<DemandLine> {
    vec![
        line("TENCENT", ExposureStatus::Approved, "Z-T", 8_000),
        line("BYTEDANCE", ExposureStatus::Approved, "Z-B", 4_000),
        line("ALIBABA", alibaba, "Z-A", 3_000),
    ]
}

fn priority() -> AllocationPolicy {
    AllocationPolicy {
        method: Method::Priority,
        priority: vec!["TENCENT".into(), "BYTEDANCE".into(), "ALIBABA".into()],
        ..AllocationPolicy::default()
    }
}

#[test]
fn the_worked_example_holds() {
    let pro_rata = AllocationPolicy::default();
    let a = allocate(
        &pro_rata,
        &example(ExposureStatus::Approved),
        &supply(10_000),
        &[],
    );
    assert_eq!(
        allocated(&a),
        [("ALIBABA", 2_000), ("BYTEDANCE", 2_667), ("TENCENT", 5_333)]
    );
    let a = allocate(
        &priority(),
        &example(ExposureStatus::Approved),
        &supply(10_000),
        &[],
    );
    assert_eq!(
        allocated(&a),
        [("ALIBABA", 0), ("BYTEDANCE", 2_000), ("TENCENT", 8_000)]
    );
    let a = allocate(
        &pro_rata,
        &example(ExposureStatus::Denied),
        &supply(10_000),
        &[],
    );
    assert_eq!(
        allocated(&a),
        [("ALIBABA", 0), ("BYTEDANCE", 3_333), ("TENCENT", 6_667)]
    );
    let alibaba = &a.allocations[0];
    assert_eq!(
        alibaba.shortfalls,
        [Shortfall {
            reason: ShortfallReason::LicenceDenied,
            units: 3_000
        }]
    );
    let tencent = &a.allocations[2];
    assert_eq!(
        tencent.shortfalls,
        [Shortfall {
            reason: ShortfallReason::SupplyShort,
            units: 1_333
        }]
    );
}

#[test]
fn a_licence_cap_and_a_customer_maximum_bound_a_share_and_the_rest_goes_to_the_others() {
    let decisions = [LicenceDecision {
        application_number: "Z-T".into(),
        customer_id: "TENCENT".into(),
        status: DecisionStatus::Approved,
        decided_at: crate::Timestamp::from_millis(0),
        approved_quantity: BTreeMap::from([("H20-96GB".to_owned(), 3_000)]),
        expires_on: None,
    }];
    let a = allocate(
        &AllocationPolicy::default(),
        &example(ExposureStatus::Approved),
        &supply(10_000),
        &decisions,
    );
    // Tencent capped at 3,000; the 7,000 left shared 4:3.
    assert_eq!(
        allocated(&a),
        [("ALIBABA", 3_000), ("BYTEDANCE", 4_000), ("TENCENT", 3_000)]
    );
    assert_eq!(
        a.allocations[2].shortfalls,
        [Shortfall {
            reason: ShortfallReason::LicenceCap,
            units: 5_000
        }]
    );
    assert_eq!(
        a.licence_used[&("TENCENT".into(), "Z-T".into(), "H20-96GB".into())],
        3_000
    );
    let bounded = AllocationPolicy {
        customers: BTreeMap::from([
            (
                "BYTEDANCE".to_owned(),
                Bounds {
                    min: None,
                    max: Some(1_000),
                },
            ),
            (
                "ALIBABA".to_owned(),
                Bounds {
                    min: Some(2_500),
                    max: None,
                },
            ),
        ]),
        ..AllocationPolicy::default()
    };
    let a = allocate(
        &bounded,
        &example(ExposureStatus::Approved),
        &supply(10_000),
        &[],
    );
    // Alibaba's minimum first (2,500); the 7,500 left shared by the demand
    // left (Tencent 8,000, ByteDance 4,000, Alibaba 500): ByteDance's share
    // reaches its maximum of 1,000, and the 6,500 left go 8,000 : 500.
    assert_eq!(
        allocated(&a),
        [("ALIBABA", 2_882), ("BYTEDANCE", 1_000), ("TENCENT", 6_118)]
    );
}

#[test]
fn unallocated_supply_carries_over_to_the_skus_later_quarters_when_the_policy_says_so() {
    let mut demand = example(ExposureStatus::Approved);
    demand[0].quarter = q("2026-Q4");
    let s = supply(10_000);
    let carried = allocate(&AllocationPolicy::default(), &demand, &s, &[]);
    // Q3: 7,000 to ByteDance and Alibaba, 3,000 left for Tencent in Q4.
    let tencent = carried
        .allocations
        .iter()
        .find(|a| a.customer_id == "TENCENT")
        .unwrap();
    assert_eq!(
        (tencent.quarter, tencent.allocated_units),
        (q("2026-Q4"), 3_000)
    );
    let kept = AllocationPolicy {
        carry_over: false,
        ..AllocationPolicy::default()
    };
    let not_carried = allocate(&kept, &demand, &s, &[]);
    let tencent = not_carried
        .allocations
        .iter()
        .find(|a| a.customer_id == "TENCENT")
        .unwrap();
    assert_eq!(tencent.allocated_units, 0);
    assert_eq!(
        not_carried.unallocated[&("H20-96GB".to_owned(), q("2026-Q3"))],
        3_000
    );
}

#[test]
fn firm_demand_comes_before_planning_demand() {
    let mut planning = line("TENCENT", ExposureStatus::Approved, "Z-T", 0);
    planning.units.planning_units = 5_000;
    let demand = vec![
        planning,
        line("BYTEDANCE", ExposureStatus::Approved, "Z-B", 4_000),
    ];
    let a = allocate(&AllocationPolicy::default(), &demand, &supply(6_000), &[]);
    assert_eq!(allocated(&a), [("BYTEDANCE", 4_000), ("TENCENT", 2_000)]);
    let together = AllocationPolicy {
        firm_first: false,
        ..AllocationPolicy::default()
    };
    let a = allocate(&together, &demand, &supply(6_000), &[]);
    assert_eq!(allocated(&a), [("BYTEDANCE", 2_667), ("TENCENT", 3_333)]);
}

#[test]
fn bad_policies_are_refused_with_what_is_wrong() {
    let p = AllocationPolicy {
        method: Method::Priority,
        ..AllocationPolicy::default()
    };
    assert!(p.check().unwrap_err().contains("needs `priority`"));
    let p = AllocationPolicy {
        eligible: vec![ExposureStatus::ScreeningHold],
        ..AllocationPolicy::default()
    };
    assert!(p.check().unwrap_err().contains("SCREENING_HOLD"));
    let p = AllocationPolicy {
        customers: BTreeMap::from([(
            "X".to_owned(),
            Bounds {
                min: Some(5),
                max: Some(1),
            },
        )]),
        ..AllocationPolicy::default()
    };
    assert!(p.check().unwrap_err().contains("above max"));
}

const CUSTOMERS: [&str; 4] = ["ALIBABA", "BAIDU", "BYTEDANCE", "TENCENT"];
const STATUSES: [ExposureStatus; 4] = [
    ExposureStatus::Approved,
    ExposureStatus::Approved,
    ExposureStatus::Pending,
    ExposureStatus::ScreeningHold,
];

fn lines() -> impl Strategy<Value = Vec<DemandLine>> {
    prop::collection::vec(
        (
            0..4usize,
            0..4usize,
            0..3usize,
            0..2usize,
            0..5_000i64,
            0..5_000i64,
        ),
        0..24,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(c, s, quarter, sku, firm, planning)| DemandLine {
                customer_id: CUSTOMERS[c].into(),
                sku: ["H20-96GB", "H20-141GB"][sku].into(),
                quarter: [q("2026-Q3"), q("2026-Q4"), q("2027-Q1")][quarter],
                status: STATUSES[s],
                application: Some(format!("Z-{c}")),
                units: Units {
                    firm_units: firm,
                    planning_units: planning,
                },
            })
            .collect()
    })
}

fn policies() -> impl Strategy<Value = AllocationPolicy> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(0..3_000i64),
        prop::option::of(0..3_000i64),
    )
        .prop_map(
            |(priority, firm_first, carry_over, min, max)| AllocationPolicy {
                method: if priority {
                    Method::Priority
                } else {
                    Method::ProRata
                },
                priority: vec!["TENCENT".into(), "ALIBABA".into()],
                firm_first,
                carry_over,
                customers: BTreeMap::from([(
                    "BYTEDANCE".to_owned(),
                    Bounds {
                        min,
                        max: max.map(|m| m.max(min.unwrap_or(0))),
                    },
                )]),
                ..AllocationPolicy::default()
            },
        )
}

fn caps() -> impl Strategy<Value = Vec<LicenceDecision>> {
    prop::collection::vec((0..4usize, 0..20_000i64), 0..4).prop_map(|v| {
        v.into_iter()
            .map(|(c, units)| LicenceDecision {
                application_number: format!("Z-{c}"),
                customer_id: CUSTOMERS[c].into(),
                status: DecisionStatus::Approved,
                decided_at: crate::Timestamp::from_millis(0),
                approved_quantity: BTreeMap::from([("H20-96GB".to_owned(), units)]),
                expires_on: None,
            })
            .collect()
    })
}

fn supplies() -> impl Strategy<Value = BTreeMap<(String, Quarter), i64>> {
    prop::collection::btree_map(
        (
            prop::sample::select(vec!["H20-96GB", "H20-141GB"]),
            0..3usize,
        )
            .prop_map(|(s, i)| (s.to_owned(), [q("2026-Q3"), q("2026-Q4"), q("2027-Q1")][i])),
        0..20_000i64,
        0..6,
    )
}

proptest! {
    /// The sums hold; nothing exceeds the supply (with what was carried),
    /// a licence's quantity or a customer's maximum; nothing goes to
    /// ineligible demand; the result is the same whatever order the
    /// inputs come in, and the same every time.
    #[test]
    fn allocations_hold_every_bound_and_do_not_depend_on_input_order(
        policy in policies(),
        demand in lines(),
        supply in supplies(),
        decisions in caps(),
        seed in any::<u64>(),
    ) {
        let a = allocate(&policy, &demand, &supply, &decisions);
        for x in &a.allocations {
            let short: i64 = x.shortfalls.iter().map(|s| s.units).sum();
            prop_assert_eq!(x.allocated_units + short, x.requested_units, "{:?}", x);
            prop_assert!(x.shortfalls.iter().all(|s| s.units > 0), "{:?}", x);
            let eligible: i64 = demand
                .iter()
                .filter(|l| l.customer_id == x.customer_id && l.sku == x.sku && l.quarter == x.quarter)
                .filter(|l| l.status == ExposureStatus::Approved)
                .map(|l| l.units.total())
                .sum();
            prop_assert!(x.allocated_units <= eligible, "{:?}", x);
            if let Some(max) = policy.customers.get(&x.customer_id).and_then(|b| b.max) {
                prop_assert!(x.allocated_units <= max);
            }
        }
        // Per SKU, in quarter order: given <= supply + carried.
        let mut skus: BTreeMap<&str, Vec<(Quarter, i64, i64)>> = BTreeMap::new();
        for ((sku, quarter), rest) in &a.unallocated {
            let given: i64 = a.allocations.iter().filter(|x| &x.sku == sku && x.quarter == *quarter).map(|x| x.allocated_units).sum();
            skus.entry(sku).or_default().push((*quarter, given, *rest));
        }
        for (sku, quarters) in skus {
            let mut carried = 0;
            for (quarter, given, rest) in quarters {
                let available = supply.get(&(sku.to_owned(), quarter)).copied().unwrap_or(0) + carried;
                prop_assert_eq!(given + rest, available);
                prop_assert!(rest >= 0);
                carried = if policy.carry_over { rest } else { 0 };
            }
        }
        for d in &decisions {
            let used = a.licence_used.get(&(d.customer_id.clone(), d.application_number.clone(), "H20-96GB".to_owned())).copied().unwrap_or(0);
            // Of two decisions on one application the last counts here.
            let approved = decisions.iter().rev().find(|e| e.application_number == d.application_number).unwrap().approved_quantity["H20-96GB"];
            prop_assert!(used <= approved, "{} used of {}", used, approved);
        }
        let mut shuffled = demand.clone();
        let mut rng = seed;
        for i in (1..shuffled.len()).rev() {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (rng >> 33) as usize % (i + 1));
        }
        prop_assert_eq!(&allocate(&policy, &shuffled, &supply, &decisions), &a);
    }
}
