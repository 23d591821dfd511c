//! Micro-measurements for kvcache/README.md (not a timed test; run with
//! `cargo run --release -p engram-kvcache --example kv_bench`):
//! host-backend map/unmap latency per page size (median, p99) and bookkeeping-only
//! ops/s of the cache on the accounting backend.

use std::time::Instant;

use engram_kvcache::backend::Backend;
use engram_kvcache::backend::host::HostBackend;
use engram_kvcache::backend::null::NullBackend;
use engram_kvcache::{Config, KvCache};

fn pct(v: &mut [u64], q: f64) -> u64 {
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * q) as usize]
}

fn map_latency(page: usize, pages: usize) {
    let mut b = HostBackend::new(page, pages, 2 * pages * page, page % (2 << 20) == 0).unwrap();
    let (mut map, mut unmap) = (Vec::new(), Vec::new());
    for round in 0..5 {
        for i in 0..pages {
            // Every other virtual page, pool pages in a scattered order: one VMA each.
            let phys = (i * 7 + round) % pages;
            let t = Instant::now();
            b.map(2 * i * page, phys, 1).unwrap();
            map.push(t.elapsed().as_nanos() as u64);
        }
        for i in 0..pages {
            let t = Instant::now();
            b.unmap(2 * i * page, 1).unwrap();
            unmap.push(t.elapsed().as_nanos() as u64);
        }
    }
    println!(
        "{} ({:?}) {:>5} KiB pages: map p50 {:>6} ns p99 {:>6} ns | unmap p50 {:>6} ns p99 {:>6} ns ({} samples)",
        b.caps().name,
        b.pool_kind(),
        page >> 10,
        pct(&mut map, 0.5),
        pct(&mut map, 0.99),
        pct(&mut unmap, 0.5),
        pct(&mut unmap, 0.99),
        map.len()
    );
}

fn bookkeeping() {
    let cfg = Config::llama3_8b(64, 32768, 64 << 10, 64 * 32 * 64 * (64 << 10));
    let geo = cfg.geometry().unwrap();
    let b = NullBackend::new(geo.page_size, geo.tensors * geo.groups, geo.reserve_bytes);
    let mut c = KvCache::new(cfg, b).unwrap();
    let t = Instant::now();
    let mut ops = 0u64;
    for round in 0..200u32 {
        let ids: Vec<u64> = (0..32).map(|_| c.admit(&[]).unwrap().id).collect();
        ops += 32;
        for step in 0..128u32 {
            for &id in &ids {
                c.append(id, &[round ^ step]).unwrap();
                ops += 1;
            }
        }
        for id in ids {
            c.free(id).unwrap();
            ops += 1;
        }
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "bookkeeping only (Llama-3-8B shape, 64 KiB pages, null backend): {ops} ops in {s:.3} s = {:.2} M ops/s",
        ops as f64 / s / 1e6
    );
}

fn main() {
    map_latency(64 << 10, 2048);
    map_latency(2 << 20, 128);
    bookkeeping();
}
