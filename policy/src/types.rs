//! Requests, the unit every trace is turned into and every policy consumes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Object identifier. Traces with string keys hash them into this space.
pub type ObjectId = u64;

/// `next_access` of a request whose object is never requested again.
pub const NEVER: u64 = u64::MAX;

/// Read or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// A read (GET, READ(10), a KV block reuse).
    Read,
    /// A write (SET, WRITE(10)).
    Write,
    /// The owner deleted the object (CacheLib DELETE): the policy forgets
    /// it; not counted as a lookup.
    Delete,
}

/// One access. Every request is a lookup; a miss inserts (BASELINES.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Time stamp in the trace's own unit (seconds or milliseconds); only
    /// used to order and to bucket the time series.
    pub time: u64,
    /// Object id.
    pub id: ObjectId,
    /// Object size in bytes (at least 1).
    pub size: u32,
    /// Read or write.
    pub op: Op,
    /// Index of the next request to the same id, or [`NEVER`]. Filled by
    /// [`annotate_next_access`]; only the Belady oracle reads it.
    pub next_access: u64,
}

impl Request {
    /// A read of `id` with `size` bytes at `time`, next access unknown.
    pub fn read(time: u64, id: ObjectId, size: u32) -> Self {
        Request {
            time,
            id,
            size: size.max(1),
            op: Op::Read,
            next_access: NEVER,
        }
    }
}

/// A multiplicative hasher for `u64` keys (FxHash's constant). Keys are
/// already well mixed or small integers; SipHash would double the cost of
/// every policy step for no gain, and no key here is attacker-chosen.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, i: u64) {
        // Fold the high half in so ids that differ only in high bits spread.
        self.0 = ((self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)) ^ (i >> 32);
        self.0 = self.0.rotate_left(26);
    }
}

/// `HashMap` keyed by object id.
pub type IdMap<V> = HashMap<ObjectId, V, BuildHasherDefault<IdHasher>>;

/// Fill `next_access` of every request (one backward pass, O(n)): the index of
/// the next lookup of the same id, or [`NEVER`] when there is none or the owner
/// deletes the object first (the copy is gone then, so keeping it buys nothing;
/// pointing at the delete made Belady keep dead objects and lose to LRU on
/// traces with deletes). A delete's own `next_access` is [`NEVER`].
pub fn annotate_next_access(reqs: &mut [Request]) {
    let mut next: IdMap<u64> = IdMap::default();
    for (i, r) in reqs.iter_mut().enumerate().rev() {
        if r.op == Op::Delete {
            next.remove(&r.id);
            r.next_access = NEVER;
        } else {
            r.next_access = next.insert(r.id, i as u64).unwrap_or(NEVER);
        }
    }
}

/// Number of distinct ids and their total size in bytes (first size seen).
pub fn unique_objects(reqs: &[Request]) -> (usize, u64) {
    let mut seen: IdMap<()> = IdMap::default();
    let mut bytes = 0u64;
    for r in reqs {
        if seen.insert(r.id, ()).is_none() {
            bytes += u64::from(r.size);
        }
    }
    (seen.len(), bytes)
}

/// Stable 64-bit hash of a string key (FNV-1a), for traces keyed by text.
pub fn hash_key(key: &str) -> ObjectId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_access_points_forward() {
        let mut r: Vec<Request> = [1, 2, 1, 3, 2]
            .iter()
            .map(|&id| Request::read(0, id, 1))
            .collect();
        annotate_next_access(&mut r);
        let next: Vec<u64> = r.iter().map(|r| r.next_access).collect();
        assert_eq!(next, vec![2, 4, NEVER, NEVER, NEVER]);
        assert_eq!(unique_objects(&r), (3, 3));
    }

    #[test]
    fn a_delete_ends_the_chain_of_next_accesses() {
        // R1 R2 D1 R2 R1: the first read of 1 is never looked up again before
        // its delete; the read after the delete is a new life of the id.
        let mut r: Vec<Request> = [1, 2, 1, 2, 1]
            .iter()
            .map(|&id| Request::read(0, id, 1))
            .collect();
        r[2].op = Op::Delete;
        annotate_next_access(&mut r);
        let next: Vec<u64> = r.iter().map(|r| r.next_access).collect();
        assert_eq!(next, vec![NEVER, 3, NEVER, NEVER, NEVER]);
    }
}
