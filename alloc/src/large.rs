//! Large blocks (above 128 KiB, or aligned past a page): one mapping each with a
//! guard page after it, recorded out of band in an open-addressing table keyed by
//! address.
//!
//! ```text
//!   mapping: [ block, `map` bytes RW ......... |canary to page end| ][guard]
//!   record:  addr -> { size (requested), map (RW bytes) }       (table, own mapping)
//!   cache:   up to 64 freed mappings (zeroed) kept for reuse, <= large_cache bytes
//! ```
//!
//! Repeated large blocks are the hardened allocators' worst case when every free
//! unmaps and every malloc faults fresh pages in; the cache keeps freed mappings
//! (zeroed at free, checked zero at reuse, so a write after free is still caught)
//! and reuses one whose size is within 25 % of the request. It starts closed:
//! freed blocks are unmapped until a new block is asked for that one of the last
//! `GHOSTS` unmapped ones could have served (within 2x), so a program that frees
//! a big buffer once keeps no resident copy of it (sqlite's peak RSS 11.9 ->
//! 10.2 MiB) while one that cycles big blocks caches them from its second one
//! on.

use core::ptr;

use crate::fault::{Fault, Op, fatal};
use crate::heap::{
    add_in_use, canary_pattern, config, fill_pattern, has_pattern, is_zero, nonzero_word,
    sub_in_use,
};
use crate::os::{self, PAGE};
use crate::sync::{SpinGuard, SpinLock};

/// Table capacity (power of two); a million live large blocks is 128 GiB or more.
const TABLE_CAP: usize = 1 << 20;
const CACHE_CAP: usize = 64;
/// Blocks at least this big ask for transparent huge pages.
const HUGE: usize = 2 << 20;
const RECENT: usize = 256;
/// Freed blocks whose addresses stay reserved (inaccessible, no memory) after
/// their mapping is given back: no new block lands on a just-freed address, so
/// `free(p); q = malloc(n); free(p)` is reported as a double free instead of
/// freeing `q` (the kernel hands a just-unmapped range straight back). Blocks
/// kept in the cache have no such delay: the next block of a fitting size may
/// be the one freed last (holding it back cost the large-block benchmark
/// 6-11 %, 2026-11-25).
const HELD: usize = 16;
/// Most address space the held ranges take (they hold no memory, but
/// `RLIMIT_AS` counts them): a bigger block is unmapped at once. A mapping
/// that fails gives every held range back and tries again.
const HELD_BYTES: usize = 256 << 20;
/// Sizes of recently unmapped blocks remembered to notice reuse.
const GHOSTS: usize = 16;
/// Most mappings with a guard page at once: each guarded block costs two kernel
/// mappings (block and guard never merge), so this keeps large blocks under 32k of
/// the default 65,530 `vm.max_map_count` whatever the heap does. Blocks past it get
/// no guard page (their canary, the rest of the last page past the requested size,
/// is still checked at free; a block of whole pages has none, so an overflow off
/// its end goes unreported); adjacent unguarded blocks merge into one mapping.
const GUARDED_MAX: usize = 16 << 10;

#[derive(Clone, Copy)]
struct Rec {
    /// Block start; 0 = empty entry.
    addr: usize,
    /// Requested size.
    size: usize,
    /// Read-write bytes of the mapping (a page multiple); the guard page follows.
    map: usize,
    /// Bytes of guard after the block (0 or a page).
    guard: usize,
}

struct State {
    table: *mut Rec,
    live: usize,
    live_bytes: usize,
    /// Cached (addr, map, guard) triples.
    cache: [(usize, usize, usize); CACHE_CAP],
    /// Reserved ranges (addr, len) of the last blocks given back, oldest
    /// first: `held[..nheld]` ([`HELD`]).
    held: [(usize, usize); HELD],
    nheld: usize,
    held_bytes: usize,
    /// Mappings (live or cached) that carry a guard page.
    guarded: usize,
    ncache: usize,
    cache_bytes: usize,
    /// Recently freed block addresses, to tell a double free from a wild pointer.
    recent: [usize; RECENT],
    recent_pos: usize,
    /// Mapping sizes of the last blocks unmapped at free instead of cached.
    ghosts: [usize; GHOSTS],
    ghost_pos: usize,
    /// A new block was asked for that one of `ghosts` could have served: the
    /// program reuses large blocks, so freed ones are worth caching. Until then
    /// freed blocks are unmapped (a program that frees a big buffer once keeps
    /// no resident copy of it).
    reuse: bool,
}

// SAFETY: `table` points into a process-lifetime mapping that is only reached under
// the lock that owns this state.
unsafe impl Send for State {}

static LARGE: SpinLock<State> = SpinLock::new(State {
    table: ptr::null_mut(),
    live: 0,
    live_bytes: 0,
    cache: [(0, 0, 0); CACHE_CAP],
    held: [(0, 0); HELD],
    nheld: 0,
    held_bytes: 0,
    guarded: 0,
    ncache: 0,
    cache_bytes: 0,
    recent: [0; RECENT],
    recent_pos: 0,
    ghosts: [0; GHOSTS],
    ghost_pos: 0,
    reuse: false,
});

