//! A small hand parser for the Mooncake JSONL lines:
//! `{"timestamp": ms, "input_length": n, "output_length": n, "hash_ids": [u64, ...]}`.

use crate::error::Error;

/// Tokens per Mooncake prefix block.
pub const TRACE_BLOCK_TOKENS: usize = 512;

/// One request of a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRequest {
    /// Arrival time in milliseconds.
    pub timestamp_ms: u64,
    /// Prompt tokens.
    pub input_len: usize,
    /// Generated tokens.
    pub output_len: usize,
    /// Prefix block hashes, one per 512 prompt tokens (the last may be partial).
    pub hash_ids: Vec<u64>,
}

/// Parse one line; `line_no` (1-based) goes into errors. The line must be one
/// JSON object (serde_json: a number like `5e4` or `3000.7`, trailing text, or
/// a line that is not an object is an error, not misread); the counts and ids
/// are non-negative integers that fit in 64 bits.
pub fn parse_line(line: &str, line_no: usize) -> Result<TraceRequest, Error> {
    let err = |what| Error::Trace {
        line: line_no,
        what,
    };
    let v: serde_json::Value = serde_json::from_str(line).map_err(|_| err("bad JSON"))?;
    let obj = v.as_object().ok_or(err("not a JSON object"))?;
    let num = |key: &str, what| -> Result<u64, Error> {
        obj.get(key)
            .and_then(serde_json::Value::as_u64)
            .ok_or(err(what))
    };
    let timestamp_ms = num("timestamp", "missing or bad timestamp")?;
    let input_len = usize::try_from(num("input_length", "missing or bad input_length")?)
        .map_err(|_| err("input_length too big"))?;
    let output_len = usize::try_from(num("output_length", "missing or bad output_length")?)
        .map_err(|_| err("output_length too big"))?;
    let ids = obj
        .get("hash_ids")
        .and_then(serde_json::Value::as_array)
        .ok_or(err("missing hash_ids"))?;
    let hash_ids = ids
        .iter()
        .map(|h| h.as_u64().ok_or(err("bad hash id")))
        .collect::<Result<Vec<u64>, Error>>()?;
    if hash_ids.len() < input_len.div_ceil(TRACE_BLOCK_TOKENS) {
        return Err(err("fewer hash_ids than input blocks"));
    }
    Ok(TraceRequest {
        timestamp_ms,
        input_len,
        output_len,
        hash_ids,
    })
}

/// Parse a whole JSONL text (blank lines skipped). A text with no request is
/// an error (line 1), not an empty replay.
pub fn parse(text: &str) -> Result<Vec<TraceRequest>, Error> {
    let reqs = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_line(l, i + 1))
        .collect::<Result<Vec<_>, _>>()?;
    if reqs.is_empty() {
        return Err(Error::Trace {
            line: 1,
            what: "empty trace: no request",
        });
    }
    Ok(reqs)
}

fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Token ids of a request's prompt: block `i` of hash id `h` holds tokens derived from
/// `(h, position)`, so equal hash-id prefixes give equal token prefixes.
pub fn prompt_tokens(r: &TraceRequest) -> Vec<u32> {
    prompt_prefix(r, r.input_len)
}

/// The first `n` (at most `input_len`) tokens of [`prompt_tokens`], built
/// without the rest: a trace line may claim any length.
pub fn prompt_prefix(r: &TraceRequest, n: usize) -> Vec<u32> {
    (0..r.input_len.min(n))
        .map(|p| {
            let h = r.hash_ids[p / TRACE_BLOCK_TOKENS];
            (mix(h
                .wrapping_mul(0x1_0000_0001)
                .wrapping_add((p % TRACE_BLOCK_TOKENS) as u64)) as u32)
                & 0x7FFF_FFFF
        })
        .collect()
}

