//! The learned agents: a placement (admission) agent and a migration
//! (demotion) agent that share one online reuse model.
//!
//! # State
//! For an object at the moment a decision looks at it:
//! - `count`: accesses seen in the history window, bucketed 1, 2, 3-4,
//!   5-8, 9+ (frequency, as Sibyl's access count);
//! - `age`: requests since its last access, relative to the capacity `c`,
//!   log2-bucketed (`age * 8 / c` -> 0, 1, 2-3, ..., 10 buckets; recency);
//! - `gap`: the previous inter-access gap on the same scale, or "none"
//!   (11 buckets; the object's own reuse rhythm);
//! - `kind`: the last access's size bucket (under 2 KiB, 2-8 KiB, 8-32 KiB,
//!   32 KiB and over) and whether it was a write (8 kinds; Sibyl's state has
//!   both, size and R/W). On a block trace they tell large sequential
//!   transfers (rarely reused within a horizon) from small writes (often
//!   rewritten or read back soon); on a trace of one size and one
//!   operation every object has the same kind, and the model is the one
//!   without it.
//!
//! 8 x 5 x 10 x 11 = 4,400 states. Why these buckets (2026-11-25, mean
//! hit ratio of the selection agent over the reuse expert's seeds 1-5,
//! cloudphysics 5 % / 10 %, the one target trace with sizes and writes):
//! no kind 19.96 / 24.10; R/W alone 19.77 / 24.33; 4 size buckets alone
//! 20.24 / 25.23; both, 4 buckets 20.57 / 24.71; both, 8 buckets (factors
//! of 2) 19.74 / 24.75. Mooncake synthetic moved by at most 0.03 points;
//! OLTP and conversation, of one size, not at all. The value stays a
//! probability per object, not per byte; given costs, the agents weigh it
//! by what a hit saves for the object's size bucket (Actions, below), a
//! latency weight, not a value per byte (policy/README.md, "Not done").
//!
//! # Actions
//! - migration agent: on a miss with a full tier, sample `K = 8` resident
//!   objects (seeded SplitMix64) and demote the one with the lowest
//!   estimated value, the oldest on ties (so an untrained model is sampled
//!   LRU);
//! - placement agent: admit the missed object, or leave it in the backing
//!   tier when its estimated value is below the chosen victim's (only once
//!   both states have `min_obs` = 32 observations, so early noise does not
//!   shut the door on everything). Once the tier's costs are known
//!   (`Policy::set_costs`) both agents weigh a value by what a hit saves for
//!   an object of that size bucket (a representative 1, 4, 16 or 64 KiB:
//!   27.8 to 91 us on the default DRAM/SSD costs), so they keep the objects
//!   whose misses cost most (cloudphysics, 2026-11-25: mean latency 26.6 ->
//!   26.4 us at 5 %, 26.0 -> 25.0 us at 10 %, hit ratio up 0.3 / 0.9 points;
//!   objects of one size bucket compare unweighted, so a trace of one size
//!   decides as without costs).
//!   A write miss is never left out once the
//!   tier's costs are known (`Policy::set_costs`) and admitting it is the
//!   cheaper way to serve it (a write-back tier: a DRAM write instead of an
//!   SSD write, `CostModel::miss`).
//!
//! Why sampling: exact "lowest value" would need a priority queue re-keyed
//! as every object ages; K random residents give a near-minimum at K
//! lookups (the idea of sampled eviction in Redis and LRB).
//!
//! # Reward and algorithm
//! The value of a state is the probability that the object is requested
//! again within `H = c` requests: a hit within the horizon is the access
//! latency a fast-tier copy saves (miss minus hit cost), a miss beyond it
//! is the promotion cost wasted. One in `label_every` = 8 of the states the
//! agents look at (sampled candidates, newcomers) is recorded with its time;
//! the reward is observed online: 1 when the id is requested again before the
//! horizon ends, 0 when the horizon passes first. Why one in 8: the label
//! bookkeeping (a queue entry and a history update per label) was most of the
//! training cost, 10-13 % of a core at 1M accesses/s when every state was
//! recorded; one in 8 brings it to 2-4 % while the 4,400-state table still gets
//! thousands of labels a second (policy/README.md has the sweep). An id's open
//! label lives in its history entry, so resolving it costs no extra lookup. The table is updated by a
//! running mean that turns into a constant step,
//! `v += (r - v) * max(1/n, alpha)` with alpha = 0.001 (a one-step,
//! gamma = 0 tabular learner, i.e. a contextual bandit). Why gamma = 0: the
//! reward of keeping an object is already measured over a horizon, and an
//! object's next state hardly depends on the decision, so bootstrapping
//! adds variance for little gain; the constant floor keeps the table
//! tracking phase changes. Why H = c: an object reused within `c` requests
//! is one an LRU of the same size could have hit; H = 2c and H = c were
//! compared (policy/README.md) and c won on every trace tried. No future
//! knowledge is used: labels arrive only when the trace reaches them. The
//! configuration (K, H/c, alpha, buckets) is the same for every trace,
//! expressed relative to the capacity.
//!
//! # Cost
//! State: 4,400 x (f32 + u32) = 34.4 KiB of model, plus the history (one 32-byte
//! entry per id seen in the last `8c` to `16c` requests: entries older than
//! `8c` are pruned every `8c` requests; or with an open label; inline
//! in an open-addressing id table at most half full: one probe run per
//! lookup) and at most `PENDING_CAP` pending labels (24 bytes each: 1.5 MiB
//! when full). Each decision is K value lookups.