/// Reserve the record table. Called once from heap init.
pub(crate) fn init() {
    let bytes = TABLE_CAP * core::mem::size_of::<Rec>();
    let t = os::reserve(bytes);
    // SAFETY: `t` is our fresh reservation; committing it RW lets pages fill lazily.
    if !t.is_null() && unsafe { os::commit(t, bytes) } {
        LARGE.lock().table = t.cast();
    }
}

#[inline]
fn hash(addr: usize) -> usize {
    os::mix64((addr >> 12) as u64) as usize & (TABLE_CAP - 1)
}

impl State {
    fn slot(&self, i: usize) -> &Rec {
        // SAFETY: `i < TABLE_CAP` (all callers mask), the table holds TABLE_CAP
        // records, and the lock owning `self` makes this the only access.
        unsafe { &*self.table.add(i) }
    }

    fn slot_mut(&mut self, i: usize) -> &mut Rec {
        // SAFETY: as in `slot`; `&mut self` makes the access exclusive.
        unsafe { &mut *self.table.add(i) }
    }

    fn find(&self, addr: usize) -> Option<usize> {
        if self.table.is_null() {
            return None;
        }
        let mut i = hash(addr);
        loop {
            let r = self.slot(i);
            if r.addr == addr {
                return Some(i);
            }
            if r.addr == 0 {
                return None;
            }
            i = (i + 1) & (TABLE_CAP - 1);
        }
    }

    fn insert(&mut self, rec: Rec) -> bool {
        if self.table.is_null() || self.live >= TABLE_CAP / 2 {
            return false;
        }
        let mut i = hash(rec.addr);
        while self.slot(i).addr != 0 {
            i = (i + 1) & (TABLE_CAP - 1);
        }
        *self.slot_mut(i) = rec;
        self.live += 1;
        self.live_bytes += rec.map;
        true
    }

    /// Remove entry `i` with backward-shift deletion (no tombstones).
    fn remove(&mut self, mut i: usize) -> Rec {
        let rec = *self.slot(i);
        self.live -= 1;
        self.live_bytes -= rec.map;
        let mut j = i;
        loop {
            j = (j + 1) & (TABLE_CAP - 1);
            let r = *self.slot(j);
            if r.addr == 0 {
                break;
            }
            let h = hash(r.addr);
            // Move r back to i if its home is not in (i, j] cyclically.
            let home_between = if i <= j {
                i < h && h <= j
            } else {
                i < h || h <= j
            };
            if !home_between {
                *self.slot_mut(i) = r;
                i = j;
            }
        }
        self.slot_mut(i).addr = 0;
        rec
    }

    /// Take the smallest cached mapping of at least `bytes` bytes.
    fn take_cached(&mut self, bytes: usize, align: usize) -> Option<(usize, usize, usize)> {
        let mut best: Option<usize> = None;
        for k in 0..self.ncache {
            let (a, m, _) = self.cache[k];
            if m >= bytes && a % align == 0 && best.is_none_or(|b| self.cache[b].1 > m) {
                best = Some(k);
            }
        }
        let k = best?;
        let e = self.cache[k];
        self.ncache -= 1;
        self.cache[k] = self.cache[self.ncache];
        self.cache_bytes -= e.1;
        Some(e)
    }

    /// Forget a mapping that is about to be unmapped.
    /// Take the biggest cached mapping.
    fn take_largest(&mut self) -> Option<(usize, usize, usize)> {
        let k = (0..self.ncache).max_by_key(|&k| self.cache[k].1)?;
        let e = self.cache[k];
        self.ncache -= 1;
        self.cache[k] = self.cache[self.ncache];
        self.cache_bytes -= e.1;
        Some(e)
    }

    fn push_cached(&mut self, e: (usize, usize, usize)) -> bool {
        if self.ncache == CACHE_CAP {
            return false;
        }
        self.cache[self.ncache] = e;
        self.ncache += 1;
        self.cache_bytes += e.1;
        true
    }

    /// Remember `addr` as freed: a later free or realloc of it is then
    /// reported as a double free or use after free, not a wild pointer.
    fn note_freed(&mut self, addr: usize) {
        let pos = self.recent_pos;
        self.recent[pos] = addr;
        self.recent_pos = (pos + 1) % RECENT;
    }

    fn dropping(&mut self, guard: usize) {
        if guard > 0 {
            self.guarded -= 1;
        }
    }
}

/// Unmap a block and its guard.
///
/// # Safety
/// The mapping is ours and nothing uses it.
unsafe fn unmap_block(addr: usize, map: usize, guard: usize) {
    // SAFETY: the caller guarantees the mapping is ours and unused.
    unsafe { os::unmap(addr as *mut u8, map + guard) };
}

