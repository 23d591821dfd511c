//! Fault reports: one line to stderr with write(2), the stats line if asked, abort.
//!
//! Formatting is done by hand into a stack buffer: `core::fmt` is not allowed on
//! the allocator path (it can allocate through `Display` impls and it can panic).

use crate::os;

/// What was detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The block was already freed.
    DoubleFree,
    /// Never returned by this allocator (global, stack, foreign mapping, guard page).
    InvalidPointer,
    /// Points inside a block, not at its start.
    InteriorPointer,
    /// A freed pointer handed to realloc or malloc_usable_size.
    UseAfterFree,
    /// A freed slot was written to while free (found when it is handed out again).
    WriteAfterFree,
    /// The canary past the requested size was overwritten.
    HeapOverflow,
    /// The allocator's own state contradicts itself.
    MetadataCorruption,
    /// free_sized / free_aligned_sized with a size or alignment the block doesn't have.
    SizeMismatch,
}

impl Fault {
    /// The words used in the report line (docs/ALLOC_CONTRACT.md).
    pub const fn as_str(self) -> &'static str {
        match self {
            Fault::DoubleFree => "double free",
            Fault::InvalidPointer => "invalid pointer",
            Fault::InteriorPointer => "interior pointer",
            Fault::UseAfterFree => "use after free",
            Fault::WriteAfterFree => "write after free",
            Fault::HeapOverflow => "heap overflow",
            Fault::MetadataCorruption => "metadata corruption",
            Fault::SizeMismatch => "size mismatch",
        }
    }
}

/// The C entry point a fault was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// malloc and everything that hands out a block (calloc, memalign, ...).
    Malloc,
    /// free
    Free,
    /// realloc / reallocarray
    Realloc,
    /// malloc_usable_size
    UsableSize,
    /// free_sized
    FreeSized,
    /// free_aligned_sized
    FreeAlignedSized,
    /// malloc_trim (its release of empty slabs checks them first)
    Trim,
}

impl Op {
    const fn as_str(self) -> &'static str {
        match self {
            Op::Malloc => "malloc",
            Op::Free => "free",
            Op::Realloc => "realloc",
            Op::UsableSize => "malloc_usable_size",
            Op::FreeSized => "free_sized",
            Op::FreeAlignedSized => "free_aligned_sized",
            Op::Trim => "malloc_trim",
        }
    }
}

/// A fixed-capacity line buffer on the stack.
pub struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl Line {
    /// An empty line.
    pub const fn new() -> Self {
        Line {
            buf: [0; 256],
            len: 0,
        }
    }
    /// Append bytes, truncating at capacity.
    pub fn push(&mut self, s: &[u8]) -> &mut Self {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
        self
    }
    /// Append a decimal number.
    pub fn dec(&mut self, mut v: u64) -> &mut Self {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&tmp[i..])
    }
    /// Append a hexadecimal number with `0x`.
    pub fn hex(&mut self, mut v: u64) -> &mut Self {
        let mut tmp = [0u8; 16];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b"0123456789abcdef"[(v & 15) as usize];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        self.push(b"0x").push(&tmp[i..])
    }
    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The fault line of the contract: `engram-malloc: fatal: <kind> in <op>() at 0x..`.
pub fn fault_line(fault: Fault, op: Op, addr: usize) -> Line {
    let mut l = Line::new();
    l.push(b"engram-malloc: fatal: ")
        .push(fault.as_str().as_bytes())
        .push(b" in ")
        .push(op.as_str().as_bytes())
        .push(b"() at ")
        .hex(addr as u64)
        .push(b"\n");
    l
}

/// Report `fault` and abort.
#[cold]
#[inline(never)]
pub fn fatal(fault: Fault, op: Op, addr: usize) -> ! {
    os::write_all(2, fault_line(fault, op, addr).as_bytes());
    crate::heap::on_fault();
    os::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_formats_like_the_contract() {
        let l = fault_line(Fault::DoubleFree, Op::Free, 0x7f00_dead_beef);
        assert_eq!(
            l.as_bytes(),
            b"engram-malloc: fatal: double free in free() at 0x7f00deadbeef\n"
        );
        let mut l = Line::new();
        l.dec(0).push(b" ").dec(u64::MAX);
        assert_eq!(l.as_bytes(), b"0 18446744073709551615");
    }
}
