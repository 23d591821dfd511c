//! libengram_malloc: the C allocation ABI over engram-alloc.
//!
//! `LD_PRELOAD=libengram_malloc.so <program>` replaces the program's malloc family;
//! the staticlib does the same when linked ahead of libc. Every export forwards to
//! `engram_alloc::raw` and never panics. Behaviour follows glibc where C leaves a
//! choice (realloc(p, 0) frees, malloc(0) returns a unique pointer), the C
//! standards elsewhere (posix_memalign's EINVAL, aligned_alloc sizes of C17).
//!
//! With `ENGRAM_MALLOC=stats=1` (or `stats_fd=N`) the report line is written from a
//! `.fini_array` destructor and, for programs that leave through `_exit` (dash,
//! forked children, `vfork` children), from the `_exit`/`_Exit` exported here.

use core::ffi::{c_int, c_void};
use core::ptr;

use engram_alloc::raw;

fn set_errno(e: c_int) {
    engram_alloc::os::set_errno(e);
}

/// # Safety
/// C's malloc contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    // SAFETY: no preconditions beyond C's.
    unsafe { raw::malloc(size).cast() }
}

/// # Safety
/// C's free contract; misuse is detected and aborts.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: misuse is detected by the allocator.
    unsafe { raw::free(p.cast()) }
}

/// # Safety
/// As for `free` (old name kept by some programs).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: as in `free`.
    unsafe { raw::free(p.cast()) }
}

/// # Safety
/// C's calloc contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: overflow is checked inside.
    unsafe { raw::calloc(n, size).cast() }
}

/// # Safety
/// C's realloc contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: misuse of `p` is detected by the allocator.
    unsafe { raw::realloc(p.cast(), size).cast() }
}

/// # Safety
/// glibc's reallocarray contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    // SAFETY: as in `realloc`.
    unsafe { raw::realloc(p.cast(), total).cast() }
}

/// # Safety
/// `memptr` must be valid for a pointer write when the call succeeds.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(
    memptr: *mut *mut c_void,
    align: usize,
    size: usize,
) -> c_int {
    if !align.is_power_of_two() || align % core::mem::size_of::<*mut c_void>() != 0 {
        return libc::EINVAL;
    }
    // SAFETY: the alignment is a power of two. posix_memalign reports its
    // error in its return value and leaves errno alone (POSIX; the contract
    // in docs/ALLOC_CONTRACT.md): the ENOMEM memalign sets is undone (review
    // finding, 2026-11-25).
    let p = engram_alloc::os::keeping_errno(|| unsafe { raw::memalign(align, size) });
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller passes a writable `memptr`; it is written only on success.
    unsafe { memptr.write(p.cast()) };
    0
}

/// # Safety
/// C17 aligned_alloc: any size, a power-of-two alignment (else NULL with EINVAL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    // SAFETY: memalign checks the alignment and sets EINVAL.
    unsafe { raw::memalign(align, size).cast() }
}

/// # Safety
/// As for `malloc`. glibc's memalign: an alignment that is not a power of two
/// is rounded up to one (0 and 1 mean no constraint); one past the largest
/// power of two is EINVAL. `aligned_alloc` and `posix_memalign` stay strict.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    let align = align.max(1).checked_next_power_of_two().unwrap_or(0);
    // SAFETY: as in `aligned_alloc` (0 fails with EINVAL there).
    unsafe { raw::memalign(align, size).cast() }
}

fn page_size() -> usize {
    engram_alloc::os::PAGE
}

/// # Safety
/// As for `malloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    // SAFETY: a page is a power of two.
    unsafe { raw::memalign(page_size(), size).cast() }
}

/// # Safety
/// As for `malloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let Some(rounded) = size.max(1).checked_next_multiple_of(page_size()) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    // SAFETY: a page is a power of two.
    unsafe { raw::memalign(page_size(), rounded).cast() }
}

/// # Safety
/// `p` is null or live; anything else aborts with a report.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: misuse is detected by the allocator.
    unsafe { raw::usable_size(p.cast()) }
}

/// # Safety
/// C23 free_sized; a wrong size aborts with a report.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free_sized(p: *mut c_void, size: usize) {
    // SAFETY: misuse is detected by the allocator.
    unsafe { raw::free_sized(p.cast(), size) }
}

/// # Safety
/// C23 free_aligned_sized; a wrong size or alignment aborts with a report.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free_aligned_sized(p: *mut c_void, align: usize, size: usize) {
    // SAFETY: misuse is detected by the allocator.
    unsafe { raw::free_aligned_sized(p.cast(), align, size) }
}

/// Return free memory to the OS: 1 if any was released.
#[unsafe(no_mangle)]
pub extern "C" fn malloc_trim(_pad: usize) -> c_int {
    c_int::from(raw::trim())
}

