//! Arenas: remote frees go back to the arena that owns the slab.
//!
//! `tests/c/arenas.c` runs under `LD_PRELOAD=libengram_malloc.so` with two
//! threads pinned to CPUs of different parity (caches refill from the arena of
//! their CPU, number modulo the arena count): the main
//! thread allocates 512 blocks, a second thread frees them all (remote frees),
//! flushes its cache with `malloc_trim(0)` and allocates 512 of its own; then the
//! main thread allocates again. With two or more arenas the freed slots must go
//! home to the main thread's arena: the second thread gets none of them, the
//! main thread gets them back, and the two threads' blocks lie in disjoint
//! address ranges. With one arena (every thread shares it) the second thread
//! reuses them, which shows the check can tell the two apart.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        engram_tests::compile_c(
            "arenas",
            &["-O1", "-Wall", "-Wextra", "-Werror", "-pthread"],
            &[],
        )
    })
}

/// (overlap, home, disjoint) as the program prints them; None (with a message)
/// when the machine has no two CPUs to pin the threads to.
fn run(options: &str) -> Option<(u32, u32, bool)> {
    let out = engram_tests::run_ok(
        engram_tests::preloaded(bin(), options),
        &format!("arenas ({options})"),
        Duration::from_secs(60),
    );
    if let Some(why) = out.lines().find(|l| l.starts_with("skip:")) {
        eprintln!("SKIPPED arenas ({options}): {why}");
        return None;
    }
    let line = out
        .lines()
        .find(|l| l.starts_with("overlap="))
        .unwrap_or_else(|| panic!("no result line in: {out}"));
    let field = |k: &str| -> u32 {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {line:?}"))
    };
    Some((field("overlap="), field("home="), field("disjoint=") == 1))
}

#[test]
fn remote_frees_return_to_the_owning_arena() {
    for options in ["arenas=2", "arenas=8", "arenas=2,quarantine=0,random=0"] {
        let Some((overlap, home, disjoint)) = run(options) else {
            return;
        };
        assert_eq!(
            overlap, 0,
            "{options}: the freeing thread reused {overlap} slots of the other thread's arena"
        );
        assert!(
            home > 0,
            "{options}: none of the remotely freed slots came back to their arena"
        );
        assert!(disjoint, "{options}: two arenas' blocks interleave");
    }
}

#[test]
fn one_arena_is_shared_by_every_thread() {
    let Some((overlap, _, disjoint)) = run("arenas=1") else {
        return;
    };
    assert!(
        overlap > 0 && !disjoint,
        "with one arena the second thread should reuse the freed slots"
    );
}

/// Under `ulimit -v` the class regions shrink to 16 MiB, so with 8 arenas each
/// owns 2 slabs of a class: 300k blocks of one class (about 14 MiB of slots)
/// must spill from the thread's arena into the others, and come back intact.
#[test]
fn a_full_arena_spills_into_the_others() {
    for options in ["arenas=8", "arenas=8,decommit=0"] {
        let mut sh = engram_tests::preloaded(Path::new("sh"), options);
        sh.arg("-c").arg(format!(
            "ulimit -v 3000000 && exec {} fill 300000",
            bin().display()
        ));
        let out = engram_tests::run_ok(
            sh,
            &format!("arenas fill ({options})"),
            Duration::from_secs(60),
        );
        assert!(
            out.contains("filled=300000"),
            "arenas fill ({options}): {out}"
        );
        // All in the class's own 16 MiB region: the spill went to the class's
        // other arenas, not to bigger classes or large mappings.
        let span: u64 = out
            .lines()
            .find_map(|l| l.strip_prefix("span_kib="))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no span in: {out}"));
        assert!(span < 16 << 10, "{options}: blocks span {span} KiB");
    }
}
