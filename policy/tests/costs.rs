//! The simulators hand each tier's cost model to its policy
//! (`Policy::set_costs`), whichever way the policy was built: told that a copy
//! into its tier costs more than any hit there saves, the learned agent stops
//! copying once its model trusts what it sees, and told the measured costs it
//! keeps copying.

use engram_policy::{
    CostModel, Policy, PolicyKind, Request, TierCost, simulate, simulate_tiers, workload,
};

/// Copies into the fast tier cost a second each.
fn dear() -> CostModel {
    let mut c = CostModel::default();
    c.fast.write_ns = 1e9;
    c
}

/// A tier faster than DRAM (40 ns + 100 GB/s reads), copies into it priced
/// as given.
fn faster_than_dram(write_ns: f64, write_ns_per_byte: f64) -> TierCost {
    TierCost {
        read_ns: 40.0,
        read_ns_per_byte: 1.0 / 100.0,
        write_ns,
        write_ns_per_byte,
    }
}

/// How a test builds its policy.
type Build = fn() -> Box<dyn Policy>;

fn trace() -> Vec<Request> {
    // 4 KiB objects (the generator's size).
    workload::zipf(5000, 0.8, 60_000, 11)
}

#[test]
fn simulate_prices_copies_for_object_and_byte_budgets() {
    let t = trace();
    let builds: [(&str, Build); 2] = [
        ("objects", || PolicyKind::Learned.build(200).unwrap()),
        ("bytes", || {
            PolicyKind::Learned.build_bytes(200 * 4096, 5000).unwrap()
        }),
    ];
    for (name, build) in builds {
        let cheap = simulate(build().as_mut(), &t, &CostModel::default(), 0, false).admitted;
        let dear = simulate(build().as_mut(), &t, &dear(), 0, false).admitted;
        assert!(
            cheap > 10_000,
            "{name}: {cheap} copies at the measured costs"
        );
        assert!(
            dear * 5 < cheap,
            "{name}: {dear} copies priced dear, {cheap} cheap"
        );
    }
}

#[test]
fn simulate_tiers_prices_each_tier_against_the_one_below() {
    let t = trace();
    // A hit there saves 150 ns + 4 KiB at 5 GB/s over DRAM, and 27 us over
    // the SSD, against a copy of 80 ns.
    let fast = faster_than_dram(40.0, 1.0 / 100.0);
    let mut tiers = vec![
        PolicyKind::Learned.build(100).unwrap(),
        PolicyKind::Learned.build(400).unwrap(),
    ];
    let r = simulate_tiers(
        &mut tiers,
        &[fast, TierCost::DRAM],
        &TierCost::SSD,
        &t,
        false,
    );
    // Tier 0 sees every request in order, as a one-tier replay does; its
    // misses are served from DRAM, so that is the backing it must be priced by.
    let alone = |backing: TierCost| {
        let cost = CostModel { fast, backing };
        simulate(
            PolicyKind::Learned.build(100).unwrap().as_mut(),
            &t,
            &cost,
            0,
            false,
        )
        .hits
    };
    let (over_dram, over_ssd) = (alone(TierCost::DRAM), alone(TierCost::SSD));
    assert_ne!(
        over_dram, over_ssd,
        "the backing tier's price changes decisions"
    );
    assert_eq!(r.hits[0], over_dram, "tier 0 priced against tier 1");
}

#[test]
fn demotions_are_offered_unpriced_through_a_byte_budget() {
    let t = trace();
    // Tier 0 takes everything for free; tier 1 (a byte budget) prices a
    // copy at a second, so it would take no request-path newcomer it trusts.
    // Demotions reach it through `offer_demoted`: background copies, taken.
    let free = faster_than_dram(0.0, 0.0);
    let dear_dram = dear().fast;
    let mut tiers = vec![
        PolicyKind::Learned.build(100).unwrap(),
        PolicyKind::Learned.build_bytes(400 * 4096, 5000).unwrap(),
    ];
    let r = simulate_tiers(&mut tiers, &[free, dear_dram], &TierCost::SSD, &t, false);
    // Priced as requests, tier 1 took about 5k of the 41k demotions (and
    // served 3.5k hits); offered as demotions, nearly all.
    assert!(
        r.demotions * 2 > r.promotions,
        "{} of {} promotions demoted into tier 1",
        r.demotions,
        r.promotions
    );
    assert!(r.hits[1] > 5_000, "{:?}", r.hits);
}
