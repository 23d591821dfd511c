//! Fault injection (STYLE §8): the host backend wrapped in one that fails its Nth
//! call, under random request sequences checked against a model.
//!
//! A failed call must leave the cache as if the operation had not been asked for:
//! the request keeps its length and reads back what was written, the bookkeeping
//! invariants hold, and later operations work. When every call fails from some point
//! on (a dead device), operations return errors, never panic, and once the cache
//! says it is poisoned it refuses everything.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use engram_kvcache::backend::host::HostBackend;
use engram_kvcache::backend::{Backend, Caps};
use engram_kvcache::{BackendError, Config, Error, KvCache, Layout, MemSwap, RequestState};
use proptest::prelude::*;

const LAYERS: usize = 2;
/// One layer's K or V of one token: 4 heads x 32 x f32.
const KV_BYTES: usize = 4 * 32 * 4;
const TOKENS_PER_PAGE: usize = 8;

/// When the wrapped backend fails.
#[derive(Debug, Default)]
struct Plan {
    calls: AtomicU64,
    /// The call (1-based) that fails; 0: none.
    fail_at: AtomicU64,
    /// Every call from `fail_at` on fails, not just that one.
    forever: bool,
}

impl Plan {
    fn tick(&self, call: &'static str) -> Result<(), BackendError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let at = self.fail_at.load(Ordering::Relaxed);
        if at != 0 && (n == at || (self.forever && n > at)) {
            return Err(BackendError::Os {
                call,
                errno: ENOMEM,
            });
        }
        Ok(())
    }

    fn failed(&self) -> bool {
        let at = self.fail_at.load(Ordering::Relaxed);
        at != 0 && self.calls.load(Ordering::Relaxed) >= at
    }
}

/// What the kernel says when it refuses a mapping.
const ENOMEM: i32 = 12;

/// The host backend, failing when `plan` says so (before the call takes effect).
struct Faulty {
    inner: HostBackend,
    plan: Arc<Plan>,
}

impl Backend for Faulty {
    fn caps(&self) -> Caps {
        self.inner.caps()
    }
    fn page_size(&self) -> usize {
        self.inner.page_size()
    }
    fn pool_pages(&self) -> usize {
        self.inner.pool_pages()
    }
    fn reservation(&self) -> (usize, usize) {
        self.inner.reservation()
    }
    fn map(&mut self, off: usize, phys: usize, n: usize) -> Result<(), BackendError> {
        self.plan.tick("mmap (injected)")?;
        self.inner.map(off, phys, n)
    }
    fn unmap(&mut self, off: usize, n: usize) -> Result<(), BackendError> {
        self.plan.tick("unmap (injected)")?;
        self.inner.unmap(off, n)
    }
    fn release(&mut self, phys: usize, n: usize) -> Result<(), BackendError> {
        self.plan.tick("fallocate (injected)")?;
        self.inner.release(phys, n)
    }
    fn copy_page(&mut self, src: usize, dst: usize) -> Result<(), BackendError> {
        self.plan.tick("copy (injected)")?;
        self.inner.copy_page(src, dst)
    }
    fn read_page(&mut self, phys: usize, out: &mut [u8]) -> Result<(), BackendError> {
        self.plan.tick("read (injected)")?;
        self.inner.read_page(phys, out)
    }
    fn write_page(&mut self, phys: usize, data: &[u8]) -> Result<(), BackendError> {
        self.plan.tick("write (injected)")?;
        self.inner.write_page(phys, data)
    }
    fn read_virt(&self, off: usize, out: &mut [u8]) -> Result<(), BackendError> {
        self.inner.read_virt(off, out)
    }
    fn write_virt(&mut self, off: usize, data: &[u8]) -> Result<(), BackendError> {
        self.inner.write_virt(off, data)
    }
    fn pool_view(&self) -> Option<usize> {
        self.inner.pool_view()
    }
    fn mapped_at(&self, off: usize) -> Option<Option<usize>> {
        self.inner.mapped_at(off)
    }
}

