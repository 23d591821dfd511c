//! Byte strings fed to every trace reader of `engram_policy::trace`, and read as
//! operations on a cache [`Policy`].
//!
//! The fuzz target `fuzz/fuzz_targets/policy_traces.rs` and the seed replay test
//! (`tests/tests/fuzz_seeds.rs`) call [`run`], which does all three:
//!
//! - [`parse_all`]: format detection on the first line under every known file
//!   name, then each parser (and `trace::parse` for every [`Format`]) on the
//!   bytes. Each must return `Ok` with at least one request, or an error that
//!   says where: `Parse` with a line number inside the input, `Truncated` with
//!   the 24-byte record size, or `EmptyTrace`. Never `Io` (the input is in
//!   memory) and never a panic. Readers that expand one line into many requests
//!   (ARC extents and CacheLib `op_count` up to 2^16 each) only see
//!   the first lines ([`EXPANDING_LINES`]) so one input stays within memory.
//! - [`parse_size`]: the first line as an `engram sim --size` (`CacheSize`):
//!   an error, or capacities within 1 ..= the trace's unique objects (bytes).
//! - [`run_policy`]: a small interpreter driving one [`Policy`] with accesses,
//!   removes and resizes, over an object capacity or a byte budget
//!   (`ByteBudget`); after each op the cache holds at most `capacity` objects
//!   (or bytes), evicted objects are gone, a hit was a resident object, and the
//!   policy's own `check_invariants` hold.
//!
//! # Policy byte format
//!
//! ```text
//! input := kind:u8 cap:u8 op*          (kind & 0x7f) % 12 picks the PolicyKind (`PolicyKind::ALL`);
//!                                      kind & 0x80: a byte budget, unit u = 97 bytes, else u = 1 object;
//!                                      capacity 1 + (cap % 32) * u
//! op    := code:u8 arg:u8              code % 8: 0..=3 read, 4 write, 5 delete of object arg % 48
//!                                      (size 1 + 7 * arg bytes), 6 remove object arg % 48,
//!                                      7 resize to 1 + (arg % 40) * u
//! ```
//!
//! Accesses carry correct `next_access` times (for Belady).

use std::path::Path;

use engram_policy::trace::{self, Format};
use engram_policy::{Error, NEVER, Op, PolicyKind, Request};

/// Lines given to readers that expand one line into many requests.
pub const EXPANDING_LINES: usize = 3;
/// Most policy ops performed per input.
pub const MAX_POLICY_OPS: usize = 512;

/// Every format `trace::parse` knows.
pub const FORMATS: [Format; 7] = [
    Format::CloudPhysicsCsv,
    Format::OracleGeneral,
    Format::ArcLis,
    Format::Mooncake,
    Format::CacheLibKv,
    Format::CacheLibBlock,
    Format::Twitter,
];

/// File names `trace::detect` is asked about, with the format each must give
/// (`None`: that it depends on the first line; the last is unknown).
const NAMES: [&str; 9] = [
    "x.oracleGeneral.bin",
    "x.oracleGeneral.bin.zst",
    "x.lis",
    "x.lis.zst",
    "x.jsonl",
    "x.csv",
    "x.csv.zst",
    "x.txt",
    "",
];

/// Feed `data` to the trace readers, the cache-size parser and the policy
/// interpreter.
pub fn run(data: &[u8]) {
    parse_all(data);
    parse_size(data);
    run_policy(data);
}

