//! engram-kvcache: demand-paged KV-cache tensors.
