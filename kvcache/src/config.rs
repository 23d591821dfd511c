//! Cache configuration and the derived geometry.

use crate::error::Error;

/// How the K/V tensors of all layers are laid out in the reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// One tensor per layer and K/V, `[max_batch, max_ctx, kv_heads, head_dim]` each
    /// (vAttention's layout). A page of a request is `2 * layers` separate mappings.
    #[default]
    PerTensor,
    /// One tensor `[max_batch, max_ctx, layers, 2, kv_heads, head_dim]`: a token's K
    /// and V of every layer are adjacent, so a page of a request is one mapping
    /// (64x fewer map calls and kernel mappings for a 32-layer model). Each layer's
    /// K or V is still a strided `[max_batch, max_ctx, kv_heads, head_dim]` view
    /// (token stride `2 * layers * kv_heads * head_dim * elem_bytes`), which
    /// attention kernels with a sequence stride read unchanged.
    TokenMajor,
}

/// Shape of the model's KV cache and of the page pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Transformer layers; each has a K and a V tensor.
    pub layers: usize,
    /// KV heads per layer.
    pub kv_heads: usize,
    /// Elements per head.
    pub head_dim: usize,
    /// Bytes per element (2 for bf16, 4 for f32).
    pub elem_bytes: usize,
    /// Batch slots: requests live at the same time.
    pub max_batch: usize,
    /// Longest context in tokens (rounded up to whole pages).
    pub max_ctx: usize,
    /// Bytes per physical page of one tensor: a multiple of 4 KiB and of one
    /// token's bytes in that tensor (`kv_heads * head_dim * elem_bytes`, times
    /// `2 * layers` for [`Layout::TokenMajor`]).
    pub page_size: usize,
    /// Physical pool in bytes, over all tensors.
    pub pool_bytes: usize,
    /// Below this many free page groups, `reclaim` evicts until `high_watermark`.
    pub low_watermark: usize,
    /// Target of free page groups for `reclaim`.
    pub high_watermark: usize,
    /// Try huge-page backed pools for 2 MiB pages.
    pub try_huge: bool,
    /// Per-layer tensors or one token-major tensor.
    pub layout: Layout,
}

/// Most bytes of page bookkeeping a geometry may need ([`Config::geometry`]).
pub const MAX_BOOKKEEPING: usize = 4 << 30;

/// Bytes of bookkeeping per batch slot besides its pages' entries: the slot's
/// record (48), its page vector's heap block and malloc header (16-32), and
/// its node share in the free-slot `BTreeSet` (up to about 48).
const SLOT_OVERHEAD: usize = 128;
/// Bookkeeping bytes per page group of the pool: its record in the cache
/// (`Group`, 80 bytes; a test in `cache.rs` keeps this in step) and its entry in
/// the free-group set.
pub(crate) const GROUP_OVERHEAD: usize = 112;

impl Config {
    /// A Llama-3-8B-like shape (32 layers, 8 KV heads, head dim 128, bf16).
    pub fn llama3_8b(
        max_batch: usize,
        max_ctx: usize,
        page_size: usize,
        pool_bytes: usize,
    ) -> Self {
        Self {
            layers: 32,
            kv_heads: 8,
            head_dim: 128,
            elem_bytes: 2,
            max_batch,
            max_ctx,
            page_size,
            pool_bytes,
            low_watermark: 0,
            high_watermark: 0,
            try_huge: true,
            layout: Layout::PerTensor,
        }
    }

    /// Bytes of one token's K (or V) in one layer.
    fn kv_bytes(&self) -> Result<usize, Error> {
        self.kv_heads
            .checked_mul(self.head_dim)
            .and_then(|b| b.checked_mul(self.elem_bytes))
            .ok_or(Error::Config("one token's bytes overflow"))
    }

    /// Bytes one token takes in one page: its K or V of one layer (per-tensor),
    /// or K and V of every layer (token-major).
    pub fn token_bytes(&self) -> Result<usize, Error> {
        let kv = self.kv_bytes()?;
        match self.layout {
            Layout::PerTensor => Ok(kv),
            Layout::TokenMajor => self
                .layers
                .checked_mul(2)
                .and_then(|n| kv.checked_mul(n))
                .ok_or(Error::Config("one token's bytes overflow")),
        }
    }

    /// The page size that holds `tokens` tokens in this layout.
    pub fn page_size_for(&self, tokens: usize) -> Result<usize, Error> {
        self.token_bytes()?
            .checked_mul(tokens)
            .ok_or(Error::Config("page size overflows"))
    }