use std::collections::VecDeque;

use super::idtable::{IdTable, Vacancy};
use super::{Outcome, Policy};
use crate::tier::CostModel;
use crate::types::{ObjectId, Op, Request};
use crate::workload::Rng;

const COUNT_B: usize = 5;
const AGE_B: usize = 10;
const GAP_B: usize = 11;
/// Size buckets of the access kind: under 2 KiB, 2-8 KiB, 8-32 KiB, 32 KiB and over.
const SIZE_B: usize = 4;
/// Access kinds: size bucket x read/write.
const KIND_B: usize = 2 * SIZE_B;
const STATES: usize = KIND_B * COUNT_B * AGE_B * GAP_B;

/// The size bucket of the access kind in `state` (the kind is its leading
/// component, see `Reuse::state`).
fn size_bucket(state: u16) -> usize {
    (usize::from(state) / (COUNT_B * AGE_B * GAP_B)) % SIZE_B
}

/// The access kind (module docs) of `size` bytes: `size bucket + SIZE_B` for a
/// write.
fn kind(size: u32, write: bool) -> u8 {
    // Bit length of the size less 10: 0 up to 1 KiB, 1 up to 2 KiB, ...; two
    // of those per bucket.
    let l = (32 - size.max(1).leading_zeros()).saturating_sub(10) as usize;
    let b = (l / 2).min(SIZE_B - 1);
    (usize::from(write) * SIZE_B + b) as u8
}
const PENDING_CAP: usize = 1 << 16;
/// Most candidates one demotion samples (`ReuseConfig::samples` is capped here).
const MAX_SAMPLES: usize = 64;
/// Longest reward horizon, in requests. An open label remembers the low 32
/// bits of its time; below 2^31 no two labels of one id pending at once can
/// share them.
const MAX_HORIZON: u64 = 1 << 31;
/// Mixed into the seed for the label-sampling stream.
const LABEL_STREAM: u64 = 0x6c61_6265_6c73;

/// The agents' hyper-parameters. [`ReuseConfig::default`] is the one
/// configuration used for every trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReuseConfig {
    /// Resident objects sampled per demotion (`K`).
    pub samples: usize,
    /// Reward horizon as a multiple of the capacity (`H / c`). The horizon is
    /// capped at 2^31 requests.
    pub horizon_factor: u64,
    /// Floor of the learning rate (`alpha`).
    pub alpha: f32,
    /// Observations a state needs before the placement agent trusts it.
    pub min_obs: u32,
    /// Whether the placement agent may leave a missed object in the
    /// backing tier (false = always admit, migration agent only).
    pub admission: bool,
    /// Keep one in this many observations as a training label (1: all). The
    /// labels' bookkeeping is most of the training cost.
    pub label_every: u32,
}

impl Default for ReuseConfig {
    fn default() -> Self {
        ReuseConfig {
            samples: 8,
            horizon_factor: 1,
            alpha: 0.001,
            min_obs: 32,
            admission: true,
            label_every: 8,
        }
    }
}

/// The history a decision computes a state from.
#[derive(Debug, Clone, Copy)]
struct Hist {
    last: u64,
    /// Saturated at `u32::MAX` requests, as stored in [`Entry`].
    gap: u64,
    /// Saturated at `u8::MAX`, as stored.
    count: u32,
    /// [`kind`] of the last access.
    kind: u8,
}

impl Hist {
    /// The history assumed for an id that has none (a resident seen long ago;
    /// [`Entry::hist`] keeps the kind of its last access).
    const UNSEEN: Hist = Hist {
        last: 0,
        gap: 0,
        count: 1,
        kind: 0,
    };
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    /// The labelled id (its entry stays in the table while its label is open).
    id: ObjectId,
    state: u16,
    time: u64,
}

/// `Entry::res` of an id that is not resident.
const NOT_RESIDENT: u32 = u32::MAX;
/// `Entry::lstate` bit: a training label is open.
const OPEN: u16 = 1 << 15;

