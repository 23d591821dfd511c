//! Fuzz every `engram_policy::trace` reader (and format detection) with raw
//! bytes, and drive a cache `Policy` with the same bytes read as operations.
//!
//! The checks are in `engram_tests::policy_parse`; seeds live in
//! `fuzz/seeds/policy_traces/` and are replayed by `tests/tests/fuzz_seeds.rs`.
//! Run: `cargo fuzz run policy_traces fuzz/seeds/policy_traces`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| engram_tests::policy_parse::run(data));
