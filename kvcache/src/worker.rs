//! The cache shared between the scheduler thread and a background mapping worker.
//!
//! The scheduler holds the lock for each operation; the worker, woken by
//! [`SharedCache::kick`] after each step, takes the lock and maps free pages up to
//! `lookahead` tokens past every live request ([`KvCache::prefetch`]) after
//! restoring the free-page watermarks ([`KvCache::reclaim`]), so the next
//! decode appends find their pages mapped. An append that still has to map counts
//! as a worker stall.
//!
//! The wake-up protocol is [`Signal`]; its loom models live in `signal.rs`.

use crate::backend::Backend;
use crate::cache::KvCache;
use crate::signal::Signal;
use crate::sync::{Arc, Mutex, MutexGuard, thread};

/// A [`KvCache`] behind a lock, with an optional background mapping worker.
pub struct SharedCache<B: Backend + 'static> {
    cache: Arc<Mutex<KvCache<B>>>,
    signal: Arc<Signal>,
    worker: Option<thread::JoinHandle<()>>,
}

impl<B: Backend + 'static> SharedCache<B> {
    /// Share `cache`; with `lookahead > 0` start a worker mapping that many tokens ahead.
    pub fn new(mut cache: KvCache<B>, lookahead: usize) -> Self {
        cache.set_worker_attached(lookahead > 0);
        let cache = Arc::new(Mutex::new(cache));
        let signal = Arc::new(Signal::new());
        let worker = (lookahead > 0).then(|| {
            let (c, s) = (Arc::clone(&cache), Arc::clone(&signal));
            thread::spawn(move || {
                let mut seen = 0;
                while let Some(g) = s.wait(seen) {
                    seen = g;
                    let mut guard = c.lock().unwrap_or_else(|p| p.into_inner());
                    // A failed prefetch only means the next append maps by itself;
                    // a failed reclaim leaves pages for the next pass.
                    let _ = guard.reclaim();
                    let _ = guard.prefetch(lookahead);
                }
            })
        });
        Self {
            cache,
            signal,
            worker,
        }
    }

    /// Lock the cache for one or more operations.
    pub fn lock(&self) -> MutexGuard<'_, KvCache<B>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wake the worker (after a step) to map ahead.
    pub fn kick(&self) {
        self.signal.notify();
    }
}

impl<B: Backend + 'static> Drop for SharedCache<B> {
    fn drop(&mut self) {
        self.signal.shutdown();
        if let Some(h) = self.worker.take() {
            let _ = h.join();
        }
    }
}
