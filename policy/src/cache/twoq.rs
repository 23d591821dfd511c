//! 2Q, full version (Johnson & Shasha, VLDB'94, section 2.2).
//!
//! `a1in` is a FIFO of objects seen once, `am` an LRU of objects seen again,
//! `a1out` a ghost FIFO of ids recently pushed out of `a1in`. A miss on a
//! ghost id goes to `am`; any other miss goes to `a1in`. Parameters as in
//! the paper's recommendation and BASELINES.md: Kin = 25 %, Kout = 50 % of
//! the capacity.

use super::list::{Handle, List};
use super::{Outcome, Policy};
use crate::types::{IdMap, ObjectId, Request};

const AM: u8 = 0;
const A1IN: u8 = 1;
const A1OUT: u8 = 2;

/// 2Q. `map` holds every resident and ghost id with its list and handle.
#[derive(Debug)]
pub struct TwoQ {
    cap: usize,
    kin: usize,
    kout: usize,
    am: List,
    a1in: List,
    a1out: List,
    map: IdMap<(u8, Handle)>,
}

impl TwoQ {
    /// Room for `cap` objects.
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        TwoQ {
            cap,
            kin: (cap / 4).max(1),
            kout: (cap / 2).max(1),
            am: List::default(),
            a1in: List::default(),
            a1out: List::default(),
            map: IdMap::default(),
        }
    }

    /// The paper's `reclaimfor`: free one slot.
    fn reclaim(&mut self, evicted: &mut Vec<ObjectId>) {
        if self.am.len() + self.a1in.len() < self.cap {
            return;
        }
        if self.a1in.len() > self.kin || self.am.is_empty() {
            if let Some((victim, _)) = self.a1in.pop_back() {
                evicted.push(victim);
                let h = self.a1out.push_front(victim, A1OUT);
                self.map.insert(victim, (A1OUT, h));
                if self.a1out.len() > self.kout {
                    if let Some((old, _)) = self.a1out.pop_back() {
                        self.map.remove(&old);
                    }
                }
            }
        } else if let Some((victim, _)) = self.am.pop_back() {
            self.map.remove(&victim);
            evicted.push(victim);
        }
    }
}

impl Policy for TwoQ {
    fn name(&self) -> &'static str {
        "TwoQ"
    }
    fn capacity(&self) -> usize {
        self.cap
    }
    fn len(&self) -> usize {
        self.am.len() + self.a1in.len()
    }
    fn contains(&self, id: ObjectId) -> bool {
        matches!(self.map.get(&id), Some((AM | A1IN, _)))
    }
    fn access(&mut self, req: &Request, evicted: &mut Vec<ObjectId>) -> Outcome {
        match self.map.get(&req.id).copied() {
            Some((AM, h)) => {
                self.am.move_to_front(h);
                Outcome::HIT
            }
            Some((A1IN, _)) => Outcome::HIT,
            Some((_, h)) => {
                self.a1out.remove(h);
                self.map.remove(&req.id);
                self.reclaim(evicted);
                let h = self.am.push_front(req.id, AM);
                self.map.insert(req.id, (AM, h));
                Outcome::ADMIT
            }
            None => {
                self.reclaim(evicted);
                let h = self.a1in.push_front(req.id, A1IN);
                self.map.insert(req.id, (A1IN, h));
                Outcome::ADMIT
            }
        }
    }
    fn resize(&mut self, capacity: usize, evicted: &mut Vec<ObjectId>) {
        self.cap = capacity.max(1);
        self.kin = (self.cap / 4).max(1);
        self.kout = (self.cap / 2).max(1);
        while self.len() > self.cap {
            self.reclaim(evicted);
        }
        while self.a1out.len() > self.kout {
            if let Some((old, _)) = self.a1out.pop_back() {
                self.map.remove(&old);
            }
        }
    }
    fn remove(&mut self, id: ObjectId) -> bool {
        match self.map.get(&id).copied() {
            Some((AM, h)) => {
                self.am.remove(h);
                self.map.remove(&id);
                true
            }
            Some((A1IN, h)) => {
                self.a1in.remove(h);
                self.map.remove(&id);
                true
            }
            _ => false,
        }
    }
    fn check_invariants(&self) {
        self.am.check_invariants();
        self.a1in.check_invariants();
        self.a1out.check_invariants();
        assert_eq!(
            self.map.len(),
            self.am.len() + self.a1in.len() + self.a1out.len()
        );
        assert!(self.len() <= self.cap);
        assert!(self.a1out.len() <= self.kout);
    }
}
