//! The trace simulator: replay requests through a [`Policy`] and price each
//! one with the [`CostModel`].
//!
//! Per request ([`CostModel::miss`]): a hit costs a fast-tier access; a read
//! miss costs a backing-tier read, plus a fast-tier write when the policy
//! admits the object (the promotion, counted in `bytes_migrated`); a write
//! miss costs the fast-tier write when admitted (write-allocate) and the
//! backing-tier write when not. Deletes call
//! [`Policy::remove`] and are not lookups. Writes make the resident copy
//! dirty (write-back caching): evicting a dirty object writes it back to the
//! backing tier, counted as `writebacks` / `bytes_written_back` and priced in
//! `writeback_ns`, off the request path. The result carries hit ratio
//! per tier, mean and p99 latency, and a time series (hit ratio and mean
//! latency per window) for plots. Wall-clock timing (decisions/s) is left to
//! the caller, so the core stays deterministic.

use crate::cache::{Policy, PolicyKind};
use crate::error::{Error, Result};
use crate::tier::CostModel;
use crate::types::{IdMap, ObjectId, Op, Request};

/// A cache size: a count, a byte budget, or a fraction of the trace's
/// unique objects or bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CacheSize {
    /// This many objects.
    Objects(usize),
    /// This fraction of the unique objects (`5%`, `0.05`).
    FractionObjects(f64),
    /// This many bytes.
    Bytes(u64),
    /// This fraction of the unique bytes (`5%B`).
    FractionBytes(f64),
}

/// `floor(total * f)`, where `f` came from a decimal percentage: 29 % of 100
/// is 29, though `100.0 * 0.29` is 28.999999999999996 in binary (review
/// finding: `--size 29%` of 100 objects gave 28).
fn share(total: f64, f: f64) -> f64 {
    (total * f * (1.0 + 1e-12)).floor()
}

impl CacheSize {
    /// Parse `5%`, `0.05` (fractions of unique objects), `5%B` (of unique
    /// bytes), `1000` (objects), `64MiB` / `4096B` (bytes).
    pub fn parse(s: &str) -> Result<CacheSize> {
        let t = s.trim();
        let bad = || {
            Error::Config(format!(
                "bad cache size {s:?}: want 5%, 0.05, 5%B, 1000 or 64MiB"
            ))
        };
        let frac = |v: &str, scale: f64| -> Result<f64> {
            let f: f64 = v.trim().parse().map_err(|_| bad())?;
            let f = f / scale;
            if f > 0.0 && f <= 1.0 {
                Ok(f)
            } else {
                Err(bad())
            }
        };
        if let Some(v) = t.strip_suffix("%B").or_else(|| t.strip_suffix("%b")) {
            return Ok(CacheSize::FractionBytes(frac(v, 100.0)?));
        }
        if let Some(v) = t.strip_suffix('%') {
            return Ok(CacheSize::FractionObjects(frac(v, 100.0)?));
        }
        for (suffix, mul) in [
            ("GiB", 1u64 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
            ("B", 1),
        ] {
            if let Some(v) = t.strip_suffix(suffix) {
                let n: u64 = v.trim().parse().map_err(|_| bad())?;
                return n
                    .checked_mul(mul)
                    .filter(|&b| b > 0)
                    .map(CacheSize::Bytes)
                    .ok_or_else(bad);
            }
        }
        if t.contains('.') {
            return Ok(CacheSize::FractionObjects(frac(t, 1.0)?));
        }
        let n: usize = t.parse().map_err(|_| bad())?;
        if n == 0 {
            Err(bad())
        } else {
            Ok(CacheSize::Objects(n))
        }
    }

    /// Whether this is a byte budget (`64MiB`, `5%B`).
    pub fn in_bytes(self) -> bool {
        self.bytes(0).is_some()
    }

    /// Object capacity for a trace with `unique` objects. Fractions round
    /// down (as BASELINES.md). The result is capped at `unique`: a bigger tier
    /// holds the same objects, and the policies size their queues and windows
    /// from it (an `--size` of 2^61 objects overflowed them). A byte budget
    /// gives `budget / mean object size` here, an estimate only: [`build`]
    /// runs byte budgets in bytes.
    ///
    /// [`build`]: CacheSize::build
    pub fn objects(self, unique: usize, unique_bytes: u64) -> usize {
        let mean = unique_bytes as f64 / unique.max(1) as f64;
        let n = match self {
            CacheSize::Objects(n) => n,
            CacheSize::FractionObjects(f) => share(unique as f64, f) as usize,
            CacheSize::Bytes(_) | CacheSize::FractionBytes(_) => {
                let b = self.bytes(unique_bytes).unwrap_or(0);
                (b as f64 / mean.max(1.0)).floor() as usize
            }
        };
        n.clamp(1, unique.max(1))
    }

    /// Byte budget for a trace of `unique_bytes` unique bytes, capped there (a
    /// bigger tier holds the same objects); at least 1. None for an object
    /// size.
    pub fn bytes(self, unique_bytes: u64) -> Option<u64> {
        let b = match self {
            CacheSize::Bytes(b) => b,
            CacheSize::FractionBytes(f) => share(unique_bytes as f64, f) as u64,
            CacheSize::Objects(_) | CacheSize::FractionObjects(_) => return None,
        };
        Some(b.clamp(1, unique_bytes.max(1)))
    }

    /// `kind` sized for a trace of `unique` objects and `unique_bytes` bytes:
    /// an object capacity, or a [`ByteBudget`](crate::cache::ByteBudget)
    /// for a byte size.
    pub fn build(
        self,
        kind: PolicyKind,
        unique: usize,
        unique_bytes: u64,
    ) -> Result<Box<dyn Policy>> {
        match self.bytes(unique_bytes) {
            Some(b) => kind.build_bytes(b, unique),
            None => kind.build(self.objects(unique, unique_bytes)),
        }
    }
}

/// One window of the time series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Lookups replayed up to the end of this window.
    pub requests: u64,
    /// Fast-tier hit ratio within the window.
    pub hit_ratio: f64,
    /// Mean latency within the window, ns.
    pub mean_latency_ns: f64,
}

