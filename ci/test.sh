#!/usr/bin/env bash
# The README's test command: every check a change must pass, in the order CI runs them.
#
#   ./ci/test.sh            (from any directory; it runs in the repository root)
#
# The real-program tests (tests/tests/real_programs.rs) need python3, sqlite3, git, gcc
# and perl from Debian; .ci/run installs them on a clean machine. Fuzzing is separate:
# ci/fuzz-smoke.sh (needs nightly).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

started=$SECONDS
step_started=$SECONDS
step() {
    printf '\n==== [%4ds] %s ====\n' "$((SECONDS - started))" "$*"
    step_started=$SECONDS
}
done_step() {
    printf '==== done in %ds ====\n' "$((SECONDS - step_started))"
}

step "build: libengram_malloc.so and the engram CLI (release)"
# The integration tests preload target/release/libengram_malloc.so and run
# target/release/engram: build them before the tests look for them.
cargo build --release -p engram-malloc -p engram-cli
done_step

step "test: workspace (release)"
cargo test --release --workspace --exclude engram-fuzz --exclude engram-benches
done_step

step "loom: engram-alloc and engram-kvcache models (cfg engram_loom)"
# Its own target dir: --cfg engram_loom changes every crate's fingerprint.
loom_log=$(mktemp)
trap 'rm -f "$loom_log"' EXIT
LOOM_MAX_PREEMPTIONS=2 RUSTFLAGS="--cfg engram_loom" CARGO_TARGET_DIR=target/loom \
    cargo test --release -p engram-alloc -p engram-kvcache --lib loom 2>&1 | tee "$loom_log"
# A filter that matches nothing passes quietly; a skipped model proves nothing.
if [ "$(grep -Ec '^test result: ok\. [1-9][0-9]* passed' "$loom_log")" -lt 2 ]; then
    echo "ci/test.sh: a crate ran no loom model (expected tests named *loom* in engram-alloc and engram-kvcache)" >&2
    exit 1
fi
done_step

step "cuda feature: engram-kvcache builds and tests without a GPU (GPU tests skip)"
# cudarc loads libcuda at run time, so the feature builds anywhere (STYLE.md §12).
cargo test --release -p engram-kvcache --features cuda
cargo clippy --release -p engram-kvcache --features cuda --all-targets -- -D warnings
done_step

step "deps: no tracing or log under engram-alloc"
# Nothing reachable from malloc may log (STYLE.md section 6).
if cargo tree -p engram-alloc -e normal,build --prefix none --format '{p}' |
    grep -Eq '^(tracing|tracing-core|log) '; then
    echo "ci/test.sh: engram-alloc depends on tracing or log" >&2
    exit 1
fi
done_step

step "bench build (benches are compiled in CI, never run)"
cargo build --release -p engram-benches --benches
done_step

step "fmt"
cargo fmt --all -- --check
done_step

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings
done_step

printf '\nci/test.sh: all checks passed in %ds\n' "$((SECONDS - started))"
