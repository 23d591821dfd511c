//! The central free-slot state of one size class: which slots of which slabs are
//! free to hand to a thread cache. Pure bookkeeping over out-of-band arrays; it is
//! always used under the class's [`SpinLock`](crate::sync::SpinLock), never touches
//! user memory, and is exercised as is by the loom and unit tests.
//!
//! ```text
//!  Central (per class and arena, under the arena's lock; slab indices are
//!  relative to the arena's first slab)
//!   head ─► slab 7 ─► slab 2 ─► slab 9 ─► slab 4 ◄─ tail
//!           partial   partial   empty     empty, decommitted
//!
//!  per slab: SlabMeta { free, frontier, next, prev, flags }
//!            free bitmap: 1 = slot is free in the central state
//! ```
//!
//! A slot is in exactly one place: free here (bit set), in some thread's cache or
//! quarantine, or live in the program (the live bitmap, kept by the heap). Slots at
//! or above `frontier` were never handed out since the slab was first committed,
//! so no pointer to them ever existed: they are known to be zero and need no
//! write-after-free check. Decommitting a slab does not lower its frontier.
//! Invariants (see [`Central::check_invariants`]):
//! - `free` equals the number of set bits of the slab's bitmap;
//! - a slab is on the list iff `free > 0`;
//! - `empty` counts the slabs with `free == nslots` that are not decommitted;
//! - `claimed` is the number of slots handed out of here and not yet returned.

/// "No slab" in list links.
pub const NONE: u32 = u32::MAX;
const DECOMMITTED: u32 = 1;

/// Per-slab bookkeeping, stored out of band in the metadata region.
#[repr(C)]
pub struct SlabMeta {
    /// Free slots in the bitmap. Changed under the arena lock.
    pub free: u32,
    /// Slots at or above this index were never claimed since the slab was first
    /// committed. Read and written under the arena lock only.
    pub frontier: u32,
    next: u32,
    prev: u32,
    flags: u32,
}

impl SlabMeta {
    /// Metadata of a slab that was never committed (what zeroed metadata pages hold,
    /// apart from the list links, which `add_slab` sets).
    pub fn unlinked() -> SlabMeta {
        SlabMeta {
            free: 0,
            frontier: 0,
            next: NONE,
            prev: NONE,
            flags: 0,
        }
    }
}

/// What a slab-array view needs: the metadata of the committed slabs and their free
/// bitmaps (`words` u64 per slab).
pub struct Slabs<'a> {
    /// One entry per committed slab.
    pub meta: &'a mut [SlabMeta],
    /// `words` bitmap words per slab, slab-major.
    pub bits: &'a mut [u64],
    /// Bitmap words per slab.
    pub words: usize,
    /// Slots per slab.
    pub nslots: u32,
}

/// A claimed slot: slab index, slot index, and whether it is fresh (never used).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claimed {
    /// Slab index in the class region.
    pub slab: u32,
    /// Slot index in the slab.
    pub slot: u32,
    /// Never handed out since commit: known to be zero.
    pub fresh: bool,
}

impl Claimed {
    /// A placeholder to fill claim buffers with.
    pub const BLANK: Claimed = Claimed {
        slab: 0,
        slot: 0,
        fresh: false,
    };
}

/// Returning a slot found its free bit already set: two owners for one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corrupt;

/// An arena's list heads and counters. Lives inside the arena's lock.
pub struct Central {
    head: u32,
    tail: u32,
    /// Empty slabs still holding pages.
    pub empty: u32,
    /// Committed slabs (slab indices `0..nslabs` exist).
    pub nslabs: u32,
    /// Slots handed out and not returned.
    pub claimed: u64,
    /// Decommitted slabs claimed from again since the caller last took this
    /// count ([`take_recommitted`](Self::take_recommitted)): their pages come
    /// back as they are touched.
    recommitted: u32,
}

impl Default for Central {
    fn default() -> Self {
        Self::new()
    }
}

impl Central {
    /// An empty class with no committed slab.
    pub const fn new() -> Self {
        Central {
            head: NONE,
            tail: NONE,
            empty: 0,
            nslabs: 0,
            claimed: 0,
            recommitted: 0,
        }
    }

