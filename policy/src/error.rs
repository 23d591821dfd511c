//! The crate's one public error type (STYLE §5: hand-written, no `thiserror`).

use std::fmt;

/// Everything that can go wrong in engram-policy.
///
/// Only the trace readers and the configuration checks fail; the policies and
/// the simulator core are total functions over valid inputs.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading a trace file failed at the OS or decompression level.
    Io(std::io::Error),
    /// A trace line or record could not be parsed. `line` is 1-based; for
    /// binary traces it is the 1-based record number.
    Parse {
        /// 1-based line (text) or record (binary) number.
        line: u64,
        /// What was wrong with it.
        msg: String,
    },
    /// A binary trace's record that cannot be right.
    Record {
        /// 1-based record number.
        record: u64,
        /// What was wrong with it.
        msg: String,
    },
    /// The trace held no lookup (no request at all, or deletes only).
    EmptyTrace,
    /// A binary trace whose length is not a whole number of records.
    Truncated {
        /// Bytes left over after the last whole record.
        trailing: usize,
        /// Size of one record.
        record: usize,
        /// Whole records before the trailing bytes.
        records: usize,
    },
    /// A configuration value is out of range (capacity zero, bad size spec).
    Config(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "i/o error: {e}"),
            Error::Parse { line, msg } => write!(f, "line {line}: {msg}"),
            Error::Record { record, msg } => write!(f, "record {record}: {msg}"),
            Error::EmptyTrace => f.write_str("trace holds no request (no read or write)"),
            Error::Truncated {
                trailing,
                record,
                records,
            } => write!(
                f,
                "truncated trace: {trailing} trailing bytes after record {records}, the last whole {record}-byte record"
            ),
            Error::Config(msg) => write!(f, "bad configuration: {msg}"),
        }
    }
}

/// No `source`: the message already carries the I/O error's text, and an
/// error chain printer (anyhow's `{:#}`) would print it twice (review finding).
impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

/// Shorthand used across the crate.
pub type Result<T> = std::result::Result<T, Error>;
