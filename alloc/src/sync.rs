//! The allocator's only lock, and the atomics it is built on.
//!
//! `std::sync::Mutex` is not usable here: it cannot be held across the fork handlers
//! (prepare locks, parent/child unlock) and its poisoning path can panic. This is a
//! futex lock (Drepper's "Futexes are tricky", mutex 3): a short spin, then the
//! waiter sleeps in the kernel until the holder wakes it. Sleeping, not yielding,
//! matters: under SCHED_FIFO a high-priority waiter that calls `sched_yield` never
//! lets a preempted lower-priority holder run again (a livelock,
//! `tests/c/rt_lock.c`). It never allocates. Under `--cfg engram_loom` it is
//! built on loom's atomics, with a futex wait that yields (a futex wait may
//! return at any time, so this is a valid model of it), and modelled in
//! `loom_models`.

#[cfg(not(engram_loom))]
pub(crate) use core::sync::atomic::{AtomicU8, AtomicU32, AtomicUsize, Ordering};
#[cfg(engram_loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicU32, AtomicUsize, Ordering};

use core::cell::UnsafeCell;

/// A spin-then-sleep lock protecting a `T`.
///
/// Invariant: `state` is 0 when the lock is free, 1 when held with no sleeper,
/// 2 when held and a waiter may be asleep on it (the unlock then wakes one);
/// `value` is reached only while one `SpinGuard` (or a `force_lock` without
/// its `force_unlock`) exists. While a `force_lock` holds it, the thread that
/// called it (`forker`) may take nested guards, one at a time (no code path
/// takes a lock it already holds).
pub struct SpinLock<T> {
    state: AtomicU32,
    /// The thread holding the lock through [`force_lock`](Self::force_lock)
    /// (the forking thread, from the fork prepare handler), 0 otherwise.
    forker: AtomicUsize,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `value` to one thread at a time, so the lock
// is Sync whenever `T` can be sent between threads.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the `T` it owns.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A new unlocked lock.
    #[cfg(not(engram_loom))]
    pub const fn new(value: T) -> Self {
        SpinLock {
            state: AtomicU32::new(0),
            forker: AtomicUsize::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// A new unlocked lock (loom atomics are not const-constructible).
    #[cfg(engram_loom)]
    pub fn new(value: T) -> Self {
        SpinLock {
            state: AtomicU32::new(0),
            forker: AtomicUsize::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Take the lock.
    #[inline]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        if self
            .state
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return self.lock_contended();
        }
        SpinGuard {
            lock: self,
            nested: false,
        }
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) -> SpinGuard<'_, T> {
        // The forking thread holds every lock between the fork prepare handler
        // and fork's return; a prepare handler registered before ours (by a
        // library whose constructor ran before engram's) runs after ours and
        // may allocate. That thread uses the lock it holds instead of waiting
        // for itself (glibc's malloc takes its locks after every handler).
        let me = thread_id();
        if me != 0 && self.forker.load(Ordering::Relaxed) == me {
            return SpinGuard {
                lock: self,
                nested: true,
            };
        }
        if !cfg!(engram_loom) {
            // A holder on another CPU usually lets go within a few hundred cycles.
            for _ in 0..64 {
                core::hint::spin_loop();
                if self.state.load(Ordering::Relaxed) == 0
                    && self
                        .state
                        .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    return SpinGuard {
                        lock: self,
                        nested: false,
                    };
                }
            }
        }
        // Mark the lock contended and sleep until it is free; whoever takes it
        // this way leaves it marked 2, so its unlock wakes the next sleeper.
        while self.state.swap(2, Ordering::Acquire) != 0 {
            futex_wait(&self.state, 2);
        }
        SpinGuard {
            lock: self,
            nested: false,
        }
    }

    /// Whether a thread may be sleeping for the lock (held by the caller).
    pub fn contended(&self) -> bool {
        self.state.load(Ordering::Relaxed) == 2
    }