    /// Set up the metadata of newly committed slab `nslabs` and put it on the list.
    fn add_slab(&mut self, s: &mut Slabs<'_>) {
        let idx = self.nslabs;
        let n = s.nslots as usize;
        let w = &mut s.bits[idx as usize * s.words..(idx as usize + 1) * s.words];
        for (i, word) in w.iter_mut().enumerate() {
            let lo = i * 64;
            *word = if lo + 64 <= n {
                u64::MAX
            } else if lo < n {
                (1u64 << (n - lo)) - 1
            } else {
                0
            };
        }
        let m = &mut s.meta[idx as usize];
        m.free = s.nslots;
        m.frontier = 0;
        m.flags = 0;
        self.nslabs += 1;
        self.empty += 1;
        self.push_head(s, idx);
    }

    /// Claim up to `out.len()` free slots from a slab chosen by list order: free
    /// slots below the slab's frontier first, lowest first from a word of that
    /// part picked with `rng`, then fresh ones from the frontier up. When no slab has free slots it
    /// calls `grow(index)` to commit slab `nslabs` (false: the region is full or the
    /// OS refused) and adds it. Returns how many slots were written to `out`.
    pub fn claim(
        &mut self,
        s: &mut Slabs<'_>,
        out: &mut [Claimed],
        rng: u64,
        mut grow: impl FnMut(u32) -> bool,
    ) -> usize {
        let mut got = 0;
        while got < out.len() {
            if self.head == NONE {
                if (self.nslabs as usize) >= s.meta.len() || !grow(self.nslabs) {
                    break;
                }
                self.add_slab(s);
            }
            let idx = self.head;
            got += self.claim_from(s, idx, &mut out[got..], rng);
        }
        self.claimed += got as u64;
        got
    }

    fn claim_from(&mut self, s: &mut Slabs<'_>, idx: u32, out: &mut [Claimed], rng: u64) -> usize {
        let base = idx as usize * s.words;
        let (free, frontier, decommitted) = {
            let m = &s.meta[idx as usize];
            (m.free, m.frontier, m.flags & DECOMMITTED != 0)
        };
        if free == s.nslots && !decommitted {
            self.empty -= 1;
        }
        // Free slots the program touched before come first, from a random word
        // of the touched part; fresh slots (at and above the frontier) only when
        // no touched one is free. Reaching past the frontier while touched slots
        // were free made every class's slabs creep towards fully touched: with
        // ~40 classes, two arenas and 1 MiB slabs, megabytes of RSS over a
        // small live set (xmalloc's peak RSS swung 1.2-2.3x glibc's).
        let fw = frontier as usize / 64;
        // Bits of word `wi` for slots below the frontier.
        let touched = |wi: usize| -> u64 {
            match wi.cmp(&fw) {
                core::cmp::Ordering::Less => !0,
                core::cmp::Ordering::Equal => (1u64 << (frontier % 64)) - 1,
                core::cmp::Ordering::Greater => 0,
            }
        };
        // Words holding a touched slot; the last one may be partly fresh.
        let touched_words = (frontier as usize).div_ceil(64).min(s.words);
        let fresh_free = s.nslots.saturating_sub(frontier);
        let mut got = 0;
        // Take the free slots of word `wi` under `mask`, lowest first; true
        // once `out` is full.
        let mut take = |word: &mut u64, wi: usize, mask: u64| {
            let mut avail = *word & mask;
            while avail != 0 && got < out.len() {
                let b = avail.trailing_zeros();
                avail &= avail - 1;
                *word &= !(1u64 << b);
                let slot = (wi * 64) as u32 + b;
                out[got] = Claimed {
                    slab: idx,
                    slot,
                    fresh: slot >= frontier,
                };
                got += 1;
            }
            got == out.len()
        };
        let mut full = false;
        if free > fresh_free && touched_words > 0 {
            let start = (rng % touched_words as u64) as usize;
            for k in 0..touched_words {
                let wi = (start + k) % touched_words;
                full = take(&mut s.bits[base + wi], wi, touched(wi));
                if full {
                    break;
                }
            }
        }
        for wi in fw..s.words {
            if full || take(&mut s.bits[base + wi], wi, !touched(wi)) {
                break;
            }
        }
        let new_frontier = out[..got].iter().fold(frontier, |f, c| f.max(c.slot + 1));
        let m = &mut s.meta[idx as usize];
        m.free -= got as u32;
        if got > 0 && decommitted {
            self.recommitted += 1;
        }
        m.flags &= !DECOMMITTED;
        m.frontier = new_frontier;
        if m.free == 0 {
            self.unlink(s, idx);
        }
        got
    }

