#!/usr/bin/env bash
# Fuzz smoke test: a short run of the alloc_ops target (FUZZ_SECONDS, default 60).
# cargo-fuzz builds with sanitizer flags that need a nightly toolchain; without one this
# script says so and exits 0. Not part of ci/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${FUZZ_SECONDS:-60}
target=alloc_ops

if ! command -v rustup >/dev/null 2>&1 || ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz-smoke: no nightly toolchain (rustup toolchain install nightly); nothing fuzzed"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

# The first corpus directory is written to (git-ignored); committed seeds are only read.
corpora=("fuzz/corpus/$target")
mkdir -p "${corpora[0]}"
if [ -d "fuzz/seeds/$target" ]; then
    corpora+=("fuzz/seeds/$target")
fi
echo "fuzz-smoke: $target for ${seconds}s"
cargo +nightly fuzz run "$target" "${corpora[@]}" -- -max_total_time="$seconds"
