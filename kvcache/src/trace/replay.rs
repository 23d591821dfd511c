//! A continuous-batching scheduler over a trace: admit arrivals while slots and
//! pages allow (prefill = admit + append the uncached prompt), then one decode step
//! (append one token to every running request), free finished requests, repeat.
//! Under page pressure the newest running request is preempted (recompute).

use std::collections::VecDeque;
use std::time::Instant;

use super::parse::{TRACE_BLOCK_TOKENS, TraceRequest, prompt_prefix};
use crate::backend::Backend;
use crate::cache::KvCache;
use crate::error::Error;
use crate::worker::SharedCache;

/// What the scheduler drives: the KV cache or a baseline allocator.
pub trait Target {
    /// Short name for the report.
    fn name(&self) -> String;
    /// Admit `prompt` and make room for all of it; returns a handle and the tokens
    /// served from a prefix cache.
    fn admit(&mut self, prompt: &[u32]) -> Result<(u64, usize), Error>;
    /// Append tokens to a running request.
    fn append(&mut self, h: u64, tokens: &[u32]) -> Result<(), Error>;
    /// Free a request.
    fn free(&mut self, h: u64) -> Result<(), Error>;
    /// Called after each decode step (wakes a mapping worker).
    fn after_step(&mut self) {}
    /// Bytes held for running requests beyond what their tokens need.
    fn waste_bytes(&self) -> usize;
    /// Bytes the running requests' tokens need.
    fn need_bytes(&self) -> usize;
    /// Nanoseconds spent mapping so far (0 for accounting-only targets).
    fn map_ns_total(&self) -> u64 {
        0
    }
    /// Appends that mapped by themselves although a worker was attached.
    fn stalls(&self) -> u64 {
        0
    }
    /// Extra lines for the report.
    fn summary(&self) -> String {
        String::new()
    }
}

/// The KV cache as a replay target.
pub struct CacheTarget<B: Backend + 'static> {
    shared: SharedCache<B>,
    lookahead: usize,
}

impl<B: Backend + 'static> CacheTarget<B> {
    /// Wrap `cache`, with a mapping worker when `lookahead > 0`.
    pub fn new(cache: KvCache<B>, lookahead: usize) -> Self {
        Self {
            shared: SharedCache::new(cache, lookahead),
            lookahead,
        }
    }
}

impl<B: Backend + 'static> Target for CacheTarget<B> {
    fn name(&self) -> String {
        let c = self.shared.lock();
        format!(
            "engram-kvcache ({}, {} KiB pages, lookahead {})",
            c.backend().caps().name,
            c.geometry().page_size >> 10,
            self.lookahead
        )
    }
    fn admit(&mut self, prompt: &[u32]) -> Result<(u64, usize), Error> {
        let mut c = self.shared.lock();
        let a = c.admit(prompt)?;
        if let Err(e) = c.append(a.id, &prompt[a.cached_tokens..]) {
            c.free(a.id)?;
            return Err(e);
        }
        Ok((a.id, a.cached_tokens))
    }
    fn append(&mut self, h: u64, tokens: &[u32]) -> Result<(), Error> {
        self.shared.lock().append(h, tokens)
    }
    fn free(&mut self, h: u64) -> Result<(), Error> {
        self.shared.lock().free(h)
    }
    fn after_step(&mut self) {
        self.shared.kick();
    }
    fn waste_bytes(&self) -> usize {
        self.shared.lock().metrics().waste_bytes
    }
    fn need_bytes(&self) -> usize {
        let c = self.shared.lock();
        let g = *c.geometry();
        c.requests()
            .filter_map(|id| c.len(id).ok())
            .map(|l| l * g.token_bytes * g.tensors)
            .sum()
    }
    fn map_ns_total(&self) -> u64 {
        self.shared.lock().metrics().counters.map_ns_total
    }
    fn stalls(&self) -> u64 {
        self.shared.lock().metrics().counters.worker_stalls
    }
    fn summary(&self) -> String {
        self.shared.lock().metrics().to_string()
    }
}

/// Scheduler knobs.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Simulated duration of one decode step (ms): arrivals are admitted by trace time.
    pub step_ms: f64,
    /// Requests to replay (from the start of the trace).
    pub limit: usize,
    /// Longest context the target accepts; longer requests are clipped.
    pub max_ctx: usize,
    /// Batch slots.
    pub max_batch: usize,
    /// KV bytes per token over all layers (for waste ratios).
    pub token_bytes_all: usize,
}

/// What one replay measured.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    /// Target name.
    pub name: String,
    /// Requests completed.
    pub done: usize,
    /// Target calls (admit, append, free).
    pub ops: u64,
    /// Wall seconds of the whole replay.
    pub wall_s: f64,
    /// Prompt tokens served from a prefix cache / prompt tokens admitted.
    pub prefix_hit_rate: f64,
    /// Waste over need, averaged over decode steps (bytes summed).
    pub waste_ratio: f64,
    /// Milliseconds spent mapping inside decode steps (what the step waited on).
    pub step_map_wait_ms: f64,
    /// Decode steps run.
    pub steps: u64,
    /// Appends that had to map although a worker was attached.
    pub stalls: u64,
    /// Requests preempted for recompute.
    pub preemptions: u64,
    /// Requests clipped to max_ctx, and dropped as too big for an empty pool.
    pub clipped: usize,
    /// Requests that could not fit even alone.
    pub dropped: usize,
    /// Simulated trace time at the end, in ms from the earliest arrival.
    pub sim_ms: f64,
    /// The target's own summary.
    pub summary: String,
}

impl ReplayReport {
    /// Target calls per wall second.
    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.wall_s.max(1e-9)
    }
}

struct Running {
    h: u64,
    idx: usize,
    produced: usize,
}