    /// Return one slot to the free set. Returns `Ok(Some(slab))` when that slab is now
    /// empty beyond the `keep` budget and should be decommitted by the caller (the
    /// caller then calls [`decommitted`](Self::decommitted)).
    pub fn release(
        &mut self,
        s: &mut Slabs<'_>,
        slab: u32,
        slot: u32,
        keep: u32,
    ) -> Result<Option<u32>, Corrupt> {
        if slab >= self.nslabs || slot >= s.nslots {
            return Err(Corrupt);
        }
        let word = &mut s.bits[slab as usize * s.words + slot as usize / 64];
        let m = 1u64 << (slot % 64);
        if *word & m != 0 {
            return Err(Corrupt);
        }
        *word |= m;
        self.claimed -= 1;
        let free = {
            let meta = &mut s.meta[slab as usize];
            meta.free += 1;
            meta.free
        };
        if free == 1 {
            self.push_head(s, slab);
        }
        if free == s.nslots {
            // Empty: move behind the partial slabs so those fill first.
            self.unlink(s, slab);
            self.push_tail(s, slab);
            self.empty += 1;
            if self.empty > keep {
                return Ok(Some(slab));
            }
        }
        Ok(None)
    }

    /// Record that empty slab `slab` had its pages dropped. Its frontier stays:
    /// the slots below it were handed out before, so a stale pointer to one may
    /// still write into it (MADV_DONTNEED leaves the pages writable, and the
    /// write faults a page back in with its data), and they are checked at reuse
    /// like any freed slot. Resetting the frontier made them fresh: such a write
    /// went unreported and calloc handed the data out.
    pub fn decommitted(&mut self, s: &mut Slabs<'_>, slab: u32) {
        let m = &mut s.meta[slab as usize];
        debug_assert!(m.free == s.nslots && m.flags & DECOMMITTED == 0);
        m.flags |= DECOMMITTED;
        self.empty -= 1;
    }

    /// How many decommitted slabs were claimed from since the last call.
    pub fn take_recommitted(&mut self) -> u32 {
        core::mem::take(&mut self.recommitted)
    }

    /// Empty slabs that still hold pages (for trim).
    pub fn empty_slabs(&self, s: &Slabs<'_>, mut f: impl FnMut(u32)) {
        let mut i = self.head;
        while i != NONE {
            let m = &s.meta[i as usize];
            if m.free == s.nslots && m.flags & DECOMMITTED == 0 {
                f(i);
            }
            i = m.next;
        }
    }

    /// Every maximal run `[from, to)` of free slots of slab `i` that starts below
    /// the slab's frontier, as `f(from, to, frontier)`; nothing unless slab `i` is
    /// committed, partly used and holding pages (for trim: the pages such a run
    /// covers hold no live, cached or quarantined slot; empty slabs are dropped
    /// whole).
    pub fn slab_free_runs(&self, s: &Slabs<'_>, i: u32, mut f: impl FnMut(u32, u32, u32)) {
        if i >= self.nslabs {
            return;
        }
        let m = &s.meta[i as usize];
        if m.free == 0 || m.free >= s.nslots || m.flags & DECOMMITTED != 0 {
            return;
        }
        let bits = &s.bits[i as usize * s.words..(i as usize + 1) * s.words];
        let mut from = next_bit(bits, 0, true);
        while from < m.frontier {
            let to = next_bit(bits, from, false).min(s.nslots);
            f(from, to, m.frontier);
            from = next_bit(bits, to, true);
        }
    }

    fn push_head(&mut self, s: &mut Slabs<'_>, idx: u32) {
        let old = self.head;
        {
            let m = &mut s.meta[idx as usize];
            m.prev = NONE;
            m.next = old;
        }
        if old != NONE {
            s.meta[old as usize].prev = idx;
        } else {
            self.tail = idx;
        }
        self.head = idx;
    }

    fn push_tail(&mut self, s: &mut Slabs<'_>, idx: u32) {
        let old = self.tail;
        {
            let m = &mut s.meta[idx as usize];
            m.next = NONE;
            m.prev = old;
        }
        if old != NONE {
            s.meta[old as usize].next = idx;
        } else {
            self.head = idx;
        }
        self.tail = idx;
    }

