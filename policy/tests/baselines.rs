//! Reproduce shared/traces/BASELINES.md: every classic policy within 0.5
//! points of the reference hit ratio, and Belady never beaten, on every
//! trace of that table (cloudphysics, arc/OLTP, mooncake/synthetic,
//! mooncake/conversation) at every size (1, 5, 10, 25 %). The 144 replays
//! take about 3 s in a release build (OLTP's 914k requests are 2.4 s of it).

use std::path::PathBuf;

use engram_policy::{CacheSize, CostModel, PolicyKind, simulate, trace, unique_objects};

fn traces_dir() -> PathBuf {
    std::env::var_os("ENGRAM_TRACES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/traces"))
        })
}

const POLICIES: [PolicyKind; 9] = [
    PolicyKind::Lru,
    PolicyKind::Fifo,
    PolicyKind::Clock,
    PolicyKind::Lfu,
    PolicyKind::TwoQ,
    PolicyKind::Arc,
    PolicyKind::S3Fifo,
    PolicyKind::Sieve,
    PolicyKind::Belady,
];

/// (file, [(fraction, [LRU, FIFO, CLOCK, LFU, TwoQ, ARC, S3FIFO, SIEVE, Belady])]),
/// copied from BASELINES.md.
type Rows = &'static [(f64, [f64; 9])];
const TABLE: &[(&str, Rows)] = &[
    (
        "cloudphysics/cloudPhysicsIO.oracleGeneral.bin",
        &[
            (0.01, [16.2, 15.2, 16.3, 15.0, 16.9, 17.2, 17.0, 17.1, 20.7]),
            (0.05, [17.5, 17.3, 17.6, 18.3, 18.5, 18.9, 19.7, 18.3, 29.7]),
            (0.1, [19.5, 19.5, 19.6, 20.9, 22.6, 22.7, 24.8, 20.9, 37.1]),
            (0.25, [32.8, 31.5, 32.3, 33.8, 36.0, 38.6, 34.7, 33.8, 47.7]),
        ],
    ),
    (
        "arc/OLTP.lis.zst",
        &[
            (0.01, [41.6, 36.6, 42.2, 17.6, 45.9, 45.4, 46.5, 40.3, 59.8]),
            (0.05, [60.1, 56.6, 60.4, 33.6, 62.0, 61.0, 62.1, 60.0, 72.6]),
            (0.1, [66.5, 63.3, 66.9, 44.6, 67.7, 67.4, 67.8, 66.7, 76.2]),
            (0.25, [73.3, 70.7, 73.6, 64.2, 72.5, 73.8, 73.7, 73.7, 79.6]),
        ],
    ),
    (
        "mooncake/synthetic_trace.jsonl",
        &[
            (0.01, [3.4, 3.6, 3.4, 1.2, 3.9, 4.2, 3.8, 1.8, 18.5]),
            (0.05, [15.5, 15.1, 15.5, 10.5, 15.4, 16.2, 15.5, 10.5, 39.6]),
            (0.1, [26.0, 24.7, 24.7, 17.6, 25.7, 26.3, 26.2, 17.6, 50.6]),
            (0.25, [44.3, 41.9, 45.5, 38.7, 43.6, 45.9, 44.7, 38.7, 62.6]),
        ],
    ),
    (
        "mooncake/conversation_trace.jsonl",
        &[
            (0.01, [5.2, 5.1, 5.3, 5.8, 6.6, 6.5, 7.5, 5.8, 24.6]),
            (0.05, [19.5, 18.0, 20.2, 12.7, 17.6, 21.2, 18.8, 12.7, 36.6]),
            (0.1, [27.8, 25.6, 28.3, 19.5, 25.4, 28.4, 24.6, 19.5, 36.6]),
            (0.25, [35.4, 33.4, 35.3, 33.6, 33.6, 33.6, 34.6, 33.6, 36.6]),
        ],
    ),
];

#[test]
fn classic_policies_match_baselines() {
    let cost = CostModel::default();
    let mut failures = Vec::new();
    for (file, rows) in TABLE {
        let t =
            trace::read_path(&traces_dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let (unique, bytes) = unique_objects(&t.requests);
        for (frac, want) in rows.iter() {
            let cap = CacheSize::FractionObjects(*frac).objects(unique, bytes);
            let mut got = [0.0; 9];
            for (i, kind) in POLICIES.iter().enumerate() {
                let mut p = kind.build(cap).unwrap();
                got[i] = 100.0 * simulate(p.as_mut(), &t.requests, &cost, 0, false).hit_ratio();
                let diff = got[i] - want[i];
                let line = format!(
                    "{file} {frac} {:<7} got {:5.2} want {:5.1} diff {diff:+.2}",
                    kind.name(),
                    got[i],
                    want[i]
                );
                println!("{line}");
                if diff.abs() > 0.5 {
                    failures.push(line);
                }
            }
            for (i, g) in got.iter().enumerate().take(8) {
                assert!(
                    *g <= got[8] + 1e-9,
                    "{file} {frac}: {} beats Belady",
                    POLICIES[i].name()
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "off by more than 0.5 points:\n{}",
        failures.join("\n")
    );
}
