//! A byte string read as a sequence of allocator operations, checked as it runs.
//!
//! The fuzz target `fuzz/fuzz_targets/alloc_ops.rs` and the seed replay test
//! (`tests/tests/fuzz_seeds.rs`) feed bytes to [`run`]. [`decode`] turns them into
//! [`Op`]s and [`execute`] performs them through `engram_alloc::raw` on a table
//! of at most [`MAX_LIVE`] live blocks. Every live block is filled with a
//! pattern of its own; the pattern is verified before each realloc and free,
//! and after a realloc the kept prefix must be intact. Each new block must be
//! aligned, have `usable_size >= requested`, overlap no live block, and a calloc
//! block must read as zero. Impossible requests must fail with null. Whatever is
//! still live at the end is verified and freed. A broken rule panics.
//!
//! # Byte format
//!
//! ```text
//! op     := opcode:u8 args            opcode % 8 picks the op
//! 0 malloc      size
//! 1 calloc      size count:u8         count = 1 + count % 16, elem = size / count
//! 2 realloc     slot:u8 size          slot picks a live block (slot % live)
//! 3 memalign    shift:u8 size         align = 1 << (shift % 17), up to 64 KiB
//! 4 free        slot:u8
//! 5 free_sized  slot:u8
//! 6 usable_size slot:u8
//! 7 impossible  which:u8              an impossible request (which % 5)
//! size   := sel:u8 v:u16le            sel % 8 picks a range, see `decode_size`
//! ```
//!
//! A truncated op at the end is dropped. Sizes are biased to the 16-byte small
//! classes, to both sides of the 128 KiB small/large limit and to large blocks
//! up to 4 MiB; live bytes are capped at [`MAX_LIVE_BYTES`] by freeing the
//! oldest blocks first.

use engram_alloc::raw;

/// Most blocks live at once; allocating past it frees the oldest first.
pub const MAX_LIVE: usize = 64;
/// Most bytes live at once; allocating past it frees the oldest first.
pub const MAX_LIVE_BYTES: usize = 64 << 20;
/// The largest size [`decode`] produces (4 MiB + 1).
pub const MAX_SIZE: usize = (4 << 20) + 1;
/// The alignment `malloc` guarantees for blocks of 16 bytes or more.
const MIN_ALIGN: usize = 16;

/// One allocator operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `malloc(size)`
    Malloc {
        /// Requested bytes.
        size: usize,
    },
    /// `calloc(n, size)`
    Calloc {
        /// Element count.
        n: usize,
        /// Element size.
        size: usize,
    },
    /// `realloc(live[slot % live], size)`
    Realloc {
        /// Picks the block.
        slot: u8,
        /// New size (0 is read as 1: `realloc(p, 0)` is implementation-defined).
        size: usize,
    },
    /// `memalign(align, size)`
    Memalign {
        /// A power of two, 1 ..= 64 KiB.
        align: usize,
        /// Requested bytes.
        size: usize,
    },
    /// `free(live[slot % live])`
    Free {
        /// Picks the block.
        slot: u8,
    },
    /// `free_sized(live[slot % live], size)` with the block's requested size.
    FreeSized {
        /// Picks the block.
        slot: u8,
    },
    /// `malloc_usable_size(live[slot % live])`
    UsableSize {
        /// Picks the block.
        slot: u8,
    },
    /// A request no allocator can meet; must return null.
    Impossible {
        /// Which one (`which % 5`), see [`execute`].
        which: u8,
    },
}

/// How many kinds of [`Op`] there are.
pub const OP_KINDS: usize = 8;

impl Op {
    /// The op's number in the byte format (`opcode % 8`).
    pub fn kind(&self) -> usize {
        match self {
            Op::Malloc { .. } => 0,
            Op::Calloc { .. } => 1,
            Op::Realloc { .. } => 2,
            Op::Memalign { .. } => 3,
            Op::Free { .. } => 4,
            Op::FreeSized { .. } => 5,
            Op::UsableSize { .. } => 6,
            Op::Impossible { .. } => 7,
        }
    }
}

struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }
}

fn decode_size(r: &mut Reader<'_>) -> Option<usize> {
    let sel = r.byte()?;
    let v = usize::from(r.u16()?);
    Some(match sel % 8 {
        // The 16-byte classes, malloc(0) included.
        0 | 1 => v % 129,
        2 => v % 1025,
        3 => v % (16 << 10),
        // Both sides of the 128 KiB small/large limit.
        4 => (128 << 10) - 256 + v % 513,
        // Whole pages up to 4 MiB.
        5 => (v % 1024 + 1) << 12,
        // Any size from 128 KiB to 4 MiB.
        6 => (128 << 10) + v * 61,
        // Powers of two and their neighbours, 1 B .. 4 MiB + 1.
        _ => {
            let p = 1usize << (v % 23);
            (p + (v >> 5) % 3).saturating_sub(1)
        }
    })
}

