//! Synthetic trace generators for tests and what-if runs. All are
//! deterministic under their seed (SplitMix64, no global RNG).

use crate::types::{ObjectId, Request, annotate_next_access};

/// SplitMix64 (Steele et al., OOPSLA'14): 64 bits of state, passes BigCrush,
/// a few ns per draw; plenty for workload generation and agent exploration.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x853c_49e6_748f_ea9b)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform in `[0, n)`; `n` must be non-zero.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Zipf sampler over ranks `0..n` with exponent `alpha` (inverse CDF table).
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// `n >= 1` ranks, skew `alpha >= 0` (0 = uniform).
    pub fn new(n: usize, alpha: f64) -> Self {
        let mut cdf = Vec::with_capacity(n.max(1));
        let mut acc = 0.0;
        for k in 1..=n.max(1) {
            acc += 1.0 / (k as f64).powf(alpha);
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf { cdf }
    }
    /// One rank.
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.next_f64();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

fn finish(ids: impl IntoIterator<Item = ObjectId>, size: u32) -> Vec<Request> {
    let mut v: Vec<Request> = ids
        .into_iter()
        .enumerate()
        .map(|(i, id)| Request::read(i as u64, id, size))
        .collect();
    annotate_next_access(&mut v);
    v
}

/// `len` reads of `n` objects, popularity Zipf(`alpha`).
pub fn zipf(n: usize, alpha: f64, len: usize, seed: u64) -> Vec<Request> {
    let z = Zipf::new(n, alpha);
    let mut rng = Rng::new(seed);
    finish((0..len).map(|_| z.sample(&mut rng) as ObjectId), 4096)
}

/// A hot window of `hot` ids that slides to fresh ids every `shift_every`
/// requests; a request hits the window with probability `p_hot`, otherwise a
/// uniform id among `n`.
pub fn shifting_hot_set(
    n: usize,
    hot: usize,
    p_hot: f64,
    shift_every: usize,
    len: usize,
    seed: u64,
) -> Vec<Request> {
    let mut rng = Rng::new(seed);
    let (n, hot, shift_every) = (n.max(1) as u64, hot.max(1) as u64, shift_every.max(1));
    finish(
        (0..len).map(|i| {
            let base = (i / shift_every) as u64 * hot;
            if rng.next_f64() < p_hot {
                (base + rng.below(hot)) % n
            } else {
                rng.below(n)
            }
        }),
        4096,
    )
}

/// The same requests, every one a write (tests of write placement).
#[cfg(test)]
pub(crate) fn as_writes(t: &[Request]) -> Vec<Request> {
    t.iter()
        .map(|r| Request {
            op: crate::types::Op::Write,
            ..*r
        })
        .collect()
}

/// A Zipf(0.9) hot set of `hot` ids interleaved with one-pass sequential
/// scans: with probability `p_scan` a request starts or continues a scan of
/// `scan_len` never-repeated ids.
pub fn scan_hot(hot: usize, p_scan: f64, scan_len: usize, len: usize, seed: u64) -> Vec<Request> {
    let z = Zipf::new(hot, 0.9);
    let mut rng = Rng::new(seed);
    let mut next_scan: ObjectId = 1 << 40;
    let mut left = 0usize;
    finish(
        (0..len).map(|_| {
            if left == 0 && rng.next_f64() < p_scan {
                left = scan_len.max(1);
            }
            if left > 0 {
                left -= 1;
                next_scan += 1;
                next_scan
            } else {
                z.sample(&mut rng) as ObjectId
            }
        }),
        4096,
    )
}

/// Mooncake-like prefix reuse: `convs` conversations, chosen by
/// Zipf(`alpha`); each turn re-reads the conversation's whole block prefix
/// (a shared system prompt of `system_blocks` first) and appends
/// `new_blocks` fresh blocks; a conversation longer than `max_blocks`
/// restarts from the system prompt. Stops after `len` block references.
pub fn mooncake_like(
    convs: usize,
    system_blocks: usize,
    new_blocks: usize,
    max_blocks: usize,
    alpha: f64,
    len: usize,
    seed: u64,
) -> Vec<Request> {
    let z = Zipf::new(convs.max(1), alpha);
    let mut rng = Rng::new(seed);
    let system: Vec<ObjectId> = (0..system_blocks as u64).collect();
    let mut conv: Vec<Vec<ObjectId>> = vec![system.clone(); convs.max(1)];
    let mut fresh: ObjectId = 1 << 32;
    let mut ids = Vec::with_capacity(len);
    while ids.len() < len {
        let c = &mut conv[z.sample(&mut rng)];
        if c.len() > max_blocks {
            c.clone_from(&system);
        }
        for _ in 0..new_blocks.max(1) {
            fresh += 1;
            c.push(fresh);
        }
        ids.extend(c.iter().copied());
    }
    ids.truncate(len);
    finish(ids, crate::trace::MOONCAKE_BLOCK_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_skewed() {
        assert_eq!(zipf(1000, 1.0, 500, 7), zipf(1000, 1.0, 500, 7));
        assert_ne!(zipf(1000, 1.0, 500, 7), zipf(1000, 1.0, 500, 8));
        let r = zipf(1000, 1.0, 20_000, 1);
        let top = r.iter().filter(|r| r.id < 10).count() as f64 / r.len() as f64;
        // H(10)/H(1000) = 2.93/7.49 = 0.39 of requests go to the top 10.
        assert!((top - 0.39).abs() < 0.03, "top-10 share {top}");
    }

    #[test]
    fn generators_have_the_promised_shape() {
        let s = scan_hot(100, 0.01, 50, 10_000, 3);
        assert!(s.iter().filter(|r| r.id >= 1 << 40).count() > 1000);
        let h = shifting_hot_set(100_000, 100, 0.9, 1000, 5000, 3);
        assert!(h[..1000].iter().filter(|r| r.id < 100).count() > 850);
        assert!(
            h[4000..]
                .iter()
                .filter(|r| (400..500).contains(&r.id))
                .count()
                > 850
        );
        let m = mooncake_like(10, 4, 2, 40, 1.0, 1000, 3);
        assert_eq!(m.len(), 1000);
        assert_eq!(m[0].id, 0, "every turn starts with the system prompt");
        assert!(
            m.iter().filter(|r| r.next_access != crate::NEVER).count() > 500,
            "prefixes are reused"
        );
    }
}
