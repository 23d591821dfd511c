//! ARC (Megiddo & Modha, FAST'03, Figure 4), unit-size objects.
//!
//! T1/T2 hold resident objects seen once / at least twice, B1/B2 their ghost
//! histories; `p` is the adaptive target size of T1, moved by ghost hits.
//! The adaptation steps use integer division, as the paper's
//! `max(|B2|/|B1|, 1)` reads for counts.

use super::list::{Handle, List};
use super::{Outcome, Policy};
use crate::types::{IdMap, ObjectId, Request};

const T1: u8 = 0;
const T2: u8 = 1;
const B1: u8 = 2;
const B2: u8 = 3;

/// Adaptive replacement cache.
#[derive(Debug)]
pub struct Arc {
    c: usize,
    p: usize,
    lists: [List; 4],
    map: IdMap<(u8, Handle)>,
}

impl Arc {
    /// Room for `cap` objects.
    pub fn new(cap: usize) -> Self {
        Arc {
            c: cap.max(1),
            p: 0,
            lists: Default::default(),
            map: IdMap::default(),
        }
    }

    fn len_of(&self, l: u8) -> usize {
        self.lists[l as usize].len()
    }

    /// Move the LRU end of `from` to the MRU end of `to`.
    fn shift(&mut self, from: u8, to: u8) -> Option<ObjectId> {
        let (id, _) = self.lists[from as usize].pop_back()?;
        let h = self.lists[to as usize].push_front(id, to);
        self.map.insert(id, (to, h));
        Some(id)
    }

    fn drop_lru(&mut self, l: u8) -> Option<ObjectId> {
        let (id, _) = self.lists[l as usize].pop_back()?;
        self.map.remove(&id);
        Some(id)
    }

    /// The paper's REPLACE(x, p).
    fn replace(&mut self, in_b2: bool, evicted: &mut Vec<ObjectId>) {
        let t1 = self.len_of(T1);
        let victim = if t1 >= 1 && ((in_b2 && t1 == self.p) || t1 > self.p) {
            self.shift(T1, B1)
        } else if self.len_of(T2) > 0 {
            self.shift(T2, B2)
        } else {
            self.shift(T1, B1)
        };
        evicted.extend(victim);
    }
}

impl Policy for Arc {
    fn name(&self) -> &'static str {
        "ARC"
    }
    fn capacity(&self) -> usize {
        self.c
    }
    fn len(&self) -> usize {
        self.len_of(T1) + self.len_of(T2)
    }
    fn contains(&self, id: ObjectId) -> bool {
        matches!(self.map.get(&id), Some((T1 | T2, _)))
    }
    fn access(&mut self, req: &Request, evicted: &mut Vec<ObjectId>) -> Outcome {
        let x = req.id;
        match self.map.get(&x).copied() {
            // Case I: hit.
            Some((l @ (T1 | T2), h)) => {
                self.lists[l as usize].remove(h);
                let h = self.lists[T2 as usize].push_front(x, T2);
                self.map.insert(x, (T2, h));
                Outcome::HIT
            }
            // Case II/III: ghost hit; adapt p, make room, admit into T2.
            Some((g, h)) => {
                let (b1, b2) = (self.len_of(B1), self.len_of(B2));
                if g == B1 {
                    let delta = if b1 >= b2 { 1 } else { b2 / b1 };
                    self.p = (self.p + delta).min(self.c);
                } else {
                    let delta = if b2 >= b1 { 1 } else { b1 / b2 };
                    self.p = self.p.saturating_sub(delta);
                }
                self.lists[g as usize].remove(h);
                self.map.remove(&x);
                // The paper's cache is always full once it has ghosts; after a
                // delete or a resize up it may not be, and then nothing is
                // demoted to make room.
                if self.len() >= self.c {
                    self.replace(g == B2, evicted);
                }
                let h = self.lists[T2 as usize].push_front(x, T2);
                self.map.insert(x, (T2, h));
                Outcome::ADMIT
            }
            // Case IV: a complete miss.
            None => {
                let l1 = self.len_of(T1) + self.len_of(B1);
                let total = l1 + self.len_of(T2) + self.len_of(B2);
                if l1 >= self.c {
                    if self.len_of(T1) < self.c {
                        self.drop_lru(B1);
                        if self.len() >= self.c {
                            self.replace(false, evicted);
                        }
                    } else {
                        evicted.extend(self.drop_lru(T1));
                    }
                } else if total >= self.c {
                    if total >= 2 * self.c {
                        self.drop_lru(B2);
                    }
                    if self.len() >= self.c {
                        self.replace(false, evicted);
                    }
                }
                let h = self.lists[T1 as usize].push_front(x, T1);
                self.map.insert(x, (T1, h));
                Outcome::ADMIT
            }
        }
    }
    fn resize(&mut self, capacity: usize, evicted: &mut Vec<ObjectId>) {
        self.c = capacity.max(1);
        self.p = self.p.min(self.c);
        while self.len() > self.c {
            self.replace(false, evicted);
        }
        // Ghosts: keep |T1| + |B1| <= c and the directory <= 2c.
        while self.len_of(T1) + self.len_of(B1) > self.c && self.drop_lru(B1).is_some() {}
        while self.lists.iter().map(List::len).sum::<usize>() > 2 * self.c {
            if self.drop_lru(B2).is_none() && self.drop_lru(B1).is_none() {
                break;
            }
        }
    }
    fn remove(&mut self, id: ObjectId) -> bool {
        match self.map.get(&id).copied() {
            Some((l @ (T1 | T2), h)) => {
                self.lists[l as usize].remove(h);
                self.map.remove(&id);
                true
            }
            _ => false,
        }
    }
    fn check_invariants(&self) {
        for l in &self.lists {
            l.check_invariants();
        }
        let all: usize = self.lists.iter().map(List::len).sum();
        assert_eq!(all, self.map.len());
        assert!(self.len() <= self.c, "T1 + T2 <= c");
        assert!(self.len_of(T1) + self.len_of(B1) <= self.c, "T1 + B1 <= c");
        assert!(all <= 2 * self.c, "directory <= 2c");
        assert!(self.p <= self.c);
    }
}
