//! Accounting-only backend: it validates ranges like a real one but maps nothing.
//! Used to measure the cache's bookkeeping alone (replay "bookkeeping-only" numbers).

use super::{Backend, Caps};
use crate::error::BackendError;

/// A backend that owns no memory.
#[derive(Debug, Clone)]
pub struct NullBackend {
    page_size: usize,
    pool_pages: usize,
    len: usize,
}

impl NullBackend {
    /// A pool of `pool_pages` pages and a pretend reservation of `reserve_len` bytes.
    pub fn new(page_size: usize, pool_pages: usize, reserve_len: usize) -> Self {
        Self {
            page_size,
            pool_pages,
            len: reserve_len,
        }
    }

    fn check(&self, off: usize, phys: usize, n: usize) -> Result<(), BackendError> {
        let ok = n > 0
            && off % self.page_size == 0
            && off + n * self.page_size <= self.len
            && phys + n <= self.pool_pages;
        if ok {
            Ok(())
        } else {
            Err(BackendError::BadRange)
        }
    }
}

impl Backend for NullBackend {
    fn caps(&self) -> Caps {
        Caps {
            name: "null",
            granularity: 4096,
            host_accessible: false,
            merges_contiguous: true,
        }
    }
    fn page_size(&self) -> usize {
        self.page_size
    }
    fn pool_pages(&self) -> usize {
        self.pool_pages
    }
    fn reservation(&self) -> (usize, usize) {
        (0, self.len)
    }
    fn map(&mut self, off: usize, phys: usize, n: usize) -> Result<(), BackendError> {
        self.check(off, phys, n)
    }
    fn unmap(&mut self, off: usize, n: usize) -> Result<(), BackendError> {
        self.check(off, 0, n)
    }
    fn release(&mut self, phys: usize, n: usize) -> Result<(), BackendError> {
        self.check(0, phys, n)
    }
    fn copy_page(&mut self, src: usize, dst: usize) -> Result<(), BackendError> {
        self.check(0, src.max(dst), 1)
    }
    fn read_page(&mut self, phys: usize, out: &mut [u8]) -> Result<(), BackendError> {
        self.check(0, phys, 1)?;
        out.fill(0);
        Ok(())
    }
    fn write_page(&mut self, phys: usize, _data: &[u8]) -> Result<(), BackendError> {
        self.check(0, phys, 1)
    }
    fn read_virt(&self, _off: usize, _out: &mut [u8]) -> Result<(), BackendError> {
        Err(BackendError::BadRange)
    }
    fn write_virt(&mut self, _off: usize, _data: &[u8]) -> Result<(), BackendError> {
        Err(BackendError::BadRange)
    }
    fn pool_view(&self) -> Option<usize> {
        None
    }
}
