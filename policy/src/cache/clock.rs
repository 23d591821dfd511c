//! CLOCK (Corbató 1968): FIFO order with one reference bit per object; the
//! hand clears set bits and evicts the first object found with a clear bit.
//!
//! The circular buffer is kept as a list whose tail is the hand: an object
//! the hand passes over is moved to the head, which is the same order a
//! circular clock visits. New objects enter with the bit clear.

use super::list::{Handle, List};
use super::{Outcome, Policy};
use crate::types::{IdMap, ObjectId, Request};

/// CLOCK with one reference bit (the list tag).
#[derive(Debug)]
pub struct Clock {
    cap: usize,
    list: List,
    map: IdMap<Handle>,
}

impl Clock {
    /// Room for `cap` objects.
    pub fn new(cap: usize) -> Self {
        Clock {
            cap: cap.max(1),
            list: List::default(),
            map: IdMap::default(),
        }
    }
}

impl Clock {
    /// Advance the hand to the first clear bit and evict that object.
    /// Terminates: each step clears a bit, so within len + 1 steps the hand
    /// finds a clear one.
    fn evict_one(&mut self, evicted: &mut Vec<ObjectId>) {
        while let Some(t) = self.list.back() {
            if self.list.tag(t) == 1 {
                self.list.set_tag(t, 0);
                self.list.move_to_front(t);
            } else {
                let victim = self.list.remove(t);
                self.map.remove(&victim);
                evicted.push(victim);
                return;
            }
        }
    }
}

impl Policy for Clock {
    fn name(&self) -> &'static str {
        "CLOCK"
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
            self.evict_one(evicted);
        }
        let h = self.list.push_front(req.id, 0);
        self.map.insert(req.id, h);
        Outcome::ADMIT
    }
    fn resize(&mut self, capacity: usize, evicted: &mut Vec<ObjectId>) {
        self.cap = capacity.max(1);
        while self.list.len() > self.cap {
            self.evict_one(evicted);
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
