//! Blocks an interrupted write left staged in the service, offered to the next write of the
//! same blob, so that a copy cut off by a crash and run again sends only what it had not sent.
//!
//! When a mount stops before a file is finished (kill -9, a power cut), the blocks it had sent
//! stay in the service, uncommitted, under the blob's name (for 7 days, or until the blob is
//! committed). Its journal recorded each one: id, offset, length and the MD5 of the bytes sent.
//! The resume saves that unfinished content beside the blob (`.partial-`), which uses none of
//! those blocks, and offers them here ([`ReuseIndex::offer`]). When a program writes the blob
//! again (`cp` run a second time), a block of the new file at the same offset and of the same
//! length whose bytes have that MD5 is committed under the old id instead of being uploaded,
//! once the service is seen to hold that id uncommitted at that length (one Get Block List per
//! file written, asked only when a block matches). Anything else is uploaded as usual, under a
//! new id: an old id never carries other bytes than those recorded for it.
//!
//! An id on offer goes to one write only ([`ReuseIndex::take`]): the ids a commit names are
//! then its own, which is how a commit recognises its own earlier success after a lost answer
//! (see [`super::commit`]). Two writes of one blob never share one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use super::grid::Grid;
use super::journal::Record;

/// A block staged by an interrupted write: its id and the MD5 (base64) of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub id: String,
    pub md5: String,
}

/// The blocks of one blob on offer, by (offset, length).
type Offer = HashMap<(u64, u64), Staged>;

/// Blocks on offer, by blob name, and what was reused (for the metrics).
#[derive(Default)]
pub struct ReuseIndex {
    blobs: Mutex<HashMap<String, Arc<Offer>>>,
    /// Blocks committed under an id an interrupted write had staged, and their bytes.
    pub blocks_reused: AtomicU64,
    pub bytes_reused: AtomicU64,
}

impl ReuseIndex {
    /// Offers the blocks an unfinished record says were sent (added to any on offer for the
    /// same blob; where one is on offer at the same place already, that one stays: records
    /// are offered newest first, and the newest wins).
    pub fn offer(&self, record: &Record) {
        if record.sent.is_empty() || record.block_size == 0 {
            return;
        }
        let grid = Grid::new(record.block_size);
        let mut blobs = lock(&self.blobs);
        let mut offer: Offer = blobs
            .get(&record.blob)
            .map(|o| o.as_ref().clone())
            .unwrap_or_default();
        for (&index, b) in &record.sent {
            offer
                .entry((grid.extent(index).0, b.len))
                .or_insert_with(|| Staged {
                    id: b.id.clone(),
                    md5: b.md5.clone(),
                });
        }
        blobs.insert(record.blob.clone(), Arc::new(offer));
    }

    /// The block on offer for `blob` at `start`, `len` bytes long, if any.
    pub fn candidate(&self, blob: &str, start: u64, len: u64) -> Option<Staged> {
        lock(&self.blobs).get(blob)?.get(&(start, len)).cloned()
    }

    /// The block on offer for `blob` at `start`, `len` bytes long, if any, taken off the offer:
    /// no other write gets it.
    pub fn take(&self, blob: &str, start: u64, len: u64) -> Option<Staged> {
        let mut blobs = lock(&self.blobs);
        let offer = blobs.get_mut(blob)?;
        if !offer.contains_key(&(start, len)) {
            return None;
        }
        Arc::make_mut(offer).remove(&(start, len))
    }

    /// `blob` was committed: the service dropped the uncommitted blocks it did not use, and
    /// those it used are no longer uncommitted.
    pub fn withdraw(&self, blob: &str) {
        lock(&self.blobs).remove(blob);
    }

    /// A block of `len` bytes was committed under an id on offer instead of being sent.
    pub fn reused(&self, len: u64) {
        self.blocks_reused.fetch_add(1, Relaxed);
        self.bytes_reused.fetch_add(len, Relaxed);
    }

    /// A block counted by [`ReuseIndex::reused`] was sent after all (its id had expired).
    pub fn unreused(&self, len: u64) {
        self.blocks_reused.fetch_sub(1, Relaxed);
        self.bytes_reused.fetch_sub(len, Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::upload::journal::SentBlock;

    fn record(blob: &str, sent: &[(u64, &str, u64)]) -> Record {
        let mut r = Record::empty("boot");
        r.blob = blob.to_string();
        r.block_size = 100;
        for &(index, id, len) in sent {
            r.sent.insert(
                index,
                SentBlock {
                    id: id.to_string(),
                    len,
                    md5: format!("md5-{id}"),
                },
            );
        }
        r
    }

    #[test]
    fn blocks_are_offered_by_offset_and_length_until_the_blob_is_committed() {
        let index = ReuseIndex::default();
        index.offer(&record(
            "a",
            &[(0, "x0", 100), (1, "x1", 100), (2, "x2", 40)],
        ));
        index.offer(&record("b", &[(0, "y0", 100)]));
        assert_eq!(index.candidate("a", 100, 100).unwrap().id, "x1");
        assert_eq!(index.candidate("a", 200, 40).unwrap().md5, "md5-x2");
        // Another length at the same offset (the file is longer now) is another block.
        assert!(index.candidate("a", 200, 100).is_none());
        assert!(index.candidate("c", 0, 100).is_none());
        // An older record of the same blob (offered after) adds to the offer where it has
        // nothing yet.
        index.offer(&record("a", &[(1, "z1", 100), (3, "z3", 10)]));
        assert_eq!(index.candidate("a", 100, 100).unwrap().id, "x1");
        assert_eq!(index.candidate("a", 300, 10).unwrap().id, "z3");
        assert_eq!(index.candidate("a", 0, 100).unwrap().id, "x0");
        // Taken: one write gets it, the next none.
        assert_eq!(index.take("a", 0, 100).unwrap().id, "x0");
        assert!(index.take("a", 0, 100).is_none());
        assert!(index.candidate("a", 0, 100).is_none());
        assert_eq!(index.candidate("a", 100, 100).unwrap().id, "x1");
        index.withdraw("a");
        assert!(index.candidate("a", 0, 100).is_none());
        assert_eq!(index.candidate("b", 0, 100).unwrap().id, "y0");
    }
}
