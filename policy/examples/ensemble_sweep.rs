//! Hit ratio of the selection agent (`PolicyKind::Learned`) under a few
//! window / vote settings, next to its experts: how the one shipped
//! configuration (`EnsembleConfig::default`) was chosen. Run:
//! `cargo run --release -p engram-policy --example ensemble_sweep -- [--cfg=W,S ...] [--seeds=N] TRACE...`
//! (`W`: score window in capacities, `S`: the vote's sharpness; `--cfg=W,S,0`
//! turns the placement's cost test off; none: the default).
//! `--seeds=N` runs each configuration with the reuse expert's seeds 1..=N and
//! prints the mean, lowest and highest hit ratio (default: seed 1 only), and
//! the reuse expert's own mean over those seeds.

use std::path::Path;

use engram_policy::cache::{Ensemble, EnsembleConfig, Policy, Reuse};
use engram_policy::{CacheSize, CostModel, simulate, trace, unique_objects};

fn main() -> Result<(), engram_policy::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (opts, paths): (Vec<&String>, Vec<&String>) =
        args.iter().partition(|a| a.starts_with("--"));
    let seeds: u64 = opts
        .iter()
        .find_map(|a| a.strip_prefix("--seeds="))
        .map_or(1, |n| n.parse().expect("--seeds=N takes a count"));
    let cfgs: Vec<&String> = opts
        .into_iter()
        .filter(|a| a.starts_with("--cfg="))
        .collect();
    let mut configs: Vec<EnsembleConfig> = cfgs
        .iter()
        .map(|a| {
            let v: Vec<f64> = a
                .trim_start_matches("--cfg=")
                .split(',')
                .map(|x| x.parse().expect("--cfg=W,S[,0] takes numbers"))
                .collect();
            EnsembleConfig {
                window_factor: v[0],
                sharpness: v[1],
                pays_its_write: v.get(2).is_none_or(|&p| p != 0.0),
            }
        })
        .collect();
    if configs.is_empty() {
        configs.push(EnsembleConfig::default());
    }
    let cost = CostModel::default();
    for path in paths {
        let t = trace::read_path(Path::new(path))?;
        let (u, b) = unique_objects(&t.requests);
        for frac in [0.05, 0.1] {
            let cap = CacheSize::FractionObjects(frac).objects(u, b);
            let mut line = format!("{:<14} {frac:>5}", t.name);
            for k in Ensemble::EXPERT_KINDS {
                let r = simulate(k.build(cap)?.as_mut(), &t.requests, &cost, 0, false);
                line += &format!("  {} {:.2}", k.name(), 100.0 * r.hit_ratio());
            }
            if seeds > 1 {
                // The reuse expert alone over the same seeds.
                let hits: Vec<f64> = (1..=seeds)
                    .map(|seed| {
                        let mut r = Reuse::new(cap, seed);
                        100.0 * simulate(&mut r, &t.requests, &cost, 0, false).hit_ratio()
                    })
                    .collect();
                let mean = hits.iter().sum::<f64>() / hits.len() as f64;
                line += &format!("  Reuse mean {mean:.2}");
            }
            for cfg in &configs {
                let mut hits = Vec::new();
                let mut last = String::new();
                for seed in 1..=seeds {
                    let mut e = Ensemble::with_config(cap, seed, *cfg);
                    let r = simulate(&mut e, &t.requests, &cost, 0, false);
                    e.check_invariants();
                    hits.push(100.0 * r.hit_ratio());
                    last = format!("{} leader changes, last {}", e.switches(), e.leader());
                }
                let mean = hits.iter().sum::<f64>() / hits.len() as f64;
                let (lo, hi) = hits
                    .iter()
                    .fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
                let name = format!(
                    "W{},S{}{}",
                    cfg.window_factor,
                    cfg.sharpness,
                    if cfg.pays_its_write { "" } else { ",0" }
                );
                line += &if seeds == 1 {
                    format!("  {name}: {mean:.2} ({last})")
                } else {
                    format!("  {name}: {mean:.2} [{lo:.2}, {hi:.2}] over {seeds} seeds")
                };
            }
            println!("{line}");
        }
    }
    Ok(())
}
