//! Policy decision latency (issue 4): the time of one `Policy::access` (lookup,
//! and on a miss the placement and eviction decisions) on a seeded Zipf workload.
//!
//! Group `access`, IDs `access/<policy>/zipf<alpha>`:
//! - `lru`, `arc`, `s3fifo`, `sieve`: the classic policies, built through
//!   `PolicyKind::build`.
//! - `learned`: `PolicyKind::Learned`, the shipped learned agents: the
//!   selection agent running ARC, S3-FIFO and the reuse-model agents as
//!   shadows and voting among them (`cache::Ensemble`), training included.
//!   `learned_frozen`: the same after the warm-up replay with training off
//!   (`Ensemble::set_training(false)`: scores and the reuse table frozen);
//!   `learned` minus `learned_frozen` is the shipped agent's training cost.
//! - `reuse`: `PolicyKind::Reuse`, the reuse-model placement + migration agents
//!   alone with `ReuseConfig::default()`; `reuse_migration`: the same with
//!   admission off (migration agent only). Their online training (label
//!   resolution and value updates) runs inside `access`, so it is in the time.
//! - `reuse_frozen`: `reuse` trained over the same warm-up replay, then with
//!   training off (`Reuse::set_training(false)`): the same decisions from the
//!   learned values without the training work. `reuse` minus `reuse_frozen`
//!   is the reuse agents' training cost per access; times 1M accesses/s it is
//!   the share of one core training takes at that rate (issue 4: at most 5 %).
//!
//! Workload: `workload::zipf` over 100,000 objects, 2^20 requests, seed 42;
//! fast tier of 5,000 objects (5 % of the objects). Each policy first replays the
//! whole trace once untimed (full tier, trained agents), then each iteration
//! is one access to the next request, wrapping around the trace. Criterion's
//! median is the median over samples of the mean time per access, not the p50 of
//! single accesses.
//!
//! Criterion's figure is a mean over many accesses. The target is the
//! p50 of one decision, so after each policy's criterion run the bench also times
//! `PER_ACCESS` single accesses one by one (continuing around the trace), subtracts
//! the median cost of an empty timed region, and prints the per-access p50 and p99,
//! of all accesses and of the misses alone. The misses are the accesses that
//! decide a placement (and usually a demotion). Where the hit ratio is near
//! one half (Zipf 0.8 here), the p50 of all accesses sits on the boundary
//! between hits and misses and swings with it; the misses' p50 does not.
//!
//! Run: `cargo bench -p engram-benches --bench policy_decide`.

use std::hint::black_box;
use std::time::Instant;

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use engram_policy::cache::{Ensemble, Reuse, ReuseConfig};
use engram_policy::{ObjectId, Policy, PolicyKind, Request, workload};

const OBJECTS: usize = 100_000;
const REQUESTS: usize = 1 << 20;
const CAPACITY: usize = OBJECTS / 20;
const SEED: u64 = 42;
const ALPHAS: [f64; 2] = [0.99, 0.8];
/// Seed of the learned agents' sampling (any fixed value: deterministic runs).
const AGENT_SEED: u64 = 7;
/// Single accesses timed one by one for the per-access percentiles.
const PER_ACCESS: usize = 200_000;

/// Median nanoseconds of an empty timed region (what `Instant` itself costs).
fn timer_overhead() -> f64 {
    let mut v: Vec<u64> = (0..20_000)
        .map(|_| {
            let t = Instant::now();
            black_box(());
            t.elapsed().as_nanos() as u64
        })
        .collect();
    v.sort_unstable();
    v[v.len() / 2] as f64
}

