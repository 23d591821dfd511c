//! Two accounting-only baselines with the same capacity as the cache's pool.

use std::collections::{BTreeMap, HashMap};

use super::replay::Target;
use crate::cache::block_hash;
use crate::error::Error;

/// Every request reserves `max_ctx` tokens up front (static allocation, no sharing).
#[derive(Debug)]
pub struct StaticBaseline {
    capacity: usize,
    per_req: usize,
    token_bytes: usize,
    next: u64,
    live: HashMap<u64, usize>,
}

impl StaticBaseline {
    /// `capacity` bytes; each request holds `max_ctx * token_bytes`.
    pub fn new(capacity: usize, max_ctx: usize, token_bytes: usize) -> Self {
        Self {
            capacity,
            per_req: max_ctx * token_bytes,
            token_bytes,
            next: 1,
            live: HashMap::new(),
        }
    }
}

impl Target for StaticBaseline {
    fn name(&self) -> String {
        "static max-context reservation".into()
    }
    fn admit(&mut self, prompt: &[u32]) -> Result<(u64, usize), Error> {
        let used = self.live.len() * self.per_req;
        if used + self.per_req > self.capacity {
            return Err(Error::PoolExhausted {
                needed: self.per_req,
                available: self.capacity - used,
            });
        }
        let h = self.next;
        self.next += 1;
        self.live.insert(h, prompt.len());
        Ok((h, 0))
    }
    fn append(&mut self, h: u64, tokens: &[u32]) -> Result<(), Error> {
        let len = self.live.get_mut(&h).ok_or(Error::UnknownRequest(h))?;
        if (*len + tokens.len()) * self.token_bytes > self.per_req {
            return Err(Error::OutOfBounds);
        }
        *len += tokens.len();
        Ok(())
    }
    fn free(&mut self, h: u64) -> Result<(), Error> {
        self.live
            .remove(&h)
            .map(|_| ())
            .ok_or(Error::UnknownRequest(h))
    }
    fn waste_bytes(&self) -> usize {
        self.live.len() * self.per_req - self.need_bytes()
    }
    fn need_bytes(&self) -> usize {
        self.live.values().sum::<usize>() * self.token_bytes
    }
}

struct BlockReq {
    blocks: Vec<u32>,
    tokens: Vec<u32>,
    hashes: Vec<u64>,
}

/// vLLM-style allocator: 16-token blocks, block-hash prefix caching with reference
/// counts, LRU eviction of unreferenced cached blocks.
pub struct BlockBaseline {
    block_tokens: usize,
    token_bytes: usize,
    free: Vec<u32>,
    refs: Vec<u32>,
    hash_of: Vec<Option<u64>>,
    tick_of: Vec<u64>,
    prefix: HashMap<u64, u32>,
    lru: BTreeMap<u64, u32>,
    tick: u64,
    next: u64,
    reqs: HashMap<u64, BlockReq>,
}

impl BlockBaseline {
    /// `capacity` bytes in blocks of `block_tokens` tokens of `token_bytes` each.
    pub fn new(capacity: usize, block_tokens: usize, token_bytes: usize) -> Self {
        let n = capacity / (block_tokens * token_bytes);
        Self {
            block_tokens,
            token_bytes,
            free: (0..n as u32).rev().collect(),
            refs: vec![0; n],
            hash_of: vec![None; n],
            tick_of: vec![0; n],
            prefix: HashMap::new(),
            lru: BTreeMap::new(),
            tick: 0,
            next: 1,
            reqs: HashMap::new(),
        }
    }

    fn take(&mut self) -> Option<u32> {
        if let Some(b) = self.free.pop() {
            return Some(b);
        }
        let (_, b) = self.lru.pop_first()?;
        if let Some(h) = self.hash_of[b as usize].take() {
            self.prefix.remove(&h);
        }
        Some(b)
    }