/// What one replay measured.
#[derive(Debug, Clone, PartialEq)]
pub struct SimResult {
    /// Policy name.
    pub policy: String,
    /// Fast-tier capacity: objects, or bytes under a byte budget.
    pub capacity: usize,
    /// Lookups (reads and writes; deletes excluded).
    pub requests: u64,
    /// Lookups served by the fast tier.
    pub hits: u64,
    /// Lookups served by the backing tier (= misses).
    pub backing_hits: u64,
    /// Misses the policy placed in the fast tier.
    pub admitted: u64,
    /// Objects evicted (demoted) from the fast tier.
    pub evictions: u64,
    /// Deletes replayed.
    pub deletes: u64,
    /// Deletes that found their object resident in the fast tier (it left
    /// without an eviction): `admitted - evictions - removed` is resident.
    pub removed: u64,
    /// Bytes requested.
    pub bytes_requested: u64,
    /// Bytes served by the fast tier.
    pub bytes_hit: u64,
    /// Bytes copied backing -> fast (promotions).
    pub bytes_migrated: u64,
    /// Evicted objects that were written while resident (dirty), so their
    /// backing copy had to be brought up to date: write-backs.
    pub writebacks: u64,
    /// Bytes of the write-backs.
    pub bytes_written_back: u64,
    /// Time of the write-backs (backing-tier writes), ns. Off the request path
    /// (a flusher's work), so not in the latencies.
    pub writeback_ns: f64,
    /// Mean access latency, ns.
    pub mean_latency_ns: f64,
    /// 99th percentile access latency, ns (nearest rank).
    pub p99_latency_ns: f64,
    /// Most objects ever resident at once.
    pub max_resident: usize,
    /// Time series, `windows` points (one per lookup when there are fewer
    /// lookups).
    pub series: Vec<Point>,
}

impl SimResult {
    /// Fast-tier request hit ratio in `[0, 1]`.
    pub fn hit_ratio(&self) -> f64 {
        self.hits as f64 / self.requests.max(1) as f64
    }
    /// Fast-tier byte hit ratio.
    pub fn byte_hit_ratio(&self) -> f64 {
        self.bytes_hit as f64 / self.bytes_requested.max(1) as f64
    }
}

