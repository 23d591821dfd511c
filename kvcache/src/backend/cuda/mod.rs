//! CUDA VMM backend (feature `cuda`): physical pages from `cuMemCreate`, one device
//! address reservation from `cuMemAddressReserve`, pages mapped with `cuMemMap` +
//! `cuMemSetAccess` and unmapped with `cuMemUnmap`. cudarc loads `libcuda` at run
//! time; [`CudaBackend::new`] checks that it exists before any driver call and
//! returns [`BackendError::NoDriver`] otherwise.
//!
//! Layers (STYLE §2): `sys` (cudarc's bindings), `result` (one fn per driver call,
//! every `unsafe` block), `safe` (RAII owners), and this module (the backend).
//!
//! Pool pages are not addressable until mapped, so copies and page reads/writes go
//! through a two-page scratch reservation.
//!
//! Invariants: `mapped[v]` is true iff reservation page `v` is mapped; a pool page
//! is `None` only after `release` (re-created on next use).

mod result;
mod safe;
mod sys;

use super::{Backend, Caps};
use crate::error::BackendError;
use safe::{Device, PhysPage, Reservation};

/// Whether a CUDA driver library is present on this machine.
pub fn driver_present() -> bool {
    sys::driver_present()
}

/// Physical pool and reservation on one GPU.
#[derive(Debug)]
pub struct CudaBackend {
    page_size: usize,
    granularity: usize,
    prop: sys::CUmemAllocationProp,
    pages: Vec<Option<PhysPage>>,
    mapped: Vec<bool>,
    resv: Reservation,
    scratch: Reservation,
    // Dropped last: the context must outlive every object above.
    device: Device,
}

// SAFETY: the only non-Send field is the prop's null `win32HandleMetaData` pointer,
// never dereferenced; `Device` is Send (see its impl).
unsafe impl Send for CudaBackend {}

impl CudaBackend {
    /// Open GPU `ordinal`, create `pool_pages` pages of `page_size` bytes (a multiple
    /// of the device's granularity, usually 2 MiB) and reserve `reserve_len` bytes.
    pub fn new(
        ordinal: i32,
        page_size: usize,
        pool_pages: usize,
        reserve_len: usize,
    ) -> Result<Self, BackendError> {
        let device = Device::open(ordinal)?;
        let prop = result::device_prop(device.dev);
        let granularity = result::granularity(&prop)?;
        if page_size == 0
            || page_size % granularity != 0
            || reserve_len % page_size != 0
            || pool_pages == 0
        {
            return Err(BackendError::BadRange);
        }
        let mut pages = Vec::with_capacity(pool_pages);
        for _ in 0..pool_pages {
            pages.push(Some(PhysPage::new(page_size, &prop)?));
        }
        let resv = Reservation::new(reserve_len, page_size)?;
        let scratch = Reservation::new(2 * page_size, page_size)?;
        Ok(Self {
            page_size,
            granularity,
            prop,
            pages,
            mapped: vec![false; reserve_len / page_size],
            resv,
            scratch,
            device,
        })
    }

    fn handle(&mut self, phys: usize) -> Result<u64, BackendError> {
        let slot = self.pages.get_mut(phys).ok_or(BackendError::BadRange)?;
        if slot.is_none() {
            *slot = Some(PhysPage::new(self.page_size, &self.prop)?);
        }
        slot.as_ref()
            .map(|p| p.handle)
            .ok_or(BackendError::BadRange)
    }

    fn check_virt(&self, off: usize, len: usize) -> Result<(), BackendError> {
        match off.checked_add(len) {
            Some(end) if len > 0 && end <= self.resv.len => Ok(()),
            _ => Err(BackendError::BadRange),
        }
    }

    /// Run `f` with pool page `a` (and `b`) mapped at the scratch range.
    fn with_scratch<T>(
        &mut self,
        a: usize,
        b: Option<usize>,
        f: impl FnOnce(u64, u64, usize) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        self.device.enter()?;
        let ps = self.page_size;
        let s0 = self.scratch.ptr;
        let s1 = s0 + ps as u64;
        let ha = self.handle(a)?;
        // SAFETY: the scratch range is ours and unmapped between calls; `ha` is live.
        unsafe { result::mem_map(s0, ps, ha, self.device.dev)? };
        let mut second = false;
        let r = (|| {
            if let Some(b) = b {
                let hb = self.handle(b)?;
                // SAFETY: as above, second scratch page.
                unsafe { result::mem_map(s1, ps, hb, self.device.dev)? };
                second = true;
            }
            f(s0, s1, ps)
        })();
        // SAFETY: exactly the scratch pages mapped above, used by no kernel.
        unsafe {
            let _ = result::mem_unmap(s0, ps);
        }
        if second {
            // SAFETY: as above.
            unsafe {
                let _ = result::mem_unmap(s1, ps);
            }
        }
        r
    }
}

