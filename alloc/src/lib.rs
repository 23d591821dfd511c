//! engram-alloc: a hardened heap allocator that aims at the speed of the fast ones.
//!
//! # Design
//! - **Out-of-band metadata.** Slab state (free bitmaps, live bitmaps, counts) and
//!   large-block records live in their own mappings; user memory, live or freed,
//!   holds nothing of the allocator's but canaries derived from a secret.
//! - **Address arithmetic.** Each size class owns a 4 GiB region cut into slabs of
//!   at least 1 MiB, each followed by a guard page. A pointer's class, slab and slot
//!   follow from its address, so a pointer that was never handed out, an interior
//!   pointer, or a pointer into a guard page is recognised before anything is read
//!   through it.
//! - **Deterministic detection.** A live bit per slot: free clears it with one atomic
//!   RMW, so a double free from any thread, with any cache state, finds it clear.
//!   Freed slots are zeroed; a reused slot that is not zero was written after free.
//!   A canary of 8 fill bytes right after the requested size, plus the slot's last
//!   word, which encodes the requested size under a secret, catches every linear
//!   overflow at free (and at realloc, which moves it).
//! - **Speed.** Per-thread caches of slot offsets (in TLS, never in freed memory,
//!   reached through one initial-exec TLS pointer: see `tls`), filled and flushed
//!   in shuffled batches. Each class is split into arenas (one per two CPUs,
//!   each owning a share of the class's slabs behind its own lock); a cache
//!   refills from the arena of the CPU it runs on, and a flush returns every slot to the arena that owns it, so
//!   cross-thread frees cost a local free plus a share of a batched return home,
//!   under no lock shared by all threads. Large blocks are cached for reuse
//!   instead of being unmapped and faulted in again, and blocks of 2 MiB and more
//!   ask for transparent huge pages.
//!
//! Nothing reachable from `malloc`/`free` allocates, logs or panics; a detected fault
//! writes one line with write(2) and aborts. See docs/ALLOC_CONTRACT.md for the
//! observable contract and `ENGRAM_MALLOC` options.
//!
//! # Use
//! ```no_run
//! #[global_allocator]
//! static A: engram_alloc::EngramAlloc = engram_alloc::EngramAlloc;
//! ```
#![cfg_attr(
    not(test),
    deny(clippy::panic, clippy::unwrap_used, clippy::expect_used)
)]
#![warn(missing_docs)]

#[cfg(not(engram_loom))]
mod config;
#[cfg(not(engram_loom))]
pub mod fault;
#[cfg(not(engram_loom))]
mod heap;
#[cfg(not(engram_loom))]
mod large;
pub mod os;
#[cfg(not(engram_loom))]
mod size_class;
#[cfg(not(engram_loom))]
mod tls;

pub mod central;
pub mod sync;

#[cfg(all(test, engram_loom))]
mod loom_models;

#[cfg(not(engram_loom))]
pub use config::{Config, MAX_ARENAS, QUARANTINE_MAX, TCACHE_MAX};

#[cfg(not(engram_loom))]
pub use api::*;

#[cfg(not(engram_loom))]
mod api {
    use core::alloc::{GlobalAlloc, Layout};
    use core::sync::atomic::Ordering;

    use crate::heap;

    /// The allocator as a Rust global allocator.
    ///
    /// ```no_run
    /// #[global_allocator]
    /// static A: engram_alloc::EngramAlloc = engram_alloc::EngramAlloc;
    /// ```
    pub struct EngramAlloc;

