//! Hit ratio of the learned agents under a few hyper-parameter settings,
//! next to ARC and S3-FIFO: how the one shipped configuration
//! (`ReuseConfig::default`) was chosen. Run:
//! `cargo run --release -p engram-policy --example reuse_sweep -- [--only=NAME,...] TRACE...`

use std::path::Path;

use engram_policy::cache::{Reuse, ReuseConfig};
use engram_policy::{CacheSize, CostModel, PolicyKind, simulate, trace, unique_objects};

fn main() -> Result<(), engram_policy::Error> {
    let d = ReuseConfig::default();
    let configs = [
        ("default", d),
        (
            "no-admission",
            ReuseConfig {
                admission: false,
                ..d
            },
        ),
        ("K=16", ReuseConfig { samples: 16, ..d }),
        (
            "H=2c",
            ReuseConfig {
                horizon_factor: 2,
                ..d
            },
        ),
        (
            "K=16,no-adm",
            ReuseConfig {
                samples: 16,
                admission: false,
                ..d
            },
        ),
        ("alpha=0.01", ReuseConfig { alpha: 0.01, ..d }),
        (
            "labels/1",
            ReuseConfig {
                label_every: 1,
                ..d
            },
        ),
        (
            "labels/4",
            ReuseConfig {
                label_every: 4,
                ..d
            },
        ),
    ];
    // `--only NAME,...` runs just those configurations.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (only, paths): (Vec<&String>, Vec<&String>) =
        args.iter().partition(|a| a.starts_with("--only="));
    let only: Vec<&str> = only
        .iter()
        .flat_map(|a| a.trim_start_matches("--only=").split(','))
        .collect();
    let configs: Vec<_> = configs
        .into_iter()
        .filter(|(n, _)| only.is_empty() || only.contains(n))
        .collect();
    let cost = CostModel::default();
    for path in paths {
        let t = trace::read_path(Path::new(path))?;
        let (u, b) = unique_objects(&t.requests);
        for frac in [0.05, 0.1] {
            let cap = CacheSize::FractionObjects(frac).objects(u, b);
            let mut line = format!("{:<14} {frac:>5}", t.name);
            for k in [PolicyKind::Arc, PolicyKind::S3Fifo] {
                let r = simulate(k.build(cap)?.as_mut(), &t.requests, &cost, 0, false);
                line += &format!("  {} {:.2}", k.name(), 100.0 * r.hit_ratio());
            }
            for &(name, cfg) in &configs {
                let r = simulate(
                    &mut Reuse::with_config(cap, 1, cfg),
                    &t.requests,
                    &cost,
                    0,
                    false,
                );
                line += &format!("  {name} {:.2}", 100.0 * r.hit_ratio());
            }
            println!("{line}");
        }
    }
    Ok(())
}
