//! The large-block cache (alloc/src/large.rs) keeps freed blocks mapped for
//! reuse only once the program has shown it reuses them: a block freed once
//! is given back (no resident copy for a reuse that never comes: sqlite's peak
//! RSS 11.9 -> 10.2 MiB), blocks that keep coming back stay mapped for
//! reuse (`tests/c/large_cache.c`, in a child process so that no other
//! test's allocations change the allocator's state).

use std::time::Duration;

#[test]
fn freed_large_blocks_are_cached_only_once_they_come_back() {
    let exe = engram_tests::compile_c(
        "large_cache",
        // It looks at where a freed block was (never through it): gcc would flag that.
        &["-O1", "-Wall", "-Wextra", "-Werror", "-Wno-use-after-free"],
        &[],
    );
    let out = engram_tests::run_ok(
        engram_tests::preloaded(&exe, ""),
        "large_cache program",
        Duration::from_secs(60),
    );
    assert!(
        out.contains("first_unmapped=1 cached=1"),
        "want the first freed block unmapped and later ones kept mapped, got: {out}"
    );
}