    // SAFETY: every method forwards to `raw`, which returns blocks of at least the
    // requested size and alignment that no other live block overlaps, and frees only
    // blocks it handed out (anything else aborts).
    unsafe impl GlobalAlloc for EngramAlloc {
        #[inline]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if layout.align() <= 16 {
                heap::malloc(layout.size())
            } else {
                // SAFETY: Layout guarantees a power-of-two alignment.
                unsafe { raw::memalign(layout.align(), layout.size()) }
            }
        }

        #[inline]
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            if layout.align() <= 16 {
                // SAFETY: calloc has no preconditions.
                unsafe { raw::calloc(1, layout.size()) }
            } else {
                // SAFETY: as in `alloc`.
                let p = unsafe { raw::memalign(layout.align(), layout.size()) };
                if !p.is_null() {
                    // SAFETY: `p` is a fresh block of `layout.size()` bytes.
                    unsafe { core::ptr::write_bytes(p, 0, layout.size()) };
                }
                p
            }
        }

        #[inline]
        unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
            // SAFETY: the GlobalAlloc contract says `ptr` came from this allocator.
            unsafe { raw::free(ptr) }
        }

        #[inline]
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if layout.align() <= 16 {
                // SAFETY: `ptr` is live and ours (GlobalAlloc contract).
                unsafe { raw::realloc(ptr, new_size) }
            } else {
                // SAFETY: as in `alloc`.
                let new = unsafe { raw::memalign(layout.align(), new_size) };
                if !new.is_null() {
                    // SAFETY: both blocks are live, distinct and at least
                    // min(old, new) bytes long.
                    unsafe {
                        core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        raw::free(ptr);
                    }
                }
                new
            }
        }
    }

    /// Process-wide figures, as `mallinfo2` and the report line show them.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Stats {
        /// Blocks handed out (approximate for other running threads: their counts
        /// are folded in on their slow paths).
        pub allocs: u64,
        /// Blocks freed (same caveat).
        pub frees: u64,
        /// Bytes held by the program and the thread caches (slot-rounded), plus
        /// large mappings in use.
        pub in_use_bytes: usize,
        /// Peak of `in_use_bytes`.
        pub peak_bytes: usize,
        /// Bytes of committed slabs.
        pub committed_bytes: usize,
        /// Live large blocks.
        pub large_blocks: usize,
        /// Bytes of live large mappings.
        pub large_bytes: usize,
        /// Bytes of freed large mappings kept for reuse.
        pub large_cached_bytes: usize,
        /// Faults detected (only non-zero in the report written just before abort).
        pub faults: u64,
    }

    /// The C-shaped entry points. `ffi/malloc` exports them under their C names.
    pub mod raw {
        use super::*;
        use crate::fault::Op;
        use crate::os;

        /// malloc(3): `size` bytes aligned to 16; null with ENOMEM on failure.
        ///
        /// # Safety
        /// None beyond C's: the block must be freed at most once, through this
        /// allocator.
        #[inline]
        pub unsafe fn malloc(size: usize) -> *mut u8 {
            heap::malloc(size)
        }

        /// calloc(3): zeroed; null with ENOMEM if `n * size` overflows.
        ///
        /// # Safety
        /// As for [`malloc`].
        pub unsafe fn calloc(n: usize, size: usize) -> *mut u8 {
            let Some(total) = n.checked_mul(size) else {
                os::set_errno(libc::ENOMEM);
                return core::ptr::null_mut();
            };
            let p = heap::malloc(total);
            if !p.is_null() && !zero_guaranteed(p) {
                // SAFETY: `p` is a fresh block of `total` bytes.
                unsafe { core::ptr::write_bytes(p, 0, total) };
            }
            p
        }

        /// With zero-on-free on, every block is handed out zero: slots and cached
        /// large blocks are zeroed at free and checked at reuse, new mappings are
        /// zero. With it off, calloc clears the block itself.
        fn zero_guaranteed(_p: *mut u8) -> bool {
            heap::config().zero
        }

        /// free(3). Null is a no-op; anything not live aborts with a report.
        ///
        /// # Safety
        /// `p` is null or a pointer the program believes live; misuse is detected
        /// and aborts rather than corrupting memory.
        #[inline]
        pub unsafe fn free(p: *mut u8) {
            if !p.is_null() {
                heap::free(p, Op::Free, None);
            }
        }

        /// free_sized (C23): as free, and aborts if `size` is not the block's size.
        ///
        /// # Safety
        /// As for [`free`].
        pub unsafe fn free_sized(p: *mut u8, size: usize) {
            if !p.is_null() {
                heap::free(p, Op::FreeSized, Some((size, 16)));
            }
        }

        /// free_aligned_sized (C23): as free_sized; the alignment must be one the
        /// block has.
        ///
        /// # Safety
        /// As for [`free`].
        pub unsafe fn free_aligned_sized(p: *mut u8, align: usize, size: usize) {
            if p.is_null() {
                return;
            }
            if !align.is_power_of_two() {
                crate::fault::fatal(
                    crate::fault::Fault::SizeMismatch,
                    Op::FreeAlignedSized,
                    p as usize,
                );
            }
            heap::check_alignment(p, align, size);
            heap::free(p, Op::FreeAlignedSized, Some((size, align)));
        }

        /// realloc(3). `realloc(p, 0)` frees `p` and returns null (glibc's
        /// behaviour); on failure `p` is untouched and null is returned with ENOMEM.
        ///
        /// # Safety
        /// As for [`free`].
        pub unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8 {
            if p.is_null() {
                return heap::malloc(size);
            }
            let old = heap::usable_size(p, Op::Realloc);
            if size == 0 {
                heap::free(p, Op::Realloc, None);
                return core::ptr::null_mut();
            }
            if heap::resize_in_place(p, old, size) {
                return p;
            }
            let moved = heap::grow_large(p, old, size);
            if !moved.is_null() {
                return moved;
            }
            let new = heap::malloc(size);
            if new.is_null() {
                return new;
            }
            // SAFETY: `p` is live with `old` bytes, `new` is a distinct fresh block of
            // `size` bytes.
            unsafe { core::ptr::copy_nonoverlapping(p, new, old.min(size)) };
            heap::free(p, Op::Realloc, None);
            new
        }

        /// memalign(3) with a power-of-two `align` (others: null with EINVAL).
        ///
        /// # Safety
        /// As for [`malloc`].
        pub unsafe fn memalign(align: usize, size: usize) -> *mut u8 {
            if !align.is_power_of_two() {
                os::set_errno(libc::EINVAL);
                return core::ptr::null_mut();
            }
            if align <= 16 {
                return heap::malloc(size);
            }
            heap::malloc_slow(size, align)
        }

        /// malloc_usable_size(3): the requested size of a live block; 0 for null.
        ///
        /// # Safety
        /// As for [`free`]: a non-live pointer aborts with a report.
        pub unsafe fn usable_size(p: *mut u8) -> usize {
            if p.is_null() {
                return 0;
            }
            heap::usable_size(p, Op::UsableSize)
        }

        /// malloc_trim(3): return free memory to the OS; true if any was.
        pub fn trim() -> bool {
            heap::trim()
        }

        /// Current figures.
        pub fn stats() -> Stats {
            let c = &heap::COUNTERS;
            let (a, f) = heap::thread_counts();
            let (large_blocks, large_bytes, large_cached_bytes) = crate::large::totals();
            Stats {
                allocs: c.allocs.load(Ordering::Relaxed) + a,
                frees: c.frees.load(Ordering::Relaxed) + f,
                in_use_bytes: c.in_use.load(Ordering::Relaxed),
                peak_bytes: c.peak.load(Ordering::Relaxed),
                committed_bytes: c.committed.load(Ordering::Relaxed),
                large_blocks,
                large_bytes,
                large_cached_bytes,
                faults: c.faults.load(Ordering::Relaxed),
            }
        }

        /// Write the report line now (at most once per process) if `stats` is on.
        /// ffi/malloc calls it from a destructor and from `_exit`.
        pub fn report() {
            heap::report();
        }

        /// Initialise the heap now (ffi/malloc's constructor): it records the
        /// process as the owner of the report line (written only by it or a
        /// forked child, never by a vfork child sharing its memory) and
        /// registers the atfork handlers before the program can fork.
        pub fn init_at_load() {
            heap::init_at_load();
        }

        /// The options in force.
        pub fn config() -> crate::Config {
            heap::config()
        }
    }
}
