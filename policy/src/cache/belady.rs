//! Belady's MIN (1966): on a miss with a full tier, evict the resident
//! object whose next request lies furthest in the future. It reads
//! `Request::next_access`, i.e. the future: an upper bound for comparison,
//! never a deployable policy.
//!
//! A missed object whose next request lies further out than every resident
//! one's is not admitted (it would be the victim at once). With that
//! bypass MIN is optimal among all policies, with or without admission
//! control (unit sizes): no policy gets more hits on the same trace and
//! capacity, which the tests check for every policy here.

use std::collections::BTreeSet;

use super::{Outcome, Policy};
use crate::types::{IdMap, ObjectId, Request};

/// The offline oracle. `order` holds `(next_access, id)` of every resident
/// object; its last element is the victim.
#[derive(Debug)]
pub struct Belady {
    cap: usize,
    map: IdMap<u64>,
    order: BTreeSet<(u64, ObjectId)>,
}

impl Belady {
    /// Room for `cap` objects.
    pub fn new(cap: usize) -> Self {
        Belady {
            cap: cap.max(1),
            map: IdMap::default(),
            order: BTreeSet::new(),
        }
    }
}

impl Policy for Belady {
    fn name(&self) -> &'static str {
        "Belady"
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
        if let Some(next) = self.map.get_mut(&req.id) {
            self.order.remove(&(*next, req.id));
            *next = req.next_access;
            self.order.insert((req.next_access, req.id));
            return Outcome::HIT;
        }
        if self.map.len() >= self.cap {
            if self
                .order
                .last()
                .is_some_and(|&(n, _)| n <= req.next_access)
            {
                return Outcome::BYPASS;
            }
            if let Some((_, victim)) = self.order.pop_last() {
                self.map.remove(&victim);
                evicted.push(victim);
            }
        }
        self.map.insert(req.id, req.next_access);
        self.order.insert((req.next_access, req.id));
        Outcome::ADMIT
    }
    fn admits(&self, req: &Request) -> bool {
        // Room is made by demoting the residents needed furthest in the
        // future: worth it only if the first of them is needed later than
        // the newcomer.
        self.order.last().is_none_or(|&(n, _)| n > req.next_access)
    }
    fn resize(&mut self, capacity: usize, evicted: &mut Vec<ObjectId>) {
        self.cap = capacity.max(1);
        while self.map.len() > self.cap {
            if let Some((_, victim)) = self.order.pop_last() {
                self.map.remove(&victim);
                evicted.push(victim);
            }
        }
    }
    fn remove(&mut self, id: ObjectId) -> bool {
        match self.map.remove(&id) {
            Some(n) => {
                self.order.remove(&(n, id));
                true
            }
            None => false,
        }
    }
    fn check_invariants(&self) {
        assert_eq!(self.map.len(), self.order.len());
        assert!(self.map.len() <= self.cap);
    }
}
