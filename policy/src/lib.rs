//! engram-policy: placement and migration policies and a trace simulator.
//!
//! # The problem
//! A tiered store (DRAM in front of SSD, device memory in front of DRAM)
//! must decide, on every access, whether an object belongs in the fast tier
//! and what leaves it to make room. This crate holds those decisions as pure
//! logic: no I/O (except the trace readers in [`trace`]), no `unsafe`, no
//! clocks, so every policy replays a trace deterministically in microseconds
//! per thousand requests.
//!
//! # The mechanism
//! - [`Policy`] is the one trait every policy implements: events in
//!   (`access` = lookup + insert on miss, `remove`), decisions out (hit,
//!   admit or bypass, the evicted objects).
//! - [`CostModel`] / [`TierCost`] price each access; [`simulate`] replays a
//!   trace and reports hit ratio per tier, mean and p99 latency, bytes
//!   migrated and a time series; [`simulate_tiers`] replays through a stack
//!   of managed tiers (device over DRAM over SSD), one policy per tier, with
//!   promotions and demotions between them.
//! - [`cache`] holds the classic policies (LRU, FIFO, CLOCK, LFU, 2Q, ARC,
//!   S3-FIFO, SIEVE, a hot/cold threshold migrator, and the Belady oracle)
//!   and the learned placement + migration agents
//!   ([`cache::Ensemble`], the selection agent over ARC, S3-FIFO and the
//!   reuse-model agents [`cache::Reuse`]: state, actions, reward and
//!   algorithm in their docs).
//! - [`trace`] reads every trace format in `shared/traces`; [`workload`] makes
//!   synthetic ones (Zipf, shifting hot set, scan + hot, Mooncake-like).
//!
//! Sizes are in objects (unit-size caching, as the reference hit ratios in
//! BASELINES.md); [`CacheSize`] turns a fraction or byte budget into an
//! object count.
#![forbid(unsafe_code)]

pub mod cache;
pub mod error;
pub mod sim;
pub mod tier;
pub mod tiers;
pub mod trace;
pub mod types;
pub mod workload;

pub use cache::{Outcome, Policy, PolicyKind};
pub use error::{Error, Result};
pub use sim::{CacheSize, Point, SimResult, simulate};
pub use tier::{CostModel, TierCost};
pub use tiers::{TieredResult, simulate_tiers};
pub use types::{
    IdMap, NEVER, ObjectId, Op, Request, annotate_next_access, hash_key, unique_objects,
};
