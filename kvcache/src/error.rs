//! The crate's one public error type (hand-written, STYLE §5).

use core::fmt;

/// Errors of the backend layer (OS or driver calls).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendError {
    /// An OS call failed: which call and its errno.
    Os { call: &'static str, errno: i32 },
    /// The CUDA driver library could not be loaded (no GPU stack on this machine).
    NoDriver,
    /// A CUDA driver call failed: which call and the driver's result code.
    Driver { call: &'static str, code: u32 },
    /// A range outside what the backend owns, or misaligned.
    BadRange,
    /// A read or write through the reservation touches a page nothing is mapped at.
    NotMapped,
    /// The pool is bigger than the memory this process may use (MemAvailable,
    /// or its cgroup's limit less its usage): committing it would end in the
    /// OOM killer, not an error.
    OutOfMemory {
        /// Bytes the pool needs.
        wanted: usize,
        /// Bytes available.
        available: usize,
    },
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Os { call, errno } => write!(f, "{call} failed: errno {errno}"),
            Self::NoDriver => f.write_str("libcuda not found: no CUDA driver on this machine"),
            Self::Driver { call, code } => write!(f, "{call} failed: CUresult {code}"),
            Self::BadRange => f.write_str("range outside the backend's reservation or misaligned"),
            Self::NotMapped => f.write_str("no page is mapped in that part of the reservation"),
            Self::OutOfMemory { wanted, available } => write!(
                f,
                "a pool of {} MiB is more than the {} MiB of memory available",
                wanted >> 20,
                available >> 20
            ),
        }
    }
}

impl std::error::Error for BackendError {}

/// Errors of the KV cache.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is inconsistent; the message says which relation fails.
    Config(&'static str),
    /// No request with this id was ever admitted.
    UnknownRequest(u64),
    /// The request was already freed (double free).
    AlreadyFreed(u64),
    /// The request is swapped out and must be swapped in first (or it is not swapped out).
    WrongState { id: u64, state: &'static str },
    /// The context would exceed the configured maximum.
    ContextTooLong { requested: usize, max: usize },
    /// Every batch slot is taken.
    NoFreeSlot,
    /// Not enough physical pages even after evicting every reclaimable one.
    PoolExhausted { needed: usize, available: usize },
    /// Mapping more pages would pass the kernel's vm.max_map_count budget.
    MapLimit { needed: usize, limit: usize },
    /// A position or layer outside the request's or model's bounds.
    OutOfBounds,
    /// The swap sink or source failed.
    Swap(String),
    /// A trace line could not be parsed (1-based line number, what was wrong).
    Trace { line: usize, what: &'static str },
    /// The backend failed. The operation that saw it changed nothing: the pages it
    /// had mapped were put back as they were.
    Backend(BackendError),
    /// A backend call failed and so did putting the mappings back: the virtual
    /// tensors no longer match the bookkeeping, and every later call refuses with
    /// this error (what failed first, as text). Drop the cache.
    Poisoned(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(why) => write!(f, "bad configuration: {why}"),
            Self::UnknownRequest(id) => write!(f, "unknown request {id}"),
            Self::AlreadyFreed(id) => write!(f, "request {id} already freed"),
            Self::WrongState { id, state } => write!(f, "request {id} is {state}"),
            Self::ContextTooLong { requested, max } => {
                write!(
                    f,
                    "context of {requested} tokens exceeds the maximum of {max}"
                )
            }
            Self::NoFreeSlot => f.write_str("no free batch slot"),
            Self::PoolExhausted { needed, available } => write!(
                f,
                "page pool exhausted: {needed} pages needed, {available} reclaimable ({} missing)",
                needed - available
            ),
            Self::MapLimit { needed, limit } => write!(
                f,
                "would need {needed} mappings, over the budget of {limit} under vm.max_map_count"
            ),
            Self::OutOfBounds => f.write_str("position or layer out of bounds"),
            Self::Swap(why) => write!(f, "swap failed: {why}"),
            Self::Trace { line, what } => write!(f, "trace line {line}: {what}"),
            Self::Backend(e) => write!(f, "backend: {e}"),
            Self::Poisoned(why) => write!(
                f,
                "cache unusable: a backend failure could not be undone ({why})"
            ),
        }
    }
}

/// No `source`: the message already carries the backend error's text, and an
/// error chain printer (anyhow's `{:#}`) would print it twice (review finding).
impl std::error::Error for Error {}

impl From<BackendError> for Error {
    fn from(e: BackendError) -> Self {
        Self::Backend(e)
    }
}