/// Reads `data` as ops; a truncated op at the end is dropped.
pub fn decode(data: &[u8]) -> Vec<Op> {
    let mut r = Reader { data };
    let mut ops = Vec::new();
    while let Some(op) = decode_one(&mut r) {
        ops.push(op);
    }
    ops
}

fn decode_one(r: &mut Reader<'_>) -> Option<Op> {
    Some(match r.byte()? % 8 {
        0 => Op::Malloc {
            size: decode_size(r)?,
        },
        1 => {
            let total = decode_size(r)?;
            let n = 1 + usize::from(r.byte()? % 16);
            Op::Calloc { n, size: total / n }
        }
        2 => Op::Realloc {
            slot: r.byte()?,
            size: decode_size(r)?,
        },
        3 => Op::Memalign {
            align: 1 << (r.byte()? % 17),
            size: decode_size(r)?,
        },
        4 => Op::Free { slot: r.byte()? },
        5 => Op::FreeSized { slot: r.byte()? },
        6 => Op::UsableSize { slot: r.byte()? },
        _ => Op::Impossible { which: r.byte()? },
    })
}

/// Decodes `data` and executes it; panics on the first broken rule.
pub fn run(data: &[u8]) {
    execute(&decode(data));
}

/// A live block and what it must still hold.
struct Block {
    ptr: *mut u8,
    /// Requested bytes; `[ptr, ptr + size)` holds the pattern.
    size: usize,
    /// `usable_size` when it was allocated; it must not change while live.
    usable: usize,
    /// Pattern seed, unique per allocation.
    seed: u64,
    /// From memalign: `free_sized` doesn't apply (it would be free_aligned_sized).
    aligned: bool,
}

fn pattern(seed: u64, i: usize) -> u8 {
    let s = seed.to_le_bytes();
    s[0] ^ s[1].wrapping_add(i as u8) ^ (i >> 8) as u8 ^ (i >> 16) as u8
}

/// Fills `[from, to)` of the block at `ptr` with its pattern.
///
/// # Safety
/// `ptr .. ptr + to` must be writable and owned by the caller.
unsafe fn fill(ptr: *mut u8, from: usize, to: usize, seed: u64) {
    for i in from..to {
        // SAFETY: `i < to`, and the caller guarantees `ptr + to` is writable.
        unsafe { ptr.add(i).write(pattern(seed, i)) };
    }
}

/// Panics unless `[0, len)` of the block at `ptr` holds its pattern.
///
/// Compares 4 KiB chunks as slices (one memcmp each) rather than byte by byte:
/// under cargo-fuzz every byte comparison is a coverage callback, which made the
/// fuzz target run at about 10 inputs per second.
///
/// # Safety
/// `ptr .. ptr + len` must be readable and owned by the caller.
unsafe fn verify(ptr: *mut u8, len: usize, seed: u64, what: &str) {
    let mut want = [0u8; 4096];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(want.len());
        for (k, w) in want[..n].iter_mut().enumerate() {
            *w = pattern(seed, at + k);
        }
        // SAFETY: `at + n <= len`, and the caller guarantees `ptr + len` is readable.
        let got = unsafe { std::slice::from_raw_parts(ptr.add(at), n) };
        if got != &want[..n] {
            let k = got
                .iter()
                .zip(&want[..n])
                .position(|(g, w)| g != w)
                .unwrap_or(0);
            panic!(
                "{what}: block {ptr:p} byte {} is {:#04x}, its pattern says {:#04x}",
                at + k,
                got[k],
                want[k]
            );
        }
        at += n;
    }
}

/// Panics unless `[0, len)` at `ptr` is zero (chunked, as in [`verify`]).
///
/// # Safety
/// `ptr .. ptr + len` must be readable and owned by the caller.
unsafe fn verify_zero(ptr: *mut u8, len: usize, what: &str) {
    const ZEROS: [u8; 4096] = [0; 4096];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(ZEROS.len());
        // SAFETY: `at + n <= len`, and the caller guarantees `ptr + len` is readable.
        let got = unsafe { std::slice::from_raw_parts(ptr.add(at), n) };
        if got != &ZEROS[..n] {
            let k = got.iter().position(|&b| b != 0).unwrap_or(0);
            panic!("{what} at {ptr:p}: byte {} is {:#x}", at + k, got[k]);
        }
        at += n;
    }
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn set_errno(v: i32) {
    // SAFETY: __errno_location returns this thread's errno, always valid.
    unsafe { *libc::__errno_location() = v };
}

/// The live table and the counters of one run.
struct State {
    live: Vec<Block>,
    live_bytes: usize,
    next_seed: u64,
}

impl State {
    fn seed(&mut self) -> u64 {
        self.next_seed = self.next_seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.next_seed
    }

