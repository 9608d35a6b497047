//! A byte-budgeted LRU cache of blob blocks, shared by every handle of the mount.
//!
//! - Keys carry the blob's ETag: a new version of a blob never hits blocks of the old one.
//! - Blocks are fetched in *runs*: consecutive blocks reserved together and filled by one
//!   streaming request, each block handed over as soon as its bytes are in ([`Run`]).
//! - The budget covers cached blocks *and* blocks being fetched (reserved when a run begins),
//!   so the bytes held never exceed it.
//! - Two readers needing the same block share one request: a block being fetched is in flight,
//!   and waiters join it. The fetch does not depend on any one waiter staying.
//! - Demand reads evict least-recently-used blocks and, if the budget is taken by blocks in
//!   flight, wait for room; readahead never waits: it is skipped when there is no room.
//! - Readahead never evicts a block fetched ahead that no reader has had yet: with several
//!   readers at once, one reader's readahead would otherwise throw away what another's
//!   fetched, and both fetch it again. Such blocks give way to readahead only once they have
//!   waited [`UNREAD_TTL`] (their reader went away); a demand read may evict them, the block
//!   fetched furthest ahead first. Readahead also leaves an eighth of the budget to the blocks
//!   readers had last, which are the blocks they are in the middle of.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt, Shared};
use lru::LruCache;
use tokio::sync::{oneshot, Notify};

use crate::blob::{BlobError, ErrorKind};

/// One block of one version of one blob.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub blob: Arc<str>,
    pub etag: Arc<str>,
    pub index: u64,
}

/// A block being fetched, shared by everyone waiting for it.
pub type Pending = Shared<BoxFuture<'static, Result<Bytes, BlobError>>>;

/// How long a block fetched ahead and not read yet is kept from readahead's eviction. A
/// sequential reader reaches the end of its window in seconds; a block unread for longer is
/// most likely of a reader that stopped.
pub const UNREAD_TTL: Duration = Duration::from_secs(30);

/// Whether a run's blocks are read as soon as they come in (a demand read) or fetched ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Now,
    Ahead,
}

struct State {
    /// Blocks a reader has had, least recently used first: the first to be evicted.
    read: LruCache<BlockKey, Bytes>,
    /// Blocks fetched ahead that no reader has had yet, in the order they came in, with when.
    unread: LruCache<BlockKey, (Bytes, Instant)>,
    /// Bytes of both kinds of cached blocks, and of the unread ones alone.
    cached_bytes: u64,
    unread_bytes: u64,
    reserved_bytes: u64,
    inflight: HashMap<BlockKey, Inflight>,
}

/// A block being fetched: its waiters' future, and whether a reader waits for it (it is read
/// on arrival, not left unread).
struct Inflight {
    pending: Pending,
    wanted: bool,
}

impl State {
    fn is_free(&self, key: &BlockKey) -> bool {
        !self.read.contains(key) && !self.unread.contains(key) && !self.inflight.contains_key(key)
    }

    /// How many blocks of `blocks` from `first` are free in a row and fit in `room` bytes, and
    /// whether the room (not a busy block or the end) cut them short.
    fn free_run(&self, blocks: &[(BlockKey, u64)], first: usize, room: u64) -> (usize, bool) {
        let mut end = first;
        let mut reserved = 0;
        while end < blocks.len() && self.is_free(&blocks[end].0) {
            if reserved + blocks[end].1 > room {
                return (end - first, true);
            }
            reserved += blocks[end].1;
            end += 1;
        }
        (end - first, false)
    }

    /// Evicts unread blocks that waited longer than `ttl`; returns whether any went.
    fn drop_stale_unread(&mut self, ttl: Duration, stats: &CacheStats) -> bool {
        let mut any = false;
        while let Some((_, (_, at))) = self.unread.peek_lru() {
            if at.elapsed() < ttl {
                break;
            }
            let (_, (b, _)) = self.unread.pop_lru().expect("peeked");
            self.unread_bytes -= b.len() as u64;
            self.cached_bytes -= b.len() as u64;
            stats.unread_evicted.fetch_add(1, Ordering::Relaxed);
            stats.evictions.fetch_add(1, Ordering::Relaxed);
            any = true;
        }
        any
    }
}

