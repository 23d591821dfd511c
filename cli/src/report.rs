//! The allocator's report lines, read back from the stats pipe.
//!
//! Each process that ran on libengram_malloc.so writes one line to the `stats_fd`
//! it was given (docs/ALLOC_CONTRACT.md):
//!
//! ```text
//! engram-malloc: report pid=<pid> allocs=<n> frees=<n> peak_bytes=<n> faults=<n>
//! ```
//!
//! The lines come from programs we do not control (any of them may also write to
//! the inherited descriptor), so parsing is total: a line that is not exactly a
//! report is counted as malformed and skipped, nothing panics, and sums saturate.
//! [`Collector`] takes the pipe's bytes in arbitrary chunks and keeps at most one
//! bounded partial line, so a runaway writer cannot exhaust our memory.

/// The start of every report line, including the separating space.
const PREFIX: &str = "engram-malloc: report ";

/// Longest line kept. The allocator writes ~100 bytes per line with one
/// `write(2)` under PIPE_BUF (4096), which is also what keeps lines from
/// concurrent processes whole; anything longer is not a report.
const MAX_LINE: usize = 4096;

/// One process's report line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessReport {
    pub pid: u32,
    pub allocs: u64,
    pub frees: u64,
    pub peak_bytes: u64,
    pub faults: u64,
}

/// All report lines of one run, folded together.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Well-formed report lines, one per process that reported.
    pub processes: u64,
    /// Sum over processes.
    pub allocs: u64,
    /// Sum over processes.
    pub frees: u64,
    /// Max over processes: they had separate heaps, possibly at different times.
    pub peak_bytes: u64,
    /// Sum over processes.
    pub faults: u64,
    /// Non-blank lines that were not a report.
    pub malformed: u64,
}

impl Summary {
    fn add(&mut self, report: &ProcessReport) {
        self.processes = self.processes.saturating_add(1);
        self.allocs = self.allocs.saturating_add(report.allocs);
        self.frees = self.frees.saturating_add(report.frees);
        self.peak_bytes = self.peak_bytes.max(report.peak_bytes);
        self.faults = self.faults.saturating_add(report.faults);
    }

    fn add_line(&mut self, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match std::str::from_utf8(line).ok().and_then(parse_line) {
            Some(report) => self.add(&report),
            None => self.malformed = self.malformed.saturating_add(1),
        }
    }
}

/// Parses one report line (without its newline). `None` unless the line starts
/// with the report prefix and carries each of `pid`, `allocs`, `frees`,
/// `peak_bytes` and `faults` exactly once as a decimal number. Unknown
/// `key=value` fields are skipped so that the allocator may add some later.
pub fn parse_line(line: &str) -> Option<ProcessReport> {
    let fields = line.trim_end().strip_prefix(PREFIX)?;
    // pid, allocs, frees, peak_bytes, faults
    let mut values: [Option<u64>; 5] = [None; 5];
    for field in fields.split_ascii_whitespace() {
        let (key, value) = field.split_once('=')?;
        let slot = match key {
            "pid" => 0,
            "allocs" => 1,
            "frees" => 2,
            "peak_bytes" => 3,
            "faults" => 4,
            _ => continue,
        };
        if values[slot].is_some() {
            return None;
        }
        values[slot] = Some(parse_decimal(value)?);
    }
    let [
        Some(pid),
        Some(allocs),
        Some(frees),
        Some(peak_bytes),
        Some(faults),
    ] = values
    else {
        return None;
    };
    let pid = u32::try_from(pid).ok().filter(|&pid| pid > 0)?;
    Some(ProcessReport {
        pid,
        allocs,
        frees,
        peak_bytes,
        faults,
    })
}

/// Plain ASCII digits only: `str::parse` would also take a leading `+`.
fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Folds report lines arriving in arbitrary chunks into a [`Summary`].
#[derive(Debug, Default)]
pub struct Collector {
    summary: Summary,
    /// The current line so far, at most `MAX_LINE` bytes.
    partial: Vec<u8>,
    /// The current line outgrew `MAX_LINE`; drop bytes up to its newline.
    overlong: bool,
}

impl Collector {
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (piece, ends_line) = match bytes.iter().position(|&b| b == b'\n') {
                Some(at) => (&bytes[..at], true),
                None => (bytes, false),
            };
            bytes = &bytes[piece.len() + usize::from(ends_line)..];
            if !self.overlong {
                if self.partial.len() + piece.len() > MAX_LINE {
                    self.overlong = true;
                    self.partial.clear();
                } else {
                    self.partial.extend_from_slice(piece);
                }
            }
            if ends_line {
                self.end_line();
            }
        }
    }

    /// The summary of everything fed; a last line without a newline still counts.
    pub fn finish(mut self) -> Summary {
        if self.overlong || !self.partial.is_empty() {
            self.end_line();
        }
        self.summary
    }

    fn end_line(&mut self) {
        if self.overlong {
            self.summary.malformed = self.summary.malformed.saturating_add(1);
        } else {
            self.summary.add_line(&self.partial);
        }
        self.partial.clear();
        self.overlong = false;
    }
}

