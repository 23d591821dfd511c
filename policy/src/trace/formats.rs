//! One parser per trace format. Each takes a `BufRead`, returns every
//! request in order, and fails on the first bad line with its number.

use std::io::BufRead;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::types::{Op, Request, hash_key};

fn parse_err(line: u64, msg: impl Into<String>) -> Error {
    Error::Parse {
        line,
        msg: msg.into(),
    }
}

/// A field as an error message quotes it: at most 40 characters.
fn quoted(f: &str) -> String {
    const MAX: usize = 40;
    match f.char_indices().nth(MAX) {
        Some((i, _)) => format!("{:?}... ({} bytes)", &f[..i], f.len()),
        None => format!("{f:?}"),
    }
}

fn num<T: FromStr>(field: Option<&str>, what: &str, line: u64) -> Result<T> {
    let f = field.ok_or_else(|| parse_err(line, format!("missing field `{what}`")))?;
    let t = f.trim();
    t.parse().map_err(|_| {
        // Digits that do not fit the field are not "not a number": say what is
        // wrong with them (review finding: `-5` and 2^70 read as garbage).
        let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
        // Negative only for an unsigned field (a signed one that fails is out
        // of range), and `-0` is not negative, only signed.
        let unsigned = "-1".parse::<T>().is_err();
        let minus = t.strip_prefix('-').filter(|d| digits(d));
        let why = if unsigned && minus.is_some_and(|d| d.bytes().any(|b| b != b'0')) {
            "is negative"
        } else if unsigned && minus.is_some() {
            "is not an unsigned number"
        } else if digits(t.strip_prefix(['-', '+']).unwrap_or(t)) {
            "is out of range"
        } else {
            "is not a number"
        };
        parse_err(line, format!("field `{what}` {why}: {}", quoted(f)))
    })
}

/// Longest line a text trace may have (Mooncake's longest is under 3 KiB).
pub const MAX_LINE: usize = 16 << 20;

/// Most requests a trace may expand to: the simulator holds every request in
/// memory (32 bytes each, 4 GiB at this limit). A few bytes of a `.lis` or
/// CacheLib line can stand for thousands of requests, so a small corrupt file
/// could otherwise ask for any amount of memory.
pub const MAX_REQUESTS: usize = 1 << 27;

/// Make room in `out` for `n` more requests of line `line`, or fail with a
/// clear error (over [`MAX_REQUESTS`], or memory refused).
fn room(out: &mut Vec<Request>, n: u64, line: u64) -> Result<()> {
    let total = (out.len() as u64).saturating_add(n);
    if total > MAX_REQUESTS as u64 {
        return Err(parse_err(
            line,
            format!("the trace expands past {MAX_REQUESTS} requests, the most the simulator holds"),
        ));
    }
    out.try_reserve(n as usize)
        .map_err(|_| parse_err(line, format!("no memory for {total} requests")))
}

/// Call `f(line_number, line)` for every non-blank line (a byte-order mark
/// opening the first line is dropped).
fn for_lines(mut r: impl BufRead, mut f: impl FnMut(u64, &str) -> Result<()>) -> Result<()> {
    let mut buf = String::new();
    let mut n = 0u64;
    loop {
        buf.clear();
        // Room for a line of MAX_LINE bytes and its "\r\n".
        let limit = MAX_LINE as u64 + 2;
        let got = std::io::Read::take(&mut r, limit)
            .read_line(&mut buf)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    parse_err(n + 1, "not valid UTF-8")
                } else {
                    Error::Io(e)
                }
            })?;
        if got == 0 {
            return Ok(());
        }
        n += 1;
        let mut line = buf.trim_end_matches(['\n', '\r']);
        if line.len() > MAX_LINE || (got as u64 == limit && !buf.ends_with('\n')) {
            return Err(parse_err(
                n,
                format!("line longer than {} MiB", MAX_LINE >> 20),
            ));
        }
        if n == 1 {
            line = line.trim_start_matches('\u{feff}');
        }
        if !line.trim().is_empty() {
            f(n, line)?;
        }
    }
}

