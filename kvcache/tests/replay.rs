//! The trace replay on a small shape: every request completes on every target, the
//! cache wastes less than the baselines' static reservation, and prefix reuse in the
//! trace shows up as hits.

use engram_kvcache::backend::null::NullBackend;
use engram_kvcache::trace::{
    self, BlockBaseline, CacheTarget, ReplayOptions, StaticBaseline, TraceRequest,
};
use engram_kvcache::{Config, KvCache, host_cache};

fn cfg() -> Config {
    // 2 layers x 2 heads x 64 dim x 2 B = 256 B/token/tensor; 16 KiB pages = 64 tokens.
    Config {
        layers: 2,
        kv_heads: 2,
        head_dim: 64,
        elem_bytes: 2,
        max_batch: 8,
        max_ctx: 4096,
        page_size: 16 << 10,
        pool_bytes: 24 << 20,
        low_watermark: 0,
        high_watermark: 0,
        try_huge: false,
        layout: engram_kvcache::Layout::PerTensor,
    }
}

fn requests() -> Vec<TraceRequest> {
    // Mooncake-style lines: requests 2 and 3 reuse request 1's first two blocks.
    let text = r#"{"timestamp": 0, "input_length": 1500, "output_length": 40, "hash_ids": [1, 2, 3]}
{"timestamp": 10, "input_length": 1100, "output_length": 30, "hash_ids": [1, 2, 4]}
{"timestamp": 500, "input_length": 1024, "output_length": 20, "hash_ids": [1, 2]}
{"timestamp": 600, "input_length": 300, "output_length": 60, "hash_ids": [9]}"#;
    let mut r = trace::parse(text).unwrap();
    r.extend(
        trace::poisson(40, 50.0, 1024, 32, 0.5, 1, 3)
            .into_iter()
            .map(|mut x| {
                x.timestamp_ms += 700;
                x
            }),
    );
    r
}

fn opts() -> ReplayOptions {
    let g = cfg().geometry().unwrap();
    ReplayOptions {
        step_ms: 10.0,
        limit: usize::MAX,
        max_ctx: 4096,
        max_batch: 8,
        token_bytes_all: g.token_bytes * g.tensors,
    }
}

#[test]
fn replay_completes_everywhere_and_the_cache_wastes_little() {
    let reqs = requests();
    let g = cfg().geometry().unwrap();
    let mut host = CacheTarget::new(host_cache(cfg()).unwrap(), 64);
    let real = trace::replay(&mut host, &reqs, &opts(), &mut |_, _| {}).unwrap();
    let null = KvCache::new(
        cfg(),
        NullBackend::new(g.page_size, g.tensors * g.groups, g.reserve_bytes),
    )
    .unwrap();
    let mut null = CacheTarget::new(null, 0);
    let book = trace::replay(&mut null, &reqs, &opts(), &mut |_, _| {}).unwrap();
    let pool = g.groups * g.page_size * g.tensors;
    let mut st = StaticBaseline::new(pool, 4096, g.token_bytes * g.tensors);
    let stat = trace::replay(&mut st, &reqs, &opts(), &mut |_, _| {}).unwrap();
    let mut bl = BlockBaseline::new(pool, 16, g.token_bytes * g.tensors);
    let block = trace::replay(&mut bl, &reqs, &opts(), &mut |_, _| {}).unwrap();
    for r in [&real, &book, &stat, &block] {
        assert_eq!(r.done, reqs.len(), "{}", r.name);
        assert_eq!(r.dropped, 0);
    }
    // Same schedule with and without real mapping.
    assert_eq!(real.steps, book.steps);
    assert_eq!(real.prefix_hit_rate, book.prefix_hit_rate);
    assert!(
        real.prefix_hit_rate > 0.05,
        "trace prefix reuse is found: {}",
        real.prefix_hit_rate
    );
    assert!(block.prefix_hit_rate > 0.05);
    // Waste: under one page per (request, tensor); far under a static reservation.
    assert!(real.waste_ratio < 0.25, "{}", real.waste_ratio);
    assert!(stat.waste_ratio > 1.0, "{}", stat.waste_ratio);
    assert!(
        stat.steps >= real.steps,
        "static reservation admits fewer at once"
    );
}

