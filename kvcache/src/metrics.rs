//! Counters and latency histograms of the cache (relaxed-by-design: the cache is
//! behind one lock, so plain integers suffice; readers take a snapshot).

use core::fmt;

/// A log2 histogram of nanoseconds: bucket `i` holds samples in `[2^i, 2^(i+1))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    buckets: [u64; 40],
    count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: [0; 40],
            count: 0,
        }
    }
}

impl Histogram {
    /// Record one sample.
    pub fn record(&mut self, ns: u64) {
        let i = (63 - ns.max(1).leading_zeros()) as usize;
        self.buckets[i.min(39)] += 1;
        self.count += 1;
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Upper bound (ns) of the bucket holding quantile `q` (0..=1); 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b;
            if seen >= rank {
                return 1u64 << (i + 1);
            }
        }
        1u64 << 40
    }
}

/// Event counters of a cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Backend map calls (one per run per tensor).
    pub map_calls: u64,
    /// Backend unmap calls.
    pub unmap_calls: u64,
    /// Page groups mapped into slots.
    pub pages_mapped: u64,
    /// Page groups unmapped from slots.
    pub pages_unmapped: u64,
    /// Copy-on-write copies of shared pages.
    pub cow_copies: u64,
    /// Pages a swapped-in request mapped shared from the prefix cache instead of
    /// copying them back from the swap source.
    pub swap_in_shared_pages: u64,
    /// Prompt tokens looked up in the prefix cache, and those found.
    pub prefix_lookup_tokens: u64,
    /// Tokens served from the prefix cache.
    pub prefix_hit_tokens: u64,
    /// Cached prefix pages evicted (LRU).
    pub evictions: u64,
    /// Spare pages reclaimed from free slots or lookahead.
    pub reclaims: u64,
    /// Requests swapped out or dropped for recompute.
    pub preemptions: u64,
    /// Appends that had to map pages themselves while a mapping worker was attached.
    pub worker_stalls: u64,
    /// Pages mapped ahead by the mapping worker.
    pub prefetched_pages: u64,
    /// Pages given back to the OS (punch hole).
    pub released_pages: u64,
    /// Nanoseconds spent in backend map calls, summed.
    pub map_ns_total: u64,
    /// Latency of each backend map call.
    pub map_ns: Histogram,
    /// Latency of each backend unmap call.
    pub unmap_ns: Histogram,
}

/// A point-in-time view of the cache's occupancy plus its counters.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// Page groups in the pool (one page per tensor each).
    pub pages_total: usize,
    /// Groups mapped nowhere and holding nothing.
    pub pages_free: usize,
    /// Groups mapped into at least one live request.
    pub pages_live: usize,
    /// Groups mapped into more than one live request.
    pub pages_shared: usize,
    /// Unreferenced groups kept for prefix reuse (evictable, LRU).
    pub pages_cached: usize,
    /// Groups mapped in slots beyond live tokens (deferred reclamation, lookahead).
    pub pages_spare: usize,
    /// Live pages / total.
    pub usage: f64,
    /// Estimated kernel mappings (VMAs) the reservation uses now.
    pub mappings: usize,
    /// Budget of mappings under vm.max_map_count.
    pub mapping_budget: usize,
    /// Bytes mapped for live requests minus bytes their tokens need.
    pub waste_bytes: usize,
    /// Prefix hit rate over looked-up prompt tokens.
    pub prefix_hit_rate: f64,
    /// Event counters.
    pub counters: Counters,
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counters;
        writeln!(
            f,
            "pages: total {} free {} live {} shared {} cached {} spare {} (usage {:.1}%)",
            self.pages_total,
            self.pages_free,
            self.pages_live,
            self.pages_shared,
            self.pages_cached,
            self.pages_spare,
            self.usage * 100.0
        )?;
        writeln!(
            f,
            "mappings {} of {}; prefix hit rate {:.1}%; evictions {} reclaims {} preemptions {} cow {} stalls {}",
            self.mappings,
            self.mapping_budget,
            self.prefix_hit_rate * 100.0,
            c.evictions,
            c.reclaims,
            c.preemptions,
            c.cow_copies,
            c.worker_stalls
        )?;
        write!(
            f,
            "map calls {} (p50 <{} ns, p99 <{} ns); unmap calls {} (p50 <{} ns, p99 <{} ns)",
            c.map_calls,
            c.map_ns.quantile(0.5),
            c.map_ns.quantile(0.99),
            c.unmap_calls,
            c.unmap_ns.quantile(0.5),
            c.unmap_ns.quantile(0.99)
        )
    }
}
