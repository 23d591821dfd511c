//! Fuzz `engram_alloc::raw` with byte strings read as allocator operations.
//!
//! The format and the checks are in `engram_tests::alloc_ops`; seeds live in
//! `fuzz/seeds/alloc_ops/` and are replayed by `tests/tests/fuzz_seeds.rs`.
//! Run: `cargo fuzz run alloc_ops fuzz/seeds/alloc_ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| engram_tests::alloc_ops::run(data));
