//! The worker's wake-up: a generation counter under a mutex plus a condvar.
//!
//! Property (loom model below): every `notify` before `shutdown` is seen by the
//! waiter before it exits; no wake-up is lost, several may coalesce. Kept free of
//! the rest of the crate so the models can also be run stand-alone.

use crate::sync::{Condvar, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct SignalState {
    generation: u64,
    shutdown: bool,
}

/// A coalescing wake-up with shutdown.
#[derive(Debug, Default)]
pub struct Signal {
    state: Mutex<SignalState>,
    cv: Condvar,
}

impl Signal {
    /// A new signal at generation 0.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, SignalState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Announce new work.
    pub fn notify(&self) {
        self.lock().generation += 1;
        self.cv.notify_one();
    }

    /// Ask the waiter to exit once it has seen every generation.
    pub fn shutdown(&self) {
        self.lock().shutdown = true;
        self.cv.notify_one();
    }

    /// Wait for a generation newer than `seen`; `None` once shut down with nothing new.
    pub fn wait(&self, seen: u64) -> Option<u64> {
        let mut st = self.lock();
        loop {
            if st.generation != seen {
                return Some(st.generation);
            }
            if st.shutdown {
                return None;
            }
            st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(all(test, engram_loom))]
mod loom_signal {
    use super::*;
    use crate::sync::{Arc, thread};

    /// Every notification before shutdown is observed: the worker's last seen
    /// generation equals the final one, whatever the interleaving.
    #[test]
    fn no_lost_wakeup() {
        loom::model(|| {
            let s = Arc::new(Signal::new());
            let w = {
                let s = Arc::clone(&s);
                thread::spawn(move || {
                    let mut seen = 0;
                    while let Some(g) = s.wait(seen) {
                        seen = g;
                    }
                    seen
                })
            };
            s.notify();
            s.notify();
            s.shutdown();
            assert_eq!(w.join().unwrap(), 2);
        });
    }

    /// Worker prefetch and scheduler consumption under one lock: the scheduler
    /// always ends with its page mapped exactly once (by itself or the worker).
    #[test]
    fn prefetch_handoff() {
        loom::model(|| {
            // (mapped pages, pages needed, stalls, prefetched)
            let m = Arc::new(Mutex::new((0u32, 0u32, 0u32, 0u32)));
            let s = Arc::new(Signal::new());
            let w = {
                let (m, s) = (Arc::clone(&m), Arc::clone(&s));
                thread::spawn(move || {
                    let mut seen = 0;
                    while let Some(g) = s.wait(seen) {
                        seen = g;
                        let mut st = m.lock().unwrap();
                        if st.0 < st.1 + 1 {
                            st.0 += 1;
                            st.3 += 1;
                        }
                    }
                })
            };
            s.notify();
            {
                let mut st = m.lock().unwrap();
                st.1 += 1;
                if st.0 < st.1 {
                    st.0 += 1;
                    st.2 += 1;
                }
            }
            s.shutdown();
            w.join().unwrap();
            let st = *m.lock().unwrap();
            assert!(st.0 >= st.1);
            assert_eq!(st.0, st.2 + st.3);
            assert!(st.0 <= st.1 + 1);
        });
    }
}
