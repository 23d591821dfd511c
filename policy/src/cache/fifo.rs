//! FIFO: evict the object admitted longest ago; hits change nothing.

use super::list::{Handle, List};
use super::{Outcome, Policy};
use crate::types::{IdMap, ObjectId, Request};

/// First in, first out. Head of `list` = newest.
#[derive(Debug)]
pub struct Fifo {
    cap: usize,
    list: List,
    map: IdMap<Handle>,
}

impl Fifo {
    /// Room for `cap` objects.
    pub fn new(cap: usize) -> Self {
        Fifo {
            cap: cap.max(1),
            list: List::default(),
            map: IdMap::default(),
        }
    }
}

impl Policy for Fifo {
    fn name(&self) -> &'static str {
        "FIFO"
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
        if self.map.contains_key(&req.id) {
            return Outcome::HIT;
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