/// Replay `reqs` through `policy`. `windows` is the number of time-series
/// points (0 = none). `check` runs `policy.check_invariants()` and the
/// capacity check after every request (tests; slow).
pub fn simulate(
    policy: &mut dyn Policy,
    reqs: &[Request],
    cost: &CostModel,
    windows: usize,
    check: bool,
) -> SimResult {
    policy.set_costs(cost);
    let lookups = reqs.iter().filter(|r| r.op != Op::Delete).count() as u64;
    // Window k (1-based) closes after lookup `k * lookups / windows`: exactly
    // `windows` windows, their lengths differing by at most one (fewer, none
    // empty, when there are fewer lookups than windows).
    let bound = |k: u64| -> u64 {
        if windows == 0 {
            u64::MAX
        } else {
            (u128::from(k) * u128::from(lookups) / windows as u128) as u64
        }
    };
    let mut window = 1u64;
    let mut r = SimResult {
        policy: policy.name().to_owned(),
        capacity: policy.capacity(),
        requests: 0,
        hits: 0,
        backing_hits: 0,
        admitted: 0,
        evictions: 0,
        deletes: 0,
        removed: 0,
        bytes_requested: 0,
        bytes_hit: 0,
        bytes_migrated: 0,
        writebacks: 0,
        bytes_written_back: 0,
        writeback_ns: 0.0,
        mean_latency_ns: 0.0,
        p99_latency_ns: 0.0,
        max_resident: 0,
        series: Vec::with_capacity(windows.min(lookups as usize)),
    };
    let mut lat: Vec<f32> = Vec::with_capacity(lookups as usize);
    let mut evicted: Vec<ObjectId> = Vec::new();
    // Resident objects written since they were placed, with their size: an
    // eviction of one of them is a write-back.
    let mut dirty: IdMap<u32> = IdMap::default();
    let (mut total_ns, mut w_hits, mut w_n, mut w_ns) = (0.0f64, 0u64, 0u64, 0.0f64);
    for req in reqs {
        if req.op == Op::Delete {
            if policy.remove(req.id) {
                r.removed += 1;
            }
            // A deleted object needs no write-back.
            dirty.remove(&req.id);
            r.deletes += 1;
            continue;
        }
        evicted.clear();
        let out = policy.access(req, &mut evicted);
        let bytes = u64::from(req.size);
        let write = req.op == Op::Write;
        for id in &evicted {
            if let Some(size) = dirty.remove(id) {
                r.writebacks += 1;
                r.bytes_written_back += u64::from(size);
                r.writeback_ns += cost.backing.write(u64::from(size));
            }
        }
        if write && (out.hit || out.admitted) {
            dirty.insert(req.id, req.size);
        } else if out.hit
            && let Some(size) = dirty.get_mut(&req.id)
        {
            // A read that changed the object's size: the write-back writes
            // what is resident now.
            *size = req.size;
        }
        let ns = if out.hit {
            r.hits += 1;
            r.bytes_hit += bytes;
            w_hits += 1;
            cost.hit(bytes, write)
        } else {
            r.backing_hits += 1;
            if out.admitted {
                r.admitted += 1;
                r.bytes_migrated += bytes;
            }
            cost.miss(bytes, write, out.admitted)
        };
        r.evictions += evicted.len() as u64;
        r.requests += 1;
        r.bytes_requested += bytes;
        r.max_resident = r.max_resident.max(policy.len());
        total_ns += ns;
        lat.push(ns as f32);
        w_n += 1;
        w_ns += ns;
        if r.requests >= bound(window) {
            r.series.push(Point {
                requests: r.requests,
                hit_ratio: w_hits as f64 / w_n as f64,
                mean_latency_ns: w_ns / w_n as f64,
            });
            (w_hits, w_n, w_ns) = (0, 0, 0.0);
            // The next window that ends after this lookup: the least k with
            // k * lookups / windows > requests (windows longer than one lookup
            // never end on the same one; with more windows than lookups, skip
            // the empty ones at once, not one by one).
            let next = (u128::from(r.requests) + 1) * windows as u128;
            window = next
                .div_ceil(u128::from(lookups.max(1)))
                .min(windows as u128) as u64;
        }
        if check {
            assert!(
                policy.used() <= policy.capacity() && policy.len() <= policy.used(),
                "{} over capacity",
                policy.name()
            );
            assert_eq!(
                out.hit,
                policy.contains(req.id) && out.hit,
                "hit implies resident"
            );
            if out.admitted {
                assert!(
                    policy.contains(req.id),
                    "{}: admitted object not resident",
                    policy.name()
                );
            }
            for id in &evicted {
                assert!(
                    !policy.contains(*id) || *id == req.id,
                    "{}: evicted {id} still resident",
                    policy.name()
                );
            }
            policy.check_invariants();
            assert!(
                dirty.keys().all(|id| policy.contains(*id)),
                "{}: a dirty object is not resident",
                policy.name()
            );
        }
    }
    if w_n > 0 && windows > 0 {
        r.series.push(Point {
            requests: r.requests,
            hit_ratio: w_hits as f64 / w_n as f64,
            mean_latency_ns: w_ns / w_n as f64,
        });
    }
    r.mean_latency_ns = total_ns / r.requests.max(1) as f64;
    if !lat.is_empty() {
        let k = ((lat.len() as f64 * 0.99).ceil() as usize).clamp(1, lat.len()) - 1;
        let (_, p, _) = lat.select_nth_unstable_by(k, f32::total_cmp);
        r.p99_latency_ns = f64::from(*p);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Lru, PolicyKind};
    use crate::workload;

    #[test]
    fn sizes_parse() {
        assert_eq!(
            CacheSize::parse("5%").unwrap(),
            CacheSize::FractionObjects(0.05)
        );
        assert_eq!(
            CacheSize::parse("0.1").unwrap(),
            CacheSize::FractionObjects(0.1)
        );
        assert_eq!(
            CacheSize::parse("5%B").unwrap(),
            CacheSize::FractionBytes(0.05)
        );
        assert_eq!(
            CacheSize::parse("64MiB").unwrap(),
            CacheSize::Bytes(64 << 20)
        );
        assert_eq!(CacheSize::parse("1000").unwrap(), CacheSize::Objects(1000));
        for bad in ["0%", "150%", "x", "", "0", "-3", "1.5"] {
            assert!(CacheSize::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(CacheSize::FractionObjects(0.01).objects(48_974, 0), 489);
        for (pct, want) in [("29%", 29), ("57%", 57), ("58%", 58), ("5%", 5)] {
            let size = CacheSize::parse(pct).unwrap();
            assert_eq!(size.objects(100, 100), want, "{pct} of 100 objects");
        }
        assert_eq!(
            CacheSize::parse("29%B").unwrap().bytes(51_200),
            Some(14_848)
        );
        assert_eq!(CacheSize::Bytes(8192).objects(10, 40_960), 2);
        assert_eq!(CacheSize::Bytes(8192).bytes(40_960), Some(8192));
        assert_eq!(CacheSize::FractionBytes(0.05).bytes(40_960), Some(2048));
        assert_eq!(CacheSize::Bytes(1 << 40).bytes(40_960), Some(40_960));
        assert_eq!(CacheSize::FractionObjects(0.05).bytes(40_960), None);
        // Capped at the unique objects: no policy sees a capacity it cannot hold.
        assert_eq!(CacheSize::Objects(usize::MAX).objects(10, 40_960), 10);
        assert_eq!(CacheSize::Bytes(u64::MAX).objects(10, 40_960), 10);
        assert_eq!(
            CacheSize::parse("2305843009213693952")
                .unwrap()
                .objects(7, 7),
            7
        );
    }

    #[test]
    fn counters_and_latency_of_a_tiny_replay() {
        // a b a c a with 2 slots under LRU: hits at 3 and 5.
        let reqs: Vec<Request> = [1, 2, 1, 3, 1]
            .iter()
            .map(|&id| Request::read(0, id, 100))
            .collect();
        let cost = CostModel::default();
        let r = simulate(&mut Lru::new(2), &reqs, &cost, 5, true);
        assert_eq!(
            (r.requests, r.hits, r.backing_hits, r.admitted, r.evictions),
            (5, 2, 3, 3, 1)
        );
        let want = (2.0 * cost.hit(100, false) + 3.0 * cost.miss(100, false, true)) / 5.0;
        assert!((r.mean_latency_ns - want).abs() < 1e-6);
        assert!((r.p99_latency_ns - cost.miss(100, false, true)).abs() < 1.0);
        assert_eq!(r.series.len(), 5);
        assert_eq!(r.bytes_migrated, 300);
    }

    /// A write miss the tier admits costs a DRAM write only, and one SSD
    /// write when it is evicted dirty (review finding, 2026-11-25: it paid
    /// the SSD write on the request path as well, two for one write).
    #[test]
    fn a_write_miss_reaches_the_backing_tier_once() {
        let w = Request {
            op: Op::Write,
            ..Request::read(0, 1, 4096)
        };
        let reqs = [w, Request::read(1, 2, 4096)];
        let cost = CostModel::default();
        let r = simulate(&mut Lru::new(1), &reqs, &cost, 0, true);
        let want = (cost.fast.write(4096) + cost.backing.read(4096) + cost.fast.write(4096)) / 2.0;
        assert!(
            (r.mean_latency_ns - want).abs() < 1e-6,
            "{}",
            r.mean_latency_ns
        );
        assert_eq!((r.writebacks, r.bytes_written_back), (1, 4096));
        assert!((r.writeback_ns - cost.backing.write(4096)).abs() < 1e-6);
    }

    /// Review findings: the series has exactly `windows` points (it had 5 of
    /// 6 over 10 lookups), one per lookup when there are fewer lookups.
    #[test]
    fn the_series_has_the_points_asked_for() {
        for (n, windows, want) in [
            (10, 6, 6),
            (10, 5, 5),
            (10, 1, 1),
            (3, 6, 3),
            (7, 7, 7),
            (10, 3, 3),
            // Far more windows than lookups: one point per lookup, at once
            // (review finding: the windows were stepped through one by one).
            (5, usize::MAX, 5),
        ] {
            let reqs: Vec<Request> = (0..n).map(|id| Request::read(0, id, 10)).collect();
            let r = simulate(
                &mut Lru::new(2),
                &reqs,
                &CostModel::default(),
                windows,
                true,
            );
            assert_eq!(r.series.len(), want, "{n} lookups, {windows} windows");
            assert_eq!(r.series.last().unwrap().requests, n);
            let mut last = 0;
            for p in &r.series {
                assert!(p.requests > last, "{:?}", r.series);
                last = p.requests;
            }
        }
    }

    /// A read that changes a dirty object's size: its write-back writes the
    /// resident size, as `simulate_tiers` counts it (it wrote the old one).
    #[test]
    fn a_write_back_writes_the_current_size() {
        use crate::cache::ByteBudget;
        let reqs = [
            Request {
                op: Op::Write,
                ..Request::read(0, 1, 100)
            },
            Request::read(1, 1, 500),
            Request::read(2, 2, 100),
        ];
        let cost = CostModel::default();
        let mut p = ByteBudget::new(Box::new(Lru::new(1)), 600, 1);
        let r = simulate(&mut p, &reqs, &cost, 0, true);
        assert_eq!((r.writebacks, r.bytes_written_back), (1, 500));
    }

    #[test]
    fn evicting_a_written_object_writes_it_back() {
        // LRU of 2. W1 R2 R3 (evicts dirty 1: write-back) W3 (hit, dirty)
        // R4 (evicts clean 2) R5 (evicts dirty 3: write-back) W4 (hit, dirty)
        // D4 (deleted: no write-back) R6 (takes the room D4 left).
        let w = |id| Request {
            op: Op::Write,
            ..Request::read(0, id, 100 * id as u32)
        };
        let r = |id| Request::read(0, id, 100 * id as u32);
        let d = |id| Request {
            op: Op::Delete,
            ..Request::read(0, id, 0)
        };
        let reqs = [w(1), r(2), r(3), w(3), r(4), r(5), w(4), d(4), r(6)];
        let cost = CostModel::default();
        let res = simulate(&mut Lru::new(2), &reqs, &cost, 0, true);
        assert_eq!((res.evictions, res.writebacks), (3, 2));
        assert_eq!(res.bytes_written_back, 100 + 300);
        let want = cost.backing.write(100) + cost.backing.write(300);
        assert!((res.writeback_ns - want).abs() < 1e-6);
    }

    #[test]
    fn bigger_cache_never_hurts_lru_on_zipf() {
        let t = workload::zipf(5000, 0.9, 50_000, 11);
        let cost = CostModel::default();
        let mut last = 0.0;
        for cap in [50, 200, 800, 3200] {
            let mut p = PolicyKind::Lru.build(cap).unwrap();
            let h = simulate(p.as_mut(), &t, &cost, 0, false).hit_ratio();
            assert!(h >= last, "LRU is a stack algorithm");
            last = h;
        }
    }
}
