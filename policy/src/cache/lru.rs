//! LRU and FIFO: one queue, evicting from its tail. LRU moves a hit object to the
//! head (evict the object whose last access is oldest); FIFO leaves hits where
//! they are (evict the object admitted longest ago).

use super::list::{Handle, List};
use super::{Outcome, Policy};
use crate::types::{IdMap, ObjectId, Request};

/// A queue of resident objects, head = newest. `PROMOTE`: a hit moves to the head.
#[derive(Debug)]
pub struct Queue<const PROMOTE: bool> {
    cap: usize,
    list: List,
    map: IdMap<Handle>,
}

/// Least recently used.
pub type Lru = Queue<true>;
/// First in, first out.
pub type Fifo = Queue<false>;

impl<const PROMOTE: bool> Queue<PROMOTE> {
    /// Room for `cap` objects.
    pub fn new(cap: usize) -> Self {
        Queue {
            cap: cap.max(1),
            list: List::default(),
            map: IdMap::default(),
        }
    }
}

impl<const PROMOTE: bool> Policy for Queue<PROMOTE> {
    fn name(&self) -> &'static str {
        if PROMOTE { "LRU" } else { "FIFO" }
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
            if PROMOTE {
                self.list.move_to_front(h);
            }
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
