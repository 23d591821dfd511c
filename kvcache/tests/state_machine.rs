//! Model-based test (STYLE §8): random admit / append+write / fork / publish / free /
//! swap / reclaim / trim sequences against a reference model that only knows each
//! request's tokens. After every step: `check_invariants` (accounting adds up, every
//! live position mapped, no page in two slots unless shared) and every live
//! request's data reads back (also after swap-in and copy-on-write, so shared pages
//! never saw another request's writes).

use std::collections::BTreeMap;

use engram_kvcache::backend::host::HostBackend;
use engram_kvcache::{Config, Error, KvCache, Layout, MemSwap, RequestState, host_cache};
use proptest::prelude::*;

const TOKEN_BYTES: usize = 4 * 32 * 4; // kv_heads * head_dim * f32 = 512 B: 8 tokens per 4 KiB page

/// The cache under test. Token-major packs K and V of the one layer into one 8 KiB
/// page, so both layouts hold 8 tokens per page and 14 page groups.
fn new_cache(layout: Layout) -> KvCache<HostBackend> {
    let mut c = Config {
        layers: 1,
        kv_heads: 4,
        head_dim: 32,
        elem_bytes: 4,
        max_batch: 4,
        max_ctx: 64,
        page_size: 0,
        pool_bytes: 14 * 4096 * 2,
        low_watermark: 3,
        high_watermark: 6,
        try_huge: false,
        layout,
    };
    c.page_size = c.page_size_for(8).unwrap();
    host_cache(c).unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    Admit {
        template: u32,
        len: usize,
        prefill: bool,
    },
    Append {
        sel: usize,
        n: usize,
        salt: u32,
    },
    Fork {
        sel: usize,
    },
    Publish {
        sel: usize,
    },
    Free {
        sel: usize,
    },
    SwapOut {
        sel: usize,
    },
    SwapIn {
        sel: usize,
    },
    Reclaim,
    Trim,
    FreeTwice,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u32..3, 0usize..40, proptest::bool::weighted(0.8)).prop_map(|(template, len, prefill)| Op::Admit { template, len, prefill }),
        5 => (any::<usize>(), 1usize..20, any::<u32>()).prop_map(|(sel, n, salt)| Op::Append { sel, n, salt }),
        1 => any::<usize>().prop_map(|sel| Op::Fork { sel }),
        1 => any::<usize>().prop_map(|sel| Op::Publish { sel }),
        2 => any::<usize>().prop_map(|sel| Op::Free { sel }),
        1 => any::<usize>().prop_map(|sel| Op::SwapOut { sel }),
        1 => any::<usize>().prop_map(|sel| Op::SwapIn { sel }),
        1 => Just(Op::Reclaim),
        1 => Just(Op::Trim),
        1 => Just(Op::FreeTwice),
    ]
}

/// The reference: each request is its token list; the KV of position `p` is a pure
/// function of `tokens[..=p]`.
#[derive(Debug, Default)]
struct Model {
    reqs: BTreeMap<u64, (Vec<u32>, bool)>,
    freed: Vec<u64>,
}

fn prefix_hash(tokens: &[u32]) -> u64 {
    tokens.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &t| {
        (h ^ u64::from(t)).wrapping_mul(0x100_0000_01b3)
    })
}

fn kv_bytes(tokens: &[u32], pos: usize, v: bool) -> Vec<u8> {
    let h = prefix_hash(&tokens[..=pos]) ^ u64::from(v);
    (0..TOKEN_BYTES)
        .map(|i| (h >> ((i % 8) * 8)) as u8 ^ i as u8)
        .collect()
}

fn write_range(c: &mut KvCache<HostBackend>, id: u64, tokens: &[u32], from: usize) {
    for pos in from..tokens.len() {
        for v in [false, true] {
            c.write_token(id, 0, v, pos, &kv_bytes(tokens, pos, v))
                .unwrap();
        }
    }
}

fn pick(m: &Model, sel: usize, swapped: bool) -> Option<u64> {
    let ids: Vec<u64> = m
        .reqs
        .iter()
        .filter(|(_, (_, s))| *s == swapped)
        .map(|(&id, _)| id)
        .collect();
    (!ids.is_empty()).then(|| ids[sel % ids.len()])
}

fn is_capacity(e: &Error) -> bool {
    matches!(
        e,
        Error::PoolExhausted { .. } | Error::NoFreeSlot | Error::MapLimit { .. }
    )
}

