//! Replays the committed fuzz seeds through the fuzz targets' code as plain
//! tests, so a seed that starts failing shows up in `cargo test`.

use std::path::{Path, PathBuf};

use engram_tests::{alloc_ops, kvcache_ops, kvcache_trace, malloc_options, policy_parse};

fn seeds(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fuzz")
        .join("seeds")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn alloc_ops_seeds_replay() {
    let files = seeds("alloc_ops");
    assert!(
        files.len() >= 12,
        "expected a dozen seeds, found {}",
        files.len()
    );
    let mut kinds = [false; alloc_ops::OP_KINDS];
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
        let ops = alloc_ops::decode(&data);
        assert!(!ops.is_empty(), "{} decodes to no operation", f.display());
        for op in &ops {
            kinds[op.kind()] = true;
        }
        eprintln!("replaying {} ({} ops)", f.display(), ops.len());
        alloc_ops::execute(&ops);
    }
    assert!(
        kinds.iter().all(|&k| k),
        "the seeds leave some operations uncovered: {kinds:?}"
    );
}

#[test]
fn kvcache_requests_seeds_replay() {
    let files = seeds("kvcache_requests");
    assert!(files.len() >= 8, "expected 8 seeds, found {}", files.len());
    let mut kinds = [false; kvcache_ops::OP_KINDS];
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
        let ops = kvcache_ops::op_kinds(&data);
        assert!(!ops.is_empty(), "{} decodes to no operation", f.display());
        for &k in &ops {
            kinds[k] = true;
        }
        eprintln!("replaying {} ({} ops)", f.display(), ops.len());
        kvcache_ops::run(&data);
    }
    assert!(
        kinds.iter().all(|&k| k),
        "the seeds leave some operations uncovered: {kinds:?}"
    );
}

#[test]
fn policy_traces_seeds_replay() {
    let files = seeds("policy_traces");
    assert!(files.len() >= 8, "expected 8 seeds, found {}", files.len());
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
        eprintln!("replaying {} ({} bytes)", f.display(), data.len());
        policy_parse::run(&data);
    }
    // Every reader accepts at least one seed: the seeds hold real lines of each format.
    for format in policy_parse::FORMATS {
        let accepted = files.iter().any(|f| {
            let data = std::fs::read(f).expect("read above");
            engram_policy::trace::parse(format, data.as_slice()).is_ok()
        });
        assert!(accepted, "no seed parses as {format:?}");
    }
}

#[test]
fn kvcache_trace_seeds_replay() {
    let files = seeds("kvcache_trace");
    assert!(files.len() >= 6, "expected 6 seeds, found {}", files.len());
    let mut accepted = 0;
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
        eprintln!("replaying {} ({} bytes)", f.display(), data.len());
        kvcache_trace::run(&data);
        accepted +=
            usize::from(engram_kvcache::trace::parse(&String::from_utf8_lossy(&data)).is_ok());
    }
    // Some seeds are real traces, some are broken ones.
    assert!(
        accepted >= 2 && accepted < files.len(),
        "{accepted} of {} seeds parse",
        files.len()
    );
}

#[test]
fn malloc_options_seeds_replay() {
    let files = seeds("malloc_options");
    assert!(files.len() >= 6, "expected 6 seeds, found {}", files.len());
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
        eprintln!("replaying {}", f.display());
        malloc_options::run(&data);
    }
}

/// The reference parser reads the seeds as the documented grammar says (so a
/// replay that agrees with it checks something).
#[test]
fn malloc_options_reference_reads_the_grammar() {
    let c = malloc_options::reference(b"tcache=\t16\t,arenas= 2 ,quarantine=4K,guard=0,guard=1,zero=1k,stats_fd=2147483648,canary=0=1");
    assert_eq!((c.tcache, c.arenas, c.quarantine), (16, 2, 256));
    assert!(c.guard && c.zero && c.canary);
    assert_eq!(c.stats_fd, 2);
    assert!(!c.stats);
}

/// Beyond the seeds: 50,000 option strings built from the grammar's pieces
/// (keys, blanks, digits, suffixes, separators, stray bytes) through both
/// parsers, so the comparison runs on far more than the committed seeds.
#[test]
fn malloc_options_random_strings_agree() {
    const PIECES: &[&[u8]] = &[
        b"guard",
        b"guard_slabs",
        b"_slabs",
        b"quarantine",
        b"zero",
        b"canary",
        b"random",
        b"tcache",
        b"decommit",
        b"arenas",
        b"large_cache",
        b"thp",
        b"stats",
        b"stats_fd",
        b"stats_ino",
        b"bogus",
        b"=",
        b"=",
        b",",
        b",",
        b" ",
        b"\t",
        b"0",
        b"1",
        b"7",
        b"64",
        b"999",
        b"18446744073709551615",
        b"2147483648",
        b"k",
        b"M",
        b"G",
        b"x",
        b"\xff",
        b"\xc3\xa9",
    ];
    let mut rng = engram_tests::Rng(0x9e37_79b9_7f4a_7c15);
    let mut s = Vec::new();
    for _ in 0..50_000 {
        s.clear();
        for _ in 0..rng.below(24) {
            s.extend_from_slice(PIECES[rng.below(PIECES.len() as u64) as usize]);
        }
        malloc_options::run(&s);
    }
}
