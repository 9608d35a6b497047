//! A byte-budgeted LRU cache of blob blocks, shared by every handle of the mount.
//!
//! - Keys carry the blob's ETag: a new version of a blob never hits blocks of the old one.
//! - The budget covers cached blocks *and* blocks being fetched (reserved before the request is
//!   sent), so the bytes held never exceed it.
//! - Two readers needing the same block share one request (single flight). The fetch runs as
//!   its own task, so a reader that gives up (interrupted) does not cancel it for the others.
//! - Demand reads evict least-recently-used blocks and, if the budget is taken by fetches in
//!   flight, wait for one to finish; prefetches never wait: they are skipped when there is no room.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use lru::LruCache;
use tokio::sync::Notify;

use crate::blob::{BlobError, ErrorKind};

/// One block of one version of one blob.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub blob: Arc<str>,
    pub etag: Arc<str>,
    pub index: u64,
}

type Fetch = Shared<BoxFuture<'static, Result<Bytes, BlobError>>>;

struct State {
    lru: LruCache<BlockKey, Bytes>,
    cached_bytes: u64,
    reserved_bytes: u64,
    inflight: HashMap<BlockKey, Fetch>,
}

/// Counters, for logs, tests and benchmarks.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub shared_waits: AtomicU64,
    pub prefetches: AtomicU64,
    pub prefetch_skipped: AtomicU64,
    pub evictions: AtomicU64,
}

pub struct BlockCache {
    budget: u64,
    state: Mutex<State>,
    freed: Notify,
    pub stats: CacheStats,
}

enum Plan {
    Hit(Bytes),
    Wait(Fetch),
    NoRoom,
}

