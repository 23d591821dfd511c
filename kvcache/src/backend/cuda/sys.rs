//! The cudarc driver bindings we use (dynamically loaded `libcuda`).

pub(crate) use cudarc::driver::sys::{
    CUcontext, CUdevice, CUdeviceptr, CUmemAccess_flags, CUmemAccessDesc,
    CUmemAllocationGranularity_flags, CUmemAllocationHandleType, CUmemAllocationProp,
    CUmemAllocationType, CUmemGenericAllocationHandle, CUmemLocation, CUmemLocationType, CUresult,
};

/// Whether `libcuda` can be loaded. cudarc panics on the first driver call when it
/// cannot, so every entry point asks this first.
pub(crate) fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the driver library by its usual names; loading it
    // runs its initialisers, which is what any later call would do anyway.
    unsafe { cudarc::driver::sys::is_culib_present() }
}