/// Replay `trace` on `target`; `progress(done, total)` is called after each step.
pub fn replay(
    target: &mut dyn Target,
    trace: &[TraceRequest],
    opt: &ReplayOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ReplayReport, Error> {
    let trace = &trace[..opt.limit.min(trace.len())];
    // Options and requests that would hang the loop or panic on the way
    // (review finding, 2026-11-25: max_batch 0 admitted nothing and looped
    // for ever, max_ctx 0 overflowed, a hand-built request with fewer block
    // hashes than its prompt needs indexed past them).
    if opt.max_batch == 0 {
        return Err(Error::Config("replay: max_batch must be at least 1"));
    }
    if opt.max_ctx == 0 {
        return Err(Error::Config("replay: max_ctx must be at least 1"));
    }
    if let Some(i) = trace
        .iter()
        .position(|r| r.hash_ids.len() < r.input_len.div_ceil(TRACE_BLOCK_TOKENS))
    {
        return Err(Error::Trace {
            line: i + 1,
            what: "fewer hash_ids than input blocks",
        });
    }
    let total = trace.len();
    let start = Instant::now();
    let mut waiting: VecDeque<usize> = VecDeque::new();
    let mut running: Vec<Running> = Vec::new();
    let (mut next, mut done, mut ops, mut steps) = (0usize, 0usize, 0u64, 0u64);
    let (mut dropped, mut preemptions) = (0usize, 0u64);
    let (mut hit, mut looked) = (0u64, 0u64);
    let (mut waste_sum, mut need_sum) = (0f64, 0f64);
    let mut map_wait_ns = 0u64;
    // Arrivals are measured from the earliest timestamp; a trace out of order
    // (a request stamped before the first) replays its late entries as soon
    // as their turn in the file comes, instead of wrapping to 2^64 ms.
    let base_ts = trace.iter().map(|r| r.timestamp_ms).min().unwrap_or(0);
    let mut now_ms = 0f64;
    // (prompt tokens kept, output tokens, clipped) of a request: both lengths
    // fit max_ctx. A prompt is built only when its request is admitted, and
    // clipped before it is built: a line may claim any input length, and a
    // trace of 20,000 long prompts built up front took 128 KiB per line
    // (review finding: out of memory on a 4 MB trace).
    let shape = |r: &TraceRequest| {
        let out = r.output_len.clamp(1, opt.max_ctx.saturating_sub(1).max(1));
        let keep = opt.max_ctx - out;
        (keep, out, r.input_len > keep || r.output_len > out)
    };
    let clipped = trace.iter().filter(|r| shape(r).2).count();
    while done + dropped < total {
        while next < total && (trace[next].timestamp_ms - base_ts) as f64 <= now_ms {
            waiting.push_back(next);
            next += 1;
        }
        if running.is_empty() && waiting.is_empty() {
            now_ms = now_ms.max((trace[next].timestamp_ms - base_ts) as f64);
            continue;
        }
        // Prefill admissions.
        while let Some(&idx) = waiting.front() {
            if running.len() >= opt.max_batch {
                break;
            }
            ops += 2;
            let prompt = prompt_prefix(&trace[idx], shape(&trace[idx]).0);
            match target.admit(&prompt) {
                Ok((h, cached)) => {
                    waiting.pop_front();
                    hit += cached as u64;
                    looked += prompt.len() as u64;
                    running.push(Running {
                        h,
                        idx,
                        produced: 0,
                    });
                }
                Err(Error::PoolExhausted { .. } | Error::NoFreeSlot | Error::MapLimit { .. }) => {
                    if running.is_empty() {
                        waiting.pop_front();
                        dropped += 1;
                        continue;
                    }
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        // One decode step.
        let map_before = target.map_ns_total();
        let mut i = 0;
        while i < running.len() {
            let tok = [0x8000_0000
                | (running[i].idx as u32 & 0xFFFF) << 12
                | running[i].produced as u32 & 0xFFF];
            ops += 1;
            match target.append(running[i].h, &tok) {
                Ok(()) => {
                    running[i].produced += 1;
                    i += 1;
                }
                Err(Error::PoolExhausted { .. } | Error::MapLimit { .. }) => {
                    // Alone and still out of room: it can never finish (its
                    // prompt fit, prompt plus output does not). Requeued, it
                    // would be readmitted and preempt itself forever.
                    let alone = running.len() == 1;
                    let victim = running.pop().ok_or(Error::OutOfBounds)?;
                    ops += 1;
                    target.free(victim.h)?;
                    if alone {
                        dropped += 1;
                    } else {
                        waiting.push_front(victim.idx);
                        preemptions += 1;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        map_wait_ns += target.map_ns_total() - map_before;
        waste_sum += target.waste_bytes() as f64;
        need_sum += target.need_bytes() as f64;
        let mut k = 0;
        while k < running.len() {
            if running[k].produced >= shape(&trace[running[k].idx]).1 {
                let r = running.swap_remove(k);
                ops += 1;
                target.free(r.h)?;
                done += 1;
            } else {
                k += 1;
            }
        }
        target.after_step();
        steps += 1;
        now_ms += opt.step_ms;
        progress(done + dropped, total);
    }
    Ok(ReplayReport {
        name: target.name(),
        done,
        ops,
        wall_s: start.elapsed().as_secs_f64(),
        prefix_hit_rate: if looked == 0 {
            0.0
        } else {
            hit as f64 / looked as f64
        },
        waste_ratio: if need_sum == 0.0 {
            0.0
        } else {
            waste_sum / need_sum
        },
        step_map_wait_ms: map_wait_ns as f64 / 1e6,
        steps,
        stalls: target.stalls(),
        preemptions,
        clipped,
        dropped,
        sim_ms: now_ms,
        summary: target.summary(),
    })
}
