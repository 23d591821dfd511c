//! S3-FIFO (Yang et al., SOSP'23), with libCacheSim's default parameters as
//! in BASELINES.md: a small FIFO of 10 % of the capacity, a main FIFO with
//! 2-bit CLOCK-style reinsertion, and a ghost FIFO of ids remembering 90 % of
//! the capacity. A hit bumps a per-object counter capped at 3; an object
//! leaving the small queue with counter >= 2 moves to main, others go to the
//! ghost; a miss whose id is in the ghost is admitted straight to main.

use super::list::{Handle, List};
use super::{Outcome, Policy};
use crate::types::{IdMap, ObjectId, Request};

const SMALL: u8 = 0;
const MAIN: u8 = 1;
const GHOST: u8 = 2;
const FREQ_CAP: u8 = 3;
const MOVE_TO_MAIN: u8 = 2;

/// S3-FIFO. List tags hold the access counter; `map` knows each id's queue.
#[derive(Debug)]
pub struct S3Fifo {
    cap: usize,
    small_cap: usize,
    ghost_cap: usize,
    small: List,
    main: List,
    ghost: List,
    map: IdMap<(u8, Handle)>,
}

impl S3Fifo {
    /// Room for `cap` objects.
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        S3Fifo {
            cap,
            small_cap: (cap / 10).max(1),
            ghost_cap: (cap - cap / 10).max(1),
            small: List::default(),
            main: List::default(),
            ghost: List::default(),
            map: IdMap::default(),
        }
    }

    fn evict(&mut self, evicted: &mut Vec<ObjectId>) {
        if self.small.len() >= self.small_cap || self.main.is_empty() {
            self.evict_small(evicted);
        } else {
            self.evict_main(evicted);
        }
    }

    fn evict_small(&mut self, evicted: &mut Vec<ObjectId>) {
        while let Some((id, freq)) = self.small.pop_back() {
            if freq >= MOVE_TO_MAIN {
                let h = self.main.push_front(id, 0);
                self.map.insert(id, (MAIN, h));
            } else {
                evicted.push(id);
                let h = self.ghost.push_front(id, 0);
                self.map.insert(id, (GHOST, h));
                if self.ghost.len() > self.ghost_cap {
                    if let Some((old, _)) = self.ghost.pop_back() {
                        self.map.remove(&old);
                    }
                }
                return;
            }
        }
        // Everything in small was promoted: main is now over its share.
        self.evict_main(evicted);
    }

    fn evict_main(&mut self, evicted: &mut Vec<ObjectId>) {
        while let Some(t) = self.main.back() {
            let freq = self.main.tag(t);
            if freq >= 1 {
                self.main.set_tag(t, freq.min(FREQ_CAP) - 1);
                self.main.move_to_front(t);
            } else {
                let id = self.main.remove(t);
                self.map.remove(&id);
                evicted.push(id);
                return;
            }
        }
    }
}

impl Policy for S3Fifo {
    fn name(&self) -> &'static str {
        "S3FIFO"
    }
    fn capacity(&self) -> usize {
        self.cap
    }
    fn len(&self) -> usize {
        self.small.len() + self.main.len()
    }
    fn contains(&self, id: ObjectId) -> bool {
        matches!(self.map.get(&id), Some((SMALL | MAIN, _)))
    }
    fn access(&mut self, req: &Request, evicted: &mut Vec<ObjectId>) -> Outcome {
        match self.map.get(&req.id).copied() {
            Some((q @ (SMALL | MAIN), h)) => {
                let l = if q == SMALL {
                    &mut self.small
                } else {
                    &mut self.main
                };
                let f = l.tag(h);
                l.set_tag(h, (f + 1).min(FREQ_CAP));
                Outcome::HIT
            }
            other => {
                // Leave the ghost first: evicting below may push the ghost
                // tail out, and that may be this very entry.
                let was_ghost = other.is_some();
                if let Some((_, gh)) = other {
                    self.ghost.remove(gh);
                    self.map.remove(&req.id);
                }
                while self.len() >= self.cap {
                    self.evict(evicted);
                }
                if was_ghost {
                    let h = self.main.push_front(req.id, 0);
                    self.map.insert(req.id, (MAIN, h));
                } else {
                    let h = self.small.push_front(req.id, 0);
                    self.map.insert(req.id, (SMALL, h));
                }
                Outcome::ADMIT
            }
        }
    }
    fn resize(&mut self, capacity: usize, evicted: &mut Vec<ObjectId>) {
        self.cap = capacity.max(1);
        self.small_cap = (self.cap / 10).max(1);
        self.ghost_cap = (self.cap - self.cap / 10).max(1);
        while self.len() > self.cap {
            self.evict(evicted);
        }
        while self.ghost.len() > self.ghost_cap {
            if let Some((old, _)) = self.ghost.pop_back() {
                self.map.remove(&old);
            }
        }
    }
    fn remove(&mut self, id: ObjectId) -> bool {
        match self.map.get(&id).copied() {
            Some((SMALL, h)) => {
                self.small.remove(h);
            }
            Some((MAIN, h)) => {
                self.main.remove(h);
            }
            _ => return false,
        }
        self.map.remove(&id);
        true
    }
    fn check_invariants(&self) {
        self.small.check_invariants();
        self.main.check_invariants();
        self.ghost.check_invariants();
        assert_eq!(
            self.map.len(),
            self.small.len() + self.main.len() + self.ghost.len()
        );
        assert!(self.len() <= self.cap);
        assert!(self.ghost.len() <= self.ghost_cap);
    }
}