    /// Check the relations and derive the geometry.
    pub fn geometry(&self) -> Result<Geometry, Error> {
        if self.layers == 0 || self.kv_heads == 0 || self.head_dim == 0 || self.elem_bytes == 0 {
            return Err(Error::Config(
                "layers, kv_heads, head_dim and elem_bytes must be non-zero",
            ));
        }
        if self.max_batch == 0 || self.max_ctx == 0 {
            return Err(Error::Config("max_batch and max_ctx must be non-zero"));
        }
        if self.page_size == 0 || self.page_size % 4096 != 0 {
            return Err(Error::Config(
                "page_size must be a non-zero multiple of 4 KiB",
            ));
        }
        if self.low_watermark > self.high_watermark {
            return Err(Error::Config("low_watermark exceeds high_watermark"));
        }
        let kv_bytes = self.kv_bytes()?;
        let token_bytes = self.token_bytes()?;
        let tensors = match self.layout {
            Layout::PerTensor => self
                .layers
                .checked_mul(2)
                .ok_or(Error::Config("layers too large"))?,
            Layout::TokenMajor => 1,
        };
        if self.page_size % token_bytes != 0 {
            return Err(Error::Config(
                "page_size must be a multiple of one token's bytes",
            ));
        }
        let tokens_per_page = self.page_size / token_bytes;
        let pages_per_slot = self.max_ctx.div_ceil(tokens_per_page);
        let slot_bytes = pages_per_slot
            .checked_mul(self.page_size)
            .ok_or(Error::Config("max_ctx too large"))?;
        let tensor_bytes = slot_bytes
            .checked_mul(self.max_batch)
            .ok_or(Error::Config("max_batch * max_ctx too large"))?;
        let reserve_bytes = tensor_bytes
            .checked_mul(tensors)
            .filter(|&b| b < (1usize << 46))
            .ok_or(Error::Config("virtual reservation over 64 TiB"))?;
        // The bookkeeping of a reservation: 4 bytes per reserved page (host
        // backend), 8 per page of every batch slot, and per slot its record
        // (48 bytes), its page vector's own allocation and its entry in the
        // free-slot set: SLOT_OVERHEAD in all (review finding: a hundred
        // million one-page slots passed as 4.0e9 bytes and took 8.8 GB). A
        // shape accepted by the 64 TiB cap can still ask for tens of GiB of it
        // (4 KiB pages, a two-billion-token context): refuse it rather than
        // abort on the allocation.
        let records = (reserve_bytes / self.page_size)
            .saturating_mul(4)
            .saturating_add(
                pages_per_slot
                    .saturating_mul(8)
                    .saturating_add(SLOT_OVERHEAD)
                    .saturating_mul(self.max_batch),
            );
        if records > MAX_BOOKKEEPING {
            return Err(Error::Config(
                "page bookkeeping over 4 GiB: use bigger pages, or a smaller max_ctx or max_batch",
            ));
        }
        // page_size * tensors <= reserve_bytes < 2^46: no overflow.
        let groups = self.pool_bytes / (self.page_size * tensors);
        if groups == 0 {
            return Err(Error::Config("pool smaller than one page per tensor"));
        }
        if groups > u32::MAX as usize / 2 {
            return Err(Error::Config("pool has too many pages"));
        }
        // Each page group of the pool has a record too: a 2 TiB pool of 4 KiB
        // pages is 268 million groups, 21 GB of records, which passed the check
        // above and aborted on the allocation (review finding, 2026-11-25).
        if records.saturating_add(groups.saturating_mul(GROUP_OVERHEAD)) > MAX_BOOKKEEPING {
            return Err(Error::Config(
                "page bookkeeping over 4 GiB: use bigger pages or a smaller pool",
            ));
        }
        Ok(Geometry {
            layout: self.layout,
            kv_bytes,
            token_bytes,
            tokens_per_page,
            pages_per_slot,
            tensors,
            slot_bytes,
            tensor_bytes,
            reserve_bytes,
            groups,
            page_size: self.page_size,
        })
    }
}

