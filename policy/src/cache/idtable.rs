//! An open-addressing map from object id to a small record, stored inline:
//! one lookup is one probe run over adjacent records, usually one cache line.
//!
//! Why not `HashMap<ObjectId, u32>` plus a `Vec` of records (what the reuse
//! agents had): that costs two dependent cache misses per lookup (the hash
//! bucket, then the record it points to) on id spaces larger than the
//! caches, and those misses were most of a decision's time (policy/README.md,
//! "Decision time").
//!
//! Layout: a power-of-two array of `(id, V)` with linear probing and at most
//! half of it occupied. A position is vacant when its value says so
//! ([`Vacancy`]); there are no tombstones: removal shifts the rest of the
//! probe run back (backward-shift deletion), so a lookup stops at the first
//! vacancy. Positions are stable except across [`IdTable::remove_at`] (which
//! reports every record it moves) and growth (which [`IdTable::insert`]
//! reports); callers that keep positions fix them from those reports.
//!
//! Invariants (`check`): every occupied record is found by a lookup of its
//! id (no vacancy between its home position and it); `len` counts the
//! occupied records; `len * 2 <= capacity`.

use crate::types::ObjectId;

/// A record that can mark its position vacant.
pub(crate) trait Vacancy: Copy {
    /// The value of a vacant position.
    const VACANT: Self;
    /// Whether this value marks a vacant position.
    fn is_vacant(&self) -> bool;
}

/// One position: the id and its record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cell<V> {
    pub id: ObjectId,
    pub v: V,
}

/// The id map (see the module docs).
#[derive(Debug)]
pub(crate) struct IdTable<V: Vacancy> {
    cells: Vec<Cell<V>>,
    /// `cells.len() - 1`.
    mask: usize,
    len: usize,
}

