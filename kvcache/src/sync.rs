//! Synchronisation primitives, switched between std and loom (STYLE §7): no other
//! file imports `std::sync` directly.

#[cfg(not(engram_loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(engram_loom))]
pub(crate) use std::thread;

#[cfg(engram_loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(engram_loom)]
pub(crate) use loom::thread;
