//! engram-alloc as Rust's `#[global_allocator]`, doing real work.
//!
//! Everything in this binary (the test harness included) allocates through
//! [`EngramAlloc`]: collections churn, eight threads freeing each other's boxes,
//! buffers growing past 1 MiB, 64- and 4096-byte alignment, and a look at
//! `engram_alloc::raw::stats()` proving the allocations were served by engram.
//! Tests run in parallel on the one heap, so counters are only compared as
//! "grew by at least".

use std::alloc::{GlobalAlloc, Layout};
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::thread;

use engram_alloc::EngramAlloc;

#[global_allocator]
static GLOBAL: EngramAlloc = EngramAlloc;

/// Sizes and keys as usize from the shared xorshift.
struct Rng(engram_tests::Rng);

impl Rng {
    fn below(&mut self, n: u64) -> usize {
        usize::try_from(self.0.below(n)).expect("n fits in usize")
    }
}

/// The byte at `i` of a buffer stamped with `seed`.
fn stamp(seed: u64, i: usize) -> u8 {
    let x =
        seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (x >> 56) as u8
}

fn stamped(seed: u64, len: usize) -> Box<[u8]> {
    (0..len).map(|i| stamp(seed, i)).collect()
}

fn check_stamped(seed: u64, buf: &[u8]) {
    if let Some(i) = (0..buf.len()).find(|&i| buf[i] != stamp(seed, i)) {
        panic!(
            "buffer {seed:#x} (len {}) damaged at byte {i}: {:#04x}",
            buf.len(),
            buf[i]
        );
    }
}

/// A counter from `raw::stats()` as u64, whatever integer type the field has.
fn count<T: TryInto<u64>>(n: T) -> u64 {
    n.try_into().unwrap_or(u64::MAX)
}

#[test]
fn collections_churn() {
    // The same operations on a HashMap and a BTreeMap must leave the same contents.
    let mut rng = Rng(engram_tests::Rng(0x2545_f491_4f6c_dd1d));
    let mut hash: HashMap<String, Vec<u64>> = HashMap::new();
    let mut tree: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for step in 0..200_000_u64 {
        let key = format!("key-{}-{}", rng.below(5000), "x".repeat(rng.below(40)));
        match rng.below(8) {
            0..=3 => {
                hash.entry(key.clone()).or_default().push(step);
                tree.entry(key).or_default().push(step);
            }
            4 | 5 => assert_eq!(hash.remove(&key), tree.remove(&key), "remove {key}"),
            6 => {
                let grow = rng.below(3000);
                let h = hash.entry(key.clone()).or_default();
                h.extend(0..grow as u64);
                h.shrink_to_fit();
                tree.entry(key).or_default().extend(0..grow as u64);
            }
            _ => assert_eq!(hash.get(&key), tree.get(&key), "get {key}"),
        }
    }
    assert_eq!(hash.len(), tree.len());
    for (k, v) in &tree {
        assert_eq!(hash.get(k), Some(v), "{k}");
    }

    // Strings: grow, split, sort, join.
    let mut text = String::new();
    for i in 0..100_000 {
        text.push_str(&format!("w{} ", i * 7919 % 100_003));
    }
    let mut words: Vec<&str> = text.split_whitespace().collect();
    words.sort_unstable();
    words.dedup();
    assert_eq!(words.len(), 100_000);
    let joined = words.join(",");
    assert_eq!(joined.len(), text.len() - 1);
    let upper: Vec<String> = words.iter().map(|w| w.to_uppercase()).collect();
    assert!(upper.iter().all(|w| w.starts_with('W')));
}

/// A box sent around the ring: a header and a payload of its own size.
struct Parcel {
    origin: usize,
    seq: u64,
    payload: Box<[u8]>,
}

impl Parcel {
    fn new(origin: usize, seq: u64, rng: &mut Rng) -> Box<Parcel> {
        // Mostly small, sometimes page-sized or larger, to reach several classes.
        let len = match rng.below(16) {
            0 => 4096 + rng.below(60_000),
            1..=3 => 512 + rng.below(3584),
            _ => 1 + rng.below(511),
        };
        Box::new(Parcel {
            origin,
            seq,
            payload: stamped(Self::seed(origin, seq), len),
        })
    }

