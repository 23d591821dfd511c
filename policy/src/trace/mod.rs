//! Trace readers: every file in `shared/traces`, turned into [`Request`]s.
//!
//! This is the crate's only I/O. Each format has a parser over an in-memory
//! reader (`parse_*`, testable on byte strings) and [`read_path`] picks one
//! from the file name and first line, decompressing `.zst` on the way.
//! Errors carry the 1-based line (or record) number.
//!
//! | format | object id | size | op |
//! | --- | --- | --- | --- |
//! | cloudphysics CSV | `lbn` | `size` | `28` read, `2a` write |
//! | libCacheSim oracleGeneral | `obj_id` | `obj_size` | read (not recorded) |
//! | ARC `.lis` | each block of the extent | 512 | read |
//! | Mooncake JSONL | each `hash_ids` entry | [`MOONCAKE_BLOCK_BYTES`] | read |
//! | CacheLib kv / block, Twitter | hash of the key | key + value / `io_size` | by op name, repeated `op_count` times |

mod formats;

pub use formats::{
    parse_arc_lis, parse_cachelib_block, parse_cachelib_kv, parse_cloudphysics_csv, parse_mooncake,
    parse_oracle_general, parse_twitter,
};

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::error::{Error, Result};
use crate::types::{Request, annotate_next_access};

/// Bytes of one Mooncake KV block: 512 tokens x 128 KiB/token (Llama-3-8B,
/// bf16), per the traces' README.
pub const MOONCAKE_BLOCK_BYTES: u32 = 64 << 20;

/// The formats [`read_path`] recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `version,time,op,size,lbn` CSV.
    CloudPhysicsCsv,
    /// libCacheSim oracleGeneral binary records.
    OracleGeneral,
    /// ARC `.lis` text: `start count ignore reqno`.
    ArcLis,
    /// Mooncake JSON lines with `hash_ids`.
    Mooncake,
    /// CacheLib kv-cache CSV (header names the columns).
    CacheLibKv,
    /// CacheLib block-chunk CSV.
    CacheLibBlock,
    /// Twitter cache-trace CSV (no header).
    Twitter,
}

/// A whole trace in memory, `next_access` filled.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Short name (file stem).
    pub name: String,
    /// The format it was read as.
    pub format: Format,
    /// The requests, in trace order.
    pub requests: Vec<Request>,
}

/// Guess the format from the file name and, for CSV, the first line.
pub fn detect(path: &Path, first_line: &str) -> Result<Format> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let name = name.strip_suffix(".zst").unwrap_or(name);
    if name.ends_with(".oracleGeneral.bin") || name.ends_with(".oracleGeneral") {
        return Ok(Format::OracleGeneral);
    }
    if name.ends_with(".lis") {
        return Ok(Format::ArcLis);
    }
    if name.ends_with(".jsonl") {
        return Ok(Format::Mooncake);
    }
    if name.ends_with(".csv") {
        let head = first_line.trim_start_matches('\u{feff}');
        return Ok(if head.starts_with("version,time,op") {
            Format::CloudPhysicsCsv
        } else if head.starts_with("op_time,key,") {
            Format::CacheLibKv
        } else if head.starts_with("op_time,block_id,") {
            Format::CacheLibBlock
        } else {
            Format::Twitter
        });
    }
    Err(Error::Config(format!(
        "cannot tell the trace format of {}",
        path.display()
    )))
}

/// Read a trace file in any known format (`.zst` decompressed on the fly)
/// and fill `next_access`.
pub fn read_path(path: &Path) -> Result<Trace> {
    let file = File::open(path)?;
    let compressed = path.extension().is_some_and(|e| e == "zst");
    let mut raw: Box<dyn Read> = if compressed {
        Box::new(zstd::stream::read::Decoder::new(file)?)
    } else {
        Box::new(file)
    };
    // The first line with text decides: the parsers skip blank lines, so a
    // file opening with one must be detected by what follows it. Read until
    // that line is whole (one read of a decompressor may end anywhere, at a
    // frame boundary say), at most 64 KiB, then hand the parser those bytes
    // followed by the rest.
    const HEAD_MAX: usize = 64 << 10;
    let mut head = Vec::new();
    let mut chunk = [0u8; 8192];
    while head.len() < HEAD_MAX && !has_whole_text_line(&head) {
        let n = raw.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let first = String::from_utf8_lossy(&head)
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_owned();
    let format = detect(path, &first)?;
    let reader = BufReader::with_capacity(1 << 16, std::io::Cursor::new(head).chain(raw));
    let mut requests = parse(format, reader)?;
    annotate_next_access(&mut requests);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.split('.').next().unwrap_or(n).to_owned())
        .unwrap_or_default();
    Ok(Trace {
        name,
        format,
        requests,
    })
}

/// True if `head` holds a newline-terminated line with something besides
/// white space on it.
fn has_whole_text_line(head: &[u8]) -> bool {
    let Some(last_nl) = head.iter().rposition(|&b| b == b'\n') else {
        return false;
    };
    head[..last_nl]
        .split(|&b| b == b'\n')
        .any(|l| l.iter().any(|b| !b.is_ascii_whitespace()))
}

/// Parse `reader` as `format`.
pub fn parse(format: Format, reader: impl BufRead) -> Result<Vec<Request>> {
    match format {
        Format::CloudPhysicsCsv => parse_cloudphysics_csv(reader),
        Format::OracleGeneral => parse_oracle_general(reader),
        Format::ArcLis => parse_arc_lis(reader),
        Format::Mooncake => parse_mooncake(reader, MOONCAKE_BLOCK_BYTES),
        Format::CacheLibKv => parse_cachelib_kv(reader),
        Format::CacheLibBlock => parse_cachelib_block(reader),
        Format::Twitter => parse_twitter(reader),
    }
}
