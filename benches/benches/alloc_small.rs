//! Allocator micro-benchmarks: engram (`engram_alloc::raw`) and the system
//! allocator (`libc::malloc`, glibc on Debian) side by side in each group.
//!
//! Groups (IDs are `<group>/<allocator>/<parameter>`):
//! - `malloc_free/{engram,system}/<size>`: one malloc and one free per iteration,
//!   first byte written, for 16 B .. 1 MiB.
//! - `batch_1000/{engram,system}/<size>`: allocate 1000 blocks, then free them in
//!   allocation order (per-thread cache refill and flush).
//! - `realloc_growth/{engram,system}/1MiB`: malloc(1), then realloc doubling to
//!   1 MiB, writing the last byte at every step, then free.
//! - `cross_thread/{engram,system}/<size>`: the bench thread allocates, a second
//!   thread frees (blocks handed over a channel in batches of 64): remote frees.
//!
//! Run: `cargo bench -p engram-benches --bench alloc_small` (add `-- malloc_free`
//! to run one group). `ENGRAM_MALLOC=...` applies to the engram side.

use std::hint::black_box;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use engram_benches::{Engram, RawAlloc, System, size_label};

const SIZES: [usize; 8] = [16, 64, 256, 1 << 10, 4 << 10, 32 << 10, 128 << 10, 1 << 20];
const BATCH: usize = 1000;
const BATCH_SIZES: [usize; 6] = [16, 64, 256, 1 << 10, 4 << 10, 32 << 10];
const CROSS_SIZES: [usize; 4] = [16, 64, 256, 4 << 10];
/// Pointers per channel message in `cross_thread`: amortises the channel so the
/// allocator dominates.
const HANDOFF: usize = 64;

fn oom(size: usize) -> ! {
    panic!("allocation of {size} bytes failed");
}

fn malloc_free<A: RawAlloc>(g: &mut BenchmarkGroup<'_, WallTime>, size: usize) {
    g.bench_with_input(
        BenchmarkId::new(A::NAME, size_label(size)),
        &size,
        |b, &size| {
            b.iter(|| {
                // SAFETY: the block is written within its size and freed once, below.
                unsafe {
                    let p = black_box(A::malloc(black_box(size)));
                    if p.is_null() {
                        oom(size);
                    }
                    p.write(1);
                    A::free(p);
                }
            });
        },
    );
}

fn bench_malloc_free(c: &mut Criterion) {
    let mut g = c.benchmark_group("malloc_free");
    g.throughput(Throughput::Elements(1));
    for size in SIZES {
        malloc_free::<Engram>(&mut g, size);
        malloc_free::<System>(&mut g, size);
    }
    g.finish();
}

fn batch<A: RawAlloc>(g: &mut BenchmarkGroup<'_, WallTime>, size: usize) {
    let mut ptrs: Vec<*mut u8> = Vec::with_capacity(BATCH);
    g.bench_with_input(
        BenchmarkId::new(A::NAME, size_label(size)),
        &size,
        |b, &size| {
            b.iter(|| {
                for _ in 0..BATCH {
                    // SAFETY: a fresh block, written within its size; freed in the loop below.
                    let p = unsafe { A::malloc(black_box(size)) };
                    if p.is_null() {
                        oom(size);
                    }
                    // SAFETY: `p` is live with `size >= 1` bytes.
                    unsafe { p.write(1) };
                    ptrs.push(p);
                }
                for p in ptrs.drain(..) {
                    // SAFETY: every pointer in `ptrs` is live from `A` and freed once.
                    unsafe { A::free(black_box(p)) };
                }
            });
        },
    );
}

fn bench_batch(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch_1000");
    g.throughput(Throughput::Elements(BATCH as u64));
    for size in BATCH_SIZES {
        batch::<Engram>(&mut g, size);
        batch::<System>(&mut g, size);
    }
    g.finish();
}

fn realloc_growth<A: RawAlloc>(g: &mut BenchmarkGroup<'_, WallTime>, max: usize) {
    g.bench_with_input(
        BenchmarkId::new(A::NAME, size_label(max)),
        &max,
        |b, &max| {
            b.iter(|| {
                // SAFETY: every block is written within its current size, the result of
                // each realloc replaces the old pointer, and the last one is freed once.
                unsafe {
                    let mut p = A::malloc(1);
                    if p.is_null() {
                        oom(1);
                    }
                    p.write(1);
                    let mut size = 1;
                    while size < max {
                        size *= 2;
                        p = A::realloc(black_box(p), size);
                        if p.is_null() {
                            oom(size);
                        }
                        p.add(size - 1).write(1);
                    }
                    A::free(black_box(p));
                }
            });
        },
    );
}

fn bench_realloc_growth(c: &mut Criterion) {
    let mut g = c.benchmark_group("realloc_growth");
    // 1, 2, 4 .. 1 MiB: 20 reallocs per iteration.
    g.throughput(Throughput::Elements(20));
    realloc_growth::<Engram>(&mut g, 1 << 20);
    realloc_growth::<System>(&mut g, 1 << 20);
    g.finish();
}

/// `iters` blocks allocated here and freed on a second thread; the clock runs
/// from the first malloc to the consumer's last free.
fn producer_consumer<A: RawAlloc>(iters: u64, size: usize) -> Duration {
    // Bounded, so at most a few thousand blocks are in flight.
    let (tx, rx) = mpsc::sync_channel::<([usize; HANDOFF], usize)>(32);
    let consumer = thread::spawn(move || {
        for (batch, n) in rx {
            for &addr in &batch[..n] {
                // SAFETY: each address is a live block from `A`, sent once by the
                // producer and freed once here.
                unsafe { A::free(black_box(addr as *mut u8)) };
            }
        }
    });
    let start = Instant::now();
    let mut batch = [0usize; HANDOFF];
    let mut n = 0;
    for _ in 0..iters {
        // SAFETY: a fresh block, written within its size; ownership goes to the consumer.
        let p = unsafe { A::malloc(black_box(size)) };
        if p.is_null() {
            oom(size);
        }
        // SAFETY: `p` is live with `size >= 1` bytes.
        unsafe { p.write(1) };
        batch[n] = p as usize;
        n += 1;
        if n == HANDOFF {
            tx.send((batch, n)).expect("consumer alive");
            n = 0;
        }
    }
    if n > 0 {
        tx.send((batch, n)).expect("consumer alive");
    }
    drop(tx);
    consumer.join().expect("consumer thread");
    start.elapsed()
}

fn bench_cross_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross_thread");
    g.throughput(Throughput::Elements(1));
    for size in CROSS_SIZES {
        let id = size_label(size);
        g.bench_with_input(BenchmarkId::new(Engram::NAME, &id), &size, |b, &size| {
            b.iter_custom(|iters| producer_consumer::<Engram>(iters, size));
        });
        g.bench_with_input(BenchmarkId::new(System::NAME, &id), &size, |b, &size| {
            b.iter_custom(|iters| producer_consumer::<System>(iters, size));
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_malloc_free,
    bench_batch,
    bench_realloc_growth,
    bench_cross_thread
);
criterion_main!(benches);
