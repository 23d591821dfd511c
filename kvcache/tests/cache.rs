//! Lifecycle, errors, sharing, reclamation and swap on the host backend.

use engram_kvcache::backend::Backend;
use engram_kvcache::backend::host::HostBackend;
use engram_kvcache::{
    Admission, Config, Error, KvCache, Layout, MemSwap, RequestState, SwapSink, host_cache,
};

fn cfg(groups: usize) -> Config {
    // 2 layers x (K,V) = 4 tensors; token = 2 heads * 16 * 4 B = 128 B; 4 KiB pages = 32 tokens.
    Config {
        layers: 2,
        kv_heads: 2,
        head_dim: 16,
        elem_bytes: 4,
        max_batch: 4,
        max_ctx: 256,
        page_size: 4096,
        pool_bytes: groups * 4096 * 4,
        low_watermark: 0,
        high_watermark: 0,
        try_huge: false,
        layout: Layout::PerTensor,
    }
}

fn cache(groups: usize) -> KvCache<HostBackend> {
    host_cache(cfg(groups)).unwrap()
}

fn toks(seed: u32, n: usize) -> Vec<u32> {
    (0..n as u32).map(|i| seed.wrapping_mul(7919) ^ i).collect()
}

fn pattern(tok: u32, pos: usize, layer: usize, v: bool) -> Vec<u8> {
    (0..128u32)
        .map(|i| {
            (tok ^ (pos as u32).wrapping_mul(31) ^ (layer as u32) << 3 ^ u32::from(v) << 5 ^ i)
                as u8
        })
        .collect()
}

/// Write the pattern of `tokens[from..]` into request `id`.
fn fill(c: &mut KvCache<HostBackend>, id: u64, tokens: &[u32], from: usize) {
    for (pos, &t) in tokens.iter().enumerate().skip(from) {
        for layer in 0..2 {
            for v in [false, true] {
                c.write_token(id, layer, v, pos, &pattern(t, pos, layer, v))
                    .unwrap();
            }
        }
    }
}

fn verify(c: &KvCache<HostBackend>, id: u64, tokens: &[u32]) {
    let mut buf = vec![0u8; 128];
    for (pos, &t) in tokens.iter().enumerate() {
        for layer in 0..2 {
            for v in [false, true] {
                c.read_token(id, layer, v, pos, &mut buf).unwrap();
                assert_eq!(
                    buf,
                    pattern(t, pos, layer, v),
                    "request {id} pos {pos} layer {layer} v {v}"
                );
            }
        }
    }
}

/// Admit a request with `prompt` (none of it cached), append the prompt and write its KV.
fn prefilled(c: &mut KvCache<HostBackend>, prompt: &[u32]) -> Admission {
    let a = c.admit(prompt).unwrap();
    c.append(a.id, prompt).unwrap();
    fill(c, a.id, prompt, 0);
    a
}

/// Kernel mappings of the memfd inside `c`'s reservation, and all of /proc/self/maps.
fn memfd_vmas(c: &KvCache<HostBackend>) -> (usize, String) {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let (base, _) = c.backend().reservation();
    let ours = maps
        .lines()
        .filter(|l| {
            let start = usize::from_str_radix(l.split('-').next().unwrap(), 16).unwrap();
            start >= base && start < base + c.geometry().reserve_bytes && l.contains("memfd")
        })
        .count();
    (ours, maps)
}

#[test]
fn admit_extend_free_roundtrip() {
    let mut c = cache(16);
    let p = toks(1, 70);
    let a = c.admit(&p).unwrap();
    assert_eq!(a.cached_tokens, 0);
    c.append(a.id, &p).unwrap();
    fill(&mut c, a.id, &p, 0);
    verify(&c, a.id, &p);
    let m = c.metrics();
    assert_eq!(m.pages_live, 3);
    assert_eq!(m.waste_bytes, (96 - 70) * 128 * 4);
    c.check_invariants();
    c.free(a.id).unwrap();
    c.check_invariants();
    assert_eq!(c.metrics().pages_live, 0);
}

