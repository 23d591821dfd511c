//! One pointer of initial-exec TLS: the calling thread's cache, found without a call.
//!
//! Rust's `thread_local!` in a shared library compiles to the general-dynamic TLS
//! model: every access calls `__tls_get_addr` (about 4 % of a malloc/free pair in
//! `libengram_malloc.so`). An initial-exec variable is one `fs:`-relative load.
//! Stable Rust has no `#[thread_local]` or `tls-model` switch, so on x86_64 Linux the
//! variable is declared in assembly: 8 bytes of `.tbss`, reached through its
//! `@GOTTPOFF` slot.
//!
//! The pointer starts null in every thread (`.tbss` is zero-filled) and is set once,
//! from `thread_local!`, on the thread's first slow-path call. Without the
//! `initial-exec-tls` feature, or off x86_64 Linux, [`get`] always returns null
//! and callers use `thread_local!` alone.
//!
//! The price: a library with initial-exec TLS is marked `DF_STATIC_TLS`, and its
//! whole TLS block (the thread cache, about 15 KiB) must then fit glibc's static
//! surplus to be dlopen'ed, which it does not. So only `libengram_malloc.so`,
//! which is preloaded or linked, turns the feature on (Debian's libjemalloc is
//! built the same way and cannot be dlopen'ed either); a library that may be
//! dlopen'ed (Python loading `libengram`) keeps it off. In an executable
//! `thread_local!` is already local-exec and the feature gains nothing.

#[cfg(all(
    feature = "initial-exec-tls",
    target_arch = "x86_64",
    target_os = "linux"
))]
mod imp {
    core::arch::global_asm!(
        ".pushsection .tbss,\"awT\",@nobits",
        ".p2align 3",
        ".globl engram_tc_ptr",
        ".hidden engram_tc_ptr",
        ".type engram_tc_ptr, @object",
        ".size engram_tc_ptr, 8",
        "engram_tc_ptr:",
        ".zero 8",
        ".popsection",
    );

    /// This thread's stored pointer, or null if none was stored yet.
    #[inline(always)]
    pub fn get() -> *mut u8 {
        let p: *mut u8;
        // SAFETY: the GOT slot holds the variable's offset from the thread pointer
        // (the dynamic linker fills it at load time), and `fs:` addresses this
        // thread's TLS; the 8 bytes are our own zero-initialised `.tbss` variable.
        unsafe {
            core::arch::asm!(
                "mov {p}, qword ptr [rip + engram_tc_ptr@GOTTPOFF]",
                "mov {p}, qword ptr fs:[{p}]",
                p = out(reg) p,
                options(nostack, preserves_flags, readonly, pure),
            );
        }
        p
    }

    /// Store `v` as this thread's pointer.
    #[inline]
    pub fn set(v: *mut u8) {
        // SAFETY: as in `get`: the write goes to this thread's own 8-byte variable.
        unsafe {
            core::arch::asm!(
                "mov {t}, qword ptr [rip + engram_tc_ptr@GOTTPOFF]",
                "mov qword ptr fs:[{t}], {v}",
                t = out(reg) _,
                v = in(reg) v,
                options(nostack, preserves_flags),
            );
        }
    }
}

#[cfg(not(all(
    feature = "initial-exec-tls",
    target_arch = "x86_64",
    target_os = "linux"
)))]
mod imp {
    /// Always null: callers use `thread_local!` alone.
    #[inline(always)]
    pub fn get() -> *mut u8 {
        core::ptr::null_mut()
    }

    /// Nothing to store.
    #[inline]
    pub fn set(_: *mut u8) {}
}

pub use imp::{get, set};
