//! The KV cache: slots, page groups, prefix sharing, copy-on-write, reclamation.
//!
//! # How it nests
//!
//! ```text
//! KvCache
//! ├── backend: one reservation (all tensors) + one pool (all tensors)
//! ├── slots[max_batch]: pages[pages_per_slot] -> Option<group>
//! ├── groups[G]: one page in every tensor; state Free | Live{refs} | Cached | Spare{slot}
//! ├── free (BTreeSet), lru (tick -> group), prefix (hash -> group)
//! └── requests: id -> {Live{slot} | Swapped, len, tokens, block hashes}
//! ```
//!
//! A *page group* `g` is pool page `t * G + g` in every tensor `t`, so mapping a
//! group at page `j` of slot `s` is one backend map per tensor, and consecutive
//! groups at consecutive positions are file-contiguous (one kernel mapping).
//!
//! # Invariants (checked by [`KvCache::check_invariants`])
//! - every group is in exactly one state; `Free` groups are in `free`, `Cached` ones
//!   in `lru` and `prefix`, and neither is mapped in any slot;
//! - a `Live{refs}` group is mapped at a live position (below the owner's
//!   `pages_for(len)`) of exactly `refs` live slots; a `Spare{slot}` group is mapped
//!   once, in `slot`, at a non-live position;
//! - `prefix[h] == g` implies `groups[g].hash == Some(h)`, and hashed groups are
//!   never `Spare` (they are full blocks of published prefixes);
//! - `free + live + cached + spare == G`, and `runs` equals the number of maximal
//!   runs of consecutive groups at consecutive positions over all slots.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use crate::backend::Backend;
use crate::config::{Config, Geometry, Layout};
use crate::error::Error;
use crate::metrics::{Counters, Metrics};

/// A request's id; ids are never reused.
pub type ReqId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GState {
    Free,
    Live { refs: u32 },
    Cached,
    Spare { slot: u32 },
}

/// The anchor of a first block: no group before it.
const ROOT: (u32, u32) = (u32::MAX, 0);

#[derive(Debug, Clone)]
struct Group {
    state: GState,
    /// Hash of the block chain this page holds, once published.
    hash: Option<u64>,
    /// While published: the chain hash of the block before it, and its token ids
    /// (to match prompts that end or diverge inside this block).
    parent: u64,
    tokens: Vec<u32>,
    /// While published: the group holding the block before it and that group's
    /// `generation` then ([`ROOT`] for a first block). Hashes only find a block; this
    /// chain of groups decides that it continues the same prompt, so one hash
    /// collision cannot carry down the chain.
    anchor: (u32, u32),
    /// Bumped each time the group leaves the prefix table: a block anchored to
    /// an earlier publication of it no longer chains.
    generation: u32,
    /// LRU tick while `Cached`.
    tick: u64,
    /// Punched out of the pool by `trim`.
    released: bool,
}

#[derive(Debug, Clone, Default)]
struct Slot {
    pages: Vec<Option<u32>>,
    owner: Option<ReqId>,
    /// Spare groups mapped in this slot.
    spare: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqState {
    Live { slot: u32 },
    Swapped,
}

#[derive(Debug, Clone)]
struct Request {
    state: ReqState,
    len: usize,
    tokens: Vec<u32>,
    /// Chain hashes of the full blocks published so far.
    hashes: Vec<u64>,
    /// Prompt length given at admission: blocks below it are published
    /// automatically; generated tokens only on an explicit [`KvCache::publish`].
    prompt_len: usize,
    /// Tokens whose KV is known written: those appended before the latest
    /// [`KvCache::append`] (the caller computes what it appended before it
    /// appends more), all of them after [`KvCache::publish`], the cached
    /// prefix at admission. Only these are published at free, preemption and
    /// swap-out: a request dropped right after an append never wrote that KV.
    written: usize,
}

/// Result of [`KvCache::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// The new request.
    pub id: ReqId,
    /// Its batch slot (row of every tensor).
    pub slot: usize,
    /// Prompt tokens whose KV is already present (prefix hit); the caller appends the rest.
    pub cached_tokens: usize,
}

/// Strides (bytes) of every layer's K/V view `[max_batch, max_ctx, kv_heads, head_dim]`
/// (the same for every layer; `token` includes the other layers with
/// [`Layout::TokenMajor`]).
///
/// [`Layout::TokenMajor`]: crate::Layout::TokenMajor
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strides {
    /// Between batch slots.
    pub batch: usize,
    /// Between tokens.
    pub token: usize,
    /// Between heads.
    pub head: usize,
    /// Between elements.
    pub elem: usize,
    /// Between layers (the K tensors of consecutive layers), for the one-tensor view
    /// `[layers, 2, max_batch, max_ctx, kv_heads, head_dim]` (per-tensor layout) or
    /// `[max_batch, max_ctx, layers, 2, kv_heads, head_dim]` (token-major).
    pub layer: usize,
    /// Between the K and V tensor of one layer.
    pub kv: usize,
}

/// FlashInfer-style page table of a batch: request `i` owns pages
/// `indices[indptr[i]..indptr[i+1]]`, its last page holding `last_page_len[i]` tokens.
/// Page numbers index each tensor's region of the pool view
/// (`[groups, tokens_per_page, kv_heads, head_dim]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageTable {
    /// Offsets into `indices`, one more than requests.
    pub indptr: Vec<i32>,
    /// Page numbers.
    pub indices: Vec<i32>,
    /// Tokens in each request's last page (1..=tokens_per_page), 0 for a
    /// request with no pages (no tokens yet).
    pub last_page_len: Vec<i32>,
}

/// vLLM-style block table: `data[i * width + j]` is page `j` of request `i`, -1 past its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockTable {
    /// Pages per row.
    pub width: usize,
    /// Row-major entries.
    pub data: Vec<i32>,
}

/// Where swapped-out pages go (the offload tier plugs in here).
pub trait SwapSink {
    /// Store page `page` of tensor `tensor` of request `id`.
    fn put(&mut self, id: ReqId, page: usize, tensor: usize, data: &[u8]) -> Result<(), String>;
    /// A swap-out of request `id` failed part-way (a `put` or a page read
    /// failed): the request stays live in the cache, and the pages stored for
    /// it so far will never be read; drop them. (Review finding, 2026-11-25:
    /// they stayed in the store for good.)
    fn abandon(&mut self, id: ReqId) {
        let _ = id;
    }
}

/// Where swapped-out pages come back from.
pub trait SwapSource {
    /// Fill `out` with what `put` stored for the same key; an unknown key is an error.
    /// The page must stay readable until [`done`](Self::done): a swap-in that fails
    /// part-way reads it again on the next try.
    fn get(&mut self, id: ReqId, page: usize, tensor: usize, out: &mut [u8]) -> Result<(), String>;
    /// Request `id` is swapped back in, or freed while swapped out
    /// ([`KvCache::free_swapped`]): what was stored for it may be dropped (pages it
    /// mapped shared from the prefix cache were never read).
    fn done(&mut self, id: ReqId) {
        let _ = id;
    }
}

/// A swap store in DRAM, for tests and the CLI.
#[derive(Debug, Default)]
pub struct MemSwap {
    pages: HashMap<(ReqId, usize, usize), Vec<u8>>,
}

impl MemSwap {
    /// Pages stored.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// Pages stored for request `id`.
    pub fn pages_of(&self, id: ReqId) -> usize {
        self.pages.keys().filter(|k| k.0 == id).count()
    }
}

impl SwapSink for MemSwap {
    fn put(&mut self, id: ReqId, page: usize, tensor: usize, data: &[u8]) -> Result<(), String> {
        self.pages.insert((id, page, tensor), data.to_vec());
        Ok(())
    }

    fn abandon(&mut self, id: ReqId) {
        self.pages.retain(|k, _| k.0 != id);
    }
}

