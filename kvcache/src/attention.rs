//! Reference CPU attention for one decode step (multi-head, grouped KV heads, f32),
//! three ways: over a dense copy, over the contiguous virtual tensors (what a
//! vAttention-style kernel does: plain strided indexing, no page table), and through
//! the exported FlashInfer-style page table over the pool (what a paged kernel does).
//! All three run the same arithmetic in the same order, so equal inputs give bitwise
//! equal outputs: the tests use that to prove kernels need no paging.

use crate::backend::Backend;
use crate::cache::{KvCache, PageTable, ReqId};
use crate::error::Error;

/// Shape of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Query heads (a multiple of `kv_heads`).
    pub heads: usize,
    /// KV heads.
    pub kv_heads: usize,
    /// Elements per head.
    pub head_dim: usize,
}

/// `out[h] = softmax(q[h] . K[:, h/g]^T / sqrt(d)) V[:, h/g]` for `len` positions, where
/// `kv(pos, kv_head, elem, is_v)` reads one element.
fn attend(
    shape: Shape,
    len: usize,
    q: &[f32],
    kv: impl Fn(usize, usize, usize, bool) -> f32,
) -> Vec<f32> {
    let Shape {
        heads,
        kv_heads,
        head_dim: d,
    } = shape;
    let group = heads / kv_heads;
    let scale = 1.0 / (d as f32).sqrt();
    let mut out = vec![0.0f32; heads * d];
    let mut scores = vec![0.0f32; len];
    for h in 0..heads {
        let kvh = h / group;
        let qh = &q[h * d..(h + 1) * d];
        let mut max = f32::NEG_INFINITY;
        for (pos, s) in scores.iter_mut().enumerate() {
            let mut dot = 0.0f32;
            for (e, qe) in qh.iter().enumerate() {
                dot += qe * kv(pos, kvh, e, false);
            }
            *s = dot * scale;
            max = max.max(*s);
        }
        let mut sum = 0.0f32;
        for s in &mut scores {
            *s = (*s - max).exp();
            sum += *s;
        }
        let o = &mut out[h * d..(h + 1) * d];
        for (pos, s) in scores.iter().enumerate() {
            let w = s / sum;
            for (e, oe) in o.iter_mut().enumerate() {
                *oe += w * kv(pos, kvh, e, true);
            }
        }
    }
    out
}

fn check_shape<B: Backend>(cache: &KvCache<B>, shape: Shape, q: &[f32]) -> Result<(), Error> {
    let c = cache.config();
    if c.elem_bytes != 4
        || shape.kv_heads != c.kv_heads
        || shape.head_dim != c.head_dim
        || shape.heads == 0
        || shape.heads % shape.kv_heads != 0
        || q.len() != shape.heads * shape.head_dim
    {
        return Err(Error::Config(
            "attention needs f32 elements and a matching shape",
        ));
    }
    if !cache.backend().caps().host_accessible {
        return Err(Error::Config("attention reads memory the CPU cannot reach"));
    }
    Ok(())
}

