//! `engram kv replay` refuses bad input with a clear error (review findings).

use std::process::Command;

const ENGRAM: &str = env!("CARGO_BIN_EXE_engram");

fn kv(args: &[&str]) -> std::process::Output {
    Command::new(ENGRAM)
        .args(["kv", "replay", "--limit", "5", "--no-baselines"])
        .args(args)
        .output()
        .expect("running engram kv replay")
}

/// A rate or step of 0, NaN, infinity or below 0 made every arrival time
/// infinite or NaN (the replay then ran every request at once, exit 0).
#[test]
fn rate_and_step_must_be_finite_and_positive() {
    for (opt, v) in [
        ("--rate", "0"),
        ("--rate", "NaN"),
        ("--rate", "-1"),
        ("--rate", "inf"),
        ("--step-ms", "0"),
        ("--step-ms", "NaN"),
        ("--step-ms", "-20"),
    ] {
        let arg = format!("{opt}={v}");
        let out = kv(&[&arg]);
        assert!(!out.status.success(), "{arg} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(opt), "{arg}: {err}");
    }
    let out = kv(&["--rate", "8", "--step-ms", "10"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A trace line whose number is not an integer (5e4, 3000.7) is an error
/// naming the line, not read as its leading digits.
#[test]
fn a_trace_number_that_is_not_an_integer_is_an_error() {
    let dir = std::env::temp_dir().join(format!("engram-kv-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.jsonl");
    for bad in ["5e4", "3000.7"] {
        std::fs::write(
            &path,
            format!(
                "{{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 2, \"hash_ids\": [1]}}\n\
                 {{\"timestamp\": 1, \"input_length\": {bad}, \"output_length\": 2, \"hash_ids\": [1]}}\n"
            ),
        )
        .unwrap();
        let out = Command::new(ENGRAM)
            .args(["kv", "replay", "--no-baselines"])
            .arg(&path)
            .output()
            .expect("running engram kv replay");
        assert!(!out.status.success(), "{bad} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("line 2") && err.contains("input_length"),
            "{bad}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
