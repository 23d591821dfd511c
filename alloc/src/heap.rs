//! The small-object heap: class regions, slabs, per-thread caches, quarantine.
//!
//! ```text
//!  slab region (reserved PROT_NONE, NCLASS x 4 GiB)
//!  ┌ class 0 (malloc(0), never accessible) ┬ class 1 (16 B) ┬ ... ┬ class 48 (128 KiB) ┐
//!  │ slab 0 │g│ slab 1 │g│ ...               g = guard page (PROT_NONE)
//!
//!  metadata region (separate mapping, never next to user memory)
//!   per class: SlabMeta[max_slabs] · free bitmap[max_slabs][words] · live bitmap[...]
//!
//!  per class: arenas[0..A] (A = one per two CPUs, a power of two, at most 8), each
//!             owning an equal run of the class's slabs, with its own lock and lists
//!
//!  per thread (TLS, out of band): cache[class][<=64] of u32 slot offsets
//!                                 quarantine[<=256] of freed addresses
//! ```
//!
//! malloc pops a slot offset from the thread's cache, sets the slot's live bit (one
//! atomic RMW), checks the slot is still zero if it was used before, and writes the
//! canary; an empty cache refills from the arena of the CPU it runs on. free finds class, slab
//! and slot by arithmetic on the address, clears the live bit (a clear bit found
//! clear is a double free: deterministic, whichever thread frees), checks the
//! canary, zeroes the slot, and puts it in the quarantine; what the quarantine
//! evicts goes to the thread's cache, and a full cache flushes half its entries,
//! each to the arena that owns its slab (found from the address), under that
//! arena's lock only. A cross-thread free costs the same as a local one: the
//! freeing thread's cache takes it without a lock, and the batch flush returns it to
//! its owning arena; no lock is shared by the whole class or process.

use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize};

use crate::central::{Central, Claimed, SlabMeta, Slabs};
use crate::config::{Config, MAX_ARENAS, QUARANTINE_MAX, TCACHE_MAX};
use crate::fault::{Fault, Line, Op, fatal};
use crate::size_class::{
    MAX_SMALL, NCLASS, REGION_SHIFT, class_of, slab_bytes, slot_size, slots_per_slab, stride_shift,
};
use crate::sync::{AtomicU8, AtomicU32, LIVE, Ordering, SpinLock, UNUSED, clear_live, mark_live};
// The heap is never built under loom; its counters use core atomics directly.
use crate::{large, os, tls};

/// Bytes of the canary word at the end of every slot.
const TAIL: usize = 8;
/// Fill bytes of the canary right after the requested size (fewer when the tail
/// word comes sooner). A linear overflow writes the byte at the requested size
/// first, so this window catches every one of them; the slack past it stays
/// zero, as freed slots are, and costs nothing to keep.
const WINDOW: usize = 8;
/// Slots at least this big return their whole pages to the OS when they go back to
/// their slab, and are checked page by page (resident pages only) at reuse.
const BIG_SLOT: usize = 32 << 10;
/// Most slot bytes one thread's quarantine holds back: the quarantine delays reuse,
/// it must not hold megabytes of big slots resident. It must stay at least twice
/// the biggest slot (128 KiB): room is made by evicting entries, so a slot bigger
/// than half the cap pushes out everything else, and with a 64 KiB cap one free of
/// a 60 KB block sent every quarantined slot straight back to the thread caches
/// (found in review, 2026-11-24). The per-class thread-cache cap (`cap_of`) is
/// 64 KiB: 256 -> 64 KiB there took git gc's peak RSS from 36.8 to 35.2 MiB.
const QUARANTINE_BYTES: usize = 256 << 10;
/// Thread-cache entry flag: the slot was never used, so it is known to be zero.
const FRESH: u32 = 1;

/// log2 of the bound on in-slab offsets the slot division is exact for.
const OFFSET_BITS: u32 = 22;

/// Exact division by a constant through one multiply (Granlund-Montgomery):
/// `n / d == (n * m) >> s` for every `n < 2^22` with `m = ceil(2^(22+l) / d)`,
/// `l = ceil(log2 d)`; `n * m < 2^45` fits a u64. Division sits on every malloc and
/// free; a `div` is 20-90 cycles, this is 4.
#[derive(Clone, Copy)]
struct Magic {
    m: u64,
    s: u32,
}

impl Magic {
    const fn new(d: u64) -> Magic {
        let l = 64 - (d - 1).leading_zeros();
        let s = OFFSET_BITS + l;
        let m = (1u64 << s).div_ceil(d);
        Magic { m, s }
    }
    #[inline]
    fn div(self, n: u32) -> u32 {
        ((u64::from(n) * self.m) >> self.s) as u32
    }
}

/// Fixed geometry and metadata pointers of one class; written once at init.
#[derive(Clone, Copy)]
struct Geom {
    slot: u32,
    nslots: u32,
    words: u32,
    slab_bytes: u32,
    /// log2 of the slab stride: `slab = offset >> shift`.
    shift: u32,
    max_slabs: u32,
    /// log2 of the slabs each arena owns: arena = `slab >> arena_shift`.
    arena_shift: u32,
    /// Per-class thread-cache capacity.
    cap: u32,
    slot_div: Magic,
    meta: *mut SlabMeta,
    free_bits: *mut u64,
    /// One byte per slot, `nslots` per slab: 1 = live in the program.
    live: *const AtomicU8,
}

/// Process-wide state written once by `init` before `READY` is published.
struct Globals {
    /// Start of the slab region; 0 before init.
    base: usize,
    /// log2 of the bytes reserved per class ([`REGION_SHIFT`] unless the OS refused
    /// that much address space, as under valgrind or `ulimit -v`).
    rshift: u32,
    /// `NCLASS << rshift`: offsets from `base` below this are slots; 0 before init,
    /// so every pointer takes the large path until then.
    span: usize,
    /// Largest request served from slabs (`MAX_SMALL - TAIL` with canaries on).
    small_max: usize,
    /// Bytes reserved per slot for the tail canary (0 or 8).
    extra: usize,
    /// Arenas per class in use (a power of two, at most `MAX_ARENAS`).
    arenas: u32,
    secret: u64,
    cfg: Config,
    geom: [Geom; NCLASS],
}

struct GlobalCell(UnsafeCell<Globals>);
// SAFETY: `Globals` is written only by the single thread that wins the init race,
// before `SPAN`, `SMALL_GATE` and `STATE` are published with Release; every reader
// first loads one of them with Acquire (`region_offset`, malloc's gate,
// `ensure_init`) and reads `Globals` only once it shows init done.
unsafe impl Sync for GlobalCell {}

const GEOM0: Geom = Geom {
    slot: 16,
    nslots: 0,
    words: 0,
    slab_bytes: 0,
    shift: 20,
    max_slabs: 0,
    arena_shift: 0,
    cap: 1,
    slot_div: Magic { m: 0, s: 0 },
    meta: ptr::null_mut(),
    free_bits: ptr::null_mut(),
    live: ptr::null(),
};

static G: GlobalCell = GlobalCell(UnsafeCell::new(Globals {
    base: 0,
    rshift: REGION_SHIFT,
    span: 0,
    small_max: 0,
    extra: 0,
    arenas: 1,
    secret: 0,
    cfg: Config::DEFAULT,
    geom: [GEOM0; NCLASS],
}));

const UNINIT: u8 = 0;
const INITIALIZING: u8 = 1;
const READY: u8 = 2;
const FAILED: u8 = 3;
static STATE: AtomicU8 = AtomicU8::new(UNINIT);

/// The entry points' view of init, published apart from `Globals` so that no
/// thread reads `Globals` while the initialising thread writes it (a data race,
/// however benign on x86). `SPAN` is stored last, with Release, after every
/// field of `Globals`; a thread that loads it non-zero with Acquire may read
/// them all. Before that every pointer is no slot of ours (none was handed
/// out), and `SMALL_GATE` (`small_max + 1`, 0 before init) sends every malloc
/// to the slow path, which waits for init.
static SPAN: AtomicUsize = AtomicUsize::new(0);
static BASE: AtomicUsize = AtomicUsize::new(0);
static SMALL_GATE: AtomicUsize = AtomicUsize::new(0);

/// `p - base` if `p` lies in the slab region, None otherwise (also before
/// init). `Globals` may be read once it returns Some.
#[inline]
fn region_offset(p: usize) -> Option<usize> {
    let span = SPAN.load(Ordering::Acquire);
    let off = p.wrapping_sub(BASE.load(Ordering::Relaxed));
    (off < span).then_some(off)
}

#[inline]
fn g() -> &'static Globals {
    // SAFETY: see `GlobalCell`: after init nobody writes `Globals`; before init the
    // fields hold their const defaults, which every path treats as "not ours".
    unsafe { &*G.0.get() }
}

/// One arena of a class: it owns `1 << arena_shift` consecutive slabs of the class
/// region, and its lock guards their free bitmaps and list. Slots always go back to
/// the arena that owns their slab, whichever thread frees them. Padded to a cache
/// line so that two arenas' locks never share one.
#[repr(align(64))]
struct Arena {
    central: SpinLock<Central>,
}

/// A class: its arenas (only the first `Globals::arenas` are used).
struct Class {
    arenas: [Arena; MAX_ARENAS],
}