    fn seed(origin: usize, seq: u64) -> u64 {
        ((origin as u64) << 40) | seq
    }

    fn check(&self, expected_origin: usize) {
        assert_eq!(
            self.origin, expected_origin,
            "parcel {} came the wrong way",
            self.seq
        );
        check_stamped(Self::seed(self.origin, self.seq), &self.payload);
    }
}

#[test]
fn threads_free_each_others_boxes() {
    const THREADS: usize = 8;
    const PER_THREAD: u64 = 10_000;
    // Thread t sends to thread t + 1, which checks and frees (a remote free) all but
    // one parcel in 64; those outlive the thread that received them.
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel::<Box<Parcel>>()).unzip();
    let handles: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(t, rx)| {
            let tx = txs[(t + 1) % THREADS].clone();
            let from = (t + THREADS - 1) % THREADS;
            thread::spawn(move || {
                let mut rng = Rng(engram_tests::Rng(0x517c_c1b7_2722_0a95 ^ (t as u64 + 1)));
                let mut kept = Vec::new();
                let mut received = 0;
                let mut take = |p: Box<Parcel>, kept: &mut Vec<Box<Parcel>>| {
                    p.check(from);
                    received += 1;
                    if p.seq % 64 == 0 {
                        kept.push(p);
                    }
                };
                for seq in 0..PER_THREAD {
                    tx.send(Parcel::new(t, seq, &mut rng))
                        .expect("receiver alive");
                    while let Ok(p) = rx.try_recv() {
                        take(p, &mut kept);
                    }
                }
                drop(tx);
                while let Ok(p) = rx.recv() {
                    take(p, &mut kept);
                }
                assert_eq!(received, PER_THREAD, "thread {t} lost parcels");
                kept
            })
        })
        .collect();
    drop(txs);
    let mut survivors = 0;
    for (t, h) in handles.into_iter().enumerate() {
        let kept = h.join().expect("ring thread panicked");
        let from = (t + THREADS - 1) % THREADS;
        for p in &kept {
            p.check(from);
        }
        survivors += kept.len();
        // Freed here, by a thread that neither allocated them nor is alive any more.
        drop(kept);
    }
    assert_eq!(survivors as u64, THREADS as u64 * PER_THREAD.div_ceil(64));
}