#[test]
fn bad_ids_double_free_and_too_long_are_errors() {
    let mut c = cache(16);
    assert_eq!(c.free(42), Err(Error::UnknownRequest(42)));
    assert_eq!(c.append(7, &[1]), Err(Error::UnknownRequest(7)));
    let a = c.admit(&[]).unwrap();
    assert_eq!(
        c.append(a.id, &toks(1, 257)),
        Err(Error::ContextTooLong {
            requested: 257,
            max: 256
        })
    );
    assert_eq!(
        c.admit(&toks(1, 300)).unwrap_err(),
        Error::ContextTooLong {
            requested: 300,
            max: 256
        }
    );
    c.free(a.id).unwrap();
    assert_eq!(c.free(a.id), Err(Error::AlreadyFreed(a.id)));
    assert_eq!(c.append(a.id, &[1]), Err(Error::AlreadyFreed(a.id)));
    for _ in 0..4 {
        c.admit(&[]).unwrap();
    }
    assert_eq!(c.admit(&[]).unwrap_err(), Error::NoFreeSlot);
    c.check_invariants();
}

#[test]
fn exhaustion_says_how_much_is_missing_and_changes_nothing() {
    let mut c = cache(4);
    let a = c.admit(&[]).unwrap();
    c.append(a.id, &toks(1, 100)).unwrap(); // 4 pages: the whole pool
    let b = c.admit(&[]).unwrap();
    let before = c.metrics();
    let e = c.append(b.id, &toks(2, 40)).unwrap_err();
    assert_eq!(
        e,
        Error::PoolExhausted {
            needed: 2,
            available: 0
        }
    );
    assert!(e.to_string().contains("2 missing"), "{e}");
    assert_eq!(c.len(b.id).unwrap(), 0);
    assert_eq!(c.metrics().pages_free, before.pages_free);
    c.check_invariants();
}

#[test]
fn freed_slot_keeps_pages_for_the_next_request() {
    let mut c = cache(16);
    let a = c.admit(&[]).unwrap();
    c.append(a.id, &toks(1, 100)).unwrap();
    let slot = a.slot;
    c.free(a.id).unwrap();
    assert_eq!(c.metrics().pages_spare, 4);
    let maps = c.metrics().counters.pages_mapped;
    let b = c.admit(&toks(2, 90)).unwrap();
    assert_eq!(b.slot, slot, "best-fit slot is the one with spare pages");
    c.append(b.id, &toks(2, 90)).unwrap();
    assert_eq!(
        c.metrics().counters.pages_mapped,
        maps,
        "no new mapping needed"
    );
    fill(&mut c, b.id, &toks(2, 90), 0);
    verify(&c, b.id, &toks(2, 90));
    c.check_invariants();
}

#[test]
fn spare_pages_are_reclaimed_under_pressure() {
    let mut c = cache(6);
    let a = c.admit(&[]).unwrap();
    c.append(a.id, &toks(1, 150)).unwrap(); // 5 pages
    c.free(a.id).unwrap();
    let b = c.admit(&[]).unwrap();
    let d = c.admit(&[]).unwrap();
    assert_ne!(b.slot, d.slot);
    let other = if b.slot == a.slot { d.id } else { b.id };
    c.append(other, &toks(3, 150)).unwrap();
    assert!(c.metrics().counters.reclaims >= 4);
    c.check_invariants();
}

#[test]
fn contiguous_pages_make_one_mapping_per_tensor() {
    let mut c = cache(32);
    let a = c.admit(&[]).unwrap();
    for _ in 0..200 {
        c.append(a.id, &[5]).unwrap();
    }
    // 7 pages in one run: one VMA per tensor plus the PROT_NONE pieces around them.
    assert_eq!(c.metrics().mappings, 2 * 4 + 1);
    let (ours, maps) = memfd_vmas(&c);
    assert_eq!(
        ours, 4,
        "the kernel merged each tensor's pages into one VMA:\n{maps}"
    );
    c.check_invariants();
}

