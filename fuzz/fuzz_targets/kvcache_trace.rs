//! Fuzz the Mooncake JSONL parser of `engram_kvcache::trace` (what
//! `engram kv replay --trace` reads) and replay what it accepts.
//!
//! The checks are in `engram_tests::kvcache_trace`; seeds live in
//! `fuzz/seeds/kvcache_trace/` and are replayed by `tests/tests/fuzz_seeds.rs`.
//! Run: `cargo fuzz run kvcache_trace fuzz/seeds/kvcache_trace`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| engram_tests::kvcache_trace::run(data));