/// One id the agents know, resident in the fast tier or seen in the history
/// window or both, stored inline in the id table (32 bytes with its id).
#[derive(Debug, Clone, Copy)]
struct Entry {
    last: u64,
    gap: u32,
    /// Low 32 bits of the time its open label was recorded (meaningful with
    /// [`OPEN`]): labels live for one horizon, far less than 2^32 requests.
    label: u32,
    /// Accesses in the window, saturated; 0: the window forgot this
    /// (resident) id and its state is computed from [`Hist::UNSEEN`].
    count: u8,
    /// [`kind`] of the last access.
    kind: u8,
    /// [`OPEN`] plus the state of the open label.
    lstate: u16,
    /// Index in `residents`, or [`NOT_RESIDENT`].
    res: u32,
}

impl Vacancy for Entry {
    /// Neither known nor resident: such an id is not kept.
    const VACANT: Entry = Entry {
        last: 0,
        gap: 0,
        label: 0,
        count: 0,
        kind: 0,
        lstate: 0,
        res: NOT_RESIDENT,
    };
    fn is_vacant(&self) -> bool {
        self.count == 0 && self.res == NOT_RESIDENT
    }
}

impl Entry {
    /// The history a decision sees for this id.
    fn hist(&self) -> Hist {
        if self.count == 0 {
            Hist {
                kind: self.kind,
                ..Hist::UNSEEN
            }
        } else {
            Hist {
                last: self.last,
                gap: u64::from(self.gap),
                count: u32::from(self.count),
                kind: self.kind,
            }
        }
    }
    /// The state of the open label, if one is open.
    fn open_label(&self) -> Option<u16> {
        (self.count > 0 && self.lstate & OPEN != 0).then_some(self.lstate & !OPEN)
    }
}

/// A resident id: its table position, and a copy of what a demotion reads of
/// its history. Sampling reads this dense array, 24 bytes per resident,
/// instead of the table, which spreads over every id seen in the window: on
/// Zipf 0.8 with 100k ids the table is megabytes and each sampled entry was a
/// cache miss.
#[derive(Debug, Clone, Copy)]
struct Res {
    slot: u32,
    count: u16,
    kind: u8,
    last: u64,
    gap: u64,
}

impl Res {
    fn new(slot: u32, h: &Hist) -> Res {
        Res {
            slot,
            count: h.count.min(u32::from(u16::MAX)) as u16,
            kind: h.kind,
            last: h.last,
            gap: h.gap,
        }
    }
    /// The history the state is computed from.
    fn hist(&self) -> Hist {
        Hist {
            last: self.last,
            gap: self.gap,
            count: u32::from(self.count),
            kind: self.kind,
        }
    }
}

/// Seed used by [`PolicyKind::Reuse`](super::PolicyKind::Reuse).
pub const DEFAULT_SEED: u64 = 0x656e_6772_616d;

/// The learned placement + migration agents (see module docs).
///
/// Every id the agents know has one entry in `table` (history and residency
/// inline, found in one probe run); `residents` lists the resident ids with
/// their table positions and a copy of their history, so sampling a victim
/// reads it by index with no lookup. Invariants (`check_invariants`):
/// `residents[table[p].res].slot == p` with the history a decision sees for
/// `p`, for every resident entry; an entry that is neither known nor resident
/// is not in the table; the table's own (`IdTable::check`).
#[derive(Debug)]
pub struct Reuse {
    cap: usize,
    cfg: ReuseConfig,
    now: u64,
    table: IdTable<Entry>,
    /// The resident ids, for O(1) random sampling.
    residents: Vec<Res>,
    value: Vec<f32>,
    obs: Vec<u32>,
    pending: VecDeque<Pending>,
    /// Draws the victim candidates.
    rng: Rng,
    /// Draws which observations become labels: a stream of its own, so the
    /// candidates can all be drawn before any of them is looked at.
    label_rng: Rng,
    /// Online training on (the default); see [`Reuse::set_training`].
    training: bool,
    /// Scratch for one demotion's candidates, kept between calls: a fresh
    /// `[_; MAX_SAMPLES]` array (3 KiB) zeroed on every miss was a third of a
    /// decision's time.
    cand: Vec<(usize, Hist)>,
    /// Costs of this tier and of the one below, once a simulator or a tier
    /// passed them (`Policy::set_costs`); until then the agents weigh hits
    /// only, as they do as a shadow expert of the selection agent (whose
    /// experts score hits; it prices the placement itself).
    cost: Option<CostModel>,
}

/// The bit length of `floor(8 x / cap)`, capped at `max - 1`: a log2 bucket of
/// `x` relative to the capacity. One 64-bit division; computing the same bucket
/// from bit lengths and a shift-compare measured no faster (171 ns against
/// about 160 ns per frozen decision, policy/README.md), and from nine
/// precomputed thresholds (`x >= ceil(2^(j-1) cap / 8)`, the same buckets)
/// slower (policy/README.md, 2026-11-25): a decision's time is its cache
/// misses, not these divisions.
fn log_bucket(x: u64, cap: u64, max: usize) -> usize {
    let scaled = x.saturating_mul(8) / cap.max(1);
    let b = (64 - scaled.leading_zeros()) as usize;
    b.min(max - 1)
}