    fn publish(&mut self, h: u64) {
        let bt = self.block_tokens;
        let Some(r) = self.reqs.get_mut(&h) else {
            return;
        };
        while r.hashes.len() < r.tokens.len() / bt {
            let b = r.hashes.len();
            let parent = r.hashes.last().copied().unwrap_or(0);
            let hash = block_hash(parent, &r.tokens[b * bt..(b + 1) * bt]);
            r.hashes.push(hash);
            let blk = r.blocks[b];
            if self.hash_of[blk as usize].is_none() && !self.prefix.contains_key(&hash) {
                self.hash_of[blk as usize] = Some(hash);
                self.prefix.insert(hash, blk);
            }
        }
    }
}

impl Target for BlockBaseline {
    fn name(&self) -> String {
        format!(
            "vLLM-style {}-token blocks + prefix cache",
            self.block_tokens
        )
    }
    fn admit(&mut self, prompt: &[u32]) -> Result<(u64, usize), Error> {
        let bt = self.block_tokens;
        let mut parent = 0;
        let mut hits = Vec::new();
        for chunk in prompt.chunks_exact(bt) {
            match self.prefix.get(&block_hash(parent, chunk)) {
                Some(&b) => {
                    parent = block_hash(parent, chunk);
                    hits.push((b, parent));
                }
                None => break,
            }
        }
        let need = prompt.len().div_ceil(bt) - hits.len();
        let cached_hits = hits
            .iter()
            .filter(|(b, _)| self.refs[*b as usize] == 0)
            .count();
        let available = self.free.len() + self.lru.len() - cached_hits;
        if need > available {
            return Err(Error::PoolExhausted {
                needed: need,
                available,
            });
        }
        for &(b, _) in &hits {
            if self.refs[b as usize] == 0 {
                self.lru.remove(&self.tick_of[b as usize]);
            }
            self.refs[b as usize] += 1;
        }
        let h = self.next;
        self.next += 1;
        let k = hits.len() * bt;
        self.reqs.insert(
            h,
            BlockReq {
                blocks: hits.iter().map(|x| x.0).collect(),
                tokens: prompt[..k].to_vec(),
                hashes: hits.iter().map(|x| x.1).collect(),
            },
        );
        self.append(h, &prompt[k..])?;
        Ok((h, k))
    }
    fn append(&mut self, h: u64, tokens: &[u32]) -> Result<(), Error> {
        let bt = self.block_tokens;
        let r = self.reqs.get(&h).ok_or(Error::UnknownRequest(h))?;
        let need = (r.tokens.len() + tokens.len()).div_ceil(bt) - r.blocks.len();
        let available = self.free.len() + self.lru.len();
        if need > available {
            return Err(Error::PoolExhausted {
                needed: need,
                available,
            });
        }
        let mut got = Vec::with_capacity(need);
        for _ in 0..need {
            got.push(self.take().ok_or(Error::PoolExhausted {
                needed: need,
                available,
            })?);
        }
        for &b in &got {
            self.refs[b as usize] = 1;
        }
        let r = self.reqs.get_mut(&h).ok_or(Error::UnknownRequest(h))?;
        r.blocks.extend(got);
        r.tokens.extend_from_slice(tokens);
        self.publish(h);
        Ok(())
    }
    fn free(&mut self, h: u64) -> Result<(), Error> {
        let r = self.reqs.remove(&h).ok_or(Error::UnknownRequest(h))?;
        for b in r.blocks {
            self.refs[b as usize] -= 1;
            if self.refs[b as usize] == 0 {
                if self.hash_of[b as usize].is_some() {
                    self.tick += 1;
                    self.tick_of[b as usize] = self.tick;
                    self.lru.insert(self.tick, b);
                } else {
                    self.free.push(b);
                }
            }
        }
        Ok(())
    }
    fn waste_bytes(&self) -> usize {
        let held: usize = self
            .reqs
            .values()
            .map(|r| r.blocks.len() * self.block_tokens)
            .sum();
        held * self.token_bytes - self.need_bytes()
    }
    fn need_bytes(&self) -> usize {
        self.reqs.values().map(|r| r.tokens.len()).sum::<usize>() * self.token_bytes
    }
}
