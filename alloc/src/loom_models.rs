//! loom models of the allocator's concurrent structures, run with
//! `RUSTFLAGS="--cfg engram_loom" cargo test -p engram-alloc --release --lib loom`.
//!
//! They drive the same `SpinLock`, `Central` and live-bit code the heap uses, with
//! small slabs so loom can explore every interleaving:
//! - thread-cache refill/flush: threads claim batches from the class's central
//!   state and flush them back under the class lock; no slot is handed to two
//!   caches, and the counts add up afterwards;
//! - remote-free hand-off: a block allocated by one thread is freed by another
//!   (clearing the live bit) and returned to the central state from that thread's
//!   cache, while the first thread refills; the slot comes back exactly once;
//! - remote free to the owning arena: with two arenas (each its own lock and
//!   central state), a thread bound to arena 1 frees a block of arena 0 and
//!   returns it to arena 0 under arena 0's lock while refilling from arena 1, and
//!   the owner refills from arena 0 at the same time; the block is never handed
//!   out while live and goes home exactly once (the heap's address-to-arena
//!   routing itself is tested by `tests/tests/arenas.rs`);
//! - concurrent double free: two threads free the same block; exactly one clear of
//!   the live bit succeeds, the other sees the double free.

use loom::sync::Arc;
use loom::thread;

use crate::central::{Central, Claimed, NONE, SlabMeta, Slabs};
use crate::sync::{AtomicU8, LIVE, Ordering, SpinLock, clear_live, mark_live};

const NSLOTS: u32 = 4;
const MAX_SLABS: usize = 2;

/// A class's central state plus the out-of-band arrays it indexes, behind the lock.
struct Class {
    central: Central,
    meta: Vec<SlabMeta>,
    bits: Vec<u64>,
}

impl Class {
    fn new() -> Self {
        Class {
            central: Central::new(),
            meta: (0..MAX_SLABS).map(|_| SlabMeta::unlinked()).collect(),
            bits: vec![0; MAX_SLABS],
        }
    }

    fn claim(&mut self, out: &mut [Claimed]) -> usize {
        let Class {
            central,
            meta,
            bits,
        } = self;
        let mut v = Slabs {
            meta,
            bits,
            words: 1,
            nslots: NSLOTS,
        };
        central.claim(&mut v, out, 0, |_| true)
    }

    fn release(&mut self, c: Claimed) {
        let Class {
            central,
            meta,
            bits,
        } = self;
        let mut v = Slabs {
            meta,
            bits,
            words: 1,
            nslots: NSLOTS,
        };
        if let Some(s) = central
            .release(&mut v, c.slab, c.slot, 1)
            .expect("slot returned twice")
        {
            central.decommitted(&mut v, s);
        }
    }

    fn check(&mut self) {
        let Class {
            central,
            meta,
            bits,
        } = self;
        let v = Slabs {
            meta,
            bits,
            words: 1,
            nslots: NSLOTS,
        };
        central.check_invariants(&v).expect("central invariants");
    }
}

const EMPTY: Claimed = Claimed::BLANK;

#[test]
fn loom_refill_and_flush_never_hand_a_slot_out_twice() {
    loom::model(|| {
        let class = Arc::new(SpinLock::new(Class::new()));
        let live: Arc<Vec<AtomicU8>> = Arc::new((0..8).map(|_| AtomicU8::new(0)).collect());
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let class = class.clone();
                let live = live.clone();
                thread::spawn(move || {
                    // Refill a batch of 2, "malloc" both (set live bits), free both
                    // (clear), flush the batch back.
                    let mut batch = [EMPTY; 2];
                    let n = class.lock().claim(&mut batch);
                    for c in &batch[..n] {
                        assert!(
                            !mark_live(&live[(c.slab * NSLOTS + c.slot) as usize]),
                            "slot live twice"
                        );
                    }
                    for c in &batch[..n] {
                        assert_eq!(clear_live(&live[(c.slab * NSLOTS + c.slot) as usize]), LIVE);
                    }
                    let mut g = class.lock();
                    for c in &batch[..n] {
                        g.release(*c);
                    }
                    n
                })
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 4);
        let mut g = class.lock();
        g.check();
        assert_eq!(g.central.claimed, 0);
    });
}