/// The first line of `data` as a cache size (`engram sim --size`): an error,
/// or a size that gives every trace a capacity of 1 ..= its unique objects
/// and a byte budget of 1 ..= its unique bytes (none for an object size).
pub fn parse_size(data: &[u8]) {
    let line = first_lines(data, 1);
    let Ok(text) = std::str::from_utf8(line) else {
        return;
    };
    let Ok(size) = engram_policy::CacheSize::parse(text.trim_end_matches('\n')) else {
        return;
    };
    for (unique, bytes) in [
        (1usize, 1u64),
        (100, 51_200),
        (48_974, 2_029_790_208),
        (usize::MAX / 2, u64::MAX),
    ] {
        let n = size.objects(unique, bytes);
        assert!(
            (1..=unique).contains(&n),
            "{text:?}: {n} objects of {unique}"
        );
        match (size, size.bytes(bytes)) {
            (
                engram_policy::CacheSize::Objects(_) | engram_policy::CacheSize::FractionObjects(_),
                None,
            ) => {}
            (_, Some(b)) => assert!((1..=bytes).contains(&b), "{text:?}: {b} bytes of {bytes}"),
            (s, b) => panic!("{text:?}: {s:?} gave a byte budget {b:?}"),
        }
    }
}

/// The first `n` lines of `data` (with their newlines).
fn first_lines(data: &[u8], n: usize) -> &[u8] {
    let mut seen = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' {
            seen += 1;
            if seen == n {
                return &data[..=i];
            }
        }
    }
    data
}

/// Lines in `data` as `read_line` counts them.
fn line_count(data: &[u8]) -> u64 {
    let nl = data.iter().filter(|&&b| b == b'\n').count() as u64;
    nl + u64::from(!data.is_empty() && data.last() != Some(&b'\n'))
}

/// Check one reader's answer on `input`.
fn check(what: &str, input: &[u8], got: engram_policy::Result<Vec<Request>>) {
    match got {
        Ok(reqs) => {
            assert!(!reqs.is_empty(), "{what}: Ok with no request");
            assert!(reqs.iter().all(|r| r.size >= 1), "{what}: a zero size");
            assert!(reqs.iter().all(|r| r.next_access == NEVER));
        }
        Err(Error::Parse { line, msg }) => {
            let lines = line_count(input);
            assert!(
                (1..=lines).contains(&line),
                "{what}: error on line {line} of a {lines}-line input: {msg}"
            );
            assert!(!msg.is_empty(), "{what}: empty message");
        }
        Err(Error::Truncated {
            trailing,
            record,
            records,
        }) => {
            assert_eq!(record, 24, "{what}");
            assert_eq!(trailing, input.len() % record, "{what}");
            assert_eq!(records, input.len() / record, "{what}");
            assert!(trailing > 0, "{what}");
        }
        Err(Error::Record { record, msg }) => {
            let records = (input.len() / 24) as u64;
            assert!(
                (1..=records).contains(&record),
                "{what}: error on record {record} of {records}: {msg}"
            );
        }
        Err(Error::EmptyTrace) => {}
        Err(e) => panic!("{what}: an error that says no line or record: {e:?}"),
    }
}

fn expands(format: Format) -> bool {
    matches!(
        format,
        Format::ArcLis | Format::CacheLibKv | Format::CacheLibBlock
    )
}

/// Detection and every reader on `data`; panics if one breaks a rule.
pub fn parse_all(data: &[u8]) {
    let first = String::from_utf8_lossy(data)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    for name in NAMES {
        let got = trace::detect(Path::new(name), &first);
        let want = match name.trim_end_matches(".zst") {
            n if n.ends_with(".oracleGeneral.bin") => Some(Format::OracleGeneral),
            n if n.ends_with(".lis") => Some(Format::ArcLis),
            n if n.ends_with(".jsonl") => Some(Format::Mooncake),
            _ => None,
        };
        match (got, want) {
            (Ok(f), Some(w)) => assert_eq!(f, w, "detect({name:?})"),
            (Ok(f), None) => {
                assert!(name.contains(".csv"), "detect({name:?}) gave {f:?}");
                assert!(matches!(
                    f,
                    Format::CloudPhysicsCsv
                        | Format::CacheLibKv
                        | Format::CacheLibBlock
                        | Format::Twitter
                ));
            }
            (Err(Error::Config(_)), None) => assert!(!name.contains(".csv"), "{name:?}"),
            (Err(e), _) => panic!("detect({name:?}): {e:?}"),
        }
    }
    let short = first_lines(data, EXPANDING_LINES);
    for format in FORMATS {
        let input = if expands(format) { short } else { data };
        check(&format!("{format:?}"), input, trace::parse(format, input));
    }
    // The public parsers directly, on the same inputs.
    check("cloudphysics", data, trace::parse_cloudphysics_csv(data));
    check("oracleGeneral", data, trace::parse_oracle_general(data));
    check("arc", short, trace::parse_arc_lis(short));
    check("mooncake", data, trace::parse_mooncake(data, 1));
    check("cachelib kv", short, trace::parse_cachelib_kv(short));
    check("cachelib block", short, trace::parse_cachelib_block(short));
    check("twitter", data, trace::parse_twitter(data));
}