/// Sizes derived from a [`Config`]. For [`Layout::TokenMajor`] there is one tensor
/// and a token is `[layers][2][kv_heads][head_dim]`.
///
/// ```text
/// reservation = [tensor 0 = layer 0 K][tensor 1 = layer 0 V][tensor 2 = layer 1 K]...
/// tensor      = [slot 0][slot 1]...[slot max_batch-1]          (tensor_bytes)
/// slot        = [page 0][page 1]...[page pages_per_slot-1]     (slot_bytes)
/// page        = [token 0]...[token tokens_per_page-1]          (page_size)
/// token       = [kv_heads][head_dim] elements                  (token_bytes)
/// pool        = tensors regions of `groups` pages; page group g of tensor t
///               is pool page t * groups + g, so consecutive groups are
///               file-contiguous inside every tensor's region.
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// The layout this geometry is for.
    pub layout: Layout,
    /// Bytes of one layer's K (or V) of one token.
    pub kv_bytes: usize,
    /// Bytes of one token in one mapped tensor (`kv_bytes`, or all layers' K and V
    /// for [`Layout::TokenMajor`]).
    pub token_bytes: usize,
    /// Tokens per page.
    pub tokens_per_page: usize,
    /// Pages per slot (max_ctx rounded up).
    pub pages_per_slot: usize,
    /// Separately mapped tensors: K and V of every layer, or 1 (token-major).
    pub tensors: usize,
    /// Bytes between two slots of a tensor (batch stride).
    pub slot_bytes: usize,
    /// Bytes of one tensor.
    pub tensor_bytes: usize,
    /// Bytes of the whole reservation.
    pub reserve_bytes: usize,
    /// Page groups in the pool (one page per tensor each).
    pub groups: usize,
    /// Bytes per page.
    pub page_size: usize,
}

impl Geometry {
    /// Tensor index of layer `layer`, K (`false`) or V (`true`).
    pub fn tensor(&self, layer: usize, v: bool) -> usize {
        match self.layout {
            Layout::PerTensor => 2 * layer + usize::from(v),
            Layout::TokenMajor => 0,
        }
    }

    /// Offset of layer `layer`'s K or V inside one token of its tensor.
    pub fn kv_off(&self, layer: usize, v: bool) -> usize {
        match self.layout {
            Layout::PerTensor => 0,
            Layout::TokenMajor => (2 * layer + usize::from(v)) * self.kv_bytes,
        }
    }

    /// Reservation offset of page `page` of slot `slot` in tensor `t`.
    pub fn page_off(&self, t: usize, slot: usize, page: usize) -> usize {
        t * self.tensor_bytes + slot * self.slot_bytes + page * self.page_size
    }

    /// Pool page of group `g` in tensor `t`.
    pub fn phys(&self, t: usize, g: u32) -> usize {
        t * self.groups + g as usize
    }

    /// Pages covering `tokens` tokens.
    pub fn pages_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.tokens_per_page)
    }

    /// Max context in tokens after rounding to pages.
    pub fn max_tokens(&self) -> usize {
        self.pages_per_slot * self.tokens_per_page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_for_matches_the_geometry_in_both_layouts() {
        for layout in [Layout::PerTensor, Layout::TokenMajor] {
            let mut c = Config::llama3_8b(2, 1024, 0, 1 << 30);
            c.layout = layout;
            c.page_size = c.page_size_for(16).unwrap();
            let want = match layout {
                Layout::PerTensor => 16 * 8 * 128 * 2,
                Layout::TokenMajor => 16 * 8 * 128 * 2 * 2 * 32,
            };
            assert_eq!(c.page_size, want);
            assert_eq!(c.geometry().unwrap().tokens_per_page, 16);
        }
    }

    /// A shape under the 64 TiB reservation cap whose page records would take
    /// tens of GiB is refused with an error (review finding: the process
    /// aborted allocating 32 GB), and a big but sane shape is accepted.
    #[test]
    fn a_shape_needing_huge_bookkeeping_is_refused() {
        let mut c = Config::llama3_8b(4, 2_000_000_000, 0, 1 << 30);
        c.layers = 1;
        c.page_size = 4096;
        let e = c.geometry().unwrap_err().to_string();
        assert!(e.contains("bookkeeping"), "{e}");
        let ok = Config::llama3_8b(256, 32 << 10, 64 << 10, 1 << 30);
        assert!(ok.geometry().is_ok(), "{:?}", ok.geometry());
        // A hundred million one-page slots: their records alone are over
        // 4 GiB (review finding: estimated at 4.0e9 bytes, took 8.8 GB).
        let mut many = Config::llama3_8b(100_000_000, 1, 64 << 10, 1 << 30);
        many.layers = 1;
        let e = many.geometry().unwrap_err().to_string();
        assert!(e.contains("bookkeeping"), "{e}");
        // A 2 TiB pool of 4 KiB pages: 268 million page groups, whose records
        // alone are 21 GB (review finding: accepted, then the allocation
        // aborted the process).
        let mut pool = Config::llama3_8b(1, 1, 4096, 1 << 41);
        pool.layers = 1;
        pool.kv_heads = 1;
        pool.head_dim = 2048;
        let e = pool.geometry().unwrap_err().to_string();
        assert!(e.contains("bookkeeping"), "{e}");
    }
}
