//! engram's benchmarks: shared helpers for the criterion benches in `benches/`.
//!
//! The criterion files compare allocators side by side through [`RawAlloc`], a
//! C-shaped malloc/free/realloc interface implemented by [`Engram`]
//! (`engram_alloc::raw`) and [`System`] (the C library's `malloc`, glibc on
//! Debian). Whole-process comparisons against mimalloc and jemalloc are in
//! `benches/compare.sh`; see `benches/README.md`.

/// A C-shaped allocator under test, called through associated functions so a
/// bench can be generic over it and still compile to direct calls.
///
/// # Safety
/// Implementors must behave like C's `malloc`, `free` and `realloc`: `malloc`
/// returns null or a block of at least `size` bytes aligned to at least 16 that
/// overlaps no other live block; `free` and `realloc` accept any pointer that
/// `malloc`/`realloc` of the same implementor returned and that is still live,
/// from any thread.
pub unsafe trait RawAlloc: 'static {
    /// The name used in benchmark IDs (`malloc_free/<NAME>/64`).
    const NAME: &'static str;

    /// `malloc(size)`.
    ///
    /// # Safety
    /// The block must later be released exactly once, through [`RawAlloc::free`]
    /// or [`RawAlloc::realloc`] of the same implementor.
    unsafe fn malloc(size: usize) -> *mut u8;

    /// `free(p)`.
    ///
    /// # Safety
    /// `p` is null or a live block from this implementor's `malloc`/`realloc`;
    /// it is not used afterwards.
    unsafe fn free(p: *mut u8);

    /// `realloc(p, size)`.
    ///
    /// # Safety
    /// As for [`RawAlloc::free`]; on success `p` is dead and the result is live.
    unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8;
}

/// engram's allocator through `engram_alloc::raw`, all hardening defaults on
/// (or as `ENGRAM_MALLOC` sets them).
pub struct Engram;

// SAFETY: engram_alloc::raw implements the C malloc contract (docs/ALLOC_CONTRACT.md).
unsafe impl RawAlloc for Engram {
    const NAME: &'static str = "engram";

    #[inline]
    unsafe fn malloc(size: usize) -> *mut u8 {
        // SAFETY: the caller frees the block once, through `Engram` (trait contract).
        unsafe { engram_alloc::raw::malloc(size) }
    }

    #[inline]
    unsafe fn free(p: *mut u8) {
        // SAFETY: `p` is null or live from `Engram` (trait contract).
        unsafe { engram_alloc::raw::free(p) }
    }

    #[inline]
    unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: `p` is null or live from `Engram` (trait contract).
        unsafe { engram_alloc::raw::realloc(p, size) }
    }
}

/// The C library's allocator (`libc::malloc`: glibc's ptmalloc on Debian).
pub struct System;

// SAFETY: libc's malloc family is the reference implementation of the contract.
unsafe impl RawAlloc for System {
    const NAME: &'static str = "system";

    #[inline]
    unsafe fn malloc(size: usize) -> *mut u8 {
        // SAFETY: plain malloc(3); the caller frees the block through `System`.
        unsafe { libc::malloc(size).cast() }
    }

    #[inline]
    unsafe fn free(p: *mut u8) {
        // SAFETY: `p` is null or live from `System` (trait contract).
        unsafe { libc::free(p.cast()) }
    }

    #[inline]
    unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: `p` is null or live from `System` (trait contract).
        unsafe { libc::realloc(p.cast(), size).cast() }
    }
}

/// `1024` → `"1KiB"`, `64` → `"64"`: the parameter part of a benchmark ID.
pub fn size_label(size: usize) -> String {
    const MIB: usize = 1 << 20;
    const KIB: usize = 1 << 10;
    if size >= MIB && size % MIB == 0 {
        format!("{}MiB", size / MIB)
    } else if size >= KIB && size % KIB == 0 {
        format!("{}KiB", size / KIB)
    } else {
        size.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(size_label(16), "16");
        assert_eq!(size_label(1024), "1KiB");
        assert_eq!(size_label(128 << 10), "128KiB");
        assert_eq!(size_label(1 << 20), "1MiB");
        assert_eq!(size_label(1500), "1500");
    }

    fn round_trip<A: RawAlloc>() {
        // SAFETY: each block is written within its size and released once.
        unsafe {
            let p = A::malloc(100);
            assert!(!p.is_null());
            assert_eq!(p as usize % 16, 0);
            p.write_bytes(0xab, 100);
            let q = A::realloc(p, 5000);
            assert!(!q.is_null());
            assert_eq!(q.add(99).read(), 0xab);
            A::free(q);
        }
    }

    #[test]
    fn system_round_trip() {
        round_trip::<System>();
    }

    #[test]
    fn engram_round_trip() {
        round_trip::<Engram>();
    }
}