#[test]
fn token_major_layout_is_one_mapping_and_keeps_layers_apart() {
    // One tensor; a token is 2 layers x (K, V) x 128 B = 512 B: 8 tokens per page.
    let mut config = cfg(32);
    config.layout = Layout::TokenMajor;
    let mut c = host_cache(config).unwrap();
    assert_eq!(c.geometry().tensors, 1);
    assert_eq!(c.geometry().tokens_per_page, 8);
    let t = toks(3, 50);
    let a = c.admit(&[]).unwrap();
    c.append(a.id, &t).unwrap();
    fill(&mut c, a.id, &t, 0);
    verify(&c, a.id, &t);
    // Read through the exported pointers and strides, as a kernel would.
    let st = c.strides();
    assert_eq!((st.token, st.layer, st.kv, st.head), (512, 256, 128, 64));
    let RequestState::Live { slot } = c.request_state(a.id).unwrap() else {
        panic!("request not live");
    };
    for layer in 0..2 {
        for v in [false, true] {
            let base = c.tensor_ptr(layer, v).unwrap() as usize + slot * st.batch;
            for pos in [0, 7, 8, 49] {
                // SAFETY: pos < len: the token's K/V bytes lie in pages the borrowed
                // cache keeps mapped.
                let got = unsafe {
                    std::slice::from_raw_parts((base + pos * st.token) as *const u8, 128)
                };
                assert_eq!(
                    got,
                    &pattern(t[pos], pos, layer, v)[..],
                    "layer {layer} v {v} pos {pos}"
                );
            }
        }
    }
    // 7 pages in one run: one VMA for every layer's K and V.
    assert_eq!(c.metrics().mappings, 2 + 1);
    let (ours, maps) = memfd_vmas(&c);
    assert_eq!(ours, 1, "one VMA for the whole request:\n{maps}");
    c.free(a.id).unwrap();
    c.check_invariants();
}

#[test]
fn mapping_budget_fails_cleanly_before_the_kernel_limit() {
    let mut c = cache(32);
    c.set_mapping_budget(2 * 4 * 2 + 1);
    let a = c.admit(&[]).unwrap();
    c.append(a.id, &toks(1, 64)).unwrap();
    let b = c.admit(&[]).unwrap();
    c.append(b.id, &toks(2, 32)).unwrap();
    let d = c.admit(&[]).unwrap();
    let e = c.append(d.id, &toks(3, 32)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::MapLimit {
                needed: 25,
                limit: 17
            }
        ),
        "{e:?}"
    );
    assert_eq!(c.len(d.id).unwrap(), 0);
    c.check_invariants();
}

#[test]
fn prefix_sharing_holds_one_copy_of_a_long_prompt() {
    // 100 requests x 4096-token prompt: needs a bigger slot count and context.
    let mut config = cfg(0);
    config.max_batch = 100;
    config.max_ctx = 4096 + 64;
    config.pool_bytes = (128 + 100 * 2 + 8) * 4096 * 4;
    let mut c = host_cache(config).unwrap();
    let prompt = toks(9, 4096);
    let first = prefilled(&mut c, &prompt);
    assert_eq!(c.publish(first.id).unwrap(), 128);
    let mut ids = vec![first.id];
    for i in 1..100u32 {
        let a = c.admit(&prompt).unwrap();
        assert_eq!(a.cached_tokens, 4096);
        c.append(a.id, &toks(1000 + i, 40)).unwrap();
        ids.push(a.id);
    }
    // first request's own suffix too
    c.append(first.id, &toks(1000, 40)).unwrap();
    let m = c.metrics();
    assert_eq!(
        m.pages_live,
        128 + 100 * 2,
        "one copy of the prompt plus 2 suffix pages each"
    );
    assert_eq!(m.pages_shared, 128);
    let mut full = prompt.clone();
    full.extend(toks(1099, 40));
    let last = *ids.last().unwrap();
    fill(&mut c, last, &full, 4096);
    verify(&c, last, &full);
    c.check_invariants();
}

#[test]
fn shared_pages_are_read_only_and_fork_copies_on_write() {
    let mut c = cache(16);
    let p = toks(4, 40);
    let a = c.admit(&[]).unwrap();
    c.append(a.id, &p).unwrap();
    fill(&mut c, a.id, &p, 0);
    let child = c.fork(a.id).unwrap();
    assert_eq!(c.metrics().pages_shared, 2);
    assert!(matches!(
        c.write_token(child, 0, false, 39, &[0; 128]),
        Err(Error::WrongState { .. })
    ));
    let mut pc = p.clone();
    pc.push(77);
    c.append(child, &[77]).unwrap();
    assert_eq!(c.metrics().counters.cow_copies, 1);
    fill(&mut c, child, &pc, 40);
    let mut pa = p.clone();
    pa.push(88);
    c.append(a.id, &[88]).unwrap();
    fill(&mut c, a.id, &pa, 40);
    verify(&c, a.id, &pa);
    verify(&c, child, &pc);
    c.check_invariants();
}