/// A synthetic trace: Poisson arrivals at `rate_per_s`, input and output lengths
/// uniform in `[mean/2, 3*mean/2]`, and a `share` fraction of requests starting
/// with one of eight shared system prompts of `shared_blocks` blocks.
pub fn poisson(
    n: usize,
    rate_per_s: f64,
    mean_in: usize,
    mean_out: usize,
    share: f64,
    shared_blocks: usize,
    seed: u64,
) -> Vec<TraceRequest> {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut unit = move || (next() >> 11) as f64 / (1u64 << 53) as f64;
    let mut t = 0.0f64;
    let mut fresh = 1_000_000u64;
    (0..n)
        .map(|_| {
            t += -(1.0 - unit()).ln() / rate_per_s * 1000.0;
            let input_len = (mean_in / 2 + (unit() * mean_in as f64) as usize).max(1);
            let output_len = (mean_out / 2 + (unit() * mean_out as f64) as usize).max(1);
            let blocks = input_len.div_ceil(TRACE_BLOCK_TOKENS);
            let shared = if unit() < share {
                shared_blocks.min(blocks)
            } else {
                0
            };
            let which = (unit() * 8.0) as u64;
            let hash_ids = (0..blocks)
                .map(|b| {
                    if b < shared {
                        which * 1000 + b as u64
                    } else {
                        fresh += 1;
                        fresh
                    }
                })
                .collect();
            TraceRequest {
                timestamp_ms: t as u64,
                input_len,
                output_len,
                hash_ids,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_trace_is_an_error() {
        for text in ["", "\n", " \r\n\n"] {
            assert!(
                matches!(parse(text), Err(Error::Trace { line: 1, .. })),
                "{text:?} accepted"
            );
        }
    }

    #[test]
    fn parses_mooncake_lines() {
        let r = parse_line(r#"{"timestamp": 27, "input_length": 1030, "output_length": 5, "hash_ids": [0, 1, 46]}"#, 1).unwrap();
        assert_eq!(
            r,
            TraceRequest {
                timestamp_ms: 27,
                input_len: 1030,
                output_len: 5,
                hash_ids: vec![0, 1, 46]
            }
        );
        assert_eq!(
            parse_line(
                r#"{"timestamp": 1, "input_length": 0, "output_length": 2, "hash_ids": []}"#,
                1
            )
            .unwrap()
            .hash_ids,
            Vec::<u64>::new()
        );
    }

    #[test]
    fn rejects_bad_lines_with_line_numbers() {
        let e = parse("\n{\"timestamp\": 1}\n").unwrap_err();
        assert_eq!(
            e,
            Error::Trace {
                line: 2,
                what: "missing or bad input_length"
            }
        );
        let e = parse_line(
            r#"{"timestamp": 1, "input_length": 600, "output_length": 2, "hash_ids": [3]}"#,
            7,
        )
        .unwrap_err();
        assert_eq!(
            e,
            Error::Trace {
                line: 7,
                what: "fewer hash_ids than input blocks"
            }
        );
        let bad = |line: &str| parse_line(line, 1).unwrap_err();
        let what = |line: &str| match bad(line) {
            Error::Trace { what, .. } => what,
            e => panic!("{e:?}"),
        };
        assert_eq!(
            what(r#"{"timestamp": 1, "input_length": 6, "output_length": 2, "hash_ids": [3, x]}"#),
            "bad JSON"
        );
        assert_eq!(
            what(r#"{"timestamp": 1, "input_length": 6, "output_length": 2, "hash_ids": [3, -4]}"#),
            "bad hash id"
        );
        // Review findings: numbers the old hand parser cut short (5e4 read as
        // 5, 3000.7 as 3000), text after the object, and no object at all.
        assert_eq!(
            what(r#"{"timestamp": 0, "input_length": 5e4, "output_length": 2, "hash_ids": [1]}"#),
            "missing or bad input_length"
        );
        assert_eq!(
            what(
                r#"{"timestamp": 0, "input_length": 3000.7, "output_length": 2, "hash_ids": [1]}"#
            ),
            "missing or bad input_length"
        );
        assert_eq!(
            what(
                r#"{"timestamp": 0, "input_length": 1, "output_length": 2, "hash_ids": [1]} junk"#
            ),
            "bad JSON"
        );
        assert_eq!(
            what(r#""timestamp": 0, "input_length": 1, "output_length": 2, "hash_ids": [1]"#),
            "bad JSON"
        );
        assert_eq!(what("[1, 2]"), "not a JSON object");
        assert_eq!(
            what(r#"{"timestamp": -1, "input_length": 1, "output_length": 2, "hash_ids": [1]}"#),
            "missing or bad timestamp"
        );
    }

    #[test]
    fn equal_hash_prefixes_give_equal_tokens() {
        let a = TraceRequest {
            timestamp_ms: 0,
            input_len: 1100,
            output_len: 1,
            hash_ids: vec![5, 6, 7],
        };
        let b = TraceRequest {
            timestamp_ms: 0,
            input_len: 1024,
            output_len: 1,
            hash_ids: vec![5, 6],
        };
        let c = TraceRequest {
            timestamp_ms: 0,
            input_len: 1024,
            output_len: 1,
            hash_ids: vec![5, 9],
        };
        let (ta, tb, tc) = (prompt_tokens(&a), prompt_tokens(&b), prompt_tokens(&c));
        assert_eq!(ta[..1024], tb[..]);
        assert_eq!(ta[..512], tc[..512]);
        assert_ne!(ta[512..1024], tc[512..]);
    }

    #[test]
    fn poisson_is_ordered_and_shares_prefixes() {
        let t = poisson(200, 10.0, 2048, 64, 0.8, 2, 7);
        assert!(t.windows(2).all(|w| w[0].timestamp_ms <= w[1].timestamp_ms));
        let shared = t.iter().filter(|r| r.hash_ids[0] < 1_000_000).count();
        assert!(shared > 100 && shared < 200, "{shared}");
    }
}
