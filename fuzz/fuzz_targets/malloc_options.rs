//! Fuzz the `ENGRAM_MALLOC` option parser (`engram_alloc::Config::parse`)
//! against a reference parser, and check every option stays in its bounds.
//!
//! The checks are in `engram_tests::malloc_options`; seeds live in
//! `fuzz/seeds/malloc_options/` and are replayed by `tests/tests/fuzz_seeds.rs`.
//! Run: `cargo fuzz run malloc_options fuzz/seeds/malloc_options`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| engram_tests::malloc_options::run(data));