#[allow(clippy::declare_interior_mutable_const)] // used only to build the arrays below
const ARENA0: Arena = Arena {
    central: SpinLock::new(Central::new()),
};
#[allow(clippy::declare_interior_mutable_const)]
const CLASS0: Class = Class {
    arenas: [ARENA0; MAX_ARENAS],
};
static CLASSES: [Class; NCLASS] = [CLASS0; NCLASS];
/// The arena a refill running now draws from: the CPU's number modulo the arena
/// count. Per-CPU rather than per-thread: two threads contend for an arena only
/// while they share a CPU, and a process touches at most as many arenas as CPUs
/// it runs on however many threads come and go (round-robin thread assignment
/// spread larson's short-lived threads over all 8 arenas: 2.3x its peak RSS).
#[inline]
fn current_arena(gl: &Globals) -> usize {
    if gl.arenas == 1 {
        0
    } else {
        os::current_cpu() % gl.arenas as usize
    }
}

/// The arena owning slab `slab` (a class-region slab index).
#[inline]
fn arena_of(gm: &Geom, slab: u32) -> usize {
    // `slab < max_slabs`, so the shifted index is below the arena count (at most
    // MAX_ARENAS, a power of two); the mask only spares the bounds check.
    (slab >> gm.arena_shift) as usize & (MAX_ARENAS - 1)
}

/// First slab of arena `a` and how many slabs it may commit (0 past the region).
#[inline]
fn arena_range(gm: &Geom, a: usize) -> (u32, u32) {
    let first = (a as u64) << gm.arena_shift;
    if first >= u64::from(gm.max_slabs) {
        return (gm.max_slabs, 0);
    }
    let first = first as u32;
    (first, (1u32 << gm.arena_shift).min(gm.max_slabs - first))
}

/// Counters for `stats()` and the report line. Updated on slow paths only.
pub(crate) struct Counters {
    pub allocs: AtomicU64,
    pub frees: AtomicU64,
    /// Bytes of slots handed out of the central state plus large mappings in use.
    pub in_use: AtomicUsize,
    pub peak: AtomicUsize,
    pub faults: AtomicU64,
    /// Bytes of slabs holding pages: committed and not decommitted since.
    pub committed: AtomicUsize,
}
pub(crate) static COUNTERS: Counters = Counters {
    allocs: AtomicU64::new(0),
    frees: AtomicU64::new(0),
    in_use: AtomicUsize::new(0),
    peak: AtomicUsize::new(0),
    faults: AtomicU64::new(0),
    committed: AtomicUsize::new(0),
};

pub(crate) fn add_in_use(bytes: usize) {
    let now = COUNTERS.in_use.fetch_add(bytes, Ordering::Relaxed) + bytes;
    COUNTERS.peak.fetch_max(now, Ordering::Relaxed);
}

pub(crate) fn sub_in_use(bytes: usize) {
    COUNTERS.in_use.fetch_sub(bytes, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------
// Thread cache
// ---------------------------------------------------------------------------------

const T_UNINIT: u8 = 0;
const T_ACTIVE: u8 = 1;
/// Registering the thread's destructor (which may call malloc) or torn down:
/// every operation goes straight to the central state.
const T_BYPASS: u8 = 2;

pub(crate) struct ThreadCache {
    state: u8,
    rng: u64,
    count: [u8; NCLASS],
    slots: [[u32; TCACHE_MAX]; NCLASS],
    qlen: usize,
    /// Slot bytes held by the quarantine (zeroed, but resident).
    qbytes: usize,
    quarantine: [usize; QUARANTINE_MAX],
    allocs: u64,
    frees: u64,
}

impl ThreadCache {
    /// A cache not yet set up (`T_UNINIT`). All zero, as the initial-exec
    /// `.tbss` copy in `tls` starts.
    #[cfg_attr(
        all(
            feature = "initial-exec-tls",
            target_arch = "x86_64",
            target_os = "linux"
        ),
        allow(dead_code, reason = "that build starts each thread from zeroed .tbss")
    )]
    pub(crate) const EMPTY: ThreadCache = ThreadCache {
        state: T_UNINIT,
        rng: 0,
        count: [0; NCLASS],
        slots: [[0; TCACHE_MAX]; NCLASS],
        qlen: 0,
        qbytes: 0,
        quarantine: [0; QUARANTINE_MAX],
        allocs: 0,
        frees: 0,
    };
}

/// This thread's cache (see `tls`: in libengram_malloc.so one `fs:`-relative
/// address, no call).
#[inline(always)]
fn tc() -> *mut ThreadCache {
    tls::cache()
}

static KEY: AtomicU32 = AtomicU32::new(u32::MAX);

#[inline]
fn next_rand(t: *mut ThreadCache) -> u64 {
    // SAFETY: `t` is this thread's cache; no reference to it is live across this call.
    // wyrand: one widening multiply per number, good enough for slot choice.
    unsafe {
        let r = (*t).rng.wrapping_add(0xa076_1d64_78bd_642f);
        (*t).rng = r;
        let m = u128::from(r) * u128::from(r ^ 0xe703_7ed1_a0b4_28db);
        (m >> 64) as u64 ^ m as u64
    }
}

/// Per-class cache capacity: at most `tcache` entries and about 64 KiB of slots.
#[inline]
fn cap_of(c: usize) -> usize {
    g().geom[c].cap as usize
}

// ---------------------------------------------------------------------------------
// Init
// ---------------------------------------------------------------------------------

/// Make sure the heap is set up; false if the OS refused the reservations.
#[inline]
pub(crate) fn ensure_init() -> bool {
    STATE.load(Ordering::Acquire) == READY || init_slow()
}

#[cold]
#[inline(never)]
fn init_slow() -> bool {
    loop {
        match STATE.compare_exchange(UNINIT, INITIALIZING, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => break,
            Err(READY) => return true,
            Err(FAILED) => return false,
            Err(_) => {
                // Another thread is setting up. Sleep, not sched_yield: under
                // SCHED_FIFO a yield never lets a lower-priority initialiser run.
                let nap = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 20_000,
                };
                // SAFETY: `nap` is a valid timespec; the remainder pointer may be null.
                unsafe { libc::nanosleep(&nap, ptr::null_mut()) };
            }
        }
    }
    // SAFETY: we won the init race, so no other thread reads or writes `Globals`
    // until READY is published below.
    let ok = unsafe { init_globals(&mut *G.0.get()) };
    if !ok {
        STATE.store(FAILED, Ordering::Release);
        return false;
    }
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: valid out-parameter and a destructor with the right ABI;
    // pthread_key_create does not allocate.
    if unsafe { libc::pthread_key_create(&mut key, Some(thread_exit)) } == 0 {
        KEY.store(key, Ordering::Relaxed);
    }
    note_owner();
    {
        let gl = g();
        BASE.store(gl.base, Ordering::Relaxed);
        SMALL_GATE.store(gl.small_max + 1, Ordering::Relaxed);
        SPAN.store(gl.span, Ordering::Release);
    }
    STATE.store(READY, Ordering::Release);
    // pthread_atfork may allocate: only now that malloc works.
    // SAFETY: the handlers are extern "C" fns valid for the process lifetime.
    unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
    true
}

/// The options from `ENGRAM_MALLOC`, or the defaults.
fn env_config() -> Config {
    // SAFETY: getenv reads the environment without allocating; the name is
    // NUL-terminated. The value is parsed before anything can change the env.
    let env = unsafe { libc::getenv(c"ENGRAM_MALLOC".as_ptr()) };
    if env.is_null() {
        Config::DEFAULT
    } else {
        // SAFETY: getenv returned a NUL-terminated string.
        Config::parse(unsafe { core::ffi::CStr::from_ptr(env) }.to_bytes())
    }
}

/// Per-class metadata offsets (meta, free bitmap, live bytes) and slab count.
type Plan = [(usize, usize, usize, u32); NCLASS];

/// Reserve the slab region for `1 << rshift` bytes per class and the metadata for
/// it; None (nothing left mapped) if the OS refuses either.
fn reserve_regions(rshift: u32, guard: usize) -> Option<(*mut u8, *mut u8, Plan)> {
    let base = os::reserve(NCLASS << rshift);
    if base.is_null() {
        return None;
    }
    let mut meta_len = 0usize;
    let mut plan: Plan = [(0, 0, 0, 0); NCLASS];
    for (c, p) in plan.iter_mut().enumerate() {
        let max_slabs = ((1usize << rshift) >> stride_shift(c)) as u32;
        let nslots = slots_per_slab(c, guard);
        let words = nslots.div_ceil(64);
        let meta_off = meta_len;
        meta_len += max_slabs as usize * core::mem::size_of::<SlabMeta>();
        meta_len = meta_len.next_multiple_of(64);
        let free_off = meta_len;
        meta_len += max_slabs as usize * words * 8;
        let live_off = meta_len;
        meta_len += (max_slabs as usize * nslots).next_multiple_of(64);
        *p = (meta_off, free_off, live_off, max_slabs);
    }
    let meta_len = meta_len.next_multiple_of(os::PAGE);
    let meta = os::reserve(meta_len);
    // SAFETY: `meta` is our fresh reservation of `meta_len` bytes; committing it RW
    // lets the kernel fill pages lazily (MAP_NORESERVE kept it out of the commit
    // charge where the kernel allows).
    if !meta.is_null() && unsafe { os::commit(meta, meta_len) } {
        return Some((base, meta, plan));
    }
    // SAFETY: both are our own fresh, unused reservations.
    unsafe {
        if !meta.is_null() {
            os::unmap(meta, meta_len);
        }
        os::unmap(base, NCLASS << rshift);
    }
    None
}