/// `n` bytes for people: `512 B`, `1.5 KiB`, `12.3 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    // 1023.95 and up would print as "1024.0": move to the next unit instead.
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Folds all report lines in `input` at once.
    fn summarize(input: &[u8]) -> Summary {
        let mut collector = Collector::default();
        collector.feed(input);
        collector.finish()
    }

    const LINE_A: &str = "engram-malloc: report pid=101 allocs=10 frees=8 peak_bytes=4096 faults=0";
    const LINE_B: &str = "engram-malloc: report pid=102 allocs=5 frees=5 peak_bytes=65536 faults=1";

    #[test]
    fn parses_a_good_line() {
        assert_eq!(
            parse_line(LINE_A),
            Some(ProcessReport {
                pid: 101,
                allocs: 10,
                frees: 8,
                peak_bytes: 4096,
                faults: 0
            })
        );
    }

    #[test]
    fn one_process() {
        let summary = summarize(format!("{LINE_A}\n").as_bytes());
        assert_eq!(
            summary,
            Summary {
                processes: 1,
                allocs: 10,
                frees: 8,
                peak_bytes: 4096,
                faults: 0,
                malformed: 0
            }
        );
    }

    #[test]
    fn several_processes_sum_counts_and_take_the_max_peak() {
        let summary = summarize(format!("{LINE_A}\n{LINE_B}\n{LINE_A}\n").as_bytes());
        assert_eq!(
            summary,
            Summary {
                processes: 3,
                allocs: 25,
                frees: 21,
                peak_bytes: 65536,
                faults: 1,
                malformed: 0
            }
        );
    }

    #[test]
    fn empty_input_is_an_empty_summary() {
        assert_eq!(summarize(b""), Summary::default());
        assert_eq!(summarize(b"\n\n  \n"), Summary::default());
    }

    #[test]
    fn malformed_lines_are_counted_and_skipped() {
        let bad = [
            "hello",
            "engram-malloc: report",
            "engram-malloc: report ",
            "engram-malloc: fatal: double free in free() at 0x1000",
            "engram-malloc: report pid=1 allocs=1 frees=1 peak_bytes=1",
            "engram-malloc: report pid=1 allocs=1 frees=1 peak_bytes=1 faults=x",
            "engram-malloc: report pid=1 allocs=1 frees=1 peak_bytes=1 faults=",
            "engram-malloc: report pid=1 allocs=+1 frees=1 peak_bytes=1 faults=0",
            "engram-malloc: report pid=1 allocs=-1 frees=1 peak_bytes=1 faults=0",
            "engram-malloc: report pid=1 allocs=1 allocs=2 frees=1 peak_bytes=1 faults=0",
            "engram-malloc: report pid=1 allocs=1 frees=1 peak_bytes=1 faults=0 junk",
            "engram-malloc: report pid=0 allocs=1 frees=1 peak_bytes=1 faults=0",
            "engram-malloc: report pid=99999999999 allocs=1 frees=1 peak_bytes=1 faults=0",
            "engram-malloc: report pid=1 allocs=99999999999999999999 frees=1 peak_bytes=1 faults=0",
            " engram-malloc: report pid=1 allocs=1 frees=1 peak_bytes=1 faults=0",
            "ENGRAM-MALLOC: report pid=1 allocs=1 frees=1 peak_bytes=1 faults=0",
        ];
        for line in bad {
            assert_eq!(parse_line(line), None, "{line:?}");
        }
        let mut input = format!("{LINE_A}\n");
        for line in bad {
            input.push_str(line);
            input.push('\n');
        }
        let summary = summarize(input.as_bytes());
        assert_eq!(summary.processes, 1);
        assert_eq!(summary.allocs, 10);
        assert_eq!(summary.malformed, bad.len() as u64);
    }

    #[test]
    fn tolerates_unknown_fields_other_order_and_crlf() {
        let line =
            "engram-malloc: report faults=2 peak_bytes=7 frees=3 allocs=4 pid=9 live_bytes=1\r";
        assert_eq!(
            parse_line(line),
            Some(ProcessReport {
                pid: 9,
                allocs: 4,
                frees: 3,
                peak_bytes: 7,
                faults: 2
            })
        );
    }

    #[test]
    fn invalid_utf8_is_malformed() {
        let summary = summarize(b"\xff\xfe report\n");
        assert_eq!(summary.malformed, 1);
        assert_eq!(summary.processes, 0);
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        let input = format!("{LINE_A}\ngarbage\n{LINE_B}");
        let whole = summarize(input.as_bytes());
        for chunk in 1..input.len() {
            let mut collector = Collector::default();
            for piece in input.as_bytes().chunks(chunk) {
                collector.feed(piece);
            }
            assert_eq!(collector.finish(), whole, "chunk size {chunk}");
        }
        assert_eq!(whole.processes, 2);
        assert_eq!(whole.malformed, 1);
    }

    #[test]
    fn overlong_lines_are_dropped_not_buffered() {
        let mut collector = Collector::default();
        let junk = vec![b'x'; 1 << 20];
        collector.feed(&junk);
        collector.feed(&junk);
        assert!(collector.partial.len() <= MAX_LINE);
        collector.feed(format!("\n{LINE_A}\n").as_bytes());
        let summary = collector.finish();
        assert_eq!(summary.processes, 1);
        assert_eq!(summary.malformed, 1);

        let unterminated = summarize(&junk);
        assert_eq!(unterminated.malformed, 1);
    }

    #[test]
    fn sums_saturate() {
        let max = u64::MAX;
        let line = format!(
            "engram-malloc: report pid=1 allocs={max} frees={max} peak_bytes={max} faults={max}\n"
        );
        let summary = summarize(line.repeat(3).as_bytes());
        assert_eq!(summary.processes, 3);
        assert_eq!(summary.allocs, max);
        assert_eq!(summary.faults, max);
        assert_eq!(summary.peak_bytes, max);
    }

    #[test]
    fn human_bytes_picks_a_unit() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_bytes(12_897_485), "12.3 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }
}