/// The home position hash: the 64-bit finaliser of MurmurHash3, so ids that
/// differ only in a few bits (block numbers, strides) spread over the table;
/// linear probing needs that more than chaining does.
#[inline]
fn mix(id: ObjectId) -> u64 {
    let mut h = id;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

const MIN_CELLS: usize = 16;

impl<V: Vacancy> IdTable<V> {
    pub fn new() -> Self {
        IdTable {
            cells: vec![
                Cell {
                    id: 0,
                    v: V::VACANT
                };
                MIN_CELLS
            ],
            mask: MIN_CELLS - 1,
            len: 0,
        }
    }

    /// Occupied positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Positions (occupied or not): iterate `0..capacity()` with [`Self::at`].
    pub fn capacity(&self) -> usize {
        self.cells.len()
    }

    #[inline]
    fn home(&self, id: ObjectId) -> usize {
        mix(id) as usize & self.mask
    }

    /// The position of `id`, if present.
    #[inline]
    pub fn find(&self, id: ObjectId) -> Option<u32> {
        let mut i = self.home(id);
        loop {
            let c = &self.cells[i];
            if c.v.is_vacant() {
                return None;
            }
            if c.id == id {
                return Some(i as u32);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The cell at `pos` (vacant or not).
    #[inline]
    pub fn at(&self, pos: u32) -> &Cell<V> {
        &self.cells[pos as usize]
    }

    /// The record at `pos`; setting it vacant is not allowed (use
    /// [`Self::remove_at`]).
    #[inline]
    pub fn at_mut(&mut self, pos: u32) -> &mut V {
        &mut self.cells[pos as usize].v
    }

    /// Insert `id` (absent) with record `v` (not vacant). Returns its position
    /// and whether the table grew first, which moves every record: the caller
    /// then re-reads the positions it keeps.
    pub fn insert(&mut self, id: ObjectId, v: V) -> (u32, bool) {
        debug_assert!(!v.is_vacant() && self.find(id).is_none());
        let grew = (self.len + 1) * 2 > self.cells.len();
        if grew {
            self.grow();
        }
        let mut i = self.home(id);
        while !self.cells[i].v.is_vacant() {
            i = (i + 1) & self.mask;
        }
        self.cells[i] = Cell { id, v };
        self.len += 1;
        (i as u32, grew)
    }

    fn grow(&mut self) {
        self.rehash(self.cells.len() * 2);
    }

    /// Shrink to the smallest size that keeps the table at most a quarter
    /// full (at least `MIN_CELLS`) when it is under an eighth full; true if it
    /// did, which moves every record (the caller re-reads its positions, as
    /// after growth). A table that held a big id set once otherwise keeps its
    /// memory, and every full scan of it its cost, for good.
    pub fn shrink(&mut self) -> bool {
        if self.len * 8 >= self.cells.len() || self.cells.len() <= MIN_CELLS {
            return false;
        }
        let n = (self.len * 4).next_power_of_two().max(MIN_CELLS);
        if n >= self.cells.len() {
            return false;
        }
        self.rehash(n);
        true
    }

    /// Move every record into a table of `n` positions (a power of two, more
    /// than twice the records).
    fn rehash(&mut self, n: usize) {
        let old = std::mem::replace(
            &mut self.cells,
            vec![
                Cell {
                    id: 0,
                    v: V::VACANT
                };
                n
            ],
        );
        self.mask = n - 1;
        for c in old.into_iter().filter(|c| !c.v.is_vacant()) {
            let mut i = self.home(c.id);
            while !self.cells[i].v.is_vacant() {
                i = (i + 1) & self.mask;
            }
            self.cells[i] = c;
        }
    }

    /// Remove the record at `pos` (occupied). Records later in its probe run
    /// move back to close the gap; `moved(to, record)` is called for each, with
    /// its new position. Position `pos` may hold another record afterwards.
    pub fn remove_at(&mut self, pos: u32, mut moved: impl FnMut(u32, &V)) {
        let mut hole = pos as usize;
        debug_assert!(!self.cells[hole].v.is_vacant());
        self.len -= 1;
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let c = self.cells[j];
            if c.v.is_vacant() {
                break;
            }
            // The record at j may fill the hole only if its home is not in
            // (hole, j] (cyclically): otherwise a lookup from its home would
            // stop at the hole.
            let home = self.home(c.id);
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if stays {
                continue;
            }
            self.cells[hole] = c;
            moved(hole as u32, &c.v);
            hole = j;
        }
        self.cells[hole] = Cell {
            id: 0,
            v: V::VACANT,
        };
    }

    /// Assert the invariants (module docs).
    pub fn check(&self) {
        // First: `find` below relies on a vacancy to stop.
        assert!(self.len * 2 <= self.cells.len(), "load at most 1/2");
        let mut n = 0;
        for (i, c) in self.cells.iter().enumerate() {
            if c.v.is_vacant() {
                continue;
            }
            n += 1;
            assert_eq!(self.find(c.id), Some(i as u32), "record reachable");
        }
        assert_eq!(n, self.len, "len counts occupied records");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// A test record: vacant when 0.
    impl Vacancy for u32 {
        const VACANT: u32 = 0;
        fn is_vacant(&self) -> bool {
            *self == 0
        }
    }

    proptest! {
        /// Random inserts and removals against a HashMap model, with ids from a
        /// small space (long probe runs, wrap-around) and positions tracked
        /// through the move reports as the reuse agents track theirs.
        #[test]
        fn matches_a_map_model(ops in prop::collection::vec((any::<bool>(), 0u64..300), 1..2000)) {
            let mut t: IdTable<u32> = IdTable::new();
            let mut model: HashMap<ObjectId, u32> = HashMap::new();
            // Where the caller believes each id lives (kept up to date from
            // the reports).
            let mut pos: HashMap<ObjectId, u32> = HashMap::new();
            for (k, (add, id)) in ops.into_iter().enumerate() {
                let val = k as u32 + 1;
                match (add, t.find(id)) {
                    (true, None) => {
                        let (p, grew) = t.insert(id, val);
                        model.insert(id, val);
                        if grew {
                            pos = model.keys().map(|&i| (i, t.find(i).unwrap())).collect();
                        }
                        pos.insert(id, p);
                    }
                    (false, Some(p)) => {
                        prop_assert_eq!(pos[&id], p);
                        let mut moves = Vec::new();
                        t.remove_at(p, |to, &v| moves.push((to, v)));
                        model.remove(&id);
                        pos.remove(&id);
                        for (to, v) in moves {
                            let moved = *model.iter().find(|(_, x)| **x == v).unwrap().0;
                            pos.insert(moved, to);
                        }
                        // Shrinking moves every record, as growth does.
                        let before = t.capacity();
                        if t.shrink() {
                            prop_assert!(t.capacity() < before && t.len() * 4 <= t.capacity().max(64));
                            pos = model.keys().map(|&i| (i, t.find(i).unwrap())).collect();
                        }
                    }
                    (true, Some(p)) => {
                        *t.at_mut(p) = val;
                        model.insert(id, val);
                    }
                    (false, None) => prop_assert!(!model.contains_key(&id)),
                }
                t.check();
                prop_assert_eq!(t.len(), model.len());
                for (&id, &v) in &model {
                    let p = t.find(id).unwrap();
                    prop_assert_eq!(t.at(p).v, v);
                    prop_assert_eq!(pos[&id], p, "a tracked position is current");
                }
            }
        }
    }

    #[test]
    fn strided_ids_spread() {
        // Block numbers of 4 KiB pages, 1 MiB apart: a weak hash would put
        // them in one probe run.
        let mut t: IdTable<u32> = IdTable::new();
        for k in 0..10_000u64 {
            t.insert(k << 20, 1);
        }
        t.check();
        let longest = (0..t.capacity() as u32)
            .map(|p| {
                let c = t.at(p);
                if c.v.is_vacant() {
                    0
                } else {
                    (p as usize).wrapping_sub(t.home(c.id)) & t.mask
                }
            })
            .max()
            .unwrap();
        assert!(longest < 64, "longest displacement {longest}");
    }
}