/// Reserve the regions and lay out the metadata.
///
/// # Safety
/// Called once, by the init winner, with exclusive access to `gl`.
unsafe fn init_globals(gl: &mut Globals) -> bool {
    // Guard pages, slab commits and the zero checks all assume 4 KiB pages; on a
    // kernel with bigger ones (16 or 64 KiB on some arm64 and ppc64 builds) they
    // would quietly not do what they say. Refuse to run rather than run unhardened.
    // SAFETY: sysconf has no preconditions and does not allocate.
    if unsafe { libc::sysconf(libc::_SC_PAGESIZE) } != os::PAGE as libc::c_long {
        os::write_all(
            2,
            b"engram-malloc: fatal: the kernel's page size is not 4096 bytes, which this build assumes\n",
        );
        os::abort();
    }
    let cfg = env_config();
    let guard = if cfg.guard { os::PAGE } else { 0 };
    // 4 GiB per class; smaller if the address space or the commit charge is limited
    // (valgrind, `ulimit -v`, `vm.overcommit_memory=2`): the metadata scales with it.
    let mut rshift = REGION_SHIFT;
    let (base, meta, plan) = loop {
        if let Some(found) = reserve_regions(rshift, guard) {
            break found;
        }
        // 16 MiB per class (784 MiB in all) is the floor: 4 slabs of the biggest class.
        if rshift <= 24 {
            return false;
        }
        rshift -= 2;
    };
    // One arena per two CPUs by default. With thread caches in front, an arena's
    // lock is taken once per batch of 32 slots, so two CPUs share one with little
    // contention; every arena more keeps its own partly used slabs (on this 2-core
    // machine a second arena cost larson +5 % time and +15 % peak RSS, and bought
    // xmalloc nothing: benches/README.md).
    let want = if cfg.arenas == 0 {
        os::cpu_count().div_ceil(2)
    } else {
        cfg.arenas
    };
    let arenas = want
        .clamp(1, MAX_ARENAS)
        .next_power_of_two()
        .min(MAX_ARENAS) as u32;
    for (c, &(meta_off, free_off, live_off, max_slabs)) in plan.iter().enumerate() {
        let nslots = slots_per_slab(c, guard);
        let by_bytes = ((64 << 10) / slot_size(c)).max(4);
        gl.geom[c] = Geom {
            slot: slot_size(c) as u32,
            nslots: nslots as u32,
            words: nslots.div_ceil(64) as u32,
            slab_bytes: slab_bytes(c, guard) as u32,
            shift: stride_shift(c),
            max_slabs,
            // `max_slabs` is a power of two; each arena owns an equal share (one
            // slab each when there are fewer slabs than arenas).
            arena_shift: max_slabs
                .trailing_zeros()
                .saturating_sub(arenas.trailing_zeros()),
            cap: cfg.tcache.min(by_bytes).max(1) as u32,
            slot_div: Magic::new(slot_size(c) as u64),
            meta: meta.wrapping_add(meta_off).cast(),
            free_bits: meta.wrapping_add(free_off).cast(),
            live: meta.wrapping_add(live_off).cast(),
        };
    }
    let secret = os::random_u64();
    gl.secret = secret;
    gl.extra = if cfg.canary { TAIL } else { 0 };
    gl.arenas = arenas;
    gl.small_max = MAX_SMALL - gl.extra;
    gl.cfg = cfg;
    gl.rshift = rshift;
    gl.span = NCLASS << rshift;
    gl.base = base as usize;
    large::init();
    true
}

// ---------------------------------------------------------------------------------
// Address arithmetic
// ---------------------------------------------------------------------------------

/// A validated slot of the slab region.
struct Slot {
    class: usize,
    slab: u32,
    index: u32,
}

#[inline]
fn slot_addr(gl: &Globals, c: usize, off: u32) -> usize {
    gl.base + (c << gl.rshift) + (off & !FRESH) as usize
}

/// Class and in-region offset of `off = addr - base` (`off < span`).
#[inline]
fn split_off(gl: &Globals, off: usize) -> (usize, u32) {
    (off >> gl.rshift, (off & ((1 << gl.rshift) - 1)) as u32)
}

#[inline]
fn live_byte(gm: &Geom, slab: u32, index: u32) -> &'static AtomicU8 {
    let i = slab as usize * gm.nslots as usize + index as usize;
    // SAFETY: `slab < max_slabs` and `index < nslots` (callers validated), so `i` is
    // inside this class's live array, which lives as long as the process.
    unsafe { &*gm.live.add(i) }
}

/// Slab and slot index of region offset `ro` (a slot start).
#[inline]
fn split(gm: &Geom, ro: u32) -> (u32, u32) {
    let slab = ro >> gm.shift;
    let in_slab = ro & ((1 << gm.shift) - 1);
    (slab, gm.slot_div.div(in_slab))
}

/// Classify `addr` in the slab region by arithmetic alone: Ok(slot) for the start
/// of a slot; Err(fault) for a guard page, the slack after a slab's last slot, or
/// an interior pointer. The caller checked `addr - base < span`. The slot's slab
/// may be uncommitted (a wild pointer): callers read the slot's memory only once
/// its live byte says it was handed out, which only a slot of a committed slab
/// can be. The live bytes
/// themselves are always readable (the metadata mapping is all RW; a never
/// used page reads zero: not live). Checking a per-arena count of committed
/// slabs here instead cost a cache miss per free and per malloc_usable_size
/// (14 % of the latter in redis, which calls it on every malloc and free).
#[inline]
fn locate(off: usize) -> Result<Slot, Fault> {
    let gl = g();
    let (c, ro) = split_off(gl, off);
    let gm = &gl.geom[c];
    let slab = ro >> gm.shift;
    let in_slab = ro & ((1 << gm.shift) - 1);
    if in_slab >= gm.slab_bytes {
        return Err(Fault::InvalidPointer);
    }
    let index = gm.slot_div.div(in_slab);
    if index >= gm.nslots {
        // The slack after a slab's last slot, when the slot size does not
        // divide the slab: no block there (its "index" would be the next
        // slab's first live byte), so not an interior pointer of one either.
        return Err(Fault::InvalidPointer);
    }
    if index * gm.slot != in_slab {
        // Inside a slot that was never handed out (a wild pointer, e.g. into a
        // slab never committed) there is no block to be interior to.
        let state = live_byte(gm, slab, index).load(Ordering::Relaxed);
        return Err(if state == UNUSED {
            Fault::InvalidPointer
        } else {
            Fault::InteriorPointer
        });
    }
    Ok(Slot {
        class: c,
        slab,
        index,
    })
}

/// Why a slot was not live, from its live byte: never handed out (an invalid
/// pointer: a slot of a slab never used, or one sitting unused in a cache) or
/// freed (`freed`).
fn not_live_fault(state: u8, freed: Fault) -> Fault {
    if state == UNUSED {
        Fault::InvalidPointer
    } else {
        freed
    }
}

// ---------------------------------------------------------------------------------
// Canary
// ---------------------------------------------------------------------------------

