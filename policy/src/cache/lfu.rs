//! LFU: evict the object with the fewest accesses since it was admitted
//! (in-cache counts, forgotten on eviction); ties go to the least recently
//! used, as in BASELINES.md.

use std::collections::BTreeSet;

use super::{Outcome, Policy};
use crate::types::{IdMap, ObjectId, Request};

/// Least frequently used. `order` holds `(count, last_use, id)` for every
/// resident object; its first element is the victim.
#[derive(Debug)]
pub struct Lfu {
    cap: usize,
    clock: u64,
    map: IdMap<(u64, u64)>,
    order: BTreeSet<(u64, u64, ObjectId)>,
}

impl Lfu {
    /// Room for `cap` objects.
    pub fn new(cap: usize) -> Self {
        Lfu {
            cap: cap.max(1),
            clock: 0,
            map: IdMap::default(),
            order: BTreeSet::new(),
        }
    }
}

impl Policy for Lfu {
    fn name(&self) -> &'static str {
        "LFU"
    }
    fn capacity(&self) -> usize {
        self.cap
    }
    fn len(&self) -> usize {
        self.map.len()
    }
    fn contains(&self, id: ObjectId) -> bool {
        self.map.contains_key(&id)
    }
    fn access(&mut self, req: &Request, evicted: &mut Vec<ObjectId>) -> Outcome {
        self.clock += 1;
        if let Some(e) = self.map.get_mut(&req.id) {
            self.order.remove(&(e.0, e.1, req.id));
            *e = (e.0 + 1, self.clock);
            self.order.insert((e.0, e.1, req.id));
            return Outcome::HIT;
        }
        if self.map.len() >= self.cap {
            if let Some((_, _, victim)) = self.order.pop_first() {
                self.map.remove(&victim);
                evicted.push(victim);
            }
        }
        self.map.insert(req.id, (1, self.clock));
        self.order.insert((1, self.clock, req.id));
        Outcome::ADMIT
    }
    fn resize(&mut self, capacity: usize, evicted: &mut Vec<ObjectId>) {
        self.cap = capacity.max(1);
        while self.map.len() > self.cap {
            if let Some((_, _, victim)) = self.order.pop_first() {
                self.map.remove(&victim);
                evicted.push(victim);
            }
        }
    }
    fn remove(&mut self, id: ObjectId) -> bool {
        match self.map.remove(&id) {
            Some((c, t)) => {
                self.order.remove(&(c, t, id));
                true
            }
            None => false,
        }
    }
    fn check_invariants(&self) {
        assert_eq!(self.order.len(), self.map.len());
        assert!(self.map.len() <= self.cap);
    }
}