fn config(layout: Layout) -> Config {
    let mut c = Config {
        layers: LAYERS,
        kv_heads: 4,
        head_dim: 32,
        elem_bytes: 4,
        max_batch: 4,
        max_ctx: 64,
        page_size: 0,
        // 20 page groups.
        pool_bytes: 20 * TOKENS_PER_PAGE * KV_BYTES * 2 * LAYERS,
        low_watermark: 2,
        high_watermark: 4,
        try_huge: false,
        layout,
    };
    c.page_size = c.page_size_for(TOKENS_PER_PAGE).unwrap();
    c
}

fn cache(layout: Layout, plan: Arc<Plan>) -> KvCache<Faulty> {
    let cfg = config(layout);
    let geo = cfg.geometry().unwrap();
    let inner = HostBackend::new(
        geo.page_size,
        geo.tensors * geo.groups,
        geo.reserve_bytes,
        false,
    )
    .unwrap();
    KvCache::new(cfg, Faulty { inner, plan }).unwrap()
}

fn pattern(tok: u32, pos: usize, layer: usize, v: bool) -> Vec<u8> {
    (0..KV_BYTES)
        .map(|i| {
            (tok.wrapping_mul(131) as usize ^ (pos * 7) ^ (layer * 3) ^ usize::from(v) ^ i) as u8
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    Admit { template: u32, len: usize },
    Append { who: usize, n: usize },
    Free { who: usize },
    Fork { who: usize },
    SwapOut { who: usize },
    SwapIn { who: usize },
    Prefetch { lookahead: usize },
    Reclaim,
    Trim,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u32..3, 0usize..30).prop_map(|(template, len)| Op::Admit { template, len }),
        4 => (any::<usize>(), 1usize..20).prop_map(|(who, n)| Op::Append { who, n }),
        2 => any::<usize>().prop_map(|who| Op::Free { who }),
        1 => any::<usize>().prop_map(|who| Op::Fork { who }),
        1 => any::<usize>().prop_map(|who| Op::SwapOut { who }),
        1 => any::<usize>().prop_map(|who| Op::SwapIn { who }),
        1 => (0usize..20).prop_map(|lookahead| Op::Prefetch { lookahead }),
        1 => Just(Op::Reclaim),
        1 => Just(Op::Trim),
    ]
}

/// What a user knows about each request: its tokens and whether it is swapped out.
#[derive(Debug, Default)]
struct Model {
    reqs: HashMap<u64, (Vec<u32>, bool)>,
    order: Vec<u64>,
}

impl Model {
    fn pick(&self, who: usize) -> Option<u64> {
        (!self.order.is_empty()).then(|| self.order[who % self.order.len()])
    }
    fn add(&mut self, id: u64, tokens: Vec<u32>) {
        self.reqs.insert(id, (tokens, false));
        self.order.push(id);
    }
    fn remove(&mut self, id: u64) {
        self.reqs.remove(&id);
        self.order.retain(|&x| x != id);
    }
}

fn write_tokens(c: &mut KvCache<Faulty>, id: u64, tokens: &[u32], from: usize) {
    for (pos, &t) in tokens.iter().enumerate().skip(from) {
        for layer in 0..LAYERS {
            for v in [false, true] {
                c.write_token(id, layer, v, pos, &pattern(t, pos, layer, v))
                    .unwrap();
            }
        }
    }
}

fn verify(c: &KvCache<Faulty>, m: &Model) -> Result<(), TestCaseError> {
    let mut buf = vec![0u8; KV_BYTES];
    for (&id, (tokens, swapped)) in &m.reqs {
        prop_assert_eq!(c.len(id).unwrap(), tokens.len(), "length of request {}", id);
        let live = matches!(c.request_state(id).unwrap(), RequestState::Live { .. });
        prop_assert_eq!(live, !swapped, "state of request {}", id);
        if *swapped {
            continue;
        }
        for (pos, &t) in tokens.iter().enumerate() {
            for layer in 0..LAYERS {
                for v in [false, true] {
                    c.read_token(id, layer, v, pos, &mut buf).unwrap();
                    prop_assert!(
                        buf == pattern(t, pos, layer, v),
                        "request {} pos {} layer {} v {}",
                        id,
                        pos,
                        layer,
                        v
                    );
                }
            }
        }
    }
    Ok(())
}

