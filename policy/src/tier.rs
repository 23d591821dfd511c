//! Tiers and the cost model every replay is priced with.
//!
//! A tier is a capacity plus a [`TierCost`]: a fixed latency per access and a
//! per-byte cost (1 / bandwidth), separately for reads and writes. Moving an
//! object between tiers costs a read on the source plus a write on the
//! destination. The simulator prices each request with these numbers, so every
//! policy is compared on the same model.
//!
//! # Defaults and where they come from
//! DRAM and SSD are measured on this project's machines (2 vCPU AMD EPYC VM,
//! virtio disk on ext4; 2026-11-24, two runs, rounded) with
//! `cargo run --release -p engram-policy --example measure_tiers -- DIR`:
//!
//! | tier | access latency | bandwidth |
//! | --- | --- | --- |
//! | DRAM | 190 ns (dependent random load over 512 MiB: 184 / 195 ns) | 13 GB/s (single-thread memcpy of 256 MiB: 12.8 / 13.8) |
//! | SSD read | 27 us (4 KiB O_DIRECT random read, QD1: mean 25.8 / 28.5, p99 36-41) | 1.0 GB/s (O_DIRECT sequential, 1 MiB blocks: 1.01 / 1.03) |
//! | SSD write | 26.5 us (4 KiB O_DIRECT random write, QD1, no fsync: 25.4 / 27.6) | 0.53 GB/s (O_DIRECT sequential + fsync: 0.55 / 0.51) |
//! | device memory (HBM), optional, the fastest tier | 500 ns | 2 TB/s |
//!
//! The device tier is not measured (no GPU was lent to this project): its
//! figures are conservative for an H100's HBM3 (3.35 TB/s peak), priced as the
//! device's own kernels see it, which is what makes it the tier in front of
//! DRAM in a three-tier stack ([`simulate_tiers`](crate::simulate_tiers)) for
//! the KV-cache blocks it is meant for (megabytes). For objects under about
//! 4 KiB its 500 ns per access is slower than DRAM's 190 ns, so a policy that
//! prices copies (the learned agent's placement) keeps them out of it. Issue 4 quoted 30 us / 5 GB/s / 0.5 GB/s for this class of
//! machine; the measured SSD is as slow per access and twice as fast per byte for
//! reads, and DRAM is 2.6 times faster per byte than the quote.

/// Cost of touching one tier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierCost {
    /// Fixed latency of one read, in ns.
    pub read_ns: f64,
    /// Read cost per byte, in ns (1 / read bandwidth in GB/s).
    pub read_ns_per_byte: f64,
    /// Fixed latency of one write, in ns.
    pub write_ns: f64,
    /// Write cost per byte, in ns.
    pub write_ns_per_byte: f64,
}

impl TierCost {
    /// Latency of reading `bytes` from this tier, in ns.
    pub fn read(&self, bytes: u64) -> f64 {
        self.read_ns + self.read_ns_per_byte * bytes as f64
    }
    /// Latency of writing `bytes` to this tier, in ns.
    pub fn write(&self, bytes: u64) -> f64 {
        self.write_ns + self.write_ns_per_byte * bytes as f64
    }
    /// Latency of serving a read or a write of `bytes` from this tier, in ns.
    pub fn access(&self, bytes: u64, write: bool) -> f64 {
        if write {
            self.write(bytes)
        } else {
            self.read(bytes)
        }
    }
    /// DRAM: 190 ns, 13 GB/s (measured, see the module docs).
    pub const DRAM: TierCost = TierCost {
        read_ns: 190.0,
        read_ns_per_byte: 1.0 / 13.0,
        write_ns: 190.0,
        write_ns_per_byte: 1.0 / 13.0,
    };
    /// SSD: reads 27 us + 1.0 GB/s, writes 26.5 us + 0.53 GB/s (measured).
    pub const SSD: TierCost = TierCost {
        read_ns: 27_000.0,
        read_ns_per_byte: 1.0,
        write_ns: 26_500.0,
        write_ns_per_byte: 1.0 / 0.53,
    };
    /// Device memory (HBM) as the device's kernels see it: 500 ns, 2 TB/s
    /// (typical figures, not measured: see the module docs).
    pub const DEVICE: TierCost = TierCost {
        read_ns: 500.0,
        read_ns_per_byte: 1.0 / 2000.0,
        write_ns: 500.0,
        write_ns_per_byte: 1.0 / 2000.0,
    };
}

/// The two-level model the simulator uses: a fast tier the policy manages
/// in front of a backing tier that holds everything.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostModel {
    /// The managed (fast) tier.
    pub fast: TierCost,
    /// The backing (slow) tier; every object lives there.
    pub backing: TierCost,
}

impl Default for CostModel {
    /// DRAM in front of SSD.
    fn default() -> Self {
        CostModel {
            fast: TierCost::DRAM,
            backing: TierCost::SSD,
        }
    }
}

impl CostModel {
    /// Latency of a hit in the fast tier.
    pub fn hit(&self, bytes: u64, write: bool) -> f64 {
        self.fast.access(bytes, write)
    }
    /// Latency of a miss. The fast tier is a write-back cache that allocates
    /// on writes: an admitted write is written into the fast tier only (it is
    /// dirty there, and its write-back to the backing tier happens when it
    /// is evicted, off the request path); a bypassed write goes to the
    /// backing tier. A read is served by the backing tier, then (if
    /// `admitted`) copied into the fast tier before the request completes.
    /// (Before 2026-11-25 an admitted write paid the backing write as well as
    /// the fast one and then its write-back at eviction: two backing writes
    /// for one; review finding.)
    pub fn miss(&self, bytes: u64, write: bool, admitted: bool) -> f64 {
        match (write, admitted) {
            (true, true) => self.fast.write(bytes),
            (true, false) => self.backing.write(bytes),
            (false, true) => self.backing.read(bytes) + self.fast.write(bytes),
            (false, false) => self.backing.read(bytes),
        }
    }
    /// What admitting a missed object adds to its request's latency over
    /// leaving it in the backing tier: for a read the copy into the fast
    /// tier; for a write the fast-tier write less the backing write it
    /// replaces (negative under the default costs: admitting saves).
    pub fn admission_extra(&self, bytes: u64, write: bool) -> f64 {
        self.miss(bytes, write, true) - self.miss(bytes, write, false)
    }
    /// What a later read hit on an object of `bytes` saves over a read miss.
    pub fn hit_saving(&self, bytes: u64) -> f64 {
        self.miss(bytes, false, false) - self.hit(bytes, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dram_hit_is_far_cheaper_than_ssd_miss() {
        let m = CostModel::default();
        assert!((m.hit(4096, false) - (190.0 + 4096.0 / 13.0)).abs() < 1e-6);
        assert!(m.miss(4096, false, true) > 30.0 * m.hit(4096, false));
        assert!(m.miss(4096, false, false) < m.miss(4096, false, true));
    }

    #[test]
    fn an_admitted_write_miss_is_absorbed_by_the_fast_tier() {
        let m = CostModel::default();
        // Write-allocate: the data goes to DRAM only (written back later, off
        // the request path); a bypassed write goes to the SSD.
        assert_eq!(m.miss(4096, true, true), m.fast.write(4096));
        assert_eq!(m.miss(4096, true, false), m.backing.write(4096));
        assert!(m.miss(4096, true, true) < m.miss(4096, true, false));
    }
}
