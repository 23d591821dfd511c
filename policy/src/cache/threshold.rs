//! Hot/cold threshold migrator, the rule most tiered stores ship with
//! (promote an object to the fast tier once it is hot, demote the coldest
//! when room is needed).
//!
//! Hotness is an access count per id over a sliding epoch: every
//! `EPOCH_FACTOR x capacity` requests all counts are halved and zero counts
//! dropped, so the table stays bounded by the ids seen in the last few
//! epochs. A missed object is promoted once its count reaches
//! [`Threshold::PROMOTE_AT`] (the second access in the current epoch);
//! colder misses are served from the backing tier. Demotion picks the
//! least recently used resident object.

use super::list::{Handle, List};
use super::{Outcome, Policy};
use crate::types::{IdMap, ObjectId, Request};

const EPOCH_FACTOR: u64 = 4;

/// Threshold migrator. `list` orders residents by recency (head = newest).
#[derive(Debug)]
pub struct Threshold {
    cap: usize,
    list: List,
    map: IdMap<Handle>,
    counts: IdMap<u32>,
    ticks: u64,
}

impl Threshold {
    /// Accesses within an epoch after which a missed object is promoted.
    pub const PROMOTE_AT: u32 = 2;

    /// Room for `cap` objects.
    pub fn new(cap: usize) -> Self {
        Threshold {
            cap: cap.max(1),
            list: List::default(),
            map: IdMap::default(),
            counts: IdMap::default(),
            ticks: 0,
        }
    }

    fn age(&mut self) {
        self.ticks += 1;
        if self.ticks >= EPOCH_FACTOR.saturating_mul(self.cap as u64) {
            self.ticks = 0;
            self.counts.retain(|_, c| {
                *c /= 2;
                *c > 0
            });
        }
    }
}

impl Policy for Threshold {
    fn name(&self) -> &'static str {
        "Threshold"
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
        self.age();
        let count = {
            let c = self.counts.entry(req.id).or_insert(0);
            *c = c.saturating_add(1);
            *c
        };
        if let Some(&h) = self.map.get(&req.id) {
            self.list.move_to_front(h);
            return Outcome::HIT;
        }
        if count < Self::PROMOTE_AT && self.list.len() >= self.cap {
            return Outcome::BYPASS;
        }
        if self.list.len() >= self.cap {
            if let Some((victim, _)) = self.list.pop_back() {
                self.map.remove(&victim);
                evicted.push(victim);
            }
        }
        let h = self.list.push_front(req.id, 0);
        self.map.insert(req.id, h);
        Outcome::ADMIT
    }
    fn admits(&self, req: &Request) -> bool {
        // Counts before this access's aging: aging only lowers them, so this
        // never refuses what `access` admits.
        self.counts.get(&req.id).map_or(0, |&c| c).saturating_add(1) >= Self::PROMOTE_AT
    }
    fn resize(&mut self, capacity: usize, evicted: &mut Vec<ObjectId>) {
        self.cap = capacity.max(1);
        while self.list.len() > self.cap {
            if let Some((victim, _)) = self.list.pop_back() {
                self.map.remove(&victim);
                evicted.push(victim);
            }
        }
    }
    fn remove(&mut self, id: ObjectId) -> bool {
        self.counts.remove(&id);
        match self.map.remove(&id) {
            Some(h) => {
                self.list.remove(h);
                true
            }
            None => false,
        }
    }
    fn check_invariants(&self) {
        self.list.check_invariants();
        assert_eq!(self.list.len(), self.map.len());
        assert!(self.map.len() <= self.cap);
    }
}
