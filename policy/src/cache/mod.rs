//! The policy trait and the classic replacement policies.
//!
//! Every policy manages one fast tier of `capacity` objects in front of a
//! backing tier that holds everything. Each request is a lookup; on a miss the
//! policy decides whether to admit the object and which resident objects to
//! evict (demote) to make room. Capacities are in objects, as in
//! BASELINES.md; [`ByteBudget`] runs any of them over a tier sized in bytes.
//!
//! Each policy follows its paper; the module of each cites it and lists the
//! parameters. Belady needs [`Request::next_access`](crate::Request) filled
//! (see [`annotate_next_access`](crate::annotate_next_access)).

pub mod list;

mod arc;
mod belady;
mod bytes;
mod clock;
mod ensemble;
mod idtable;
mod lfu;
mod lru;
mod reuse;
mod s3fifo;
mod sieve;
mod threshold;
mod twoq;

pub use arc::Arc;
pub use belady::Belady;
pub use bytes::ByteBudget;
pub use clock::Clock;
pub use ensemble::{Ensemble, EnsembleConfig};
pub use lfu::Lfu;
pub use lru::{Fifo, Lru, Queue};
pub use reuse::{Reuse, ReuseConfig};
pub use s3fifo::S3Fifo;
pub use sieve::Sieve;
pub use threshold::Threshold;
pub use twoq::TwoQ;

use crate::error::{Error, Result};
use crate::tier::CostModel;
use crate::types::{ObjectId, Request};

/// The most objects a tier may be built for: far beyond any real tier, and
/// low enough that every policy's capacity arithmetic (ghost lists, history
/// windows, epochs: small multiples of the capacity) stays in range.
pub const MAX_CAPACITY: usize = 1 << 40;

/// What one access did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The object was resident in the fast tier.
    pub hit: bool,
    /// On a miss: the object was placed in the fast tier (false = served
    /// from the backing tier and left there). Always false on a hit.
    pub admitted: bool,
}

impl Outcome {
    /// A hit.
    pub const HIT: Outcome = Outcome {
        hit: true,
        admitted: false,
    };
    /// A miss that placed the object in the fast tier.
    pub const ADMIT: Outcome = Outcome {
        hit: false,
        admitted: true,
    };
    /// A miss left in the backing tier.
    pub const BYPASS: Outcome = Outcome {
        hit: false,
        admitted: false,
    };
}

/// One placement/eviction policy over a fast tier of fixed object capacity.
///
/// Events in: `access` (a lookup, and an insert on a miss), `remove`,
/// `resize` (tier pressure). Decisions out: hit, admit or bypass (placement),
/// and the demoted ids.
///
/// Contract, checked by the simulator's tests for every implementation:
/// after any call `used() <= capacity()`; `contains(id)` is true exactly for
/// the objects admitted and not yet evicted or removed; every object that
/// leaves the tier because of an `access` is pushed to `evicted` once.
pub trait Policy {
    /// Short name, as in the result tables.
    fn name(&self) -> &'static str;
    /// Capacity in the policy's unit (at least 1): objects, or bytes for a
    /// [`ByteBudget`].
    fn capacity(&self) -> usize;
    /// Units in use now: the residents, or their bytes for a [`ByteBudget`].
    fn used(&self) -> usize {
        self.len()
    }
    /// Objects resident now.
    fn len(&self) -> usize;
    /// True when nothing is resident.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether `id` is resident.
    fn contains(&self, id: ObjectId) -> bool;
    /// Process one request: a lookup, and on a miss a placement decision.
    /// Objects evicted to make room are appended to `evicted`.
    fn access(&mut self, req: &Request, evicted: &mut Vec<ObjectId>) -> Outcome;
    /// Whether a miss on `req` would be admitted if the tier made room for
    /// it, asked before any room is made ([`ByteBudget`] demotes residents
    /// ahead of a big newcomer only if so, so that a policy's refusal costs
    /// no demotions). May answer true when unsure; must not answer false for
    /// an object `access` would admit. By default true.
    fn admits(&self, req: &Request) -> bool {
        let _ = req;
        true
    }
    /// An object demoted from the tier above, offered to this one: a miss
    /// like any other, except that its copy is background work, not on a
    /// request's path (a policy that prices copies does not charge it).
    /// The simulators call this for demotions; by default it is `access`.
    fn offer_demoted(&mut self, req: &Request, evicted: &mut Vec<ObjectId>) -> Outcome {
        self.access(req, evicted)
    }
    /// Tier pressure (or relief): the tier now holds `capacity` units
    /// (at least 1). Objects demoted to fit are appended to `evicted`.
    fn resize(&mut self, capacity: usize, evicted: &mut Vec<ObjectId>);
    /// The object was deleted by its owner: forget it (ghost history may
    /// stay). Returns whether it was resident.
    fn remove(&mut self, id: ObjectId) -> bool;
    /// Panics if an internal invariant is broken (STYLE §4).
    fn check_invariants(&self);
    /// The costs of the tier this policy manages (`fast`) and of the tier a
    /// miss is served from (`backing`), for a policy whose decisions weigh
    /// them (the learned agent's placement); the others ignore them. The
    /// simulators call this before the first request; until then a policy
    /// assumes [`CostModel::default`].
    fn set_costs(&mut self, _cost: &CostModel) {}
}