/// glibc's `struct mallinfo2`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Mallinfo2 {
    /// Bytes obtained from the OS (committed slabs and large mappings).
    pub arena: usize,
    /// Free chunks: not tracked as chunks; 0.
    pub ordblks: usize,
    /// Fastbin blocks: none; 0.
    pub smblks: usize,
    /// Large (mmapped) blocks.
    pub hblks: usize,
    /// Bytes in large blocks.
    pub hblkhd: usize,
    /// Unused (glibc: always 0).
    pub usmblks: usize,
    /// Unused here; 0.
    pub fsmblks: usize,
    /// Bytes in use (slot-rounded, including thread caches).
    pub uordblks: usize,
    /// Committed bytes not in use.
    pub fordblks: usize,
    /// Releasable bytes at the top: the large cache.
    pub keepcost: usize,
}

/// glibc's `struct mallinfo` (int fields, saturating).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Mallinfo {
    /// See [`Mallinfo2`].
    pub arena: c_int,
    /// See [`Mallinfo2`].
    pub ordblks: c_int,
    /// See [`Mallinfo2`].
    pub smblks: c_int,
    /// See [`Mallinfo2`].
    pub hblks: c_int,
    /// See [`Mallinfo2`].
    pub hblkhd: c_int,
    /// See [`Mallinfo2`].
    pub usmblks: c_int,
    /// See [`Mallinfo2`].
    pub fsmblks: c_int,
    /// See [`Mallinfo2`].
    pub uordblks: c_int,
    /// See [`Mallinfo2`].
    pub fordblks: c_int,
    /// See [`Mallinfo2`].
    pub keepcost: c_int,
}

/// Real figures from the allocator's counters, split as glibc splits them: the
/// slabs play glibc's heap (`arena`: bytes of slabs holding pages, `uordblks`
/// the slots handed out of them, thread caches included, `fordblks` the rest),
/// large blocks its mmapped chunks (`hblks`, `hblkhd`), kept apart so that the
/// usual sums `arena + hblkhd` and `uordblks + hblkhd` count nothing twice;
/// `keepcost` is the cached large mappings malloc_trim would release.
#[unsafe(no_mangle)]
pub extern "C" fn mallinfo2() -> Mallinfo2 {
    mallinfo2_of(&raw::stats())
}

/// [`mallinfo2`]'s figures from one reading of the counters.
fn mallinfo2_of(s: &engram_alloc::Stats) -> Mallinfo2 {
    let slab_in_use = s.in_use_bytes.saturating_sub(s.large_bytes);
    let arena = s.committed_bytes.max(slab_in_use);
    Mallinfo2 {
        arena,
        hblks: s.large_blocks,
        hblkhd: s.large_bytes,
        uordblks: slab_in_use,
        fordblks: arena - slab_in_use,
        keepcost: s.large_cached_bytes,
        ..Mallinfo2::default()
    }
}

/// As [`mallinfo2`], saturated to int.
#[unsafe(no_mangle)]
pub extern "C" fn mallinfo() -> Mallinfo {
    let m = mallinfo2();
    let i = |v: usize| c_int::try_from(v).unwrap_or(c_int::MAX);
    Mallinfo {
        arena: i(m.arena),
        ordblks: i(m.ordblks),
        smblks: i(m.smblks),
        hblks: i(m.hblks),
        hblkhd: i(m.hblkhd),
        usmblks: i(m.usmblks),
        fsmblks: i(m.fsmblks),
        uordblks: i(m.uordblks),
        fordblks: i(m.fordblks),
        keepcost: i(m.keepcost),
    }
}

// glibc's internal names of the same functions. Some programs and libraries
// call them directly (to reach "the real malloc" past an interposer, or
// through old glibc hooks); left to glibc they would hand glibc heap
// pointers to engram's free (a false "invalid pointer" abort) or pass
// engram's blocks to glibc's free, which reads the bytes before them as a
// chunk header (review finding, 2026-11-25: a segfault inside glibc). They
// forward to the exports above, as mimalloc's and jemalloc's glibc
// overrides do.

/// # Safety
/// As for `malloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_malloc(size: usize) -> *mut c_void {
    // SAFETY: as in `malloc`.
    unsafe { malloc(size) }
}

/// # Safety
/// As for `free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_free(p: *mut c_void) {
    // SAFETY: as in `free`.
    unsafe { free(p) }
}

/// # Safety
/// As for `calloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: as in `calloc`.
    unsafe { calloc(n, size) }
}

/// # Safety
/// As for `realloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: as in `realloc`.
    unsafe { realloc(p, size) }
}

/// # Safety
/// As for `memalign`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_memalign(align: usize, size: usize) -> *mut c_void {
    // SAFETY: as in `memalign`.
    unsafe { memalign(align, size) }
}

/// # Safety
/// As for `valloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_valloc(size: usize) -> *mut c_void {
    // SAFETY: as in `valloc`.
    unsafe { valloc(size) }
}

/// # Safety
/// As for `pvalloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_pvalloc(size: usize) -> *mut c_void {
    // SAFETY: as in `pvalloc`.
    unsafe { pvalloc(size) }
}

/// Write `bytes` to stdio stream `fp`; false if it took fewer.
///
/// # Safety
/// `fp` is a valid `FILE *` open for writing.
unsafe fn put(fp: *mut libc::FILE, bytes: &[u8]) -> bool {
    // SAFETY: caller contract; `bytes` is a live slice.
    unsafe { libc::fwrite(bytes.as_ptr().cast(), 1, bytes.len(), fp) == bytes.len() }
}