#[test]
fn unreferenced_prefix_pages_are_evicted_lru() {
    let mut c = cache(8);
    let old = toks(1, 64);
    let new = toks(2, 64);
    for p in [&old, &new] {
        let a = c.admit(p).unwrap();
        c.append(a.id, p).unwrap();
        // The KV of the prompt is written (prefill): say so before the free.
        c.publish(a.id).unwrap();
        c.free(a.id).unwrap();
    }
    assert_eq!(c.metrics().pages_cached, 4);
    // Reuse `new` so `old` is the least recently used.
    let a = c.admit(&new).unwrap();
    assert_eq!(a.cached_tokens, 64);
    c.free(a.id).unwrap();
    let b = c.admit(&[]).unwrap();
    c.append(b.id, &toks(3, 6 * 32)).unwrap(); // 6 pages: 4 free + 2 evicted
    assert_eq!(c.metrics().counters.evictions, 2);
    c.free(b.id).unwrap();
    assert_eq!(c.admit(&new).unwrap().cached_tokens, 64);
    assert_eq!(c.admit(&old).unwrap().cached_tokens, 0);
    c.check_invariants();
}

#[test]
fn swap_out_and_in_keeps_data() {
    let mut c = cache(8);
    let p = toks(5, 100);
    let a = c.admit(&[]).unwrap();
    c.append(a.id, &p).unwrap();
    fill(&mut c, a.id, &p, 0);
    let mut swap = MemSwap::default();
    c.swap_out(a.id, &mut swap).unwrap();
    assert_eq!(c.request_state(a.id).unwrap(), RequestState::Swapped);
    assert_eq!(swap.len(), 4 * 4);
    assert!(matches!(
        c.append(a.id, &[1]),
        Err(Error::WrongState { .. })
    ));
    // Someone else overwrites the pool meanwhile.
    let b = c.admit(&[]).unwrap();
    let q = toks(6, 200);
    c.append(b.id, &q).unwrap();
    fill(&mut c, b.id, &q, 0);
    c.free(b.id).unwrap();
    c.swap_in(a.id, &mut swap).unwrap();
    verify(&c, a.id, &p);
    assert!(swap.is_empty());
    c.check_invariants();
}

/// A request freed while swapped out leaves nothing in the swap store (review
/// finding: `free` dropped the request and the store kept its pages forever).
#[test]
fn freeing_a_swapped_out_request_drops_its_stored_pages() {
    let mut c = cache(8);
    let p = toks(5, 100);
    let a = c.admit(&[]).unwrap();
    c.append(a.id, &p).unwrap();
    fill(&mut c, a.id, &p, 0);
    let b = c.admit(&[]).unwrap();
    c.append(b.id, &p[..40]).unwrap();
    fill(&mut c, b.id, &p[..40], 0);
    let mut swap = MemSwap::default();
    c.swap_out(a.id, &mut swap).unwrap();
    c.swap_out(b.id, &mut swap).unwrap();
    let of_b = swap.pages_of(b.id);
    assert!(swap.pages_of(a.id) > 0 && of_b > 0);
    // `free` cannot reach the store: it refuses, and the request stays.
    assert!(matches!(c.free(a.id), Err(Error::WrongState { .. })));
    assert!(matches!(
        c.preempt_recompute(a.id),
        Err(Error::WrongState { .. })
    ));
    assert_eq!(c.request_state(a.id).unwrap(), RequestState::Swapped);
    c.free_swapped(a.id, &mut swap).unwrap();
    assert_eq!(swap.pages_of(a.id), 0);
    assert_eq!(
        swap.pages_of(b.id),
        of_b,
        "another request's pages went too"
    );
    assert_eq!(
        c.free_swapped(a.id, &mut swap),
        Err(Error::AlreadyFreed(a.id))
    );
    // The other one still swaps back in whole.
    c.swap_in(b.id, &mut swap).unwrap();
    verify(&c, b.id, &p[..40]);
    // free_swapped frees a live request like free.
    c.free_swapped(b.id, &mut swap).unwrap();
    assert!(swap.is_empty());
    assert_eq!(c.metrics().pages_live, 0);
    c.check_invariants();
}