fn run(ops: Vec<Op>, layout: Layout) -> Result<(), TestCaseError> {
    let mut c = new_cache(layout);
    let mut m = Model::default();
    let mut swap = MemSwap::default();
    for op in ops {
        match op {
            Op::Admit {
                template,
                len,
                prefill,
            } => {
                let prompt: Vec<u32> = (0..len as u32).map(|i| template * 1000 + i).collect();
                match c.admit(&prompt) {
                    Ok(a) => {
                        prop_assert!(a.cached_tokens <= len);
                        let cached = prompt[..a.cached_tokens].to_vec();
                        m.reqs.insert(a.id, (cached.clone(), false));
                        // The cached prefix must already hold this prompt's KV.
                        let mut buf = vec![0u8; TOKEN_BYTES];
                        for pos in 0..cached.len() {
                            c.read_token(a.id, 0, false, pos, &mut buf).unwrap();
                            prop_assert_eq!(&buf, &kv_bytes(&cached, pos, false));
                        }
                        // Prefill: compute the rest of the prompt (copies a shared
                        // partial block first).
                        if prefill && a.cached_tokens < len {
                            match c.append(a.id, &prompt[a.cached_tokens..]) {
                                Ok(()) => {
                                    write_range(&mut c, a.id, &prompt, a.cached_tokens);
                                    m.reqs.get_mut(&a.id).unwrap().0 = prompt.clone();
                                }
                                Err(e) => prop_assert!(is_capacity(&e), "{e:?}"),
                            }
                        }
                    }
                    Err(e) => prop_assert!(is_capacity(&e), "{e:?}"),
                }
            }
            Op::Append { sel, n, salt } => {
                let Some(id) = pick(&m, sel, false) else {
                    continue;
                };
                let old = m.reqs[&id].0.len();
                let new: Vec<u32> = (0..n as u32).map(|i| salt.wrapping_add(i)).collect();
                match c.append(id, &new) {
                    Ok(()) => {
                        let t = &mut m.reqs.get_mut(&id).unwrap().0;
                        t.extend(&new);
                        let t = t.clone();
                        write_range(&mut c, id, &t, old);
                    }
                    Err(Error::ContextTooLong { .. }) => prop_assert!(old + n > 64),
                    Err(e) => prop_assert!(is_capacity(&e), "{e:?}"),
                }
                prop_assert_eq!(c.len(id).unwrap(), m.reqs[&id].0.len());
            }
            Op::Fork { sel } => {
                let Some(id) = pick(&m, sel, false) else {
                    continue;
                };
                match c.fork(id) {
                    Ok(child) => {
                        let t = m.reqs[&id].0.clone();
                        m.reqs.insert(child, (t, false));
                    }
                    Err(e) => prop_assert!(is_capacity(&e), "{e:?}"),
                }
            }
            Op::Publish { sel } => {
                let Some(id) = pick(&m, sel, false) else {
                    continue;
                };
                prop_assert_eq!(c.publish(id).unwrap(), m.reqs[&id].0.len() / 8);
            }
            Op::Free { sel } => {
                let Some(&id) = m.reqs.keys().nth(sel % m.reqs.len().max(1)) else {
                    continue;
                };
                if m.reqs[&id].1 {
                    let refused = matches!(c.free(id), Err(Error::WrongState { .. }));
                    prop_assert!(refused, "free of swapped-out {} was not refused", id);
                    c.free_swapped(id, &mut swap).unwrap();
                    prop_assert_eq!(swap.pages_of(id), 0);
                } else {
                    c.free(id).unwrap();
                }
                m.reqs.remove(&id);
                m.freed.push(id);
            }
            Op::SwapOut { sel } => {
                let Some(id) = pick(&m, sel, false) else {
                    continue;
                };
                c.swap_out(id, &mut swap).unwrap();
                m.reqs.get_mut(&id).unwrap().1 = true;
            }
            Op::SwapIn { sel } => {
                let Some(id) = pick(&m, sel, true) else {
                    continue;
                };
                match c.swap_in(id, &mut swap) {
                    Ok(_) => m.reqs.get_mut(&id).unwrap().1 = false,
                    Err(e) => prop_assert!(is_capacity(&e), "{e:?}"),
                }
            }
            Op::Reclaim => {
                c.reclaim().unwrap();
            }
            Op::Trim => {
                c.trim().unwrap();
            }
            Op::FreeTwice => {
                if let Some(&id) = m.freed.last() {
                    prop_assert_eq!(c.free(id), Err(Error::AlreadyFreed(id)));
                }
            }
        }
        c.check_invariants();
        // Every live request reads back exactly the KV of its own tokens.
        let mut buf = vec![0u8; TOKEN_BYTES];
        for (&id, (tokens, swapped)) in &m.reqs {
            let state = c.request_state(id).unwrap();
            prop_assert_eq!(matches!(state, RequestState::Swapped), *swapped);
            prop_assert_eq!(c.len(id).unwrap(), tokens.len());
            if *swapped {
                continue;
            }
            for pos in 0..tokens.len() {
                for v in [false, true] {
                    c.read_token(id, 0, v, pos, &mut buf).unwrap();
                    prop_assert_eq!(
                        &buf,
                        &kv_bytes(tokens, pos, v),
                        "request {} pos {}",
                        id,
                        pos
                    );
                }
            }
        }
        let met = c.metrics();
        prop_assert_eq!(
            met.pages_free + met.pages_live + met.pages_cached + met.pages_spare,
            met.pages_total
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn cache_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops, Layout::PerTensor)?;
    }

    #[test]
    fn token_major_cache_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops, Layout::TokenMajor)?;
    }
}