impl SwapSource for MemSwap {
    fn get(&mut self, id: ReqId, page: usize, tensor: usize, out: &mut [u8]) -> Result<(), String> {
        let p = self
            .pages
            .get(&(id, page, tensor))
            .ok_or_else(|| format!("page {page} of tensor {tensor} of request {id} missing"))?;
        if p.len() != out.len() {
            return Err("stored page has the wrong size".into());
        }
        out.copy_from_slice(p);
        Ok(())
    }

    fn done(&mut self, id: ReqId) {
        self.pages.retain(|k, _| k.0 != id);
    }
}

/// Chain hash of one full block (vLLM-style block hash over token ids).
pub fn block_hash(parent: u64, tokens: &[u32]) -> u64 {
    let mut h = parent ^ 0x9E37_79B9_7F4A_7C15;
    for &t in tokens {
        h = (h ^ u64::from(t)).wrapping_mul(0x0000_0100_0000_01B3);
        h ^= h >> 29;
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

/// Where a request stands, for callers and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    /// Mapped into this slot.
    Live {
        /// Batch slot.
        slot: usize,
    },
    /// Swapped out to a sink.
    Swapped,
}

/// Demand-paged KV cache over a [`Backend`]. See the module docs.
pub struct KvCache<B: Backend> {
    cfg: Config,
    geo: Geometry,
    backend: B,
    groups: Vec<Group>,
    free: BTreeSet<u32>,
    lru: BTreeMap<u64, u32>,
    tick: u64,
    prefix: HashMap<u64, u32>,
    /// Published groups by the chain hash of the block before them.
    children: HashMap<u64, Vec<u32>>,
    slots: Vec<Slot>,
    free_slots: BTreeSet<u32>,
    requests: HashMap<ReqId, Request>,
    next_id: ReqId,
    /// Maximal runs of mapped groups over all slots (one kernel mapping per tensor each).
    runs: usize,
    live_groups: usize,
    spare_groups: usize,
    map_budget: usize,
    worker_attached: bool,
    counters: Counters,
    /// Set when a backend failure could not be undone (see [`Error::Poisoned`]).
    poisoned: Option<String>,
}

impl<B: Backend> core::fmt::Debug for KvCache<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KvCache")
            .field("geometry", &self.geo)
            .field("requests", &self.requests.len())
            .finish_non_exhaustive()
    }
}

/// Mappings this process may still make: vm.max_map_count minus what exists now,
/// minus a margin for the rest of the program.
fn default_map_budget() -> usize {
    let max = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(65_530);
    let now = std::fs::read_to_string("/proc/self/maps")
        .map(|s| s.lines().count())
        .unwrap_or(0);
    max.saturating_sub(now).saturating_sub(4096)
}

