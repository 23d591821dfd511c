//! Byte strings read as a Mooncake JSONL trace by `engram_kvcache::trace::parse`
//! (the hand parser behind `engram kv replay --trace`), then replayed.
//!
//! The fuzz target `fuzz/fuzz_targets/kvcache_trace.rs` and the seed replay test
//! (`tests/tests/fuzz_seeds.rs`) call [`run`]:
//!
//! - the parser returns requests (at least one, each with a hash id per 512
//!   prompt tokens) or `Error::Trace` with a line number inside the input, and
//!   never panics;
//! - the first [`MAX_REPLAYED`] requests replay through a real `KvCache` (on the
//!   bookkeeping-only null backend, so no memory is mapped) and a static
//!   baseline: every request completes or is dropped as too big, and the
//!   simulated clock stays within the trace's time span plus the decode steps.

use engram_kvcache::backend::null::NullBackend;
use engram_kvcache::trace::{self, CacheTarget, ReplayOptions, StaticBaseline, TRACE_BLOCK_TOKENS};
use engram_kvcache::{Config, Error, KvCache, Layout};

/// Requests replayed per input (each decodes at most `max_ctx - 1` steps).
pub const MAX_REPLAYED: usize = 32;
/// Longest context in the replay.
const MAX_CTX: usize = 2048;
/// Decode step in simulated ms.
const STEP_MS: f64 = 10.0;

fn config() -> Config {
    // 2 layers x 2 heads x 64 dim x 2 B = 256 B/token/tensor; 16 KiB pages = 64 tokens.
    Config {
        layers: 2,
        kv_heads: 2,
        head_dim: 64,
        elem_bytes: 2,
        max_batch: 4,
        max_ctx: MAX_CTX,
        page_size: 16 << 10,
        pool_bytes: 4 << 20,
        low_watermark: 0,
        high_watermark: 0,
        try_huge: false,
        layout: Layout::PerTensor,
    }
}

/// Parse `data` as a trace and replay what it holds; panics on a broken promise.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count().max(1);
    let reqs = match trace::parse(&text) {
        Ok(r) => r,
        Err(Error::Trace { line, what }) => {
            assert!(
                (1..=lines).contains(&line),
                "error at line {line} of {lines}: {what}"
            );
            return;
        }
        Err(e) => panic!("not a trace error: {e}"),
    };
    assert!(!reqs.is_empty(), "Ok with no request");
    for r in &reqs {
        assert!(
            r.hash_ids.len() >= r.input_len.div_ceil(TRACE_BLOCK_TOKENS),
            "{r:?}: fewer hash ids than prompt blocks"
        );
    }
    let g = config().geometry().expect("the fuzz shape is valid");
    let opt = ReplayOptions {
        step_ms: STEP_MS,
        limit: MAX_REPLAYED,
        max_ctx: MAX_CTX,
        max_batch: 4,
        token_bytes_all: g.token_bytes * g.tensors,
    };
    let n = reqs.len().min(MAX_REPLAYED);
    let first = reqs[..n].iter().map(|r| r.timestamp_ms).min().unwrap_or(0);
    let last = reqs[..n].iter().map(|r| r.timestamp_ms).max().unwrap_or(0);
    // Every request decodes at most MAX_CTX - 1 steps, one at a time at worst.
    let bound = (last - first) as f64 + (n * MAX_CTX) as f64 * STEP_MS + STEP_MS;
    let null = KvCache::new(
        config(),
        NullBackend::new(g.page_size, g.tensors * g.groups, g.reserve_bytes),
    )
    .expect("null-backed cache");
    let mut cache = CacheTarget::new(null, 0);
    let pool = g.groups * g.page_size * g.tensors;
    let mut st = StaticBaseline::new(pool, MAX_CTX, g.token_bytes * g.tensors);
    let targets: [&mut dyn trace::Target; 2] = [&mut cache, &mut st];
    for t in targets {
        let r = trace::replay(t, &reqs, &opt, &mut |_, _| {}).expect("replay");
        assert_eq!(r.done + r.dropped, n, "{}: requests lost", r.name);
        assert!(
            r.sim_ms >= 0.0 && r.sim_ms <= bound,
            "{}: clock at {} ms, bound {bound}",
            r.name,
            r.sim_ms
        );
    }
}