/// A trace whose timestamps go backwards (a request stamped before the first)
/// replays to the end: arrival times are taken from the earliest stamp, so no
/// subtraction wraps and every request still arrives.
#[test]
fn timestamps_going_backwards_still_replay() {
    let text = r#"{"timestamp": 1000, "input_length": 600, "output_length": 10, "hash_ids": [1, 2]}
{"timestamp": 5, "input_length": 700, "output_length": 10, "hash_ids": [1, 3]}
{"timestamp": 1200, "input_length": 300, "output_length": 10, "hash_ids": [4]}"#;
    let reqs = trace::parse(text).unwrap();
    let g = cfg().geometry().unwrap();
    let pool = g.groups * g.page_size * g.tensors;
    let mut st = StaticBaseline::new(pool, 4096, g.token_bytes * g.tensors);
    let r = trace::replay(&mut st, &reqs, &opts(), &mut |_, _| {}).unwrap();
    assert_eq!(r.done, reqs.len());
    assert_eq!(r.dropped, 0);
    // 1.2 s of arrivals and 30 decode steps of 10 ms, not a clock at 2^64 ms.
    assert!(r.sim_ms > 1000.0 && r.sim_ms < 2000.0, "{}", r.sim_ms);
}

/// A request whose prompt fits the pool but whose prompt plus output does not
/// is dropped once it runs out of room alone (review finding: it preempted
/// itself and was readmitted forever), and the others still complete.
#[test]
fn a_request_that_can_never_finish_is_dropped_not_replayed_forever() {
    let mut small = cfg();
    small.pool_bytes = 2 << 20; // 32 pages of 64 tokens per tensor: 2048 tokens
    let text = r#"{"timestamp": 0, "input_length": 1500, "output_length": 1000, "hash_ids": [1, 2, 3]}
{"timestamp": 5, "input_length": 300, "output_length": 10, "hash_ids": [7]}"#;
    let reqs = trace::parse(text).unwrap();
    let mut host = CacheTarget::new(host_cache(small).unwrap(), 64);
    let r = trace::replay(&mut host, &reqs, &opts(), &mut |_, _| {}).unwrap();
    assert_eq!((r.done, r.dropped), (1, 1));
}

/// A line may claim any prompt length: it is clipped to the context before its
/// tokens are built (review finding: a 1 MB line claiming 256M tokens took
/// 1 GB).
#[test]
fn a_huge_claimed_prompt_is_clipped_before_it_is_built() {
    let n = 256_000_000usize;
    let ids = vec!["0"; n.div_ceil(trace::TRACE_BLOCK_TOKENS)].join(",");
    let text = format!(
        r#"{{"timestamp": 0, "input_length": {n}, "output_length": 10, "hash_ids": [{ids}]}}"#
    );
    let reqs = trace::parse(&text).unwrap();
    let p = trace::prompt_prefix(&reqs[0], 4086);
    assert_eq!(p.len(), 4086);
    assert_eq!(p[..], trace::prompt_prefix(&reqs[0], 5000)[..4086]);
}

/// Options that would hang or overflow the replay, and a hand-built request
/// with fewer block hashes than its prompt needs, are errors (review finding,
/// 2026-11-25: max_batch 0 looped for ever, max_ctx 0 overflowed, the short
/// request indexed past its hashes).
#[test]
fn bad_options_and_requests_are_errors() {
    let reqs = requests();
    let g = cfg().geometry().unwrap();
    let pool = g.groups * g.page_size * g.tensors;
    let mut st = StaticBaseline::new(pool, 4096, g.token_bytes * g.tensors);
    let mut bad = opts();
    bad.max_batch = 0;
    let e = trace::replay(&mut st, &reqs, &bad, &mut |_, _| {}).unwrap_err();
    assert!(e.to_string().contains("max_batch"), "{e}");
    let mut bad = opts();
    bad.max_ctx = 0;
    let e = trace::replay(&mut st, &reqs, &bad, &mut |_, _| {}).unwrap_err();
    assert!(e.to_string().contains("max_ctx"), "{e}");
    // A context of one token is legal: every prompt is clipped away and each
    // request produces its one output token.
    let mut one = opts();
    one.max_ctx = 1;
    let r = trace::replay(&mut st, &reqs, &one, &mut |_, _| {}).unwrap();
    assert_eq!(r.done + r.dropped, reqs.len());
    let short = vec![trace::TraceRequest {
        timestamp_ms: 0,
        input_len: 10,
        output_len: 5,
        hash_ids: vec![],
    }];
    let e = trace::replay(&mut st, &short, &opts(), &mut |_, _| {}).unwrap_err();
    assert!(e.to_string().contains("hash_ids"), "{e}");
}
