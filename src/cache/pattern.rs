//! Sequential-read detection for prefetch. Each open handle keeps a [`ReadPattern`]; every read
//! is recorded, and the answer is how many blocks past the read to fetch ahead.
//!
//! The window starts at zero (a single read, or random reads, fetch only what they need), opens
//! to one block on the second read in sequence, and doubles each time the reader moves into a
//! new block while still sequential, up to the maximum. A jump resets it. Reads the kernel sends
//! slightly out of order (parallel readahead) still count as sequential within `tolerance`.

#[derive(Debug, Clone)]
pub struct ReadPattern {
    next_offset: Option<u64>,
    last_block: Option<u64>,
    window: u64,
    max_window: u64,
    tolerance: u64,
}

impl ReadPattern {
    pub fn new(max_window: u64, tolerance: u64) -> Self {
        ReadPattern {
            next_offset: None,
            last_block: None,
            window: 0,
            max_window,
            tolerance,
        }
    }

    /// The current window, in blocks.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Records a read of `len > 0` bytes at `offset`; returns how many blocks after the read's
    /// last block should be prefetched.
    pub fn record(&mut self, offset: u64, len: u64, block_size: u64) -> u64 {
        let last = (offset + len - 1) / block_size;
        let sequential = match self.next_offset {
            Some(next) => offset.abs_diff(next) <= self.tolerance,
            None => false,
        };
        if !sequential {
            self.window = 0;
        } else if self.window == 0 {
            self.window = 1.min(self.max_window);
        } else if self.last_block.is_some_and(|b| last > b) {
            self.window = (self.window * 2).min(self.max_window);
        }
        let end = offset + len;
        match (sequential, self.last_block, self.next_offset) {
            (true, Some(b), Some(n)) => {
                self.last_block = Some(b.max(last));
                self.next_offset = Some(n.max(end));
            }
            _ => {
                self.last_block = Some(last);
                self.next_offset = Some(end);
            }
        }
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BS: u64 = 4 << 20;
    const RA: u64 = 128 << 10;

    #[test]
    fn sequential_reads_grow_the_window_up_to_the_max() {
        let mut p = ReadPattern::new(8, 2 << 20);
        let mut windows = Vec::new();
        let mut off = 0;
        while off < 40 * BS {
            windows.push(p.record(off, RA, BS));
            off += RA;
        }
        assert_eq!(windows[0], 0, "a single read fetches only what it needs");
        assert_eq!(windows[1], 1);
        assert_eq!(*windows.last().unwrap(), 8);
        assert!(
            windows.windows(2).all(|w| w[1] >= w[0]),
            "never shrinks while sequential"
        );
        // 1 -> 2 -> 4 -> 8 as the reader crosses into blocks 1, 2, 3.
        let per_block = (BS / RA) as usize;
        assert_eq!(windows[per_block], 2);
        assert_eq!(windows[2 * per_block], 4);
        assert_eq!(windows[3 * per_block], 8);
    }

    #[test]
    fn random_reads_do_not_prefetch() {
        let mut p = ReadPattern::new(8, 2 << 20);
        for off in [50 * BS, 3 * BS, 90 * BS, 7, 20 * BS] {
            assert_eq!(p.record(off, 4096, BS), 0);
        }
    }

    #[test]
    fn a_jump_resets_and_slight_reordering_does_not() {
        let mut p = ReadPattern::new(8, 2 << 20);
        for i in 0..100 {
            p.record(i * RA, RA, BS);
        }
        assert!(p.window() > 1);
        // Parallel readahead delivered out of order: still sequential.
        let base = 100 * RA;
        p.record(base + RA, RA, BS);
        let w = p.record(base, RA, BS);
        assert!(w > 1);
        assert_eq!(p.record(500 * BS, RA, BS), 0);
    }
}
