//! LRU: evict the object whose last access is oldest.

use super::list::{Handle, List};
use super::{Outcome, Policy};
use crate::types::{IdMap, ObjectId, Request};

/// Least recently used. Head of `list` = most recent.
#[derive(Debug)]
pub struct Lru {
    cap: usize,
    list: List,
    map: IdMap<Handle>,
}

impl Lru {
    /// Room for `cap` objects.
    pub fn new(cap: usize) -> Self {
        Lru {
            cap: cap.max(1),
            list: List::default(),
            map: IdMap::default(),
        }
    }
}

impl Policy for Lru {
    fn name(&self) -> &'static str {
        "LRU"
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
            self.list.move_to_front(h);
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
