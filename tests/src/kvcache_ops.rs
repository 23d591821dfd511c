//! A byte string read as a sequence of `engram_kvcache` request-API calls,
//! checked against a reference model as it runs.
//!
//! The fuzz target `fuzz/fuzz_targets/kvcache_requests.rs` and the seed replay
//! test (`tests/tests/fuzz_seeds.rs`) feed bytes to [`run`]. Each call runs the
//! ops twice, on a per-tensor and on a token-major cache, each a small host-backend
//! cache ([`config`]: 2 layers, 16 tokens per page (4 KiB per tensor),
//! 4 batch slots, 128-token contexts, a pool of 24 page groups, so slots and
//! pages run out quickly) and performs at most [`MAX_OPS`] operations on it.
//!
//! The model (as in `kvcache/tests/state_machine.rs`) knows only each request's
//! tokens; the KV written at position `p` of layer `l` is a pure function of
//! `tokens[..=p]` and `l`, so shared prefix pages hold the same bytes for every
//! request that maps them. After every operation: every call returned `Ok` or an
//! error of the expected kind (never a panic), `check_invariants` holds, the
//! page accounting adds up, and every live request reads back exactly the KV of
//! its own tokens (also after fork, copy-on-write, swap-out and swap-in).
//!
//! # Byte format
//!
//! ```text
//! op := opcode:u8 args                 opcode % 12 picks the op; a truncated op ends the input
//! 0  admit       tmpl:u8 len:u8        prompt of len tokens (over max_ctx when len > 128),
//!                                      template tmpl % 4, prefilled unless tmpl & 0x80
//! 1  append      sel:u8 n:u8 salt:u8   n % 48 new tokens (0 allowed) to a live request
//! 2  fork        sel:u8
//! 3  publish     sel:u8
//! 4  free        sel:u8                any request, live or swapped
//! 5  free again  sel:u8                a freed id: must fail with AlreadyFreed
//! 6  swap out    sel:u8
//! 7  swap in     sel:u8
//! 8  maintain    which:u8              reclaim, trim, prefetch(which / 4 tokens)
//! 9  unknown id  which:u8              every call on an id never issued must fail
//! 10 bad write   sel:u8 which:u8 pos:u8  out-of-range layer / position / length must
//!                                      fail; rewriting the same bytes is Ok or read-only
//! 11 tables      sel:u8                page and block tables of the live requests
//! ```
//!
//! `sel` picks among the requests in the stated state (`sel % count`); an op
//! with no such request does nothing.

use std::collections::BTreeMap;

use engram_kvcache::backend::host::HostBackend;
use engram_kvcache::{Config, Error, KvCache, Layout, MemSwap, RequestState, host_cache};

/// Most operations performed per input; the rest is ignored.
pub const MAX_OPS: usize = 256;
/// How many kinds of op the byte format has.
pub const OP_KINDS: usize = 12;

const LAYERS: usize = 2;
const MAX_CTX: usize = 128;
const TOKEN_BYTES: usize = 2 * 32 * 4; // kv_heads * head_dim * f32 = 256 B: 16 tokens per page
const TOKENS_PER_PAGE: usize = 4096 / TOKEN_BYTES;

/// The cache every input runs on, in `layout`: both hold 16 tokens per page and 24
/// page groups (a token-major page carries both layers' K and V: 16 KiB).
pub fn config(layout: Layout) -> Config {
    let mut c = Config {
        layers: LAYERS,
        kv_heads: 2,
        head_dim: 32,
        elem_bytes: 4,
        max_batch: 4,
        max_ctx: MAX_CTX,
        page_size: 0,
        pool_bytes: 24 * 4096 * 2 * LAYERS,
        low_watermark: 3,
        high_watermark: 6,
        try_huge: false,
        layout,
    };
    c.page_size = c.page_size_for(TOKENS_PER_PAGE).expect("page size");
    c
}

/// The op kinds (`opcode % 12`) of the complete ops in `data`, in order.
pub fn op_kinds(data: &[u8]) -> Vec<usize> {
    let mut r = Reader { data };
    let mut out = Vec::new();
    while let Some(op) = decode(&mut r) {
        out.push(op.kind());
        if out.len() == MAX_OPS {
            break;
        }
    }
    out
}

