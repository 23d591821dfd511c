//! Multi-threaded allocator stress.
//!
//! The C modes of `tests/c/stress.c` (cross-thread frees through a ring
//! buffer, thread churn, fork while other threads allocate, realloc chains,
//! allocation in thread destructors that run after the allocator's)
//! run in a child process under `LD_PRELOAD=libengram_malloc.so`, one test
//! per mode, each bounded by a timeout. A Rust-level test drives
//! `engram_alloc::raw` directly from eight threads that hand blocks to each
//! other through `std::sync::mpsc`.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use engram_alloc::raw;

/// A mode taking longer than this has hung (stress.c also arms `alarm(100)`).
const TIMEOUT: Duration = Duration::from_secs(120);

/// The compiled stress program, built once per test process.
fn stress_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        engram_tests::compile_c(
            "stress",
            &["-O2", "-g", "-Wall", "-Wextra", "-Werror", "-pthread"],
            &[],
        )
    })
}

fn wait_with_timeout(child: Child, what: &str) -> (ExitStatus, String) {
    engram_tests::wait_with_timeout(child, what, TIMEOUT)
}

/// Runs one stress mode under LD_PRELOAD and checks it exited 0.
fn run_mode(mode: &str, options: &str) {
    let start = Instant::now();
    let child = engram_tests::preloaded(stress_bin(), options)
        .arg(mode)
        .spawn()
        .expect("spawning the stress program");
    let (status, stderr) = wait_with_timeout(child, &format!("stress mode `{mode}`"));
    let how = engram_tests::describe_status(status);
    assert!(
        status.success(),
        "stress mode `{mode}` (ENGRAM_MALLOC={options:?}) {how}; stderr:\n{stderr}"
    );
    eprintln!("stress {mode} ({options:?}): {:?}", start.elapsed());
}

#[test]
fn cross_thread_frees_through_a_ring_buffer() {
    run_mode("ring", "");
}

#[test]
fn cross_thread_frees_with_mitigations_off() {
    // The fast paths without quarantine, zeroing, canaries, guards or random
    // slot choice take other branches: stress those too.
    run_mode(
        "ring",
        "quarantine=0,zero=0,canary=0,guard=0,random=0,decommit=0,large_cache=0",
    );
}

#[test]
fn cross_thread_frees_and_churn_across_eight_arenas() {
    // The default is one arena per two CPUs (one on a 2-core machine): with 8,
    // threads on different CPUs refill from different arenas and their frees
    // cross arenas; decommit=0 makes emptied slabs go back to the OS under the
    // arena locks as well.
    run_mode("ring", "arenas=8,decommit=0");
    run_mode("churn", "arenas=8");
    run_mode("fork", "arenas=8");
}

#[test]
fn thread_churn() {
    run_mode("churn", "");
}

#[test]
fn fork_while_other_threads_allocate() {
    run_mode("fork", "");
}

/// Mallocs and frees made by another library's thread destructor after the
/// allocator flushed the exiting thread's cache go to the central state, not
/// to a cache nobody drains again: the heap does not grow with thread count
/// (a build that left the cache active after its flush grew 16x over 3,000
/// threads).
#[test]
fn allocation_in_late_thread_destructors_does_not_leak() {
    run_mode("late", "");
}

#[test]
fn realloc_chains() {
    run_mode("realloc", "");
}

// ------------------------------------------------------- Rust-level stress

const THREADS: usize = 8;
const BLOCKS_PER_THREAD: usize = 10_000;

/// A block in flight between threads. Addresses travel as integers: the
/// receiving thread owns the block from then on.
struct Block {
    addr: usize,
    len: usize,
    seed: u8,
}

fn pattern(seed: u8, i: usize) -> u8 {
    seed ^ (i as u8).wrapping_mul(31) ^ (i >> 8) as u8
}

/// Sizes biased to small classes, with some around and past 128 KiB.
fn size_for(x: u64) -> usize {
    match x % 100 {
        0..=69 => 1 + (x >> 8) as usize % 256,
        70..=94 => 257 + (x >> 8) as usize % 8192,
        95..=97 => (128 << 10) - 64 + (x >> 8) as usize % 128,
        _ => (128 << 10) + (x >> 8) as usize % (384 << 10),
    }
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn allocate(len: usize, seed: u8) -> Block {
    // SAFETY: malloc has no preconditions.
    let p = unsafe { raw::malloc(len) };
    assert!(!p.is_null(), "raw::malloc({len}) returned null");
    for i in 0..len {
        // SAFETY: `p` points to at least `len` writable bytes just allocated.
        unsafe { p.add(i).write(pattern(seed, i)) };
    }
    Block {
        addr: p as usize,
        len,
        seed,
    }
}

fn verify_and_free(b: Block) {
    let p = b.addr as *mut u8;
    for i in 0..b.len {
        // SAFETY: the block is live, `len` bytes long, and owned by this thread
        // since it was received.
        let got = unsafe { p.add(i).read() };
        assert_eq!(
            got,
            pattern(b.seed, i),
            "block {:#x} (len {}) byte {i} changed in flight",
            b.addr,
            b.len
        );
    }
    // SAFETY: `p` came from raw::malloc and is freed once, here.
    unsafe { raw::free(p) };
}

#[test]
fn raw_malloc_free_with_mpsc_handoff() {
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..THREADS).map(|_| mpsc::channel::<Block>()).unzip();
    // Thread i sends to thread i + 1 and receives from thread i - 1.
    let mut senders: Vec<Option<mpsc::Sender<Block>>> = senders.into_iter().map(Some).collect();
    senders.rotate_left(1);
    let handles: Vec<_> = senders
        .into_iter()
        .zip(receivers)
        .enumerate()
        .map(|(t, (tx, rx))| {
            std::thread::spawn(move || {
                let tx = tx.expect("one sender per thread");
                let mut s = 0x9E37_79B9_7F4A_7C15u64 ^ (t as u64 + 1);
                let mut freed = 0usize;
                for k in 0..BLOCKS_PER_THREAD {
                    let x = xorshift(&mut s);
                    let b = allocate(size_for(x), (x >> 56) as u8);
                    if k % 5 == 0 {
                        // Local alloc/free mixed with the remote frees.
                        verify_and_free(b);
                    } else {
                        tx.send(b).expect("the next thread is alive");
                    }
                    while let Ok(b) = rx.try_recv() {
                        verify_and_free(b);
                        freed += 1;
                    }
                }
                drop(tx);
                // The previous thread drops its sender when done.
                for b in rx {
                    verify_and_free(b);
                    freed += 1;
                }
                freed
            })
        })
        .collect();
    let total: usize = handles
        .into_iter()
        .map(|h| h.join().expect("stress thread panicked"))
        .sum();
    let sent_per_thread = BLOCKS_PER_THREAD - BLOCKS_PER_THREAD.div_ceil(5);
    assert_eq!(
        total,
        THREADS * sent_per_thread,
        "every block sent was freed"
    );
}