#[test]
fn loom_remote_free_returns_the_slot_exactly_once() {
    loom::model(|| {
        let class = Arc::new(SpinLock::new(Class::new()));
        let live = Arc::new(AtomicU8::new(0));
        // Owner thread allocates one block and hands it to a consumer.
        let mut one = [EMPTY; 1];
        assert_eq!(class.lock().claim(&mut one), 1);
        let block = one[0];
        assert!(!mark_live(&live));
        let consumer = {
            let class = class.clone();
            let live = live.clone();
            thread::spawn(move || {
                // Remote free: clear the live bit, then flush from this thread's cache.
                assert_eq!(clear_live(&live), LIVE);
                class.lock().release(block);
            })
        };
        // Meanwhile the owner refills; it may or may not get the returned slot, but
        // never while it is still live.
        let mut more = [EMPTY; 4];
        let n = class.lock().claim(&mut more);
        for c in &more[..n] {
            if c.slot == block.slot && c.slab == block.slab {
                assert_ne!(live.load(Ordering::Acquire), LIVE);
            }
        }
        consumer.join().unwrap();
        let mut g = class.lock();
        for c in &more[..n] {
            g.release(*c);
        }
        g.check();
        assert_eq!(g.central.claimed, 0);
        assert_ne!(g.central.nslabs, 0);
        let _ = NONE;
    });
}

#[test]
fn loom_remote_free_goes_home_to_the_owning_arena() {
    // Slab indices are per arena here; a block's owner is the arena it was claimed
    // from (in the heap: the arena whose slab range holds its address).
    loom::model(|| {
        let arenas = Arc::new([SpinLock::new(Class::new()), SpinLock::new(Class::new())]);
        let live = Arc::new(AtomicU8::new(0));
        let mut one = [EMPTY; 1];
        assert_eq!(arenas[0].lock().claim(&mut one), 1);
        let block = one[0];
        assert!(!mark_live(&live));
        let remote = {
            let arenas = arenas.clone();
            let live = live.clone();
            thread::spawn(move || {
                // This thread's own arena is 1: it refills from there, and returns
                // the block it frees to arena 0, which owns it.
                let mut mine = [EMPTY; 2];
                let n = arenas[1].lock().claim(&mut mine);
                assert_eq!(clear_live(&live), LIVE);
                arenas[0].lock().release(block);
                let mut g = arenas[1].lock();
                for c in &mine[..n] {
                    g.release(*c);
                }
                n
            })
        };
        let mut more = [EMPTY; 4];
        let n = arenas[0].lock().claim(&mut more);
        for c in &more[..n] {
            // Compare the slot, not `fresh`: a reclaimed slot is no longer fresh.
            if (c.slab, c.slot) == (block.slab, block.slot) {
                assert_ne!(live.load(Ordering::Acquire), LIVE, "handed out while live");
            }
        }
        assert_eq!(remote.join().unwrap(), 2);
        let mut g0 = arenas[0].lock();
        for c in &more[..n] {
            g0.release(*c);
        }
        g0.check();
        assert_eq!(g0.central.claimed, 0, "the block went home exactly once");
        drop(g0);
        let mut g1 = arenas[1].lock();
        g1.check();
        assert_eq!(g1.central.claimed, 0);
    });
}

#[test]
fn loom_concurrent_double_free_is_seen_by_exactly_one_thread() {
    loom::model(|| {
        let live = Arc::new(AtomicU8::new(0));
        assert!(!mark_live(&live));
        let a = {
            let live = live.clone();
            thread::spawn(move || clear_live(&live))
        };
        let b = clear_live(&live);
        let a = a.join().unwrap();
        assert!(
            (a == LIVE) ^ (b == LIVE),
            "exactly one free succeeds, the other reports a double free"
        );
    });
}

#[test]
fn loom_spinlock_is_mutually_exclusive() {
    loom::model(|| {
        let lock = Arc::new(SpinLock::new(0u32));
        let t = {
            let lock = lock.clone();
            thread::spawn(move || {
                let mut g = lock.lock();
                let v = *g;
                *g = v + 1;
            })
        };
        {
            let mut g = lock.lock();
            let v = *g;
            *g = v + 1;
        }
        t.join().unwrap();
        assert_eq!(*lock.lock(), 2);
    });
}