/// Perform the ops in `data` on a per-tensor cache, then on a token-major one;
/// panics if either breaks a rule.
pub fn run(data: &[u8]) {
    run_on(data, Layout::PerTensor);
    run_on(data, Layout::TokenMajor);
}

/// Free `id`: a swapped-out request is refused by `free` and freed by
/// `free_swapped`, which leaves none of its pages in the swap store.
fn free(c: &mut KvCache<HostBackend>, swap: &mut MemSwap, id: u64, swapped: bool) {
    if swapped {
        assert!(
            matches!(c.free(id), Err(Error::WrongState { .. })),
            "free of swapped-out {id} must point to free_swapped"
        );
        c.free_swapped(id, swap)
            .expect("freeing a swapped-out request");
        assert_eq!(swap.pages_of(id), 0, "swap store kept pages of freed {id}");
    } else {
        c.free(id).expect("freeing a known request");
    }
}

fn run_on(data: &[u8], layout: Layout) {
    let mut c = host_cache(config(layout)).expect("building the fuzz cache");
    let mut m = Model::default();
    let mut swap = MemSwap::default();
    let mut r = Reader { data };
    for _ in 0..MAX_OPS {
        let Some(op) = decode(&mut r) else { break };
        step(&mut c, &mut m, &mut swap, op);
        check(&c, &m);
    }
    // Free everything; the pool must then hold no live page.
    let ids: Vec<u64> = m.reqs.keys().copied().collect();
    for id in ids {
        free(&mut c, &mut swap, id, m.reqs[&id].1);
        m.reqs.remove(&id);
    }
    c.check_invariants();
    assert!(
        swap.is_empty(),
        "the swap store kept pages of freed requests"
    );
    assert_eq!(
        c.metrics().pages_live,
        0,
        "live pages left after freeing all"
    );
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Admit { tmpl: u8, len: u8 },
    Append { sel: u8, n: u8, salt: u8 },
    Fork { sel: u8 },
    Publish { sel: u8 },
    Free { sel: u8 },
    FreeAgain { sel: u8 },
    SwapOut { sel: u8 },
    SwapIn { sel: u8 },
    Maintain { which: u8 },
    Unknown { which: u8 },
    BadWrite { sel: u8, which: u8, pos: u8 },
    Tables { sel: u8 },
}

