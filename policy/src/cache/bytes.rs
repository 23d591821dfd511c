//! Byte budgets: any policy of this crate over a tier sized in bytes.
//!
//! The policies count objects. [`ByteBudget`] drives one of them so that the
//! bytes of its residents never exceed a budget, whatever the objects' sizes:
//! before each miss it tells the policy how many objects fit (its capacity,
//! through [`Policy::resize`]), and after it demotes more, in the policy's
//! own order, until the bytes fit. Every policy keeps its own eviction order
//! and admission decisions; what changes is how many objects it may hold.
//!
//! - A miss that fits in the free bytes: the policy's capacity becomes its
//!   residents plus as many objects of the newcomer's size as the free bytes
//!   hold, so it admits without demoting. With every size 1 this is the
//!   object budget itself: a byte budget of `n` over unit-size objects makes
//!   the same decisions as an object capacity of `n` (a test checks it for
//!   every policy).
//! - A miss that does not fit: `resize` to one object fewer demotes victims
//!   in the policy's order until the shortfall is at most the residents'
//!   mean size; then the capacity becomes the residents, so the policy
//!   demotes its own last victim knowing the newcomer (or bypasses it, if its
//!   placement decision says so); if the bytes still do not fit, more
//!   victims go one at a time.
//! - An object bigger than the whole budget is never admitted (a bypass; the
//!   policy does not see it). A resident that grows past the whole budget,
//!   or a budget cut below a resident's size, takes that object out first
//!   (by `Policy::remove`, so the policy forgets it as if deleted), before
//!   any smaller one.
//! - A hit whose size changed (a SET that grew a value) demotes as a miss
//!   that does not fit does; if the object itself is demoted, the request
//!   is reported as a bypass (its old copy is in the evicted list).
//!
//! If the policy's own victims include the newcomer itself (the admission
//! could not make room), the miss is reported as a bypass.
//!
//! Belady under a byte budget is farthest-next-use with sizes, a heuristic:
//! with objects of several sizes it is not the optimum, and other policies may
//! beat it.

use super::{Outcome, Policy};
use crate::tier::CostModel;
use crate::types::{IdMap, ObjectId, Request};

/// A policy over a tier of `capacity` bytes (see the module docs).
pub struct ByteBudget {
    inner: Box<dyn Policy>,
    /// The budget, bytes (at least 1).
    cap: u64,
    /// Bytes of the residents.
    used: u64,
    /// Most objects the inner policy is ever told it may hold (the unique
    /// objects of a trace, when known): a budget of terabytes over 1-byte
    /// objects must not size the policy's queues and windows from 2^40.
    max_objects: usize,
    /// Size of every resident.
    sizes: IdMap<u32>,
    scratch: Vec<ObjectId>,
}

impl std::fmt::Debug for ByteBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteBudget")
            .field("policy", &self.inner.name())
            .field("cap", &self.cap)
            .field("used", &self.used)
            .field("residents", &self.sizes.len())
            .finish()
    }
}

impl ByteBudget {
    /// `inner` (empty) over a tier of `bytes` bytes; it is never told it may
    /// hold more than `max_objects` objects.
    pub fn new(inner: Box<dyn Policy>, bytes: u64, max_objects: usize) -> Self {
        ByteBudget {
            inner,
            cap: bytes.max(1),
            used: 0,
            max_objects: max_objects.max(1),
            sizes: IdMap::default(),
            scratch: Vec::new(),
        }
    }

    /// Stop counting `id`'s bytes (it left the policy).
    fn forget(&mut self, id: ObjectId) {
        if let Some(w) = self.sizes.remove(&id) {
            self.used -= u64::from(w);
        }
    }

    /// Account for the objects the inner policy just demoted into `scratch`
    /// and pass them on; returns whether `newcomer` was one of them (it is
    /// not passed on: it never counted as admitted).
    fn take_evicted(&mut self, newcomer: Option<ObjectId>, evicted: &mut Vec<ObjectId>) -> bool {
        let mut hit_newcomer = false;
        for i in 0..self.scratch.len() {
            let id = self.scratch[i];
            self.forget(id);
            if Some(id) == newcomer {
                hit_newcomer = true;
            } else {
                evicted.push(id);
            }
        }
        self.scratch.clear();
        hit_newcomer
    }