impl BlockCache {
    pub fn new(budget: u64) -> Arc<Self> {
        Arc::new(BlockCache {
            budget,
            state: Mutex::new(State {
                lru: LruCache::unbounded(),
                cached_bytes: 0,
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

    /// Bytes held now: cached blocks plus reservations of fetches in flight.
    pub fn used(&self) -> u64 {
        let s = self.lock();
        s.cached_bytes + s.reserved_bytes
    }

    /// Whether the block is cached (without touching its recency).
    pub fn contains(&self, key: &BlockKey) -> bool {
        self.lock().lru.contains(key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The block, from the cache or fetched with `fetch` (at most `size` bytes). Waits for room
    /// in the budget if fetches in flight hold all of it.
    pub async fn get<F, Fut>(
        self: &Arc<Self>,
        key: BlockKey,
        size: u64,
        fetch: F,
    ) -> Result<Bytes, BlobError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, BlobError>> + Send + 'static,
    {
        let mut fetch = Some(fetch);
        loop {
            let notified = self.freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let plan = self.plan(&key, size, &mut fetch, true);
            match plan {
                Plan::Hit(b) => return Ok(b),
                Plan::Wait(f) => return f.await,
                Plan::NoRoom => notified.await,
            }
        }
    }

    /// Starts fetching the block in the background unless it is cached, in flight, or there is
    /// no room in the budget. Returns whether a fetch was started.
    pub fn prefetch<F, Fut>(self: &Arc<Self>, key: BlockKey, size: u64, fetch: F) -> bool
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, BlobError>> + Send + 'static,
    {
        let started = self.start(key, size, fetch);
        if started {
            self.stats.prefetches.fetch_add(1, Ordering::Relaxed);
        }
        started
    }

    /// Like [`prefetch`](Self::prefetch), for a block about to be read: callers start all the
    /// blocks a read needs before waiting for them, so they are fetched in parallel and before
    /// any readahead.
    pub fn start<F, Fut>(self: &Arc<Self>, key: BlockKey, size: u64, fetch: F) -> bool
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, BlobError>> + Send + 'static,
    {
        {
            let s = self.lock();
            if s.lru.contains(&key) || s.inflight.contains_key(&key) {
                return false;
            }
        }
        let mut fetch = Some(fetch);
        match self.plan(&key, size, &mut fetch, false) {
            Plan::Wait(_) if fetch.is_none() => true,
            Plan::NoRoom => {
                self.stats.prefetch_skipped.fetch_add(1, Ordering::Relaxed);
                false
            }
            _ => false,
        }
    }

    /// Under the lock: a hit, a fetch to wait for (joined or started), or no room.
    fn plan<F, Fut>(
        self: &Arc<Self>,
        key: &BlockKey,
        size: u64,
        fetch: &mut Option<F>,
        demand: bool,
    ) -> Plan
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, BlobError>> + Send + 'static,
    {
        let mut s = self.lock();
        if let Some(b) = s.lru.get(key) {
            if demand {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
            }
            return Plan::Hit(b.clone());
        }
        if let Some(f) = s.inflight.get(key) {
            if demand {
                self.stats.shared_waits.fetch_add(1, Ordering::Relaxed);
            }
            return Plan::Wait(f.clone());
        }
        // Make room: evict least recently used blocks until the reservation fits.
        while s.cached_bytes + s.reserved_bytes + size > self.budget {
            match s.lru.pop_lru() {
                Some((_, b)) => {
                    s.cached_bytes -= b.len() as u64;
                    self.stats.evictions.fetch_add(1, Ordering::Relaxed);
                }
                None => break,
            }
        }
        if s.cached_bytes + s.reserved_bytes + size > self.budget {
            return Plan::NoRoom;
        }
        if demand {
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
        }
        let fetch = fetch.take().expect("a fetch is started at most once");
        s.reserved_bytes += size;
        let fut = fetch();
        let cache = Arc::clone(self);
        let task_key = key.clone();
        let task = tokio::spawn(async move {
            let result = fut.await;
            cache.complete(&task_key, size, &result);
            result
        });
        let shared = async move {
            task.await.unwrap_or_else(|e| {
                Err(BlobError::new(
                    ErrorKind::Other,
                    "Get Blob",
                    "",
                    format!("fetch task failed: {e}"),
                ))
            })
        }
        .boxed()
        .shared();
        s.inflight.insert(key.clone(), shared.clone());
        Plan::Wait(shared)
    }

    /// A fetch finished: release its reservation, cache its block, wake waiters.
    fn complete(&self, key: &BlockKey, reserved: u64, result: &Result<Bytes, BlobError>) {
        let mut s = self.lock();
        s.inflight.remove(key);
        s.reserved_bytes -= reserved;
        if let Ok(b) = result {
            let len = b.len() as u64;
            if len <= reserved {
                s.cached_bytes += len;
                s.lru.put(key.clone(), b.clone());
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

    #[tokio::test]
    async fn hits_after_first_fetch_and_keys_include_etag() {
        let c = BlockCache::new(1000);
        let calls = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let calls = calls.clone();
            let b = c
                .get(key("a", "e1", 0), 100, move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok(data(100, 1))
                })
                .await
                .unwrap();
            assert_eq!(b, data(100, 1));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let b = c
            .get(key("a", "e2", 0), 100, || async { Ok(data(100, 2)) })
            .await
            .unwrap();
        assert_eq!(b, data(100, 2), "another ETag is another block");
        assert_eq!(c.stats.hits.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn budget_is_never_exceeded_and_lru_evicts_oldest() {
        let c = BlockCache::new(350);
        for i in 0..10 {
            c.get(key("a", "e", i), 100, move || async move {
                Ok(data(100, i as u8))
            })
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
    async fn concurrent_readers_share_one_fetch() {
        let c = BlockCache::new(1000);
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let c = c.clone();
            let calls = calls.clone();
            tasks.push(tokio::spawn(async move {
                c.get(key("a", "e", 0), 100, move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(data(100, 9))
                })
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), data(100, 9));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn prefetch_is_skipped_without_room_and_demand_waits_for_room() {
        let c = BlockCache::new(200);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rx = Arc::new(tokio::sync::Mutex::new(Some(rx)));
        // Two slow prefetches take the whole budget.
        let r1 = rx.clone();
        assert!(c.prefetch(key("a", "e", 0), 100, move || async move {
            let rx = r1.lock().await.take().unwrap();
            let _ = rx.await;
            Ok(data(100, 0))
        }));
        assert!(c.prefetch(key("a", "e", 1), 100, || async { Ok(data(100, 1)) }));
        tokio::task::yield_now().await;
        // Block 1 finished and is cached; block 0 still reserved. A third prefetch evicts block 1.
        assert!(
            !c.prefetch(key("a", "e", 1), 100, || async { Ok(data(100, 1)) }),
            "already cached"
        );
        assert!(c.used() <= 200);
        // A demand read of a new block evicts cached block 1 and proceeds.
        let b = c
            .get(key("a", "e", 2), 100, || async { Ok(data(100, 2)) })
            .await
            .unwrap();
        assert_eq!(b, data(100, 2));
        // Now the budget is: 100 reserved (block 0) + 100 cached (block 2). With block 2 evictable,
        // a prefetch still fits; with everything reserved, it is skipped.
        let c2 = BlockCache::new(100);
        let (tx2, rx2) = tokio::sync::oneshot::channel::<()>();
        assert!(c2.prefetch(key("b", "e", 0), 100, move || async move {
            let _ = rx2.await;
            Ok(data(100, 0))
        }));
        assert!(!c2.prefetch(key("b", "e", 1), 100, || async { Ok(data(100, 1)) }));
        assert_eq!(c2.stats.prefetch_skipped.load(Ordering::Relaxed), 1);
        // A demand read waits until the reservation is released, then fetches.
        let c3 = c2.clone();
        let waiter = tokio::spawn(async move {
            c3.get(key("b", "e", 1), 100, || async { Ok(data(100, 1)) })
                .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        tx2.send(()).unwrap();
        assert_eq!(waiter.await.unwrap().unwrap(), data(100, 1));
        assert!(c2.used() <= 100);
        tx.send(()).unwrap();
    }

    #[tokio::test]
    async fn errors_are_shared_and_not_cached() {
        let c = BlockCache::new(1000);
        let e = c
            .get(key("a", "e", 0), 100, || async {
                Err(BlobError::new(ErrorKind::NotFound, "Get Blob", "a", ""))
            })
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(c.used(), 0);
        let b = c
            .get(key("a", "e", 0), 100, || async { Ok(data(10, 1)) })
            .await
            .unwrap();
        assert_eq!(b.len(), 10);
        assert_eq!(c.used(), 10, "a short last block holds only its own bytes");
    }
}
