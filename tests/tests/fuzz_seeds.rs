//! Replays the committed fuzz seeds through the fuzz targets' code as plain
//! tests, so a seed that starts failing shows up in `cargo test`.

use std::path::{Path, PathBuf};

use engram_tests::{alloc_ops, kvcache_ops, kvcache_trace, policy_parse};

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