/// The requests, unless there is no lookup among them (empty, or deletes only).
fn non_empty(v: Vec<Request>) -> Result<Vec<Request>> {
    if v.iter().all(|r| r.op == Op::Delete) {
        Err(Error::EmptyTrace)
    } else {
        Ok(v)
    }
}

fn size_u32(v: u64, line: u64) -> Result<u32> {
    u32::try_from(v.max(1)).map_err(|_| parse_err(line, format!("object size {v} exceeds 4 GiB")))
}

/// cloudphysics CSV: header `version,time,op,size,lbn`, op `28`/`2a`.
pub fn parse_cloudphysics_csv(r: impl BufRead) -> Result<Vec<Request>> {
    let mut out = Vec::new();
    // The header is the first non-blank line (blank lines are skipped but counted).
    let mut header = true;
    for_lines(r, |n, line| {
        if std::mem::take(&mut header) {
            if !line.starts_with("version,time,op,size,lbn") {
                return Err(parse_err(n, "expected header `version,time,op,size,lbn`"));
            }
            return Ok(());
        }
        let mut f = line.split(',');
        let _version: u32 = num(f.next(), "version", n)?;
        let time: u64 = num(f.next(), "time", n)?;
        let op = match f.next().map(str::trim) {
            Some("28") => Op::Read,
            Some("2a") | Some("2A") => Op::Write,
            Some(o) => return Err(parse_err(n, format!("unknown SCSI opcode {}", quoted(o)))),
            None => return Err(parse_err(n, "missing field `op`")),
        };
        let size: u64 = num(f.next(), "size", n)?;
        let lbn: u64 = num(f.next(), "lbn", n)?;
        if f.next().is_some() {
            return Err(parse_err(n, "more than 5 fields"));
        }
        room(&mut out, 1, n)?;
        out.push(Request {
            time,
            id: lbn,
            size: size_u32(size, n)?,
            op,
            next_access: crate::NEVER,
        });
        Ok(())
    })?;
    non_empty(out)
}

/// libCacheSim oracleGeneral: packed little-endian 24-byte records
/// `u32 time, u64 id, u32 size, i64 next`.
pub fn parse_oracle_general(mut r: impl BufRead) -> Result<Vec<Request>> {
    const REC: usize = 24;
    // Bounded: a compressed file of a few KiB can inflate to any size.
    let most = MAX_REQUESTS as u64 * REC as u64;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(&mut r, most + 1), &mut bytes)?;
    if bytes.len() as u64 > most {
        return Err(Error::Record {
            record: MAX_REQUESTS as u64 + 1,
            msg: format!(
                "the trace holds more than {MAX_REQUESTS} records, the most the simulator holds"
            ),
        });
    }
    if bytes.is_empty() {
        return Err(Error::EmptyTrace);
    }
    let trailing = bytes.len() % REC;
    if trailing != 0 {
        return Err(Error::Truncated {
            trailing,
            record: REC,
            records: bytes.len() / REC,
        });
    }
    let mut out = Vec::new();
    room(&mut out, (bytes.len() / REC) as u64, 1)?;
    for (i, rec) in bytes.chunks_exact(REC).enumerate() {
        let mut t = [0u8; 4];
        let mut id = [0u8; 8];
        let mut sz = [0u8; 4];
        let mut next = [0u8; 8];
        t.copy_from_slice(&rec[0..4]);
        id.copy_from_slice(&rec[4..12]);
        sz.copy_from_slice(&rec[12..16]);
        next.copy_from_slice(&rec[16..24]);
        // The one field that can be checked: the position of the next request
        // for the same object, after this one, or -1 for none. Random bytes
        // fail it at once.
        let next = i64::from_le_bytes(next);
        if next != -1 && next <= i as i64 {
            return Err(Error::Record {
                record: i as u64 + 1,
                msg: format!(
                    "next_access_vtime {next} is neither -1 nor after the record: not an oracleGeneral trace?"
                ),
            });
        }
        out.push(Request::read(
            u64::from(u32::from_le_bytes(t)),
            u64::from_le_bytes(id),
            u32::from_le_bytes(sz),
        ));
    }
    Ok(out)
}

