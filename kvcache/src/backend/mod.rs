//! The one narrow trait every device touch goes through (STYLE §2).
//!
//! A backend owns two things: a *physical pool* of `pool_pages` pages of
//! `page_size` bytes, numbered `0..pool_pages`, and one *virtual reservation*
//! into which pool pages are mapped at page-aligned offsets. The cache above decides
//! which pool page goes where; the backend only performs and validates the calls.
//!
//! Implementations: [`host::HostBackend`] (memfd + mmap, always built) and, with
//! feature `cuda`, `cuda::CudaBackend` (driver VMM, loaded at run time).

use crate::error::BackendError;

pub mod host;
pub mod null;

#[cfg(feature = "cuda")]
pub mod cuda;

/// What a backend can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Short name for reports ("host-memfd", "host-hugetlb", "cuda").
    pub name: &'static str,
    /// Smallest page the backend can map; `page_size` is a multiple of it.
    pub granularity: usize,
    /// Whether the CPU can dereference mapped virtual addresses.
    pub host_accessible: bool,
    /// Whether a multi-page map call of file-contiguous pages makes one mapping
    /// (host: adjacent VMAs merge) rather than one per page (CUDA).
    pub merges_contiguous: bool,
}

/// A physical page pool plus one virtual reservation.
///
/// Every method validates its ranges (inside the pool / the reservation, aligned,
/// non-empty) and returns [`BackendError::BadRange`] otherwise, so the trait is safe.
pub trait Backend: Send {
    /// Capabilities of this backend.
    fn caps(&self) -> Caps;
    /// Bytes per page.
    fn page_size(&self) -> usize;
    /// Pages in the physical pool.
    fn pool_pages(&self) -> usize;
    /// Base address of the reservation and its length in bytes.
    fn reservation(&self) -> (usize, usize);
    /// Map pool pages `phys..phys+n` at reservation offset `off` (bytes, page-aligned),
    /// replacing whatever was mapped there. Postcondition: the range reads the pool
    /// pages' contents.
    fn map(&mut self, off: usize, phys: usize, n: usize) -> Result<(), BackendError>;
    /// Make `n` pages at reservation offset `off` inaccessible again; the reservation
    /// stays. Postcondition: the pool pages keep their contents.
    fn unmap(&mut self, off: usize, n: usize) -> Result<(), BackendError>;
    /// Give the memory of pool pages `phys..phys+n` back to the OS/driver. They must
    /// be mapped nowhere. Their contents on next use are unspecified (host: zero).
    fn release(&mut self, phys: usize, n: usize) -> Result<(), BackendError>;
    /// Copy pool page `src` into pool page `dst`.
    fn copy_page(&mut self, src: usize, dst: usize) -> Result<(), BackendError>;
    /// Read pool page `phys` into `out` (`out.len() == page_size`).
    fn read_page(&mut self, phys: usize, out: &mut [u8]) -> Result<(), BackendError>;
    /// Write `data` (`data.len() == page_size`) into pool page `phys`.
    fn write_page(&mut self, phys: usize, data: &[u8]) -> Result<(), BackendError>;
    /// Read `out.len()` bytes at reservation offset `off`; the range must be mapped.
    fn read_virt(&self, off: usize, out: &mut [u8]) -> Result<(), BackendError>;
    /// Write `data` at reservation offset `off`; the range must be mapped.
    fn write_virt(&mut self, off: usize, data: &[u8]) -> Result<(), BackendError>;
    /// Base address of a linear view of the whole pool, when the CPU can read it
    /// (host: a second mapping of the memfd). Layout: page `p` at `p * page_size`.
    fn pool_view(&self) -> Option<usize>;
    /// The pool page mapped at reservation offset `off` (page-aligned): `Some(None)`
    /// when nothing is, `None` when the backend does not keep track. Lets
    /// [`KvCache::check_invariants`](crate::KvCache::check_invariants) compare the
    /// real mappings with the bookkeeping.
    fn mapped_at(&self, off: usize) -> Option<Option<usize>> {
        let _ = off;
        None
    }
}
