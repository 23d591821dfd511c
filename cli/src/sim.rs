//! `engram sim`: replay a trace through placement policies and compare them
//! on the same cost model.
//!
//! Every (policy, size) pair is one full replay of the trace in memory
//! (engram-policy's simulator); the table lists hit ratio per tier, mean and
//! p99 latency, bytes promoted and decisions per second (wall clock of the
//! replay, i.e. the policy plus the simulator's own bookkeeping). The SVG
//! holds two panels, hit ratio and mean latency per time window, one line
//! per policy. With `--device SIZE`, each (policy, size) is also replayed
//! through three tiers, a device tier of SIZE over the DRAM tier over the
//! SSD, one policy instance per tier (`simulate_tiers`), in a second table.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use engram_policy::{
    CacheSize, CostModel, PolicyKind, SimResult, TierCost, TieredResult, simulate, simulate_tiers,
    trace, unique_objects,
};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Trace file (any format in shared/traces; .zst is decompressed).
    #[arg(long)]
    trace: PathBuf,
    /// Policies, comma separated, or `all`: lru, fifo, clock, lfu, 2q, arc,
    /// s3fifo, sieve, threshold, reuse, learned, belady.
    #[arg(long, default_value = "all")]
    policy: String,
    /// Fast-tier sizes, comma separated: 5% or 0.05 (of unique objects),
    /// 5%B (of unique bytes), 1000 (objects), 64MiB (bytes). A byte size
    /// holds that many bytes of objects, whatever their sizes.
    #[arg(long, default_value = "5%")]
    size: String,
    /// Where to write the SVG plot (hit ratio and latency over time).
    #[arg(long, default_value = "engram-sim.svg")]
    svg: PathBuf,
    /// Skip the SVG plot.
    #[arg(long)]
    no_svg: bool,
    /// Time windows in the plot (1 to 100,000; more than the trace's
    /// requests give one point per request).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    windows: u32,
    /// Also replay through three tiers: a device-memory tier of this size
    /// (same syntax as --size) in front of the DRAM tier of each --size, over
    /// the SSD. Printed as a second table.
    #[arg(long)]
    device: Option<String>,
}

struct TierRow {
    size_label: String,
    /// The device size was a byte budget.
    dev_in_bytes: bool,
    result: TieredResult,
}

struct Row {
    size_label: String,
    /// The size was a byte budget: `result.capacity` is bytes.
    in_bytes: bool,
    result: SimResult,
    secs: f64,
}

/// A capacity for the table: objects as a count, bytes with a unit, in one
/// whitespace-free cell (`96.8MiB`).
fn capacity_cell(capacity: usize, in_bytes: bool) -> String {
    if in_bytes {
        crate::report::human_bytes(capacity as u64).replace(' ', "")
    } else {
        capacity.to_string()
    }
}

pub fn run(args: &SimArgs) -> Result<u8> {
    let kinds: Vec<PolicyKind> = if args.policy.trim().eq_ignore_ascii_case("all") {
        PolicyKind::ALL.to_vec()
    } else {
        args.policy
            .split(',')
            .map(|s| PolicyKind::parse(s.trim()))
            .collect::<Result<_, _>>()?
    };
    let sizes: Vec<(String, CacheSize)> = args
        .size
        .split(',')
        .map(|s| Ok((s.trim().to_owned(), CacheSize::parse(s)?)))
        .collect::<Result<_, engram_policy::Error>>()?;
    if kinds.is_empty() || sizes.is_empty() {
        bail!("nothing to simulate");
    }
    let device = args.device.as_deref().map(CacheSize::parse).transpose()?;
    let t = trace::read_path(&args.trace)
        .with_context(|| format!("reading {}", args.trace.display()))?;
    // Opened before the replays (after the trace is read), so an unwritable path fails at once.
    let svg_file = if args.no_svg {
        None
    } else {
        Some(
            std::fs::File::create(&args.svg)
                .with_context(|| format!("creating {}", args.svg.display()))?,
        )
    };
    let (unique, unique_bytes) = unique_objects(&t.requests);
    let cost = CostModel::default();
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "{}: {} requests, {} unique objects, {:.1} MiB unique; cost model: fast {:?}, backing {:?}",
        t.name,
        t.requests.len(),
        unique,
        unique_bytes as f64 / (1u64 << 20) as f64,
        cost.fast,
        cost.backing
    )?;
    // A size past the whole trace is capped there (every policy then only
    // misses cold): say so rather than print a table the user misreads.
    let device_arg = args.device.as_deref().zip(device);
    for (flag, label, size) in sizes
        .iter()
        .map(|(l, s)| ("--size", l.as_str(), *s))
        .chain(device_arg.map(|(l, s)| ("--device", l.trim(), s)))
    {
        let over = match size {
            CacheSize::Objects(n) => n > unique,
            CacheSize::Bytes(b) => b > unique_bytes,
            CacheSize::FractionObjects(_) | CacheSize::FractionBytes(_) => false,
        };
        if over {
            writeln!(
                err,
                "note: {flag} {label} is more than the trace holds ({unique} objects, {unique_bytes} bytes): capped there"
            )?;
        }
    }
    drop(err);

    let passes = if device.is_some() { 2 } else { 1 };
    let total = (passes * kinds.len() * sizes.len()) as u64 * t.requests.len() as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {percent}% {msg}")
            .context("progress bar template")?,
    );
    let mut rows = Vec::new();
    for (label, size) in &sizes {
        for kind in &kinds {
            bar.set_message(format!("{} @ {label}", kind.name()));
            let mut p = size.build(*kind, unique, unique_bytes)?;
            let start = Instant::now();
            let result = simulate(p.as_mut(), &t.requests, &cost, args.windows as usize, false);
            let secs = start.elapsed().as_secs_f64();
            bar.inc(t.requests.len() as u64);
            rows.push(Row {
                size_label: label.clone(),
                in_bytes: size.in_bytes(),
                result,
                secs,
            });
        }
    }
    let mut tier_rows = Vec::new();
    if let Some(dev) = device {
        for (label, size) in &sizes {
            for kind in &kinds {
                bar.set_message(format!("{} @ device + {label}", kind.name()));
                let mut tiers = vec![
                    dev.build(*kind, unique, unique_bytes)?,
                    size.build(*kind, unique, unique_bytes)?,
                ];
                let costs = [TierCost::DEVICE, cost.fast];
                let result = simulate_tiers(&mut tiers, &costs, &cost.backing, &t.requests, false);
                bar.inc(t.requests.len() as u64);
                tier_rows.push(TierRow {
                    size_label: label.clone(),
                    dev_in_bytes: dev.in_bytes(),
                    result,
                });
            }
        }
    }
    bar.finish_and_clear();

    let mut out = std::io::stdout().lock();
    out.write_all(table(&rows).as_bytes())?;
    if !tier_rows.is_empty() {
        writeln!(
            out,
            "\nthree tiers: device ({}) over DRAM (size) over SSD",
            args.device.as_deref().unwrap_or_default()
        )?;
        out.write_all(tier_table(&tier_rows).as_bytes())?;
    }
    if let Some(mut f) = svg_file {
        f.write_all(svg(&t.name, &rows).as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", args.svg.display()))?;
        writeln!(out, "plot: {}", args.svg.display())?;
    }
    Ok(0)
}

fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<10} {:>7} {:>9} {:>8} {:>8} {:>11} {:>11} {:>12} {:>10} {:>9} {:>10}",
        "policy",
        "size",
        "capacity",
        "fast %",
        "back %",
        "mean us",
        "p99 us",
        "migrated MiB",
        "evictions",
        "wrback %",
        "Mdec/s"
    );
    for r in rows {
        let x = &r.result;
        let _ = writeln!(
            s,
            "{:<10} {:>7} {:>9} {:>8.2} {:>8.2} {:>11.2} {:>11.2} {:>12.1} {:>10} {:>9.2} {:>10.2}",
            x.policy,
            r.size_label,
            capacity_cell(x.capacity, r.in_bytes),
            100.0 * x.hit_ratio(),
            100.0 * x.backing_hits as f64 / x.requests.max(1) as f64,
            x.mean_latency_ns / 1e3,
            x.p99_latency_ns / 1e3,
            x.bytes_migrated as f64 / (1u64 << 20) as f64,
            x.evictions,
            100.0 * x.writebacks as f64 / x.requests.max(1) as f64,
            x.requests as f64 / r.secs.max(1e-9) / 1e6,
        );
    }
    s
}

fn tier_table(rows: &[TierRow]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<10} {:>7} {:>9} {:>9} {:>9} {:>8} {:>8} {:>11} {:>11} {:>12} {:>12}",
        "policy",
        "size",
        "device",
        "device %",
        "dram %",
        "back %",
        "mean us",
        "p99 us",
        "promoted MiB",
        "demoted MiB",
        "background s",
    );
    for r in rows {
        let x = &r.result;
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        let _ = writeln!(
            s,
            "{:<10} {:>7} {:>9} {:>9.2} {:>9.2} {:>8.2} {:>8.2} {:>11.2} {:>11.1} {:>12.1} {:>12.2}",
            x.policy,
            r.size_label,
            capacity_cell(x.capacities[0], r.dev_in_bytes),
            100.0 * x.hit_ratio(0),
            100.0 * x.hit_ratio(1),
            100.0 * x.backing_hits as f64 / x.requests.max(1) as f64,
            x.mean_latency_ns / 1e3,
            x.p99_latency_ns / 1e3,
            mib(x.promoted_bytes),
            mib(x.demoted_bytes),
            x.background_ns / 1e9,
        );
    }
    s
}

