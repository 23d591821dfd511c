//! Model-based test of `engram_alloc::raw`.
//!
//! proptest generates sequences of malloc / calloc / realloc / memalign / free
//! and runs them against the allocator and a reference model: a `BTreeMap` of
//! the live blocks keyed by address. After every step the model's invariants
//! are checked against memory:
//!
//! - no two live blocks overlap (each owns `[addr, addr + max(usable, 1))`, so
//!   zero-size blocks must have distinct addresses too);
//! - every block is aligned as requested (16 bytes at least for sizes of 16 or
//!   more) and `usable_size >= requested`;
//! - every block still holds its own pattern (head and tail after each step,
//!   every byte before realloc and free);
//! - realloc keeps the prefix `min(old, new)` and calloc memory reads as zero.

use std::collections::BTreeMap;

use engram_alloc::raw;
use proptest::prelude::*;
use proptest::sample::Index;

/// Bytes checked at each end of every block after every step.
const EDGE: usize = 16;

#[derive(Clone, Debug)]
enum Op {
    Malloc(usize),
    Calloc(usize, usize),
    Realloc(Index, usize),
    /// `memalign(1 << shift, size)`
    Memalign(u32, usize),
    Free(Index),
}

/// Sizes biased to the small classes, both sides of the 128 KiB small/large
/// limit, and some large blocks.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0usize..=128,
        3 => 129usize..=4096,
        2 => 4097usize..=(64 << 10),
        2 => ((128usize << 10) - 64)..=((128 << 10) + 64),
        1 => ((128usize << 10) + 65)..=(1 << 20),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => size().prop_map(Op::Malloc),
        1 => (1usize..=16, 0usize..=8192).prop_map(|(n, s)| Op::Calloc(n, s)),
        3 => (any::<Index>(), size()).prop_map(|(i, s)| Op::Realloc(i, s)),
        1 => (0u32..=16, size()).prop_map(|(a, s)| Op::Memalign(a, s)),
        4 => any::<Index>().prop_map(Op::Free),
    ]
}

/// What the model knows of a live block.
#[derive(Debug)]
struct Live {
    size: usize,
    usable: usize,
    seed: u8,
}

impl Live {
    /// End of the address range the block owns.
    fn end(&self, addr: usize) -> usize {
        addr + self.usable.max(1)
    }
}

fn pattern(seed: u8, i: usize) -> u8 {
    seed ^ (i as u8).wrapping_mul(29) ^ (i >> 8) as u8 ^ (i >> 16) as u8
}

/// The model: live blocks by address.
struct Model {
    live: BTreeMap<usize, Live>,
    seeds: u8,
}

impl Model {
    fn fill(addr: usize, from: usize, to: usize, seed: u8) {
        let p = addr as *mut u8;
        for i in from..to {
            // SAFETY: the block at `addr` is live with at least `to` bytes.
            unsafe { p.add(i).write(pattern(seed, i)) };
        }
    }

    fn verify(addr: usize, range: std::ops::Range<usize>, seed: u8, what: &str) {
        let p = addr as *const u8;
        for i in range {
            // SAFETY: callers pass ranges inside the live block at `addr`.
            let got = unsafe { p.add(i).read() };
            assert_eq!(got, pattern(seed, i), "{what}: block {addr:#x} byte {i}");
        }
    }

    /// Checks a block just returned by the allocator and records it.
    fn admit(&mut self, p: *mut u8, size: usize, align: usize, seed: Option<u8>, what: &str) {
        assert!(!p.is_null(), "{what}({size}) returned null");
        let addr = p as usize;
        let align = align.max(if size >= 16 { 16 } else { 8 });
        assert_eq!(
            addr % align,
            0,
            "{what}({size}) = {addr:#x}: not {align}-aligned"
        );
        // SAFETY: `p` is a live block just returned by the allocator.
        let usable = unsafe { raw::usable_size(p) };
        assert!(usable >= size, "{what}({size}): usable_size {usable}");
        let b = Live {
            size,
            usable,
            seed: seed.unwrap_or_else(|| {
                self.seeds = self.seeds.wrapping_add(97);
                self.seeds
            }),
        };
        if let Some((&a, prev)) = self.live.range(..=addr).next_back() {
            assert!(
                prev.end(a) <= addr,
                "{what}({size}) = {addr:#x} overlaps live [{a:#x}, {:#x})",
                prev.end(a)
            );
        }
        if let Some((&a, _)) = self.live.range(addr..).next() {
            assert!(
                b.end(addr) <= a,
                "{what}({size}) = [{addr:#x}, {:#x}) overlaps live block at {a:#x}",
                b.end(addr)
            );
        }
        self.live.insert(addr, b);
    }

