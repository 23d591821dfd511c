//! engram-kvcache: demand-paged KV-cache tensors in contiguous virtual memory.
//!
//! A model's KV cache is one contiguous virtual tensor per layer and K/V, shaped
//! `[max_batch, max_ctx, kv_heads, head_dim]`; attention kernels index it like a
//! dense tensor. Physical pages come from a pool and are mapped into a request's
//! slot as it grows (vAttention-style), through a [`backend::Backend`]: host memfd
//! pages (always built, what every test uses) or CUDA VMM (feature `cuda`).
//!
//! On top of that: deferred reclamation (a freed slot keeps its private pages for
//! the next request), prefix sharing by a page-level hash chain with reference
//! counts, copy-on-write of shared partial pages, LRU eviction of unreferenced
//! cached pages, swap out/in to a caller's sink, a mapping worker that maps ahead
//! of decode, and exported FlashInfer/vLLM page tables for kernels that want pages.
//!
//! Main types: [`KvCache`] (single-threaded core), [`worker::SharedCache`] (the core
//! behind a lock plus the mapping worker), [`Config`], [`Metrics`].

pub mod attention;
pub mod backend;
mod cache;
pub mod config;
pub mod error;
pub mod metrics;
pub mod signal;
mod sync;
pub mod trace;
pub mod worker;

pub use cache::{
    Admission, BlockTable, KvCache, MemSwap, PageTable, ReqId, RequestState, Strides, SwapSink,
    SwapSource, block_hash,
};
pub use config::{Config, Geometry, Layout};
pub use error::{BackendError, Error};
pub use metrics::Metrics;

use backend::host::HostBackend;

/// A cache on the host backend, sized by `cfg`.
pub fn host_cache(cfg: Config) -> Result<KvCache<HostBackend>, Error> {
    let geo = cfg.geometry()?;
    let backend = HostBackend::new(
        geo.page_size,
        geo.tensors * geo.groups,
        geo.reserve_bytes,
        cfg.try_huge,
    )?;
    KvCache::new(cfg, backend)
}