/// ARC `.lis`: `start count ignore reqno` per line, expanded to `count`
/// consecutive 512-byte blocks; time = `reqno`.
pub fn parse_arc_lis(r: impl BufRead) -> Result<Vec<Request>> {
    // 32 MiB of 512-byte blocks in one request (the ARC traces' largest is 128).
    const MAX_EXTENT: u64 = 1 << 16;
    let mut out = Vec::new();
    for_lines(r, |n, line| {
        let mut f = line.split_ascii_whitespace();
        let start: u64 = num(f.next(), "starting_block", n)?;
        let count: u64 = num(f.next(), "number_of_blocks", n)?;
        let _ignore: i64 = num(f.next(), "ignore", n)?;
        let reqno: u64 = num(f.next(), "request_number", n)?;
        // Four fields and no more: a record run into the next one (a lost
        // newline, or a file with CR-only line ends read as one line) must not
        // lose the rest silently.
        if f.next().is_some() {
            return Err(parse_err(n, "more than 4 fields"));
        }
        if count == 0 || count > MAX_EXTENT {
            return Err(parse_err(
                n,
                format!("number_of_blocks {count} outside 1..={MAX_EXTENT}"),
            ));
        }
        // The last block may be u64::MAX itself.
        let last = start
            .checked_add(count - 1)
            .ok_or_else(|| parse_err(n, "block range overflows u64"))?;
        room(&mut out, count, n)?;
        out.extend((start..=last).map(|b| Request::read(reqno, b, 512)));
        Ok(())
    })?;
    non_empty(out)
}

/// Mooncake JSONL: each `hash_ids` entry of each request, in order, is one
/// access to a KV block of `block_bytes`; time = `timestamp` (ms).
pub fn parse_mooncake(r: impl BufRead, block_bytes: u32) -> Result<Vec<Request>> {
    let mut out = Vec::new();
    for_lines(r, |n, line| {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| parse_err(n, format!("bad JSON: {e}")))?;
        let time = v
            .get("timestamp")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| parse_err(n, "missing or non-integer `timestamp`"))?;
        let ids = v
            .get("hash_ids")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| parse_err(n, "missing `hash_ids` array"))?;
        room(&mut out, ids.len() as u64, n)?;
        for id in ids {
            let id = id.as_u64().ok_or_else(|| {
                parse_err(
                    n,
                    format!("hash id {} is not a u64", quoted(&id.to_string())),
                )
            })?;
            out.push(Request::read(time, id, block_bytes));
        }
        Ok(())
    })?;
    non_empty(out)
}

fn op_from_name(name: &str, line: u64) -> Result<Op> {
    let lower = name.trim().to_ascii_lowercase();
    if lower.starts_with("get") {
        Ok(Op::Read)
    } else if lower.starts_with("set")
        || lower.starts_with("put")
        || ["add", "cas", "replace", "append", "prepend", "incr", "decr"].contains(&lower.as_str())
    {
        Ok(Op::Write)
    } else if lower.starts_with("delete") {
        Ok(Op::Delete)
    } else {
        Err(parse_err(
            line,
            format!("unknown operation {}", quoted(name)),
        ))
    }
}

/// Column positions from a CSV header.
fn columns(header: &str, want: &[&str], line: u64) -> Result<Vec<usize>> {
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    want.iter()
        .map(|w| {
            names
                .iter()
                .position(|n| n == w)
                .ok_or_else(|| parse_err(line, format!("header lacks column `{w}`")))
        })
        .collect()
}

fn push_repeated(out: &mut Vec<Request>, req: Request, count: u64, line: u64) -> Result<()> {
    const MAX_COUNT: u64 = 1 << 16;
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(parse_err(
            line,
            format!("op_count {count} outside 1..={MAX_COUNT}"),
        ));
    }
    room(out, count, line)?;
    out.extend(std::iter::repeat_n(req, count as usize));
    Ok(())
}

