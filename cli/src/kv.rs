//! `engram kv replay [TRACE]`: replay a serving trace (Mooncake JSONL, or a synthetic
//! Poisson trace when none is given) through engram-kvcache on the host backend,
//! with real page mapping and bookkeeping-only, and through two baselines of the
//! same capacity (static max-context reservation; vLLM-style 16-token blocks with
//! prefix caching). Prints one comparison table.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use engram_kvcache::backend::null::NullBackend;
use engram_kvcache::trace::{
    self, BlockBaseline, CacheTarget, ReplayOptions, ReplayReport, StaticBaseline, Target,
};
use engram_kvcache::{Config, KvCache, Layout, host_cache};

#[derive(Debug, Args)]
pub struct KvArgs {
    #[command(subcommand)]
    command: KvCommand,
}

#[derive(Debug, Subcommand)]
enum KvCommand {
    /// Replay a serving trace and compare with static and 16-token-block allocators.
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
struct ReplayArgs {
    /// Mooncake JSONL trace; a synthetic Poisson trace when absent.
    trace: Option<PathBuf>,
    /// Requests to replay from the start of the trace.
    #[arg(long, default_value_t = 400)]
    limit: usize,
    /// Model layers (Llama-3-8B has 32; fewer scale the shape to this machine).
    #[arg(long, default_value_t = 4)]
    layers: usize,
    /// KV heads.
    #[arg(long, default_value_t = 8)]
    kv_heads: usize,
    /// Head dimension.
    #[arg(long, default_value_t = 128)]
    head_dim: usize,
    /// Bytes per element.
    #[arg(long, default_value_t = 2)]
    elem_bytes: usize,
    /// Page size in KiB (64 or 2048, any multiple of 4 and of one token's bytes
    /// in a tensor: with --token-major that is all layers' K and V).
    #[arg(long, default_value_t = 64)]
    page_kib: usize,
    /// One token-major tensor for all layers (`[batch, ctx, layers, 2, heads, dim]`):
    /// a page of a request is one mapping instead of 2 x layers.
    #[arg(long)]
    token_major: bool,
    /// Physical pool in MiB (all layers).
    #[arg(long, default_value_t = 2048)]
    pool_mib: usize,
    /// Batch slots.
    #[arg(long, default_value_t = 32)]
    max_batch: usize,
    /// Longest context; longer requests are clipped.
    #[arg(long, default_value_t = 32768)]
    max_ctx: usize,
    /// Tokens the mapping worker maps ahead (0: no worker).
    #[arg(long, default_value_t = 64)]
    lookahead: usize,
    /// Simulated decode step in ms (paces arrivals; finite, above 0).
    #[arg(long, default_value_t = 20.0, value_parser = positive_finite)]
    step_ms: f64,
    /// Synthetic trace: requests per second (finite, above 0).
    #[arg(long, default_value_t = 4.0, value_parser = positive_finite)]
    rate: f64,
    /// Skip the baselines.
    #[arg(long)]
    no_baselines: bool,
}

/// A finite number above 0 (review finding: a rate of 0, NaN or -1 made every
/// arrival time infinite or NaN, and the replay ran them all at once).
fn positive_finite(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("{s} is not a finite number above 0"))
    }
}

pub fn run(args: &KvArgs) -> Result<u8> {
    match &args.command {
        KvCommand::Replay(a) => replay(a),
    }
}

/// A progress bar on stderr, drawn only when stderr is a terminal (a log file or a
/// pipe gets no carriage-return noise).
fn progress_bar(label: &str) -> impl FnMut(usize, usize) + '_ {
    let mut last = usize::MAX;
    let tty = std::io::stderr().is_terminal();
    move |done, total| {
        if !tty {
            return;
        }
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        if pct != last {
            last = pct;
            let filled = pct * 30 / 100;
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r{label:<34} [{}{}] {done}/{total}",
                "#".repeat(filled),
                " ".repeat(30 - filled)
            );
            if done == total {
                let _ = writeln!(err);
            }
        }
    }
}

/// Most requests of the synthetic trace (`engram kv replay` without a file).
const MAX_SYNTHETIC: usize = 10_000_000;