    fn nth(&self, i: &Index) -> Option<usize> {
        if self.live.is_empty() {
            return None;
        }
        self.live.keys().nth(i.index(self.live.len())).copied()
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Malloc(size) => {
                // SAFETY: malloc has no preconditions.
                let p = unsafe { raw::malloc(size) };
                self.admit(p, size, 1, None, "malloc");
                Self::fill(p as usize, 0, size, self.live[&(p as usize)].seed);
            }
            Op::Calloc(n, size) => {
                // SAFETY: calloc has no preconditions.
                let p = unsafe { raw::calloc(n, size) };
                let total = n * size;
                self.admit(p, total, 1, None, "calloc");
                for i in 0..total {
                    // SAFETY: the block has `total` bytes.
                    let v = unsafe { p.add(i).read() };
                    assert_eq!(v, 0, "calloc({n}, {size}) byte {i}");
                }
                Self::fill(p as usize, 0, total, self.live[&(p as usize)].seed);
            }
            Op::Memalign(shift, size) => {
                let align = 1usize << shift;
                // SAFETY: `align` is a power of two.
                let p = unsafe { raw::memalign(align, size) };
                self.admit(p, size, align, None, "memalign");
                Self::fill(p as usize, 0, size, self.live[&(p as usize)].seed);
            }
            Op::Realloc(ref i, size) => {
                let Some(addr) = self.nth(i) else { return };
                // realloc(p, 0) is implementation-defined; ask for one byte.
                let size = size.max(1);
                let old = self.live.remove(&addr).expect("picked from the map");
                Self::verify(addr, 0..old.size, old.seed, "before realloc");
                // SAFETY: `addr` is a live block; it is not used again (a null
                // return fails the test below).
                let p = unsafe { raw::realloc(addr as *mut u8, size) };
                assert!(!p.is_null(), "realloc({addr:#x}, {size}) returned null");
                let keep = old.size.min(size);
                Self::verify(p as usize, 0..keep, old.seed, "prefix kept by realloc");
                self.admit(p, size, 1, Some(old.seed), "realloc");
                Self::fill(p as usize, keep, size, old.seed);
            }
            Op::Free(ref i) => {
                let Some(addr) = self.nth(i) else { return };
                let b = self.live.remove(&addr).expect("picked from the map");
                Self::verify(addr, 0..b.size, b.seed, "before free");
                // SAFETY: a live block, freed once.
                unsafe { raw::free(addr as *mut u8) };
            }
        }
    }

    /// No overlap between neighbours, usable size unchanged, edges intact.
    fn check_invariants(&self) {
        let mut prev_end = 0;
        for (&addr, b) in &self.live {
            assert!(prev_end <= addr, "live blocks overlap at {addr:#x}");
            prev_end = b.end(addr);
            // SAFETY: `addr` is a live block.
            let usable = unsafe { raw::usable_size(addr as *mut u8) };
            assert_eq!(
                usable, b.usable,
                "usable_size of {addr:#x} changed while live"
            );
            let head = 0..b.size.min(EDGE);
            let tail = b.size.saturating_sub(EDGE)..b.size;
            Self::verify(addr, head, b.seed, "head after a step");
            Self::verify(addr, tail, b.seed, "tail after a step");
        }
    }

    fn free_all(&mut self) {
        while let Some((addr, b)) = self.live.pop_first() {
            Self::verify(addr, 0..b.size, b.seed, "at the end");
            // SAFETY: a live block, freed once.
            unsafe { raw::free(addr as *mut u8) };
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    })]

    #[test]
    fn raw_allocator_matches_model(ops in prop::collection::vec(op(), 1..200)) {
        let mut m = Model { live: BTreeMap::new(), seeds: 0 };
        for op in &ops {
            m.apply(op);
            m.check_invariants();
        }
        m.free_all();
    }
}
