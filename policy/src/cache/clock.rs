//! CLOCK (Corbató 1968): FIFO order with one reference bit per object; the
//! hand clears set bits and evicts the first object found with a clear bit.
//!
//! The circular buffer is kept as a list whose tail is the hand: an object
//! the hand passes over is moved to the head, which is the same order a
//! circular clock visits. New objects enter with the bit clear.

/// CLOCK with one reference bit: the shared one-bit FIFO, reinserting survivors.
pub type Clock = super::sieve::BitFifo<true>;
