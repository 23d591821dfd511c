//! Fuzz the `engram_kvcache` request API with byte strings read as admit /
//! append / fork / publish / free / swap / maintenance calls on a small host cache.
//!
//! The format and the checks are in `engram_tests::kvcache_ops`; seeds live in
//! `fuzz/seeds/kvcache_requests/` and are replayed by `tests/tests/fuzz_seeds.rs`.
//! Run: `cargo fuzz run kvcache_requests fuzz/seeds/kvcache_requests`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| engram_tests::kvcache_ops::run(data));
