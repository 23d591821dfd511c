//! Measure the figures behind `TierCost::DRAM` and `TierCost::SSD` on this machine.
//!
//! ```text
//! cargo run --release -p engram-policy --example measure_tiers -- [DIR] [FILE_MIB]
//! ```
//!
//! - DRAM latency: a dependent pointer chase over 512 MiB (random cyclic order), ns
//!   per load: what one access to an object that is not in any CPU cache costs.
//! - DRAM bandwidth: single-thread `copy_from_slice` of 256 MiB, best of 5.
//! - SSD: a `FILE_MIB` (default 2048) file in `DIR` (default: the system temp dir),
//!   written with O_DIRECT in 1 MiB blocks (sequential write bandwidth) and fsynced,
//!   then 20,000 random 4 KiB O_DIRECT reads at queue depth 1 (mean, p50, p99),
//!   5,000 random 4 KiB O_DIRECT writes at QD1, and one sequential O_DIRECT read pass
//!   in 1 MiB blocks. O_DIRECT keeps the page cache out; the file is written first,
//!   so no read hits an unwritten (zero) extent. The file is removed at the end.
//!
//! It prints the figures and the `TierCost` constants they give.

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::time::Instant;

const MIB: usize = 1 << 20;

/// SplitMix64: the same small PRNG the policies use.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn dram_latency_ns() -> f64 {
    // One u64 per 64-byte line so every hop is a different line.
    let lines = 512 * MIB / 64;
    let mut order: Vec<usize> = (0..lines).collect();
    let mut rng = Rng(7);
    for i in (1..lines).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut next = vec![0usize; lines * 8];
    for w in 0..lines {
        next[order[w] * 8] = order[(w + 1) % lines] * 8;
    }
    let hops = 20_000_000;
    let mut p = 0;
    let t = Instant::now();
    for _ in 0..hops {
        p = next[p];
    }
    black_box(p);
    t.elapsed().as_nanos() as f64 / hops as f64
}

fn dram_copy_gbps() -> f64 {
    let n = 256 * MIB;
    let src = vec![1u8; n];
    let mut dst = vec![0u8; n];
    dst.copy_from_slice(&src);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        dst.copy_from_slice(black_box(&src));
        black_box(&dst);
        best = best.min(t.elapsed().as_secs_f64());
    }
    n as f64 / best / 1e9
}

/// A 4 KiB-aligned buffer for O_DIRECT.
struct Aligned {
    ptr: *mut u8,
    len: usize,
}
impl Aligned {
    fn new(len: usize) -> Aligned {
        let mut ptr = std::ptr::null_mut();
        // SAFETY: posix_memalign writes a pointer to `len` bytes aligned to 4096 or
        // returns an error, checked below.
        let rc = unsafe { libc::posix_memalign(&mut ptr, 4096, len) };
        assert_eq!(rc, 0, "posix_memalign");
        // SAFETY: the allocation is `len` bytes.
        unsafe { std::ptr::write_bytes(ptr.cast::<u8>(), 0xA5, len) };
        Aligned {
            ptr: ptr.cast(),
            len,
        }
    }
}
impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated by posix_memalign in `new`.
        unsafe { libc::free(self.ptr.cast()) };
    }
}

fn pread(f: &File, buf: &mut Aligned, len: usize, off: u64) {
    assert!(len <= buf.len);
    // SAFETY: `buf` holds at least `len` writable bytes.
    let n = unsafe { libc::pread(f.as_raw_fd(), buf.ptr.cast(), len, off as libc::off_t) };
    assert_eq!(n, len as isize, "pread at {off}");
}

fn pwrite(f: &File, buf: &Aligned, len: usize, off: u64) {
    assert!(len <= buf.len);
    // SAFETY: `buf` holds at least `len` readable bytes.
    let n = unsafe { libc::pwrite(f.as_raw_fd(), buf.ptr.cast(), len, off as libc::off_t) };
    assert_eq!(n, len as isize, "pwrite at {off}");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map_or_else(std::env::temp_dir, PathBuf::from);
    let file_mib: usize = args.next().map_or(2048, |s| s.parse().expect("FILE_MIB"));

    println!("DRAM: pointer chase over 512 MiB ...");
    let lat = dram_latency_ns();
    println!("  dependent load: {lat:.1} ns");
    let bw = dram_copy_gbps();
    println!("  memcpy 256 MiB, one thread: {bw:.2} GB/s");

    let path = dir.join(format!("engram-measure-tiers-{}", std::process::id()));
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .unwrap_or_else(|e| panic!("O_DIRECT open of {}: {e}", path.display()));
    let blocks = file_mib;
    let mut big = Aligned::new(MIB);
    println!("SSD: {} ({} MiB, O_DIRECT) ...", path.display(), file_mib);
    let t = Instant::now();
    for b in 0..blocks {
        pwrite(&f, &big, MIB, (b * MIB) as u64);
    }
    f.sync_all().expect("fsync");
    let seq_w = (blocks * MIB) as f64 / t.elapsed().as_secs_f64() / 1e9;
    println!("  sequential write, 1 MiB blocks + fsync: {seq_w:.2} GB/s");

    let pages = blocks * MIB / 4096;
    let mut rng = Rng(11);
    let mut small = Aligned::new(4096);
    let mut lat_r = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let off = (rng.below(pages) * 4096) as u64;
        let t = Instant::now();
        pread(&f, &mut small, 4096, off);
        lat_r.push(t.elapsed().as_nanos() as f64 / 1000.0);
    }
    lat_r.sort_by(f64::total_cmp);
    let mean_r = lat_r.iter().sum::<f64>() / lat_r.len() as f64;
    println!(
        "  4 KiB random read, QD1: mean {mean_r:.1} us, p50 {:.1} us, p99 {:.1} us",
        percentile(&lat_r, 0.5),
        percentile(&lat_r, 0.99)
    );
    let mut lat_w = Vec::with_capacity(5_000);
    for _ in 0..5_000 {
        let off = (rng.below(pages) * 4096) as u64;
        let t = Instant::now();
        pwrite(&f, &small, 4096, off);
        lat_w.push(t.elapsed().as_nanos() as f64 / 1000.0);
    }
    lat_w.sort_by(f64::total_cmp);
    let mean_w = lat_w.iter().sum::<f64>() / lat_w.len() as f64;
    println!(
        "  4 KiB random write, QD1 (no fsync): mean {mean_w:.1} us, p50 {:.1} us, p99 {:.1} us",
        percentile(&lat_w, 0.5),
        percentile(&lat_w, 0.99)
    );
    let t = Instant::now();
    for b in 0..blocks {
        pread(&f, &mut big, MIB, (b * MIB) as u64);
    }
    let seq_r = (blocks * MIB) as f64 / t.elapsed().as_secs_f64() / 1e9;
    println!("  sequential read, 1 MiB blocks: {seq_r:.2} GB/s");
    drop(f);
    std::fs::remove_file(&path).expect("removing the test file");

    println!("\nTierCost figures (latency ns, ns per byte = 1 / GB/s):");
    println!(
        "  DRAM: read_ns {lat:.0}, read_ns_per_byte {:.3}, write_ns {lat:.0}, write_ns_per_byte {:.3}",
        1.0 / bw,
        1.0 / bw
    );
    println!(
        "  SSD:  read_ns {:.0}, read_ns_per_byte {:.3}, write_ns {:.0}, write_ns_per_byte {:.3}",
        mean_r * 1000.0,
        1.0 / seq_r,
        mean_w * 1000.0,
        1.0 / seq_w
    );
}
