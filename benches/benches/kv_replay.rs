//! Serving-trace replay (issue 3): engram-kvcache against the two baselines on the
//! same continuous-batching schedule, as criterion throughput (target calls/s).
//!
//! Trace: the first 100 requests of `../shared/traces/mooncake/conversation_trace.jsonl`
//! (real arrival times, lengths and prefix block hashes), or a synthetic Poisson
//! trace of 100 requests (half share a 4-block prompt) when the file is absent.
//! Shape: Llama-3-8B heads (8 KV heads, dim 128, 2 B) scaled to 4 layers, 2 GiB
//! pool, 32 slots, 32k max context, as `engram kv replay`'s defaults. No mapping
//! worker (lookahead 0), so every run is deterministic and maps inside the step.
//!
//! IDs `replay/<target>`:
//! - `kvcache_per_tensor`: host memfd backend, 8 tensors, 64 KiB pages (32 tokens);
//! - `kvcache_token_major`: host memfd backend, one token-major tensor, 512 KiB
//!   pages (the same 32 tokens);
//! - `kvcache_bookkeeping`: the per-tensor cache on the accounting-only backend;
//! - `static_reservation`: every request reserves max context up front;
//! - `vllm_blocks`: 16-token blocks with block-hash prefix caching, same capacity.
//!
//! The baselines live in `engram_kvcache::trace` because `engram kv replay` prints
//! the same comparison. Building a cache (committing the pool) is setup, not timed.
//!
//! Run: `cargo bench -p engram-benches --bench kv_replay`.

use std::path::Path;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use engram_kvcache::backend::null::NullBackend;
use engram_kvcache::trace::{
    self, BlockBaseline, CacheTarget, ReplayOptions, StaticBaseline, Target, TraceRequest,
};
use engram_kvcache::{Config, KvCache, Layout, host_cache};

const LIMIT: usize = 100;
const MAX_CTX: usize = 32_768;
const MAX_BATCH: usize = 32;
const POOL: usize = 2 << 30;

/// Tokens per page in both layouts (64 KiB per-tensor pages, 512 KiB token-major).
const TOKENS_PER_PAGE: usize = 32;

fn config(layout: Layout) -> Config {
    let mut c = Config {
        layers: 4,
        kv_heads: 8,
        head_dim: 128,
        elem_bytes: 2,
        max_batch: MAX_BATCH,
        max_ctx: MAX_CTX,
        page_size: 0,
        pool_bytes: POOL,
        low_watermark: 0,
        high_watermark: 0,
        try_huge: false,
        layout,
    };
    c.page_size = c.page_size_for(TOKENS_PER_PAGE).expect("page size");
    c
}

fn requests() -> Vec<TraceRequest> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/traces/mooncake/conversation_trace.jsonl");
    match std::fs::read_to_string(&p) {
        Ok(text) => trace::parse(&text).expect("parsing the Mooncake trace"),
        Err(_) => trace::poisson(LIMIT, 4.0, 4096, 256, 0.5, 4, 42),
    }
}

fn options() -> ReplayOptions {
    let geo = config(Layout::PerTensor).geometry().expect("shape");
    ReplayOptions {
        step_ms: 20.0,
        limit: LIMIT,
        max_ctx: MAX_CTX,
        max_batch: MAX_BATCH,
        token_bytes_all: geo.token_bytes * geo.tensors,
    }
}

fn run(t: &mut dyn Target, reqs: &[TraceRequest], opt: &ReplayOptions) -> u64 {
    trace::replay(t, reqs, opt, &mut |_, _| {})
        .expect("replay")
        .ops
}

type Build = Box<dyn Fn() -> Box<dyn Target>>;

fn targets(opt: &ReplayOptions) -> Vec<(&'static str, Build)> {
    let tb = opt.token_bytes_all;
    vec![
        (
            "kvcache_per_tensor",
            Box::new(|| {
                let c = host_cache(config(Layout::PerTensor)).expect("host cache");
                Box::new(CacheTarget::new(c, 0)) as Box<dyn Target>
            }),
        ),
        (
            "kvcache_token_major",
            Box::new(|| {
                let c = host_cache(config(Layout::TokenMajor)).expect("host cache");
                Box::new(CacheTarget::new(c, 0)) as Box<dyn Target>
            }),
        ),
        (
            "kvcache_bookkeeping",
            Box::new(|| {
                let cfg = config(Layout::PerTensor);
                let geo = cfg.geometry().expect("shape");
                let b =
                    NullBackend::new(geo.page_size, geo.tensors * geo.groups, geo.reserve_bytes);
                let c = KvCache::new(cfg, b).expect("null cache");
                Box::new(CacheTarget::new(c, 0)) as Box<dyn Target>
            }),
        ),
        (
            "static_reservation",
            Box::new(move || Box::new(StaticBaseline::new(POOL, MAX_CTX, tb)) as Box<dyn Target>),
        ),
        (
            "vllm_blocks",
            Box::new(move || Box::new(BlockBaseline::new(POOL, 16, tb)) as Box<dyn Target>),
        ),
    ]
}

fn bench_replay(c: &mut Criterion) {
    let reqs = requests();
    let opt = options();
    let mut g = c.benchmark_group("replay");
    g.sample_size(10);
    for (name, build) in targets(&opt) {
        // Calls per replay, from one untimed run (the schedule is deterministic).
        let ops = run(build().as_mut(), &reqs, &opt);
        g.throughput(Throughput::Elements(ops));
        g.bench_function(name, |b| {
            b.iter_batched(
                &build,
                |mut t| run(t.as_mut(), &reqs, &opt),
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench_replay);
criterion_main!(benches);