/// The policies this crate knows, by table name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// Least recently used.
    Lru,
    /// First in, first out.
    Fifo,
    /// CLOCK, one reference bit.
    Clock,
    /// Least frequently used (in-cache counts, LRU tie-break).
    Lfu,
    /// 2Q (full version).
    TwoQ,
    /// Adaptive replacement cache.
    Arc,
    /// S3-FIFO.
    S3Fifo,
    /// SIEVE.
    Sieve,
    /// Hot/cold threshold migrator.
    Threshold,
    /// The reuse-model placement + migration agents alone.
    Reuse,
    /// The learned agents: the selection agent over ARC, S3-FIFO and the
    /// reuse-model agents (`Ensemble`).
    Learned,
    /// Belady's offline optimum (uses the future; an upper bound only).
    Belady,
}

impl PolicyKind {
    /// Every policy: the classic ones in table order, the learned agents,
    /// then Belady.
    pub const ALL: [PolicyKind; 12] = [
        PolicyKind::Lru,
        PolicyKind::Fifo,
        PolicyKind::Clock,
        PolicyKind::Lfu,
        PolicyKind::TwoQ,
        PolicyKind::Arc,
        PolicyKind::S3Fifo,
        PolicyKind::Sieve,
        PolicyKind::Threshold,
        PolicyKind::Reuse,
        PolicyKind::Learned,
        PolicyKind::Belady,
    ];

    /// Table name.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Lru => "LRU",
            PolicyKind::Fifo => "FIFO",
            PolicyKind::Clock => "CLOCK",
            PolicyKind::Lfu => "LFU",
            PolicyKind::TwoQ => "TwoQ",
            PolicyKind::Arc => "ARC",
            PolicyKind::S3Fifo => "S3FIFO",
            PolicyKind::Sieve => "SIEVE",
            PolicyKind::Threshold => "Threshold",
            PolicyKind::Reuse => "Reuse",
            PolicyKind::Learned => "Learned",
            PolicyKind::Belady => "Belady",
        }
    }

    /// Parse a table name, case-insensitively (`2q` and `s3-fifo` too).
    pub fn parse(s: &str) -> Result<PolicyKind> {
        let norm: String = s
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        let found = match norm.as_str() {
            "2q" => Some(PolicyKind::TwoQ),
            "opt" | "min" => Some(PolicyKind::Belady),
            _ => PolicyKind::ALL
                .into_iter()
                .find(|k| k.name().to_ascii_lowercase() == norm),
        };
        found.ok_or_else(|| {
            let names: Vec<&str> = PolicyKind::ALL.iter().map(|k| k.name()).collect();
            Error::Config(format!(
                "unknown policy {s:?}: want one of {} (any case)",
                names.join(", ")
            ))
        })
    }

    /// Build this policy over a tier of `bytes` bytes ([`ByteBudget`]); it is
    /// never told it may hold more than `max_objects` objects.
    pub fn build_bytes(self, bytes: u64, max_objects: usize) -> Result<Box<dyn Policy>> {
        if bytes == 0 {
            return Err(Error::Config("capacity must be at least one byte".into()));
        }
        Ok(Box::new(ByteBudget::new(
            self.build(1)?,
            bytes,
            max_objects,
        )))
    }

    /// Build this policy with room for `capacity` objects (1..=[`MAX_CAPACITY`]).
    pub fn build(self, capacity: usize) -> Result<Box<dyn Policy>> {
        if capacity == 0 {
            return Err(Error::Config("capacity must be at least one object".into()));
        }
        if capacity > MAX_CAPACITY {
            return Err(Error::Config(format!(
                "capacity {capacity} is over the most objects a tier may hold ({MAX_CAPACITY})"
            )));
        }
        Ok(match self {
            PolicyKind::Lru => Box::new(Lru::new(capacity)),
            PolicyKind::Fifo => Box::new(Fifo::new(capacity)),
            PolicyKind::Clock => Box::new(Clock::new(capacity)),
            PolicyKind::Lfu => Box::new(Lfu::new(capacity)),
            PolicyKind::TwoQ => Box::new(TwoQ::new(capacity)),
            PolicyKind::Arc => Box::new(Arc::new(capacity)),
            PolicyKind::S3Fifo => Box::new(S3Fifo::new(capacity)),
            PolicyKind::Sieve => Box::new(Sieve::new(capacity)),
            PolicyKind::Threshold => Box::new(Threshold::new(capacity)),
            PolicyKind::Reuse => Box::new(Reuse::new(capacity, reuse::DEFAULT_SEED)),
            PolicyKind::Learned => Box::new(Ensemble::new(capacity, reuse::DEFAULT_SEED)),
            PolicyKind::Belady => Box::new(Belady::new(capacity)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::PolicyKind;

    #[test]
    fn an_unknown_name_is_refused_with_every_name() {
        assert_eq!(PolicyKind::parse("s3-fifo").unwrap(), PolicyKind::S3Fifo);
        let msg = PolicyKind::parse("nope").unwrap_err().to_string();
        for k in PolicyKind::ALL {
            assert!(msg.contains(k.name()), "{msg}");
        }
    }
}
