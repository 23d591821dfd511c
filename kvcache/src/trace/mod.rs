//! Serving-trace replay: the Mooncake JSONL traces, a synthetic Poisson trace, a
//! continuous-batching scheduler that drives any [`Target`], and two baselines
//! (static max-context reservation, a vLLM-style 16-token block allocator with
//! block-hash prefix caching) to compare against on the same schedule.

mod baseline;
mod parse;
mod replay;

pub use baseline::{BlockBaseline, StaticBaseline};
pub use parse::{
    TRACE_BLOCK_TOKENS, TraceRequest, parse, parse_line, poisson, prompt_prefix, prompt_tokens,
};
pub use replay::{CacheTarget, ReplayOptions, ReplayReport, Target, replay};
