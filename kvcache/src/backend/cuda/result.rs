//! One thin `Result`-returning function per driver call (STYLE §2): every `unsafe`
//! block of the CUDA backend lives here.

use core::ffi::c_void;
use core::mem::MaybeUninit;

use super::sys::{self, CUresult};
use crate::error::BackendError;

use cudarc::driver::sys as drv;

fn check(call: &'static str, r: CUresult) -> Result<(), BackendError> {
    if r == CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(BackendError::Driver {
            call,
            code: r as u32,
        })
    }
}

/// `cuInit(0)` after checking that the driver library exists.
pub(crate) fn init() -> Result<(), BackendError> {
    if !sys::driver_present() {
        return Err(BackendError::NoDriver);
    }
    // SAFETY: the library is present (checked above), so cudarc's loader cannot
    // panic; cuInit takes no pointers.
    check("cuInit", unsafe { drv::cuInit(0) })
}

/// Number of devices. Requires [`init`].
pub(crate) fn device_count() -> Result<i32, BackendError> {
    let mut n = 0;
    // SAFETY: `n` is a valid out-pointer; init ran (caller contract of this module).
    check("cuDeviceGetCount", unsafe { drv::cuDeviceGetCount(&mut n) })?;
    Ok(n)
}

/// Device handle of ordinal `i`.
pub(crate) fn device_get(i: i32) -> Result<sys::CUdevice, BackendError> {
    let mut d = 0;
    // SAFETY: valid out-pointer.
    check("cuDeviceGet", unsafe { drv::cuDeviceGet(&mut d, i) })?;
    Ok(d)
}

/// Retain the primary context of `dev`.
pub(crate) fn primary_ctx_retain(dev: sys::CUdevice) -> Result<sys::CUcontext, BackendError> {
    let mut c = MaybeUninit::uninit();
    // SAFETY: valid out-pointer; written on success, read only then.
    check("cuDevicePrimaryCtxRetain", unsafe {
        drv::cuDevicePrimaryCtxRetain(c.as_mut_ptr(), dev)
    })?;
    // SAFETY: the call succeeded, so the context was written.
    Ok(unsafe { c.assume_init() })
}

/// Release the primary context of `dev` (one per retain).
pub(crate) fn primary_ctx_release(dev: sys::CUdevice) -> Result<(), BackendError> {
    // SAFETY: no pointers; balanced with a retain by the RAII owner.
    check("cuDevicePrimaryCtxRelease", unsafe {
        drv::cuDevicePrimaryCtxRelease_v2(dev)
    })
}

/// Make `ctx` current on the calling thread.
///
/// # Safety
/// `ctx` is a live context (retained and not yet released).
pub(crate) unsafe fn ctx_set_current(ctx: sys::CUcontext) -> Result<(), BackendError> {
    // SAFETY: the caller guarantees `ctx` is live.
    check("cuCtxSetCurrent", unsafe { drv::cuCtxSetCurrent(ctx) })
}

/// Pinned device memory on `dev`, no exportable handle.
pub(crate) fn device_prop(dev: sys::CUdevice) -> sys::CUmemAllocationProp {
    // SAFETY: the struct is plain old data for which all-zero is valid: a null
    // pointer, byte fields, and enums whose 0 is their `*_INVALID` variant.
    let mut p: sys::CUmemAllocationProp = unsafe { core::mem::zeroed() };
    p.type_ = sys::CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED;
    p.requestedHandleTypes = sys::CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_NONE;
    p.location = sys::CUmemLocation {
        type_: sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
        id: dev,
    };
    p
}

/// Minimum mapping granularity for `prop`.
pub(crate) fn granularity(prop: &sys::CUmemAllocationProp) -> Result<usize, BackendError> {
    let mut g = 0usize;
    // SAFETY: valid out-pointer and a valid prop struct.
    check("cuMemGetAllocationGranularity", unsafe {
        drv::cuMemGetAllocationGranularity(
            &mut g,
            prop,
            sys::CUmemAllocationGranularity_flags::CU_MEM_ALLOC_GRANULARITY_MINIMUM,
        )
    })?;
    Ok(g)
}

/// Reserve `len` bytes of device address space aligned to `align`.
pub(crate) fn address_reserve(len: usize, align: usize) -> Result<sys::CUdeviceptr, BackendError> {
    let mut p = 0;
    // SAFETY: valid out-pointer; no fixed address requested.
    check("cuMemAddressReserve", unsafe {
        drv::cuMemAddressReserve(&mut p, len, align, 0, 0)
    })?;
    Ok(p)
}