/// glibc's malloc_stats: the allocator's figures on stderr, one per line, in
/// glibc's layout (the slabs as its arena 0, large blocks as its mmapped
/// chunks). Left to glibc it printed glibc's own, unused heap (review
/// finding, 2026-11-25).
#[unsafe(no_mangle)]
pub extern "C" fn malloc_stats() {
    let s = raw::stats();
    let m = mallinfo2_of(&s);
    let row = |label: &[u8], v: usize| {
        let mut l = engram_alloc::fault::Line::new();
        l.push(label).push(b" = ").dec(v as u64).push(b"\n");
        engram_alloc::os::write_all_no_sigpipe(2, l.as_bytes());
    };
    engram_alloc::os::write_all_no_sigpipe(2, b"Arena 0 (engram slabs):\n");
    row(b"system bytes    ", m.arena);
    row(b"in use bytes    ", m.uordblks);
    engram_alloc::os::write_all_no_sigpipe(2, b"Total (incl. mmap):\n");
    row(b"system bytes    ", m.arena + m.hblkhd);
    row(b"in use bytes    ", m.uordblks + m.hblkhd);
    row(b"mmap regions    ", m.hblks);
    row(b"mmap bytes      ", m.hblkhd);
    row(b"peak in use     ", s.peak_bytes);
}

/// glibc's malloc_info: the same figures as XML on `fp` (`options` must be
/// 0). 0 on success, -1 with EINVAL for other options.
///
/// # Safety
/// `fp` is a valid `FILE *` open for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_info(options: c_int, fp: *mut libc::FILE) -> c_int {
    if options != 0 || fp.is_null() {
        set_errno(libc::EINVAL);
        return -1;
    }
    let m = mallinfo2();
    // One element per line, each well under the line buffer's 256 bytes:
    // `<open` then ` name="value"` for each attribute.
    let elem = |open: &[u8], attrs: &[(&[u8], usize)]| {
        let mut l = engram_alloc::fault::Line::new();
        l.push(open);
        for &(name, v) in attrs {
            l.push(b" ")
                .push(name)
                .push(b"=\"")
                .dec(v as u64)
                .push(b"\"");
        }
        l.push(b"/>\n");
        l
    };
    let lines = [
        elem(b"<system type=\"current\"", &[(b"size", m.arena)]),
        elem(b"<total type=\"inuse\"", &[(b"size", m.uordblks)]),
        elem(
            b"<total type=\"mmap\"",
            &[(b"count", m.hblks), (b"size", m.hblkhd)],
        ),
        elem(
            b"<system type=\"current\"",
            &[(b"size", m.arena + m.hblkhd)],
        ),
    ];
    let parts: [&[u8]; 7] = [
        b"<malloc version=\"engram-1\">\n<heap nr=\"0\">\n",
        lines[0].as_bytes(),
        lines[1].as_bytes(),
        b"</heap>\n",
        lines[2].as_bytes(),
        lines[3].as_bytes(),
        b"</malloc>\n",
    ];
    for part in parts {
        // SAFETY: caller contract: `fp` is a writable stream.
        if !unsafe { put(fp, part) } {
            return -1;
        }
    }
    0
}

/// glibc tuning knobs do not apply to this allocator: every parameter is refused
/// (returns 0, glibc's "error"), so a program can tell nothing was changed.
/// Tuning goes through `ENGRAM_MALLOC`.
#[unsafe(no_mangle)]
pub extern "C" fn mallopt(_param: c_int, _value: c_int) -> c_int {
    0
}

extern "C" fn report_at_exit() {
    raw::report();
}

unsafe extern "C" {
    fn at_quick_exit(f: extern "C" fn()) -> c_int;
}

extern "C" fn init_at_load() {
    raw::init_at_load();
    // quick_exit runs these handlers and then glibc's internal _exit, which
    // bypasses both the destructor and our `_exit`.
    // SAFETY: registers a plain extern "C" fn valid for the process lifetime;
    // at_quick_exit may allocate, and the heap is initialised above.
    unsafe { at_quick_exit(report_at_exit) };
}

/// Runs when the library is loaded, before the program's first malloc.
#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init_at_load;

/// Runs at normal process exit (after atexit handlers).
#[used]
#[unsafe(link_section = ".fini_array")]
static FINI: extern "C" fn() = report_at_exit;

fn exit_now(status: c_int) -> ! {
    raw::report();
    loop {
        // SAFETY: exit_group ends the process; it does not return.
        unsafe { libc::syscall(libc::SYS_exit_group, status) };
    }
}

/// `_exit` that writes the report line first (dash and forked children leave this
/// way, skipping destructors).
#[unsafe(no_mangle)]
pub extern "C" fn _exit(status: c_int) -> ! {
    exit_now(status)
}

/// As [`_exit`].
#[unsafe(no_mangle)]
pub extern "C" fn _Exit(status: c_int) -> ! {
    exit_now(status)
}