#[test]
fn swap_in_shares_the_prompt_blocks_still_cached() {
    // A 96-token prompt (3 full blocks) plus 20 generated tokens: at swap-out the
    // prompt blocks go to the prefix cache; swap-in maps them back shared.
    let mut c = cache(12);
    let prompt = toks(9, 96);
    let a = prefilled(&mut c, &prompt);
    let mut all = prompt.clone();
    all.extend(toks(10, 20));
    c.append(a.id, &all[96..]).unwrap();
    fill(&mut c, a.id, &all, 96);
    let mut swap = MemSwap::default();
    c.swap_out(a.id, &mut swap).unwrap();
    assert_eq!(
        c.metrics().pages_cached,
        3,
        "prompt blocks kept in the prefix cache"
    );
    // A second request with the same prompt shares them meanwhile.
    let b = c.admit(&prompt).unwrap();
    assert_eq!(b.cached_tokens, 96);
    c.swap_in(a.id, &mut swap).unwrap();
    assert_eq!(c.metrics().counters.swap_in_shared_pages, 3);
    assert_eq!(
        c.metrics().pages_shared,
        3,
        "one copy of the prompt for both"
    );
    assert!(swap.is_empty(), "the source was told the swap-in is done");
    verify(&c, a.id, &all);
    // The shared blocks are read-only: the next append goes to the private page.
    c.append(a.id, &[7]).unwrap();
    all.push(7);
    fill(&mut c, a.id, &all, 116);
    verify(&c, a.id, &all);
    c.check_invariants();
    // Evicted meanwhile: everything comes back from the source.
    let mut c = cache(12);
    let a = prefilled(&mut c, &prompt);
    c.swap_out(a.id, &mut swap).unwrap();
    // 12 pages of other requests in a 12-page pool evict the 3 cached blocks.
    let other = toks(11, 8 * 32);
    let o1 = c.admit(&[]).unwrap();
    c.append(o1.id, &other).unwrap();
    let o2 = c.admit(&[]).unwrap();
    c.append(o2.id, &other[..4 * 32]).unwrap();
    c.free(o1.id).unwrap();
    c.free(o2.id).unwrap();
    assert_eq!(
        c.metrics().pages_cached,
        0,
        "the prompt blocks were evicted"
    );
    c.swap_in(a.id, &mut swap).unwrap();
    assert_eq!(c.metrics().counters.swap_in_shared_pages, 0);
    verify(&c, a.id, &prompt);
    c.check_invariants();
}

#[test]
fn swap_in_from_a_failing_source_changes_nothing() {
    let mut c = cache(8);
    let a = c.admit(&[]).unwrap();
    c.append(a.id, &toks(5, 50)).unwrap();
    let mut swap = MemSwap::default();
    c.swap_out(a.id, &mut swap).unwrap();
    let mut empty = MemSwap::default();
    assert!(matches!(c.swap_in(a.id, &mut empty), Err(Error::Swap(_))));
    assert_eq!(c.request_state(a.id).unwrap(), RequestState::Swapped);
    c.check_invariants();
    c.swap_in(a.id, &mut swap).unwrap();
    c.check_invariants();
}

#[test]
fn trim_punches_free_pages_and_they_come_back_zeroed() {
    let mut c = cache(8);
    let p = toks(5, 64);
    let a = c.admit(&[]).unwrap();
    c.append(a.id, &p).unwrap();
    fill(&mut c, a.id, &p, 0);
    c.free(a.id).unwrap();
    // Two spare pages stay in the freed slot; the six free ones are punched.
    assert_eq!(c.trim().unwrap(), 6);
    assert_eq!(c.trim().unwrap(), 0, "already released");
    let b = c.admit(&[]).unwrap();
    c.append(b.id, &toks(6, 8 * 32)).unwrap();
    let mut buf = vec![0u8; 128];
    let zero_pages = (0..8)
        .filter(|page| {
            c.read_token(b.id, 0, false, page * 32, &mut buf).unwrap();
            buf.iter().all(|&x| x == 0)
        })
        .count();
    assert_eq!(zero_pages, 6, "punched pages read back as zero");
    c.free(b.id).unwrap();
    assert_eq!(c.metrics().counters.released_pages, 6);
    c.check_invariants();
}