/// Counters, for logs, tests and benchmarks.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub shared_waits: AtomicU64,
    /// Runs started (each is one request), and blocks in them.
    pub runs: AtomicU64,
    pub run_blocks: AtomicU64,
    pub readahead_skipped: AtomicU64,
    pub evictions: AtomicU64,
    /// Blocks fetched ahead and evicted before any reader had them (fetched for nothing).
    pub unread_evicted: AtomicU64,
    /// Evicted blocks whose memory was reused for a new block.
    pub recycled: AtomicU64,
}

impl CacheStats {
    /// One line for logs.
    pub fn summary(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "hits {} misses {} shared {} runs {} (blocks {}) readahead skipped {} evictions {} (unread {}) recycled {}",
            g(&self.hits),
            g(&self.misses),
            g(&self.shared_waits),
            g(&self.runs),
            g(&self.run_blocks),
            g(&self.readahead_skipped),
            g(&self.evictions),
            g(&self.unread_evicted),
            g(&self.recycled)
        )
    }
}

pub struct BlockCache {
    budget: u64,
    /// [`UNREAD_TTL`], shorter in tests.
    unread_ttl: Duration,
    state: Mutex<State>,
    freed: Notify,
    pub stats: CacheStats,
}

/// Consecutive blocks reserved and in flight, to be filled in order by one fetch. Dropping a
/// run with blocks left fails them (their waiters get an error) and releases their room.
pub struct Run {
    cache: Arc<BlockCache>,
    slots: VecDeque<Slot>,
    /// Buffers of blocks evicted to make room for this run, to be filled again: reusing them
    /// spares the page faults of fresh allocations.
    spare: Vec<BytesMut>,
}

struct Slot {
    key: BlockKey,
    size: u64,
    tx: oneshot::Sender<Result<Bytes, BlobError>>,
}

/// What [`BlockCache::begin_run`] did.
pub enum Begin {
    Started(Run),
    /// Nothing to fetch: the blocks are cached or in flight, or too few were free.
    Nothing,
    /// The first free block does not fit in the budget now.
    NoRoom,
}

impl Run {
    /// Index of the next block to fill.
    pub fn next_index(&self) -> Option<u64> {
        self.slots.front().map(|s| s.key.index)
    }

    /// Size of the next block to fill.
    pub fn next_size(&self) -> Option<u64> {
        self.slots.front().map(|s| s.size)
    }