    fn unlink(&mut self, s: &mut Slabs<'_>, idx: u32) {
        let (prev, next) = {
            let m = &s.meta[idx as usize];
            (m.prev, m.next)
        };
        if prev != NONE {
            s.meta[prev as usize].next = next;
        } else {
            self.head = next;
        }
        if next != NONE {
            s.meta[next as usize].prev = prev;
        } else {
            self.tail = prev;
        }
        let m = &mut s.meta[idx as usize];
        m.prev = NONE;
        m.next = NONE;
    }

    /// Check every invariant of the module docs; returns the first violated one.
    pub fn check_invariants(&self, s: &Slabs<'_>) -> Result<(), &'static str> {
        let mut on_list = 0u32;
        let mut i = self.head;
        let mut prev = NONE;
        while i != NONE {
            let m = &s.meta[i as usize];
            if m.prev != prev {
                return Err("list back link broken");
            }
            if m.free == 0 {
                return Err("full slab on the free list");
            }
            on_list += 1;
            if on_list > self.nslabs {
                return Err("list cycle");
            }
            prev = i;
            i = m.next;
        }
        if prev != self.tail {
            return Err("tail does not end the list");
        }
        let (mut empty, mut with_free, mut free_total) = (0u32, 0u32, 0u64);
        for idx in 0..self.nslabs as usize {
            let m = &s.meta[idx];
            let bits: u32 = s.bits[idx * s.words..(idx + 1) * s.words]
                .iter()
                .map(|w| w.count_ones())
                .sum();
            if bits != m.free {
                return Err("free count differs from bitmap");
            }
            if m.free > 0 {
                with_free += 1;
            }
            if m.free == s.nslots && m.flags & DECOMMITTED == 0 {
                empty += 1;
            }
            free_total += u64::from(m.free);
        }
        if with_free != on_list {
            return Err("a slab with free slots is off the list");
        }
        if empty != self.empty {
            return Err("empty count wrong");
        }
        if free_total + self.claimed != u64::from(self.nslabs) * u64::from(s.nslots) {
            return Err("claimed + free != capacity");
        }
        Ok(())
    }
}

/// The first slot index at or after `from` whose bit is `set` (or is clear),
/// `bits.len() * 64` if none.
fn next_bit(bits: &[u64], from: u32, set: bool) -> u32 {
    let mut wi = from as usize / 64;
    if wi >= bits.len() {
        return (bits.len() * 64) as u32;
    }
    let mut w = if set { bits[wi] } else { !bits[wi] } & (!0u64 << (from % 64));
    loop {
        if w != 0 {
            return (wi * 64) as u32 + w.trailing_zeros();
        }
        wi += 1;
        if wi == bits.len() {
            return (bits.len() * 64) as u32;
        }
        w = if set { bits[wi] } else { !bits[wi] };
    }
}

#[cfg(all(test, not(engram_loom)))]
mod tests {
    use super::*;

    struct Owned {
        meta: Vec<SlabMeta>,
        bits: Vec<u64>,
        words: usize,
        nslots: u32,
    }

    impl Owned {
        fn new(max_slabs: usize, nslots: u32) -> Self {
            let words = (nslots as usize).div_ceil(64);
            Owned {
                meta: (0..max_slabs).map(|_| SlabMeta::unlinked()).collect(),
                bits: vec![0; max_slabs * words],
                words,
                nslots,
            }
        }
        fn view(&mut self) -> Slabs<'_> {
            Slabs {
                meta: &mut self.meta,
                bits: &mut self.bits,
                words: self.words,
                nslots: self.nslots,
            }
        }
    }

