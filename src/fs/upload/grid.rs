//! How a file being written is cut into blocks.
//!
//! A block blob commits at most 50,000 blocks of at most 4000 MiB. Cutting every file in blocks
//! of the base size (4 MiB by default) would stop at ~195 GiB, so blocks grow with their index:
//! the first [`SPAN`] blocks have the base size, the next [`SPAN`] twice that, and so on, up to
//! 4000 MiB. Files up to `SPAN` × base (3.9 GiB at 4 MiB) are cut exactly as before; a 1 TiB
//! file needs ~8,500 blocks; the largest file is ~156 TiB at the default base size. Block ids
//! keep one length whatever the block size.

/// Blocks per size level.
pub const SPAN: u64 = 1000;
/// Most blocks in a committed block blob.
pub const MAX_BLOCKS: u64 = 50_000;
/// Largest block Put Block accepts.
pub const MAX_BLOCK_SIZE: u64 = 4000 << 20;

#[derive(Debug, Clone)]
pub struct Grid {
    /// Start offset of each level and its block size, up to the level of the largest block.
    levels: Vec<(u64, u64)>,
}

impl Grid {
    pub fn new(base: u64) -> Self {
        assert!(base > 0 && base <= MAX_BLOCK_SIZE);
        let mut levels = Vec::new();
        let (mut start, mut size) = (0u64, base);
        loop {
            levels.push((start, size));
            if size == MAX_BLOCK_SIZE {
                return Grid { levels };
            }
            start += SPAN * size;
            size = (size * 2).min(MAX_BLOCK_SIZE);
        }
    }

    /// The level of block `index`, its first block index, and that level's start and size.
    fn level_of_index(&self, index: u64) -> (u64, u64, u64) {
        let level = (index / SPAN).min(self.levels.len() as u64 - 1);
        let (start, size) = self.levels[level as usize];
        (level * SPAN, start, size)
    }

    /// The size of the first blocks (the base size it was made with).
    pub fn base(&self) -> u64 {
        self.levels[0].1
    }

    /// Start offset and full length of block `index`.
    pub fn extent(&self, index: u64) -> (u64, u64) {
        let (first, start, size) = self.level_of_index(index);
        (start + (index - first) * size, size)
    }

    /// The block holding byte `offset`.
    pub fn index_of(&self, offset: u64) -> u64 {
        let level = self
            .levels
            .iter()
            .rposition(|(start, _)| *start <= offset)
            .unwrap_or(0);
        let (start, size) = self.levels[level];
        level as u64 * SPAN + (offset - start) / size
    }

    /// Start and length of block `index` in a file of `size` bytes (clipped at the end).
    pub fn range(&self, index: u64, size: u64) -> (u64, u64) {
        let (start, len) = self.extent(index);
        let start = start.min(size);
        (start, len.min(size - start))
    }

    /// Blocks of a file of `size` bytes.
    pub fn count(&self, size: u64) -> u64 {
        if size == 0 {
            0
        } else {
            self.index_of(size - 1) + 1
        }
    }

    /// First and last block of `len > 0` bytes at `offset`.
    pub fn span(&self, offset: u64, len: u64) -> (u64, u64) {
        (self.index_of(offset), self.index_of(offset + len - 1))
    }

    /// The largest file this grid can commit in [`MAX_BLOCKS`] blocks.
    pub fn max_file_size(&self) -> u64 {
        let (start, len) = self.extent(MAX_BLOCKS - 1);
        start + len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const TIB: u64 = 1 << 40;

    /// Every block follows the one before, no gaps, no overlaps.
    fn check_contiguous(g: &Grid, blocks: u64) {
        let mut end = 0;
        for i in 0..blocks {
            let (start, len) = g.extent(i);
            assert_eq!(start, end, "block {i}");
            assert!(len > 0 && len <= MAX_BLOCK_SIZE);
            assert_eq!(g.index_of(start), i);
            assert_eq!(g.index_of(start + len - 1), i);
            end = start + len;
        }
    }

    #[test]
    fn small_files_keep_the_base_size() {
        let g = Grid::new(4 * MIB);
        assert_eq!(g.extent(0), (0, 4 * MIB));
        assert_eq!(g.extent(999), (999 * 4 * MIB, 4 * MIB));
        assert_eq!(g.extent(1000), (4000 * MIB, 8 * MIB));
        assert_eq!(g.count(0), 0);
        assert_eq!(g.count(1), 1);
        assert_eq!(g.count(4 * MIB), 1);
        assert_eq!(g.count(4 * MIB + 1), 2);
        assert_eq!(g.range(1, 5 * MIB), (4 * MIB, MIB));
        assert_eq!(g.span(4 * MIB - 1, 2), (0, 1));
        check_contiguous(&g, 12_000);
    }

    #[test]
    fn a_one_tib_file_fits() {
        let g = Grid::new(4 * MIB);
        let n = g.count(TIB);
        assert!(n < MAX_BLOCKS, "{n} blocks");
        assert!(n < 10_000, "{n} blocks");
        let (start, len) = g.range(n - 1, TIB);
        assert_eq!(start + len, TIB);
        // The largest block of a 1 TiB file stays moderate.
        assert!(
            g.extent(n - 1).1 <= 1024 * MIB,
            "blocks of a 1 TiB file stay at most 1 GiB"
        );
    }

    #[test]
    fn a_hundred_tib_file_fits() {
        let g = Grid::new(4 * MIB);
        let n = g.count(100 * TIB);
        assert!(n <= MAX_BLOCKS, "{n} blocks");
        let (start, len) = g.range(n - 1, 100 * TIB);
        assert_eq!(start + len, 100 * TIB);
        assert_eq!(g.extent(n - 1).1, MAX_BLOCK_SIZE);
        check_contiguous(&g, MAX_BLOCKS);
        assert!(g.max_file_size() > 150 * TIB, "{}", g.max_file_size() / TIB);
    }

    #[test]
    fn any_base_size_works() {
        for base in [64 * 1024, MIB, 100 * MIB, MAX_BLOCK_SIZE] {
            let g = Grid::new(base);
            check_contiguous(&g, 3 * SPAN + 7);
            assert!(g.max_file_size() >= 100 * TIB || base < MIB, "base {base}");
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every byte belongs to exactly one block, blocks follow each other, and a file of
        /// any size is cut into `count` blocks that cover it exactly.
        #[test]
        fn blocks_tile_every_file(base in 1u64..(64 << 20), offset in 0u64..(1 << 44), size in 0u64..(1 << 44)) {
            let g = Grid::new(base);
            let i = g.index_of(offset);
            let (start, len) = g.extent(i);
            prop_assert!(start <= offset && offset < start + len);
            prop_assert!(len <= MAX_BLOCK_SIZE && len >= base.min(MAX_BLOCK_SIZE));
            if i > 0 {
                let (ps, pl) = g.extent(i - 1);
                prop_assert_eq!(ps + pl, start);
            }
            let n = g.count(size);
            let mut end = 0;
            for k in 0..n {
                let (s, l) = g.range(k, size);
                prop_assert_eq!(s, end);
                prop_assert!(l > 0);
                end = s + l;
            }
            prop_assert_eq!(end, size);
            if n > 0 {
                let (s, l) = g.range(n - 1, size);
                prop_assert_eq!(s + l, size);
                prop_assert!(l > 0);
            }
        }
    }
}
