//! Model-based properties of every policy on random request sequences
//! (with deletes and capacity changes): capacity is never exceeded, the set of resident objects is exactly what
//! the admit/evict/remove decisions imply, the simulator's counters add up,
//! and no policy beats Belady; through three tiers, objects are conserved:
//! every lookup is served once, and what entered the managed tiers is there
//! or has left.

use std::collections::HashMap;

use engram_policy::{
    CostModel, Op, Policy, PolicyKind, Request, TierCost, annotate_next_access, simulate,
    simulate_tiers,
};
use proptest::prelude::*;

fn requests(max_id: u64, len: usize, deletes: bool) -> impl Strategy<Value = Vec<Request>> {
    let op = if deletes {
        prop_oneof![8 => Just(Op::Read), 2 => Just(Op::Write), 1 => Just(Op::Delete)].boxed()
    } else {
        prop_oneof![Just(Op::Read), Just(Op::Write)].boxed()
    };
    // An id keeps its size, and takes a new one now and then (a SET that grows
    // or shrinks a value): hits that do not change the size are the common case.
    let change = prop::bool::weighted(0.125);
    prop::collection::vec((0..max_id, op, 1u32..10_000, change), 1..len).prop_map(|v| {
        let mut sizes = std::collections::HashMap::new();
        let mut r: Vec<Request> = v
            .into_iter()
            .enumerate()
            .map(|(i, (id, op, drawn, change))| {
                let size = *sizes
                    .entry(id)
                    .and_modify(|s| {
                        if change {
                            *s = drawn;
                        }
                    })
                    .or_insert(drawn);
                Request {
                    op,
                    ..Request::read(i as u64, id, size)
                }
            })
            .collect();
        annotate_next_access(&mut r);
        r
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn resident_set_follows_decisions(
        reqs in requests(40, 400, true),
        cap in 1u64..24,
        resizes in prop::collection::vec((0usize..400, 1u64..24), 0..4),
    ) {
        for kind in PolicyKind::ALL {
            let mut p = kind.build(cap as usize).unwrap();
            follow_decisions(p.as_mut(), &reqs, cap, &resizes, |_| 1)?;
        }
    }

    #[test]
    fn counters_add_up_and_belady_wins(
        reqs in prop::bool::ANY.prop_flat_map(|deletes| requests(60, 600, deletes)),
        cap in 1usize..30,
    ) {
        // With and without deletes (a deleted object's last lookups must not
        // look wanted to Belady: the CacheLib kv traces delete).
        let cost = CostModel::default();
        let mut best = 0;
        let mut opt = 0;
        let lookups = reqs.iter().filter(|q| q.op != Op::Delete).count() as u64;
        for kind in PolicyKind::ALL {
            let mut p = kind.build(cap).unwrap();
            let r = simulate(p.as_mut(), &reqs, &cost, 7, true);
            prop_assert_eq!(r.requests, lookups);
            prop_assert_eq!(r.hits + r.backing_hits, r.requests);
            prop_assert!(r.admitted <= r.backing_hits);
            prop_assert_eq!(r.admitted - r.evictions - r.removed, p.len() as u64, "{} resident = admitted - evicted - deleted", kind.name());
            prop_assert!(r.max_resident <= cap);
            // No lookup (deletes only): no point in the series either.
            prop_assert_eq!(r.series.last().map_or(0, |p| p.requests), r.requests);
            // (A trace of deletes only has no latency at all.)
            prop_assert!(lookups == 0 || r.p99_latency_ns >= cost.hit(1, false) - 1.0);
            if kind == PolicyKind::Belady { opt = r.hits } else { best = best.max(r.hits) }
        }
        prop_assert!(best <= opt, "a policy got {} hits, Belady {}", best, opt);
    }

    #[test]
    fn tiered_replay_conserves_objects(
        reqs in requests(60, 600, true),
        caps in (1usize..8, 1usize..20),
    ) {
        for kind in PolicyKind::ALL {
            let tiers = vec![kind.build(caps.0).unwrap(), kind.build(caps.1).unwrap()];
            conserves_objects(tiers, &reqs)?;
        }
    }

    /// The same conservation with both tiers under byte budgets, objects of
    /// 1..10,000 bytes whose size changes between requests.
    #[test]
    fn tiered_replay_under_byte_budgets_conserves_objects(
        reqs in requests(60, 400, true),
        caps in (1u64..20_000, 1u64..60_000),
    ) {
        for kind in PolicyKind::ALL {
            let tiers = vec![
                kind.build_bytes(caps.0, 60).unwrap(),
                kind.build_bytes(caps.1, 60).unwrap(),
            ];
            conserves_objects(tiers, &reqs)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The same under a byte budget, for objects of many sizes (the same id
    /// with another size now and then, as a SET that grows a value).
    #[test]
    fn a_byte_budget_is_never_exceeded(
        reqs in requests(40, 300, true),
        bytes in 1u64..60_000,
        resizes in prop::collection::vec((0usize..300, 1u64..60_000), 0..3),
    ) {
        for kind in PolicyKind::ALL {
            let mut p = kind.build_bytes(bytes, 40).unwrap();
            follow_decisions(p.as_mut(), &reqs, bytes, &resizes, |r| u64::from(r.size))?;
        }
    }
}

/// Replay `reqs` through two tiers over an SSD, checking invariants at every
/// step: every lookup is served once, and objects enter the managed tiers
/// only from the backing tier and leave them only by a drop or a delete
/// (moves between them, promotions and demotions, change nothing).
fn conserves_objects(
    mut tiers: Vec<Box<dyn Policy>>,
    reqs: &[Request],
) -> Result<(), TestCaseError> {
    let costs = [TierCost::DEVICE, TierCost::DRAM];
    let r = simulate_tiers(&mut tiers, &costs, &TierCost::SSD, reqs, true);
    let lookups = reqs.iter().filter(|q| q.op != Op::Delete).count() as u64;
    prop_assert_eq!(r.requests, lookups);
    prop_assert_eq!(r.hits.iter().sum::<u64>() + r.backing_hits, r.requests);
    let resident = (tiers[0].len() + tiers[1].len()) as u64;
    prop_assert_eq!(
        resident,
        r.from_backing - r.dropped - r.removed,
        "{}",
        tiers[0].name()
    );
    prop_assert!(r.from_backing <= r.backing_hits);
    for t in &tiers {
        prop_assert!(t.used() <= t.capacity(), "{} over capacity", t.name());
    }
    Ok(())
}

/// Replay `reqs` (ids below 40) through `p`, a tier of `cap` units where a
/// request weighs `weight(r)` units, with capacity changes `resizes` (at
/// step, to units), against a model of the resident set: what is resident
/// and its units are exactly what the decisions (hit, admit, evicted ids,
/// remove) imply; the units in use never exceed the capacity; nothing is
/// demoted while the newcomer fits, nor by a hit that did not grow; nothing
/// bigger than the tier is admitted; a resident that stops being a hit was
/// demoted (it grew past what the tier keeps).
fn follow_decisions(
    p: &mut dyn Policy,
    reqs: &[Request],
    mut cap: u64,
    resizes: &[(usize, u64)],
    weight: fn(&Request) -> u64,
) -> Result<(), TestCaseError> {
    let name = p.name();
    let mut model: HashMap<u64, u64> = HashMap::new();
    let mut evicted = Vec::new();
    for (step, r) in reqs.iter().enumerate() {
        for &(_, new_cap) in resizes.iter().filter(|(at, _)| *at == step) {
            evicted.clear();
            p.resize(new_cap as usize, &mut evicted);
            cap = new_cap;
            for e in &evicted {
                prop_assert!(
                    model.remove(e).is_some(),
                    "{} resize evicted {} that was not resident",
                    name,
                    e
                );
            }
            prop_assert_eq!(p.capacity() as u64, cap);
        }
        if r.op == Op::Delete {
            prop_assert_eq!(
                p.remove(r.id),
                model.remove(&r.id).is_some(),
                "{} remove",
                name
            );
        } else {
            evicted.clear();
            let w = weight(r);
            let old = model.get(&r.id).copied();
            let used: u64 = model.values().sum();
            let quiet = match old {
                None => used + w <= cap,
                Some(o) => o == w,
            };
            let out = p.access(r, &mut evicted);
            prop_assert!(
                !quiet || evicted.is_empty(),
                "{} evicted {:?} with room to spare",
                name,
                evicted
            );
            prop_assert!(!out.hit || old.is_some(), "{} hit on a non-resident", name);
            prop_assert!(!(out.hit && out.admitted));
            for e in &evicted {
                prop_assert!(
                    model.remove(e).is_some(),
                    "{} evicted {} that was not resident",
                    name,
                    e
                );
            }
            if out.hit {
                model.insert(r.id, w);
            } else if old.is_some() {
                prop_assert!(evicted.contains(&r.id), "{} lost resident {}", name, r.id);
            }
            if out.admitted {
                prop_assert!(w <= cap, "{} admitted {} units into {}", name, w, cap);
                prop_assert!(model.insert(r.id, w).is_none());
            }
        }
        let used: u64 = model.values().sum();
        prop_assert!(used <= cap, "{} holds {} units in {}", name, used, cap);
        prop_assert_eq!(p.used() as u64, used, "{} units in use", name);
        prop_assert_eq!(p.len(), model.len(), "{} len", name);
        for id in 0..40 {
            prop_assert_eq!(
                p.contains(id),
                model.contains_key(&id),
                "{} contains({})",
                name,
                id
            );
        }
        p.check_invariants();
    }
    Ok(())
}

/// A byte budget of `n` over objects of one byte each is an object capacity
/// of `n`: every policy makes the same decisions (so the byte-budget driver
/// adds no behaviour of its own, and each policy's `resize` is faithful to its
/// constructor).
#[test]
fn a_byte_budget_over_unit_sizes_is_the_object_capacity() {
    let reqs = {
        let mut r = engram_policy::workload::zipf(3_000, 0.9, 30_000, 5);
        for q in &mut r {
            q.size = 1;
        }
        annotate_next_access(&mut r);
        r
    };
    let cost = CostModel::default();
    for kind in PolicyKind::ALL {
        for n in [1usize, 7, 150] {
            let mut a = kind.build(n).unwrap();
            let mut b = kind.build_bytes(n as u64, 3_000).unwrap();
            let ra = simulate(a.as_mut(), &reqs, &cost, 0, false);
            let rb = simulate(b.as_mut(), &reqs, &cost, 0, true);
            assert_eq!(
                (ra.hits, ra.admitted, ra.evictions),
                (rb.hits, rb.admitted, rb.evictions),
                "{} at {n}",
                kind.name()
            );
        }
        // Budget changes, down and up, between requests: the same demotions.
        let mut a = kind.build(40).unwrap();
        let mut b = kind.build_bytes(40, 3_000).unwrap();
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        for (i, r) in reqs.iter().take(6_000).enumerate() {
            if i % 500 == 250 {
                let c = [10, 60, 25, 90, 5, 45][(i / 500) % 6];
                a.resize(c, &mut ea);
                b.resize(c, &mut eb);
                assert_eq!(ea, eb, "{} resize to {c} at {i}", kind.name());
            }
            let (oa, ob) = (a.access(r, &mut ea), b.access(r, &mut eb));
            assert_eq!((oa, &ea), (ob, &eb), "{} at request {i}", kind.name());
            ea.clear();
            eb.clear();
        }
    }
}

/// The shortest trace where pointing a lookup's next access at the object's
/// delete let LRU beat Belady: capacity 1, read A, read B, delete A, read B.
/// Belady kept A (wanted "at 2", its delete) and turned B away.
#[test]
fn belady_is_not_beaten_around_a_delete() {
    let mut reqs: Vec<Request> = [1, 2, 1, 2]
        .iter()
        .enumerate()
        .map(|(t, &id)| Request::read(t as u64, id, 1))
        .collect();
    reqs[2].op = Op::Delete;
    annotate_next_access(&mut reqs);
    let cost = CostModel::default();
    let hits = |kind: PolicyKind| {
        let mut p = kind.build(1).unwrap();
        simulate(p.as_mut(), &reqs, &cost, 1, false).hits
    };
    assert_eq!(hits(PolicyKind::Lru), 1);
    assert_eq!(hits(PolicyKind::Belady), 1);
}

/// Under a byte budget, an object that outgrows the whole tier, or a budget
/// cut below one object's size, takes out that object, not every smaller
/// resident the policy would demote before it.
#[test]
fn an_object_bigger_than_the_tier_leaves_alone() {
    for kind in PolicyKind::ALL {
        let mut p = kind.build_bytes(100, 100).unwrap();
        let mut evicted = Vec::new();
        for id in 0..10 {
            p.access(&Request::read(id, id, 10), &mut evicted);
        }
        assert!(
            evicted.is_empty(),
            "{}: ten 10-byte objects fit",
            kind.name()
        );
        let out = p.access(&Request::read(10, 9, 1000), &mut evicted);
        assert!(!out.hit && !out.admitted, "{}: {out:?}", kind.name());
        assert_eq!(evicted, [9], "{}", kind.name());
        assert_eq!((p.len(), p.used()), (9, 90), "{}", kind.name());

        let mut p = kind.build_bytes(100, 100).unwrap();
        evicted.clear();
        for (id, size) in [(1, 10), (2, 10), (3, 60)] {
            p.access(&Request::read(id, id, size), &mut evicted);
        }
        p.resize(50, &mut evicted);
        assert_eq!(evicted, [3], "{}", kind.name());
        assert_eq!((p.len(), p.used()), (2, 20), "{}", kind.name());
    }
}

/// Three tiers under byte budgets: a tier-0 hit that grows demotes what it
/// pushes out to the next tier instead of losing it.
#[test]
fn a_growing_hit_demotes_to_the_next_tier() {
    let mut reqs: Vec<Request> = (0..10)
        .map(|id| Request {
            op: Op::Write,
            ..Request::read(id, id, 10)
        })
        .collect();
    reqs.push(Request::read(10, 9, 95));
    let mut tiers = vec![
        PolicyKind::Lru.build_bytes(100, 100).unwrap(),
        PolicyKind::Lru.build_bytes(1000, 100).unwrap(),
    ];
    let costs = [TierCost::DEVICE, TierCost::DRAM];
    let r = simulate_tiers(&mut tiers, &costs, &TierCost::SSD, &reqs, true);
    assert_eq!(r.hits[0], 1);
    assert_eq!((tiers[0].len(), tiers[1].len()), (1, 9));
    assert_eq!((r.demotions, r.dropped, r.writebacks), (9, 0, 0));
    assert!(tiers[0].contains(9));
}