    /// Frees the oldest blocks until one more of `size` bytes fits both caps.
    fn make_room(&mut self, size: usize) {
        while !self.live.is_empty()
            && (self.live.len() >= MAX_LIVE || self.live_bytes + size > MAX_LIVE_BYTES)
        {
            let b = self.live.remove(0);
            self.release(b, false);
        }
    }

    /// Checks a block just handed out and adds it to the table.
    fn admit(&mut self, ptr: *mut u8, size: usize, align: usize, what: &str) -> &mut Block {
        assert!(!ptr.is_null(), "{what}: null for {size} bytes");
        let need = if size >= MIN_ALIGN { MIN_ALIGN } else { 8 };
        let align = align.max(need);
        assert!(
            (ptr as usize) % align == 0,
            "{what}: {ptr:p} for {size} bytes is not {align}-aligned"
        );
        // SAFETY: `ptr` is a live block just returned by the allocator.
        let usable = unsafe { raw::usable_size(ptr) };
        assert!(
            usable >= size,
            "{what}: usable_size {usable} < requested {size} at {ptr:p}"
        );
        // A zero-size block still owns its (unique) address.
        let (lo, hi) = (ptr as usize, ptr as usize + usable.max(1));
        for b in &self.live {
            let (blo, bhi) = (b.ptr as usize, b.ptr as usize + b.usable.max(1));
            assert!(
                hi <= blo || bhi <= lo,
                "{what}: [{lo:#x}, {hi:#x}) overlaps live block [{blo:#x}, {bhi:#x})"
            );
        }
        let seed = self.seed();
        self.live_bytes += size;
        self.live.push(Block {
            ptr,
            size,
            usable,
            seed,
            aligned: false,
        });
        self.live.last_mut().expect("just pushed")
    }

    /// Verifies and frees a block taken out of the table.
    fn release(&mut self, b: Block, sized: bool) {
        // SAFETY: `b` was live in the table, so its `size` bytes are ours.
        unsafe { verify(b.ptr, b.size, b.seed, "before free") };
        self.live_bytes -= b.size;
        if sized && !b.aligned {
            // SAFETY: a live block from malloc/calloc/realloc, freed once, with
            // the size it was requested with.
            unsafe { raw::free_sized(b.ptr, b.size) };
        } else {
            // SAFETY: a live block from this allocator, freed once.
            unsafe { raw::free(b.ptr) };
        }
    }