#[test]
fn reclaim_restores_the_high_watermark() {
    let mut config = cfg(8);
    config.low_watermark = 4;
    config.high_watermark = 6;
    let mut c = host_cache(config).unwrap();
    let a = c.admit(&[]).unwrap();
    c.append(a.id, &toks(1, 7 * 32)).unwrap();
    c.free(a.id).unwrap();
    assert_eq!(c.metrics().pages_free, 1);
    assert_eq!(c.reclaim().unwrap(), 5);
    assert_eq!(c.metrics().pages_free, 6);
    assert_eq!(c.reclaim().unwrap(), 0);
    c.check_invariants();
}

#[test]
fn page_tables_name_the_mapped_pages() {
    let mut c = cache(16);
    let a = c.admit(&[]).unwrap();
    c.append(a.id, &toks(1, 70)).unwrap();
    let b = c.admit(&[]).unwrap();
    c.append(b.id, &toks(2, 32)).unwrap();
    let pt = c.page_table(&[a.id, b.id]).unwrap();
    assert_eq!(pt.indptr, vec![0, 3, 4]);
    assert_eq!(pt.last_page_len, vec![6, 32]);
    let bt = c.block_table(&[a.id, b.id]).unwrap();
    assert_eq!(bt.width, 8);
    assert_eq!(
        &bt.data[..4],
        &[pt.indices[0], pt.indices[1], pt.indices[2], -1]
    );
    assert_eq!(bt.data[8], pt.indices[3]);
    assert!(
        pt.indices[..3].windows(2).all(|w| w[1] == w[0] + 1),
        "file-contiguous: {:?}",
        pt.indices
    );
}

#[test]
fn two_mib_pages_work() {
    let config = Config {
        layers: 1,
        kv_heads: 8,
        head_dim: 128,
        elem_bytes: 2,
        max_batch: 2,
        max_ctx: 2048,
        page_size: 2 << 20,
        pool_bytes: 4 * (2 << 20) * 2,
        low_watermark: 0,
        high_watermark: 0,
        try_huge: true,
        layout: Layout::PerTensor,
    };
    let mut c = host_cache(config).unwrap();
    assert_eq!(c.geometry().tokens_per_page, 1024);
    assert_eq!(c.backend().reservation().0 % (2 << 20), 0, "2 MiB aligned");
    let a = c.admit(&[]).unwrap();
    c.append(a.id, &toks(1, 1500)).unwrap();
    let data = vec![0xA5u8; 2048];
    c.write_token(a.id, 0, true, 1499, &data).unwrap();
    let mut out = vec![0u8; 2048];
    c.read_token(a.id, 0, true, 1499, &mut out).unwrap();
    assert_eq!(out, data);
    c.check_invariants();
}

#[test]
fn bad_configs_are_rejected() {
    let mut bad = cfg(4);
    bad.page_size = 5000;
    assert!(matches!(host_cache(bad).unwrap_err(), Error::Config(_)));
    let mut bad = cfg(4);
    bad.head_dim = 3;
    assert!(matches!(host_cache(bad).unwrap_err(), Error::Config(_)));
    let mut bad = cfg(4);
    bad.pool_bytes = 100;
    assert!(matches!(host_cache(bad).unwrap_err(), Error::Config(_)));
    // 2 * layers wrapped to 0 tensors and divided by zero (release) or
    // overflowed (debug); any layer count past the 64 TiB reservation is refused.
    for layers in [usize::MAX / 2 + 1, usize::MAX, 1 << 40] {
        let mut bad = cfg(4);
        bad.layers = layers;
        assert!(
            matches!(bad.geometry().unwrap_err(), Error::Config(_)),
            "{layers}"
        );
    }
}

#[test]
fn mapping_worker_maps_ahead_of_decode() {
    use engram_kvcache::worker::SharedCache;
    let c = cache(32);
    let shared = SharedCache::new(c, 64);
    let id = {
        let mut g = shared.lock();
        let a = g.admit(&[]).unwrap();
        g.append(a.id, &toks(1, 1)).unwrap();
        a.id
    };
    // Wait for the worker after each kick, then decode a page's worth of tokens.
    for step in 0..200 {
        shared.kick();
        // The scheduler would run the model here; give the worker up to 10 s.
        let t = std::time::Instant::now();
        while shared.lock().metrics().pages_spare == 0 && t.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        shared.lock().append(id, &[step]).unwrap_or_else(|e| {
            assert!(matches!(e, Error::ContextTooLong { .. }));
        });
    }
    let g = shared.lock();
    let m = g.metrics();
    assert!(m.counters.prefetched_pages >= 6, "{m}");
    assert_eq!(
        m.counters.worker_stalls, 1,
        "only the first append mapped by itself: {m}"
    );
    g.check_invariants();
}

