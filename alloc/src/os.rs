//! The OS page layer: reserve, commit, decommit, guard, and the few raw syscalls the
//! allocator needs (write for fault reports, getrandom for secrets).
//!
//! Every function here is a thin wrapper over one syscall. None allocates, logs or
//! panics; failures come back as `false` / null so the caller decides (malloc returns
//! NULL with ENOMEM, a fault path aborts). Other engram layers reuse this module for
//! their own reservations.

use core::ptr;

/// Page size this layer assumes; the heap's init checks it against `sysconf` and
/// aborts with a one-line report on a kernel with other pages.
pub const PAGE: usize = 4096;

/// Reserve `len` bytes of address space with no access and no swap accounting.
///
/// Postcondition: the range reads as zero once committed; null on failure.
pub fn reserve(len: usize) -> *mut u8 {
    try_reserve(len).unwrap_or(ptr::null_mut())
}

/// As [`reserve`], with the mmap's errno on failure (for the layers above,
/// which report it: `reserve` leaves the caller's errno as it was).
pub fn try_reserve(len: usize) -> Result<*mut u8, i32> {
    let mut err = 0;
    let p = keeping_errno(|| {
        // SAFETY: an anonymous private mapping at a kernel-chosen address
        // touches no existing memory; the result is checked against MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            err = errno();
        }
        p
    });
    if p == libc::MAP_FAILED {
        Err(err)
    } else {
        Ok(p.cast())
    }
}

/// Map `len` fresh zeroed read-write bytes at a kernel-chosen address; null on failure.
pub fn map_rw(len: usize) -> *mut u8 {
    // SAFETY: as in `reserve`: a new anonymous mapping aliases nothing.
    let p = keeping_errno(|| unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    });
    if p == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        p.cast()
    }
}

/// Make `[p, p+len)` readable and writable (commit).
///
/// # Safety
/// `p` is page-aligned and the range lies inside a mapping this crate owns; no live
/// Rust reference covers it with a conflicting assumption.
pub unsafe fn commit(p: *mut u8, len: usize) -> bool {
    // SAFETY: the caller guarantees the range is ours and page-aligned.
    keeping_errno(|| unsafe {
        libc::mprotect(p.cast(), len, libc::PROT_READ | libc::PROT_WRITE) == 0
    })
}

/// Make `[p, p+len)` inaccessible (guard).
///
/// # Safety
/// As for [`commit`]; additionally nothing may still use the range.
pub unsafe fn protect_none(p: *mut u8, len: usize) -> bool {
    // SAFETY: the caller guarantees the range is ours, page-aligned and unused.
    keeping_errno(|| unsafe { libc::mprotect(p.cast(), len, libc::PROT_NONE) == 0 })
}

/// Drop the pages of `[p, p+len)`; they read as zero afterwards and RSS drops now.
///
/// # Safety
/// The range is a page-aligned private anonymous mapping of ours holding no live data.
pub unsafe fn decommit(p: *mut u8, len: usize) -> bool {
    // SAFETY: the caller guarantees no live data is in the range; DONTNEED on a
    // private anonymous mapping only replaces pages by zero pages.
    keeping_errno(|| unsafe { libc::madvise(p.cast(), len, libc::MADV_DONTNEED) == 0 })
}

/// Which pages of `[p, p + pages * PAGE)` are resident: bit 0 of each `out` byte.
/// False if the kernel refused (the caller then treats every page as resident).
///
/// # Safety
/// `p` is page-aligned, the range is mapped, and `out` holds at least `pages` bytes.
pub unsafe fn resident(p: *mut u8, pages: usize, out: &mut [u8]) -> bool {
    debug_assert!(out.len() >= pages);
    // SAFETY: the caller guarantees the range is mapped and `out` is big enough.
    keeping_errno(|| unsafe { libc::mincore(p.cast(), pages * PAGE, out.as_mut_ptr()) == 0 })
}