fn is_capacity(e: &Error) -> bool {
    matches!(
        e,
        Error::PoolExhausted { .. } | Error::NoFreeSlot | Error::MapLimit { .. }
    )
}

/// Backend calls `ops` make with no fault (the cache is deterministic: the
/// same operations make the same calls up to the first failure).
fn calls_made(ops: &[Op], layout: Layout) -> Result<u64, TestCaseError> {
    let plan = Arc::new(Plan::default());
    run(ops, layout, plan.clone())?;
    Ok(plan.calls.load(Ordering::Relaxed))
}

/// Run `ops`; the backend fails as `plan` says. Returns whether the cache ended
/// poisoned.
fn run(ops: &[Op], layout: Layout, plan: Arc<Plan>) -> Result<bool, TestCaseError> {
    let mut c = cache(layout, plan.clone());
    let mut m = Model::default();
    let mut swap = MemSwap::default();
    let mut poisoned = false;
    for op in ops {
        let before = plan.calls.load(Ordering::Relaxed);
        let r: Result<(), Error> = match *op {
            Op::Admit { template, len } => {
                let prompt: Vec<u32> = (0..len as u32).map(|i| template * 1000 + i).collect();
                c.admit(&prompt).map(|a| {
                    let tokens = prompt[..a.cached_tokens].to_vec();
                    m.add(a.id, tokens);
                })
            }
            Op::Append { who, n } => match m.pick(who) {
                Some(id) if !m.reqs[&id].1 => {
                    let len = m.reqs[&id].0.len();
                    let new: Vec<u32> = (0..n as u32).map(|i| 50_000 + len as u32 + i).collect();
                    let r = c.append(id, &new);
                    if r.is_ok() {
                        let toks = &mut m.reqs.get_mut(&id).unwrap().0;
                        toks.extend(&new);
                        let all = toks.clone();
                        write_tokens(&mut c, id, &all, len);
                    }
                    r
                }
                _ => Ok(()),
            },
            Op::Free { who } => match m.pick(who) {
                Some(id) => {
                    let r = c.free_swapped(id, &mut swap);
                    if r.is_ok() {
                        m.remove(id);
                    }
                    r
                }
                None => Ok(()),
            },
            Op::Fork { who } => match m.pick(who) {
                Some(id) if !m.reqs[&id].1 => c.fork(id).map(|child| {
                    let t = m.reqs[&id].0.clone();
                    m.add(child, t);
                }),
                _ => Ok(()),
            },
            Op::SwapOut { who } => match m.pick(who) {
                Some(id) if !m.reqs[&id].1 => {
                    let r = c.swap_out(id, &mut swap);
                    if r.is_ok() {
                        m.reqs.get_mut(&id).unwrap().1 = true;
                    }
                    r
                }
                _ => Ok(()),
            },
            Op::SwapIn { who } => match m.pick(who) {
                Some(id) if m.reqs[&id].1 => {
                    let r = c.swap_in(id, &mut swap).map(|_| ());
                    if r.is_ok() {
                        m.reqs.get_mut(&id).unwrap().1 = false;
                    }
                    r
                }
                _ => Ok(()),
            },
            Op::Prefetch { lookahead } => c.prefetch(lookahead).map(|_| ()),
            Op::Reclaim => c.reclaim().map(|_| ()),
            Op::Trim => c.trim().map(|_| ()),
        };
        let injected_now = plan.failed() && {
            let at = plan.fail_at.load(Ordering::Relaxed);
            plan.forever || (before < at && plan.calls.load(Ordering::Relaxed) >= at)
        };
        match r {
            Ok(()) => {}
            Err(Error::Poisoned(_)) => {
                prop_assert!(plan.forever, "poisoned by a single failure: {:?}", op);
                poisoned = true;
            }
            Err(Error::Backend(e)) => {
                prop_assert!(
                    injected_now,
                    "backend error nobody injected: {} in {:?}",
                    e,
                    op
                );
            }
            Err(e) if is_capacity(&e) || matches!(e, Error::ContextTooLong { .. }) => {}
            Err(e) => return Err(TestCaseError::fail(format!("{op:?}: {e}"))),
        }
        if poisoned {
            // Everything is refused from now on.
            prop_assert!(matches!(c.admit(&[1, 2, 3]), Err(Error::Poisoned(_))));
            prop_assert!(matches!(c.trim(), Err(Error::Poisoned(_))));
            return Ok(true);
        }
        c.check_invariants();
        verify(&c, &m)?;
    }
    Ok(false)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// One call fails (a transient ENOMEM): the operation changes nothing and the
    /// cache goes on working. The failing call is one the same operations make
    /// without faults (counted first), so it always fires.
    #[test]
    fn one_failed_call_changes_nothing(
        ops in proptest::collection::vec(op(), 1..50),
        pick in any::<u64>(),
        token_major in any::<bool>(),
    ) {
        let layout = if token_major { Layout::TokenMajor } else { Layout::PerTensor };
        let n = calls_made(&ops, layout)?;
        prop_assume!(n > 0);
        let plan = Arc::new(Plan { fail_at: AtomicU64::new(1 + pick % n), ..Plan::default() });
        prop_assert!(!run(&ops, layout, plan.clone())?);
        prop_assert!(plan.failed(), "the injected failure never fired");
    }

    /// Every call fails from some point on: errors, no panic, no corrupted state
    /// while the cache is not poisoned, and everything refused once it is.
    #[test]
    fn a_dead_backend_gives_errors_not_corruption(
        ops in proptest::collection::vec(op(), 1..50),
        pick in any::<u64>(),
        token_major in any::<bool>(),
    ) {
        let layout = if token_major { Layout::TokenMajor } else { Layout::PerTensor };
        let n = calls_made(&ops, layout)?;
        prop_assume!(n > 0);
        let plan = Arc::new(Plan {
            fail_at: AtomicU64::new(1 + pick % n),
            forever: true,
            ..Plan::default()
        });
        run(&ops, layout, plan.clone())?;
        prop_assert!(plan.failed(), "the backend never died");
    }
}

