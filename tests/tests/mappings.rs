//! A multi-GiB heap must stay under the kernel's default `vm.max_map_count`
//! (65,530): every guard page splits a mapping, so an allocator that guards
//! everything naively runs out of mappings long before memory. These tests build
//! big heaps through `engram_alloc::raw` and count the process's mappings.

use engram_alloc::raw;

const DEFAULT_MAX_MAP_COUNT: usize = 65_530;

/// The tests count the whole process's mappings: run them one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("read /proc/self/maps")
        .lines()
        .count()
}

fn build_heap(sizes: impl Iterator<Item = usize>, limit: usize) -> (Vec<*mut u8>, usize) {
    let mut blocks = Vec::new();
    let mut total = 0usize;
    for size in sizes {
        if total >= limit {
            break;
        }
        // SAFETY: plain allocation; freed by the caller.
        let p = unsafe { raw::malloc(size) };
        assert!(!p.is_null(), "malloc({size}) failed after {total} bytes");
        // SAFETY: `p` is a live block of at least `size` >= 1 bytes.
        unsafe { p.write(1) };
        blocks.push(p);
        total += size;
    }
    (blocks, total)
}

fn free_all(blocks: Vec<*mut u8>) {
    for p in blocks {
        // SAFETY: every block is live and freed once.
        unsafe { raw::free(p) };
    }
}

#[test]
fn small_block_heap_of_two_gib_needs_few_mappings() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = mappings();
    let sizes = (0..).map(|i: usize| 64usize << (i % 11));
    let (blocks, total) = build_heap(sizes, 2 << 30);
    let added = mappings().saturating_sub(before);
    eprintln!(
        "{} small blocks, {} MiB: {added} new mappings",
        blocks.len(),
        total >> 20
    );
    // Two mappings (slab + guard) per slab of >= 1 MiB: about 2 per MiB.
    assert!(
        added <= 2 * (total >> 20) + 64,
        "{added} mappings for {} MiB",
        total >> 20
    );
    assert!(added < DEFAULT_MAX_MAP_COUNT / 8);
    free_all(blocks);
    raw::trim();
    assert!(
        raw::stats().in_use_bytes < 64 << 20,
        "memory still in use after freeing everything: {:?}",
        raw::stats()
    );
}

#[test]
fn forty_thousand_large_blocks_stay_under_max_map_count() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = mappings();
    // 40k blocks just past the largest size class: each is its own mapping.
    let sizes = std::iter::repeat_n(136usize << 10, 40_000);
    let (blocks, total) = build_heap(sizes, usize::MAX);
    let during = mappings();
    let added = during.saturating_sub(before);
    eprintln!(
        "{} large blocks, {} MiB: {added} new mappings",
        blocks.len(),
        total >> 20
    );
    assert!(
        during < DEFAULT_MAX_MAP_COUNT * 3 / 4,
        "{during} mappings with 40k large blocks: too close to vm.max_map_count"
    );
    free_all(blocks);
}

/// The VmFlags of the mapping that holds `addr`, from /proc/self/smaps.
fn vm_flags(addr: usize) -> String {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ') {
            if let Some((lo, hi)) = range.split_once('-') {
                if let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                {
                    inside = (lo..hi).contains(&addr);
                    continue;
                }
            }
        }
        if inside {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                return flags.trim().to_owned();
            }
        }
    }
    panic!("no mapping holds {addr:#x}");
}

#[test]
fn blocks_of_two_mib_and_more_are_huge_page_aligned_and_advised() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Under `cargo test` ENGRAM_MALLOC is unset: the defaults, thp=1, are in force.
    for size in [2 << 20, (3 << 20) + 5, 9 << 20] {
        // SAFETY: plain allocation, freed below.
        let p = unsafe { raw::malloc(size) };
        assert!(!p.is_null());
        assert_eq!(p as usize % (2 << 20), 0, "malloc({size}) at {p:?}");
        let flags = vm_flags(p as usize);
        assert!(
            flags.split(' ').any(|f| f == "hg"),
            "malloc({size}): VmFlags {flags}"
        );
        // SAFETY: live block, freed once.
        unsafe { raw::free(p) };
    }
    // Below 2 MiB: no advice (an ordinary large block).
    // SAFETY: as above.
    let p = unsafe { raw::malloc(1 << 20) };
    assert!(!vm_flags(p as usize).split(' ').any(|f| f == "hg"));
    // SAFETY: as above.
    unsafe { raw::free(p) };
}

/// Set in the child process of `slabs_past_the_guard_budget_share_one_mapping`.
const CHILD: &str = "ENGRAM_TEST_GUARD_BUDGET_CHILD";

/// Slabs past `guard_slabs` are committed with their guard page, so that a
/// run of them is one kernel mapping: a small-block heap can outgrow the
/// default `vm.max_map_count` (it stopped at 18.6 GiB of 40 KB blocks, with
/// ENOMEM, and the program's own mmaps failed too, before 2026-11-25).
/// The budget is read at init, so the check runs in a child process with a
/// budget of 16 slabs.
#[test]
fn slabs_past_the_guard_budget_share_one_mapping() {
    const BUDGET: usize = 16;
    const SLABS: usize = 64;
    if std::env::var_os(CHILD).is_none() {
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "slabs_past_the_guard_budget_share_one_mapping",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env("ENGRAM_MALLOC", format!("guard_slabs={BUDGET}"))
            .output()
            .expect("run the child test");
        assert!(
            out.status.success(),
            "child failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    // 40,000-byte blocks: 40 KiB slots, 25 to a 1 MiB slab; only the pages
    // written are resident.
    let size = 40_000;
    let before = mappings();
    let (blocks, total) = build_heap(std::iter::repeat(size), SLABS * 25 * size);
    let added = mappings().saturating_sub(before);
    eprintln!(
        "{} blocks, {} MiB, guard budget {BUDGET} slabs: {added} new mappings",
        blocks.len(),
        total >> 20
    );
    // Two per guarded slab, then one for the whole unguarded run (and a few
    // for the test's own vectors).
    assert!(
        added <= 2 * BUDGET + 8,
        "{added} mappings for {SLABS} slabs past a budget of {BUDGET}"
    );
    assert!(
        added >= BUDGET,
        "{added} mappings: the first {BUDGET} slabs lost their guards"
    );
    // Blocks in unguarded slabs are whole and usable, end to end.
    for &p in blocks.iter().rev().take(100) {
        // SAFETY: live blocks of `size` bytes.
        unsafe { std::ptr::write_bytes(p, 0xa5, size) };
    }
    free_all(blocks);
}