/// CacheLib kv-cache CSV; the header fixes the column order.
pub fn parse_cachelib_kv(r: impl BufRead) -> Result<Vec<Request>> {
    let mut out = Vec::new();
    let mut cols = Vec::new();
    // The header is the first non-blank line (blank lines are skipped but counted).
    let mut header = true;
    for_lines(r, |n, line| {
        if std::mem::take(&mut header) {
            cols = columns(
                line,
                &["op_time", "key", "key_size", "op", "op_count", "size"],
                n,
            )?;
            return Ok(());
        }
        let f: Vec<&str> = line.split(',').collect();
        let get = |i: usize| f.get(cols[i]).copied();
        let time: u64 = num(get(0), "op_time", n)?;
        let key = get(1).ok_or_else(|| parse_err(n, "missing field `key`"))?;
        let key_size: u64 = num(get(2), "key_size", n)?;
        let op = op_from_name(get(3).ok_or_else(|| parse_err(n, "missing field `op`"))?, n)?;
        let count: u64 = num(get(4), "op_count", n)?;
        let size: u64 = num(get(5), "size", n)?;
        let req = Request {
            time,
            id: hash_key(key),
            size: size_u32(key_size.saturating_add(size), n)?,
            op,
            next_access: crate::NEVER,
        };
        push_repeated(&mut out, req, count, n)
    })?;
    non_empty(out)
}

/// CacheLib block-chunk CSV: object = `block_id`, size = `io_size`.
pub fn parse_cachelib_block(r: impl BufRead) -> Result<Vec<Request>> {
    let mut out = Vec::new();
    let mut cols = Vec::new();
    // The header is the first non-blank line (blank lines are skipped but counted).
    let mut header = true;
    for_lines(r, |n, line| {
        if std::mem::take(&mut header) {
            cols = columns(
                line,
                &["op_time", "block_id", "io_size", "op_name", "op_count"],
                n,
            )?;
            return Ok(());
        }
        let f: Vec<&str> = line.split(',').collect();
        let get = |i: usize| f.get(cols[i]).copied();
        let time: u64 = num(get(0), "op_time", n)?;
        let key = get(1).ok_or_else(|| parse_err(n, "missing field `block_id`"))?;
        let size: u64 = num(get(2), "io_size", n)?;
        let name = get(3).ok_or_else(|| parse_err(n, "missing field `op_name`"))?;
        let op = if name.starts_with("getChunkData") {
            Op::Read
        } else if name.starts_with("putChunk") {
            Op::Write
        } else {
            return Err(parse_err(n, format!("unknown op_name {}", quoted(name))));
        };
        let count: u64 = num(get(4), "op_count", n)?;
        let req = Request {
            time,
            id: hash_key(key),
            size: size_u32(size, n)?,
            op,
            next_access: crate::NEVER,
        };
        push_repeated(&mut out, req, count, n)
    })?;
    non_empty(out)
}