/// Point each resident's position at its entry after `table` moved `v` to `to`.
fn relink(residents: &mut [Res], to: u32, v: &Entry) {
    if v.res != NOT_RESIDENT {
        residents[v.res as usize].slot = to;
    }
}

impl Reuse {
    /// Room for `cap` objects; `seed` fixes the sampling.
    pub fn new(cap: usize, seed: u64) -> Self {
        Self::with_config(cap, seed, ReuseConfig::default())
    }

    /// Room for `cap` objects with explicit hyper-parameters.
    pub fn with_config(cap: usize, seed: u64, cfg: ReuseConfig) -> Self {
        Reuse {
            cap: cap.max(1),
            cfg,
            now: 0,
            table: IdTable::new(),
            residents: Vec::new(),
            value: vec![0.5; STATES],
            obs: vec![0; STATES],
            pending: VecDeque::new(),
            rng: Rng::new(seed),
            label_rng: Rng::new(seed ^ LABEL_STREAM),
            training: true,
            cand: Vec::with_capacity(MAX_SAMPLES),
            cost: None,
        }
    }

    fn state(&self, h: &Hist) -> u16 {
        let c = match h.count {
            0 | 1 => 0,
            2 => 1,
            3..=4 => 2,
            5..=8 => 3,
            _ => 4,
        };
        let cap = self.cap as u64;
        let a = log_bucket(self.now - h.last, cap, AGE_B);
        let g = if h.gap == 0 {
            0
        } else {
            1 + log_bucket(h.gap, cap, GAP_B - 1)
        };
        (((usize::from(h.kind) * COUNT_B + c) * AGE_B + a) * GAP_B + g) as u16
    }

    fn learn(&mut self, state: u16, reward: f32) {
        let s = state as usize;
        self.obs[s] = self.obs[s].saturating_add(1);
        let step = (1.0 / self.obs[s] as f32).max(self.cfg.alpha);
        self.value[s] += (reward - self.value[s]) * step;
    }

    /// Turn online training (label bookkeeping and value updates) on or off; off,
    /// the agents decide with the values learned so far. For measuring what the
    /// training costs; the agents train by default.
    pub fn set_training(&mut self, on: bool) {
        self.training = on;
        if !on {
            self.pending.clear();
            for p in 0..self.table.capacity() as u32 {
                if !self.table.at(p).v.is_vacant() {
                    self.table.at_mut(p).lstate = 0;
                }
            }
        }
    }

    /// After the table grew: every resident's position again.
    fn relink_all(&mut self) {
        for p in 0..self.table.capacity() as u32 {
            let c = self.table.at(p);
            if !c.v.is_vacant() {
                relink(&mut self.residents, p, &c.v);
            }
        }
    }

    /// Remove the entry at `pos` (neither known nor resident any more).
    fn release(&mut self, pos: u32) {
        let residents = &mut self.residents;
        self.table.remove_at(pos, |to, v| relink(residents, to, v));
    }

    fn record(&mut self, pos: u32, state: u16) {
        if !self.training
            || (self.cfg.label_every > 1
                && self.label_rng.below(u64::from(self.cfg.label_every)) != 0)
            || self.pending.len() >= PENDING_CAP
        {
            return;
        }
        let now = self.now;
        let e = self.table.at_mut(pos);
        if e.count == 0 {
            // Known from now on, with the history assumed so far.
            e.count = 1;
            e.last = 0;
            e.gap = 0;
        }
        if e.lstate & OPEN != 0 {
            return;
        }
        e.label = now as u32;
        e.lstate = state | OPEN;
        let id = self.table.at(pos).id;
        self.pending.push_back(Pending {
            id,
            state,
            time: now,
        });
    }

    /// Resolve labels: horizons that ended are negatives.
    fn expire(&mut self) {
        let horizon = self
            .cfg
            .horizon_factor
            .saturating_mul(self.cap as u64)
            .min(MAX_HORIZON);
        while let Some(p) = self.pending.front().copied() {
            if p.time + horizon > self.now {
                break;
            }
            self.pending.pop_front();
            // An open label keeps its entry (prune and evict keep labelled
            // entries), so an entry whose open label still reads `p.time` is
            // this one.
            let Some(pos) = self.table.find(p.id) else {
                continue;
            };
            let e = self.table.at_mut(pos);
            if e.open_label().is_some() && e.label == p.time as u32 {
                e.lstate = 0;
                self.learn(p.state, 0.0);
            }
        }
    }

