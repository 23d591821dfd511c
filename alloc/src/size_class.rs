//! Size classes and the slab geometry of each.
//!
//! Class 0 holds `malloc(0)`: 16-byte slots in a region that is never made
//! accessible, so every zero-size allocation is a unique pointer that faults on use.
//! Classes 1..=8 step by 16 bytes up to 128; above that there are four classes per
//! doubling (128·1.25, ·1.5, ·1.75, ·2, ...) up to 128 KiB, which bounds the internal
//! waste at 25 %. The fourth class of each doubling is a power of two *plus 16*
//! (272, 528, ..., 4112, ..., 131088): programs ask for powers of two all the time,
//! and with the 8-byte canary a 512-byte request would otherwise need a 640-byte
//! slot. Each class owns a 4 GiB region (`1 << REGION_SHIFT`), so a
//! pointer's class is `(addr - base) >> REGION_SHIFT` and its slab and slot follow by
//! division: no header is read to free a block.
//!
//! Slabs sit at a power-of-two stride of at least 1 MiB, the last page of each
//! stride being the guard page, so the slab of an address is a shift away. That
//! keeps the number of kernel mappings at two per MiB of heap: an 8 GiB heap needs
//! about 16k mappings, well under the default `vm.max_map_count` of 65,530 (a
//! 16 KiB slab, as in hardened_malloc, would need a million). Past
//! `guard_slabs` guarded slabs (8192 by default) a slab is committed with its
//! guard page and merges with its neighbours into one mapping, so the heap
//! keeps growing (alloc/README.md, "Mappings").

use crate::os::PAGE;

/// Number of classes including the zero-size class 0.
pub const NCLASS: usize = 49;
/// log2 of the bytes of address space reserved per class.
pub const REGION_SHIFT: u32 = 32;
/// Bytes of address space reserved per class.
pub const REGION_SIZE: usize = 1 << REGION_SHIFT;
/// The largest slot; bigger requests are mapped directly.
pub const MAX_SMALL: usize = (128 << 10) + 16;
/// log2 of the minimum slab stride (see the module docs for why 1 MiB).
pub const MIN_STRIDE_SHIFT: u32 = 20;
/// Fewest slots in a slab of the biggest classes.
pub const MIN_SLOTS: usize = 16;

/// Slot size of class `c`.
pub const fn slot_size(c: usize) -> usize {
    if c == 0 {
        16
    } else if c <= 8 {
        c * 16
    } else {
        let b = 7 + (c - 9) / 4;
        let j = (c - 9) % 4;
        let base = (1 << b) + (j + 1) * (1 << (b - 2));
        if j == 3 { base + 16 } else { base }
    }
}

/// The class whose slots are the smallest that hold `need` bytes (1..=MAX_SMALL).
#[inline]
pub const fn class_of(need: usize) -> usize {
    if need <= 128 {
        (need + 15) >> 4
    } else {
        let n = need - 1;
        let b = (usize::BITS - 1 - n.leading_zeros()) as usize;
        let c = 9 + (b - 7) * 4 + ((n >> (b - 2)) & 3);
        // Just past a power of two (by at most 16): the previous class's slot is
        // that power plus 16.
        if b >= 8 && n - (1 << b) < 16 {
            c - 1
        } else {
            c
        }
    }
}

/// log2 of the slab stride of class `c`: at least 1 MiB and room for
/// [`MIN_SLOTS`] slots plus the guard page.
pub const fn stride_shift(c: usize) -> u32 {
    let want = slot_size(c) * MIN_SLOTS + PAGE;
    let shift = usize::BITS - (want - 1).leading_zeros();
    if shift < MIN_STRIDE_SHIFT {
        MIN_STRIDE_SHIFT
    } else {
        shift
    }
}

/// Usable bytes of a slab of class `c` (the stride less the guard page).
pub const fn slab_bytes(c: usize, guard: usize) -> usize {
    (1 << stride_shift(c)) - guard
}

/// Slots in one slab of class `c`.
pub const fn slots_per_slab(c: usize, guard: usize) -> usize {
    slab_bytes(c, guard) / slot_size(c)
}

const _: () = {
    assert!(slot_size(NCLASS - 1) == MAX_SMALL);
    assert!(class_of(MAX_SMALL) == NCLASS - 1);
    let mut c = 1;
    while c < NCLASS {
        assert!(slot_size(c) % 16 == 0);
        assert!(class_of(slot_size(c)) == c);
        assert!(class_of(slot_size(c - 1) + 1) == c || c == 1);
        // Slot offsets inside a region fit the u32 thread-cache entries.
        assert!(REGION_SIZE <= 1 << 32);
        assert!(slots_per_slab(c, PAGE) >= MIN_SLOTS);
        // In-slab offsets stay below 2^22: the slot division in heap.rs relies on it.
        assert!(stride_shift(c) <= 22);
        c += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_maps_to_the_smallest_fitting_class() {
        for need in 1..=MAX_SMALL {
            let c = class_of(need);
            assert!(slot_size(c) >= need, "need {need} class {c}");
            assert!(c == 1 || slot_size(c - 1) < need, "need {need} class {c}");
        }
    }

    #[test]
    fn waste_is_bounded() {
        for c in 2..NCLASS {
            let prev = slot_size(c - 1);
            assert!(slot_size(c) * 4 <= (prev + 1) * 5 + 64, "class {c}");
        }
    }
}
