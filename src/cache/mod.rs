//! The read side: [`prefetch::Prefetcher`] owns the read path and serves reads from a
//! byte-budgeted LRU of fixed-size blocks shared by the whole mount
//! ([`block_cache::BlockCache`]), filled by streaming ranged GETs ([`fetch`]), reading ahead
//! as far as each handle's sequential-read detector says ([`pattern::ReadPattern`]).

pub mod block_cache;
pub mod fetch;
pub mod pattern;
pub mod prefetch;

pub use block_cache::{Begin, BlockCache, BlockKey, CacheStats, Run};
pub use pattern::ReadPattern;
pub use prefetch::{Prefetcher, Version};

/// The blocks `[first, last]` (inclusive) covering `len > 0` bytes at `offset`.
pub fn block_span(offset: u64, len: u64, block_size: u64) -> (u64, u64) {
    debug_assert!(len > 0 && block_size > 0);
    (offset / block_size, (offset + len - 1) / block_size)
}

/// The byte range `(start, len)` of block `index` in a blob of `size` bytes.
pub fn block_range(index: u64, block_size: u64, size: u64) -> (u64, u64) {
    let start = index.saturating_mul(block_size).min(size);
    let end = start.saturating_add(block_size).min(size);
    (start, end - start)
}

/// How many blocks a blob of `size` bytes has.
pub fn block_count(size: u64, block_size: u64) -> u64 {
    size.div_ceil(block_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    #[test]
    fn block_arithmetic() {
        let bs = 4 * MB;
        assert_eq!(block_span(0, 1, bs), (0, 0));
        assert_eq!(block_span(0, bs, bs), (0, 0));
        assert_eq!(block_span(0, bs + 1, bs), (0, 1));
        assert_eq!(block_span(bs - 1, 2, bs), (0, 1));
        assert_eq!(block_span(bs, 128 * 1024, bs), (1, 1));
        assert_eq!(block_range(0, bs, 10), (0, 10));
        assert_eq!(block_range(1, bs, bs + 1), (bs, 1));
        assert_eq!(block_range(2, bs, bs + 1), (bs + 1, 0));
        assert_eq!(block_count(0, bs), 0);
        assert_eq!(block_count(1, bs), 1);
        assert_eq!(block_count(bs, bs), 1);
        assert_eq!(block_count(bs + 1, bs), 2);
        assert_eq!(block_count(100 * MB, bs), 25);
    }
}