    fn prune_history(&mut self) {
        let window = (self.cap as u64).saturating_mul(8);
        if self.now % window != 0 {
            return;
        }
        let now = self.now;
        // Removing an entry moves later ones of its probe run back, possibly
        // into this position: look at it again. A record that wraps from the
        // table's start to its end is looked at twice, which is harmless
        // (forgetting is idempotent).
        let mut p = 0u32;
        while (p as usize) < self.table.capacity() {
            let e = self.table.at(p).v;
            if e.is_vacant() || (e.count > 0 && (now - e.last < window || e.open_label().is_some()))
            {
                p += 1;
                continue;
            }
            match e.res {
                NOT_RESIDENT => self.release(p),
                r => {
                    let m = self.table.at_mut(p);
                    m.count = 0;
                    m.lstate = 0;
                    let h = m.hist();
                    self.residents[r as usize] = Res::new(p, &h);
                    p += 1;
                }
            }
        }
        // After a capacity cut (or a phase with far fewer ids) the table
        // gives back what it no longer needs (review finding: it kept its
        // high-water size, and this scan its cost, for good).
        if self.table.shrink() {
            self.relink_all();
        }
    }

    fn sample_victim(&mut self) -> Option<(usize, u16)> {
        if self.residents.is_empty() {
            return None;
        }
        // Draw every candidate and load its history first: the loads are
        // independent, so their cache misses overlap instead of following one
        // another.
        let k = self
            .cfg
            .samples
            .clamp(1, MAX_SAMPLES)
            .min(self.residents.len());
        let mut cand = std::mem::take(&mut self.cand);
        cand.clear();
        for _ in 0..k {
            let i = self.rng.below(self.residents.len() as u64) as usize;
            cand.push((i, self.residents[i].hist()));
        }
        let mut best: Option<(f32, u64, usize, u16)> = None;
        for &(i, h) in &cand {
            let s = self.state(&h);
            self.record(self.residents[i].slot, s);
            let v = self.value[s as usize];
            if best.is_none_or(|(bv, bl, _, bs)| {
                let o = self.worth(v, s, bv, bs);
                o.is_lt() || (o.is_eq() && h.last < bl)
            }) {
                best = Some((v, h.last, i, s));
            }
        }
        self.cand = cand;
        best.map(|(_, _, i, s)| (i, s))
    }

    fn evict_at(&mut self, i: usize) -> ObjectId {
        let pos = self.residents.swap_remove(i).slot;
        if let Some(moved) = self.residents.get(i) {
            self.table.at_mut(moved.slot).res = i as u32;
        }
        let id = self.table.at(pos).id;
        if self.table.at(pos).v.count == 0 {
            self.release(pos);
        } else {
            self.table.at_mut(pos).res = NOT_RESIDENT;
        }
        id
    }

    /// The probability the model gives `id` of being requested again within
    /// the horizon, from the state its history is in now; None until that
    /// state has `min_obs` observations (the same trust rule as admission).
    pub fn reuse_probability(&self, id: ObjectId) -> Option<f32> {
        let p = self.table.find(id)?;
        self.trusted(self.state(&self.table.at(p).v.hist()))
    }

    /// What a hit saves over a miss for an object in `state`, from its size
    /// bucket (a representative size of each: 1, 4, 16, 64 KiB), once the
    /// costs are known; 1 before (every object alike).
    fn saving(&self, state: u16) -> f32 {
        const REP: [u64; SIZE_B] = [1 << 10, 4 << 10, 16 << 10, 64 << 10];
        let Some(c) = self.cost else { return 1.0 };
        c.hit_saving(REP[size_bucket(state)]) as f32
    }