/// Twitter cache-trace CSV, no header:
/// `timestamp,key,key_size,value_size,client_id,operation,ttl`.
pub fn parse_twitter(r: impl BufRead) -> Result<Vec<Request>> {
    let mut out = Vec::new();
    for_lines(r, |n, line| {
        // Keys may contain commas: take the 5 numeric/op fields from the right.
        let mut rf = line.rsplitn(6, ',');
        let _ttl: i64 = num(rf.next(), "ttl", n)?;
        let op = op_from_name(
            rf.next()
                .ok_or_else(|| parse_err(n, "missing field `operation`"))?,
            n,
        )?;
        let _client: u64 = num(rf.next(), "client_id", n)?;
        let value_size: u64 = num(rf.next(), "value_size", n)?;
        let key_size: u64 = num(rf.next(), "key_size", n)?;
        let rest = rf
            .next()
            .ok_or_else(|| parse_err(n, "missing `timestamp,key`"))?;
        let (ts, key) = rest
            .split_once(',')
            .ok_or_else(|| parse_err(n, "missing field `key`"))?;
        let time: u64 = num(Some(ts), "timestamp", n)?;
        room(&mut out, 1, n)?;
        out.push(Request {
            time,
            id: hash_key(key),
            size: size_u32(key_size.saturating_add(value_size), n)?,
            op,
            next_access: crate::NEVER,
        });
        Ok(())
    })?;
    non_empty(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review findings (2026-11-25): a few bytes must not expand to any
    /// amount of memory, a long line must not be read whole, an error must not
    /// echo a megabyte field, and a row short of its operation says so.
    #[test]
    fn bad_input_is_bounded_and_named() {
        // Per-line expansion caps, with the line number.
        let e = parse_arc_lis("1 1 0 0\n0 65537 0 0\n".as_bytes()).unwrap_err();
        assert_eq!(line_of(e), 2);
        let kv = "op_time,key,key_size,op,op_count,size\n1,k,4,GET,65537,10\n";
        assert_eq!(line_of(parse_cachelib_kv(kv.as_bytes()).unwrap_err()), 2);
        // The total cap fails before allocating.
        let e = room(&mut Vec::new(), MAX_REQUESTS as u64 + 1, 7).unwrap_err();
        assert!(
            e.to_string().starts_with("line 7: the trace expands past"),
            "{e}"
        );
        // A line past MAX_LINE is refused without reading it all.
        let long = format!("1 1 0 0\n{}", "1".repeat(MAX_LINE + 10));
        let e = parse_arc_lis(long.as_bytes()).unwrap_err();
        assert_eq!(e.to_string(), "line 2: line longer than 16 MiB");
        // A line of exactly MAX_LINE bytes passes the length check, with "\n"
        // or "\r\n" (it then fails as the number it is not).
        for end in ["\n", "\r\n"] {
            let edge = format!("{}{end}", "1".repeat(MAX_LINE));
            let e = parse_arc_lis(edge.as_bytes()).unwrap_err().to_string();
            assert!(e.contains("is out of range"), "{end:?}: {e}");
        }
        // A huge bad field is quoted short.
        let big = format!("{} 1 0 0\n", "9".repeat(100_000));
        let msg = parse_arc_lis(big.as_bytes()).unwrap_err().to_string();
        assert!(msg.len() < 200 && msg.contains("100000 bytes"), "{msg}");
        // A kv row without its `op` field.
        let kv = "op_time,key,key_size,op,op_count,size\n1,k,4\n";
        let msg = parse_cachelib_kv(kv.as_bytes()).unwrap_err().to_string();
        assert_eq!(msg, "line 2: missing field `op`");
        // Deletes only: nothing to look up.
        let kv = "op_time,key,key_size,op,op_count,size\n1,k,4,DELETE,1,0\n";
        assert!(matches!(
            parse_cachelib_kv(kv.as_bytes()),
            Err(Error::EmptyTrace)
        ));
        // A byte-order mark before a headerless Twitter line, or a header.
        let tw = "\u{feff}0,key,3,10,1,get,0\n";
        assert_eq!(parse_twitter(tw.as_bytes()).unwrap().len(), 1);
        let kv = "\u{feff}op_time,key,key_size,op,op_count,size\n1,k,4,GET,1,10\n";
        assert_eq!(parse_cachelib_kv(kv.as_bytes()).unwrap().len(), 1);
        let cp = "\u{feff}version,time,op,size,lbn\n1,5,28,512,7\n";
        assert_eq!(parse_cloudphysics_csv(cp.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn oracle_general_checks_next_access() {
        let mut b = Vec::new();
        for (id, next) in [(10u64, 2i64), (11, -1), (10, 0)] {
            b.extend_from_slice(&1u32.to_le_bytes());
            b.extend_from_slice(&id.to_le_bytes());
            b.extend_from_slice(&512u32.to_le_bytes());
            b.extend_from_slice(&next.to_le_bytes());
        }
        let e = parse_oracle_general(&b[..]).unwrap_err();
        assert!(matches!(e, Error::Record { record: 3, .. }), "{e}");
        assert_eq!(parse_oracle_general(&b[..48]).unwrap().len(), 2);
    }

    fn line_of(e: Error) -> u64 {
        match e {
            Error::Parse { line, .. } => line,
            other => panic!("expected a parse error, got {other}"),
        }
    }

    #[test]
    fn cloudphysics_good_and_bad() {
        let ok = "version,time,op,size,lbn\n1,5,28,512,7\n1,6,2a,1024,9\n";
        let r = parse_cloudphysics_csv(ok.as_bytes()).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!((r[1].id, r[1].size, r[1].op), (9, 1024, Op::Write));
        let bad = "version,time,op,size,lbn\n1,5,28,512,7\n1,6,99,1,9\n";
        assert_eq!(
            line_of(parse_cloudphysics_csv(bad.as_bytes()).unwrap_err()),
            3
        );
        let truncated = "version,time,op,size,lbn\n1,5,28,512,7\n1,6,2a\n";
        let e = parse_cloudphysics_csv(truncated.as_bytes()).unwrap_err();
        assert_eq!(e.to_string(), "line 3: missing field `size`");
        assert!(matches!(
            parse_cloudphysics_csv("version,time,op,size,lbn\n".as_bytes()),
            Err(Error::EmptyTrace)
        ));
        assert!(matches!(
            parse_cloudphysics_csv("".as_bytes()),
            Err(Error::EmptyTrace)
        ));
        assert_eq!(
            line_of(parse_cloudphysics_csv("1,5,28,512,7\n".as_bytes()).unwrap_err()),
            1
        );
    }

    #[test]
    fn oracle_general_records_and_truncation() {
        let mut b = Vec::new();
        for (t, id, sz) in [(1u32, 10u64, 4096u32), (2, 11, 512)] {
            b.extend_from_slice(&t.to_le_bytes());
            b.extend_from_slice(&id.to_le_bytes());
            b.extend_from_slice(&sz.to_le_bytes());
            b.extend_from_slice(&(-1i64).to_le_bytes());
        }
        let r = parse_oracle_general(&b[..]).unwrap();
        assert_eq!((r[1].time, r[1].id, r[1].size), (2, 11, 512));
        let e = parse_oracle_general(&b[..30]).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Truncated {
                    trailing: 6,
                    record: 24,
                    records: 1,
                }
            ),
            "{e}"
        );
        assert!(matches!(
            parse_oracle_general(&b[..0]),
            Err(Error::EmptyTrace)
        ));
    }

    #[test]
    fn a_bad_number_says_what_is_wrong_with_it() {
        let csv = |size: &str| format!("version,time,op,size,lbn\n1,5,28,{size},7\n");
        let msg = |size: &str| {
            parse_cloudphysics_csv(csv(size).as_bytes())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            msg("99999999999999999999"),
            "line 2: field `size` is out of range: \"99999999999999999999\""
        );
        assert_eq!(msg("-5"), "line 2: field `size` is negative: \"-5\"");
        assert_eq!(msg("12x"), "line 2: field `size` is not a number: \"12x\"");
        assert_eq!(msg("-"), "line 2: field `size` is not a number: \"-\"");
        assert_eq!(
            msg("-0"),
            "line 2: field `size` is not an unsigned number: \"-0\""
        );
        // A signed field: a negative value is valid, one too big is out of range.
        let lis = |ignore: &str| {
            parse_arc_lis(format!("1 1 {ignore} 0\n").as_bytes())
                .map(|r| r.len())
                .map_err(|e| e.to_string())
        };
        assert_eq!(lis("-5"), Ok(1));
        assert_eq!(
            lis("-99999999999999999999"),
            Err("line 1: field `ignore` is out of range: \"-99999999999999999999\"".into())
        );
    }

    #[test]
    fn arc_lis_expands_extents() {
        let r = parse_arc_lis("100 3 0 1\n\n7 1 0 2\n".as_bytes()).unwrap();
        let ids: Vec<u64> = r.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![100, 101, 102, 7]);
        assert_eq!(
            line_of(parse_arc_lis("1 1 0 0\n2 x 0 0\n".as_bytes()).unwrap_err()),
            2
        );
        assert_eq!(
            line_of(parse_arc_lis("1 1 0 0\n1 0 0 1\n".as_bytes()).unwrap_err()),
            2
        );
        assert_eq!(line_of(parse_arc_lis("1 1 0\n".as_bytes()).unwrap_err()), 1);
        // Review findings (2026-11-25): a fifth field, two records on one line
        // and CR-only line ends are errors, not records dropped in silence; an
        // extent may end on block u64::MAX.
        for bad in [
            "1 1 0 0 junk\n",
            "1 1 0 0 2 1 0 1\n",
            "1 1 0 0\r2 1 0 1\r3 1 0 2\r",
        ] {
            let e = parse_arc_lis(bad.as_bytes()).unwrap_err().to_string();
            assert_eq!(e, "line 1: more than 4 fields", "{bad:?}");
        }
        let r = parse_arc_lis("18446744073709551614 2 0 0\n".as_bytes()).unwrap();
        let ids: Vec<u64> = r.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![u64::MAX - 1, u64::MAX]);
        assert!(parse_arc_lis("18446744073709551615 2 0 0\n".as_bytes()).is_err());
        assert!(matches!(
            parse_arc_lis("\n\n".as_bytes()),
            Err(Error::EmptyTrace)
        ));
    }

    #[test]
    fn mooncake_blocks_in_order() {
        let s = "{\"timestamp\": 3, \"input_length\": 1, \"output_length\": 1, \"hash_ids\": [5, 6]}\n\
                 {\"timestamp\": 4, \"hash_ids\": [5]}\n";
        let r = parse_mooncake(s.as_bytes(), 64).unwrap();
        let ids: Vec<(u64, u64)> = r.iter().map(|r| (r.time, r.id)).collect();
        assert_eq!(ids, vec![(3, 5), (3, 6), (4, 5)]);
        let bad = "{\"timestamp\": 3, \"hash_ids\": [5]}\n{\"timestamp\": 4, \"hash_ids\": [5,\n";
        assert_eq!(line_of(parse_mooncake(bad.as_bytes(), 64).unwrap_err()), 2);
        let no_ids = "{\"timestamp\": 3}\n";
        assert_eq!(
            line_of(parse_mooncake(no_ids.as_bytes(), 64).unwrap_err()),
            1
        );
    }

    #[test]
    fn cachelib_kv_reads_header_order() {
        let a = "op_time,key,key_size,op,op_count,size,cache_hits,ttl,usecase,sub_usecase\n\
                 1,k1,4,GET,2,10,0,0,1,1\n2,k1,4,DELETE,1,0,0,0,1,1\n";
        let b = "op_time,key,key_size,op,op_count,size,cache_hits,usecase,sub_usecase,ttl\n\
                 1,k1,4,GET,2,10,0,1,1,0\n2,k1,4,DELETE,1,0,0,1,1,0\n";
        let (ra, rb) = (
            parse_cachelib_kv(a.as_bytes()).unwrap(),
            parse_cachelib_kv(b.as_bytes()).unwrap(),
        );
        assert_eq!(ra, rb);
        assert_eq!(ra.len(), 3);
        assert_eq!(ra[2].op, Op::Delete);
        assert_eq!(ra[0].size, 14);
        let bad = "op_time,key,key_size,op,op_count,size\n1,k,4,FROB,1,1\n";
        assert_eq!(line_of(parse_cachelib_kv(bad.as_bytes()).unwrap_err()), 2);
        assert_eq!(
            line_of(parse_cachelib_kv("op_time,key\n".as_bytes()).unwrap_err()),
            1
        );
    }

    #[test]
    fn cachelib_block_and_twitter() {
        let s = "op_time,block_id,block_id_size,io_size,io_offset,user_name,user_namespace,op_name,op_count,host_name,rs_shard_id\n\
                 1,ab-cd,40,8388608,0,1,1,getChunkData.NotInitialized,1,1,4\n\
                 2,ab-cd,40,100,0,1,1,putChunk.Permanent,1,1,4\n";
        let r = parse_cachelib_block(s.as_bytes()).unwrap();
        assert_eq!(
            (r[0].size, r[0].op, r[1].op),
            (8_388_608, Op::Read, Op::Write)
        );
        assert_eq!(r[0].id, r[1].id);
        let good = "0,q:q:1:8WTwl7huJeQ,17,249,1,get,0\n0,a,b,1,0,1,set,0\n";
        let r = parse_twitter(good.as_bytes()).unwrap();
        assert_eq!((r[0].size, r[0].op), (266, Op::Read));
        assert_eq!((r[1].id, r[1].op), (hash_key("a,b"), Op::Write));
        let t = "0,q:q:1:8WTwl7huJeQ,17,249,1,get,0\n0,a,x,1,0,set,0\n";
        assert_eq!(line_of(parse_twitter(t.as_bytes()).unwrap_err()), 2);
    }
}
