//! Every trace in shared/traces (except the big arc/P3 and arc/P6, read by
//! `engram sim`) parses, with the request and unique-object counts that
//! shared/traces/README.md states.

use std::path::PathBuf;

use engram_policy::trace::{self, Format};
use engram_policy::{NEVER, Op, unique_objects};

fn path(rel: &str) -> PathBuf {
    std::env::var_os("ENGRAM_TRACES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/traces"))
        })
        .join(rel)
}

#[test]
fn counts_match_the_traces_readme() {
    let cases: &[(&str, Format, usize, usize)] = &[
        (
            "cloudphysics/cloudPhysicsIO.csv",
            Format::CloudPhysicsCsv,
            113_872,
            48_974,
        ),
        (
            "cloudphysics/cloudPhysicsIO.oracleGeneral.bin",
            Format::OracleGeneral,
            113_872,
            48_974,
        ),
        ("arc/OLTP.lis.zst", Format::ArcLis, 914_145, 186_880),
        (
            "mooncake/conversation_trace.jsonl",
            Format::Mooncake,
            288_500,
            182_790,
        ),
        (
            "mooncake/synthetic_trace.jsonl",
            Format::Mooncake,
            121_877,
            43_924,
        ),
    ];
    for &(rel, format, requests, unique) in cases {
        let t = trace::read_path(&path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(t.format, format, "{rel}");
        assert_eq!(t.requests.len(), requests, "{rel} requests");
        assert_eq!(
            unique_objects(&t.requests).0,
            unique,
            "{rel} unique objects"
        );
    }
}

#[test]
fn cloudphysics_csv_and_binary_agree() {
    let csv = trace::read_path(&path("cloudphysics/cloudPhysicsIO.csv")).unwrap();
    let bin = trace::read_path(&path("cloudphysics/cloudPhysicsIO.oracleGeneral.bin")).unwrap();
    let reads = csv.requests.iter().filter(|r| r.op == Op::Read).count();
    assert_eq!(reads, 46_974, "READ(10) requests per the README");
    assert!(
        csv.requests
            .iter()
            .zip(&bin.requests)
            .all(|(a, b)| a.id == b.id && a.next_access == b.next_access)
    );
    // 43 % of requests are never followed by another to the same object.
    let never = bin
        .requests
        .iter()
        .filter(|r| r.next_access == NEVER)
        .count();
    assert_eq!(never, 48_974, "one last access per unique object");
}

#[test]
fn cachelib_and_twitter_samples_parse() {
    let cases: &[(&str, Format, usize)] = &[
        ("cachelib/kv_traces_1.csv", Format::CacheLibKv, 52),
        ("cachelib/kv_traces_2.csv", Format::CacheLibKv, 62),
        ("cachelib/block_traces_1.csv", Format::CacheLibBlock, 625),
        ("cachelib/block_traces_2.csv", Format::CacheLibBlock, 646),
        ("cachelib/twitter_sample.csv", Format::Twitter, 85),
    ];
    for &(rel, format, unique) in cases {
        let t = trace::read_path(&path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(t.format, format, "{rel}");
        assert_eq!(unique_objects(&t.requests).0, unique, "{rel} unique keys");
    }
}