    /// Value `a` of state `sa` against value `b` of state `sb`, each weighed
    /// by what a hit saves for its size bucket ([`saving`](Self::saving));
    /// within one bucket the values alone (no rounding of a common factor
    /// can then turn an order into a tie: a trace of one size decides as it
    /// does without costs).
    fn worth(&self, a: f32, sa: u16, b: f32, sb: u16) -> std::cmp::Ordering {
        let (a, b) = if self.cost.is_none() || size_bucket(sa) == size_bucket(sb) {
            (a, b)
        } else {
            (a * self.saving(sa), b * self.saving(sb))
        };
        // As `<` and `==` order them (values are never NaN).
        a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal)
    }

    /// The value of `state` once it has `min_obs` observations, else None.
    fn trusted(&self, state: u16) -> Option<f32> {
        let s = state as usize;
        (self.obs[s] >= self.cfg.min_obs).then(|| self.value[s])
    }

    /// One request, or (`demoted`) one object offered from the tier above.
    fn step(&mut self, req: &Request, demoted: bool, evicted: &mut Vec<ObjectId>) -> Outcome {
        self.now += 1;
        self.prune_history();
        if self.training {
            self.expire();
        }
        let now = self.now;
        // A demotion is no access of the program's: a read, unless the
        // object's own kind is known (below).
        let kind = kind(req.size, !demoted && req.op == Op::Write);
        let (pos, h, res) = match self.table.find(req.id) {
            Some(p) => {
                let e = self.table.at_mut(p);
                // Every entry's kind is meaningful: a forgotten one (count 0)
                // is resident and keeps its last access's (review finding).
                let kind = if demoted { e.kind } else { kind };
                let h = if e.count > 0 {
                    Hist {
                        last: now,
                        gap: (now - e.last).min(u64::from(u32::MAX)),
                        count: u32::from(e.count.saturating_add(1)),
                        kind,
                    }
                } else {
                    Hist {
                        last: now,
                        gap: 0,
                        count: 1,
                        kind,
                    }
                };
                let open = e.open_label();
                e.last = h.last;
                e.gap = h.gap as u32;
                e.count = h.count as u8;
                e.kind = kind;
                // Requested again within the horizon: the label resolves. Its
                // queued record stays; `expire` skips it as no longer open.
                e.lstate = 0;
                let res = e.res;
                if let Some(s) = open
                    && self.training
                {
                    self.learn(s, 1.0);
                }
                (p, h, res)
            }
            None => {
                let h = Hist {
                    last: now,
                    gap: 0,
                    count: 1,
                    kind,
                };
                let e = Entry {
                    last: now,
                    gap: 0,
                    label: 0,
                    count: 1,
                    kind,
                    lstate: 0,
                    res: NOT_RESIDENT,
                };
                let (p, grew) = self.table.insert(req.id, e);
                if grew {
                    self.relink_all();
                }
                (p, h, NOT_RESIDENT)
            }
        };
        if res != NOT_RESIDENT {
            self.residents[res as usize] = Res::new(pos, &h);
            return Outcome::HIT;
        }
        let new_state = self.state(&h);
        self.record(pos, new_state);
        let mut pos = pos;
        if self.residents.len() >= self.cap {
            let Some((i, vs)) = self.sample_victim() else {
                return Outcome::BYPASS;
            };
            if self.cfg.admission
                && !self.absorbs(req, demoted)
                && let (Some(nv), Some(vv)) = (self.trusted(new_state), self.trusted(vs))
                && self.worth(nv, new_state, vv, vs).is_lt()
            {
                return Outcome::BYPASS;
            }
            evicted.push(self.evict_at(i));
            // The victim's removal may have moved this entry back.
            if self.table.at(pos).id != req.id || self.table.at(pos).v.is_vacant() {
                pos = self.table.find(req.id).expect("the requested id is known");
            }
        }
        self.table.at_mut(pos).res = self.residents.len() as u32;
        self.residents.push(Res::new(pos, &h));
        Outcome::ADMIT
    }

    /// Whether admitting `req` costs this request less than leaving it out:
    /// a write under a write-back tier (`CostModel::miss`) that is cheaper
    /// to write than the tier below, once the costs are known. The placement
    /// agent never leaves such a write out: the backing write it would pay
    /// now is certain, the victim's loss only likely (cloudphysics, the
    /// trace with writes, 2026-11-25: mean latency 32.1 -> 26.6 us at 5 %,
    /// 30.1 -> 26.0 us at 10 %).
    fn absorbs(&self, req: &Request, demoted: bool) -> bool {
        let bytes = u64::from(req.size);
        !demoted
            && req.op == Op::Write
            && self
                .cost
                .is_some_and(|c| c.admission_extra(bytes, true) < 0.0)
    }

    /// Bytes of model state (the table), for the size budget.
    pub fn model_bytes(&self) -> usize {
        self.value.len() * 4 + self.obs.len() * 4
    }
}

