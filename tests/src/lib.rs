//! Shared helpers for engram's cross-crate integration tests.
//!
//! The whole-process tests run real programs under `LD_PRELOAD=libengram_malloc.so`.
//! The library is built by `cargo build --release -p engram-malloc` (the README's
//! test command does that first); [`malloc_so`] finds it next to the test binary's
//! target directory.

use std::path::PathBuf;

/// The cargo target directory the running test binary was built into.
pub fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
}

/// Path of the release `libengram_malloc.so`; panics with the command to run if missing.
pub fn malloc_so() -> PathBuf {
    let p = target_dir().join("release").join("libengram_malloc.so");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --release -p engram-malloc` first (ci/test.sh does)",
        p.display()
    );
    p
}

/// Path of the release `engram` CLI binary; panics with the command to run if missing.
pub fn engram_bin() -> PathBuf {
    let p = target_dir().join("release").join("engram");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --release -p engram-cli` first (ci/test.sh does)",
        p.display()
    );
    p
}
pub mod alloc_ops;
