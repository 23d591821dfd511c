//! Real-time threads: a high-priority SCHED_FIFO thread that needs a lock a
//! preempted lower-priority thread holds must not spin forever.
//!
//! `tests/c/rt_lock.c` pins two SCHED_FIFO threads (priorities 10 and 20) to
//! CPU 0; the high one wakes every 100 us and preempts the low one wherever it
//! is, often inside an arena lock (cache flush and refill, `malloc_trim`).
//! With waiters that spin and call `sched_yield` (the lock before this test)
//! the program hung after a handful of wakes; it must finish all 2,000. Where
//! the process may not use SCHED_FIFO (no CAP_SYS_NICE) or has one CPU, the
//! program says so and the test is skipped with that message.

use std::time::Duration;

#[test]
fn a_high_priority_waiter_lets_the_preempted_holder_finish() {
    let bin = engram_tests::compile_c(
        "rt_lock",
        &["-O2", "-Wall", "-Wextra", "-Werror", "-pthread"],
        &[],
    );
    for options in ["", "arenas=1"] {
        let out = engram_tests::run_ok(
            engram_tests::preloaded(&bin, options),
            &format!("rt_lock ({options})"),
            Duration::from_secs(60),
        );
        if let Some(why) = out.lines().find(|l| l.starts_with("skip:")) {
            eprintln!("SKIPPED rt_lock: {why}");
            return;
        }
        assert!(
            out.lines().any(|l| l == "done wakes=2000"),
            "rt_lock ({options}): {out}"
        );
    }
}