impl Backend for CudaBackend {
    fn caps(&self) -> Caps {
        Caps {
            name: "cuda",
            granularity: self.granularity,
            host_accessible: false,
            merges_contiguous: false,
        }
    }

    fn page_size(&self) -> usize {
        self.page_size
    }

    fn pool_pages(&self) -> usize {
        self.pages.len()
    }

    fn reservation(&self) -> (usize, usize) {
        (self.resv.ptr as usize, self.resv.len)
    }

    fn map(&mut self, off: usize, phys: usize, n: usize) -> Result<(), BackendError> {
        self.check_virt(off, n * self.page_size)?;
        if off % self.page_size != 0 || phys + n > self.pages.len() {
            return Err(BackendError::BadRange);
        }
        self.device.enter()?;
        for i in 0..n {
            let v = off / self.page_size + i;
            let va = self.resv.ptr + (v * self.page_size) as u64;
            if self.mapped[v] {
                // SAFETY: page `v` is mapped (tracked) and the cache replaces it.
                unsafe { result::mem_unmap(va, self.page_size)? };
                self.mapped[v] = false;
            }
            let h = self.handle(phys + i)?;
            // SAFETY: page `v` of our reservation is unmapped now; `h` is live.
            unsafe { result::mem_map(va, self.page_size, h, self.device.dev)? };
            self.mapped[v] = true;
        }
        Ok(())
    }

    fn unmap(&mut self, off: usize, n: usize) -> Result<(), BackendError> {
        self.check_virt(off, n * self.page_size)?;
        // As in `map`: an offset inside a page would unmap the page it falls in.
        if off % self.page_size != 0 {
            return Err(BackendError::BadRange);
        }
        self.device.enter()?;
        for i in 0..n {
            let v = off / self.page_size + i;
            if self.mapped[v] {
                let va = self.resv.ptr + (v * self.page_size) as u64;
                // SAFETY: page `v` is mapped (tracked), inside our reservation.
                unsafe { result::mem_unmap(va, self.page_size)? };
                self.mapped[v] = false;
            }
        }
        Ok(())
    }

    fn release(&mut self, phys: usize, n: usize) -> Result<(), BackendError> {
        if n == 0 || phys + n > self.pages.len() {
            return Err(BackendError::BadRange);
        }
        self.device.enter()?;
        for p in &mut self.pages[phys..phys + n] {
            *p = None;
        }
        Ok(())
    }

    fn copy_page(&mut self, src: usize, dst: usize) -> Result<(), BackendError> {
        self.with_scratch(src, Some(dst), |s0, s1, ps| {
            // SAFETY: both scratch pages are mapped for this closure.
            unsafe { result::memcpy_dtod(s1, s0, ps) }
        })
    }

    fn read_page(&mut self, phys: usize, out: &mut [u8]) -> Result<(), BackendError> {
        if out.len() != self.page_size {
            return Err(BackendError::BadRange);
        }
        self.with_scratch(phys, None, |s0, _, _| {
            // SAFETY: the scratch page is mapped for this closure.
            unsafe { result::memcpy_dtoh(out, s0) }
        })
    }

    fn write_page(&mut self, phys: usize, data: &[u8]) -> Result<(), BackendError> {
        if data.len() != self.page_size {
            return Err(BackendError::BadRange);
        }
        self.with_scratch(phys, None, |s0, _, _| {
            // SAFETY: the scratch page is mapped for this closure.
            unsafe { result::memcpy_htod(s0, data) }
        })
    }

    fn read_virt(&self, off: usize, out: &mut [u8]) -> Result<(), BackendError> {
        self.check_virt(off, out.len())?;
        let first = off / self.page_size;
        let last = (off + out.len() - 1) / self.page_size;
        if !self.mapped[first..=last].iter().all(|&m| m) {
            return Err(BackendError::BadRange);
        }
        self.device.enter()?;
        // SAFETY: every page of the range is mapped (checked above).
        unsafe { result::memcpy_dtoh(out, self.resv.ptr + off as u64) }
    }

    fn write_virt(&mut self, off: usize, data: &[u8]) -> Result<(), BackendError> {
        self.check_virt(off, data.len())?;
        let first = off / self.page_size;
        let last = (off + data.len() - 1) / self.page_size;
        if !self.mapped[first..=last].iter().all(|&m| m) {
            return Err(BackendError::BadRange);
        }
        self.device.enter()?;
        // SAFETY: every page of the range is mapped (checked above).
        unsafe { result::memcpy_htod(self.resv.ptr + off as u64, data) }
    }

    fn pool_view(&self) -> Option<usize> {
        None
    }
}

impl Drop for CudaBackend {
    fn drop(&mut self) {
        let _ = self.device.enter();
        for v in 0..self.mapped.len() {
            if self.mapped[v] {
                let va = self.resv.ptr + (v * self.page_size) as u64;
                // SAFETY: tracked as mapped inside our reservation; nothing uses it now.
                let _ = unsafe { result::mem_unmap(va, self.page_size) };
            }
        }
    }
}
