//! The `ENGRAM_MALLOC` option parser (`engram_alloc::Config::parse`) against
//! a reference written the plain way (std strings), for the `malloc_options`
//! fuzz target and its seed replay.
//!
//! The allocator's parser works on bytes without allocating, because it runs
//! before malloc exists; the reference splits, trims and parses `String`s.
//! Both must agree on every input: items split at `,`, key and value at the
//! first `=`, spaces and tabs trimmed, values decimal with an optional
//! K/M/G suffix (powers of 1024), an item whose value does not parse (or
//! overflows u64) skipped, numbers clamped to each option's bound, later
//! items overriding earlier ones.

use engram_alloc::{Config, MAX_ARENAS, QUARANTINE_MAX, TCACHE_MAX};

/// What the documented grammar says `s` means.
pub fn reference(s: &[u8]) -> Config {
    let mut c = Config::DEFAULT;
    // Lossy decoding keeps every ASCII byte (',', '=', blanks, digits, key
    // letters) where it was and replaces only non-ASCII bytes, which make
    // an item's key unknown or its value unparsable under either parser.
    let text = String::from_utf8_lossy(s);
    for item in text.split(',') {
        let Some((key, val)) = item.split_once('=') else {
            continue;
        };
        let key = key.trim_matches([' ', '\t']);
        let Some(v) = number(val.trim_matches([' ', '\t'])) else {
            continue;
        };
        match key {
            "guard" => c.guard = v != 0,
            "guard_slabs" => c.guard_slabs = v.min(1 << 30) as usize,
            "quarantine" => c.quarantine = v.min(QUARANTINE_MAX as u64) as usize,
            "zero" => c.zero = v != 0,
            "canary" => c.canary = v != 0,
            "random" => c.random = v != 0,
            "tcache" => c.tcache = v.min(TCACHE_MAX as u64) as usize,
            "decommit" => c.decommit = v.min(1 << 20) as usize,
            "arenas" => c.arenas = v.min(MAX_ARENAS as u64) as usize,
            "large_cache" => c.large_cache = v.min(1 << 40) as usize,
            "thp" => c.thp = v != 0,
            "stats" => c.stats = v != 0,
            "stats_fd" if v <= i32::MAX as u64 => {
                c.stats = true;
                c.stats_fd = v as i32;
            }
            "stats_ino" => c.stats_ino = v,
            _ => {}
        }
    }
    c
}

fn number(s: &str) -> Option<u64> {
    let (digits, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

/// The fuzz target's body: parse `data`; panic if the parser disagrees with
/// the reference or leaves an option out of its bounds.
pub fn run(data: &[u8]) {
    let got = Config::parse(data);
    assert_eq!(
        got,
        reference(data),
        "options {:?}",
        String::from_utf8_lossy(data)
    );
    assert!(got.quarantine <= QUARANTINE_MAX, "{got:?}");
    assert!(got.tcache <= TCACHE_MAX, "{got:?}");
    assert!(got.arenas <= MAX_ARENAS, "{got:?}");
    assert!(
        got.decommit <= 1 << 20 && got.large_cache <= 1 << 40 && got.guard_slabs <= 1 << 30,
        "{got:?}"
    );
    assert!(got.stats_fd >= 0, "{got:?}");
}