/// K and V of request `id`'s layer `layer` as dense `[len, kv_heads, head_dim]` copies.
pub fn gather_dense<B: Backend>(
    cache: &KvCache<B>,
    id: ReqId,
    layer: usize,
) -> Result<(Vec<f32>, Vec<f32>), Error> {
    let len = cache.len(id)?;
    let tb = cache.geometry().kv_bytes;
    let mut buf = vec![0u8; tb];
    let mut k = Vec::with_capacity(len * tb / 4);
    let mut v = Vec::with_capacity(len * tb / 4);
    for pos in 0..len {
        for (is_v, dst) in [(false, &mut k), (true, &mut v)] {
            cache.read_token(id, layer, is_v, pos, &mut buf)?;
            dst.extend(
                buf.chunks_exact(4)
                    .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
    }
    Ok((k, v))
}

/// Attention over dense `[len, kv_heads, head_dim]` K and V.
pub fn attend_dense(shape: Shape, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
    let tok = shape.kv_heads * shape.head_dim;
    let len = k.len() / tok;
    attend(shape, len, q, |pos, h, e, is_v| {
        let i = pos * tok + h * shape.head_dim + e;
        if is_v { v[i] } else { k[i] }
    })
}

/// Attention reading K/V straight from the contiguous virtual tensors with strides.
pub fn attend_contiguous<B: Backend>(
    cache: &KvCache<B>,
    id: ReqId,
    layer: usize,
    shape: Shape,
    q: &[f32],
) -> Result<Vec<f32>, Error> {
    check_shape(cache, shape, q)?;
    let crate::RequestState::Live { slot } = cache.request_state(id)? else {
        return Err(Error::WrongState {
            id,
            state: "swapped out",
        });
    };
    let len = cache.len(id)?;
    let st = cache.strides();
    let kb = cache.tensor_ptr(layer, false)? as usize + slot * st.batch;
    let vb = cache.tensor_ptr(layer, true)? as usize + slot * st.batch;
    Ok(attend(shape, len, q, |pos, h, e, is_v| {
        let base = if is_v { vb } else { kb };
        // SAFETY: pos < len, h < kv_heads, e < head_dim: inside the request's pages,
        // which the borrowed cache keeps mapped.
        unsafe { read::f32_at(base + pos * st.token + h * st.head + e * st.elem) }
    }))
}

/// Attention for batch entry `i` of `table`, reading pages from the pool view (the
/// paged layout `[pages, tokens_per_page, kv_heads, head_dim]` per tensor, with the
/// token stride of [`Strides`](crate::Strides)).
pub fn attend_paged<B: Backend>(
    cache: &KvCache<B>,
    table: &PageTable,
    i: usize,
    layer: usize,
    shape: Shape,
    q: &[f32],
) -> Result<Vec<f32>, Error> {
    check_shape(cache, shape, q)?;
    let geo = *cache.geometry();
    let (Some(&lo), Some(&hi), Some(&last)) = (
        table.indptr.get(i),
        table.indptr.get(i + 1),
        table.last_page_len.get(i),
    ) else {
        return Err(Error::OutOfBounds);
    };
    // A malformed table is the caller's error, not a panic (review finding,
    // 2026-11-25: indptr out of order or past `indices`, or a last page
    // holding more tokens than a page, indexed out of bounds).
    let (Ok(lo), Ok(hi)) = (usize::try_from(lo), usize::try_from(hi)) else {
        return Err(Error::OutOfBounds);
    };
    if lo > hi || hi > table.indices.len() {
        return Err(Error::OutOfBounds);
    }
    let pages = &table.indices[lo..hi];
    if pages.iter().any(|&p| p < 0 || p as usize >= geo.groups) {
        return Err(Error::OutOfBounds);
    }
    // An empty request has no last page (0); any other's last page holds
    // 1..=tokens_per_page tokens.
    let last_ok = if pages.is_empty() {
        last == 0
    } else {
        last >= 1 && last as usize <= geo.tokens_per_page
    };
    if !last_ok {
        return Err(Error::OutOfBounds);
    }
    let len = if pages.is_empty() {
        0
    } else {
        (pages.len() - 1) * geo.tokens_per_page + last as usize
    };
    let kb = cache
        .pool_tensor_ptr(layer, false)
        .ok_or(Error::OutOfBounds)? as usize;
    let vb = cache
        .pool_tensor_ptr(layer, true)
        .ok_or(Error::OutOfBounds)? as usize;
    let st = cache.strides();
    Ok(attend(shape, len, q, |pos, h, e, is_v| {
        let base = if is_v { vb } else { kb };
        let page = pages[pos / geo.tokens_per_page] as usize;
        // SAFETY: page < groups (checked above): inside this tensor's region of the
        // pool view, which lives as long as the borrowed cache.
        unsafe {
            read::f32_at(
                base + page * geo.page_size
                    + (pos % geo.tokens_per_page) * st.token
                    + h * st.head
                    + e * st.elem,
            )
        }
    }))
}

/// The one raw read of this module.
mod read {
    /// Read an f32 at `addr`.
    ///
    /// # Safety
    /// `addr..addr+4` lies in mapped, readable memory that stays mapped for the call:
    /// a live request's position below its length in the virtual tensors, or a page
    /// of the pool view named by a bounds-checked page table entry.
    pub(super) unsafe fn f32_at(addr: usize) -> f32 {
        // SAFETY: the caller guarantees the 4 bytes are mapped and readable; f32 has
        // no invalid bit patterns and read_unaligned needs no alignment.
        unsafe { (addr as *const f32).read_unaligned() }
    }
}