/// [`write_all`] with SIGPIPE held off: the report goes to a pipe whose reader
/// (`engram run`) may be gone, and a program that leaves normally must not be
/// killed by SIGPIPE on its way out. A SIGPIPE raised by this write is
/// consumed; one already pending before stays pending.
pub fn write_all_no_sigpipe(fd: i32, buf: &[u8]) {
    // SAFETY: all-zero sigset_t values are valid and initialised below by
    // sigemptyset / pthread_sigmask / sigpending; the timeout is a local.
    unsafe {
        let mut block: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        let mut pending: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut block);
        libc::sigaddset(&mut block, libc::SIGPIPE);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old) != 0 {
            write_all(fd, buf);
            return;
        }
        libc::sigpending(&mut pending);
        let was_pending = libc::sigismember(&pending, libc::SIGPIPE) == 1;
        // A stale EPIPE from the program's own writes must not look like ours.
        set_errno(0);
        write_all(fd, buf);
        if !was_pending && errno() == libc::EPIPE {
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            libc::sigtimedwait(&block, ptr::null_mut(), &zero);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut());
    }
}

/// True if `fd` is open on a pipe whose inode is `ino`.
pub fn is_pipe_with_inode(fd: i32, ino: u64) -> bool {
    // SAFETY: an all-zero `stat` is a valid value of the plain C struct.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is a valid out-parameter; fstat on a bad descriptor fails
    // with EBADF and writes nothing.
    let ok = unsafe { libc::fstat(fd, &mut st) } == 0;
    ok && st.st_mode & libc::S_IFMT == libc::S_IFIFO && st.st_ino == ino
}