#[inline]
fn tail_key(gl: &Globals, addr: usize) -> u64 {
    // One multiply: the key only has to differ per slot and be unknown without the
    // secret; a stronger mix would not help, since a leaked canary next to a known
    // address reveals the key either way.
    (addr as u64 ^ gl.secret).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The canary fill byte of the block at `addr`: one of 0x80..=0xfe (never 0,
/// 0xff or ASCII, so a stray string, NUL or memset is not mistaken for it),
/// keyed per block by the secret. A single byte for the whole process (as
/// before 2026-11-25) could be learnt by reading one byte past any block, and
/// an overflow writing that value went unseen in every block (review finding).
#[inline]
fn slot_pattern(gl: &Globals, addr: usize) -> u8 {
    key_pattern(tail_key(gl, addr))
}

/// [`slot_pattern`] from the block's [`tail_key`], for callers that have it.
#[inline]
fn key_pattern(key: u64) -> u8 {
    0x80 + ((key >> 57) % 127) as u8
}

/// The size twice, in both halves of the tail word. When the block fills its slot
/// up to the tail word (no fill byte between them), a linear overflow's first
/// bytes land in the word's low half: with one copy the damaged size could still
/// decode to a smaller valid size and pass whenever the program's own bytes after
/// it happened to equal the fill byte; the untouched high copy now disagrees.
#[inline]
fn tail_copies(size: usize) -> u64 {
    let s = size as u64 & 0xffff_ffff;
    s | (s << 32)
}

/// Write the canary of a block of `size` bytes in a slot of `slot` bytes: the
/// fill window right after `size` and the tail word.
///
/// # Safety
/// `[p, p+slot)` is a writable slot we just handed out; `size + TAIL <= slot`.
#[inline]
unsafe fn write_canary(gl: &Globals, p: *mut u8, size: usize, slot: usize) {
    let tail = slot - TAIL;
    let key = tail_key(gl, p as usize);
    // SAFETY: the caller guarantees the slot bounds; `size <= tail`, and the
    // window ends at the tail word at the latest.
    unsafe {
        fill_window(key_pattern(key), p.add(size), tail - size);
        ptr::write_unaligned(p.add(tail).cast::<u64>(), key ^ tail_copies(size));
    }
}

/// The canary fill byte repeated over a word.
#[inline]
fn pattern_word(pat: u8) -> u64 {
    u64::from(pat) * 0x0101_0101_0101_0101
}

/// Fill the canary window at `q`, `room` bytes before the tail word.
///
/// # Safety
/// `[q, q + min(room, WINDOW))` is writable.
#[inline]
unsafe fn fill_window(pat: u8, q: *mut u8, room: usize) {
    // SAFETY: the caller guarantees the range.
    unsafe {
        if room >= WINDOW {
            ptr::write_unaligned(q.cast::<u64>(), pattern_word(pat));
        } else {
            ptr::write_bytes(q, pat, room);
        }
    }
}

/// True if the canary window at `q` (`room` bytes before the tail word) is intact.
///
/// # Safety
/// `[q, q + min(room, WINDOW))` is readable.
#[inline]
unsafe fn window_intact(pat: u8, q: *const u8, room: usize) -> bool {
    // SAFETY: the caller guarantees the range.
    unsafe {
        if room >= WINDOW {
            ptr::read_unaligned(q.cast::<u64>()) == pattern_word(pat)
        } else {
            bytes_are(q, room, pat)
        }
    }
}

/// Decode the requested size from the canary's tail word (None if it cannot be a
/// size: the word was overwritten). The fill bytes are not checked.
///
/// # Safety
/// `[p, p+slot)` is a readable live slot.
#[inline]
unsafe fn tail_size(gl: &Globals, p: *mut u8, slot: usize) -> Option<usize> {
    let tail = slot - TAIL;
    // SAFETY: the caller guarantees the slot bounds.
    let v = unsafe { ptr::read_unaligned(p.add(tail).cast::<u64>()) } ^ tail_key(gl, p as usize);
    let size = v & 0xffff_ffff;
    (v >> 32 == size && size <= tail as u64).then_some(size as usize)
}

/// Decode and check the canary; returns the requested size.
///
/// # Safety
/// `[p, p+slot)` is a readable live slot.
#[inline]
unsafe fn read_canary(gl: &Globals, p: *mut u8, slot: usize) -> Option<usize> {
    let tail = slot - TAIL;
    // SAFETY: the caller guarantees the slot bounds.
    let size = unsafe { tail_size(gl, p, slot) }?;
    // SAFETY: `size <= tail`: the window lies inside the slot.
    if !unsafe { window_intact(slot_pattern(gl, p as usize), p.add(size), tail - size) } {
        return None;
    }
    Some(size)
}

/// Fill the `len` slack bytes that end at 8-aligned `end = p + len` with `pattern`,
/// a word at a time: slack is short and unaligned, and a memset call costs more
/// than the stores.
///
/// # Safety
/// `[p, p+len)` is writable, `p + len` is 8-aligned, and when `len < 8` the 8 bytes
/// before `p + len` are readable and writable too (they are the block's own bytes).
#[inline]
pub(crate) unsafe fn fill_pattern(p: *mut u8, len: usize, pattern: u8) {
    let w = u64::from(pattern) * 0x0101_0101_0101_0101;
    if len == 0 {
        return;
    }
    if len < 8 {
        // Merge into the last word: keep the block's low bytes, set the slack.
        // SAFETY: the caller guarantees the 8 bytes before `p + len` are ours.
        unsafe {
            let q = p.add(len).sub(8).cast::<u64>();
            let keep = u64::MAX >> (8 * len);
            q.write((q.read() & keep) | (w & !keep));
        }
        return;
    }
    let mut i = len;
    while i >= 8 {
        i -= 8;
        // SAFETY: `i + 8 <= len`.
        unsafe { ptr::write_unaligned(p.add(i).cast::<u64>(), w) };
    }
    if i > 0 {
        // SAFETY: `len >= 8`: the first word overlaps what was written.
        unsafe { ptr::write_unaligned(p.cast::<u64>(), w) };
    }
}

/// True if the `len` slack bytes ending at 8-aligned `p + len` all equal `pattern`.
///
/// # Safety
/// As for [`fill_pattern`], readable.
#[inline]
pub(crate) unsafe fn has_pattern(p: *const u8, len: usize, pattern: u8) -> bool {
    let w = u64::from(pattern) * 0x0101_0101_0101_0101;
    if len == 0 {
        return true;
    }
    if len < 8 {
        // SAFETY: the caller guarantees the 8 bytes before `p + len` are readable.
        let v = unsafe { p.add(len).sub(8).cast::<u64>().read() };
        return (v ^ w) >> (8 * (8 - len)) == 0;
    }
    let mut diff = 0u64;
    let mut i = len;
    while i >= 8 {
        i -= 8;
        // SAFETY: `i + 8 <= len`.
        diff |= unsafe { ptr::read_unaligned(p.add(i).cast::<u64>()) } ^ w;
    }
    if i > 0 {
        // SAFETY: `len >= 8`.
        diff |= unsafe { ptr::read_unaligned(p.cast::<u64>()) } ^ w;
    }
    diff == 0
}

/// A uniform index below `n` from 64 random bits, by multiply-high instead of `%`
/// (a 64-bit `div` costs as much as the rest of free).
#[inline]
fn below(r: u64, n: usize) -> usize {
    ((u128::from(r) * n as u128) >> 64) as usize
}

/// True if the slot of `len` bytes at `p` is all zero. Big slots may have had
/// their pages dropped (see `release`): only resident pages are read, so the
/// check does not fault zero pages in just to read them.
///
/// # Safety
/// As for [`is_zero`]; the slot is ours alone.
#[inline]
unsafe fn slot_is_zero(p: *mut u8, len: usize) -> bool {
    if len < BIG_SLOT {
        // SAFETY: the caller's guarantees.
        return unsafe { is_zero(p, len) };
    }
    let a = p as usize;
    let start = a.next_multiple_of(os::PAGE);
    let end = (a + len) & !(os::PAGE - 1);
    // SAFETY: head, interior and tail partition the slot; the interior is whole
    // pages of our mapping.
    unsafe {
        is_zero(p, start - a)
            && is_zero(end as *const u8, a + len - end)
            && large::pages_zero(start as *mut u8, end - start)
    }
}

/// The address of the first non-zero 8-byte word of the `len` bytes at `p`,
/// if any (a write after free, for its report).
///
/// # Safety
/// As for [`is_zero`].
pub(crate) unsafe fn nonzero_word(p: *const u8, len: usize) -> Option<usize> {
    // SAFETY: the caller's guarantees.
    if unsafe { is_zero(p, len) } {
        return None;
    }
    // SAFETY: as above.
    let words = unsafe { core::slice::from_raw_parts(p.cast::<u64>(), len / 8) };
    words
        .iter()
        .position(|&w| w != 0)
        .map(|w| p as usize + w * 8)
}

/// True if the `len` bytes at `p` are all zero.
///
/// # Safety
/// `[p, p+len)` is readable and `p` is 8-byte aligned, `len` a multiple of 8.
#[inline]
pub(crate) unsafe fn is_zero(p: *const u8, len: usize) -> bool {
    // SAFETY: the caller guarantees alignment and bounds.
    let words = unsafe { core::slice::from_raw_parts(p.cast::<u64>(), len / 8) };
    // No early exit: a non-zero slot is the rare fault case, and a plain OR
    // reduction vectorises.
    words.iter().fold(0, |acc, w| acc | w) == 0
}

// ---------------------------------------------------------------------------------
// malloc
// ---------------------------------------------------------------------------------

/// Allocate `size` bytes aligned to 16; null with ENOMEM on failure.
#[inline]
pub(crate) fn malloc(size: usize) -> *mut u8 {
    // Acquire: a size under the gate may read `Globals` (see `SPAN`).
    if size < SMALL_GATE.load(Ordering::Acquire) {
        let gl = g();
        let c = if size == 0 {
            0
        } else {
            class_of(size + gl.extra)
        };
        let t = tc();
        // SAFETY: `t` is this thread's cache; the references end before any call
        // that could re-enter the allocator.
        unsafe {
            let n = (*t).count[c] as usize;
            if n > 0 && (*t).state == T_ACTIVE {
                let off = (*t).slots[c][n - 1];
                (*t).count[c] = (n - 1) as u8;
                count_op(t, &raw mut (*t).allocs);
                return finish(gl, c, off, size);
            }
        }
    }
    malloc_slow(size, 16)
}

/// Hand out slot `off` of class `c` for a block of `size` bytes.
#[inline]
fn finish(gl: &Globals, c: usize, off: u32, size: usize) -> *mut u8 {
    let p = slot_addr(gl, c, off) as *mut u8;
    let gm = &gl.geom[c];
    let (slab, index) = split(gm, off & !FRESH);
    if mark_live(live_byte(gm, slab, index)) {
        fatal(Fault::MetadataCorruption, Op::Malloc, p as usize);
    }
    if c == 0 {
        return p;
    }
    let slot = gm.slot as usize;
    // SAFETY: the slot is committed and now ours alone (live bit was clear and we set it).
    unsafe {
        if gl.cfg.zero && off & FRESH == 0 && !slot_is_zero(p, slot) {
            fatal(Fault::WriteAfterFree, Op::Malloc, p as usize);
        }
        if gl.cfg.canary {
            write_canary(gl, p, size, slot);
        }
    }
    p
}

/// The class a block of `size` bytes aligned to `align` (a power of two) is served
/// from; None for a large block.
fn class_for(gl: &Globals, size: usize, align: usize) -> Option<usize> {
    if size > gl.small_max || align > os::PAGE {
        None
    } else if align <= 16 {
        Some(if size == 0 {
            0
        } else {
            class_of(size + gl.extra)
        })
    } else {
        // Slot addresses are multiples of the slot size from a page-aligned slab
        // start: a class whose slot size is a multiple of `align` aligns every slot.
        let mut c = class_of(size.max(1) + gl.extra);
        while c < NCLASS && slot_size(c) % align != 0 {
            c += 1;
        }
        (c < NCLASS).then_some(c)
    }
}

/// free_aligned_sized's extra check: a block allocated with `align` sits in a
/// class at least as big as that alignment asks for, with slots that are multiples
/// of it (or is a large block aligned to it). A wrong alignment aborts.
pub(crate) fn check_alignment(p: *mut u8, align: usize, size: usize) {
    let ok = if let Some(off) = region_offset(p as usize) {
        let gl = g();
        let c = off >> gl.rshift;
        match class_for(gl, size, align) {
            Some(want) => c >= want && slot_size(c) % align.max(16) == 0,
            None => false,
        }
    } else {
        (p as usize) % align == 0
    };
    if !ok {
        fatal(Fault::SizeMismatch, Op::FreeAlignedSized, p as usize);
    }
}

/// Classes whose region filled up at least once, so that malloc served one of
/// their sizes from a bigger class (`malloc_slow`).
static OVERFLOWED: [AtomicU8; NCLASS] = [const { AtomicU8::new(0) }; NCLASS];

/// Whether a block of `size` bytes aligned to `align` could sit in class `c`:
/// the class malloc picks for it, or a bigger one once that class's region
/// has been full.
fn picks_class(gl: &Globals, size: usize, align: usize, c: usize) -> bool {
    match class_for(gl, size, align) {
        Some(want) => want == c || (want < c && OVERFLOWED[want].load(Ordering::Relaxed) != 0),
        None => false,
    }
}

#[cold]
#[inline(never)]
pub(crate) fn malloc_slow(size: usize, align: usize) -> *mut u8 {
    if !ensure_init() {
        os::set_errno(libc::ENOMEM);
        return ptr::null_mut();
    }
    let gl = g();
    let c = class_for(gl, size, align);
    let Some(c) = c else {
        return large::alloc(size, align);
    };
    let t = tc();
    // SAFETY: this thread's cache; see `malloc`.
    let state = unsafe { (*t).state };
    if state == T_UNINIT {
        init_thread(t);
    }
    // SAFETY: as above.
    if unsafe { (*t).state } == T_ACTIVE {
        // SAFETY: as above.
        unsafe {
            if (*t).count[c] == 0 {
                refill(t, c);
            }
            let n = (*t).count[c] as usize;
            if n > 0 {
                let off = (*t).slots[c][n - 1];
                (*t).count[c] = (n - 1) as u8;
                count_op(t, &raw mut (*t).allocs);
                return finish(gl, c, off, size);
            }
        }
    }
    // Bypass mode, or the class's region is full: take one slot of this class or,
    // failing that, of a bigger one whose slots are equally aligned; then a mapping.
    let mut one = [Claimed::BLANK; 1];
    for c2 in c..NCLASS {
        if c2 != c && (c == 0 || slot_size(c2) % align != 0) {
            continue;
        }
        if claim(c2, current_arena(gl), &mut one, os::random_u64()) == 1 {
            COUNTERS.allocs.fetch_add(1, Ordering::Relaxed);
            if c2 != c {
                OVERFLOWED[c].store(1, Ordering::Relaxed);
            }
            return finish(gl, c2, encode(gl, c2, one[0]), size);
        }
    }
    if c == 0 {
        os::set_errno(libc::ENOMEM);
        return ptr::null_mut();
    }
    large::alloc(size, align)
}

#[inline]
fn encode(gl: &Globals, c: usize, cl: Claimed) -> u32 {
    let gm = &gl.geom[c];
    (cl.slab << gm.shift) + cl.slot * gm.slot + if cl.fresh { FRESH } else { 0 }
}

/// Arena `a`'s first slab and the metadata of its slabs: its own share of the
/// class's arrays, with slab indices relative to that first slab.
fn slabs_view(gm: &Geom, a: usize) -> (u32, Slabs<'static>) {
    let (first32, n) = arena_range(gm, a);
    let (first, n, words) = (first32 as usize, n as usize, gm.words as usize);
    // SAFETY: the class's metadata arrays are reserved for `max_slabs` slabs for the
    // life of the process and `first + n <= max_slabs`. Arenas own disjoint slab
    // ranges and this view is used only under arena `a`'s lock, which makes it the
    // only access to them.
    let view = unsafe {
        Slabs {
            meta: core::slice::from_raw_parts_mut(gm.meta.add(first), n),
            bits: core::slice::from_raw_parts_mut(gm.free_bits.add(first * words), n * words),
            words,
            nslots: gm.nslots,
        }
    };
    (first32, view)
}

/// Slabs committed with a guard page after them, all classes together (see
/// `Config::guard_slabs`). Slabs are never uncommitted (an empty one drops its
/// pages with MADV_DONTNEED and keeps its protection), so this only grows.
static GUARDED_SLABS: AtomicUsize = AtomicUsize::new(0);

/// Claim up to `out.len()` slots of class `c`, from arena `a` or, when its share
/// of the region is full (or the OS refused to commit), from the next arena that
/// has any. Claimed slab indices are class-region indices.
fn claim(c: usize, a: usize, out: &mut [Claimed], rng: u64) -> usize {
    let n = g().arenas as usize;
    for k in 0..n {
        let got = claim_in(c, (a + k) % n, out, rng);
        if got > 0 {
            return got;
        }
    }
    0
}

fn claim_in(c: usize, a: usize, out: &mut [Claimed], rng: u64) -> usize {
    let gl = g();
    let gm = &gl.geom[c];
    let arena = &CLASSES[c].arenas[a];
    let mut central = arena.central.lock();
    let (first, mut view) = slabs_view(gm, a);
    let got = central.claim(&mut view, out, rng, |rel| {
        // Class 0 (malloc(0)) stays inaccessible: nothing to commit or count.
        if c == 0 {
            return true;
        }
        let idx = (first + rel) as usize;
        let start = (gl.base + (c << gl.rshift) + (idx << gm.shift)) as *mut u8;
        // Past the budget of guarded slabs the guard page is committed with its
        // slab: the slab then merges with the unguarded one before it into one
        // kernel mapping, where a guarded slab costs two. No slot lies in that
        // page (`locate` calls a pointer into it invalid). Two threads may both
        // pass the check at the budget's edge: the budget is a bound on mappings,
        // and one slab over it is harmless.
        let guarded = gl.cfg.guard && GUARDED_SLABS.load(Ordering::Relaxed) < gl.cfg.guard_slabs;
        let len = if guarded {
            gm.slab_bytes as usize
        } else {
            1 << gm.shift
        };
        // SAFETY: slab `idx` (with its guard page: the whole stride) lies inside
        // the class region we reserved (the view ends at `max_slabs`) and is not
        // yet committed.
        if !unsafe { os::commit(start, len) } {
            return false;
        }
        if guarded {
            GUARDED_SLABS.fetch_add(1, Ordering::Relaxed);
        }
        COUNTERS
            .committed
            .fetch_add(gm.slab_bytes as usize, Ordering::Relaxed);
        true
    });
    let back = central.take_recommitted() as usize;
    drop(central);
    if back > 0 && c != 0 {
        COUNTERS
            .committed
            .fetch_add(back * gm.slab_bytes as usize, Ordering::Relaxed);
    }
    for cl in &mut out[..got] {
        cl.slab += first;
    }
    add_in_use(got * gm.slot as usize);
    got
}

/// Return slots (region offsets) of class `c` to the arenas owning their slabs,
/// each under its own lock: a remote free goes back to its owner, never through a
/// lock shared by the whole class.
fn release(c: usize, offs: &[u32], op: Op) {
    let gl = g();
    let gm = &gl.geom[c];
    // The class's budget of empty slabs kept committed, shared by its arenas.
    let keep = (gl.cfg.decommit as u32).div_ceil(gl.arenas);
    if gm.slot as usize >= BIG_SLOT && c != 0 {
        // A big slot going back to its slab gives its whole pages back to the OS:
        // segregated classes cannot reuse it for other sizes, so keeping it
        // resident is pure RSS. Done before the slot is visible to other threads.
        for &off in offs {
            let p = slot_addr(gl, c, off);
            // Dropping the pages would wipe a write made into the slot since its
            // free: check it now, as its reuse would have. A slot never handed
            // out (FRESH) has nothing to check.
            if gl.cfg.zero && off & FRESH == 0 {
                // SAFETY: the slot is committed and ours alone (free, in no cache).
                let clean = unsafe { slot_is_zero(p as *mut u8, gm.slot as usize) };
                if !clean {
                    fatal(Fault::WriteAfterFree, op, p);
                }
            }
            let start = p.next_multiple_of(os::PAGE);
            let end = (p + gm.slot as usize) & !(os::PAGE - 1);
            // SAFETY: `[start, end)` lies inside a committed slot that is free and
            // in nobody's cache (it is being returned); it reads zero afterwards.
            unsafe { os::decommit(start as *mut u8, end - start) };
        }
    }
    let mut owners = 0u32;
    for &off in offs {
        owners |= 1 << arena_of(gm, (off & !FRESH) >> gm.shift);
    }
    while owners != 0 {
        let a = owners.trailing_zeros() as usize;
        owners &= owners - 1;
        let mut central = CLASSES[c].arenas[a].central.lock();
        let (first, mut view) = slabs_view(gm, a);
        for &off in offs {
            if arena_of(gm, (off & !FRESH) >> gm.shift) != a {
                continue;
            }
            let (slab, index) = split(gm, off & !FRESH);
            match central.release(&mut view, slab - first, index, keep) {
                Ok(None) => {}
                Ok(Some(s)) => {
                    if let Err(at) = decommit_slab(gl, c, first + s) {
                        drop(central);
                        fatal(Fault::WriteAfterFree, op, at);
                    }
                    central.decommitted(&mut view, s);
                }
                Err(_) => {
                    drop(central);
                    fatal(Fault::MetadataCorruption, op, slot_addr(gl, c, off))
                }
            }
        }
    }
    sub_in_use(offs.len() * gm.slot as usize);
}

/// Give an empty slab's pages back to the OS. Its slots are all free, so with
/// zero-on-free they all read zero: a word that does not was written after its
/// slot's free, and dropping the page would wipe the evidence. Its address is
/// returned instead, and the slab is left as it is, for the caller to report
/// (after dropping its lock).
fn decommit_slab(gl: &Globals, c: usize, slab: u32) -> Result<(), usize> {
    if c == 0 {
        return Ok(());
    }
    let gm = &gl.geom[c];
    let start = (gl.base + (c << gl.rshift) + ((slab as usize) << gm.shift)) as *mut u8;
    if gl.cfg.zero {
        // SAFETY: the slab is committed (its resident pages are readable) and
        // empty: no thread uses its memory.
        if let Some(at) = unsafe { large::first_dirty_word(start, gm.slab_bytes as usize) } {
            return Err(at);
        }
    }
    // SAFETY: the slab is committed and empty (no live, cached or quarantined slot:
    // all its bits are back in its arena, whose lock we hold).
    unsafe { os::decommit(start, gm.slab_bytes as usize) };
    // Counted again when a claim takes from it (`claim`).
    COUNTERS
        .committed
        .fetch_sub(gm.slab_bytes as usize, Ordering::Relaxed);
    Ok(())
}

/// Fill the thread's cache of class `c` with half its capacity, shuffled.
fn refill(t: *mut ThreadCache, c: usize) {
    let gl = g();
    let want = cap_of(c).div_ceil(2);
    let mut buf = [Claimed::BLANK; TCACHE_MAX];
    let rng = next_rand(t);
    let got = claim(c, current_arena(gl), &mut buf[..want], rng);
    if gl.cfg.random {
        for i in (1..got).rev() {
            let j = below(next_rand(t), i + 1);
            buf.swap(i, j);
        }
    }
    // SAFETY: this thread's cache; no other reference is live.
    unsafe {
        let n = (*t).count[c] as usize;
        for (k, cl) in buf[..got].iter().enumerate() {
            (*t).slots[c][n + k] = encode(gl, c, *cl);
        }
        (*t).count[c] = (n + got) as u8;
        flush_counts(t);
    }
}

/// A thread's op counters go to the process counters at every refill and at
/// least every this many operations, so the report at exit (written by one
/// thread) misses fewer than this many of each thread still running then. A
/// thread looping over malloc/free within its cache never refills.
const COUNT_BATCH: u64 = 256;

/// Count one operation in `counter` (a field of `t`), moving the thread's
/// counters to the process every [`COUNT_BATCH`].
///
/// # Safety
/// `t` is this thread's cache and `counter` points into it.
#[inline]
unsafe fn count_op(t: *mut ThreadCache, counter: *mut u64) {
    // SAFETY: the caller guarantees both pointers.
    unsafe {
        *counter += 1;
        if *counter >= COUNT_BATCH {
            flush_counts(t);
        }
    }
}

/// Move the thread's op counters into the process counters.
#[cold]
#[inline(never)]
fn flush_counts(t: *mut ThreadCache) {
    // SAFETY: this thread's cache.
    unsafe {
        COUNTERS.allocs.fetch_add((*t).allocs, Ordering::Relaxed);
        COUNTERS.frees.fetch_add((*t).frees, Ordering::Relaxed);
        (*t).allocs = 0;
        (*t).frees = 0;
    }
}

#[cold]
fn init_thread(t: *mut ThreadCache) {
    // SAFETY: this thread's cache; the state write ends before the call below, which
    // may re-enter malloc and must then see BYPASS.
    unsafe {
        (*t).state = T_BYPASS;
        (*t).rng = os::random_u64();
    }
    let key = KEY.load(Ordering::Relaxed);
    if key == u32::MAX {
        return; // no destructor possible: stay in bypass mode, still correct.
    }
    // SAFETY: `key` came from pthread_key_create; any non-null value arms the
    // destructor. For keys past glibc's first 32 this may call calloc, which finds
    // this thread in BYPASS and is served from the central state.
    if unsafe { libc::pthread_setspecific(key, ptr::dangling::<libc::c_void>()) } == 0 {
        // SAFETY: as above.
        unsafe { (*t).state = T_ACTIVE };
    }
}

/// pthread key destructor: return the thread's cached and quarantined slots.
extern "C" fn thread_exit(_: *mut libc::c_void) {
    let t = tc();
    // SAFETY: this thread's cache; switching to BYPASS first means frees made by
    // later TLS destructors go straight to the central state.
    unsafe { (*t).state = T_BYPASS };
    drain(t, Op::Free);
}

/// Return every cached and quarantined slot of this thread to the central state;
/// a fault found on the way is reported as found in `op`.
fn drain(t: *mut ThreadCache, op: Op) {
    let gl = g();
    // SAFETY: this thread's cache; `release` does not touch it.
    unsafe {
        let q = (*t).qlen;
        (*t).qlen = 0;
        (*t).qbytes = 0;
        for i in 0..q {
            let p = (*t).quarantine[i];
            let off = p - gl.base;
            let (c, ro) = split_off(gl, off);
            release(c, &[ro], op);
        }
        for c in 0..NCLASS {
            let n = (*t).count[c] as usize;
            (*t).count[c] = 0;
            if n > 0 {
                let slots = (*t).slots[c];
                release(c, &slots[..n], op);
            }
        }
    }
    flush_counts(t);
}

// ---------------------------------------------------------------------------------
// free
// ---------------------------------------------------------------------------------

/// Free `p` (non-null) found by `op`; `expect` is the size and alignment
/// free_sized (alignment 16) or free_aligned_sized was told.
#[inline]
pub(crate) fn free(p: *mut u8, op: Op, expect: Option<(usize, usize)>) {
    let Some(off) = region_offset(p as usize) else {
        return large::free(p, op, expect.map(|(size, _)| size));
    };
    let gl = g();
    let s = match locate(off) {
        Ok(s) => s,
        Err(f) => fatal(f, op, p as usize),
    };
    let gm = &gl.geom[s.class];
    let was = clear_live(live_byte(gm, s.slab, s.index));
    if was != LIVE {
        fatal(not_live_fault(was, Fault::DoubleFree), op, p as usize);
    }
    if s.class != 0 {
        let slot = gm.slot as usize;
        if gl.cfg.canary {
            // SAFETY: the slot is committed and was live until the bit clear above,
            // which made it ours alone.
            match unsafe { read_canary(gl, p, slot) } {
                Some(size) => {
                    if expect.is_some_and(|(e, _)| e != size) {
                        fatal(Fault::SizeMismatch, op, p as usize);
                    }
                }
                None => fatal(Fault::HeapOverflow, op, p as usize),
            }
        } else if expect.is_some_and(|(e, align)| !picks_class(gl, e, align, s.class)) {
            // Without the canary the size (and alignment) must pick the slot's
            // class, as malloc picked it.
            fatal(Fault::SizeMismatch, op, p as usize);
        }
        if gl.cfg.zero {
            // SAFETY: as above: the slot is ours and writable.
            unsafe { ptr::write_bytes(p, 0, slot) };
        }
    } else if expect.is_some_and(|(e, _)| e != 0) {
        fatal(Fault::SizeMismatch, op, p as usize);
    }
    retire(gl, p as usize, split_off(gl, off).1, s.class);
}

/// Put a freed (not live, zeroed) slot into the quarantine or the cache.
#[inline]
fn retire(gl: &Globals, addr: usize, off: u32, c: usize) {
    let t = tc();
    // SAFETY: this thread's cache; no reference is held across calls that could
    // re-enter (init_thread/flush/release do not touch it through one).
    unsafe {
        if (*t).state != T_ACTIVE {
            if (*t).state == T_UNINIT {
                // A thread whose first call is a free (a consumer that only frees)
                // sets up its cache here as malloc would; it used to skip the
                // quarantine, so its freed slot could be handed out again at once
                // (review finding).
                init_thread(t);
            }
            if (*t).state != T_ACTIVE {
                release(c, &[off], Op::Free);
                COUNTERS.frees.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        count_op(t, &raw mut (*t).frees);
        let q = gl.cfg.quarantine;
        if q > 0 {
            let size = gl.geom[c].slot as usize;
            // Make room under both caps (count and bytes): random entries move on
            // to the cache. Replacing one entry is not enough: a big slot taking a
            // small one's place would let the bytes grow past the cap.
            while (*t).qlen > 0 && ((*t).qlen >= q || (*t).qbytes + size > QUARANTINE_BYTES) {
                let n = (*t).qlen;
                let i = below(next_rand(t), n);
                let out = (*t).quarantine[i];
                (*t).quarantine[i] = (*t).quarantine[n - 1];
                (*t).qlen = n - 1;
                let (oc, ooff) = split_off(gl, out - gl.base);
                (*t).qbytes -= gl.geom[oc].slot as usize;
                cache_push(t, oc, ooff);
            }
            let n = (*t).qlen;
            (*t).quarantine[n] = addr;
            (*t).qlen = n + 1;
            (*t).qbytes += size;
            return;
        }
        cache_push(t, c, off);
    }
}

/// Put freed slot `off` of class `c` into this thread's cache, flushing half of
/// it first when full.
///
/// # Safety
/// `t` is this thread's active cache, with no reference to it held.
#[inline]
unsafe fn cache_push(t: *mut ThreadCache, c: usize, off: u32) {
    // SAFETY: the caller guarantees `t`.
    unsafe {
        if (*t).count[c] as usize >= cap_of(c) {
            flush(t, c);
        }
        let n = (*t).count[c] as usize;
        (*t).slots[c][n] = off;
        (*t).count[c] = (n + 1) as u8;
    }
}

/// Return the older half of the thread's cache of class `c`.
#[cold]
fn flush(t: *mut ThreadCache, c: usize) {
    // SAFETY: this thread's cache.
    unsafe {
        let n = (*t).count[c] as usize;
        let k = n.div_ceil(2);
        let batch = (*t).slots[c];
        release(c, &batch[..k], Op::Free);
        (*t).slots[c].copy_within(k..n, 0);
        (*t).count[c] = (n - k) as u8;
    }
    flush_counts(t);
}

// ---------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------

/// The requested size of live block `p` (non-null); faults on anything else.
pub(crate) fn usable_size(p: *mut u8, op: Op) -> usize {
    let Some(off) = region_offset(p as usize) else {
        return large::usable_size(p, op);
    };
    let gl = g();
    let s = match locate(off) {
        Ok(s) => s,
        Err(f) => fatal(f, op, p as usize),
    };
    let gm = &gl.geom[s.class];
    let state = live_byte(gm, s.slab, s.index).load(Ordering::Acquire);
    if state != LIVE {
        fatal(not_live_fault(state, Fault::UseAfterFree), op, p as usize);
    }
    if s.class == 0 {
        return 0;
    }
    if gl.cfg.canary {
        let slot = gm.slot as usize;
        // malloc_usable_size and realloc only decode the size (redis calls the
        // first on every allocation and free; realloc checks the bytes it hands
        // over in `resize_in_place`, and free checks all of them).
        // SAFETY: the slot is committed and live.
        let size = unsafe {
            if op == Op::UsableSize || op == Op::Realloc {
                tail_size(gl, p, slot)
            } else {
                read_canary(gl, p, slot)
            }
        };
        match size {
            Some(n) => n,
            None => fatal(Fault::HeapOverflow, op, p as usize),
        }
    } else {
        gm.slot as usize
    }
}

/// Resize in place if the new size stays in the same slot; returns false otherwise.
/// `p` is a live small block whose requested size is `old`.
pub(crate) fn resize_in_place(p: *mut u8, old: usize, new: usize) -> bool {
    let Some(off) = region_offset(p as usize) else {
        return large::resize_in_place(p, old, new);
    };
    let gl = g();
    let c = off >> gl.rshift;
    if c == 0 || new == 0 || new > gl.small_max || class_of(new + gl.extra) != c {
        return false;
    }
    if gl.cfg.canary {
        let slot = gl.geom[c].slot as usize;
        let tail = slot - TAIL;
        // The old window is checked whichever way the block moves (an overflow
        // into it is caught here, before the window moves), then the bytes that
        // change hands are zeroed and the window is written at the new size.
        let w_end = (old + WINDOW).min(tail);
        // SAFETY: `p` is a live slot of class `c` (validated by the caller through
        // usable_size) and `old, new <= tail`: every access stays inside it.
        unsafe {
            if !window_intact(slot_pattern(gl, p as usize), p.add(old), tail - old) {
                fatal(Fault::HeapOverflow, Op::Realloc, p as usize);
            }
            if new >= old {
                // Past the window the slack was never the block's: it is still
                // zero when freed slots are zeroed.
                if gl.cfg.zero && new > w_end && !bytes_are(p.add(w_end), new - w_end, 0) {
                    fatal(Fault::HeapOverflow, Op::Realloc, p as usize);
                }
                ptr::write_bytes(p.add(old), 0, new.min(w_end) - old);
            } else {
                // The bytes leaving the block, and the old window, become slack.
                ptr::write_bytes(p.add(new), 0, w_end - new);
            }
            write_canary(gl, p, new, slot);
        }
    }
    true
}

/// True if the `len` bytes at `p` all equal `b` (short ranges: no alignment needed).
///
/// # Safety
/// `[p, p+len)` is readable.
#[inline]
unsafe fn bytes_are(p: *const u8, len: usize, b: u8) -> bool {
    // SAFETY: the caller guarantees the range.
    let s = unsafe { core::slice::from_raw_parts(p, len) };
    s.iter().fold(0, |acc, &x| acc | (x ^ b)) == 0
}

/// Grow a large block by moving its pages (mremap) instead of copying them;
/// null when `p` is not a large block or the OS refused.
pub(crate) fn grow_large(p: *mut u8, old: usize, new: usize) -> *mut u8 {
    // `new` under the gate: a small block's size (SMALL_GATE is small_max + 1).
    if region_offset(p as usize).is_some() || new < SMALL_GATE.load(Ordering::Acquire) {
        return ptr::null_mut();
    }
    large::grow_by_remap(p, old, new)
}

/// Drop the whole pages of slab `s` (arena-relative; the arena starts at slab
/// `first`) that only free slots or its slack cover and that are resident, after
/// checking them zero when zero-on-free is on (`Err`: the first non-zero word).
/// One mincore for the slab, one madvise per resident stretch.
fn trim_slab(
    gl: &Globals,
    c: usize,
    central: &Central,
    view: &Slabs<'_>,
    first: u32,
    s: u32,
) -> Result<bool, usize> {
    const MAXP: usize = 512;
    let gm = &gl.geom[c];
    let slot = gm.slot as usize;
    let slab = gl.base + (c << gl.rshift) + (((first + s) as usize) << gm.shift);
    let mut vec = [0u8; MAXP];
    let mut have = false;
    let mut dropped = false;
    let mut dirty = None;
    central.slab_free_runs(view, s, |from, to, frontier| {
        if dirty.is_some() {
            return;
        }
        let end = if to == gm.nslots {
            gm.slab_bytes as usize
        } else {
            to as usize * slot
        };
        let lim = (frontier as usize * slot).next_multiple_of(os::PAGE);
        let end = end.min(lim) / os::PAGE;
        let start = (from as usize * slot).div_ceil(os::PAGE);
        if end <= start {
            return;
        }
        if !have {
            have = true;
            let pages = (lim / os::PAGE).min(MAXP);
            // SAFETY: the slab is committed and page-aligned; `vec` holds
            // `pages` bytes.
            if !unsafe { os::resident(slab as *mut u8, pages, &mut vec) } {
                vec.fill(1);
            }
        }
        let mut i = start;
        while i < end {
            let r = i >= MAXP || vec[i] & 1 != 0;
            let mut j = i + 1;
            while j < end && (j >= MAXP || vec[j] & 1 != 0) == r {
                j += 1;
            }
            if r {
                let q = (slab + i * os::PAGE) as *mut u8;
                let n = (j - i) * os::PAGE;
                // SAFETY: pages `i..j` lie in committed slab `first + s` and
                // only free slots (bits set in this arena, whose lock the
                // caller holds) or the slab's slack cover them.
                unsafe {
                    if gl.cfg.zero {
                        dirty = nonzero_word(q, n);
                        if dirty.is_some() {
                            return;
                        }
                    }
                    os::decommit(q, n);
                }
                dropped = true;
            }
            i = j;
        }
    });
    dirty.map_or(Ok(dropped), Err)
}

/// Flush this thread's cache and quarantine, drop the pages of every empty slab and
/// the large cache. True if anything was released.
pub(crate) fn trim() -> bool {
    if STATE.load(Ordering::Acquire) != READY {
        return false;
    }
    let t = tc();
    // SAFETY: this thread's cache.
    if unsafe { (*t).state } == T_ACTIVE {
        drain(t, Op::Trim);
    }
    let gl = g();
    let mut released = false;
    for (c, class) in CLASSES.iter().enumerate().skip(1) {
        let gm = &gl.geom[c];
        for (a, arena) in class.arenas.iter().enumerate().take(gl.arenas as usize) {
            let mut central = arena.central.lock();
            let (first, mut view) = slabs_view(gm, a);
            let mut list = [0u32; 64];
            loop {
                let mut n = 0;
                central.empty_slabs(&view, |s| {
                    if n < list.len() {
                        list[n] = s;
                        n += 1;
                    }
                });
                if n == 0 {
                    break;
                }
                for &s in &list[..n] {
                    if let Err(at) = decommit_slab(gl, c, first + s) {
                        drop(central);
                        fatal(Fault::WriteAfterFree, Op::Trim, at);
                    }
                    central.decommitted(&mut view, s);
                }
                released = true;
            }
            // Then the free pages inside partly used slabs: whole pages that
            // only free slots (or the slack after the last one) cover. Big
            // slots gave theirs back when they were freed. A few slabs per
            // lock hold (a big heap takes long: others' refills must not wait
            // for all of it), one mincore per slab, one madvise per run.
            if (gm.slot as usize) < BIG_SLOT {
                let nslabs = central.nslabs;
                drop(central);
                let mut idx = 0;
                while idx < nslabs {
                    let central = arena.central.lock();
                    let (first, view) = slabs_view(gm, a);
                    let stop = (idx + 4).min(central.nslabs);
                    let mut dirty = None;
                    for s in idx..stop {
                        match trim_slab(gl, c, &central, &view, first, s) {
                            Ok(any) => released |= any,
                            Err(at) => {
                                dirty = Some(at);
                                break;
                            }
                        }
                    }
                    let waited = arena.central.contended();
                    drop(central);
                    if let Some(at) = dirty {
                        fatal(Fault::WriteAfterFree, Op::Trim, at);
                    }
                    if waited {
                        // Let the woken waiter take the lock before we do again.
                        let nap = libc::timespec {
                            tv_sec: 0,
                            tv_nsec: 50_000,
                        };
                        // SAFETY: a valid timespec; the remainder may be null.
                        unsafe { libc::nanosleep(&nap, ptr::null_mut()) };
                    }
                    idx = stop.max(idx + 1);
                }
            }
        }
    }
    large::trim() || released
}

/// The fault hook: count it and emit the report line if asked.
pub(crate) fn on_fault() {
    COUNTERS.faults.fetch_add(1, Ordering::Relaxed);
    write_report(true);
}

static REPORTED: AtomicU8 = AtomicU8::new(0);

/// The process whose memory this is: set at init and in a forked child. A vfork
/// child (posix_spawn, Python's subprocess) shares the parent's memory without
/// running atfork handlers; when it leaves through `_exit` after a failed exec
/// its pid differs from this one, and it must not report the parent's counters
/// as its own nor take the parent's one report. 0: not initialised.
static OWNER_PID: AtomicI32 = AtomicI32::new(0);

/// Write the report line once per process if `stats` is on.
pub fn report() {
    write_report(false);
}

/// The report line, at exit or (`fault`) just before the abort of a fault. A
/// fault's report goes only to a descriptor other than stderr: the fault is the
/// one line a fault writes to stderr (ALLOC_CONTRACT.md).
fn write_report(fault: bool) {
    // A process that never allocated still reports (zeros): read the options here.
    let cfg = if STATE.load(Ordering::Acquire) == READY {
        g().cfg
    } else {
        env_config()
    };
    if !cfg.stats || (fault && cfg.stats_fd == 2) {
        return;
    }
    let owner = OWNER_PID.load(Ordering::Relaxed);
    if owner != 0 && owner != os::pid() {
        return;
    }
    if cfg.stats_ino != 0 && !os::is_pipe_with_inode(cfg.stats_fd, cfg.stats_ino) {
        return;
    }
    if REPORTED.swap(1, Ordering::AcqRel) != 0 {
        return;
    }
    let t = tc();
    // SAFETY: this thread's cache; reading its counters.
    let (a, f) = unsafe { ((*t).allocs, (*t).frees) };
    let mut l = Line::new();
    l.push(b"engram-malloc: report pid=")
        .dec(os::pid() as u64)
        .push(b" allocs=")
        .dec(COUNTERS.allocs.load(Ordering::Relaxed) + a)
        .push(b" frees=")
        .dec(COUNTERS.frees.load(Ordering::Relaxed) + f)
        .push(b" peak_bytes=")
        .dec(COUNTERS.peak.load(Ordering::Relaxed) as u64)
        .push(b" faults=")
        .dec(COUNTERS.faults.load(Ordering::Relaxed))
        .push(b"\n");
    os::write_all_no_sigpipe(cfg.stats_fd, l.as_bytes());
}

/// Set the heap up now and record this process as its owner (from the
/// library's constructor, before the program's first malloc: a vfork child that
/// leaves before that malloc must not take the parent's report, and a fork
/// before it must still run the atfork handlers init registers, so children
/// report their own line).
pub fn init_at_load() {
    if !ensure_init() {
        note_owner();
    }
}

fn note_owner() {
    let _ = OWNER_PID.compare_exchange(0, os::pid(), Ordering::Relaxed, Ordering::Relaxed);
}

/// Allow a forked child to report again.
fn reset_report_after_fork() {
    REPORTED.store(0, Ordering::Relaxed);
}

/// The current thread's unflushed op counters (for `stats()`).
pub(crate) fn thread_counts() -> (u64, u64) {
    let t = tc();
    // SAFETY: this thread's cache.
    unsafe { ((*t).allocs, (*t).frees) }
}

extern "C" fn fork_prepare() {
    large::lock_for_fork();
    for c in &CLASSES {
        for a in &c.arenas {
            a.central.force_lock();
        }
    }
}

/// Release every lock `fork_prepare` took, in reverse order.
fn unlock_after_fork() {
    for c in CLASSES.iter().rev() {
        for a in c.arenas.iter().rev() {
            // SAFETY: taken by fork_prepare in this thread (in the child: in the
            // parent thread that is now the child's only thread).
            unsafe { a.central.force_unlock() };
        }
    }
    large::unlock_after_fork();
}

extern "C" fn fork_parent() {
    unlock_after_fork();
}

extern "C" fn fork_child() {
    unlock_after_fork();
    OWNER_PID.store(os::pid(), Ordering::Relaxed);
    reset_report_after_fork();
    // The child reports its own work: the parent's operations are the parent's
    // (`engram run` adds up every process's line). Its peak starts at what it
    // inherited.
    COUNTERS.allocs.store(0, Ordering::Relaxed);
    COUNTERS.frees.store(0, Ordering::Relaxed);
    COUNTERS.faults.store(0, Ordering::Relaxed);
    COUNTERS
        .peak
        .store(COUNTERS.in_use.load(Ordering::Relaxed), Ordering::Relaxed);
    let t = tc();
    // SAFETY: this thread's cache; the child has no other thread.
    unsafe {
        (*t).allocs = 0;
        (*t).frees = 0;
    }
}

/// The configuration in force (defaults before init).
pub(crate) fn config() -> Config {
    g().cfg
}

/// The canary fill byte of the block at `addr`, if canaries are on (for the
/// large path).
pub(crate) fn canary_pattern(addr: usize) -> Option<u8> {
    let gl = g();
    gl.cfg.canary.then(|| slot_pattern(gl, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_division_is_exact() {
        for d in (0..NCLASS).map(|c| slot_size(c) as u64) {
            let m = Magic::new(d);
            for n in 0..1u64 << OFFSET_BITS {
                assert_eq!(u64::from(m.div(n as u32)), n / d, "n={n} d={d}");
            }
        }
    }

    /// A pointer into the slack after a slab's last slot (where the slot size
    /// does not divide the slab) is no slot: it must not pass for the next
    /// slab's first one, whose live byte its index would reach.
    #[test]
    fn the_slack_after_a_slabs_last_slot_is_no_slot() {
        assert!(ensure_init());
        let gl = g();
        let mut tried = 0;
        for c in 1..NCLASS {
            let gm = &gl.geom[c];
            if gm.slab_bytes % gm.slot < 16 {
                continue;
            }
            tried += 1;
            let slab = (c << gl.rshift) + (1 << gm.shift);
            let last = slab + ((gm.nslots - 1) * gm.slot) as usize;
            let s = locate(last).unwrap_or_else(|f| panic!("class {c}: {f:?}"));
            assert_eq!((s.class, s.slab, s.index), (c, 1, gm.nslots - 1));
            let slack = slab + (gm.nslots * gm.slot) as usize;
            assert_eq!(
                locate(slack).err(),
                Some(Fault::InvalidPointer),
                "class {c}"
            );
            // Inside the slack, off any slot boundary: still no block there,
            // so not an interior pointer of one.
            assert_eq!(
                locate(slack + 8).err(),
                Some(Fault::InvalidPointer),
                "class {c}, 8 bytes into the slack"
            );
        }
        assert!(tried > 10, "only {tried} classes have slack");
    }

    /// A stray write into the out-of-band live map (here: a freed slot's live
    /// byte set again while the slot waits in the thread cache) makes the
    /// metadata contradict itself; the next malloc that hands that slot out
    /// must report it and abort, not give out a slot the map calls live. Run
    /// in a child process (this test binary, re-executed for this test only).
    #[test]
    fn a_corrupted_live_map_aborts_the_next_malloc() {
        const CHILD: &str = "ENGRAM_TEST_CORRUPT_LIVE_MAP";
        const NAME: &str = "heap::tests::a_corrupted_live_map_aborts_the_next_malloc";
        if std::env::var_os(CHILD).is_some() {
            assert!(ensure_init());
            let gl = g();
            let p = malloc(100);
            eprintln!("child: ptr={:#x}", p as usize);
            // quarantine=0: the slot goes straight to the top of the cache.
            free(p, Op::Free, None);
            let s = locate(p as usize - gl.base).expect("a slot");
            live_byte(&gl.geom[s.class], s.slab, s.index).store(LIVE, Ordering::Relaxed);
            let q = malloc(100);
            eprintln!("child: malloc returned {:#x} without a report", q as usize);
            std::process::exit(0);
        }
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env("ENGRAM_MALLOC", "quarantine=0")
            .output()
            .expect("running the child");
        let stderr = String::from_utf8_lossy(&out.stderr);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "child stderr:\n{stderr}"
        );
        let ptr = stderr
            .lines()
            .find_map(|l| l.strip_prefix("child: ptr="))
            .unwrap_or_else(|| panic!("no ptr line; child stderr:\n{stderr}"));
        let want = format!("engram-malloc: fatal: metadata corruption in malloc() at {ptr}");
        assert!(
            stderr.lines().any(|l| l == want),
            "expected `{want}`; child stderr:\n{stderr}"
        );
    }

    /// A block that fills its slot up to the tail word has no fill byte: the
    /// first byte of an overflow lands in the tail word. Whatever it writes,
    /// and even when the program's own bytes equal the fill byte, the canary
    /// reads as damaged.
    #[test]
    fn one_byte_into_the_tail_word_is_always_caught() {
        assert!(ensure_init());
        let gl = g();
        if !gl.cfg.canary {
            return;
        }
        let p = malloc(24);
        let off = (p as usize) - gl.base;
        let slot = gl.geom[off >> gl.rshift].slot as usize;
        assert_eq!(slot, 24 + TAIL, "malloc(24) should fill a 32-byte slot");
        // SAFETY: `p` is a live 32-byte slot of ours; byte 24 is the tail word's
        // first, restored before the free.
        unsafe {
            ptr::write_bytes(p, slot_pattern(gl, p as usize), 24);
            assert_eq!(read_canary(gl, p, slot), Some(24));
            let orig = *p.add(24);
            for b in 0..=255u8 {
                if b == orig {
                    continue;
                }
                *p.add(24) = b;
                assert_eq!(read_canary(gl, p, slot), None, "byte {b:#x} passed");
            }
            *p.add(24) = orig;
        }
        free(p, Op::Free, None);
    }
}