impl Policy for Reuse {
    fn name(&self) -> &'static str {
        "Reuse"
    }
    fn capacity(&self) -> usize {
        self.cap
    }
    fn len(&self) -> usize {
        self.residents.len()
    }
    fn contains(&self, id: ObjectId) -> bool {
        self.table
            .find(id)
            .is_some_and(|p| self.table.at(p).v.res != NOT_RESIDENT)
    }
    fn access(&mut self, req: &Request, evicted: &mut Vec<ObjectId>) -> Outcome {
        self.step(req, false, evicted)
    }
    /// A demotion from the tier above is no access of the program's: the
    /// object keeps the kind of its last access (the simulators offer it as a
    /// write, for the copy's cost), or, unknown here, counts as a read.
    fn offer_demoted(&mut self, req: &Request, evicted: &mut Vec<ObjectId>) -> Outcome {
        self.step(req, true, evicted)
    }
    fn resize(&mut self, capacity: usize, evicted: &mut Vec<ObjectId>) {
        self.cap = capacity.max(1);
        while self.residents.len() > self.cap {
            if let Some((i, _)) = self.sample_victim() {
                evicted.push(self.evict_at(i));
            }
        }
    }
    fn remove(&mut self, id: ObjectId) -> bool {
        let Some(p) = self.table.find(id) else {
            return false;
        };
        match self.table.at(p).v.res {
            NOT_RESIDENT => false,
            i => {
                self.evict_at(i as usize);
                true
            }
        }
    }
    fn set_costs(&mut self, cost: &CostModel) {
        self.cost = Some(*cost);
    }
    fn check_invariants(&self) {
        assert!(self.residents.len() <= self.cap);
        self.table.check();
        for (i, r) in self.residents.iter().enumerate() {
            let e = self.table.at(r.slot).v;
            assert_eq!(e.res, i as u32, "res mirrors residents");
            let h = e.hist();
            assert_eq!(
                (u32::from(r.count), r.last, r.gap, r.kind),
                (h.count, h.last, h.gap, h.kind),
                "a resident's copy of its history is current"
            );
        }
        let resident = (0..self.table.capacity() as u32)
            .filter(|&p| self.table.at(p).v.res != NOT_RESIDENT)
            .count();
        assert_eq!(resident, self.residents.len(), "every resident is listed");
        assert!(self.table.len() >= resident);
        assert!(self.pending.len() <= PENDING_CAP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::simulate;
    use crate::tier::CostModel;
    use crate::{PolicyKind, workload};

    #[test]
    fn training_off_freezes_the_values() {
        let t = workload::zipf(2000, 0.8, 30_000, 5);
        let mut l = Reuse::new(100, 3);
        let mut ev = Vec::new();
        for r in &t[..20_000] {
            l.access(r, &mut ev);
        }
        l.set_training(false);
        let (value, obs) = (l.value.clone(), l.obs.clone());
        for r in &t[20_000..] {
            ev.clear();
            l.access(r, &mut ev);
            l.check_invariants();
        }
        assert_eq!(l.value, value);
        assert_eq!(l.obs, obs);
        assert!(l.pending.is_empty());
        l.set_training(true);
        for r in &t[..5_000] {
            ev.clear();
            l.access(r, &mut ev);
        }
        assert_ne!(l.obs, obs, "training resumes");
    }

    /// Given the tier's costs (as the simulators pass them), the placement
    /// agent takes every write miss (a write-back tier absorbs it for a
    /// DRAM write instead of an SSD write), though it leaves out reads of
    /// the same trace; without costs (a shadow expert) it weighs hits only.
    #[test]
    fn with_costs_every_write_miss_is_absorbed() {
        let reads = workload::scan_hot(2000, 0.002, 400, 100_000, 9);
        let writes = workload::as_writes(&reads);
        let cost = CostModel::default();
        let r = simulate(&mut Reuse::new(500, 1), &reads, &cost, 0, true);
        assert!(
            r.admitted + 1000 < r.backing_hits,
            "reads: {} of {}",
            r.admitted,
            r.backing_hits
        );
        let w = simulate(&mut Reuse::new(500, 1), &writes, &cost, 0, true);
        assert_eq!(w.admitted, w.backing_hits, "every write miss is admitted");
        // A shadow without costs: the same writes, some left out.
        let mut shadow = Reuse::new(500, 1);
        let (mut admitted, mut misses) = (0, 0);
        let mut ev = Vec::new();
        for q in &writes {
            ev.clear();
            let o = shadow.access(q, &mut ev);
            misses += u64::from(!o.hit);
            admitted += u64::from(o.admitted);
        }
        assert!(admitted + 1000 < misses, "shadow: {admitted} of {misses}");
    }

    /// With the tier's costs the agents rank objects by what keeping them
    /// saves, not by their reuse probability alone: of two kinds reused
    /// equally often, the one whose misses cost more (large blocks: 27 us +
    /// 64 us per 64 KiB against 28 us for 1 KiB) keeps more of its hits.
    #[test]
    fn with_costs_the_dearer_misses_are_kept() {
        // Ids 0..4000 are 1 KiB, 4000..8000 are 64 KiB; one Zipf stream over
        // both, so both kinds are reused alike.
        let t: Vec<Request> = workload::zipf(8000, 0.8, 120_000, 4)
            .into_iter()
            .map(|r| Request {
                size: if r.id % 2 == 0 { 1 << 10 } else { 64 << 10 },
                ..r
            })
            .collect();
        let cost = CostModel::default();
        let large_hits = |p: &mut Reuse, costs: bool| {
            if costs {
                p.set_costs(&cost);
            }
            let mut ev = Vec::new();
            let (mut large, mut small) = (0u64, 0u64);
            for r in &t {
                ev.clear();
                if p.access(r, &mut ev).hit {
                    if r.size > 1 << 10 {
                        large += 1
                    } else {
                        small += 1
                    }
                }
            }
            large as f64 / (large + small).max(1) as f64
        };
        let plain = large_hits(&mut Reuse::new(400, 1), false);
        let priced = large_hits(&mut Reuse::new(400, 1), true);
        assert!(
            priced > plain + 0.02,
            "share of hits on large objects: {priced:.3} with costs, {plain:.3} without"
        );
    }

    #[test]
    fn deterministic_under_a_seed() {
        let t = workload::zipf(2000, 0.8, 30_000, 5);
        let cost = CostModel::default();
        let run = |seed| simulate(&mut Reuse::new(100, seed), &t, &cost, 10, false);
        assert_eq!(run(1), run(1));
        assert_ne!(run(1).hits, run(2).hits, "the seed drives the sampling");
    }

    #[test]
    fn learns_to_keep_scans_out() {
        // A Zipf hot set of 2000 ids under long one-pass scans: LRU lets
        // each scan flush the hot set; the agents learn that count-1 objects
        // are not reused within the horizon and bypass them.
        let t = workload::scan_hot(2000, 0.002, 400, 200_000, 9);
        let cost = CostModel::default();
        let hit = |k: PolicyKind| {
            simulate(k.build(500).unwrap().as_mut(), &t, &cost, 0, false).hit_ratio()
        };
        let (learned, lru) = (hit(PolicyKind::Reuse), hit(PolicyKind::Lru));
        assert!(learned > lru + 0.05, "learned {learned:.3} vs LRU {lru:.3}");
    }

    /// The access kind is in the state: objects that differ only by size and
    /// operation (small reads read again soon, large writes never) get
    /// different reuse probabilities. Without the kind both newcomers are in
    /// one state (seen once, just now, no gap) and get the same value.
    #[test]
    fn the_access_kindtells_objects_apart() {
        let mut l = Reuse::new(1000, 3);
        let mut out = Vec::new();
        let mut t = 0;
        let mut go = |l: &mut Reuse, req: Request| {
            t += 1;
            l.access(&Request { time: t, ..req }, &mut out);
            out.clear();
        };
        for i in 0..20_000u64 {
            go(&mut l, Request::read(0, 2 * i, 512));
            go(
                &mut l,
                Request {
                    op: Op::Write,
                    ..Request::read(0, 2 * i + 1, 64 << 10)
                },
            );
            if i >= 100 {
                go(&mut l, Request::read(0, 2 * (i - 100), 512));
            }
        }
        let small = l.reuse_probability(2 * 19_999).expect("trusted");
        let large = l.reuse_probability(2 * 19_999 + 1).expect("trusted");
        assert!(
            small > large + 0.5,
            "small read {small:.2}, large write {large:.2}"
        );
    }

    /// A demotion offered for a resident the history window forgot keeps the
    /// kind of its last access (review finding: it took the read kind).
    #[test]
    fn a_demotion_keeps_a_forgotten_residents_kind() {
        let mut l = Reuse::new(1000, 1);
        let mut out = Vec::new();
        let write = Request {
            op: Op::Write,
            ..Request::read(1, 7, 64 << 10)
        };
        l.access(&write, &mut out);
        for i in 0..16_100u64 {
            l.access(&Request::read(2 + i, 1 + i % 5, 512), &mut out);
        }
        let p = l.table.find(7).expect("resident");
        assert_eq!(l.table.at(p).v.count, 0, "forgotten by the window");
        l.offer_demoted(&write, &mut out);
        let p = l.table.find(7).expect("known");
        assert_eq!(l.table.at(p).v.kind, kind(write.size, true));
        l.check_invariants();
    }

    #[test]
    fn the_history_table_shrinks_after_a_capacity_cut() {
        // Review finding: 200,000 ids seen at capacity 10,000, then a cut to
        // 10 over 5 ids: the table kept 524,288 cells and every prune scanned
        // them all.
        let mut l = Reuse::new(10_000, 1);
        let mut ev = Vec::new();
        for i in 0..200_000u64 {
            l.access(&Request::read(i, 1_000_000 + i, 1), &mut ev);
        }
        let big = l.table.capacity();
        assert!(big >= 1 << 18, "{big}");
        l.resize(10, &mut ev);
        for i in 0..1_000u64 {
            l.access(&Request::read(i, i % 5, 1), &mut ev);
            l.check_invariants();
        }
        assert!(l.table.capacity() <= 64, "{} cells", l.table.capacity());
        // The residents still find their entries.
        for id in 0..5 {
            assert!(l.contains(id), "{id}");
        }
    }

    #[test]
    fn model_state_is_small() {
        let l = Reuse::new(1 << 20, 0);
        assert_eq!(l.model_bytes(), STATES * 8);
        assert!(l.model_bytes() <= 64 * 1024);
    }
}