/// Replace `[p, p+len)` by an inaccessible reservation: its pages go back to the
/// OS, as with [`unmap`], but the addresses stay ours, so no new mapping lands
/// there until [`unmap`]. False if the kernel refused (the range is unchanged).
///
/// # Safety
/// The range is a page-aligned mapping of ours that nothing uses any more.
pub unsafe fn vacate(p: *mut u8, len: usize) -> bool {
    // SAFETY: MAP_FIXED replaces only `[p, p+len)`, which the caller guarantees is
    // ours and unused; the result is checked against MAP_FAILED.
    let q = keeping_errno(|| unsafe {
        libc::mmap(
            p.cast(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
            -1,
            0,
        )
    });
    q != libc::MAP_FAILED
}

/// Reserve `[p, p+len)` (inaccessible, no memory) if nothing is mapped there;
/// false if something is, or the kernel refused. Never replaces a mapping
/// (MAP_FIXED_NOREPLACE; a kernel that takes the address as a hint and maps
/// elsewhere gets that mapping back at once).
pub fn reserve_at(p: *mut u8, len: usize) -> bool {
    // SAFETY: MAP_FIXED_NOREPLACE creates a new anonymous mapping only where
    // nothing is mapped; the result is checked against MAP_FAILED.
    let q = keeping_errno(|| unsafe {
        libc::mmap(
            p.cast(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE
                | libc::MAP_ANONYMOUS
                | libc::MAP_NORESERVE
                | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    });
    if q == p.cast() {
        return true;
    }
    if q != libc::MAP_FAILED {
        // SAFETY: the mapping was just made here and nothing uses it.
        unsafe { unmap(q.cast(), len) };
    }
    false
}

/// Unmap `[p, p+len)`.
///
/// # Safety
/// The range is a page-aligned mapping of ours that nothing uses any more.
pub unsafe fn unmap(p: *mut u8, len: usize) {
    // SAFETY: the caller guarantees the range is ours and unused. A failing munmap
    // leaves the mapping in place, which only costs address space.
    keeping_errno(|| unsafe { libc::munmap(p.cast(), len) });
}

/// Write all of `buf` to `fd`, retrying on EINTR and short writes; errors are dropped
/// (a fault report must never fail the abort that follows it).
pub fn write_all(fd: i32, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid readable slice for its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n > 0 {
            buf = &buf[n as usize..];
        } else if n < 0 && errno() == libc::EINTR {
            continue;
        } else {
            return;
        }
    }
}

/// 64 random bits from the kernel, or a mix of address and clock bits if getrandom is
/// refused (seccomp, very old kernels).
pub fn random_u64() -> u64 {
    let mut v: u64 = 0;
    // SAFETY: `v` is a valid 8-byte buffer on our stack; raw syscall, no allocation.
    let n = keeping_errno(|| unsafe {
        libc::syscall(
            libc::SYS_getrandom,
            (&raw mut v).cast::<u8>(),
            8usize,
            libc::GRND_NONBLOCK,
        )
    });
    if n == 8 {
        return v;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let stack = (&raw const v) as u64;
    mix64(stack ^ (ts.tv_nsec as u64).rotate_left(32) ^ ts.tv_sec as u64)
}

/// CPUs this process may run on (its affinity mask), at least 1. No allocation:
/// the mask lives on the stack.
pub fn cpu_count() -> usize {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: `set` is a valid out-parameter of the size passed; pid 0 = this thread.
    let ok = keeping_errno(|| unsafe {
        libc::sched_getaffinity(0, core::mem::size_of_val(&set), &mut set)
    }) == 0;
    if !ok {
        return 1;
    }
    // SAFETY: `set` was filled by the kernel.
    (unsafe { libc::CPU_COUNT(&set) } as usize).max(1)
}

/// The CPU the calling thread runs on now (0 if the kernel will not say). glibc
/// answers from the thread's rseq area without a system call where it can.
#[inline]
pub fn current_cpu() -> usize {
    // SAFETY: sched_getcpu has no preconditions and does not allocate.
    let cpu = unsafe { libc::sched_getcpu() };
    if cpu < 0 { 0 } else { cpu as usize }
}

/// Run `f` (system calls whose failure the allocator handles itself) and put
/// the thread's errno back as it was: a malloc that succeeds leaves errno
/// alone, as glibc's does (a failed MAP_FIXED_NOREPLACE used to leave EEXIST
/// behind a successful realloc), and one that fails sets ENOMEM explicitly.
#[inline]
pub fn keeping_errno<T>(f: impl FnOnce() -> T) -> T {
    let saved = errno();
    let r = f();
    set_errno(saved);
    r
}

/// The thread's errno.
pub fn errno() -> i32 {
    // SAFETY: __errno_location always returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Set the thread's errno.
pub fn set_errno(e: i32) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = e };
}

/// The process id (a raw syscall: glibc caches it, and that cache is wrong in a
/// child made by a raw clone).
pub fn pid() -> i32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::syscall(libc::SYS_getpid) as i32 }
}

/// Abort the process (SIGABRT), never returning.
pub fn abort() -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// A strong 64-bit mixer (splitmix64 finaliser); not cryptographic, used to derive
/// per-slot canaries from the process secret.
#[inline]
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Ask for transparent huge pages on `[p, p+len)` (a hint; errors are ignored).
///
/// # Safety
/// The range lies inside a mapping this crate owns.
pub unsafe fn advise_huge(p: *mut u8, len: usize) {
    // SAFETY: the caller guarantees the range is ours; MADV_HUGEPAGE changes no
    // contents.
    keeping_errno(|| unsafe { libc::madvise(p.cast(), len, libc::MADV_HUGEPAGE) });
}

#[cfg(all(test, not(engram_loom)))]
mod tests {
    use super::*;

    /// A reservation the kernel refuses reports its errno, and leaves the
    /// caller's errno as it was (the layers above print the errno: it read
    /// 0 once `reserve` started restoring it).
    #[test]
    fn a_refused_reservation_reports_its_errno() {
        set_errno(777);
        assert_eq!(try_reserve(1 << 62), Err(libc::ENOMEM));
        assert_eq!(errno(), 777);
        assert!(reserve(1 << 62).is_null());
        let p = try_reserve(1 << 20).expect("a 1 MiB reservation");
        // SAFETY: our own reservation, used by nobody.
        unsafe { unmap(p, 1 << 20) };
    }
}
