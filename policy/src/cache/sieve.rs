//! SIEVE (Zhang et al., NSDI'24): a FIFO with one visited bit and a hand
//! that moves from the tail (oldest) towards the head, clearing visited bits
//! and evicting the first unvisited object; survivors stay in place (no
//! reinsertion, which is what sets SIEVE apart from CLOCK). New objects
//! enter at the head, unvisited.

use super::list::{Handle, List};
use super::{Outcome, Policy};
use crate::types::{IdMap, ObjectId, Request};

/// SIEVE.
pub type Sieve = BitFifo<false>;

/// A FIFO with one visited bit per object (the list tag), new objects entering at
/// the head unvisited: SIEVE (`REINSERT = false`) and CLOCK (`true`, see
/// [`Clock`](super::Clock)) differ only in what eviction does with a visited object.
/// `hand` is the next object SIEVE examines (None = start at the tail); CLOCK's hand
/// is always the tail, so it stays None.
#[derive(Debug)]
pub struct BitFifo<const REINSERT: bool> {
    cap: usize,
    list: List,
    map: IdMap<Handle>,
    hand: Option<Handle>,
}

impl<const REINSERT: bool> BitFifo<REINSERT> {
    /// Room for `cap` objects.
    pub fn new(cap: usize) -> Self {
        BitFifo {
            cap: cap.max(1),
            list: List::default(),
            map: IdMap::default(),
            hand: None,
        }
    }

    fn evict(&mut self, evicted: &mut Vec<ObjectId>) {
        let victim = if REINSERT {
            // CLOCK: a visited object loses its bit and moves to the head, which is
            // the order a circular clock visits. Terminates: each step clears a bit.
            loop {
                let Some(t) = self.list.back() else {
                    return;
                };
                if self.list.tag(t) == 0 {
                    break self.list.remove(t);
                }
                self.list.set_tag(t, 0);
                self.list.move_to_front(t);
            }
        } else {
            // SIEVE: the hand walks towards the head clearing bits; survivors stay.
            let Some(mut o) = self.hand.or(self.list.back()) else {
                return;
            };
            while self.list.tag(o) == 1 {
                self.list.set_tag(o, 0);
                o = match self.list.prev(o).or(self.list.back()) {
                    Some(p) => p,
                    None => break,
                };
            }
            self.hand = self.list.prev(o);
            self.list.remove(o)
        };
        self.map.remove(&victim);
        evicted.push(victim);
    }
}

impl<const REINSERT: bool> Policy for BitFifo<REINSERT> {
    fn name(&self) -> &'static str {
        if REINSERT { "CLOCK" } else { "SIEVE" }
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
        if let Some(&h) = self.map.get(&req.id) {
            self.list.set_tag(h, 1);
            return Outcome::HIT;
        }
        if self.list.len() >= self.cap {
            self.evict(evicted);
        }
        let h = self.list.push_front(req.id, 0);
        self.map.insert(req.id, h);
        Outcome::ADMIT
    }
    fn resize(&mut self, capacity: usize, evicted: &mut Vec<ObjectId>) {
        self.cap = capacity.max(1);
        while self.list.len() > self.cap {
            self.evict(evicted);
        }
    }
    fn remove(&mut self, id: ObjectId) -> bool {
        match self.map.remove(&id) {
            Some(h) => {
                if self.hand == Some(h) {
                    self.hand = self.list.prev(h);
                }
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
        if let Some(h) = self.hand {
            assert!(!REINSERT, "CLOCK's hand is the tail");
            assert!(
                self.map.get(&self.list.id(h)) == Some(&h),
                "hand points at a live node"
            );
        }
    }
}