#[test]
fn a_prompt_ending_inside_a_cached_block_shares_it_and_copies_on_write() {
    let mut c = cache(16);
    let p = toks(8, 64);
    let a = prefilled(&mut c, &p);
    c.publish(a.id).unwrap();
    // Same first 40 tokens, then different ones.
    let mut q = p[..40].to_vec();
    q.extend(toks(99, 10));
    let b = c.admit(&q).unwrap();
    assert_eq!(
        b.cached_tokens, 40,
        "one whole block plus 8 tokens of the next"
    );
    assert_eq!(c.metrics().pages_shared, 2);
    verify(&c, b.id, &q[..40]);
    c.append(b.id, &q[40..]).unwrap();
    assert_eq!(c.metrics().counters.cow_copies, 1);
    fill(&mut c, b.id, &q, 40);
    verify(&c, b.id, &q);
    verify(&c, a.id, &p);
    c.free(a.id).unwrap();
    // The original block is still cached whole for the next request.
    let d = c.admit(&p).unwrap();
    assert_eq!(d.cached_tokens, 64);
    verify(&c, d.id, &p);
    c.check_invariants();
}

/// A page count whose byte length overflows is a range error, not a wrapped
/// small length that passes the check and then indexes out of bounds.
#[test]
fn host_backend_refuses_page_counts_that_overflow() {
    let mut b = HostBackend::new(4096, 4, 16 * 4096, false).unwrap();
    for n in [(1usize << 52) + 1, usize::MAX] {
        assert!(b.unmap(0, n).is_err(), "unmap(0, {n})");
        assert!(b.map(0, 0, n).is_err(), "map(0, 0, {n})");
    }
    b.map(0, 0, 1).unwrap();
    b.unmap(0, 1).unwrap();
}

/// A lookahead past any context maps the rest of the slot, not nothing (the
/// sum with the request's length wrapped).
#[test]
fn prefetch_with_an_unbounded_lookahead_maps_the_rest_of_the_slot() {
    let mut c = cache(32);
    let a = c.admit(&[]).unwrap();
    c.append(a.id, &toks(1, 1)).unwrap();
    assert!(c.prefetch(usize::MAX).unwrap() > 0);
}

/// A request preempted, swapped out or freed right after an append (before its
/// step computed that KV) must not publish those blocks: their pages may hold
/// a previous request's data (review finding: a later request with the same
/// prompt got 64 cached tokens that read another request's bytes).
#[test]
fn blocks_appended_but_never_computed_are_not_published() {
    for how in ["free", "preempt", "swap"] {
        let mut c = cache(16);
        // A first request leaves written pages behind (spare in its slot).
        let a = c.admit(&toks(9, 64)).unwrap();
        let pa = toks(9, 64);
        c.append(a.id, &pa).unwrap();
        fill(&mut c, a.id, &pa, 0);
        c.free(a.id).unwrap();
        // B appends its prompt and is dropped before computing it.
        let pb = toks(4, 64);
        let b = c.admit(&pb).unwrap();
        c.append(b.id, &pb).unwrap();
        let mut swap = MemSwap::default();
        match how {
            "free" => c.free(b.id).unwrap(),
            "preempt" => drop(c.preempt_recompute(b.id).unwrap()),
            _ => c.swap_out(b.id, &mut swap).unwrap(),
        }
        let again = c.admit(&pb).unwrap();
        assert_eq!(
            again.cached_tokens, 0,
            "{how}: blocks never computed were published"
        );
        // Once computed (the next append, or publish), they are shared.
        c.append(again.id, &pb).unwrap();
        fill(&mut c, again.id, &pb, 0);
        c.append(again.id, &[1]).unwrap();
        c.free(again.id).unwrap();
        let third = c.admit(&pb).unwrap();
        assert_eq!(third.cached_tokens, 64, "{how}");
        verify(&c, third.id, &pb);
        c.check_invariants();
    }
}