/// Drive one policy with the ops in `data`; panics if it breaks a rule.
pub fn run_policy(data: &[u8]) {
    let [kind, cap, rest @ ..] = data else { return };
    // The kind byte's top bit: a byte budget (object sizes 1..1786) instead
    // of an object capacity.
    let bytes = *kind & 0x80 != 0;
    let kind = PolicyKind::ALL[usize::from(*kind & 0x7f) % PolicyKind::ALL.len()];
    let unit = if bytes { 97 } else { 1 };
    let mut capacity = 1 + usize::from(*cap % 32) * unit;
    let mut p = if bytes {
        kind.build_bytes(capacity as u64, 48)
    } else {
        kind.build(capacity)
    }
    .expect("building a policy");
    assert!(kind.build(0).is_err(), "{kind:?} with capacity 0");
    assert!(kind.build_bytes(0, 48).is_err(), "{kind:?} with 0 bytes");
    // Decode first so each access knows its next access (Belady needs it).
    let ops: Vec<(u8, u64)> = rest
        .chunks_exact(2)
        .take(MAX_POLICY_OPS)
        .map(|c| (c[0] % 8, u64::from(c[1])))
        .collect();
    let mut next = vec![NEVER; ops.len()];
    let mut last_seen = std::collections::HashMap::new();
    for (i, &(code, arg)) in ops.iter().enumerate().rev() {
        if code <= 5 {
            let id = arg % 48;
            next[i] = last_seen.get(&id).copied().unwrap_or(NEVER);
            last_seen.insert(id, i as u64);
        }
    }
    let mut evicted = Vec::new();
    for (i, &(code, arg)) in ops.iter().enumerate() {
        evicted.clear();
        match code {
            0..=5 => {
                let id = arg % 48;
                let op = match code {
                    4 => Op::Write,
                    5 => Op::Delete,
                    _ => Op::Read,
                };
                let req = Request {
                    time: i as u64,
                    id,
                    size: 1 + (arg as u32) * 7,
                    op,
                    next_access: next[i],
                };
                let was = p.contains(id);
                let out = p.access(&req, &mut evicted);
                if out.hit {
                    assert!(was, "{kind:?}: hit on {id}, which was not resident");
                }
            }
            6 => {
                let id = arg % 48;
                let was = p.contains(id);
                assert_eq!(p.remove(id), was, "{kind:?}: remove({id})");
                assert!(!p.contains(id), "{kind:?}: {id} resident after remove");
            }
            _ => {
                capacity = 1 + (arg as usize) % 40 * unit;
                p.resize(capacity, &mut evicted);
                assert_eq!(p.capacity(), capacity, "{kind:?}: resize");
            }
        }
        for &e in &evicted {
            assert!(!p.contains(e), "{kind:?}: evicted {e} still resident");
        }
        assert!(
            p.len() <= p.used() && p.used() <= p.capacity(),
            "{kind:?}: {} objects using {} of a cache of {}",
            p.len(),
            p.used(),
            p.capacity()
        );
        p.check_invariants();
    }
}