    /// Release the lock, waking one sleeper if there may be one.
    #[inline]
    fn unlock(&self) {
        if self.state.swap(0, Ordering::Release) == 2 {
            futex_wake(&self.state);
        }
    }

    /// Take the lock without a guard (fork prepare handler); until
    /// [`force_unlock`](Self::force_unlock), this thread may still take it.
    pub fn force_lock(&self) {
        core::mem::forget(self.lock());
        self.forker.store(thread_id(), Ordering::Relaxed);
    }

    /// Release a lock taken by [`force_lock`](Self::force_lock).
    ///
    /// # Safety
    /// The lock is held through `force_lock` and no guard refers to it.
    pub unsafe fn force_unlock(&self) {
        self.forker.store(0, Ordering::Relaxed);
        self.unlock();
    }
}

/// This thread's identity for [`SpinLock::force_lock`]; 0 = none (under loom,
/// whose threads share one OS thread, no thread is ever the forker).
#[cfg(not(engram_loom))]
fn thread_id() -> usize {
    // SAFETY: pthread_self has no preconditions and does not allocate.
    unsafe { libc::pthread_self() as usize }
}

#[cfg(engram_loom)]
fn thread_id() -> usize {
    0
}

/// Sleep while `*word == val` (returns at once if it is not, or on any wake).
#[cfg(not(engram_loom))]
fn futex_wait(word: &AtomicU32, val: u32) {
    // SAFETY: `word` is a live, aligned u32 for the whole call; FUTEX_WAIT only
    // reads it, and with a null timeout has no other pointer argument. Errors
    // (EAGAIN: the value changed; EINTR) mean "look again", which the caller
    // does; errno is put back, so a malloc that waited leaves it alone.
    crate::os::keeping_errno(|| unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            val,
            core::ptr::null::<libc::timespec>(),
        )
    });
}

/// Wake one thread sleeping in [`futex_wait`] on `word`.
#[cfg(not(engram_loom))]
fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE does not touch memory.
    crate::os::keeping_errno(|| unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        )
    });
}

/// Under loom a futex wait is a yield: a real one may return spuriously at any
/// time, so the protocol must already hold when it returns at once.
#[cfg(engram_loom)]
fn futex_wait(word: &AtomicU32, val: u32) {
    let _ = (word, val);
    loom::thread::yield_now();
}

#[cfg(engram_loom)]
fn futex_wake(word: &AtomicU32) {
    let _ = word;
}

/// Access to the value of a held [`SpinLock`]; unlocks on drop, unless it
/// was taken inside the forking thread's [`SpinLock::force_lock`] (`nested`).
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    nested: bool,
}

impl<T> core::ops::Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the lock is held (type invariant), so no
        // other reference to the value exists.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> core::ops::DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only access.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        if !self.nested {
            self.lock.unlock();
        }
    }
}

/// A slot's live byte: never handed out to the program (its slab's metadata
/// starts zeroed).
pub const UNUSED: u8 = 0;
/// A slot's live byte: handed out and not freed.
pub const LIVE: u8 = 1;
/// A slot's live byte: handed out once and freed since.
pub const FREED: u8 = 2;

/// Mark a slot live as it is handed out; returns whether it already was (a slot
/// handed out twice: metadata corruption). A plain load and store, not an RMW: the
/// slot reached this thread through its arena's lock or this thread's own cache, both
/// ordered after the free that cleared the byte, so nobody else writes it now.
#[inline]
pub fn mark_live(b: &AtomicU8) -> bool {
    let was = b.load(Ordering::Relaxed) == LIVE;
    b.store(LIVE, Ordering::Relaxed);
    was
}

/// Mark a slot freed; returns the state it was in ([`LIVE`] for a good free;
/// [`FREED`]: a double free; [`UNUSED`]: never handed out, an invalid pointer).
/// Two threads freeing the same slot race on this one swap: exactly one sees
/// [`LIVE`], the other reports the double free.
#[inline]
pub fn clear_live(b: &AtomicU8) -> u8 {
    b.swap(FREED, Ordering::AcqRel)
}
