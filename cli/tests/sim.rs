//! `engram sim` end to end, through the built binary, on a trace it writes.

use std::process::Command;

const ENGRAM: &str = env!("CARGO_BIN_EXE_engram");

/// A cloudphysics-format CSV: 100 rounds of one 16 KiB object then eight
/// 512-byte ones (ids 1..=9, reads).
fn trace(dir: &std::path::Path) -> std::path::PathBuf {
    let mut s = String::from("version,time,op,size,lbn\n");
    for round in 0..100 {
        s.push_str(&format!("1,{round},28,16384,1\n"));
        for id in 2..=9 {
            s.push_str(&format!("1,{round},28,512,{id}\n"));
        }
    }
    let path = dir.join("mixed.csv");
    std::fs::write(&path, s).unwrap();
    path
}

/// `engram sim --trace TRACE ARGS...`, run to its end.
fn engram_sim(trace: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(ENGRAM)
        .arg("sim")
        .arg("--trace")
        .arg(trace)
        .args(args)
        .output()
        .expect("running engram sim")
}

fn sim(args: &[&str]) -> String {
    let dir = std::env::temp_dir().join(format!("engram-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let t = trace(&dir);
    let out = engram_sim(&t, &[&["--no-svg"], args].concat());
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "engram sim failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The fast-tier hit % of the first row of `policy`.
fn hit_pct(table: &str, policy: &str) -> f64 {
    let row = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(policy))
        .unwrap_or_else(|| panic!("no {policy} row in\n{table}"));
    row.split_whitespace().nth(3).unwrap().parse().unwrap()
}

#[test]
fn a_byte_budget_holds_as_many_bytes_as_it_says() {
    // 4 KiB holds the eight small objects exactly; the big one never fits, so
    // every small access after the first round hits: 8 * 99 of 900 requests.
    let t = sim(&["--policy", "lru,s3fifo,learned", "--size", "4KiB"]);
    for policy in ["LRU", "S3FIFO", "Learned"] {
        assert_eq!(hit_pct(&t, policy), 88.0, "{policy}\n{t}");
    }
    assert!(t.contains("4.0KiB"), "capacity column in bytes:\n{t}");
    // The same budget counted in objects of the mean size (20 KiB / 9 =
    // 2275 B, so 1 object) would hold one at a time and hit nothing.
    let t = sim(&["--policy", "lru", "--size", "1"]);
    assert_eq!(hit_pct(&t, "LRU"), 0.0, "{t}");
}

/// Bad plot options are refused up front (review findings: `--windows` of
/// 2^64-1 ran for minutes stepping through empty windows, 0 wrote an empty
/// plot, and an unwritable `--svg` path failed only after every replay).
#[test]
fn bad_plot_options_fail_at_once() {
    let dir = std::env::temp_dir().join(format!("engram-sim-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let t = trace(&dir);
    let run = |args: &[&str]| engram_sim(&t, &[&["--policy", "lru"], args].concat());
    for w in ["0", "18446744073709551615", "100001"] {
        let out = run(&["--no-svg", "--windows", w]);
        assert!(!out.status.success(), "--windows {w} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--windows"), "--windows {w}: {err}");
    }
    // More windows than requests: one point per request, and it finishes.
    let svg = dir.join("plot.svg");
    let out = run(&["--windows", "100000", "--svg", svg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<polyline"));
    let out = run(&["--svg", "/nonexistent-dir/plot.svg"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent-dir/plot.svg"), "{err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("LRU"),
        "the replays ran before the unwritable plot path was found"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A size past the whole trace is capped there, and the user is told (review
/// finding, 2026-11-25: `--size 1000000` on 1,414 objects ran silently at
/// 1,414); a size within it gets no note.
#[test]
fn a_size_past_the_trace_is_noted() {
    let dir = std::env::temp_dir().join(format!("engram-sim-cap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let t = trace(&dir);
    let run = |args: &[&str]| {
        let out = engram_sim(&t, &[&["--policy", "lru", "--no-svg"], args].concat());
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // 9 unique objects, 16 KiB + 8 x 512 B = 20 KiB.
    let err = run(&["--size", "50%,100,4", "--device", "1MiB"]);
    assert!(
        err.contains("note: --size 100 is more than the trace holds (9 objects"),
        "{err}"
    );
    assert!(err.contains("note: --device 1MiB is more than"), "{err}");
    assert!(!err.contains("--size 4 "), "{err}");
    assert!(!err.contains("--size 50%"), "{err}");
    let err = run(&["--size", "9,20KiB"]);
    assert!(!err.contains("note:"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