/// Give back the mapping of a block just freed (or leaving the cache), keeping
/// its addresses reserved for a while ([`HELD`], [`HELD_BYTES`]); the oldest
/// held ranges are unmapped to make room.
///
/// # Safety
/// The mapping is ours and nothing uses it.
unsafe fn retire_block(addr: usize, map: usize, guard: usize) {
    let len = map + guard;
    // On failure (mapping count or memory at its limit) the range is unmapped
    // as it was before this reserve existed. Linux replaces a MAP_FIXED range
    // atomically since 6.12 (before, a failed call could leave it unmapped, and
    // the unmap below could then hit a mapping another thread just made there;
    // the common failure, the mapping count, fails before unmapping anything).
    // SAFETY: the caller guarantees the mapping is ours and unused.
    if len > HELD_BYTES || !unsafe { os::vacate(addr as *mut u8, len) } {
        // SAFETY: as above.
        unsafe { os::unmap(addr as *mut u8, len) };
        return;
    }
    hold(addr, len);
}

/// After mremap moved a block away from `addr` (`map` bytes, `guard` bytes of
/// its old guard still mapped after them): reserve the old range again and
/// hold it like a freed block's ([`retire_block`]), so that no new mapping
/// lands on the stale address at once and a later free of it is reported,
/// not taken for the new block's. If another thread's mapping took the range
/// first, it is left alone (only the old guard is given back).
///
/// # Safety
/// `[addr, addr+map)` is the range the block left (unmapped by the move) and
/// the guard after it is ours and unused.
unsafe fn hold_moved(addr: usize, map: usize, guard: usize) {
    // When mremap put the block right below its old range, the new block's
    // guard page (`remap`) is the old range's first page: hold the rest
    // (review finding: the whole reservation failed, and the next mapping
    // could land on the stale addresses).
    let start = if os::reserve_at(addr as *mut u8, map) {
        addr
    } else if map > PAGE && os::reserve_at((addr + PAGE) as *mut u8, map - PAGE) {
        addr + PAGE
    } else {
        0
    };
    if start != 0 {
        let len = addr + map + guard - start;
        if len <= HELD_BYTES {
            hold(start, len);
        } else {
            // SAFETY: the reservation just made and the old guard are ours.
            unsafe { os::unmap(start as *mut u8, len) };
        }
    } else if guard > 0 {
        // SAFETY: the old guard is ours and unused.
        unsafe { os::unmap((addr + map) as *mut u8, guard) };
    }
}

/// Record the reserved range `[addr, addr+len)` as held, the oldest held ranges
/// unmapped to make room under [`HELD`] and [`HELD_BYTES`].
fn hold(addr: usize, len: usize) {
    let mut out = [(0usize, 0usize); HELD];
    let mut n = 0;
    {
        let mut st = LARGE.lock();
        // Room for one more under both caps, the oldest out first.
        while st.nheld > 0 && (st.nheld == HELD || st.held_bytes + len > HELD_BYTES) {
            let old = st.held[0];
            let k = st.nheld;
            st.held.copy_within(1..k, 0);
            st.nheld = k - 1;
            st.held_bytes -= old.1;
            out[n] = old;
            n += 1;
        }
        let k = st.nheld;
        st.held[k] = (addr, len);
        st.nheld = k + 1;
        st.held_bytes += len;
    }
    for &(a, l) in &out[..n] {
        // SAFETY: a held range is a reservation of ours that nothing uses.
        unsafe { os::unmap(a as *mut u8, l) };
    }
}

/// Unmap every held range (a mapping failed, or malloc_trim); true if any.
fn release_held() -> bool {
    let (ranges, n) = {
        let mut st = LARGE.lock();
        let taken = (st.held, st.nheld);
        st.nheld = 0;
        st.held_bytes = 0;
        taken
    };
    for &(a, l) in &ranges[..n] {
        // SAFETY: a held range is a reservation of ours that nothing uses.
        unsafe { os::unmap(a as *mut u8, l) };
    }
    n > 0
}

/// Whether a block of `map` bytes asks for transparent huge pages (and so starts
/// on a 2 MiB boundary, where all its whole 2 MiB extents can be huge pages).
fn wants_huge(map: usize) -> bool {
    map >= HUGE && config().thp
}

/// Unmap what lies outside `[start, start+keep)` of the mapping `[raw, raw+len)`:
/// the slack an over-sized mapping was made with to align `start`.
///
/// # Safety
/// `[raw, raw+len)` is a mapping of ours, `[start, start+keep)` lies inside it,
/// and nothing uses the parts outside.
unsafe fn trim_mapping(raw: *mut u8, len: usize, start: usize, keep: usize) {
    let (head, end) = (start - raw as usize, start + keep);
    let tail = raw as usize + len - end;
    // SAFETY: the caller's guarantees: both ranges are unused parts of our mapping.
    unsafe {
        if head > 0 {
            os::unmap(raw, head);
        }
        if tail > 0 {
            os::unmap(end as *mut u8, tail);
        }
    }
}

