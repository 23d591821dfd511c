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

/// Found by the policy_traces fuzz target: a blank first line left the CacheLib
/// column map empty and the next line indexed into it (a panic), and let a
/// cloudphysics file without a header through. The header is the first non-blank
/// line.
#[test]
fn regression_blank_first_line_before_the_header() {
    let kv = trace::parse_cachelib_kv(
        "\nop_time,key,key_size,op,op_count,size\n1,k,3,GET,1,1\n".as_bytes(),
    )
    .expect("kv with a leading blank line");
    assert_eq!(kv.len(), 1);
    let block = trace::parse_cachelib_block(
        "\r\nop_time,block_id,io_size,op_name,op_count\n1,b,40,getChunkData,1\n".as_bytes(),
    )
    .expect("block with a leading blank line");
    assert_eq!(block.len(), 1);
    assert!(trace::parse_cachelib_kv("\n1,k,3,GET,1,1\n".as_bytes()).is_err());
    assert!(trace::parse_cachelib_block("\n1,b,40,getChunkData,1\n".as_bytes()).is_err());
    assert!(trace::parse_cloudphysics_csv("\n1,2,28,4096,7\n".as_bytes()).is_err());
}

/// Sizes that overflow u64 when key and value sizes are added are an error, not
/// a wrapped small size.
#[test]
fn regression_key_plus_value_size_overflow() {
    let kv = "op_time,key,key_size,op,op_count,size\n1,k,18446744073709551615,GET,1,2\n";
    assert!(trace::parse_cachelib_kv(kv.as_bytes()).is_err());
    assert!(trace::parse_twitter("1,k,18446744073709551615,2,1,get,0\n".as_bytes()).is_err());
}

/// Format detection reads the first line with text, as the parsers do: a
/// cloudphysics or CacheLib kv CSV opening with a blank line was taken for a
/// Twitter CSV and failed with "field `ttl` is not a number" on line 2.
#[test]
fn regression_blank_first_line_before_the_header_of_a_file() {
    let dir = std::env::temp_dir().join(format!("engram-readers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            "cp.csv",
            "\r\nversion,time,op,size,lbn\n1,5633898,2a,512,42932745\n",
            Format::CloudPhysicsCsv,
        ),
        (
            "kv.csv",
            "\n\nop_time,key,key_size,op,op_count,size\n1,k,3,GET,1,1\n",
            Format::CacheLibKv,
        ),
    ];
    for (name, text, want) in cases {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        let t = trace::read_path(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(t.format, want, "{name}");
        assert_eq!(t.requests.len(), 1, "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The format is detected from the first whole line, however the decompressor
/// splits it: a file of two zstd frames, the first ending inside the header,
/// is still a CacheLib kv trace (review finding: it was taken for Twitter).
#[test]
fn detection_reads_the_whole_first_line_across_zstd_frames() {
    let csv = std::fs::read_to_string(path("cachelib/kv_traces_1.csv")).expect("kv trace");
    let (a, b) = csv.split_at(9);
    let mut bytes = zstd::encode_all(a.as_bytes(), 3).expect("zstd");
    bytes.extend(zstd::encode_all(b.as_bytes(), 3).expect("zstd"));
    let dir = std::env::temp_dir().join(format!("engram-readers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("kv_frames.csv.zst");
    std::fs::write(&file, &bytes).expect("write");
    let t = trace::read_path(&file);
    std::fs::remove_dir_all(&dir).ok();
    let t = t.expect("two-frame kv trace");
    assert_eq!(t.format, Format::CacheLibKv);
    let plain = trace::read_path(&path("cachelib/kv_traces_1.csv")).expect("kv trace");
    assert_eq!(t.requests.len(), plain.requests.len());
}