const COLORS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// Two stacked panels (hit ratio %, mean latency us) over replayed
/// requests; one polyline per (policy, size). Hand-written SVG: two line
/// charts do not need a plotting library.
fn svg(name: &str, rows: &[Row]) -> String {
    let (w, ph, left, top, gap) = (900.0, 260.0, 70.0, 40.0, 60.0);
    let pw = w - left - 180.0;
    let h = top + 2.0 * ph + gap + 40.0;
    let max_x = rows
        .iter()
        .map(|r| r.result.requests)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let max_lat = rows
        .iter()
        .flat_map(|r| r.result.series.iter().map(|p| p.mean_latency_ns / 1e3))
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="20" font-size="15">engram sim: {}</text>"#,
        escape(name)
    );
    let panels = [("hit ratio %", 100.0), ("mean latency us", max_lat)];
    for (pi, (label, ymax)) in panels.iter().enumerate() {
        let y0 = top + pi as f64 * (ph + gap);
        let _ = writeln!(
            s,
            r#"<rect x="{left}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
        );
        let _ = writeln!(s, r#"<text x="{left}" y="{}">{label}</text>"#, y0 - 6.0);
        for k in 0..=4 {
            let v = ymax * f64::from(k) / 4.0;
            let y = y0 + ph - ph * f64::from(k) / 4.0;
            let _ = writeln!(
                s,
                r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{v:.1}</text>"##,
                left + pw,
                left - 4.0,
                y + 4.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{:.0} requests</text>"#,
            left + pw,
            y0 + ph + 16.0,
            max_x
        );
        for (i, r) in rows.iter().enumerate() {
            let pts: Vec<String> = r
                .result
                .series
                .iter()
                .map(|p| {
                    let v = if pi == 0 {
                        100.0 * p.hit_ratio
                    } else {
                        p.mean_latency_ns / 1e3
                    };
                    let x = left + pw * p.requests as f64 / max_x;
                    let y = y0 + ph - ph * (v / ymax).clamp(0.0, 1.0);
                    format!("{x:.1},{y:.1}")
                })
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.5" stroke-dasharray="{}" points="{}"/>"#,
                COLORS[i % COLORS.len()],
                dash(i),
                pts.join(" ")
            );
        }
    }
    for (i, r) in rows.iter().enumerate() {
        let y = top + 14.0 * i as f64;
        let x = left + pw + 12.0;
        let _ = writeln!(
            s,
            r#"<line x1="{x}" x2="{}" y1="{y}" y2="{y}" stroke="{}" stroke-width="3" stroke-dasharray="{}"/><text x="{}" y="{}">{} @ {}</text>"#,
            x + 18.0,
            COLORS[i % COLORS.len()],
            dash(i),
            x + 24.0,
            y + 4.0,
            escape(&r.result.policy),
            escape(&r.size_label)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Solid for the first ten lines, then dashed, then dotted: more lines
/// than colours stay apart.
fn dash(i: usize) -> &'static str {
    ["none", "6,3", "2,2"][(i / COLORS.len()) % 3]
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use engram_policy::workload;

    fn rows() -> Vec<Row> {
        let t = workload::zipf(500, 0.9, 5_000, 1);
        let cost = CostModel::default();
        [PolicyKind::Lru, PolicyKind::Belady]
            .iter()
            .map(|k| Row {
                size_label: "5%".into(),
                in_bytes: false,
                result: simulate(k.build(25).unwrap().as_mut(), &t, &cost, 10, false),
                secs: 0.5,
            })
            .collect()
    }

    #[test]
    fn table_has_a_row_per_replay() {
        let rows = rows();
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("LRU") && lines[2].starts_with("Belady"));
        // 5000 decisions in 0.5 s.
        assert!(lines[1].trim_end().ends_with("0.01"), "{}", lines[1]);
    }

    #[test]
    fn tier_table_has_a_row_per_replay() {
        let t = workload::zipf(500, 0.9, 5_000, 1);
        let cost = CostModel::default();
        let rows: Vec<TierRow> = [PolicyKind::Lru, PolicyKind::Arc]
            .iter()
            .map(|k| {
                let mut tiers = vec![k.build(5).unwrap(), k.build(25).unwrap()];
                let costs = [TierCost::DEVICE, cost.fast];
                TierRow {
                    size_label: "5%".into(),
                    dev_in_bytes: false,
                    result: simulate_tiers(&mut tiers, &costs, &cost.backing, &t, false),
                }
            })
            .collect();
        let s = tier_table(&rows);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("LRU") && lines[2].starts_with("ARC"));
        let cols: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(cols[2], "5", "device capacity");
        let pct = |i: usize| cols[i].parse::<f64>().unwrap();
        assert!(
            (pct(3) + pct(4) + pct(5) - 100.0).abs() < 0.05,
            "{}",
            lines[1]
        );
    }

    #[test]
    fn a_byte_budget_shows_its_bytes() {
        assert_eq!(capacity_cell(2448, false), "2448");
        assert_eq!(capacity_cell(512, true), "512B");
        assert_eq!(capacity_cell(96 << 10, true), "96.0KiB");
        assert_eq!(capacity_cell(101_502_156, true), "96.8MiB");
        assert_eq!(capacity_cell(3 << 30, true), "3.0GiB");
    }

    #[test]
    fn svg_has_two_lines_per_replay() {
        let s = svg("a<b", &rows());
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<polyline").count(), 4);
        assert!(s.contains("a&lt;b"));
        assert_eq!(s.matches('<').count(), s.matches('>').count());
    }
}