/// Map a new block of `map` RW bytes aligned to `align`, followed by `guard` bytes
/// of guard.
fn map_new(map: usize, align: usize, guard: usize) -> *mut u8 {
    let huge = wants_huge(map);
    let align = if huge { align.max(HUGE) } else { align };
    let extra = if align > PAGE { align } else { 0 };
    let Some(len) = map.checked_add(guard).and_then(|l| l.checked_add(extra)) else {
        return ptr::null_mut();
    };
    let mut raw = os::map_rw(len);
    if raw.is_null() && release_held() {
        raw = os::map_rw(len);
    }
    if raw.is_null() {
        return ptr::null_mut();
    }
    let start = (raw as usize).next_multiple_of(align.max(PAGE));
    // SAFETY: `[raw, raw+len)` is the mapping just made; the block and its guard
    // stay inside it and nothing uses the rest.
    unsafe {
        trim_mapping(raw, len, start, map + guard);
        if guard > 0 && !os::protect_none((start + map) as *mut u8, guard) {
            os::unmap(start as *mut u8, map + guard);
            return ptr::null_mut();
        }
    }
    if huge {
        // SAFETY: `[start, start+map)` is the RW part of our fresh mapping.
        unsafe { os::advise_huge(start as *mut u8, map) };
    }
    start as *mut u8
}

/// Where the canary of a block of `size` bytes in `map` RW bytes ends: the end
/// of its last page; for a block of whole pages, none (the guard page follows)
/// unless the mapping goes on past it (a cached mapping up to a quarter bigger
/// than asked for, or a block shrunk in place), where the first word past the
/// block is its canary: a linear overflow off its end writes it, and free finds
/// it, as it would fault on a guard page right there.
fn canary_end(size: usize, map: usize) -> usize {
    let end = size.next_multiple_of(PAGE);
    if end == size && map > size {
        size + 8
    } else {
        end
    }
}

/// Fill the canary of a block of `size` bytes in `map` RW bytes
/// ([`canary_end`]).
///
/// # Safety
/// `[p, p + map)` is writable and ours.
unsafe fn write_canary(p: *mut u8, size: usize, map: usize, pattern: u8) {
    let end = canary_end(size, map);
    // SAFETY: the caller guarantees the bounds; `end <= map`, 8-aligned.
    unsafe { fill_pattern(p.add(size), end - size, pattern) };
}

/// Check the canary of a block of `size` bytes in `map` RW bytes.
///
/// # Safety
/// As for [`write_canary`], readable.
unsafe fn canary_ok(p: *mut u8, size: usize, map: usize, pattern: u8) -> bool {
    let end = canary_end(size, map);
    // SAFETY: the caller guarantees the bounds.
    unsafe { has_pattern(p.add(size), end - size, pattern) }
}

/// realloc's check of live block `p` (requested size `size`) before it is
/// resized where it lies: the canary an overflow would have written is about to
/// be rewritten (or zeroed, or handed to the block), so it is checked first, as
/// free checks it. A damaged canary releases the lock `st` and aborts.
fn check_canary_for_realloc(
    st: SpinGuard<'_, State>,
    p: *mut u8,
    size: usize,
    map: usize,
) -> SpinGuard<'_, State> {
    if let Some(pat) = canary_pattern(p as usize) {
        // SAFETY: the block is live, owned by the caller during realloc, and its
        // first `map` bytes (which hold the canary) are RW.
        if !unsafe { canary_ok(p, size, map, pat) } {
            drop(st);
            fatal(Fault::HeapOverflow, Op::Realloc, p as usize);
        }
    }
    st
}