/// Free a reservation.
///
/// # Safety
/// `(p, len)` is exactly one reservation of ours with nothing mapped in it.
pub(crate) unsafe fn address_free(p: sys::CUdeviceptr, len: usize) -> Result<(), BackendError> {
    // SAFETY: caller contract.
    check("cuMemAddressFree", unsafe { drv::cuMemAddressFree(p, len) })
}

/// Create `len` bytes of physical memory.
pub(crate) fn mem_create(
    len: usize,
    prop: &sys::CUmemAllocationProp,
) -> Result<sys::CUmemGenericAllocationHandle, BackendError> {
    let mut h = 0;
    // SAFETY: valid out-pointer and prop.
    check("cuMemCreate", unsafe {
        drv::cuMemCreate(&mut h, len, prop, 0)
    })?;
    Ok(h)
}

/// Release physical memory.
///
/// # Safety
/// `h` is a live handle of ours, released once; mappings of it keep the memory
/// alive until unmapped (driver semantics), so this never frees mapped memory.
pub(crate) unsafe fn mem_release(h: sys::CUmemGenericAllocationHandle) -> Result<(), BackendError> {
    // SAFETY: caller contract.
    check("cuMemRelease", unsafe { drv::cuMemRelease(h) })
}

/// Map `h` at `p` and make it read-write for `dev`.
///
/// # Safety
/// `[p, p+len)` lies in a reservation of ours and is currently unmapped; `h` is live
/// and at least `len` bytes.
pub(crate) unsafe fn mem_map(
    p: sys::CUdeviceptr,
    len: usize,
    h: sys::CUmemGenericAllocationHandle,
    dev: sys::CUdevice,
) -> Result<(), BackendError> {
    // SAFETY: caller contract.
    check("cuMemMap", unsafe { drv::cuMemMap(p, len, 0, h, 0) })?;
    let desc = sys::CUmemAccessDesc {
        location: sys::CUmemLocation {
            type_: sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
            id: dev,
        },
        flags: sys::CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
    };
    // SAFETY: the range was just mapped; `desc` is one valid descriptor.
    let access = check("cuMemSetAccess", unsafe {
        drv::cuMemSetAccess(p, len, &desc, 1)
    });
    if access.is_err() {
        // Leave the range as it was, unmapped: the caller records it as not
        // mapped, and a mapping left behind would make the next map of this
        // address fail and be skipped at drop (review suspicion, 2026-11-25;
        // not reproducible without a GPU).
        // SAFETY: mapped just above by us; no kernel can use it yet (no access).
        let _ = unsafe { drv::cuMemUnmap(p, len) };
    }
    access
}

/// Unmap `[p, p+len)`.
///
/// # Safety
/// The range is mapped, inside a reservation of ours, and no kernel uses it.
pub(crate) unsafe fn mem_unmap(p: sys::CUdeviceptr, len: usize) -> Result<(), BackendError> {
    // SAFETY: caller contract.
    check("cuMemUnmap", unsafe { drv::cuMemUnmap(p, len) })
}

/// Device-to-device copy.
///
/// # Safety
/// Both ranges are mapped device memory of at least `len` bytes.
pub(crate) unsafe fn memcpy_dtod(
    dst: sys::CUdeviceptr,
    src: sys::CUdeviceptr,
    len: usize,
) -> Result<(), BackendError> {
    // SAFETY: caller contract.
    check("cuMemcpyDtoD", unsafe {
        drv::cuMemcpyDtoD_v2(dst, src, len)
    })
}

/// Device-to-host copy into `out`.
///
/// # Safety
/// `[src, src+out.len())` is mapped device memory.
pub(crate) unsafe fn memcpy_dtoh(
    out: &mut [u8],
    src: sys::CUdeviceptr,
) -> Result<(), BackendError> {
    // SAFETY: caller contract for the source; `out` is a valid host buffer.
    check("cuMemcpyDtoH", unsafe {
        drv::cuMemcpyDtoH_v2(out.as_mut_ptr().cast::<c_void>(), src, out.len())
    })
}

/// Host-to-device copy of `data`.
///
/// # Safety
/// `[dst, dst+data.len())` is mapped device memory.
pub(crate) unsafe fn memcpy_htod(dst: sys::CUdeviceptr, data: &[u8]) -> Result<(), BackendError> {
    // SAFETY: caller contract for the destination; `data` is a valid host buffer.
    check("cuMemcpyHtoD", unsafe {
        drv::cuMemcpyHtoD_v2(dst, data.as_ptr().cast::<c_void>(), data.len())
    })
}
