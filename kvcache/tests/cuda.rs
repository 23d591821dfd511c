//! CUDA VMM backend tests (feature `cuda`). They skip with a message when no driver
//! or device is present; the same scenarios run on the host backend in `cache.rs`.
#![cfg(feature = "cuda")]

use engram_kvcache::backend::Backend;
use engram_kvcache::backend::cuda::{CudaBackend, driver_present};
use engram_kvcache::{BackendError, Config, KvCache};

const PAGE: usize = 2 << 20;

/// A backend on GPU 0, or `None` after printing why the test is skipped.
fn cuda_device_or_skip(pool_pages: usize, reserve: usize) -> Option<CudaBackend> {
    if !driver_present() {
        eprintln!("skipped: libcuda not found (no CUDA driver on this machine)");
        return None;
    }
    match CudaBackend::new(0, PAGE, pool_pages, reserve) {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("skipped: no usable CUDA device: {e}");
            None
        }
    }
}

#[test]
fn missing_driver_is_an_error_not_a_panic() {
    if driver_present() {
        return;
    }
    assert_eq!(
        CudaBackend::new(0, PAGE, 1, PAGE).unwrap_err(),
        BackendError::NoDriver
    );
}

#[test]
fn map_write_read_copy_on_gpu() {
    let Some(mut b) = cuda_device_or_skip(4, 8 * PAGE) else {
        return;
    };
    assert_eq!(b.caps().name, "cuda");
    b.map(0, 1, 2).unwrap();
    let data = vec![0x5Au8; 4096];
    b.write_virt(PAGE + 100, &data).unwrap();
    let mut out = vec![0u8; 4096];
    b.read_virt(PAGE + 100, &mut out).unwrap();
    assert_eq!(out, data);
    b.copy_page(2, 3).unwrap();
    b.map(0, 3, 1).unwrap();
    b.read_virt(100, &mut out).unwrap();
    assert_eq!(out, data, "copied page reads back through a new mapping");
    b.unmap(0, 2).unwrap();
    assert!(
        b.read_virt(100, &mut out).is_err(),
        "unmapped range is refused"
    );
}

#[test]
fn cache_on_gpu() {
    let cfg = Config {
        layers: 2,
        kv_heads: 8,
        head_dim: 128,
        elem_bytes: 2,
        max_batch: 2,
        max_ctx: 4096,
        page_size: PAGE,
        pool_bytes: 8 * PAGE * 4,
        low_watermark: 0,
        high_watermark: 0,
        try_huge: false,
        layout: engram_kvcache::Layout::PerTensor,
    };
    let geo = cfg.geometry().unwrap();
    let Some(b) = cuda_device_or_skip(geo.tensors * geo.groups, geo.reserve_bytes) else {
        return;
    };
    let mut c = KvCache::new(cfg, b).unwrap();
    let a = c.admit(&[]).unwrap();
    let toks: Vec<u32> = (0..1500).collect();
    c.append(a.id, &toks).unwrap();
    let data = vec![7u8; geo.token_bytes];
    c.write_token(a.id, 1, true, 1499, &data).unwrap();
    let child = c.fork(a.id).unwrap();
    c.append(child, &[1]).unwrap();
    let mut out = vec![0u8; geo.token_bytes];
    c.read_token(child, 1, true, 1499, &mut out).unwrap();
    assert_eq!(out, data, "copy-on-write on the GPU kept the data");
    c.check_invariants();
}