impl Op {
    fn kind(&self) -> usize {
        match self {
            Op::Admit { .. } => 0,
            Op::Append { .. } => 1,
            Op::Fork { .. } => 2,
            Op::Publish { .. } => 3,
            Op::Free { .. } => 4,
            Op::FreeAgain { .. } => 5,
            Op::SwapOut { .. } => 6,
            Op::SwapIn { .. } => 7,
            Op::Maintain { .. } => 8,
            Op::Unknown { .. } => 9,
            Op::BadWrite { .. } => 10,
            Op::Tables { .. } => 11,
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
}

fn decode(r: &mut Reader<'_>) -> Option<Op> {
    let code = r.byte()? as usize % OP_KINDS;
    Some(match code {
        0 => Op::Admit {
            tmpl: r.byte()?,
            len: r.byte()?,
        },
        1 => Op::Append {
            sel: r.byte()?,
            n: r.byte()?,
            salt: r.byte()?,
        },
        2 => Op::Fork { sel: r.byte()? },
        3 => Op::Publish { sel: r.byte()? },
        4 => Op::Free { sel: r.byte()? },
        5 => Op::FreeAgain { sel: r.byte()? },
        6 => Op::SwapOut { sel: r.byte()? },
        7 => Op::SwapIn { sel: r.byte()? },
        8 => Op::Maintain { which: r.byte()? },
        9 => Op::Unknown { which: r.byte()? },
        10 => Op::BadWrite {
            sel: r.byte()?,
            which: r.byte()?,
            pos: r.byte()?,
        },
        _ => Op::Tables { sel: r.byte()? },
    })
}

/// Each request's tokens and whether it is swapped out; freed ids.
#[derive(Debug, Default)]
struct Model {
    reqs: BTreeMap<u64, (Vec<u32>, bool)>,
    freed: Vec<u64>,
}

impl Model {
    fn pick(&self, sel: u8, swapped: bool) -> Option<u64> {
        let ids: Vec<u64> = self
            .reqs
            .iter()
            .filter(|(_, (_, s))| *s == swapped)
            .map(|(&id, _)| id)
            .collect();
        (!ids.is_empty()).then(|| ids[usize::from(sel) % ids.len()])
    }
}

fn prefix_hash(tokens: &[u32]) -> u64 {
    tokens.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &t| {
        (h ^ u64::from(t)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The KV bytes of position `pos` of `tokens` in `layer`.
fn kv_bytes(tokens: &[u32], layer: usize, pos: usize, v: bool) -> Vec<u8> {
    let h = prefix_hash(&tokens[..=pos]) ^ u64::from(v) ^ ((layer as u64) << 1);
    (0..TOKEN_BYTES)
        .map(|i| (h >> ((i % 8) * 8)) as u8 ^ i as u8)
        .collect()
}

fn write_range(c: &mut KvCache<HostBackend>, id: u64, tokens: &[u32], from: usize) {
    for pos in from..tokens.len() {
        for layer in 0..LAYERS {
            for v in [false, true] {
                c.write_token(id, layer, v, pos, &kv_bytes(tokens, layer, pos, v))
                    .unwrap_or_else(|e| panic!("writing request {id} pos {pos}: {e}"));
            }
        }
    }
}

fn is_capacity(e: &Error) -> bool {
    matches!(
        e,
        Error::PoolExhausted { .. } | Error::NoFreeSlot | Error::MapLimit { .. }
    )
}

fn step(c: &mut KvCache<HostBackend>, m: &mut Model, swap: &mut MemSwap, op: Op) {
    match op {
        Op::Admit { tmpl, len } => {
            let len = usize::from(len);
            let template = u32::from(tmpl % 4);
            let prompt: Vec<u32> = (0..len as u32).map(|i| template * 1000 + i).collect();
            match c.admit(&prompt) {
                Ok(a) => {
                    assert!(len <= MAX_CTX, "admitted a {len}-token prompt");
                    assert!(a.cached_tokens <= len, "{a:?} for {len} tokens");
                    let cached = prompt[..a.cached_tokens].to_vec();
                    m.reqs.insert(a.id, (cached, false));
                    // Prefill: compute the rest of the prompt (copies a shared
                    // partial block first). The cached part is checked by `check`.
                    if tmpl & 0x80 == 0 && a.cached_tokens < len {
                        // Check the cached prefix before the append changes anything.
                        check(c, m);
                        match c.append(a.id, &prompt[a.cached_tokens..]) {
                            Ok(()) => {
                                write_range(c, a.id, &prompt, a.cached_tokens);
                                m.reqs.get_mut(&a.id).expect("just admitted").0 = prompt;
                            }
                            Err(e) => assert!(is_capacity(&e), "prefill: {e:?}"),
                        }
                    }
                }
                Err(Error::ContextTooLong { requested, max }) => {
                    assert_eq!((requested, max), (len, MAX_CTX));
                    assert!(len > MAX_CTX);
                }
                Err(e) => {
                    assert!(len <= MAX_CTX, "{len} tokens admitted? {e:?}");
                    assert!(is_capacity(&e), "admit: {e:?}");
                }
            }
        }
        Op::Append { sel, n, salt } => {
            let Some(id) = m.pick(sel, false) else { return };
            let n = usize::from(n % 48);
            let old = m.reqs[&id].0.len();
            let new: Vec<u32> = (0..n as u32)
                .map(|i| 100_000 + u32::from(salt) * 64 + i)
                .collect();
            match c.append(id, &new) {
                Ok(()) => {
                    assert!(old + n <= MAX_CTX, "appended past max_ctx");
                    let t = &mut m.reqs.get_mut(&id).expect("picked").0;
                    t.extend(&new);
                    let t = t.clone();
                    write_range(c, id, &t, old);
                }
                Err(Error::ContextTooLong { .. }) => assert!(old + n > MAX_CTX),
                Err(e) => assert!(is_capacity(&e), "append: {e:?}"),
            }
            assert_eq!(c.len(id).expect("live request"), m.reqs[&id].0.len());
        }
        Op::Fork { sel } => {
            let Some(id) = m.pick(sel, false) else { return };
            match c.fork(id) {
                Ok(child) => {
                    assert!(!m.reqs.contains_key(&child), "fork reused id {child}");
                    let t = m.reqs[&id].0.clone();
                    m.reqs.insert(child, (t, false));
                }
                Err(e) => assert!(is_capacity(&e), "fork: {e:?}"),
            }
        }
        Op::Publish { sel } => {
            let Some(id) = m.pick(sel, false) else { return };
            let blocks = c.publish(id).expect("publishing a live request");
            assert_eq!(blocks, m.reqs[&id].0.len() / TOKENS_PER_PAGE);
        }
        Op::Free { sel } => {
            let Some(&id) = m.reqs.keys().nth(usize::from(sel) % m.reqs.len().max(1)) else {
                return;
            };
            free(c, swap, id, m.reqs[&id].1);
            m.reqs.remove(&id);
            m.freed.push(id);
        }
        Op::FreeAgain { sel } => {
            if m.freed.is_empty() {
                return;
            }
            let id = m.freed[usize::from(sel) % m.freed.len()];
            assert_eq!(c.free(id), Err(Error::AlreadyFreed(id)));
            assert!(c.append(id, &[1]).is_err(), "append to freed {id}");
            assert!(c.len(id).is_err(), "len of freed {id}");
            let mut buf = vec![0u8; TOKEN_BYTES];
            assert!(c.read_token(id, 0, false, 0, &mut buf).is_err());
        }
        Op::SwapOut { sel } => {
            let Some(id) = m.pick(sel, false) else { return };
            c.swap_out(id, swap).expect("swap out into memory");
            m.reqs.get_mut(&id).expect("picked").1 = true;
            // A swapped request cannot be written, read, forked or swapped out again.
            let mut buf = vec![0u8; TOKEN_BYTES];
            assert!(c.read_token(id, 0, false, 0, &mut buf).is_err());
            assert!(c.fork(id).is_err(), "fork of swapped {id}");
            assert!(c.swap_out(id, swap).is_err(), "swapped {id} out twice");
        }
        Op::SwapIn { sel } => {
            if let Some(live) = m.pick(sel, false) {
                let e = c
                    .swap_in(live, swap)
                    .expect_err("swap in of a live request");
                assert!(matches!(e, Error::WrongState { .. }), "{e:?}");
            }
            let Some(id) = m.pick(sel, true) else { return };
            match c.swap_in(id, swap) {
                Ok(_) => m.reqs.get_mut(&id).expect("picked").1 = false,
                Err(e) => assert!(is_capacity(&e), "swap in: {e:?}"),
            }
        }
        Op::Maintain { which } => match which % 4 {
            0 => drop(c.reclaim().expect("reclaim")),
            1 => drop(c.trim().expect("trim")),
            _ => drop(c.prefetch(usize::from(which / 4)).expect("prefetch")),
        },
        Op::Unknown { which } => {
            let id = u64::MAX - u64::from(which);
            assert_eq!(c.free(id), Err(Error::UnknownRequest(id)));
            assert!(c.append(id, &[1, 2]).is_err());
            assert!(c.len(id).is_err());
            assert!(c.request_state(id).is_err());
            assert!(c.publish(id).is_err());
            assert!(c.fork(id).is_err());
            assert!(c.swap_out(id, swap).is_err());
            assert!(c.swap_in(id, swap).is_err());
            assert!(c.preempt_recompute(id).is_err());
            assert!(c.page_table(&[id]).is_err());
            assert!(c.block_table(&[id]).is_err());
            let mut buf = vec![0u8; TOKEN_BYTES];
            assert!(c.read_token(id, 0, false, 0, &mut buf).is_err());
            assert!(c.write_token(id, 0, false, 0, &buf).is_err());
        }
        Op::BadWrite { sel, which, pos } => {
            let Some(id) = m.pick(sel, false) else { return };
            let tokens = m.reqs[&id].0.clone();
            let pos = usize::from(pos);
            let layer = usize::from(which >> 4) % (LAYERS + 2);
            let mut good = vec![0u8; TOKEN_BYTES];
            match which % 4 {
                0 => {
                    // Past the request's length (or max_ctx).
                    let p = tokens.len() + pos;
                    assert!(c.write_token(id, 0, false, p, &good).is_err());
                    assert!(c.read_token(id, 0, true, p, &mut good).is_err());
                }
                1 => {
                    let p = pos % tokens.len().max(1);
                    assert!(c.write_token(id, LAYERS + layer, false, p, &good).is_err());
                    assert!(
                        c.read_token(id, LAYERS + layer, false, p, &mut good)
                            .is_err()
                    );
                }
                2 => {
                    let p = pos % tokens.len().max(1);
                    let short = vec![0u8; pos % TOKEN_BYTES];
                    assert!(c.write_token(id, 0, false, p, &short).is_err());
                    let mut long = vec![0u8; TOKEN_BYTES + 1 + pos];
                    assert!(c.read_token(id, 0, false, p, &mut long).is_err());
                }
                _ => {
                    // Rewrite the bytes already there: Ok on a private page, a
                    // read-only error on a shared or published one.
                    if tokens.is_empty() {
                        return;
                    }
                    let p = pos % tokens.len();
                    let layer = layer % LAYERS;
                    let bytes = kv_bytes(&tokens, layer, p, true);
                    match c.write_token(id, layer, true, p, &bytes) {
                        Ok(()) | Err(Error::WrongState { .. }) => {}
                        Err(e) => panic!("rewriting pos {p} of {id}: {e:?}"),
                    }
                }
            }
        }
        Op::Tables { sel } => {
            let live: Vec<u64> = m
                .reqs
                .iter()
                .filter(|(_, (_, s))| !*s)
                .map(|(&id, _)| id)
                .collect();
            let pt = c.page_table(&live).expect("page table of live requests");
            assert_eq!(pt.indptr.len(), live.len() + 1);
            let bt = c.block_table(&live).expect("block table of live requests");
            assert_eq!(bt.data.len(), bt.width * live.len());
            for (i, id) in live.iter().enumerate() {
                let len = m.reqs[id].0.len();
                let pages = len.div_ceil(TOKENS_PER_PAGE);
                let got = (pt.indptr[i + 1] - pt.indptr[i]) as usize;
                assert_eq!(got, pages, "page table row of {id} ({len} tokens)");
                let row = &bt.data[i * bt.width..(i + 1) * bt.width];
                assert!(row[..pages].iter().all(|&p| p >= 0), "{row:?}");
                assert!(row[pages..].iter().all(|&p| p == -1), "{row:?}");
            }
            if let Some(id) = m.pick(sel, true) {
                assert!(c.page_table(&[id]).is_err(), "page table of swapped {id}");
            }
        }
    }
}

/// Invariants, accounting, and every live request's KV reads back.
fn check(c: &KvCache<HostBackend>, m: &Model) {
    c.check_invariants();
    let mut buf = vec![0u8; TOKEN_BYTES];
    for (&id, (tokens, swapped)) in &m.reqs {
        let state = c.request_state(id).expect("known request");
        assert_eq!(matches!(state, RequestState::Swapped), *swapped, "{id}");
        assert_eq!(c.len(id).expect("known request"), tokens.len());
        if *swapped {
            continue;
        }
        for pos in 0..tokens.len() {
            for layer in 0..LAYERS {
                for v in [false, true] {
                    c.read_token(id, layer, v, pos, &mut buf)
                        .expect("reading a live position");
                    assert!(
                        buf == kv_bytes(tokens, layer, pos, v),
                        "request {id} layer {layer} pos {pos} v {v}: wrong KV"
                    );
                }
            }
        }
    }
    let met = c.metrics();
    assert_eq!(
        met.pages_free + met.pages_live + met.pages_cached + met.pages_spare,
        met.pages_total
    );
}
