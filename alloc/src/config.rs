//! Run-time options from `ENGRAM_MALLOC=key=value,...`, parsed without allocating.
//!
//! The defaults are the secure ones. A malloc cannot refuse to start, so unknown keys
//! and malformed values are ignored and the default stays. Every key is documented in
//! docs/ALLOC_CONTRACT.md and the README.

/// Hard upper bound of per-thread cache entries per class (the TLS array size).
pub const TCACHE_MAX: usize = 64;
/// Default per-thread cache entries per size class: half of [`TCACHE_MAX`].
/// Measured 2026-11-24 14:22 and 14:25 UTC (benches/README.md): 32 instead of
/// 64 took the synthetic set's peak RSS from 1.25 to 1.13-1.14 of glibc's
/// (xmalloc's peak is most of it) with time unchanged within the noise; 16 cost
/// 10 % synthetic time.
pub const TCACHE_DEFAULT: usize = 32;
/// Hard upper bound of per-thread quarantine slots (the TLS array size).
pub const QUARANTINE_MAX: usize = 256;
/// Hard upper bound of arenas per size class (each owns an equal share of the
/// class region).
pub const MAX_ARENAS: usize = 8;
/// Default for [`Config::guard_slabs`]: 8192 guarded slabs are 16k kernel
/// mappings (a quarter of the default `vm.max_map_count` of 65,530) and at
/// least 8 GiB of small-block heap (slabs are 1 MiB or more). Large blocks take
/// at most 32k more (`large::GUARDED_MAX`), which leaves the program itself
/// about 16k for its own libraries, thread stacks and mmaps.
pub const GUARD_SLABS_DEFAULT: usize = 8192;

/// The allocator's switches. Read once at init, never changed afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// A guard page after every slab (up to `guard_slabs`) and after every large
    /// block (up to 16k live ones).
    pub guard: bool,
    /// Most slabs committed with a guard page after them. Each costs two kernel
    /// mappings; later slabs are committed together with their guard page, so
    /// that consecutive ones share one mapping and the heap can keep growing
    /// under `vm.max_map_count` (canaries still catch overflows between them).
    pub guard_slabs: usize,
    /// Freed slots held back per thread before reuse; 0 = off.
    pub quarantine: usize,
    /// Zero on free and check a reused slot is still zero.
    pub zero: bool,
    /// Canary: 8 fill bytes after the requested size and a keyed size word at the
    /// slot end, checked at free and realloc.
    pub canary: bool,
    /// Randomized slot choice.
    pub random: bool,
    /// Per-thread cache entries per size class (at most [`TCACHE_MAX`]).
    pub tcache: usize,
    /// Empty slabs kept committed per class before MADV_DONTNEED (each of the
    /// class's arenas keeps this divided by the arena count, rounded up).
    pub decommit: usize,
    /// Arenas per size class (rounded up to a power of two, at most
    /// [`MAX_ARENAS`]); 0 = one per two CPUs the process may run on.
    pub arenas: usize,
    /// Bytes of freed large blocks kept mapped for reuse.
    pub large_cache: usize,
    /// Blocks of 2 MiB and more start on a 2 MiB boundary and ask for transparent
    /// huge pages (MADV_HUGEPAGE).
    pub thp: bool,
    /// Print the report line at exit.
    pub stats: bool,
    /// Where the report goes: a file descriptor (2 = stderr).
    pub stats_fd: i32,
    /// When non-zero: the report is written only if `stats_fd` is a pipe with
    /// this inode (`engram run` passes its pipe's). A program may close that
    /// descriptor and open a file of its own under the same number; the report
    /// must not land in that file.
    pub stats_ino: u64,
}

impl Config {
    /// Secure defaults.
    pub const DEFAULT: Config = Config {
        guard: true,
        guard_slabs: GUARD_SLABS_DEFAULT,
        quarantine: 64,
        zero: true,
        canary: true,
        random: true,
        tcache: TCACHE_DEFAULT,
        decommit: 2,
        arenas: 0,
        large_cache: 64 << 20,
        thp: true,
        stats: false,
        stats_fd: 2,
        stats_ino: 0,
    };

    /// The keys a user may set (docs/ALLOC_CONTRACT.md); `stats_fd` and
    /// `stats_ino` are `engram run`'s. `engram run --opts` checks against this
    /// list, so it cannot drift from the parser (test `user_keys_are_parsed`).
    pub const USER_KEYS: [&'static str; 12] = [
        "guard",
        "guard_slabs",
        "quarantine",
        "zero",
        "canary",
        "random",
        "tcache",
        "decommit",
        "arenas",
        "large_cache",
        "thp",
        "stats",
    ];