#[test]
fn large_vec_growth_past_one_mib() {
    // Doubling growth: each realloc past 1 MiB moves or extends a large block.
    let mut v: Vec<u64> = Vec::new();
    let n = 4 << 20; // 32 MiB of u64
    for i in 0..n {
        v.push((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
    // The contents survive every move of the growing block.
    for (i, x) in v.iter().enumerate() {
        assert_eq!(
            *x,
            (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            "index {i}"
        );
    }
    // Shrinking back below a page keeps the prefix.
    v.truncate(1000);
    v.shrink_to_fit();
    for (i, x) in v.iter().enumerate() {
        assert_eq!(
            *x,
            (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            "index {i}"
        );
    }

    // Byte buffers crossing 1 MiB in uneven steps.
    let mut bytes: Vec<u8> = Vec::with_capacity((1 << 20) - 7);
    let mut seed = 0;
    while bytes.len() < 6 << 20 {
        bytes.extend_from_slice(&stamped(seed, 70_001));
        seed += 1;
    }
    for (k, chunk) in bytes.chunks(70_001).enumerate() {
        let full = stamped(k as u64, 70_001);
        assert_eq!(chunk, &full[..chunk.len()], "chunk {k}");
    }

    // Zeroed large blocks stay zero even when a freed, dirtied block is reused.
    for round in 0..4 {
        let mut z = vec![0u8; (8 << 20) + round * 4096];
        assert!(
            z.iter().all(|&b| b == 0),
            "round {round}: vec![0; n] not zeroed"
        );
        z.fill(0xEE);
    }
}

#[test]
fn alignments_64_and_4096() {
    let sizes = [
        1,
        8,
        63,
        64,
        65,
        100,
        1000,
        4095,
        4096,
        4097,
        65_536,
        1 << 20,
        (1 << 20) + 1,
        3 << 20,
    ];
    for align in [64_usize, 4096] {
        for size in sizes {
            let layout = Layout::from_size_align(size, align).expect("valid layout");
            // SAFETY: `layout` has a non-zero size.
            let p = unsafe { GLOBAL.alloc(layout) };
            assert!(!p.is_null(), "alloc({size}, {align}) failed");
            assert_eq!(p.addr() % align, 0, "alloc({size}, {align}) = {p:p}");
            // SAFETY: `p` is a fresh block of `size` bytes.
            unsafe { p.write_bytes(0xA5, size) };

            let bigger = size * 2 + 1;
            // SAFETY: `p` came from `GLOBAL.alloc(layout)`; `bigger` is non-zero and
            // rounded up to `align` stays far below isize::MAX.
            let q = unsafe { GLOBAL.realloc(p, layout, bigger) };
            assert!(!q.is_null(), "realloc({size} -> {bigger}, {align}) failed");
            assert_eq!(
                q.addr() % align,
                0,
                "realloc({size} -> {bigger}, {align}) = {q:p}"
            );
            // SAFETY: `q` holds `bigger` > `size` bytes, the first `size` copied from `p`.
            let kept = unsafe { std::slice::from_raw_parts(q, size) };
            assert!(kept.iter().all(|&b| b == 0xA5), "realloc lost contents");
            let bigger_layout = Layout::from_size_align(bigger, align).expect("valid layout");
            // SAFETY: `q` is live and was allocated with `bigger_layout` by realloc.
            unsafe { GLOBAL.dealloc(q, bigger_layout) };

            // SAFETY: `layout` has a non-zero size.
            let z = unsafe { GLOBAL.alloc_zeroed(layout) };
            assert!(!z.is_null(), "alloc_zeroed({size}, {align}) failed");
            assert_eq!(z.addr() % align, 0);
            // SAFETY: `z` is a fresh block of `size` bytes.
            let zeroed = unsafe { std::slice::from_raw_parts(z, size) };
            assert!(
                zeroed.iter().all(|&b| b == 0),
                "alloc_zeroed({size}, {align}) not zero"
            );
            // SAFETY: `z` is live and was allocated with `layout`.
            unsafe { GLOBAL.dealloc(z, layout) };
        }
    }

    // The same through std types.
    #[repr(align(4096))]
    struct Page([u8; 4096]);
    #[repr(align(64))]
    struct Line([u64; 8]);
    let pages: Vec<Box<Page>> = (0..64).map(|i| Box::new(Page([i as u8; 4096]))).collect();
    for (i, page) in pages.iter().enumerate() {
        let at: *const Page = &**page;
        assert_eq!(at.addr() % 4096, 0, "Box<Page> {i} at {at:p}");
        assert!(page.0.iter().all(|&b| b == i as u8));
    }
    let lines: Vec<Line> = (0..10_000).map(|i| Line([i; 8])).collect();
    assert_eq!(lines.as_ptr().addr() % 64, 0);
    assert!(lines.iter().enumerate().all(|(i, l)| l.0 == [i as u64; 8]));
}

#[test]
fn stats_show_engram_served_the_allocations() {
    const N: usize = 10_000;
    let before = engram_alloc::raw::stats();
    let boxes: Vec<Box<[u8]>> = (0..N)
        .map(|i| vec![(i % 251) as u8 + 1; 1 + i % 700].into_boxed_slice())
        .collect();
    let during = engram_alloc::raw::stats();
    let allocs = count(during.allocs).saturating_sub(count(before.allocs));
    assert!(
        allocs >= N as u64,
        "engram counted {allocs} allocations while this test made {N}"
    );
    // A pointer engram never handed out would abort here (invalid pointer); ours
    // report exactly the requested size (docs/ALLOC_CONTRACT.md).
    for b in boxes.iter().step_by(97) {
        // SAFETY: `b` is a live, non-empty block from the global allocator, which is
        // engram; `vec![x; n].into_boxed_slice()` requested exactly `b.len()` bytes.
        let usable = unsafe { engram_alloc::raw::usable_size(b.as_ptr().cast_mut()) };
        assert_eq!(usable, b.len(), "usable_size of a {}-byte box", b.len());
    }
    drop(boxes);
    let after = engram_alloc::raw::stats();
    let frees = count(after.frees).saturating_sub(count(during.frees));
    assert!(
        frees >= N as u64,
        "engram counted {frees} frees while this test freed {N}"
    );
}
