//! The calling thread's cache, found without a call, in `libengram_malloc.so`.
//!
//! Rust's `thread_local!` in a shared library compiles to the general-dynamic TLS
//! model: every access calls `__tls_get_addr` (about 4 % of a malloc/free pair in
//! `libengram_malloc.so`). An initial-exec variable is one `fs:`-relative address.
//! Stable Rust has no `#[thread_local]` or `tls-model` switch, so on x86_64 Linux the
//! thread cache itself is declared in assembly: `size_of::<ThreadCache>()` bytes of
//! `.tbss`, reached through its `@GOTTPOFF` slot.
//!
//! No `__tls_get_addr` is on the allocator's path at all then. That matters
//! beyond speed: `__tls_get_addr` may find the thread's DTV stale (a library
//! with TLS was dlopen'ed since the thread started) and grow it with malloc,
//! and a malloc that reached its own cache through `__tls_get_addr` would
//! re-enter it from there (until 2026-11-25 the cache was a `thread_local!`
//! whose address was looked up once per thread that way: glibc 2.36 coped,
//! found by review, but it was one glibc change away from endless
//! recursion). `.tbss` is zero-filled in every thread, and a zeroed
//! `ThreadCache` is a valid one that has not been set up (`T_UNINIT`).
//!
//! Without the `initial-exec-tls` feature, or off x86_64 Linux, [`cache`] is a
//! `thread_local!` (in an executable that is already local-exec: one
//! `fs:`-relative address, no call).
//!
//! The price: a library with initial-exec TLS is marked `DF_STATIC_TLS`, and its
//! whole TLS block (the thread cache, about 15 KiB) must then fit glibc's static
//! surplus to be dlopen'ed, which it does not. So only `libengram_malloc.so`,
//! which is preloaded or linked, turns the feature on (Debian's libjemalloc is
//! built the same way and cannot be dlopen'ed either); a library that may be
//! dlopen'ed (Python loading `libengram`) keeps it off.

#[cfg(all(
    feature = "initial-exec-tls",
    target_arch = "x86_64",
    target_os = "linux"
))]
mod imp {
    use crate::heap::ThreadCache;

    core::arch::global_asm!(
        ".pushsection .tbss,\"awT\",@nobits",
        ".p2align 6",
        ".globl engram_tc",
        ".hidden engram_tc",
        ".type engram_tc, @object",
        ".size engram_tc, {bytes}",
        "engram_tc:",
        ".zero {bytes}",
        ".popsection",
        bytes = const core::mem::size_of::<ThreadCache>(),
    );

    const _: () = assert!(core::mem::align_of::<ThreadCache>() <= 64);

    /// This thread's cache (zero-filled until its first use).
    #[inline(always)]
    pub fn cache() -> *mut ThreadCache {
        let p: *mut ThreadCache;
        // SAFETY: `fs:0` holds the thread pointer itself (x86_64 TLS ABI) and the
        // GOT slot the variable's offset from it (the dynamic linker fills it at
        // load time): their sum is this thread's own `engram_tc`, 64-aligned and
        // `size_of::<ThreadCache>()` bytes of zero-initialised `.tbss`.
        unsafe {
            core::arch::asm!(
                "mov {p}, qword ptr fs:[0]",
                "add {p}, qword ptr [rip + engram_tc@GOTTPOFF]",
                p = out(reg) p,
                options(nostack, readonly, pure),
            );
        }
        p
    }
}

#[cfg(not(all(
    feature = "initial-exec-tls",
    target_arch = "x86_64",
    target_os = "linux"
)))]
mod imp {
    use core::cell::UnsafeCell;

    use crate::heap::ThreadCache;

    thread_local! {
        // No Drop impl: this compiles to plain TLS with no lazy registration,
        // which is what lets malloc use it. Teardown goes through a pthread key
        // (`heap::init_thread`).
        static TC: UnsafeCell<ThreadCache> = const { UnsafeCell::new(ThreadCache::EMPTY) };
    }

    /// This thread's cache.
    #[inline]
    pub fn cache() -> *mut ThreadCache {
        TC.with(|c| c.get())
    }
}

pub(crate) use imp::cache;