    /// Demote, in the policy's order, until the residents fit the budget, in
    /// `resize` calls of at least the excess over `largest` (a bound on the
    /// residents' sizes; `u64::MAX`: one object per call). Returns whether
    /// `newcomer` was demoted.
    fn shrink(
        &mut self,
        newcomer: Option<ObjectId>,
        largest: u64,
        evicted: &mut Vec<ObjectId>,
    ) -> bool {
        let mut gone = false;
        while self.used > self.cap {
            let n = self.inner.len();
            if n == 1 {
                // A policy holds at least one object; the last one, bigger than
                // the budget on its own, goes by hand. Never the newcomer: it
                // fits the budget alone (`access` bypasses bigger ones).
                let id = *self
                    .sizes
                    .keys()
                    .next()
                    .expect("bytes in use, one resident");
                self.drop_resident(id, evicted);
                continue;
            }
            let k = (self.used - self.cap)
                .div_ceil(largest.max(1))
                .clamp(1, n as u64 - 1);
            self.inner.resize(n - k as usize, &mut self.scratch);
            assert!(
                self.inner.len() < n,
                "{}: resize below its residents demoted nothing",
                self.inner.name()
            );
            gone |= self.take_evicted(newcomer, evicted);
        }
        gone
    }

    /// Take resident `id` out by hand (`Policy::remove`: the policy forgets
    /// it as if deleted, so no ghost entry remembers it) and report it demoted.
    fn drop_resident(&mut self, id: ObjectId, evicted: &mut Vec<ObjectId>) {
        let removed = self.inner.remove(id);
        assert!(removed, "{id} sized but not resident");
        self.forget(id);
        evicted.push(id);
    }

    /// `access` (`demoted` false) or `offer_demoted` (true): the same byte
    /// accounting, the inner policy told which one it is.
    fn place(&mut self, req: &Request, evicted: &mut Vec<ObjectId>, demoted: bool) -> Outcome {
        let w = u64::from(req.size.max(1));
        if let Some(&old) = self.sizes.get(&req.id) {
            if w > self.cap {
                // Grown past the whole tier: it goes, not the others first.
                self.drop_resident(req.id, evicted);
                return Outcome::BYPASS;
            }
            let out = self.inner_access(req, demoted);
            self.take_evicted(None, evicted);
            if u64::from(old) != w {
                self.used = self.used - u64::from(old) + w;
                self.sizes.insert(req.id, w as u32);
                self.shrink(None, u64::MAX, evicted);
                if !self.sizes.contains_key(&req.id) {
                    // Grown past what its policy keeps: demoted (in `evicted`),
                    // the new value served from and left in the backing tier.
                    return Outcome::BYPASS;
                }
            }
            return out;
        }
        if w > self.cap {
            return Outcome::BYPASS;
        }
        // Make room beforehand for all but about one average resident: the
        // policy then picks the last victim itself, knowing the newcomer (its
        // admission decision, ARC's ghost lists, Belady's bypass), and the
        // newcomer is rarely demoted by the demotions that follow its own
        // admission. With unit sizes this never demotes. Not for a newcomer
        // the policy says it would refuse: those demotions would buy nothing.
        let admits = self.inner.admits(req);
        while admits && self.used + w > self.cap && self.inner.len() > 1 {
            let n = self.inner.len();
            let deficit = self.used + w - self.cap;
            if deficit.saturating_mul(n as u64) <= self.used {
                break;
            }
            self.inner.resize(n - 1, &mut self.scratch);
            self.take_evicted(None, evicted);
        }
        let len = self.inner.len();
        let room = self.cap - self.used;
        let target = if w > room {
            len
        } else {
            len.saturating_add(usize::try_from(room / w).unwrap_or(usize::MAX))
        };
        self.set_objects(target, evicted);
        let out = self.inner_access(req, demoted);
        self.take_evicted(None, evicted);
        if !out.admitted {
            return out;
        }
        self.sizes.insert(req.id, w as u32);
        self.used += w;
        if self.shrink(Some(req.id), u64::MAX, evicted) {
            return Outcome::BYPASS;
        }
        out
    }

