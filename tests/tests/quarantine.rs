//! The quarantine delays reuse for every size, and one big free does not
//! empty it. Runs `engram_alloc::raw` in a fresh thread (the quarantine is
//! per thread) with the default options (`ENGRAM_MALLOC` unset under
//! `cargo test`).

use std::collections::HashSet;

use engram_alloc::raw;

/// Free `n` small blocks, then one block of `big` bytes (0: none), then
/// allocate `n` small blocks again: how many of the freed addresses came back.
fn reused_after(n: usize, big: usize) -> usize {
    std::thread::spawn(move || {
        // SAFETY: raw malloc/free pairs on blocks this thread owns; nothing is
        // read or written through a freed pointer (addresses are compared only).
        unsafe {
            let first: Vec<*mut u8> = (0..n).map(|_| raw::malloc(32)).collect();
            assert!(first.iter().all(|p| !p.is_null()));
            let freed: HashSet<usize> = first.iter().map(|&p| p as usize).collect();
            for p in first {
                raw::free(p);
            }
            if big > 0 {
                let b = raw::malloc(big);
                assert!(!b.is_null());
                raw::free(b);
            }
            let again: Vec<*mut u8> = (0..n).map(|_| raw::malloc(32)).collect();
            let back = again
                .iter()
                .filter(|&&p| freed.contains(&(p as usize)))
                .count();
            for p in again {
                raw::free(p);
            }
            back
        }
    })
    .join()
    .expect("quarantine thread")
}

#[test]
fn freed_slots_are_not_handed_straight_back() {
    assert_eq!(
        reused_after(48, 0),
        0,
        "the quarantine let freed slots through"
    );
}

#[test]
fn one_big_free_does_not_empty_the_quarantine() {
    // Slots of 60 KB and 120 KB: bigger than a quarter and than half of the
    // quarantine's byte cap as it once was (64 KiB), when such a free pushed
    // every quarantined slot back into the thread cache.
    for big in [60_000, 120_000] {
        assert_eq!(
            reused_after(48, big),
            0,
            "freeing a {big}-byte block sent quarantined slots back for reuse"
        );
    }
}
