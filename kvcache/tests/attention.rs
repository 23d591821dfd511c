//! Kernels need no paging: attention over the contiguous virtual tensors, through
//! the exported page table, and over a dense copy give the same output, also for
//! requests sharing prefix pages.

use engram_kvcache::attention::{
    Shape, attend_contiguous, attend_dense, attend_paged, gather_dense,
};
use engram_kvcache::backend::host::HostBackend;
use engram_kvcache::{Config, KvCache, Layout, host_cache};

const HEADS: usize = 8;
const KVH: usize = 2;
const D: usize = 16;

fn cache(layout: Layout) -> KvCache<HostBackend> {
    host_cache(Config {
        layers: 2,
        kv_heads: KVH,
        head_dim: D,
        elem_bytes: 4,
        max_batch: 4,
        max_ctx: 512,
        page_size: 4096,
        pool_bytes: 64 * 4096 * 4,
        low_watermark: 0,
        high_watermark: 0,
        try_huge: false,
        layout,
    })
    .unwrap()
}

fn value(tok: u32, pos: usize, layer: usize, v: bool, i: usize) -> f32 {
    let x = (tok as usize * 131 + pos * 17 + layer * 7 + usize::from(v) * 3 + i * 11) % 1000;
    x as f32 / 500.0 - 1.0
}

fn fill(c: &mut KvCache<HostBackend>, id: u64, tokens: &[u32], from: usize) {
    for (pos, &t) in tokens.iter().enumerate().skip(from) {
        for layer in 0..2 {
            for v in [false, true] {
                let bytes: Vec<u8> = (0..KVH * D)
                    .flat_map(|i| value(t, pos, layer, v, i).to_ne_bytes())
                    .collect();
                c.write_token(id, layer, v, pos, &bytes).unwrap();
            }
        }
    }
}

fn check_all_agree(c: &KvCache<HostBackend>, ids: &[u64]) {
    let shape = Shape {
        heads: HEADS,
        kv_heads: KVH,
        head_dim: D,
    };
    let table = c.page_table(ids).unwrap();
    for (i, &id) in ids.iter().enumerate() {
        for layer in 0..2 {
            let q: Vec<f32> = (0..HEADS * D)
                .map(|k| ((k * 37 + i) % 19) as f32 / 9.0 - 1.0)
                .collect();
            let (k, v) = gather_dense(c, id, layer).unwrap();
            assert_eq!(k.len(), c.len(id).unwrap() * KVH * D);
            let dense = attend_dense(shape, &q, &k, &v);
            let contiguous = attend_contiguous(c, id, layer, shape, &q).unwrap();
            let paged = attend_paged(c, &table, i, layer, shape, &q).unwrap();
            assert_eq!(
                contiguous, dense,
                "contiguous tensors vs dense copy, request {id}"
            );
            assert_eq!(paged, dense, "page table vs dense copy, request {id}");
            assert!(dense.iter().all(|x| x.is_finite()));
        }
    }
}

#[test]
fn contiguous_paged_and_dense_agree() {
    all_agree(Layout::PerTensor);
}

#[test]
fn token_major_contiguous_paged_and_dense_agree() {
    all_agree(Layout::TokenMajor);
}

fn all_agree(layout: Layout) {
    let mut c = cache(layout);
    let mut ids = Vec::new();
    for (seed, n) in [(1u32, 1usize), (2, 31), (3, 32), (4, 200)] {
        let t: Vec<u32> = (0..n as u32).map(|i| seed * 1000 + i).collect();
        let a = c.admit(&[]).unwrap();
        c.append(a.id, &t).unwrap();
        fill(&mut c, a.id, &t, 0);
        ids.push(a.id);
    }
    check_all_agree(&c, &ids);
}

#[test]
fn agree_with_shared_prefix_pages_and_copy_on_write() {
    agree_when_shared(Layout::PerTensor);
}

#[test]
fn token_major_agrees_with_shared_prefix_pages_and_copy_on_write() {
    agree_when_shared(Layout::TokenMajor);
}

fn agree_when_shared(layout: Layout) {
    let mut c = cache(layout);
    let prompt: Vec<u32> = (0..100).collect();
    let a = c.admit(&prompt).unwrap();
    c.append(a.id, &prompt).unwrap();
    fill(&mut c, a.id, &prompt, 0);
    c.publish(a.id).unwrap();
    let mut ids = vec![a.id];
    for s in 0..2u32 {
        let b = c.admit(&prompt).unwrap();
        assert_eq!(b.cached_tokens, 96);
        let mut t = prompt.clone();
        t.extend((0..50).map(|i| 5000 + s * 100 + i));
        c.append(b.id, &t[96..]).unwrap();
        fill(&mut c, b.id, &t, 96);
        ids.push(b.id);
    }
    // A fork shares the partial last page too; its first append copies it.
    let f = c.fork(ids[2]).unwrap();
    c.append(f, &[9999]).unwrap();
    let n = c.len(f).unwrap();
    let mut t: Vec<u32> = prompt.clone();
    t.extend((0..50).map(|i| 5100 + i));
    t.push(9999);
    fill(&mut c, f, &t, n - 1);
    ids.push(f);
    assert!(c.metrics().pages_shared >= 3);
    check_all_agree(&c, &ids);
    c.check_invariants();
}

/// A malformed page table from the caller is an error, not a panic (review
/// finding, 2026-11-25): a last page holding more tokens than a page, a last
/// page of 0 tokens, indptr out of order or past the indices.
#[test]
fn a_malformed_page_table_is_an_error() {
    let mut c = cache(Layout::PerTensor);
    let tokens: Vec<u32> = (0..40).collect();
    let a = c.admit(&tokens).unwrap();
    c.append(a.id, &tokens[a.cached_tokens..]).unwrap();
    fill(&mut c, a.id, &tokens, 0);
    let shape = Shape {
        heads: HEADS,
        kv_heads: KVH,
        head_dim: D,
    };
    let q = vec![0.5f32; HEADS * D];
    let good = c.page_table(&[a.id]).unwrap();
    assert!(attend_paged(&c, &good, 0, 0, shape, &q).is_ok());
    let per_page = c.geometry().tokens_per_page as i32;
    let mut bad = good.clone();
    bad.last_page_len[0] = per_page + 1;
    assert!(attend_paged(&c, &bad, 0, 0, shape, &q).is_err());
    let mut bad = good.clone();
    bad.last_page_len[0] = 0;
    assert!(attend_paged(&c, &bad, 0, 0, shape, &q).is_err());
    let mut bad = good.clone();
    bad.indptr = vec![0, bad.indices.len() as i32 + 3];
    assert!(attend_paged(&c, &bad, 0, 0, shape, &q).is_err());
    let mut bad = good.clone();
    bad.indptr = vec![1, 0];
    assert!(attend_paged(&c, &bad, 0, 0, shape, &q).is_err());
}