    /// An option's value as [`Config::parse`] reads it: blanks trimmed, decimal
    /// digits with an optional K/M/G suffix, within u64. None: the parser
    /// would skip the item and keep the default.
    pub fn parse_value(s: &[u8]) -> Option<u64> {
        parse_size(trim(s))
    }

    /// Parse an option string over the defaults. Never fails: bad items are skipped.
    pub fn parse(s: &[u8]) -> Config {
        let mut c = Config::DEFAULT;
        for item in s.split(|&b| b == b',') {
            let mut kv = item.splitn(2, |&b| b == b'=');
            let key = trim(kv.next().unwrap_or(&[]));
            let Some(val) = kv.next().and_then(Config::parse_value) else {
                continue;
            };
            match key {
                b"guard" => c.guard = val != 0,
                b"guard_slabs" => c.guard_slabs = val.min(1 << 30) as usize,
                b"quarantine" => c.quarantine = val.min(QUARANTINE_MAX as u64) as usize,
                b"zero" => c.zero = val != 0,
                b"canary" => c.canary = val != 0,
                b"random" => c.random = val != 0,
                b"tcache" => c.tcache = val.min(TCACHE_MAX as u64) as usize,
                b"decommit" => c.decommit = val.min(1 << 20) as usize,
                b"arenas" => c.arenas = val.min(MAX_ARENAS as u64) as usize,
                b"large_cache" => c.large_cache = val.min(1 << 40) as usize,
                b"thp" => c.thp = val != 0,
                b"stats" => c.stats = val != 0,
                b"stats_fd" if val <= i32::MAX as u64 => {
                    c.stats = true;
                    c.stats_fd = val as i32;
                }
                b"stats_ino" => c.stats_ino = val,
                _ => {}
            }
        }
        c
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// A decimal number with an optional K/M/G suffix (powers of 1024).
fn parse_size(s: &[u8]) -> Option<u64> {
    let (digits, shift) = match s {
        [d @ .., b'k' | b'K'] => (d, 10),
        [d @ .., b'm' | b'M'] => (d, 20),
        [d @ .., b'g' | b'G'] => (d, 30),
        d => (d, 0),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    v.checked_mul(1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_secure() {
        let c = Config::parse(b"");
        assert_eq!(c, Config::DEFAULT);
        assert!(c.guard && c.zero && c.canary && c.random && c.quarantine > 0);
    }

    #[test]
    fn parses_every_key() {
        let c = Config::parse(
            b"guard=0,guard_slabs=12,quarantine=10,zero=0,canary=0,random=0,tcache=8,decommit=5,arenas=3,large_cache=2M,thp=0,stats_fd=7",
        );
        assert!(!c.guard && !c.zero && !c.canary && !c.random);
        assert_eq!(c.guard_slabs, 12);
        assert_eq!(c.quarantine, 10);
        assert_eq!(c.tcache, 8);
        assert_eq!(c.decommit, 5);
        assert_eq!(c.arenas, 3);
        assert_eq!(c.large_cache, 2 << 20);
        assert!(!c.thp);
        assert!(c.stats);
        assert_eq!(c.stats_fd, 7);
    }

    #[test]
    fn values_are_numbers_with_an_optional_suffix() {
        for (ok, v) in [
            ("0", 0),
            (" 7\t", 7),
            ("64k", 64 << 10),
            ("2M", 2 << 20),
            ("3g", 3 << 30),
            ("18446744073709551615", u64::MAX),
        ] {
            assert_eq!(Config::parse_value(ok.as_bytes()), Some(v), "{ok:?}");
        }
        for bad in [
            "",
            "off",
            "-1",
            "+1",
            "1.5G",
            "0x10",
            "1 2",
            "G",
            "1T",
            "1KB",
            "18446744073709551616",
            "17179869184G",
        ] {
            assert_eq!(Config::parse_value(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn user_keys_are_parsed() {
        for key in Config::USER_KEYS {
            let changes =
                |v: &str| Config::parse(format!("{key}={v}").as_bytes()) != Config::DEFAULT;
            assert!(
                changes("0") || changes("12345"),
                "{key} is not read by the parser"
            );
        }
    }

    #[test]
    fn bad_items_keep_defaults_and_values_are_clamped() {
        let c = Config::parse(
            b"guard=x,,=3,bogus=1,quarantine=99999, tcache = 1000 ,arenas=99,large_cache=9999999999999G",
        );
        assert!(c.guard);
        assert_eq!(c.quarantine, QUARANTINE_MAX);
        assert_eq!(c.tcache, TCACHE_MAX);
        assert_eq!(c.arenas, MAX_ARENAS);
        assert_eq!(c.large_cache, Config::DEFAULT.large_cache);
    }
}