impl<B: Backend> KvCache<B> {
    /// Build a cache over `backend`, which must have been made for `cfg`'s geometry
    /// (pool of `tensors * groups` pages, reservation of `reserve_bytes`).
    pub fn new(cfg: Config, backend: B) -> Result<Self, Error> {
        let geo = cfg.geometry()?;
        if backend.page_size() != geo.page_size
            || backend.pool_pages() != geo.tensors * geo.groups
            || backend.reservation().1 < geo.reserve_bytes
        {
            return Err(Error::Config("backend does not match the configuration"));
        }
        let g = geo.groups;
        let slots = (0..cfg.max_batch)
            .map(|_| Slot {
                pages: vec![None; geo.pages_per_slot],
                owner: None,
                spare: 0,
            })
            .collect();
        Ok(Self {
            geo,
            backend,
            groups: vec![
                Group {
                    state: GState::Free,
                    hash: None,
                    parent: 0,
                    tokens: Vec::new(),
                    anchor: ROOT,
                    generation: 0,
                    tick: 0,
                    released: false,
                };
                g
            ],
            free: (0..g as u32).collect(),
            lru: BTreeMap::new(),
            tick: 0,
            prefix: HashMap::new(),
            children: HashMap::new(),
            slots,
            free_slots: (0..cfg.max_batch as u32).collect(),
            requests: HashMap::new(),
            next_id: 1,
            runs: 0,
            live_groups: 0,
            spare_groups: 0,
            map_budget: default_map_budget(),
            worker_attached: false,
            counters: Counters::default(),
            poisoned: None,
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The derived geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Override the mapping budget (tests; callers that know better than /proc).
    pub fn set_mapping_budget(&mut self, budget: usize) {
        self.map_budget = budget;
    }

    pub(crate) fn set_worker_attached(&mut self, on: bool) {
        self.worker_attached = on;
    }

    // ----- geometry for kernels ---------------------------------------------------

    /// Base pointer of layer `layer`'s K (`v == false`) or V tensor.
    pub fn tensor_ptr(&self, layer: usize, v: bool) -> Result<*mut u8, Error> {
        if layer >= self.cfg.layers {
            return Err(Error::OutOfBounds);
        }
        let t = self.geo.tensor(layer, v);
        Ok(
            (self.backend.reservation().0 + t * self.geo.tensor_bytes + self.geo.kv_off(layer, v))
                as *mut u8,
        )
    }

    /// Strides of every layer's K/V view (and between them, for the one-tensor view).
    pub fn strides(&self) -> Strides {
        let (layer, kv) = match self.geo.layout {
            Layout::PerTensor => (2 * self.geo.tensor_bytes, self.geo.tensor_bytes),
            Layout::TokenMajor => (2 * self.geo.kv_bytes, self.geo.kv_bytes),
        };
        Strides {
            batch: self.geo.slot_bytes,
            token: self.geo.token_bytes,
            head: self.cfg.head_dim * self.cfg.elem_bytes,
            elem: self.cfg.elem_bytes,
            layer,
            kv,
        }
    }

    /// Base of tensor `layer`/`v`'s region of the pool view (paged layout), if the
    /// backend has a CPU-readable view.
    pub fn pool_tensor_ptr(&self, layer: usize, v: bool) -> Option<*const u8> {
        if layer >= self.cfg.layers {
            return None;
        }
        let t = self.geo.tensor(layer, v);
        self.backend.pool_view().map(|b| {
            (b + t * self.geo.groups * self.geo.page_size + self.geo.kv_off(layer, v)) as *const u8
        })
    }

    /// State of request `id`.
    pub fn request_state(&self, id: ReqId) -> Result<RequestState, Error> {
        let r = self.req(id)?;
        Ok(match r.state {
            ReqState::Live { slot } => RequestState::Live {
                slot: slot as usize,
            },
            ReqState::Swapped => RequestState::Swapped,
        })
    }

    /// Tokens of request `id`.
    pub fn len(&self, id: ReqId) -> Result<usize, Error> {
        Ok(self.req(id)?.len)
    }

    /// Live (or swapped) requests.
    pub fn requests(&self) -> impl Iterator<Item = ReqId> + '_ {
        self.requests.keys().copied()
    }

    fn req(&self, id: ReqId) -> Result<&Request, Error> {
        match self.requests.get(&id) {
            Some(r) => Ok(r),
            None if id > 0 && id < self.next_id => Err(Error::AlreadyFreed(id)),
            None => Err(Error::UnknownRequest(id)),
        }
    }

    fn live_slot(&self, id: ReqId) -> Result<u32, Error> {
        match self.req(id)?.state {
            ReqState::Live { slot } => Ok(slot),
            ReqState::Swapped => Err(Error::WrongState {
                id,
                state: "swapped out",
            }),
        }
    }

    // ----- run accounting ---------------------------------------------------------

    fn joins(&self, slot: u32, j: usize, g: u32) -> usize {
        let pages = &self.slots[slot as usize].pages;
        let left = j > 0 && g > 0 && pages[j - 1] == Some(g - 1);
        let right = j + 1 < pages.len() && pages[j + 1] == Some(g + 1);
        usize::from(left) + usize::from(right)
    }

    /// Set position `j` of `slot`, keeping `runs` exact.
    fn set_pos(&mut self, slot: u32, j: usize, new: Option<u32>) {
        if let Some(old) = self.slots[slot as usize].pages[j] {
            self.runs = self.runs + self.joins(slot, j, old) - 1;
        }
        self.slots[slot as usize].pages[j] = None;
        if let Some(g) = new {
            self.runs = self.runs + 1 - self.joins(slot, j, g);
        }
        self.slots[slot as usize].pages[j] = new;
    }

    fn mappings_for(&self, runs: usize) -> usize {
        if runs == 0 {
            1
        } else {
            2 * self.geo.tensors * runs + 1
        }
    }

    // ----- backend calls ------------------------------------------------------------

    /// Refuse every call once a backend failure could not be undone.
    fn usable(&self) -> Result<(), Error> {
        match &self.poisoned {
            Some(why) => Err(Error::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    /// Map `pairs` of (position, group) of `slot`, sorted by position, one call per
    /// run of consecutive positions holding consecutive groups, per tensor. The
    /// bookkeeping is not touched: the caller records the groups after this
    /// succeeds. On a backend error the positions touched are put back as the
    /// bookkeeping has them and the error is returned.
    fn map_pairs(&mut self, slot: u32, pairs: &[(usize, u32)]) -> Result<(), Error> {
        let mut i = 0;
        while i < pairs.len() {
            let (j0, g0) = pairs[i];
            let mut len = 1;
            while i + len < pairs.len() && pairs[i + len] == (j0 + len, g0 + len as u32) {
                len += 1;
            }
            for t in 0..self.geo.tensors {
                let off = self.geo.page_off(t, slot as usize, j0);
                let start = Instant::now();
                if let Err(e) = self.backend.map(off, self.geo.phys(t, g0), len) {
                    let touched: Vec<usize> = pairs[..i + len].iter().map(|&(j, _)| j).collect();
                    return Err(self.restore(slot, &touched, e.into()));
                }
                let ns = start.elapsed().as_nanos() as u64;
                self.counters.map_ns.record(ns);
                self.counters.map_ns_total += ns;
                self.counters.map_calls += 1;
            }
            self.counters.pages_mapped += len as u64;
            i += len;
        }
        Ok(())
    }

    /// After a failed backend call (`e`), make the (sorted) `positions` of `slot`
    /// match the bookkeeping again: recorded groups mapped, the rest unmapped.
    /// Returns `e`; if the repair fails too, the cache is poisoned.
    fn restore(&mut self, slot: u32, positions: &[usize], e: Error) -> Error {
        let mut i = 0;
        while i < positions.len() {
            let j0 = positions[i];
            let rec = self.slots[slot as usize].pages[j0];
            let mut n = 1;
            while i + n < positions.len() && positions[i + n] == j0 + n && {
                let r = self.slots[slot as usize].pages[j0 + n];
                match rec {
                    Some(g) => r == Some(g + n as u32),
                    None => r.is_none(),
                }
            } {
                n += 1;
            }
            for t in 0..self.geo.tensors {
                let off = self.geo.page_off(t, slot as usize, j0);
                let r = match rec {
                    Some(g) => self.backend.map(off, self.geo.phys(t, g), n),
                    None => self.backend.unmap(off, n),
                };
                if let Err(e2) = r {
                    self.poisoned = Some(format!("{e}; then, putting slot {slot} back: {e2}"));
                    return Error::Poisoned(self.poisoned.clone().unwrap_or_default());
                }
            }
            i += n;
        }
        e
    }

    /// Unmap the (sorted) positions of `slot`, coalescing neighbours into one call;
    /// the bookkeeping is not touched. On a backend error the positions are mapped
    /// back as the bookkeeping has them and the error is returned.
    fn unmap_positions(&mut self, slot: u32, positions: &[usize]) -> Result<(), Error> {
        let mut i = 0;
        while i < positions.len() {
            let mut n = 1;
            while i + n < positions.len() && positions[i + n] == positions[i] + n {
                n += 1;
            }
            for t in 0..self.geo.tensors {
                let off = self.geo.page_off(t, slot as usize, positions[i]);
                let start = Instant::now();
                if let Err(e) = self.backend.unmap(off, n) {
                    return Err(self.restore(slot, &positions[..i + n], e.into()));
                }
                self.counters
                    .unmap_ns
                    .record(start.elapsed().as_nanos() as u64);
                self.counters.unmap_calls += 1;
            }
            self.counters.pages_unmapped += n as u64;
            i += n;
        }
        Ok(())
    }

    // ----- group allocation -----------------------------------------------------------

    /// The anchor a block continuing from `prev` (the group of the block before
    /// it; None for a first block) must carry.
    fn anchor_of(&self, prev: Option<u32>) -> (u32, u32) {
        prev.map_or(ROOT, |p| (p, self.groups[p as usize].generation))
    }

    /// The published group holding `block` (chain hash `h`) right after
    /// `prev`. The hash finds it; its tokens and anchor decide: a 64-bit hash
    /// collision (cheap to build on purpose: the hash is not keyed) must not
    /// hand one sequence another's KV.
    fn cached_block(&self, h: u64, block: &[u32], prev: Option<u32>) -> Option<u32> {
        let g = *self.prefix.get(&h)?;
        let grp = &self.groups[g as usize];
        (grp.tokens == block && grp.anchor == self.anchor_of(prev)).then_some(g)
    }

    /// Remove group `g` from the prefix table (eviction).
    fn unhash(&mut self, g: u32) {
        let grp = &mut self.groups[g as usize];
        if let Some(h) = grp.hash.take() {
            self.prefix.remove(&h);
            grp.tokens = Vec::new();
            grp.generation = grp.generation.wrapping_add(1);
            if let Some(v) = self.children.get_mut(&grp.parent) {
                v.retain(|&c| c != g);
                if v.is_empty() {
                    self.children.remove(&grp.parent);
                }
            }
        }
    }

    fn make_cached(&mut self, g: u32) {
        self.tick += 1;
        let grp = &mut self.groups[g as usize];
        grp.state = GState::Cached;
        grp.tick = self.tick;
        self.lru.insert(self.tick, g);
    }

    /// Groups obtainable without touching `own` slot's spares.
    fn available(&self, own: Option<u32>) -> usize {
        let own_spare = own.map_or(0, |s| self.slots[s as usize].spare);
        self.free.len() + self.lru.len() + self.spare_groups - own_spare
    }

    /// Take one group, preferring `pref` (file contiguity), then the free set, then the
    /// oldest cached prefix page, then a spare page of another slot (free slots first).
    /// The caller checked `available`.
    fn take_group(&mut self, pref: Option<u32>, own: u32) -> Result<u32, Error> {
        let pick = match pref {
            Some(p) => self
                .free
                .range(p..)
                .next()
                .or_else(|| self.free.iter().next())
                .copied(),
            None => self.free.iter().next().copied(),
        };
        let g = if let Some(g) = pick {
            self.free.remove(&g);
            g
        } else if let Some((_, g)) = self.lru.pop_first() {
            self.unhash(g);
            self.counters.evictions += 1;
            g
        } else {
            let g = self.steal_spare(own)?;
            self.counters.reclaims += 1;
            g
        };
        let grp = &mut self.groups[g as usize];
        grp.state = GState::Free;
        grp.released = false;
        Ok(g)
    }

    /// Unmap the last spare page of some slot other than `own` (free slots first).
    fn steal_spare(&mut self, own: u32) -> Result<u32, Error> {
        let mut best = None;
        for (s, slot) in self.slots.iter().enumerate() {
            if s as u32 == own || slot.spare == 0 {
                continue;
            }
            let rank = usize::from(slot.owner.is_some());
            if best.is_none_or(|(r, _)| rank < r) {
                best = Some((rank, s as u32));
            }
        }
        let (_, s) = best.ok_or(Error::PoolExhausted {
            needed: 1,
            available: 0,
        })?;
        let j = (0..self.geo.pages_per_slot)
            .rev()
            .find(|&j| {
                self.slots[s as usize].pages[j]
                    .is_some_and(|g| matches!(self.groups[g as usize].state, GState::Spare { .. }))
            })
            .ok_or(Error::OutOfBounds)?;
        let g = self.slots[s as usize].pages[j].ok_or(Error::OutOfBounds)?;
        self.unmap_positions(s, &[j])?;
        self.set_pos(s, j, None);
        self.slots[s as usize].spare -= 1;
        self.spare_groups -= 1;
        self.groups[g as usize].state = GState::Free;
        Ok(g)
    }

    /// Turn a group this op took (and did not map yet) back into a free one.
    fn give_back(&mut self, g: u32) {
        self.groups[g as usize].state = GState::Free;
        self.free.insert(g);
    }

    /// Give back every group an op took before it failed with `e`; returns `e`.
    fn roll_back(&mut self, taken: Vec<(usize, u32)>, e: Error) -> Error {
        for (_, g) in taken {
            self.give_back(g);
        }
        e
    }

    /// Every group the prefix cache returned for sharing must hold data: live in
    /// some request, or cached. Anything else is a bookkeeping bug, reported
    /// before the operation changes anything.
    fn check_shareable(&self, hits: &[u32]) -> Result<(), Error> {
        let bad = hits.iter().any(|&g| {
            !matches!(
                self.groups[g as usize].state,
                GState::Cached | GState::Live { .. }
            )
        });
        if bad {
            return Err(Error::Config(
                "internal: hashed page neither live nor cached",
            ));
        }
        Ok(())
    }

    /// Record group `g` (live or cached, its pages already mapped by the caller) at
    /// position `j` of `slot`: one more reference (a cached group leaves the LRU),
    /// and the spare page the map replaced there goes back to the free set.
    fn attach_shared(&mut self, slot: u32, j: usize, g: u32) {
        let grp = &mut self.groups[g as usize];
        match grp.state {
            GState::Cached => {
                self.lru.remove(&grp.tick);
                grp.state = GState::Live { refs: 1 };
                self.live_groups += 1;
            }
            GState::Live { refs } => grp.state = GState::Live { refs: refs + 1 },
            GState::Free | GState::Spare { .. } => {}
        }
        if let Some(old) = self.slots[slot as usize].pages[j] {
            self.slots[slot as usize].spare -= 1;
            self.spare_groups -= 1;
            self.give_back(old);
        }
        self.set_pos(slot, j, Some(g));
    }

    /// Make the pages of an op live and private to `slot`: its spare pages at the
    /// `reuse` positions, and the groups it `taken` (already mapped) at theirs.
    fn commit_private(
        &mut self,
        slot: u32,
        reuse: &[usize],
        taken: &[(usize, u32)],
    ) -> Result<(), Error> {
        for &j in reuse {
            let g = self.slots[slot as usize].pages[j].ok_or(Error::OutOfBounds)?;
            self.groups[g as usize].state = GState::Live { refs: 1 };
            self.slots[slot as usize].spare -= 1;
            self.spare_groups -= 1;
            self.live_groups += 1;
        }
        for &(j, g) in taken {
            self.groups[g as usize].state = GState::Live { refs: 1 };
            self.live_groups += 1;
            self.set_pos(slot, j, Some(g));
        }
        Ok(())
    }

    fn check_map_budget(&self, extra_runs: usize) -> Result<(), Error> {
        if !self.backend.caps().merges_contiguous {
            return Ok(());
        }
        let needed = self.mappings_for(self.runs + extra_runs);
        if needed > self.map_budget {
            return Err(Error::MapLimit {
                needed,
                limit: self.map_budget,
            });
        }
        Ok(())
    }

    /// Best-fitting free slot for a request that will want `need` more pages.
    fn pick_slot(&self, need: usize) -> Result<u32, Error> {
        self.free_slots
            .iter()
            .copied()
            .min_by_key(|&s| {
                let spare = self.slots[s as usize].spare;
                if spare >= need {
                    (0, spare - need)
                } else {
                    (1, need - spare)
                }
            })
            .ok_or(Error::NoFreeSlot)
    }

    // ----- request lifecycle ------------------------------------------------------------

    /// Admit a request with `prompt`: take a batch slot and map the longest cached
    /// prefix: whole blocks by hash chain, then the published block sharing the
    /// longest start with the rest (mapped shared, copied on the first append).
    /// The caller then [`append`](Self::append)s
    /// `prompt[cached_tokens..]` as it computes them.
    pub fn admit(&mut self, prompt: &[u32]) -> Result<Admission, Error> {
        self.usable()?;
        if prompt.len() > self.cfg.max_ctx {
            return Err(Error::ContextTooLong {
                requested: prompt.len(),
                max: self.cfg.max_ctx,
            });
        }
        if self.free_slots.is_empty() {
            return Err(Error::NoFreeSlot);
        }
        let tpp = self.geo.tokens_per_page;
        let mut hashes = Vec::new();
        let mut hits = Vec::new();
        let mut parent = 0;
        for block in prompt.chunks_exact(tpp) {
            let h = block_hash(parent, block);
            match self.cached_block(h, block, hits.last().copied()) {
                Some(g) => {
                    hashes.push(h);
                    hits.push(g);
                    parent = h;
                }
                None => break,
            }
        }
        let k = hits.len();
        // A published block that starts like the rest of the prompt is shared too;
        // the request's first append copies it (copy-on-write of a partial page).
        let rest = &prompt[k * tpp..];
        let mut partial = 0;
        let want = self.anchor_of(hits.last().copied());
        if let Some(cands) = self.children.get(&parent) {
            for &g in cands {
                if self.groups[g as usize].anchor != want {
                    continue;
                }
                let m = self.groups[g as usize]
                    .tokens
                    .iter()
                    .zip(rest)
                    .take_while(|(a, b)| a == b)
                    .count();
                if m > partial {
                    partial = m;
                    if hits.len() == k {
                        hits.push(g);
                    } else {
                        hits[k] = g;
                    }
                }
            }
        }
        let cached = k * tpp + partial;
        let need = self.geo.pages_for(prompt.len()) - hits.len();
        let slot = self.pick_slot(need)?;
        let pairs: Vec<(usize, u32)> = hits.iter().copied().enumerate().collect();
        self.check_map_budget(count_runs(&pairs))?;
        self.check_shareable(&hits)?;
        // Map first: a backend failure leaves the bookkeeping as it was.
        self.map_pairs(slot, &pairs)?;
        for (j, &g) in hits.iter().enumerate() {
            self.attach_shared(slot, j, g);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.free_slots.remove(&slot);
        self.slots[slot as usize].owner = Some(id);
        self.requests.insert(
            id,
            Request {
                state: ReqState::Live { slot },
                len: cached,
                tokens: prompt[..cached].to_vec(),
                hashes,
                prompt_len: prompt.len(),
                written: cached,
            },
        );
        self.counters.prefix_lookup_tokens += prompt.len() as u64;
        self.counters.prefix_hit_tokens += cached as u64;
        Ok(Admission {
            id,
            slot: slot as usize,
            cached_tokens: cached,
        })
    }

    /// Declare that the KV of every full block of request `id` is written, and make
    /// those blocks findable by later admissions (prompt blocks are published
    /// automatically on the next append and at free; generated ones only here).
    /// Published pages are read-only. Returns the blocks now published.
    pub fn publish(&mut self, id: ReqId) -> Result<usize, Error> {
        self.usable()?;
        self.live_slot(id)?;
        let len = self.requests[&id].len;
        if let Some(r) = self.requests.get_mut(&id) {
            r.written = len;
        }
        self.publish_upto(id, len);
        Ok(self.requests[&id].hashes.len())
    }

    /// Publish the request's full blocks below `upto` tokens in the prefix table.
    fn publish_upto(&mut self, id: ReqId, upto: usize) {
        let tpp = self.geo.tokens_per_page;
        let Some(r) = self.requests.get_mut(&id) else {
            return;
        };
        let ReqState::Live { slot } = r.state else {
            return;
        };
        let blocks = upto / tpp;
        while r.hashes.len() < blocks {
            let b = r.hashes.len();
            let parent = r.hashes.last().copied().unwrap_or(0);
            let h = block_hash(parent, &r.tokens[b * tpp..(b + 1) * tpp]);
            r.hashes.push(h);
            let Some(g) = self.slots[slot as usize].pages[b] else {
                continue;
            };
            // Published only right after this request's own published block
            // (or first): a block whose parent's hash belongs to another
            // prompt's block (a collision) is not chained to it.
            let anchor = match b.checked_sub(1) {
                None => Some(ROOT),
                Some(pb) => self.slots[slot as usize].pages[pb]
                    .filter(|&pg| self.prefix.get(&parent) == Some(&pg))
                    .map(|pg| (pg, self.groups[pg as usize].generation)),
            };
            let Some(anchor) = anchor else {
                continue;
            };
            let grp = &mut self.groups[g as usize];
            if grp.hash.is_none() && !self.prefix.contains_key(&h) {
                grp.hash = Some(h);
                grp.parent = parent;
                grp.anchor = anchor;
                grp.tokens = r.tokens[b * tpp..(b + 1) * tpp].to_vec();
                self.prefix.insert(h, g);
                self.children.entry(parent).or_default().push(g);
            }
        }
    }

    /// Append `tokens` to request `id`: map pages for the new positions (reusing spare
    /// pages of its slot), copying a shared partial last page first (copy-on-write).
    ///
    /// Every call first publishes the prompt blocks that earlier appends
    /// completed (they become read-only and findable by later admissions),
    /// whether or not it then succeeds. On error nothing else changes that
    /// the request can see: its length and tokens stay as they were; cached
    /// prefix pages may have been evicted and other slots' spare pages taken
    /// into the free pool to make room. (Review finding, 2026-11-25: the doc
    /// said "nothing changes", and a write to a page published by a failed
    /// call was refused as read-only.)
    pub fn append(&mut self, id: ReqId, tokens: &[u32]) -> Result<(), Error> {
        self.usable()?;
        let slot = self.live_slot(id)?;
        let len = self.requests[&id].len;
        let new_len = len + tokens.len();
        if new_len > self.cfg.max_ctx {
            return Err(Error::ContextTooLong {
                requested: new_len,
                max: self.cfg.max_ctx,
            });
        }
        if tokens.is_empty() {
            return Ok(());
        }
        // What was appended before this call is computed by now.
        if let Some(r) = self.requests.get_mut(&id) {
            r.written = r.written.max(len);
        }
        let upto = len.min(self.requests[&id].prompt_len);
        self.publish_upto(id, upto);
        let tpp = self.geo.tokens_per_page;
        let first = len / tpp;
        let last = self.geo.pages_for(new_len);
        let mut fresh = Vec::new(); // positions needing a new group
        let mut cow = None;
        let mut reuse = Vec::new();
        for j in first..last {
            match self.slots[slot as usize].pages[j] {
                None => fresh.push(j),
                Some(g) => match self.groups[g as usize].state {
                    GState::Spare { .. } => reuse.push(j),
                    GState::Live { refs } => {
                        if refs > 1 || self.groups[g as usize].hash.is_some() {
                            cow = Some((j, g));
                        }
                    }
                    GState::Free | GState::Cached => {
                        return Err(Error::Config("internal: free page mapped in a slot"));
                    }
                },
            }
        }
        let needed = fresh.len() + usize::from(cow.is_some());
        let available = self.available(Some(slot));
        if needed > available {
            return Err(Error::PoolExhausted { needed, available });
        }
        // Take every group first so a budget failure can give them back untouched.
        let mut taken: Vec<(usize, u32)> = Vec::with_capacity(needed);
        let mut prev = first
            .checked_sub(1)
            .and_then(|j| self.slots[slot as usize].pages[j]);
        for &j in cow.iter().map(|(j, _)| j).chain(fresh.iter()) {
            let before = j
                .checked_sub(1)
                .and_then(|p| self.slots[slot as usize].pages[p])
                .or(prev);
            match self.take_group(before.map(|g| g + 1), slot) {
                Ok(g) => {
                    taken.push((j, g));
                    prev = Some(g);
                }
                Err(e) => {
                    return Err(self.roll_back(taken, e));
                }
            }
        }
        let extra_runs = count_runs(&taken);
        if let Err(e) = self.check_map_budget(extra_runs) {
            return Err(self.roll_back(taken, e));
        }
        // Backend work before any bookkeeping changes, so a failure gives the groups
        // back and leaves everything else as it was: the copy-on-write copy into the
        // new group, then the maps.
        if let Some((cj, old)) = cow {
            let dst = taken.iter().find(|&&(j, _)| j == cj).map(|&(_, g)| g);
            if let Some(dst) = dst {
                for t in 0..self.geo.tensors {
                    if let Err(e) = self
                        .backend
                        .copy_page(self.geo.phys(t, old), self.geo.phys(t, dst))
                    {
                        return Err(self.roll_back(taken, e.into()));
                    }
                }
            }
        }
        let mut sorted = taken.clone();
        sorted.sort_unstable();
        if let Err(e) = self.map_pairs(slot, &sorted) {
            return Err(self.roll_back(taken, e));
        }
        // Commit: nothing can fail from here on.
        if let Some((_, old)) = cow {
            // Its position is among `taken`: the copy replaces it there.
            self.counters.cow_copies += 1;
            self.drop_ref(old);
        }
        self.commit_private(slot, &reuse, &taken)?;
        if self.worker_attached && !fresh.is_empty() {
            self.counters.worker_stalls += 1;
        }
        let r = self
            .requests
            .get_mut(&id)
            .ok_or(Error::UnknownRequest(id))?;
        r.len = new_len;
        r.tokens.extend_from_slice(tokens);
        Ok(())
    }

    /// One reference to live group `g` goes away (it stays mapped elsewhere or is
    /// unmapped by the caller).
    fn drop_ref(&mut self, g: u32) {
        let GState::Live { refs } = self.groups[g as usize].state else {
            return;
        };
        if refs > 1 {
            self.groups[g as usize].state = GState::Live { refs: refs - 1 };
        } else {
            self.live_groups -= 1;
            if self.groups[g as usize].hash.is_some() {
                self.make_cached(g);
            } else {
                self.give_back(g);
            }
        }
    }

    /// Release the live pages of `slot` (owner's `len` tokens): private unhashed pages
    /// stay mapped as spares (deferred reclamation), the rest is unmapped.
    fn release_slot(&mut self, slot: u32, len: usize) -> Result<(), Error> {
        // Unmap the shared and published pages first: a backend failure then leaves
        // the request as it was.
        let unmap: Vec<usize> = (0..self.geo.pages_for(len))
            .filter(|&j| {
                self.slots[slot as usize].pages[j].is_some_and(|g| {
                    let grp = &self.groups[g as usize];
                    matches!(grp.state, GState::Live { refs } if refs > 1 || grp.hash.is_some())
                })
            })
            .collect();
        self.unmap_positions(slot, &unmap)?;
        for j in 0..self.geo.pages_for(len) {
            let Some(g) = self.slots[slot as usize].pages[j] else {
                continue;
            };
            let grp = &self.groups[g as usize];
            match grp.state {
                GState::Live { refs: 1 } if grp.hash.is_none() => {
                    self.groups[g as usize].state = GState::Spare { slot };
                    self.slots[slot as usize].spare += 1;
                    self.spare_groups += 1;
                    self.live_groups -= 1;
                }
                GState::Live { refs } => {
                    if refs == 1 {
                        self.live_groups -= 1;
                        self.make_cached(g);
                    } else {
                        self.groups[g as usize].state = GState::Live { refs: refs - 1 };
                    }
                }
                GState::Free | GState::Cached | GState::Spare { .. } => {}
            }
        }
        for &j in &unmap {
            self.set_pos(slot, j, None);
        }
        self.slots[slot as usize].owner = None;
        self.free_slots.insert(slot);
        Ok(())
    }

    /// Free request `id`: its full blocks stay in the prefix cache, its other pages
    /// stay mapped in its slot for the next request (deferred reclamation).
    ///
    /// A request swapped out is refused ([`Error::WrongState`]): its pages sit in the
    /// swap store, which only [`free_swapped`](Self::free_swapped) can tell to drop them.
    pub fn free(&mut self, id: ReqId) -> Result<(), Error> {
        self.usable()?;
        let r = self.req(id)?;
        let len = r.len;
        let upto = r.written.min(r.prompt_len);
        match r.state {
            ReqState::Live { slot } => {
                self.publish_upto(id, upto);
                self.release_slot(slot, len)?;
            }
            ReqState::Swapped => {
                return Err(Error::WrongState {
                    id,
                    state: "swapped out: free it with free_swapped, which drops its stored pages",
                });
            }
        }
        self.requests.remove(&id);
        Ok(())
    }

    /// Free request `id` whatever its state; if it is swapped out, `store` (the
    /// store it was swapped out to) drops its pages ([`SwapSource::done`]).
    pub fn free_swapped(&mut self, id: ReqId, store: &mut dyn SwapSource) -> Result<(), Error> {
        self.usable()?;
        if self.req(id)?.state == ReqState::Swapped {
            self.requests.remove(&id);
            store.done(id);
            return Ok(());
        }
        self.free(id)
    }

    /// Drop request `id` for recompute: free it and return its tokens.
    pub fn preempt_recompute(&mut self, id: ReqId) -> Result<Vec<u32>, Error> {
        let tokens = self.req(id)?.tokens.clone();
        self.free(id)?;
        self.counters.preemptions += 1;
        Ok(tokens)
    }

    /// Fork request `id` (parallel sampling): the child shares every page, the partial
    /// last one included; whichever appends first copies it.
    pub fn fork(&mut self, id: ReqId) -> Result<ReqId, Error> {
        self.usable()?;
        let pslot = self.live_slot(id)?;
        let (len, tokens, hashes, written) = {
            let r = &self.requests[&id];
            (r.len, r.tokens.clone(), r.hashes.clone(), r.written)
        };
        let n = self.geo.pages_for(len);
        let slot = self.pick_slot(0)?;
        let prun = {
            let mut r = 0;
            for j in 0..n {
                let g = self.slots[pslot as usize].pages[j];
                if j == 0
                    || g.zip(self.slots[pslot as usize].pages[j - 1])
                        .is_none_or(|(a, b)| a != b + 1)
                {
                    r += 1;
                }
            }
            r
        };
        self.check_map_budget(prun)?;
        let pairs = (0..n)
            .map(|j| {
                self.slots[pslot as usize].pages[j]
                    .map(|g| (j, g))
                    .ok_or(Error::OutOfBounds)
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Map first: a backend failure leaves the bookkeeping as it was.
        self.map_pairs(slot, &pairs)?;
        for &(j, g) in &pairs {
            self.attach_shared(slot, j, g);
        }
        let child = self.next_id;
        self.next_id += 1;
        self.free_slots.remove(&slot);
        self.slots[slot as usize].owner = Some(child);
        self.requests.insert(
            child,
            Request {
                state: ReqState::Live { slot },
                len,
                tokens,
                hashes,
                prompt_len: 0,
                written,
            },
        );
        Ok(child)
    }

    /// Swap request `id` out page by page into `sink`, then release its slot. If the
    /// sink or a page read fails, nothing changes in the cache, and the sink is
    /// told to drop what it stored ([`SwapSink::abandon`]).
    pub fn swap_out(&mut self, id: ReqId, sink: &mut dyn SwapSink) -> Result<(), Error> {
        self.usable()?;
        let slot = self.live_slot(id)?;
        let len = self.requests[&id].len;
        let mut buf = vec![0u8; self.geo.page_size];
        for j in 0..self.geo.pages_for(len) {
            let copied = match self.slots[slot as usize].pages[j] {
                None => Err(Error::OutOfBounds),
                Some(g) => (0..self.geo.tensors).try_for_each(|t| {
                    self.backend.read_page(self.geo.phys(t, g), &mut buf)?;
                    sink.put(id, j, t, &buf).map_err(Error::Swap)
                }),
            };
            if let Err(e) = copied {
                sink.abandon(id);
                return Err(e);
            }
        }
        let r = &self.requests[&id];
        let upto = r.written.min(r.prompt_len);
        self.publish_upto(id, upto);
        self.release_slot(slot, len)?;
        if let Some(r) = self.requests.get_mut(&id) {
            r.state = ReqState::Swapped;
        }
        self.counters.preemptions += 1;
        Ok(())
    }

    /// Swap request `id` back in from `source` into a free slot. Its leading blocks
    /// still in the prefix cache (its own published prompt blocks, unless evicted
    /// meanwhile) are mapped shared; the rest is copied back into private pages.
    /// If the source or the backend fails, nothing changes (and the source keeps the
    /// pages: [`SwapSource::done`] is called only on success).
    pub fn swap_in(&mut self, id: ReqId, source: &mut dyn SwapSource) -> Result<usize, Error> {
        self.usable()?;
        let r = self.req(id)?;
        if r.state != ReqState::Swapped {
            return Err(Error::WrongState {
                id,
                state: "not swapped out",
            });
        }
        let n = self.geo.pages_for(r.len);
        // Leading blocks still in the prefix cache (its published prompt blocks, kept
        // there at swap-out unless evicted since) are mapped shared, not copied.
        let tpp = self.geo.tokens_per_page;
        let mut hits: Vec<u32> = Vec::new();
        for (b, h) in r.hashes.iter().take(n).enumerate() {
            let block = &r.tokens[b * tpp..(b + 1) * tpp];
            match self.cached_block(*h, block, hits.last().copied()) {
                Some(g) => hits.push(g),
                None => break,
            }
        }
        self.check_shareable(&hits)?;
        let k = hits.len();
        let slot = self.pick_slot(n - k)?;
        // Pin the cached hits: out of the LRU so taking groups cannot evict them.
        let pinned: Vec<(u64, u32)> = hits
            .iter()
            .filter(|&&g| self.groups[g as usize].state == GState::Cached)
            .map(|&g| (self.groups[g as usize].tick, g))
            .collect();
        for &(tick, _) in &pinned {
            self.lru.remove(&tick);
        }
        let unpin = |this: &mut Self| {
            for &(tick, g) in &pinned {
                this.lru.insert(tick, g);
            }
        };
        let reuse: Vec<usize> = (k..n)
            .filter(|&j| self.slots[slot as usize].pages[j].is_some())
            .collect();
        let needed = n - k - reuse.len();
        let available = self.available(Some(slot));
        if needed > available {
            unpin(self);
            return Err(Error::PoolExhausted { needed, available });
        }
        let mut taken: Vec<(usize, u32)> = Vec::new();
        let mut prev = hits.last().copied();
        for j in k..n {
            if let Some(g) = self.slots[slot as usize].pages[j] {
                prev = Some(g);
                continue;
            }
            match self.take_group(prev.map(|g| g + 1), slot) {
                Ok(g) => {
                    taken.push((j, g));
                    prev = Some(g);
                }
                Err(e) => {
                    unpin(self);
                    return Err(self.roll_back(taken, e));
                }
            }
        }
        let mut pairs: Vec<(usize, u32)> = hits.iter().copied().enumerate().collect();
        pairs.extend(taken.iter().copied());
        pairs.sort_unstable();
        let extra = count_runs(&pairs);
        let mut fill = |this: &mut Self, taken: &[(usize, u32)]| -> Result<(), Error> {
            this.check_map_budget(extra)?;
            let mut buf = vec![0u8; this.geo.page_size];
            for j in k..n {
                let g = match taken.iter().find(|(tj, _)| *tj == j) {
                    Some(&(_, g)) => g,
                    None => this.slots[slot as usize].pages[j].ok_or(Error::OutOfBounds)?,
                };
                for t in 0..this.geo.tensors {
                    source.get(id, j, t, &mut buf).map_err(Error::Swap)?;
                    this.backend.write_page(this.geo.phys(t, g), &buf)?;
                }
            }
            Ok(())
        };
        if let Err(e) = fill(self, &taken) {
            unpin(self);
            return Err(self.roll_back(taken, e));
        }
        if let Err(e) = self.map_pairs(slot, &pairs) {
            unpin(self);
            return Err(self.roll_back(taken, e));
        }
        // Commit: nothing can fail from here on.
        for (j, &g) in hits.iter().enumerate() {
            self.attach_shared(slot, j, g);
        }
        self.commit_private(slot, &reuse, &taken)?;
        self.free_slots.remove(&slot);
        self.slots[slot as usize].owner = Some(id);
        self.counters.swap_in_shared_pages += k as u64;
        source.done(id);
        let r = self
            .requests
            .get_mut(&id)
            .ok_or(Error::UnknownRequest(id))?;
        r.state = ReqState::Live { slot };
        // The shared blocks keep their hashes; the rest is private now and is
        // published again on the next publish.
        r.hashes.truncate(k);
        Ok(slot as usize)
    }

    // ----- lookahead, watermarks, trimming -------------------------------------------------

    /// Map free pages ahead of every live request, up to `lookahead` tokens past its
    /// length, so the next appends find them mapped. Uses free pages only (never
    /// evicts). Returns the pages mapped.
    pub fn prefetch(&mut self, lookahead: usize) -> Result<usize, Error> {
        self.usable()?;
        let mut todo = Vec::new();
        for r in self.requests.values() {
            if let ReqState::Live { slot } = r.state {
                let from = self.geo.pages_for(r.len);
                let to = self
                    .geo
                    .pages_for(r.len.saturating_add(lookahead))
                    .min(self.geo.pages_per_slot);
                for j in from..to {
                    if self.slots[slot as usize].pages[j].is_none() {
                        todo.push((slot, j));
                    }
                }
            }
        }
        // Slot order, not the request table's: which requests get the free
        // pages must not depend on hashing (a replay is then repeatable).
        todo.sort_unstable();
        let mut mapped = 0;
        for (slot, j) in todo {
            if self.free.is_empty() || self.check_map_budget(1).is_err() {
                break;
            }
            let pref = j
                .checked_sub(1)
                .and_then(|p| self.slots[slot as usize].pages[p])
                .map(|g| g + 1);
            let g = self.take_group(pref, slot)?;
            if let Err(e) = self.map_pairs(slot, &[(j, g)]) {
                self.give_back(g);
                self.counters.prefetched_pages += mapped as u64;
                return Err(e);
            }
            self.groups[g as usize].state = GState::Spare { slot };
            self.slots[slot as usize].spare += 1;
            self.spare_groups += 1;
            self.set_pos(slot, j, Some(g));
            mapped += 1;
        }
        self.counters.prefetched_pages += mapped as u64;
        Ok(mapped)
    }

    /// Below the low watermark of free groups, evict cached prefix pages (LRU) and
    /// spare pages of free slots until the high watermark. Returns groups freed.
    pub fn reclaim(&mut self) -> Result<usize, Error> {
        self.usable()?;
        if self.free.len() >= self.cfg.low_watermark {
            return Ok(0);
        }
        let mut n = 0;
        while self.free.len() < self.cfg.high_watermark {
            if let Some((_, g)) = self.lru.pop_first() {
                self.unhash(g);
                self.counters.evictions += 1;
                self.give_back(g);
            } else if self
                .free_slots
                .iter()
                .any(|&s| self.slots[s as usize].spare > 0)
            {
                let g = self.steal_spare(u32::MAX)?;
                self.counters.reclaims += 1;
                self.give_back(g);
            } else {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    /// Give the memory of every free group back to the OS (punch hole); such pages
    /// come back zero-filled when next used. Returns groups released now.
    pub fn trim(&mut self) -> Result<usize, Error> {
        self.usable()?;
        let todo: Vec<u32> = self
            .free
            .iter()
            .copied()
            .filter(|&g| !self.groups[g as usize].released)
            .collect();
        let mut i = 0;
        while i < todo.len() {
            let mut n = 1;
            while i + n < todo.len() && todo[i + n] == todo[i] + n as u32 {
                n += 1;
            }
            for t in 0..self.geo.tensors {
                self.backend.release(self.geo.phys(t, todo[i]), n)?;
            }
            // Free pages: a failure part-way leaves them free, released or not.
            for &g in &todo[i..i + n] {
                self.groups[g as usize].released = true;
            }
            self.counters.released_pages += n as u64;
            i += n;
        }
        Ok(todo.len())
    }

    // ----- data access through the virtual tensors ------------------------------------------

    fn token_off(
        &self,
        id: ReqId,
        layer: usize,
        v: bool,
        pos: usize,
    ) -> Result<(u32, usize), Error> {
        let slot = self.live_slot(id)?;
        if layer >= self.cfg.layers || pos >= self.requests[&id].len {
            return Err(Error::OutOfBounds);
        }
        let t = self.geo.tensor(layer, v);
        let tpp = self.geo.tokens_per_page;
        let off = self.geo.page_off(t, slot as usize, pos / tpp)
            + (pos % tpp) * self.geo.token_bytes
            + self.geo.kv_off(layer, v);
        Ok((slot, off))
    }

    /// Write one token's K or V of one layer (`kv_bytes`) at `pos < len` through the virtual
    /// tensor. Shared or published pages are read-only: append first (it copies).
    pub fn write_token(
        &mut self,
        id: ReqId,
        layer: usize,
        v: bool,
        pos: usize,
        data: &[u8],
    ) -> Result<(), Error> {
        self.usable()?;
        let (slot, off) = self.token_off(id, layer, v, pos)?;
        if data.len() != self.geo.kv_bytes {
            return Err(Error::OutOfBounds);
        }
        let g = self.slots[slot as usize].pages[pos / self.geo.tokens_per_page]
            .ok_or(Error::OutOfBounds)?;
        let grp = &self.groups[g as usize];
        if grp.hash.is_some() || grp.state != (GState::Live { refs: 1 }) {
            return Err(Error::WrongState {
                id,
                state: "sharing this page (read-only)",
            });
        }
        Ok(self.backend.write_virt(off, data)?)
    }

    /// Read one token's K or V at `pos < len` through the virtual tensor.
    pub fn read_token(
        &self,
        id: ReqId,
        layer: usize,
        v: bool,
        pos: usize,
        out: &mut [u8],
    ) -> Result<(), Error> {
        self.usable()?;
        let (_, off) = self.token_off(id, layer, v, pos)?;
        if out.len() != self.geo.kv_bytes {
            return Err(Error::OutOfBounds);
        }
        Ok(self.backend.read_virt(off, out)?)
    }

    // ----- page tables ---------------------------------------------------------------------

    /// FlashInfer-style page table of `ids`, in that order.
    pub fn page_table(&self, ids: &[ReqId]) -> Result<PageTable, Error> {
        self.usable()?;
        let tpp = self.geo.tokens_per_page;
        let mut pt = PageTable {
            indptr: vec![0],
            indices: Vec::new(),
            last_page_len: Vec::new(),
        };
        for &id in ids {
            let slot = self.live_slot(id)?;
            let len = self.requests[&id].len;
            let n = self.geo.pages_for(len);
            for j in 0..n {
                let g = self.slots[slot as usize].pages[j].ok_or(Error::OutOfBounds)?;
                pt.indices.push(g as i32);
            }
            pt.indptr.push(pt.indices.len() as i32);
            pt.last_page_len
                .push(if len == 0 { 0 } else { (len - 1) % tpp + 1 } as i32);
        }
        Ok(pt)
    }

    /// vLLM-style block table of `ids`, `pages_per_slot` wide.
    pub fn block_table(&self, ids: &[ReqId]) -> Result<BlockTable, Error> {
        self.usable()?;
        let width = self.geo.pages_per_slot;
        let mut data = vec![-1; width * ids.len()];
        for (i, &id) in ids.iter().enumerate() {
            let slot = self.live_slot(id)?;
            for j in 0..self.geo.pages_for(self.requests[&id].len) {
                let g = self.slots[slot as usize].pages[j].ok_or(Error::OutOfBounds)?;
                data[i * width + j] = g as i32;
            }
        }
        Ok(BlockTable { width, data })
    }

    // ----- metrics and invariants --------------------------------------------------------------

    /// Occupancy and counters now.
    pub fn metrics(&self) -> Metrics {
        let shared = self
            .groups
            .iter()
            .filter(|g| matches!(g.state, GState::Live { refs } if refs > 1))
            .count();
        let mut need = 0usize;
        let mut mapped = 0usize;
        for r in self.requests.values() {
            if let ReqState::Live { slot } = r.state {
                need += r.len * self.geo.token_bytes * self.geo.tensors;
                let _ = slot;
                mapped += self.geo.pages_for(r.len) * self.geo.page_size * self.geo.tensors;
            }
        }
        let c = &self.counters;
        Metrics {
            pages_total: self.geo.groups,
            pages_free: self.free.len(),
            pages_live: self.live_groups,
            pages_shared: shared,
            pages_cached: self.lru.len(),
            pages_spare: self.spare_groups,
            usage: self.live_groups as f64 / self.geo.groups as f64,
            mappings: if self.backend.caps().merges_contiguous {
                self.mappings_for(self.runs)
            } else {
                (self.live_groups + self.spare_groups) * self.geo.tensors
            },
            mapping_budget: self.map_budget,
            waste_bytes: mapped.saturating_sub(need),
            prefix_hit_rate: if c.prefix_lookup_tokens == 0 {
                0.0
            } else {
                c.prefix_hit_tokens as f64 / c.prefix_lookup_tokens as f64
            },
            counters: c.clone(),
        }
    }

    /// Check every invariant of the module docs; panics with the broken one.
    pub fn check_invariants(&self) {
        let mut refs = vec![0u32; self.geo.groups];
        let mut spare_seen = vec![0u32; self.geo.groups];
        let mut runs = 0;
        let mut spare_total = 0;
        for (s, slot) in self.slots.iter().enumerate() {
            let live_pages = slot
                .owner
                .map(|id| self.geo.pages_for(self.requests[&id].len))
                .unwrap_or(0);
            if let Some(id) = slot.owner {
                assert_eq!(self.requests[&id].state, ReqState::Live { slot: s as u32 });
                assert!(
                    !self.free_slots.contains(&(s as u32)),
                    "owned slot {s} listed free"
                );
            } else {
                assert!(
                    self.free_slots.contains(&(s as u32)),
                    "free slot {s} not listed"
                );
            }
            let mut spare = 0;
            for (j, p) in slot.pages.iter().enumerate() {
                // What is really mapped there, when the backend can tell.
                for t in 0..self.geo.tensors {
                    if let Some(real) = self.backend.mapped_at(self.geo.page_off(t, s, j)) {
                        assert_eq!(
                            real,
                            p.map(|g| self.geo.phys(t, g)),
                            "slot {s} position {j} tensor {t}: mapped pool page differs from the bookkeeping"
                        );
                    }
                }
                let Some(g) = *p else {
                    assert!(j >= live_pages, "live position {j} of slot {s} unmapped");
                    continue;
                };
                if j == 0 || slot.pages[j - 1] != Some(g.wrapping_sub(1)) {
                    runs += 1;
                }
                if j < live_pages {
                    refs[g as usize] += 1;
                } else {
                    assert_eq!(
                        self.groups[g as usize].state,
                        GState::Spare { slot: s as u32 }
                    );
                    spare_seen[g as usize] += 1;
                    spare += 1;
                }
            }
            assert_eq!(spare, slot.spare, "spare count of slot {s}");
            spare_total += spare;
        }
        assert_eq!(runs, self.runs, "run count");
        assert_eq!(spare_total, self.spare_groups, "spare total");
        let mut live = 0;
        for (g, grp) in self.groups.iter().enumerate() {
            match grp.state {
                GState::Free => {
                    assert!(self.free.contains(&(g as u32)), "free group {g} not listed");
                    assert_eq!(refs[g] + spare_seen[g], 0, "free group {g} mapped");
                    assert!(grp.hash.is_none());
                }
                GState::Live { refs: r } => {
                    assert_eq!(refs[g], r, "refs of group {g}");
                    assert_eq!(spare_seen[g], 0);
                    live += 1;
                }
                GState::Cached => {
                    assert_eq!(
                        self.lru.get(&grp.tick),
                        Some(&(g as u32)),
                        "cached {g} not in lru"
                    );
                    assert!(grp.hash.is_some());
                    assert_eq!(refs[g] + spare_seen[g], 0, "cached group {g} mapped");
                }
                GState::Spare { .. } => {
                    assert_eq!(
                        spare_seen[g], 1,
                        "spare group {g} mapped {} times",
                        spare_seen[g]
                    );
                    assert_eq!(refs[g], 0);
                    assert!(grp.hash.is_none());
                }
            }
            if let Some(h) = grp.hash {
                assert_eq!(
                    self.prefix.get(&h),
                    Some(&(g as u32)),
                    "hash of {g} not in prefix"
                );
            }
        }
        assert_eq!(live, self.live_groups);
        for (&h, &g) in &self.prefix {
            let grp = &self.groups[g as usize];
            assert_eq!(grp.hash, Some(h));
            assert_eq!(grp.tokens.len(), self.geo.tokens_per_page);
            assert_eq!(
                block_hash(grp.parent, &grp.tokens),
                h,
                "tokens of group {g}"
            );
            assert!(
                self.children[&grp.parent].contains(&g),
                "child index of {g}"
            );
        }
        let indexed: usize = self.children.values().map(Vec::len).sum();
        assert_eq!(indexed, self.prefix.len(), "child index size");
        assert_eq!(
            self.free.len() + live + self.lru.len() + self.spare_groups,
            self.geo.groups,
            "accounting"
        );
    }
}

/// Runs among `(position, group)` pairs (an upper bound of the mappings they add).
fn count_runs(taken: &[(usize, u32)]) -> usize {
    let mut sorted: Vec<_> = taken.to_vec();
    sorted.sort_unstable();
    sorted
        .iter()
        .enumerate()
        .filter(|&(i, &(j, g))| i == 0 || sorted[i - 1] != (j - 1, g.wrapping_sub(1)))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Config::geometry` prices each page group's record at
    /// `GROUP_OVERHEAD` bytes; the record plus its share of the free set
    /// (a `BTreeSet<u32>`: up to about 32 bytes a key) must fit in it.
    #[test]
    fn group_records_fit_their_budget() {
        assert!(
            std::mem::size_of::<Group>() + 32 <= crate::config::GROUP_OVERHEAD,
            "Group is {} bytes",
            std::mem::size_of::<Group>()
        );
    }
}