fn replay(a: &ReplayArgs) -> Result<u8> {
    let requests = match &a.trace {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            trace::parse(&text).with_context(|| format!("parsing {}", p.display()))?
        }
        None => {
            // The synthetic trace is built up front (about 100 bytes a
            // request): `--limit 2^64-1` panicked on the capacity and 10^12
            // aborted on the allocation (review finding, 2026-11-25).
            if a.limit > MAX_SYNTHETIC {
                bail!(
                    "--limit {} is more than the synthetic trace's {MAX_SYNTHETIC} requests (give a trace file to replay more)",
                    a.limit
                );
            }
            trace::poisson(a.limit, a.rate, 4096, 256, 0.5, 4, 42)
        }
    };
    let cfg = Config {
        layers: a.layers,
        kv_heads: a.kv_heads,
        head_dim: a.head_dim,
        elem_bytes: a.elem_bytes,
        max_batch: a.max_batch,
        max_ctx: a.max_ctx,
        page_size: a
            .page_kib
            .checked_mul(1 << 10)
            .context("--page-kib too large")?,
        pool_bytes: a
            .pool_mib
            .checked_mul(1 << 20)
            .context("--pool-mib too large")?,
        low_watermark: 0,
        high_watermark: 0,
        try_huge: true,
        layout: if a.token_major {
            Layout::TokenMajor
        } else {
            Layout::PerTensor
        },
    };
    let geo = cfg.geometry().context("model shape")?;
    let token_bytes_all = geo.token_bytes * geo.tensors;
    let opt = ReplayOptions {
        step_ms: a.step_ms,
        limit: a.limit,
        max_ctx: a.max_ctx,
        max_batch: a.max_batch,
        token_bytes_all,
    };
    let name = a
        .trace
        .as_ref()
        .map_or("synthetic Poisson".to_string(), |p| p.display().to_string());
    println!(
        "trace: {name}, {} of {} requests; shape: {} layers x {} KV heads x {} dim x {} B ({} KiB/token); \
         {} tensor(s) of pages {} KiB ({} tokens); pool {} MiB; {} slots; max ctx {}",
        a.limit.min(requests.len()),
        requests.len(),
        a.layers,
        a.kv_heads,
        a.head_dim,
        a.elem_bytes,
        token_bytes_all >> 10,
        geo.tensors,
        a.page_kib,
        geo.tokens_per_page,
        a.pool_mib,
        a.max_batch,
        a.max_ctx
    );
    let pool_bytes = geo.groups * geo.page_size * geo.tensors;
    let mut reports = Vec::new();
    {
        let cache = host_cache(cfg.clone()).context("creating the host KV cache")?;
        let mut t = CacheTarget::new(cache, a.lookahead);
        reports.push(run_one(&mut t, &requests, &opt, "kvcache, real mapping")?);
    }
    {
        let backend = NullBackend::new(geo.page_size, geo.tensors * geo.groups, geo.reserve_bytes);
        let cache = KvCache::new(cfg.clone(), backend)?;
        let mut t = CacheTarget::new(cache, 0);
        reports.push(run_one(
            &mut t,
            &requests,
            &opt,
            "kvcache, bookkeeping only",
        )?);
    }
    if !a.no_baselines {
        let mut s = StaticBaseline::new(pool_bytes, a.max_ctx, token_bytes_all);
        reports.push(run_one(&mut s, &requests, &opt, "static reservation")?);
        let mut b = BlockBaseline::new(pool_bytes, 16, token_bytes_all);
        reports.push(run_one(&mut b, &requests, &opt, "vLLM-style blocks")?);
    }
    println!();
    println!(
        "{:<58} {:>6} {:>11} {:>8} {:>8} {:>9} {:>9} {:>7} {:>7}",
        "target", "done", "ops/s", "steps", "hit %", "waste %", "map ms", "stalls", "preempt"
    );
    for r in &reports {
        println!(
            "{:<58} {:>6} {:>11.0} {:>8} {:>8.1} {:>9.2} {:>9.1} {:>7} {:>7}",
            r.name,
            r.done,
            r.ops_per_s(),
            r.steps,
            r.prefix_hit_rate * 100.0,
            r.waste_ratio * 100.0,
            r.step_map_wait_ms,
            r.stalls,
            r.preemptions
        );
    }
    if let Some(r) = reports.first() {
        println!(
            "\nclipped {} requests to max ctx, dropped {}",
            r.clipped, r.dropped
        );
        println!("{}", r.summary);
    }
    Ok(0)
}

fn run_one(
    t: &mut dyn Target,
    requests: &[trace::TraceRequest],
    opt: &ReplayOptions,
    label: &str,
) -> Result<ReplayReport> {
    let mut bar = progress_bar(label);
    trace::replay(t, requests, opt, &mut bar).with_context(|| format!("replaying on {label}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(trace: Option<PathBuf>) -> ReplayArgs {
        ReplayArgs {
            trace,
            limit: 20,
            layers: 1,
            kv_heads: 2,
            head_dim: 64,
            elem_bytes: 2,
            page_kib: 16,
            token_major: false,
            pool_mib: 16,
            max_batch: 4,
            max_ctx: 4096,
            lookahead: 64,
            step_ms: 20.0,
            rate: 50.0,
            no_baselines: false,
        }
    }

    /// A synthetic trace bigger than the cap is refused before it is built
    /// (review finding: `--limit 2^64-1` panicked, 10^12 aborted).
    #[test]
    fn a_huge_synthetic_limit_is_an_error() {
        let mut a = small(None);
        a.limit = usize::MAX;
        let e = replay(&a).unwrap_err().to_string();
        assert!(e.contains("--limit"), "{e}");
    }

    #[test]
    fn replays_synthetic_and_mooncake_files() {
        assert_eq!(replay(&small(None)).unwrap(), 0);
        let mut tm = small(None);
        tm.token_major = true;
        assert_eq!(replay(&tm).unwrap(), 0);
        let path = std::env::temp_dir().join(format!("engram-kv-{}.jsonl", std::process::id()));
        std::fs::write(
            &path,
            "{\"timestamp\": 0, \"input_length\": 700, \"output_length\": 5, \"hash_ids\": [1, 2]}\n\
             {\"timestamp\": 5, \"input_length\": 600, \"output_length\": 3, \"hash_ids\": [1, 3]}\n",
        )
        .unwrap();
        let r = replay(&small(Some(path.clone())));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(r.unwrap(), 0);
    }

    #[test]
    fn bad_trace_and_bad_shape_are_errors() {
        let e = replay(&small(Some("/nonexistent/trace.jsonl".into()))).unwrap_err();
        assert!(
            format!("{e:#}").contains("reading /nonexistent/trace.jsonl"),
            "{e:#}"
        );
        let mut a = small(None);
        a.page_kib = 3;
        let e = replay(&a).unwrap_err();
        assert!(format!("{e:#}").contains("page_size"), "{e:#}");
    }
}
