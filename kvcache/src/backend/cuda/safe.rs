//! RAII owners of driver objects: dropping one releases it.

use super::result;
use super::sys;
use crate::error::BackendError;

/// A device with its primary context retained.
#[derive(Debug)]
pub(crate) struct Device {
    pub(crate) dev: sys::CUdevice,
    ctx: sys::CUcontext,
}

// SAFETY: a CUDA context is not tied to the thread that retained it; every method
// that calls the driver first makes it current on the calling thread (`enter`), and
// the owning backend is used by one thread at a time (`&mut self` / a lock above).
unsafe impl Send for Device {}

impl Device {
    /// Initialise the driver and retain device `ordinal`'s primary context.
    pub(crate) fn open(ordinal: i32) -> Result<Self, BackendError> {
        result::init()?;
        if result::device_count()? <= ordinal {
            return Err(BackendError::Driver {
                call: "cuDeviceGet (no such device)",
                code: 101,
            });
        }
        let dev = result::device_get(ordinal)?;
        let ctx = result::primary_ctx_retain(dev)?;
        let d = Self { dev, ctx };
        d.enter()?;
        Ok(d)
    }

    /// Make the context current on this thread.
    pub(crate) fn enter(&self) -> Result<(), BackendError> {
        // SAFETY: `ctx` stays retained until `self` drops.
        unsafe { result::ctx_set_current(self.ctx) }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = result::primary_ctx_release(self.dev);
    }
}

/// A device address range reservation.
#[derive(Debug)]
pub(crate) struct Reservation {
    pub(crate) ptr: sys::CUdeviceptr,
    pub(crate) len: usize,
}

impl Reservation {
    pub(crate) fn new(len: usize, align: usize) -> Result<Self, BackendError> {
        Ok(Self {
            ptr: result::address_reserve(len, align)?,
            len,
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: this is exactly one reservation of ours; the backend unmaps every
        // page in it before dropping it (see `CudaBackend::drop`).
        let _ = unsafe { result::address_free(self.ptr, self.len) };
    }
}

/// One physical page.
#[derive(Debug)]
pub(crate) struct PhysPage {
    pub(crate) handle: sys::CUmemGenericAllocationHandle,
}

impl PhysPage {
    pub(crate) fn new(len: usize, prop: &sys::CUmemAllocationProp) -> Result<Self, BackendError> {
        Ok(Self {
            handle: result::mem_create(len, prop)?,
        })
    }
}

impl Drop for PhysPage {
    fn drop(&mut self) {
        // SAFETY: the handle is ours and released once, here.
        let _ = unsafe { result::mem_release(self.handle) };
    }
}