/// Allocate a large block; null with ENOMEM on failure.
pub(crate) fn alloc(size: usize, align: usize) -> *mut u8 {
    let align = align.max(16);
    let Some(map) = size.max(1).checked_next_multiple_of(PAGE) else {
        os::set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    if map > isize::MAX as usize / 2 {
        os::set_errno(libc::ENOMEM);
        return ptr::null_mut();
    }
    let mut st = LARGE.lock();
    let mut cached = st.take_cached(map, align);
    // The old range of a cached block grown by moving it (to hold once the
    // lock is dropped).
    let mut moved = None;
    if cached.is_none() && !st.reuse {
        // A block of about this size was unmapped lately: blocks come back, so
        // start caching them.
        st.reuse = st
            .ghosts
            .iter()
            .any(|&g| g >= map / 2 && g <= map.saturating_mul(2));
    }
    if cached.is_none() && align <= PAGE {
        // Nothing big enough: grow the biggest cached mapping in place of a fresh
        // one, so its resident pages are reused rather than faulted in anew.
        if let Some((a, m, g)) = st.take_largest() {
            // SAFETY: a cached mapping is ours and unused.
            match unsafe { remap(&mut st, a as *mut u8, m, g, map) } {
                Some((q, g2)) => {
                    cached = Some((q as usize, map, g2));
                    if q as usize != a {
                        moved = Some((a, m, g));
                    }
                }
                None => {
                    st.dropping(g);
                    // SAFETY: as above; it is no longer in the cache.
                    unsafe { unmap_block(a, m, g) };
                }
            }
        }
    }
    let new_guard = if cached.is_none() && config().guard && st.guarded < GUARDED_MAX {
        st.guarded += 1;
        PAGE
    } else {
        0
    };
    drop(st);
    if let Some((a, m, g)) = moved {
        // SAFETY: the block moved away from `[a, a+m)`; its old guard is ours.
        unsafe { hold_moved(a, m, g) };
    }
    let (p, map, guard) = match cached {
        Some((a, m, g)) => {
            let p = a as *mut u8;
            let (m, g) = split_cached(a, m, g, map);
            // SAFETY: a cached mapping of `m` RW bytes, zeroed at free and used by
            // nobody since.
            if config().zero && !unsafe { pages_zero(p, m) } {
                fatal(Fault::WriteAfterFree, Op::Malloc, a);
            }
            (p, m, g)
        }
        None => {
            let p = map_new(map, align, new_guard);
            if p.is_null() {
                LARGE.lock().dropping(new_guard);
                os::set_errno(libc::ENOMEM);
                return ptr::null_mut();
            }
            (p, map, new_guard)
        }
    };
    if let Some(pat) = canary_pattern(p as usize) {
        // SAFETY: `size <= map`: the canary lies inside the RW part.
        unsafe { write_canary(p, size, map, pat) };
    }
    let mut st = LARGE.lock();
    if !st.insert(Rec {
        addr: p as usize,
        size,
        map,
        guard,
    }) {
        st.dropping(guard);
        drop(st);
        // SAFETY: the mapping was made or taken above and is not recorded anywhere.
        unsafe { unmap_block(p as usize, map, guard) };
        os::set_errno(libc::ENOMEM);
        return ptr::null_mut();
    }
    drop(st);
    crate::heap::COUNTERS
        .allocs
        .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    add_in_use(map);
    p
}

/// Cut a cached mapping `[a, a+m)` (guard `g` after it) down to `want` bytes when
/// it is more than 25 % bigger: a guard page goes right after the kept part and
/// the rest returns to the cache (or to the OS when small). Returns the kept
/// (map, guard).
fn split_cached(a: usize, m: usize, g: usize, want: usize) -> (usize, usize) {
    if m - want <= want / 4 || m - want < 2 * PAGE {
        return (m, g);
    }
    let tail = a + want + PAGE;
    let tail_len = m - want - PAGE;
    // The page after the kept part becomes its guard (or, unguarded, is dropped).
    let cut = a + want;
    // Checked first, as the kept part is: a write after free into it would
    // otherwise vanish with the page (review finding).
    // SAFETY: the page lies inside the cached mapping, RW and unused.
    if config().zero && !unsafe { pages_zero(cut as *mut u8, PAGE) } {
        fatal(Fault::WriteAfterFree, Op::Malloc, cut);
    }
    // SAFETY: `[cut, cut+PAGE)` lies inside the cached mapping, which nobody uses.
    let guarded = g > 0 && unsafe { os::protect_none(cut as *mut u8, PAGE) };
    if !guarded {
        // SAFETY: as above; the page is unused.
        unsafe { os::unmap(cut as *mut u8, PAGE) };
    }
    let mut st = LARGE.lock();
    if guarded {
        st.guarded += 1;
    }
    if tail_len > crate::size_class::MAX_SMALL && st.push_cached((tail, tail_len, g)) {
        return (want, if guarded { PAGE } else { 0 });
    }
    st.dropping(g);
    drop(st);
    // SAFETY: the tail and its old guard are unused parts of the cached mapping.
    unsafe { unmap_block(tail, tail_len, g) };
    (want, if guarded { PAGE } else { 0 })
}

/// Call `f(start, len, resident)` for each run of pages of `[p, p+len)` that are
/// all resident or all not (mincore, 512 pages per call). Pages whose state
/// cannot be read are reported resident, which is always safe.
///
/// # Safety
/// `p` is page-aligned and `[p, p+len)` is a mapping of ours (len a page multiple).
unsafe fn page_runs(p: *mut u8, len: usize, mut f: impl FnMut(*mut u8, usize, bool)) {
    const CHUNK: usize = 512;
    let mut vec = [0u8; CHUNK];
    let pages = len / PAGE;
    let mut done = 0;
    while done < pages {
        let n = (pages - done).min(CHUNK);
        // SAFETY: `p + done*PAGE` is page-aligned inside the caller's mapping.
        let chunk = unsafe { p.add(done * PAGE) };
        // SAFETY: as above; `vec` holds CHUNK >= n bytes.
        if !unsafe { os::resident(chunk, n, &mut vec) } {
            vec[..n].fill(1);
        }
        let mut i = 0;
        while i < n {
            let r = vec[i] & 1 != 0;
            let mut j = i + 1;
            while j < n && (vec[j] & 1 != 0) == r {
                j += 1;
            }
            // SAFETY: pages `i..j` of this chunk lie inside the mapping.
            f(unsafe { chunk.add(i * PAGE) }, (j - i) * PAGE, r);
            i = j;
        }
        done += n;
    }
}

/// Make `[p, p+len)` all zero, writing only the pages that are resident: pages
/// never touched (mremap growth, sparse use) are dropped, not faulted in to be
/// cleared. Dropping also discards any swapped-out copy.
///
/// # Safety
/// As for [`page_runs`], and nothing else uses the range.
unsafe fn clear_pages(p: *mut u8, len: usize) {
    // SAFETY: the caller's guarantees; each run is inside the range.
    unsafe {
        page_runs(p, len, |q, n, resident| {
            if resident {
                ptr::write_bytes(q, 0, n);
            } else {
                os::decommit(q, n);
            }
        });
    }
}

/// True if the resident pages of `[p, p+len)` are zero; the others are made zero
/// (dropped), so the block handed out reads zero throughout.
///
/// # Safety
/// As for [`clear_pages`].
pub(crate) unsafe fn pages_zero(p: *mut u8, len: usize) -> bool {
    let mut ok = true;
    // SAFETY: the caller's guarantees; each run is inside the range.
    unsafe {
        page_runs(p, len, |q, n, resident| {
            if resident {
                ok &= is_zero(q, n);
            } else {
                os::decommit(q, n);
            }
        });
    }
    ok
}

/// The address of the first non-zero 8-byte word in the resident pages of
/// `[p, p+len)`, if any; pages not resident read zero and are not touched.
///
/// # Safety
/// `p` is page-aligned, `len` a page multiple, and the resident pages of the
/// range are readable (committed slab or slot memory of ours).
pub(crate) unsafe fn first_dirty_word(p: *mut u8, len: usize) -> Option<usize> {
    let mut found = None;
    // SAFETY: the caller's guarantees; each run is inside the range.
    unsafe {
        page_runs(p, len, |q, n, resident| {
            if !resident || found.is_some() {
                return;
            }
            found = nonzero_word(q, n);
        });
    }
    found
}

/// Classify a pointer that is not a live large block.
fn unknown(st: &State, p: usize) -> Fault {
    if p != 0 && st.recent.contains(&p) {
        return Fault::DoubleFree;
    }
    if !st.table.is_null() {
        for i in 0..TABLE_CAP {
            let r = st.slot(i);
            if r.addr != 0 && p > r.addr && p < r.addr + r.map {
                return Fault::InteriorPointer;
            }
        }
    }
    Fault::InvalidPointer
}

/// Free a large block (or fault on a pointer that is not one).
pub(crate) fn free(p: *mut u8, op: Op, expect: Option<usize>) {
    let addr = p as usize;
    let mut st = LARGE.lock();
    let Some(i) = st.find(addr) else {
        let f = unknown(&st, addr);
        drop(st);
        fatal(f, op, addr);
    };
    let rec = *st.slot(i);
    if expect.is_some_and(|e| e != rec.size) {
        drop(st);
        fatal(Fault::SizeMismatch, op, addr);
    }
    if let Some(pat) = canary_pattern(p as usize) {
        // SAFETY: the block is live and its first `map` bytes are RW.
        if !unsafe { canary_ok(p, rec.size, rec.map, pat) } {
            drop(st);
            fatal(Fault::HeapOverflow, op, addr);
        }
    }
    st.remove(i);
    st.note_freed(addr);
    // The cache follows the heap: the live large bytes (2 MiB at least,
    // `large_cache` at most), so freed blocks add little to peak RSS while
    // a program cycling big blocks still reuses them (a miss grows the biggest
    // cached block rather than mapping a new one); and it stays closed until
    // the program has shown it reuses large blocks (`reuse`).
    let limit = if st.reuse {
        config().large_cache.min(st.live_bytes.max(2 << 20))
    } else {
        0
    };
    let cacheable = rec.map <= limit;
    if !cacheable {
        st.dropping(rec.guard);
        let g = st.ghost_pos;
        st.ghosts[g] = rec.map;
        st.ghost_pos = (g + 1) % GHOSTS;
    }
    drop(st);
    sub_in_use(rec.map);
    crate::heap::COUNTERS
        .frees
        .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    if cacheable {
        if config().zero {
            // Zero outside the lock: the block is unreachable for other threads
            // now. With zero=0 the block is reused as it is (calloc clears).
            // SAFETY: the block was ours and is no longer recorded as live.
            // The canary may reach into the page after the block's last.
            unsafe { clear_pages(p, canary_end(rec.size, rec.map).next_multiple_of(PAGE)) };
        }
        let mut st = LARGE.lock();
        let mut evicted = [(0usize, 0usize, 0usize); 4];
        let mut ne = 0;
        while (st.ncache == CACHE_CAP || st.cache_bytes + rec.map > limit)
            && st.ncache > 0
            && ne < 4
        {
            // Evict the oldest entry (index 0); order is not kept exactly, which is fine.
            let e = st.cache[0];
            st.ncache -= 1;
            let last = st.ncache;
            st.cache[0] = st.cache[last];
            st.cache_bytes -= e.1;
            st.dropping(e.2);
            evicted[ne] = e;
            ne += 1;
        }
        let fits = st.ncache < CACHE_CAP && st.cache_bytes + rec.map <= limit;
        if fits {
            let n = st.ncache;
            st.cache[n] = (addr, rec.map, rec.guard);
            st.ncache += 1;
            st.cache_bytes += rec.map;
        } else {
            st.dropping(rec.guard);
        }
        drop(st);
        for &(a, m, g) in &evicted[..ne] {
            // SAFETY: evicted cache entries are mappings nobody uses.
            unsafe { retire_block(a, m, g) };
        }
        if !fits {
            // SAFETY: as above, the block is ours and unused.
            unsafe { retire_block(addr, rec.map, rec.guard) };
        }
    } else {
        // SAFETY: the block is ours and unused; giving it back drops its contents.
        unsafe { retire_block(addr, rec.map, rec.guard) };
    }
}

/// Requested size of a live large block.
pub(crate) fn usable_size(p: *mut u8, op: Op) -> usize {
    let st = LARGE.lock();
    match st.find(p as usize) {
        Some(i) => st.slot(i).size,
        None => {
            let f = unknown(&st, p as usize);
            let f = if f == Fault::DoubleFree {
                Fault::UseAfterFree
            } else {
                f
            };
            drop(st);
            fatal(f, op, p as usize)
        }
    }
}

/// Grow or shrink a live large block inside its mapping when the new size keeps at
/// least half of it used.
pub(crate) fn resize_in_place(p: *mut u8, old: usize, new: usize) -> bool {
    let mut st = LARGE.lock();
    let Some(i) = st.find(p as usize) else {
        return false;
    };
    let map = st.slot(i).map;
    if new > map || new <= map / 2 || new <= crate::size_class::MAX_SMALL {
        return false;
    }
    st = check_canary_for_realloc(st, p, old, map);
    let new_end = new.next_multiple_of(PAGE);
    // SAFETY: both ends are inside the block's `map` RW bytes and the block is live
    // and owned by the caller, who is not using it during realloc.
    unsafe {
        if new > old {
            ptr::write_bytes(p.add(old), 0, canary_end(old, map).min(new) - old);
        } else {
            // Freed at the next free only up to the new size's canary: zero the
            // rest of the old block and its canary now.
            let old_last = canary_end(old, map).next_multiple_of(PAGE);
            if new_end < old_last {
                os::decommit(p.add(new_end), old_last - new_end);
            }
        }
        if let Some(pat) = canary_pattern(p as usize) {
            write_canary(p, new, map, pat);
        }
    }
    st.slot_mut(i).size = new;
    true
}

/// Grow the mapping `[p, p+map)` (with `guard` bytes of guard after it) to
/// `new_map` bytes with mremap, moving its pages without copying, and put a guard
/// page after the new end when the old one had one and that address is free
/// (MAP_FIXED_NOREPLACE never clobbers a mapping). Returns the new address and
/// guard length; None (mapping untouched) if the kernel refused. When the block
/// moved, its old range is free address space and its old guard is still
/// mapped: the caller passes both to [`hold_moved`] once it has dropped the lock.
///
/// # Safety
/// `[p, p+map)` and its guard are a mapping of ours that nobody else uses now.
unsafe fn remap(
    st: &mut State,
    p: *mut u8,
    map: usize,
    guard: usize,
    new_map: usize,
) -> Option<(*mut u8, usize)> {
    // A guarded block cannot grow in place (its guard is in the way), and a
    // huge one must land on a 2 MiB boundary: both move into a reservation.
    let huge = wants_huge(new_map);
    if huge || guard > 0 {
        let align = if huge { HUGE } else { PAGE };
        // SAFETY: the caller's guarantees, passed on.
        if let Some(moved) = unsafe { remap_into_reservation(p, map, guard, new_map, align) } {
            return Some(moved);
        }
    }
    // SAFETY: the caller guarantees the mapping; MREMAP_MAYMOVE leaves it intact
    // on failure.
    let q =
        os::keeping_errno(|| unsafe { libc::mremap(p.cast(), map, new_map, libc::MREMAP_MAYMOVE) });
    if q == libc::MAP_FAILED {
        return None;
    }
    let q = q.cast::<u8>();
    if guard == 0 || q == p {
        return Some((q, guard));
    }
    // The old guard page stayed behind: the caller holds it with the old range
    // (`hold_moved`).
    if os::reserve_at(q.wrapping_add(new_map), PAGE) {
        return Some((q, PAGE));
    }
    st.dropping(guard);
    Some((q, 0))
}

/// [`remap`] into a fresh reservation: move the block onto an `align`
/// boundary inside it (MREMAP_FIXED replaces that part), keep the
/// reservation's `guard` bytes after the block as its guard, and give the rest
/// back. Used when a plain MREMAP_MAYMOVE would not do: a guarded block (it
/// lands in the highest gap that fits, usually right below another mapping,
/// where no guard page fits after it; review finding: moved blocks lost their
/// guard), or a block of huge-page size (`align` = 2 MiB: a misaligned one
/// loses most of its huge pages). None (mapping untouched) if the kernel
/// refused; the old guard stays behind for [`hold_moved`].
///
/// # Safety
/// As for [`remap`].
unsafe fn remap_into_reservation(
    p: *mut u8,
    map: usize,
    guard: usize,
    new_map: usize,
    align: usize,
) -> Option<(*mut u8, usize)> {
    let extra = if align > PAGE { align } else { 0 };
    let len = new_map.checked_add(guard)?.checked_add(extra)?;
    let res = os::reserve(len);
    if res.is_null() {
        return None;
    }
    let dst = (res as usize).next_multiple_of(align);
    // SAFETY: `[dst, dst+new_map)` lies inside our fresh reservation, which
    // MREMAP_FIXED may replace; the source is the caller's mapping, left intact
    // if the call fails.
    let q = os::keeping_errno(|| unsafe {
        libc::mremap(
            p.cast(),
            map,
            new_map,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            dst as *mut libc::c_void,
        )
    });
    if q == libc::MAP_FAILED {
        // SAFETY: our own unused reservation.
        unsafe { os::unmap(res, len) };
        return None;
    }
    // SAFETY: outside the block and its guard the reservation is unused (the
    // old guard, if any, stayed behind for the caller to hold: `hold_moved`);
    // the new range is our block, madvise changes no data.
    unsafe {
        trim_mapping(res, len, dst, new_map + guard);
        if align >= HUGE {
            os::advise_huge(dst as *mut u8, new_map);
        }
    }
    Some((dst as *mut u8, guard))
}

/// Grow live block `p` (requested size `old`) to `new` bytes by moving its pages
/// with mremap: no copy, and no second copy resident while it runs. Returns the
/// new address, or null (block untouched) if `p` is not a live large block or the
/// kernel refused.
pub(crate) fn grow_by_remap(p: *mut u8, old: usize, new: usize) -> *mut u8 {
    let Some(new_map) = new.checked_next_multiple_of(PAGE) else {
        return ptr::null_mut();
    };
    let mut st = LARGE.lock();
    let Some(i) = st.find(p as usize) else {
        return ptr::null_mut();
    };
    let rec = *st.slot(i);
    if new_map <= rec.map || new_map > isize::MAX as usize / 2 {
        return ptr::null_mut();
    }
    st = check_canary_for_realloc(st, p, old, rec.map);
    // SAFETY: `[p, p+map)` is the live block's RW mapping, owned by the caller
    // during realloc.
    let Some((q, guard)) = (unsafe { remap(&mut st, p, rec.map, rec.guard, new_map) }) else {
        return ptr::null_mut();
    };
    st.remove(i);
    st.insert(Rec {
        addr: q as usize,
        size: new,
        map: new_map,
        guard,
    });
    let moved = q != p;
    if moved {
        st.note_freed(p as usize);
    }
    drop(st);
    if moved {
        // SAFETY: the block moved away from `[p, p+map)`; its old guard is ours.
        unsafe { hold_moved(p as usize, rec.map, rec.guard) };
    }
    // SAFETY: `[q, q+new_map)` is now the block; the old canary is inside the
    // first `map` bytes and the grown part reads as zero.
    unsafe {
        ptr::write_bytes(q.add(old), 0, canary_end(old, rec.map) - old);
        if let Some(pat) = canary_pattern(q as usize) {
            write_canary(q, new, new_map, pat);
        }
    }
    add_in_use(new_map - rec.map);
    q
}

/// Unmap every cached block. True if anything was released.
pub(crate) fn trim() -> bool {
    let mut st = LARGE.lock();
    let n = st.ncache;
    let entries = st.cache;
    st.ncache = 0;
    st.cache_bytes = 0;
    for &(_, _, g) in &entries[..n] {
        st.dropping(g);
    }
    drop(st);
    for &(a, m, g) in &entries[..n] {
        // SAFETY: cached blocks are mappings nobody uses.
        unsafe { unmap_block(a, m, g) };
    }
    let table = drop_empty_table_pages();
    // The held ranges hold no memory, but trimming gives back address space
    // too; the cached blocks just unmapped are not held (a trim is a point
    // where the program asked for everything back).
    release_held() || n > 0 || table
}

/// Give back the record table's resident pages that hold no live record (an
/// empty record is all zero as far as the table reads it: only `addr` is
/// looked at, and 0 means empty). The hash spreads records over all of the
/// table's pages, so without this a heap that once had thousands of large
/// blocks keeps up to 32 MiB of table resident after freeing them all (review
/// finding). True if any page went back.
fn drop_empty_table_pages() -> bool {
    const PER_PAGE: usize = PAGE / core::mem::size_of::<Rec>();
    let st = LARGE.lock();
    if st.table.is_null() {
        return false;
    }
    let table = st.table;
    let mut dropped = false;
    // SAFETY: the table is our committed mapping of TABLE_CAP records, read and
    // written only under the lock held here; a page whose records all have
    // `addr == 0` reads the same once dropped (zero).
    unsafe {
        page_runs(
            table.cast(),
            TABLE_CAP * core::mem::size_of::<Rec>(),
            |q, len, resident| {
                if !resident {
                    return;
                }
                let mut run = 0; // empty pages in a row ending at `page`
                for page in 0..=len / PAGE {
                    let empty = page < len / PAGE && {
                        let recs = q.add(page * PAGE).cast::<Rec>();
                        (0..PER_PAGE).all(|k| (*recs.add(k)).addr == 0)
                    };
                    if empty {
                        run += 1;
                    } else if run > 0 {
                        os::decommit(q.add((page - run) * PAGE), run * PAGE);
                        dropped = true;
                        run = 0;
                    }
                }
            },
        );
    }
    drop(st);
    dropped
}

/// (live large blocks, their bytes, cached bytes) for mallinfo.
pub(crate) fn totals() -> (usize, usize, usize) {
    let st = LARGE.lock();
    (st.live, st.live_bytes, st.cache_bytes)
}

pub(crate) fn lock_for_fork() {
    LARGE.force_lock();
}

pub(crate) fn unlock_after_fork() {
    // SAFETY: taken by `lock_for_fork` in this (or the forking) thread.
    unsafe { LARGE.force_unlock() };
}