/// A pool bigger than the memory available is an error up front, not an OOM
/// kill while it is committed (review finding: a 1 GiB pool in a 512 MiB
/// cgroup was killed).
#[test]
fn a_pool_bigger_than_memory_is_an_error() {
    let pages = (1usize << 40) / 4096; // 1 TiB
    match HostBackend::new(4096, pages, 1 << 20, false) {
        Err(engram_kvcache::BackendError::OutOfMemory { wanted, available }) => {
            assert_eq!(wanted, 1 << 40);
            assert!(available < wanted);
        }
        Err(e) => panic!("expected OutOfMemory, got {e}"),
        Ok(_) => panic!("a 1 TiB pool was accepted"),
    }
}

/// A real 64-bit collision of the unkeyed chain hash (built by inverting it
/// step by step, a 32-bit search): `block_hash(0, COLL) == block_hash(0,
/// toks(1, 32))`. Review findings: swap_in mapped the other prompt's block by
/// hash alone, and a collision carried down the chain through the parent hash.
const COLL: [u32; 32] = [
    15838, 15839, 15836, 15837, 15834, 15835, 15832, 15833, 15830, 15831, 15828, 15829, 15826,
    15827, 15824, 15825, 15822, 15823, 15820, 15821, 15818, 15819, 15816, 15817, 15814, 15815,
    15812, 15813, 15810, 15811, 67445681, 4122606995,
];

/// Admit `prompt`, append and write what was not cached, and publish it (the
/// KV is computed): an engine's prefill.
fn prefill(c: &mut KvCache<HostBackend>, prompt: &[u32]) -> Admission {
    let a = c.admit(prompt).unwrap();
    c.append(a.id, &prompt[a.cached_tokens..]).unwrap();
    fill(c, a.id, prompt, a.cached_tokens);
    c.publish(a.id).unwrap();
    a
}

#[test]
fn a_real_hash_collision_never_shares_kv() {
    let a = toks(1, 32);
    assert_eq!(
        engram_kvcache::block_hash(0, &a),
        engram_kvcache::block_hash(0, &COLL)
    );
    // Admission and swap-in of the colliding prompt.
    let mut c = cache(16);
    let ra = prefill(&mut c, &a);
    c.free(ra.id).unwrap();
    let x = COLL.to_vec();
    let rx = prefill(&mut c, &x);
    assert_eq!(rx.cached_tokens, 0);
    let mut swap = MemSwap::default();
    c.swap_out(rx.id, &mut swap).unwrap();
    c.swap_in(rx.id, &mut swap).unwrap();
    verify(&c, rx.id, &x);
    c.check_invariants();
    // A block published after the colliding one does not chain to `a`.
    let mut c = cache(16);
    let ra = prefill(&mut c, &a);
    c.free(ra.id).unwrap();
    let tail = toks(5, 32);
    let mut x = COLL.to_vec();
    x.extend_from_slice(&tail);
    let rx = prefill(&mut c, &x);
    c.free(rx.id).unwrap();
    let mut v = a.clone();
    v.extend_from_slice(&tail);
    let rv = c.admit(&v).unwrap();
    assert_eq!(rv.cached_tokens, 32, "only a's own block is a prefix of v");
    c.check_invariants();
}

/// A sink that stores into a `MemSwap` and fails after `left` pages.
struct Failing {
    store: MemSwap,
    left: usize,
}

impl SwapSink for Failing {
    fn put(&mut self, id: u64, page: usize, tensor: usize, data: &[u8]) -> Result<(), String> {
        if self.left == 0 {
            return Err("disk full".into());
        }
        self.left -= 1;
        self.store.put(id, page, tensor, data)
    }
    fn abandon(&mut self, id: u64) {
        self.store.abandon(id);
    }
}

/// A swap-out whose sink fails part-way leaves the request live with its
/// data, and the sink is told to drop the pages it stored (review finding,
/// 2026-11-25: they stayed in the store for good).
#[test]
fn a_failed_swap_out_leaves_nothing_in_the_store() {
    let mut c = cache(8);
    let p = toks(5, 100);
    let a = c.admit(&[]).unwrap();
    c.append(a.id, &p).unwrap();
    fill(&mut c, a.id, &p, 0);
    let mut sink = Failing {
        store: MemSwap::default(),
        left: 3,
    };
    assert!(matches!(c.swap_out(a.id, &mut sink), Err(Error::Swap(_))));
    assert!(sink.store.is_empty(), "{} pages left", sink.store.len());
    assert!(matches!(
        c.request_state(a.id).unwrap(),
        RequestState::Live { .. }
    ));
    verify(&c, a.id, &p);
}