/// Time `PER_ACCESS` single calls of `step(i)` (which returns whether the
/// access was a hit) and print the p50 and p99 of all of them and of the
/// misses alone (the accesses that take a placement decision), after
/// subtracting the timer's own median cost.
fn per_access(id: &str, overhead: f64, mut step: impl FnMut(usize) -> bool) {
    let mut all: Vec<u64> = Vec::with_capacity(PER_ACCESS);
    let mut misses: Vec<u64> = Vec::with_capacity(PER_ACCESS);
    for i in 0..PER_ACCESS {
        let t = Instant::now();
        let hit = step(i);
        let d = t.elapsed().as_nanos() as u64;
        all.push(d);
        if !hit {
            misses.push(d);
        }
    }
    let at = |v: &mut Vec<u64>, q: f64| {
        v.sort_unstable();
        (v[((v.len() as f64 * q) as usize).min(v.len() - 1)] as f64 - overhead).max(0.0)
    };
    let share = misses.len() as f64 / PER_ACCESS as f64;
    let miss_part = if misses.is_empty() {
        "no misses".to_string()
    } else {
        format!(
            "misses ({:.1} %): p50 {:.0} ns, p99 {:.0} ns",
            share * 100.0,
            at(&mut misses, 0.5),
            at(&mut misses, 0.99)
        )
    };
    println!(
        "{id}: per access over {PER_ACCESS} accesses: p50 {:.0} ns, p99 {:.0} ns; {miss_part} (timer overhead {overhead:.0} ns subtracted)",
        at(&mut all, 0.5),
        at(&mut all, 0.99),
    );
}

/// Replay `trace` once through `p`, untimed: a full tier and trained agents.
fn warmed<P: Policy + ?Sized>(p: &mut P, trace: &[Request]) {
    let mut evicted = Vec::new();
    for req in trace {
        p.access(req, &mut evicted);
        evicted.clear();
    }
}

/// The frozen variants: each agent warmed over `trace`, then with training off.
fn frozen(trace: &[Request]) -> Vec<(&'static str, Box<dyn Policy>)> {
    let mut reuse = Reuse::with_config(CAPACITY, AGENT_SEED, ReuseConfig::default());
    warmed(&mut reuse, trace);
    reuse.set_training(false);
    let mut learned = Ensemble::new(CAPACITY, AGENT_SEED);
    warmed(&mut learned, trace);
    learned.set_training(false);
    vec![
        ("reuse_frozen", Box::new(reuse)),
        ("learned_frozen", Box::new(learned)),
    ]
}

fn policies() -> Vec<(&'static str, Box<dyn Policy>)> {
    let build = |k: PolicyKind| k.build(CAPACITY).expect("policy");
    vec![
        ("lru", build(PolicyKind::Lru)),
        ("arc", build(PolicyKind::Arc)),
        ("s3fifo", build(PolicyKind::S3Fifo)),
        ("sieve", build(PolicyKind::Sieve)),
        ("learned", build(PolicyKind::Learned)),
        ("reuse", build(PolicyKind::Reuse)),
        (
            "reuse_migration",
            Box::new(Reuse::with_config(
                CAPACITY,
                AGENT_SEED,
                ReuseConfig {
                    admission: false,
                    ..ReuseConfig::default()
                },
            )),
        ),
    ]
}

/// Criterion's mean per access, then the per-access p50 / p99, continuing
/// around `trace` from its start.
fn time_access(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    param: &str,
    policy: &mut dyn Policy,
    trace: &[Request],
    overhead: f64,
) {
    let mut evicted: Vec<ObjectId> = Vec::with_capacity(64);
    let mut next = 0usize;
    g.bench_function(BenchmarkId::new(name, param), |b| {
        b.iter(|| {
            let out = policy.access(black_box(&trace[next]), &mut evicted);
            evicted.clear();
            next = (next + 1) % REQUESTS;
            out
        })
    });
    per_access(&format!("access/{name}/{param}"), overhead, |_| {
        let out = policy.access(black_box(&trace[next]), &mut evicted);
        evicted.clear();
        next = (next + 1) % REQUESTS;
        out.hit
    });
    policy.check_invariants();
}

fn bench_access(c: &mut Criterion) {
    let mut g = c.benchmark_group("access");
    g.throughput(Throughput::Elements(1));
    let overhead = timer_overhead();
    for alpha in ALPHAS {
        let trace: Vec<Request> = workload::zipf(OBJECTS, alpha, REQUESTS, SEED);
        let param = format!("zipf{alpha}");
        for (name, mut policy) in policies() {
            warmed(policy.as_mut(), &trace);
            time_access(&mut g, name, &param, policy.as_mut(), &trace, overhead);
        }
        for (name, mut policy) in frozen(&trace) {
            time_access(&mut g, name, &param, policy.as_mut(), &trace, overhead);
        }
    }
    g.finish();
}

criterion_group!(benches, bench_access);
criterion_main!(benches);