#[test]
fn a_failed_map_during_append_is_undone() {
    let plan = Arc::new(Plan::default());
    let mut c = cache(Layout::PerTensor, plan.clone());
    let a = c.admit(&[]).unwrap();
    let toks: Vec<u32> = (0..20).collect();
    c.append(a.id, &toks).unwrap();
    write_tokens(&mut c, a.id, &toks, 0);
    let mapped = c.metrics().counters.pages_mapped;
    // The third map call of the next append (tensor 2 of 4) fails.
    let at = plan.calls.load(Ordering::Relaxed) + 3;
    plan.fail_at.store(at, Ordering::Relaxed);
    let more: Vec<u32> = (20..40).collect();
    let e = c.append(a.id, &more).unwrap_err();
    assert!(matches!(e, Error::Backend(BackendError::Os { .. })), "{e}");
    assert_eq!(c.len(a.id).unwrap(), 20);
    assert_eq!(c.metrics().counters.pages_mapped, mapped);
    assert_eq!(c.metrics().pages_live, 3, "the groups taken went back");
    c.check_invariants();
    let mut m = Model::default();
    m.add(a.id, toks.clone());
    verify(&c, &m).unwrap();
    // The same append works now, and the data of both parts reads back.
    c.append(a.id, &more).unwrap();
    let all: Vec<u32> = (0..40).collect();
    write_tokens(&mut c, a.id, &all, 20);
    m.reqs.get_mut(&a.id).unwrap().0 = all;
    verify(&c, &m).unwrap();
    c.check_invariants();
}
