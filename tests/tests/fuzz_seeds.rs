//! Replays the committed fuzz seeds through the fuzz targets' code as plain
//! tests, so a seed that starts failing shows up in `cargo test`.

use std::path::{Path, PathBuf};

use engram_tests::alloc_ops;

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