    /// RSS stays compact: slots released below the frontier are claimed again
    /// before any fresh slot past it, wherever the random start word falls.
    #[test]
    fn released_slots_go_out_before_fresh_ones() {
        for rng in [0u64, 1, 2, 3, 77, u64::MAX] {
            let mut o = Owned::new(1, 1000);
            let mut c = Central::new();
            let mut out = [Claimed::BLANK; 200];
            assert_eq!(c.claim(&mut o.view(), &mut out, rng, |_| true), 200);
            let firsts: Vec<u32> = out.iter().map(|cl| cl.slot).collect();
            for &slot in firsts.iter().step_by(20) {
                c.release(&mut o.view(), 0, slot, 1).unwrap();
            }
            let mut again = [out[0]; 16];
            assert_eq!(c.claim(&mut o.view(), &mut again, rng, |_| false), 16);
            let (reused, fresh): (Vec<Claimed>, Vec<Claimed>) =
                again.iter().partition(|cl| !cl.fresh);
            assert_eq!(reused.len(), 10, "rng {rng}: every released slot first");
            assert!(reused.iter().all(|cl| cl.slot < 200));
            let fresh: Vec<u32> = fresh.iter().map(|cl| cl.slot).collect();
            assert_eq!(fresh, (200..206).collect::<Vec<u32>>(), "rng {rng}");
            c.check_invariants(&o.view()).unwrap();
        }
    }

    /// slab_free_runs reports exactly the maximal runs of free slots that start
    /// below the frontier, of partly used slabs only.
    #[test]
    fn free_runs_are_the_free_slots_below_the_frontier() {
        for rng in [0u64, 5, 99] {
            let mut o = Owned::new(2, 300);
            let mut c = Central::new();
            let mut out = [Claimed::BLANK; 450];
            assert_eq!(c.claim(&mut o.view(), &mut out, rng, |_| true), 450);
            // Slab 0 full (300), slab 1 has 150 claimed: frontier 150.
            let mut freed = std::collections::BTreeSet::new();
            for (k, cl) in out.iter().enumerate() {
                if k % 7 < 3 || (70..140).contains(&k) {
                    c.release(&mut o.view(), cl.slab, cl.slot, 8).unwrap();
                    freed.insert((cl.slab, cl.slot));
                }
            }
            let mut seen = Vec::new();
            let v = o.view();
            for slab in 0..3 {
                c.slab_free_runs(&v, slab, |from, to, frontier| {
                    seen.push((slab, from, to, frontier))
                });
            }
            let mut want = Vec::new();
            for slab in 0..2u32 {
                let frontier = v.meta[slab as usize].frontier;
                let free = |i: u32| i < 300 && (i >= frontier || freed.contains(&(slab, i)));
                let mut i = 0;
                while i < frontier {
                    if free(i) && (i == 0 || !free(i - 1)) {
                        let mut j = i;
                        while j < 300 && free(j) {
                            j += 1;
                        }
                        want.push((slab, i, j, frontier));
                    }
                    i += 1;
                }
            }
            seen.sort_unstable();
            assert_eq!(seen, want, "rng {rng}");
            assert!(
                seen.iter().any(|r| r.0 == 1 && r.2 == 300),
                "a run reaching the end"
            );
        }
    }

    #[test]
    fn claim_release_roundtrip_keeps_invariants() {
        let mut o = Owned::new(4, 100);
        let mut c = Central::new();
        let mut out = [Claimed::BLANK; 64];
        let mut seen = std::collections::HashSet::new();
        let mut all = Vec::new();
        for r in 0..6u64 {
            let n = c.claim(&mut o.view(), &mut out, r * 7919, |_| true);
            assert_eq!(n, 64);
            for cl in &out[..n] {
                assert!(cl.fresh);
                assert!(seen.insert((cl.slab, cl.slot)), "slot handed out twice");
                all.push(*cl);
            }
            c.check_invariants(&o.view()).unwrap();
        }
        // 400 slots in 4 slabs; 384 claimed.
        assert_eq!(c.claimed, 384);
        let mut decommits = 0;
        for cl in &all {
            if let Some(s) = c.release(&mut o.view(), cl.slab, cl.slot, 1).unwrap() {
                c.decommitted(&mut o.view(), s);
                decommits += 1;
            }
            c.check_invariants(&o.view()).unwrap();
        }
        assert_eq!(decommits, 3);
        assert_eq!(
            c.release(&mut o.view(), all[0].slab, all[0].slot, 1),
            Err(Corrupt)
        );
        // Slots handed out before are never fresh again, decommitted or not: a
        // stale pointer may have written into one after its pages were dropped.
        let n = c.claim(&mut o.view(), &mut out, 0, |_| false);
        assert_eq!(n, 64);
        assert!(out[..n].iter().all(|cl| !cl.fresh));
        c.check_invariants(&o.view()).unwrap();
    }
}