    /// Bytes still to fill.
    pub fn remaining_bytes(&self) -> u64 {
        self.slots.iter().map(|s| s.size).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// An empty buffer for a block of `size` bytes, recycled when possible.
    pub fn buffer(&mut self, size: u64) -> BytesMut {
        let mut b = match self.spare.pop() {
            Some(b) => {
                self.cache.stats.recycled.fetch_add(1, Ordering::Relaxed);
                b
            }
            None => BytesMut::new(),
        };
        b.clear();
        b.reserve(size as usize);
        b
    }

    /// The next block's bytes are in: cache them and wake its waiters.
    pub fn complete_next(&mut self, data: Bytes) {
        if let Some(slot) = self.slots.pop_front() {
            let result = Ok(data);
            self.cache.finish(&slot.key, slot.size, &result);
            let _ = slot.tx.send(result);
        }
    }

    /// Fails every block left.
    pub fn fail(mut self, e: BlobError) {
        self.fail_rest(&e);
    }

    fn fail_rest(&mut self, e: &BlobError) {
        while let Some(slot) = self.slots.pop_front() {
            let result = Err(e.clone());
            self.cache.finish(&slot.key, slot.size, &result);
            let _ = slot.tx.send(result);
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if !self.slots.is_empty() {
            let e = BlobError::new(ErrorKind::Other, "Get Blob", "", "block fetch abandoned");
            self.fail_rest(&e);
        }
    }
}

impl BlockCache {
    pub fn new(budget: u64) -> Arc<Self> {
        Self::with_unread_ttl(budget, UNREAD_TTL)
    }

    /// A cache whose unread blocks give way to readahead after `ttl`.
    pub fn with_unread_ttl(budget: u64, ttl: Duration) -> Arc<Self> {
        Arc::new(BlockCache {
            budget,
            unread_ttl: ttl,
            state: Mutex::new(State {
                read: LruCache::unbounded(),
                unread: LruCache::unbounded(),
                cached_bytes: 0,
                unread_bytes: 0,
                reserved_bytes: 0,
                inflight: HashMap::new(),
            }),
            freed: Notify::new(),
            stats: CacheStats::default(),
        })
    }

    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Bytes held now: cached blocks plus reservations of blocks in flight.
    pub fn used(&self) -> u64 {
        let s = self.lock();
        s.cached_bytes + s.reserved_bytes
    }

    /// Whether the block is cached (without touching its recency).
    pub fn contains(&self, key: &BlockKey) -> bool {
        let s = self.lock();
        s.read.contains(key) || s.unread.contains(key)
    }

    /// Whether the block is neither cached nor in flight.
    pub fn is_free(&self, key: &BlockKey) -> bool {
        self.lock().is_free(key)
    }

    /// A sequential reader has read past the block: it goes first when room is needed (a
    /// stream read once must not push out what other readers are in the middle of).
    pub fn passed(&self, key: &BlockKey) {
        self.lock().read.demote(key);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The block if cached (marking it recently used, and read), or its fetch if in flight
    /// (marking it wanted).
    fn lookup(&self, key: &BlockKey) -> Option<Pending> {
        let mut s = self.lock();
        let hit = match s.read.get(key) {
            Some(b) => Some(b.clone()),
            None => s.unread.pop(key).map(|(b, _)| {
                s.unread_bytes -= b.len() as u64;
                s.read.put(key.clone(), b.clone());
                b
            }),
        };
        if let Some(b) = hit {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Some(futures::future::ready(Ok(b)).boxed().shared());
        }
        let f = s.inflight.get_mut(key).map(|f| {
            f.wanted = true;
            f.pending.clone()
        });
        if f.is_some() {
            self.stats.shared_waits.fetch_add(1, Ordering::Relaxed);
        }
        f
    }

    /// Reserves and puts in flight a run of consecutive blocks from `blocks`: it starts at the
    /// first free block (neither cached nor in flight) and extends while blocks are free and
    /// fit in the budget. A run shorter than `min_len` is not started (readahead waits until it
    /// can ask for enough to be worth a request). The run is a demand read's: it may evict any
    /// cached block.
    pub fn begin_run(self: &Arc<Self>, blocks: &[(BlockKey, u64)], min_len: usize) -> Begin {
        self.begin_run_capped(blocks, min_len, usize::MAX, Want::Now)
    }

    /// [`begin_run`](Self::begin_run), but the run takes at most `max_len` blocks even when
    /// more are free: a window cut in several runs is fetched over several connections at once.
    /// `min_len` still counts every free block, so a window is not cut below it. A run fetched
    /// [`Want::Ahead`] evicts only blocks a reader has had (or unread ones older than the
    /// cache's unread TTL), and its blocks stay unread until a reader has them.
    pub fn begin_run_capped(
        self: &Arc<Self>,
        blocks: &[(BlockKey, u64)],
        min_len: usize,
        max_len: usize,
        want: Want,
    ) -> Begin {
        let mut s = self.lock();
        let Some(first) = blocks.iter().position(|(k, _)| s.is_free(k)) else {
            return Begin::Nothing;
        };
        // How many consecutive free blocks fit, counting the blocks it may evict as room;
        // decided before evicting anything, so a run that will not start costs no cached data.
        // Readahead leaves the last eighth of the budget to blocks readers have had: the most
        // recently read ones are the blocks readers are in the middle of.
        let room = |s: &State| match want {
            Want::Now => self.budget - s.reserved_bytes,
            Want::Ahead => {
                (self.budget - self.budget / 8).saturating_sub(s.reserved_bytes + s.unread_bytes)
            }
        };
        let (mut n, short) = s.free_run(blocks, first, room(&s));
        if short && want == Want::Ahead && s.drop_stale_unread(self.unread_ttl, &self.stats) {
            n = s.free_run(blocks, first, room(&s)).0;
        }
        if n == 0 {
            return Begin::NoRoom;
        }
        if n < min_len {
            self.stats.readahead_skipped.fetch_add(1, Ordering::Relaxed);
            return Begin::Nothing;
        }
        let n = n.min(max_len.max(1));
        let end = first + n;
        let reserved: u64 = blocks[first..end].iter().map(|(_, len)| len).sum();
        let mut spare = Vec::new();
        while s.cached_bytes + s.reserved_bytes + reserved > self.budget {
            let b = match s.read.pop_lru() {
                Some((_, b)) => b,
                None => {
                    // Only a demand run gets here (readahead's room leaves unread blocks out).
                    // The block fetched furthest ahead goes: its reader needs it last.
                    let (_, (b, _)) = s.unread.pop_mru().expect("cached bytes are in an LRU");
                    s.unread_bytes -= b.len() as u64;
                    self.stats.unread_evicted.fetch_add(1, Ordering::Relaxed);
                    b
                }
            };
            s.cached_bytes -= b.len() as u64;
            self.stats.evictions.fetch_add(1, Ordering::Relaxed);
            // Unique (no reader holds it): its memory serves a new block.
            if let Ok(m) = b.try_into_mut() {
                spare.push(m);
            }
        }
        s.reserved_bytes += reserved;
        let mut slots = VecDeque::with_capacity(n);
        for (key, size) in &blocks[first..end] {
            let (tx, rx) = oneshot::channel();
            let pending = rx
                .map(|r| {
                    r.unwrap_or_else(|_| {
                        Err(BlobError::new(
                            ErrorKind::Other,
                            "Get Blob",
                            "",
                            "block fetch abandoned",
                        ))
                    })
                })
                .boxed()
                .shared();
            let wanted = want == Want::Now;
            s.inflight.insert(key.clone(), Inflight { pending, wanted });
            slots.push_back(Slot {
                key: key.clone(),
                size: *size,
                tx,
            });
        }
        drop(s);
        self.stats.runs.fetch_add(1, Ordering::Relaxed);
        self.stats.run_blocks.fetch_add(n as u64, Ordering::Relaxed);
        spare.truncate(n);
        Begin::Started(Run {
            cache: Arc::clone(self),
            slots,
            spare,
        })
    }

    /// The block, from the cache, joined in flight, or fetched: `fetch` is given a one-block run
    /// to fill (it must not wait for it). Waits for room while the budget is all in flight.
    pub async fn get(
        self: &Arc<Self>,
        key: &BlockKey,
        size: u64,
        fetch: impl Fn(Run),
    ) -> Result<Bytes, BlobError> {
        loop {
            let notified = self.freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(p) = self.lookup(key) {
                return p.await;
            }
            match self.begin_run(&[(key.clone(), size)], 1) {
                Begin::Started(run) => {
                    self.stats.misses.fetch_add(1, Ordering::Relaxed);
                    let pending = self.lock().inflight.get(key).map(|f| f.pending.clone());
                    fetch(run);
                    if let Some(p) = pending {
                        return p.await;
                    }
                }
                Begin::Nothing => {}
                Begin::NoRoom => notified.await,
            }
        }
    }

    /// A block of a run is done: release its reservation, cache it, wake those waiting for room.
    fn finish(&self, key: &BlockKey, reserved: u64, result: &Result<Bytes, BlobError>) {
        let mut s = self.lock();
        let wanted = s.inflight.remove(key).is_some_and(|f| f.wanted);
        s.reserved_bytes -= reserved;
        if let Ok(b) = result {
            let len = b.len() as u64;
            if len <= reserved {
                s.cached_bytes += len;
                if wanted {
                    s.read.put(key.clone(), b.clone());
                } else {
                    s.unread_bytes += len;
                    s.unread.put(key.clone(), (b.clone(), Instant::now()));
                }
            }
        }
        debug_assert!(s.cached_bytes + s.reserved_bytes <= self.budget);
        drop(s);
        self.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    fn key(blob: &str, etag: &str, index: u64) -> BlockKey {
        BlockKey {
            blob: blob.into(),
            etag: etag.into(),
            index,
        }
    }

    fn data(n: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; n])
    }

    /// A fetch that fills every block of the run at once with `fill`.
    fn filler(fill: u8, calls: Arc<AtomicUsize>) -> impl Fn(Run) {
        move |mut run: Run| {
            calls.fetch_add(1, Ordering::SeqCst);
            while let Some(size) = run.next_size() {
                run.complete_next(data(size as usize, fill));
            }
        }
    }

    #[tokio::test]
    async fn hits_after_first_fetch_and_keys_include_etag() {
        let c = BlockCache::new(1000);
        let calls = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let b = c
                .get(&key("a", "e1", 0), 100, filler(1, calls.clone()))
                .await
                .unwrap();
            assert_eq!(b, data(100, 1));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let b = c
            .get(&key("a", "e2", 0), 100, filler(2, calls.clone()))
            .await
            .unwrap();
        assert_eq!(b, data(100, 2), "another ETag is another block");
        assert_eq!(c.stats.hits.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn budget_is_never_exceeded_and_lru_evicts_oldest() {
        let c = BlockCache::new(350);
        let calls = Arc::new(AtomicUsize::new(0));
        for i in 0..10 {
            c.get(&key("a", "e", i), 100, filler(i as u8, calls.clone()))
                .await
                .unwrap();
            assert!(c.used() <= 350);
        }
        assert!(c.contains(&key("a", "e", 9)));
        assert!(c.contains(&key("a", "e", 7)));
        assert!(
            !c.contains(&key("a", "e", 6)),
            "only 3 blocks of 100 fit in 350"
        );
        assert_eq!(c.used(), 300);
    }

    #[tokio::test]
    async fn runs_start_at_the_first_free_block_and_stop_at_a_busy_one() {
        let c = BlockCache::new(10_000);
        let keys: Vec<_> = (0..8).map(|i| (key("a", "e", i), 100)).collect();
        let Begin::Started(mut r1) = c.begin_run(&keys[2..4], 1) else {
            panic!()
        };
        assert_eq!((r1.next_index(), r1.len()), (Some(2), 2));
        // 0..8 with 2 and 3 in flight: the run is 0..2.
        let Begin::Started(r2) = c.begin_run(&keys, 1) else {
            panic!()
        };
        assert_eq!((r2.next_index(), r2.len()), (Some(0), 2));
        // Then only 4..8 is free, and a run shorter than asked is not started.
        assert!(matches!(c.begin_run(&keys, 5), Begin::Nothing));
        let Begin::Started(r3) = c.begin_run(&keys, 4) else {
            panic!()
        };
        assert_eq!((r3.next_index(), r3.len()), (Some(4), 4));
        assert!(matches!(c.begin_run(&keys, 1), Begin::Nothing));
        r1.complete_next(data(100, 2));
        assert!(c.contains(&key("a", "e", 2)));
        drop(r1);
        assert!(
            c.is_free(&key("a", "e", 3)),
            "a dropped run releases its blocks"
        );
        r2.fail(BlobError::new(ErrorKind::Transient, "Get Blob", "a", "x"));
        drop(r3);
        assert_eq!(c.used(), 100);
    }

    #[tokio::test]
    async fn waiters_share_one_fetch_and_get_each_block_as_it_arrives() {
        let c = BlockCache::new(1000);
        let keys: Vec<_> = (0..3).map(|i| (key("a", "e", i), 100)).collect();
        let Begin::Started(mut run) = c.begin_run(&keys, 1) else {
            panic!()
        };
        let calls = Arc::new(AtomicUsize::new(0));
        let mut waiters = Vec::new();
        for i in 0..3 {
            for _ in 0..4 {
                let c = c.clone();
                let calls = calls.clone();
                waiters.push(tokio::spawn(async move {
                    c.get(&key("a", "e", i), 100, filler(9, calls)).await
                }));
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        run.complete_next(data(100, 0));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            waiters.iter().filter(|w| w.is_finished()).count(),
            4,
            "block 0 is served before the run ends"
        );
        run.complete_next(data(100, 1));
        run.complete_next(data(100, 2));
        for (n, w) in waiters.into_iter().enumerate() {
            assert_eq!(w.await.unwrap().unwrap(), data(100, (n / 4) as u8));
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "nobody fetched on their own"
        );
    }

    #[tokio::test]
    async fn readahead_is_skipped_without_room_and_demand_waits_for_room() {
        let c = BlockCache::new(200);
        let keys: Vec<_> = (0..4).map(|i| (key("a", "e", i), 100)).collect();
        let Begin::Started(mut run) = c.begin_run(&keys, 1) else {
            panic!()
        };
        assert_eq!(run.len(), 2, "the run stops at the budget");
        assert!(matches!(c.begin_run(&keys[2..], 1), Begin::NoRoom));
        let c2 = c.clone();
        let calls = Arc::new(AtomicUsize::new(0));
        let waiter = tokio::spawn({
            let calls = calls.clone();
            async move { c2.get(&key("a", "e", 3), 100, filler(3, calls)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiter.is_finished(),
            "everything is reserved: the demand read waits"
        );
        run.complete_next(data(100, 0));
        assert_eq!(waiter.await.unwrap().unwrap(), data(100, 3));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(c.used() <= 200);
        drop(run);
    }

    /// Fills blocks `0..n` of `blob` ahead of any reader.
    fn fetch_ahead(c: &Arc<BlockCache>, blob: &str, n: u64) -> Begin {
        let keys: Vec<_> = (0..n).map(|i| (key(blob, "e", i), 100)).collect();
        let begin = c.begin_run_capped(&keys, 1, usize::MAX, Want::Ahead);
        if let Begin::Started(mut run) = begin {
            while run.next_size().is_some() {
                run.complete_next(data(100, 1));
            }
            return Begin::Nothing;
        }
        begin
    }

    #[tokio::test]
    async fn readahead_keeps_unread_blocks_until_they_are_stale_and_demand_takes_the_furthest() {
        let c = BlockCache::new(400);
        assert!(matches!(fetch_ahead(&c, "a", 3), Begin::Nothing));
        assert_eq!(c.used(), 300, "readahead fills 7/8 of the budget at most");
        assert!(
            matches!(fetch_ahead(&c, "b", 1), Begin::NoRoom),
            "another reader's readahead does not evict blocks nobody has read"
        );
        let demand: Vec<_> = (0..2).map(|i| (key("b", "e", i), 100)).collect();
        let Begin::Started(run) = c.begin_run(&demand, 1) else {
            panic!("a demand read finds room")
        };
        drop(run);
        assert!(c.contains(&key("a", "e", 0)) && c.contains(&key("a", "e", 1)));
        assert!(
            !c.contains(&key("a", "e", 2)),
            "a demand read evicts the block fetched furthest ahead"
        );
        assert_eq!(c.stats.unread_evicted.load(Ordering::Relaxed), 1);

        let c = BlockCache::with_unread_ttl(400, Duration::ZERO);
        fetch_ahead(&c, "a", 3);
        assert!(
            matches!(fetch_ahead(&c, "b", 1), Begin::Nothing),
            "unread blocks past their TTL give way"
        );
        assert!(!c.contains(&key("a", "e", 0)) && c.contains(&key("b", "e", 0)));
    }

    #[tokio::test]
    async fn errors_reach_waiters_and_are_not_cached() {
        let c = BlockCache::new(1000);
        let e = c
            .get(&key("a", "e", 0), 100, |run: Run| {
                run.fail(BlobError::new(ErrorKind::NotFound, "Get Blob", "a", ""))
            })
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(c.used(), 0);
        let calls = Arc::new(AtomicUsize::new(0));
        let b = c
            .get(&key("a", "e", 0), 10, filler(1, calls))
            .await
            .unwrap();
        assert_eq!(b.len(), 10);
        assert_eq!(c.used(), 10);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Step {
        /// A run over blocks `first..first+len` of blob `blob` (sizes from `size`).
        Begin {
            blob: u8,
            first: u64,
            len: usize,
            size: u64,
            min_len: usize,
            ahead: bool,
        },
        /// A reader has block `index` of blob `blob`, if it is cached.
        Read { blob: u8, index: u64 },
        /// Completes the next block of the run at this position (if any).
        Complete(usize),
        /// Fails the run at this position.
        Fail(usize),
        /// Drops the run at this position (its blocks are abandoned).
        Drop(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0u8..3, 0u64..12, 1usize..6, 1u64..400, 1usize..4, any::<bool>()).prop_map(
                |(blob, first, len, size, min_len, ahead)| Step::Begin { blob, first, len, size, min_len, ahead }
            ),
            1 => (0u8..3, 0u64..12).prop_map(|(blob, index)| Step::Read { blob, index }),
            4 => (0usize..8).prop_map(Step::Complete),
            1 => (0usize..8).prop_map(Step::Fail),
            1 => (0usize..8).prop_map(Step::Drop),
        ]
    }

    proptest! {
        /// Whatever runs start, complete, fail or are abandoned, the bytes cached and reserved
        /// never exceed the budget, readahead never evicts a block no reader has had, and once
        /// no run is left nothing stays reserved.
        #[test]
        fn the_budget_is_never_exceeded(budget in 100u64..2000, steps in proptest::collection::vec(step(), 1..60)) {
            let c = BlockCache::new(budget);
            let mut runs: Vec<Run> = Vec::new();
            for s in steps {
                match s {
                    Step::Begin { blob, first, len, size, min_len, ahead } => {
                        let blocks: Vec<(BlockKey, u64)> = (first..first + len as u64)
                            .map(|i| (BlockKey { blob: format!("b{blob}").into(), etag: "e".into(), index: i }, size))
                            .collect();
                        let want = if ahead { Want::Ahead } else { Want::Now };
                        let unread: Vec<BlockKey> = c.lock().unread.iter().map(|(k, _)| k.clone()).collect();
                        if let Begin::Started(run) = c.begin_run_capped(&blocks, min_len, usize::MAX, want) {
                            prop_assert!(run.len() >= min_len);
                            runs.push(run);
                        }
                        if ahead {
                            for k in &unread {
                                prop_assert!(c.contains(k), "readahead evicted unread {k:?}");
                            }
                        }
                    }
                    Step::Read { blob, index } => {
                        let key = BlockKey { blob: format!("b{blob}").into(), etag: "e".into(), index };
                        if c.contains(&key) {
                            prop_assert!(c.lookup(&key).is_some());
                            prop_assert!(c.lock().read.contains(&key), "a block had is read");
                        }
                    }
                    Step::Complete(i) if !runs.is_empty() => {
                        let at = i % runs.len();
                        match runs[at].next_size() {
                            Some(n) => runs[at].complete_next(Bytes::from(vec![7u8; n as usize])),
                            None => { runs.remove(at); }
                        }
                    }
                    Step::Fail(i) if !runs.is_empty() => {
                        let run = runs.remove(i % runs.len());
                        run.fail(BlobError::new(ErrorKind::Transient, "Get Blob", "b", "x"));
                    }
                    Step::Drop(i) if !runs.is_empty() => {
                        drop(runs.remove(i % runs.len()));
                    }
                    _ => {}
                }
                prop_assert!(c.used() <= budget, "{} > {budget}", c.used());
            }
            runs.clear();
            let s = c.lock();
            prop_assert_eq!(s.reserved_bytes, 0);
            prop_assert!(s.inflight.is_empty());
            let unread: u64 = s.unread.iter().map(|(_, (b, _))| b.len() as u64).sum();
            let read: u64 = s.read.iter().map(|(_, b)| b.len() as u64).sum();
            prop_assert_eq!(s.unread_bytes, unread);
            prop_assert_eq!(s.cached_bytes, read + unread);
        }
    }
}