    fn pick(&self, slot: u8) -> Option<usize> {
        (!self.live.is_empty()).then(|| usize::from(slot) % self.live.len())
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Malloc { size } => {
                self.make_room(size);
                // SAFETY: malloc has no preconditions.
                let p = unsafe { raw::malloc(size) };
                let b = self.admit(p, size, 1, "malloc");
                // SAFETY: the block has `size` writable bytes.
                unsafe { fill(b.ptr, 0, b.size, b.seed) };
            }
            Op::Calloc { n, size } => {
                let total = n * size;
                self.make_room(total);
                // SAFETY: calloc has no preconditions.
                let p = unsafe { raw::calloc(n, size) };
                let b = self.admit(p, total, 1, "calloc");
                // SAFETY: the block has `total` readable bytes.
                unsafe { verify_zero(b.ptr, total, &format!("calloc({n}, {size})")) };
                // SAFETY: the block has `total` writable bytes.
                unsafe { fill(b.ptr, 0, b.size, b.seed) };
            }
            Op::Memalign { align, size } => {
                self.make_room(size);
                // SAFETY: `align` is a power of two (decode builds it as 1 << k).
                let p = unsafe { raw::memalign(align, size) };
                let b = self.admit(p, size, align, "memalign");
                b.aligned = true;
                // SAFETY: the block has `size` writable bytes.
                unsafe { fill(b.ptr, 0, b.size, b.seed) };
            }
            Op::Realloc { slot, size } => {
                let Some(i) = self.pick(slot) else { return };
                let size = size.max(1);
                let old = self.live.swap_remove(i);
                // SAFETY: `old` was live, its `size` bytes are ours.
                unsafe { verify(old.ptr, old.size, old.seed, "before realloc") };
                self.live_bytes -= old.size;
                self.make_room(size);
                // SAFETY: `old.ptr` is live and owned; it is not used again unless
                // realloc fails and leaves it live.
                let p = unsafe { raw::realloc(old.ptr, size) };
                assert!(
                    !p.is_null(),
                    "realloc({:p}, {} -> {size}) returned null",
                    old.ptr,
                    old.size
                );
                let keep = old.size.min(size);
                // SAFETY: realloc returned a block of at least `size >= keep` bytes.
                unsafe { verify(p, keep, old.seed, "kept prefix after realloc") };
                let b = self.admit(p, size, 1, "realloc");
                // Keep the old seed: the prefix already holds its pattern.
                b.seed = old.seed;
                // SAFETY: the block has `size` writable bytes.
                unsafe { fill(b.ptr, keep, b.size, b.seed) };
            }
            Op::Free { slot } | Op::FreeSized { slot } => {
                let Some(i) = self.pick(slot) else { return };
                let b = self.live.swap_remove(i);
                self.release(b, matches!(op, Op::FreeSized { .. }));
            }
            Op::UsableSize { slot } => {
                let Some(i) = self.pick(slot) else { return };
                let b = &self.live[i];
                // SAFETY: `b.ptr` is live.
                let u = unsafe { raw::usable_size(b.ptr) };
                assert!(
                    u == b.usable,
                    "usable_size({:p}) changed from {} to {u} while live",
                    b.ptr,
                    b.usable
                );
            }
            Op::Impossible { which } => self.impossible(which),
        }
    }

    fn impossible(&mut self, which: u8) {
        set_errno(0);
        let (what, p, enomem) = match which % 5 {
            0 => {
                // SAFETY: malloc has no preconditions.
                let p = unsafe { raw::malloc(usize::MAX) };
                ("malloc(usize::MAX)", p, true)
            }
            1 => {
                // SAFETY: calloc has no preconditions; n * size overflows.
                let p = unsafe { raw::calloc(usize::MAX / 2 + 1, 2) };
                ("calloc(usize::MAX / 2 + 1, 2)", p, true)
            }
            2 => {
                // SAFETY: calloc has no preconditions; n * size overflows.
                let p = unsafe { raw::calloc(1 << 33, 1 << 33) };
                ("calloc(1 << 33, 1 << 33)", p, true)
            }
            3 => {
                // SAFETY: 64 is a power of two.
                let p = unsafe { raw::memalign(64, usize::MAX - 100) };
                ("memalign(64, usize::MAX - 100)", p, false)
            }
            _ => {
                let Some(b) = self.live.last() else { return };
                // SAFETY: `b.ptr` is live; a failed realloc leaves it live.
                let p = unsafe { raw::realloc(b.ptr, usize::MAX - 4096) };
                assert!(
                    p.is_null(),
                    "realloc({:p}, usize::MAX - 4096) = {p:p}",
                    b.ptr
                );
                // SAFETY: the block is still live and its `size` bytes are ours.
                unsafe { verify(b.ptr, b.size, b.seed, "after a failed realloc") };
                return;
            }
        };
        assert!(p.is_null(), "{what} returned {p:p}, not null");
        if enomem {
            assert_eq!(last_errno(), libc::ENOMEM, "{what}: errno");
        }
    }
}

/// Executes `ops` on a fresh table; frees whatever is live at the end.
pub fn execute(ops: &[Op]) {
    let mut st = State {
        live: Vec::with_capacity(MAX_LIVE),
        live_bytes: 0,
        next_seed: 0,
    };
    for &op in ops {
        st.apply(op);
    }
    while let Some(b) = st.live.pop() {
        st.release(b, false);
    }
    assert_eq!(st.live_bytes, 0, "live byte count out of step");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_op_and_drops_a_truncated_tail() {
        let bytes = [
            0, 0, 24, 0, // malloc 24
            9, 4, 0, 0, 3, // calloc (128K - 256) / 4
            2, 5, 7, 1, 0, // realloc slot 5 -> (1 << 1) - 1
            3, 16, 0, 64, 0, // memalign 64 KiB, 64
            4, 1, 5, 2, 6, 3, 7, 0, // free, free_sized, usable_size, impossible
            0, 1, // truncated malloc
        ];
        let ops = decode(&bytes);
        assert_eq!(
            ops,
            vec![
                Op::Malloc { size: 24 },
                Op::Calloc {
                    n: 4,
                    size: ((128 << 10) - 256) / 4
                },
                Op::Realloc { slot: 5, size: 1 },
                Op::Memalign {
                    align: 1 << 16,
                    size: 64
                },
                Op::Free { slot: 1 },
                Op::FreeSized { slot: 2 },
                Op::UsableSize { slot: 3 },
                Op::Impossible { which: 0 },
            ]
        );
        let mut kinds: Vec<usize> = ops.iter().map(Op::kind).collect();
        kinds.dedup();
        assert_eq!(kinds, (0..OP_KINDS).collect::<Vec<_>>());
    }

    #[test]
    fn sizes_stay_in_range() {
        for sel in 0..8u8 {
            for v in [0u16, 1, 31, 32, 64, 4095, 65535] {
                let b = v.to_le_bytes();
                let s = decode_size(&mut Reader {
                    data: &[sel, b[0], b[1]],
                })
                .expect("three bytes");
                assert!(s <= MAX_SIZE, "sel {sel} v {v}: {s}");
            }
        }
    }
}