    fn inner_access(&mut self, req: &Request, demoted: bool) -> Outcome {
        if demoted {
            self.inner.offer_demoted(req, &mut self.scratch)
        } else {
            self.inner.access(req, &mut self.scratch)
        }
    }

    /// Tell the inner policy it may hold `target` objects.
    fn set_objects(&mut self, target: usize, evicted: &mut Vec<ObjectId>) {
        let target = target.clamp(1, self.max_objects.max(self.inner.len()));
        if target != self.inner.capacity() {
            self.inner.resize(target, &mut self.scratch);
            // `target` is at least the residents: nothing leaves.
            self.take_evicted(None, evicted);
        }
    }
}

impl Policy for ByteBudget {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn capacity(&self) -> usize {
        usize::try_from(self.cap).unwrap_or(usize::MAX)
    }
    fn used(&self) -> usize {
        usize::try_from(self.used).unwrap_or(usize::MAX)
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn contains(&self, id: ObjectId) -> bool {
        self.sizes.contains_key(&id)
    }
    fn admits(&self, req: &Request) -> bool {
        u64::from(req.size.max(1)) <= self.cap && self.inner.admits(req)
    }
    fn access(&mut self, req: &Request, evicted: &mut Vec<ObjectId>) -> Outcome {
        self.place(req, evicted, false)
    }
    fn offer_demoted(&mut self, req: &Request, evicted: &mut Vec<ObjectId>) -> Outcome {
        self.place(req, evicted, true)
    }
    fn resize(&mut self, capacity: usize, evicted: &mut Vec<ObjectId>) {
        self.cap = (capacity as u64).max(1);
        if self.used > self.cap {
            // Residents bigger than the whole tier go first, not after every
            // smaller one the policy would demote before them.
            let cap = self.cap;
            let big: Vec<ObjectId> = self
                .sizes
                .iter()
                .filter(|&(_, &w)| u64::from(w) > cap)
                .map(|(&id, _)| id)
                .collect();
            for id in big {
                self.drop_resident(id, evicted);
            }
            // Demote in as few `resize` calls as the sizes allow (the policies
            // recompute capacity-relative state at each): at least the excess
            // over the largest resident's size, so never more than needed;
            // over unit sizes one call, as an object capacity would make.
            let largest = self.sizes.values().map(|&w| u64::from(w)).max();
            self.shrink(None, largest.unwrap_or(1), evicted);
        }
        // Tell the policy its new size now, not at the next miss: the free
        // bytes in objects of the residents' mean size.
        let len = self.inner.len();
        let per = if len > 0 {
            (self.used / len as u64).max(1)
        } else {
            1
        };
        let fit = usize::try_from((self.cap - self.used) / per).unwrap_or(usize::MAX);
        self.set_objects(len.saturating_add(fit), evicted);
    }
    fn remove(&mut self, id: ObjectId) -> bool {
        if !self.inner.remove(id) {
            return false;
        }
        self.forget(id);
        true
    }
    fn set_costs(&mut self, cost: &CostModel) {
        self.inner.set_costs(cost);
    }
    fn check_invariants(&self) {
        self.inner.check_invariants();
        assert_eq!(
            self.sizes.len(),
            self.inner.len(),
            "sizes kept for residents"
        );
        let sum: u64 = self.sizes.values().map(|&w| u64::from(w)).sum();
        assert_eq!(sum, self.used, "bytes in use");
        assert!(self.used <= self.cap, "over the byte budget");
        for &id in self.sizes.keys() {
            assert!(self.inner.contains(id), "{id} sized but not resident");
        }
    }
}
