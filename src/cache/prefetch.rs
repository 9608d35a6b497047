//! The read path: [`Prefetcher::read`] serves a read of one version of a blob from the block
//! cache, starting the fetches it needs. A missing block starts one streaming request for it
//! and the readahead window behind it (the window comes from the handle's [`ReadPattern`]).
//! The window is cut in runs of at most [`RUN_BYTES`], each one streaming request, so one
//! sequential reader keeps several connections busy: over a real network one connection gives
//! 50–120 MB/s, far less than the service gives a blob. The window is topped up as soon as a
//! run's worth of it is free. Readers of the same block wait for the one fetch; hits and misses
//! are counted for the metrics.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::future::try_join_all;

use super::block_cache::Want;
use super::fetch::{self, Source};
use super::{block_count, block_range, block_span, Begin, BlockCache, BlockKey, ReadPattern};
use crate::blob::{BlobClient, BlobError};
use crate::metrics::Metrics;

/// The most one request of readahead asks for. Large enough that a request's own cost (a round
/// trip, the service's time to first byte: 15–30 ms) is small beside its transfer at one
/// connection's rate (80 ms at 100 MB/s); small enough that a window of readahead is many
/// requests in flight. Measured through the link (docs/PERFORMANCE.md): runs of 8 MiB read
/// 1 GiB cold 10–30% faster than runs of 16 MiB, whose fewer streams each stall longer when
/// the machine is busy; mountpoint-s3 reads in parts of 8 MiB too.
pub const RUN_BYTES: u64 = 8 << 20;

/// One version of a blob: what a read handle reads, from first byte to last.
#[derive(Debug, Clone)]
pub struct Version {
    pub etag: Arc<str>,
    pub size: u64,
}

/// Serves reads of blob versions through the shared block cache.
pub struct Prefetcher {
    client: Arc<dyn BlobClient>,
    cache: Arc<BlockCache>,
    block_size: u64,
    /// Most blocks read ahead for one sequential reader.
    max_window: u64,
    /// Most blocks one request fetches (from [`RUN_BYTES`]).
    run_blocks: usize,
    /// Where cache hits and misses are counted.
    metrics: &'static Metrics,
}

impl Prefetcher {
    /// A prefetcher reading through `client` into a cache of `cache_size` bytes in blocks of
    /// `block_size`; a sequential reader reads at most `max_window` blocks ahead.
    pub fn new(
        client: Arc<dyn BlobClient>,
        cache_size: u64,
        block_size: u64,
        max_window: u64,
        metrics: &'static Metrics,
    ) -> Self {
        Prefetcher {
            client,
            cache: BlockCache::new(cache_size),
            block_size,
            max_window,
            run_blocks: (RUN_BYTES / block_size).max(1) as usize,
            metrics,
        }
    }

    /// The same prefetcher, fetching at most `blocks` blocks per request.
    pub fn with_run_blocks(mut self, blocks: usize) -> Self {
        self.run_blocks = blocks.max(1);
        self
    }

    pub fn cache(&self) -> &Arc<BlockCache> {
        &self.cache
    }

    /// Where reads are counted.
    pub fn metrics(&self) -> &'static Metrics {
        self.metrics
    }

    /// The read pattern of a new reader: it opens its window as it reads in sequence.
    pub fn new_pattern(&self) -> ReadPattern {
        // Parallel kernel readahead may deliver reads slightly out of order.
        ReadPattern::new(self.max_window, self.block_size.min(1 << 20))
    }

    /// Reads up to `size` bytes at `offset` of version `v` of `blob`: every request carries
    /// If-Match with its ETag, so the bytes are of that version or the read fails
    /// (ConditionNotMet). `pattern` is the reader's, to read ahead for; None reads no more
    /// than needed.
    pub async fn read(
        &self,
        blob: &Arc<str>,
        v: &Version,
        pattern: Option<&Mutex<ReadPattern>>,
        offset: u64,
        size: u32,
    ) -> Result<Bytes, BlobError> {
        if offset >= v.size || size == 0 {
            return Ok(Bytes::new());
        }
        let bs = self.block_size;
        let len = u64::from(size).min(v.size - offset);
        let (first, last) = block_span(offset, len, bs);
        let ahead = match pattern {
            Some(p) => p
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record(offset, len, bs),
            None => 0,
        };
        let window_end = (last + ahead).min(block_count(v.size, bs) - 1);
        let src = self.source(blob, v);
        let needed = self.blocks(blob, v, first, last);
        // Hit or miss: whether each block was cached before this read started any fetch.
        let cached: Vec<bool> = needed.iter().map(|(k, _)| self.cache.contains(k)).collect();
        // A needed block missing: one request for what this read needs, read on arrival (it
        // may evict anything), and the readahead window behind it at once.
        let missed = needed.iter().any(|(k, _)| self.cache.is_free(k));
        if missed {
            self.start_run(&src, &needed, 1, Want::Now);
        }
        // Readahead: top the window up once half of it, or a whole run, is free, so requests
        // stay large and several stay in flight. It evicts only blocks readers have had.
        if window_end > last {
            let min_len = if missed {
                1
            } else {
                (ahead.div_ceil(2) as usize)
                    .min(self.run_blocks)
                    .min((window_end - last) as usize)
            };
            let window = self.blocks(blob, v, last + 1, window_end);
            self.start_run(&src, &window, min_len, Want::Ahead);
        }
        let blocks = try_join_all(needed.iter().map(|(key, len)| {
            self.cache.get(key, *len, |run| {
                tokio::spawn(fetch::fill(src.clone(), run));
            })
        }))
        .await?;
        for ((index, hit), (key, _)) in (first..=last).zip(cached).zip(&needed) {
            if ahead > 0 && offset + len >= (index + 1) * bs {
                self.cache.passed(key);
            }
            let served = (offset + len).min((index + 1) * bs) - offset.max(index * bs);
            if hit {
                self.metrics.cache_hit(served);
            } else {
                self.metrics.cache_miss(served);
            }
        }
        let skip = (offset - first * bs) as usize;
        if blocks.len() == 1 {
            return Ok(blocks[0].slice(skip..skip + len as usize));
        }
        let mut out = BytesMut::with_capacity(len as usize);
        let mut remaining = len as usize;
        for (i, b) in blocks.iter().enumerate() {
            let from = if i == 0 { skip } else { 0 };
            let take = (b.len() - from).min(remaining);
            out.extend_from_slice(&b[from..from + take]);
            remaining -= take;
        }
        Ok(out.freeze())
    }

    /// Fetches the first block of version `v` of `blob` ahead of any read (a small file a
    /// program is expected to open next), if it is not cached or in flight and the cache has
    /// room without waiting; returns whether a request started.
    pub fn fetch_ahead(&self, blob: &Arc<str>, v: &Version) -> bool {
        if v.size == 0 {
            return false;
        }
        let first = self.blocks(blob, v, 0, 0);
        self.start_run(&self.source(blob, v), &first, 1, Want::Ahead)
    }

    /// Cache keys and lengths of blocks `from..=to` of version `v` of `blob`.
    fn blocks(&self, blob: &Arc<str>, v: &Version, from: u64, to: u64) -> Vec<(BlockKey, u64)> {
        (from..=to)
            .map(|index| {
                let key = BlockKey {
                    blob: blob.clone(),
                    etag: v.etag.clone(),
                    index,
                };
                (key, block_range(index, self.block_size, v.size).1)
            })
            .collect()
    }

    /// Starts fetching the free blocks of `blocks` (if at least `min_len` of them are free in a
    /// row) in runs of at most `run_blocks`, each filled by its own streaming request, all at
    /// once: the first run holds the first blocks, so the reader waits for no other.
    /// Returns whether any request started.
    fn start_run(
        &self,
        src: &Source,
        blocks: &[(BlockKey, u64)],
        min_len: usize,
        want: Want,
    ) -> bool {
        let mut started = false;
        loop {
            let min_len = if started { 1 } else { min_len };
            let begin = self
                .cache
                .begin_run_capped(blocks, min_len, self.run_blocks, want);
            let Begin::Started(run) = begin else { break };
            tokio::spawn(fetch::fill(src.clone(), run));
            started = true;
        }
        started
    }

    /// What a fetch of version `v` of `blob` reads from.
    fn source(&self, blob: &Arc<str>, v: &Version) -> Source {
        Source {
            client: self.client.clone(),
            blob: blob.clone(),
            etag: v.etag.clone(),
            block_size: self.block_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::fake::FakeClient;
    use crate::blob::ErrorKind;
    use crate::metrics::Op;

    const BS: u64 = 1024;

    fn setup(data: &[u8]) -> (Arc<FakeClient>, Prefetcher, Arc<str>, Version) {
        setup_sized(data, 64 * BS, BS, 8)
    }

    /// A fake holding `data` as blob "f", read through a cache of `cache` bytes in blocks of
    /// `bs` with a window of at most `window` blocks.
    fn setup_sized(
        data: &[u8],
        cache: u64,
        bs: u64,
        window: u64,
    ) -> (Arc<FakeClient>, Prefetcher, Arc<str>, Version) {
        let fake = Arc::new(FakeClient::new());
        fake.put("f", data.to_vec());
        let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new()));
        let p = Prefetcher::new(fake.clone(), cache, bs, window, metrics);
        let etag = futures::executor::block_on(fake.properties("f"))
            .unwrap()
            .etag;
        let v = Version {
            etag: etag.into(),
            size: data.len() as u64,
        };
        (fake, p, "f".into(), v)
    }

    /// Reads all of `v` as one sequential reader does, `chunk` bytes at a time.
    async fn read_in_sequence(p: &Prefetcher, blob: &Arc<str>, v: &Version, chunk: u32) -> Vec<u8> {
        let pattern = Mutex::new(p.new_pattern());
        let mut got = Vec::new();
        loop {
            let b = p
                .read(blob, v, Some(&pattern), got.len() as u64, chunk)
                .await
                .unwrap();
            if b.is_empty() {
                return got;
            }
            got.extend_from_slice(&b);
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn a_sequential_reader_gets_its_bytes_in_few_large_requests() {
        let want = data(40 * BS as usize + 5);
        let (fake, p, blob, v) = setup(&want);
        assert_eq!(read_in_sequence(&p, &blob, &v, 700).await, want);
        // The window opens 1, 2, 4, 8 blocks and is topped up by half of it (4 blocks): about
        // one request per 4 blocks, never one per block.
        let gets = fake.count(Op::GetBlob);
        assert!(gets <= 14, "{gets} requests for 41 blocks read in sequence");
        assert_eq!(
            fake.bytes_read(),
            want.len() as u64,
            "each byte fetched once"
        );
    }

    #[tokio::test]
    async fn a_sequential_reader_keeps_several_requests_in_flight() {
        let want = data(64 * BS as usize);
        let (fake, p, blob, v) = setup(&want);
        // Runs of 2 blocks: a window of 8 blocks is 4 requests at once.
        let p = p.with_run_blocks(2);
        fake.set_delay(Op::GetBlob, std::time::Duration::from_millis(5));
        assert_eq!(read_in_sequence(&p, &blob, &v, 512).await, want);
        assert_eq!(fake.bytes_read(), want.len() as u64, "each byte once");
        let peak = fake.peak_in_flight(Op::GetBlob);
        assert!(peak >= 3, "at most {peak} requests in flight");
        let gets = fake.count(Op::GetBlob);
        assert!(
            (32..=40).contains(&gets),
            "{gets} requests for 64 blocks in runs of 2"
        );
    }

    #[tokio::test]
    async fn with_the_default_sizes_one_reader_has_many_runs_of_8_mib_in_flight() {
        // The mount's defaults: blocks of 4 MiB, a cache of 256 MiB, a window of 32 blocks.
        const MIB: u64 = 1 << 20;
        let want = data(96 * MIB as usize);
        let (fake, p, blob, v) = setup_sized(&want, 256 * MIB, 4 * MIB, 32);
        fake.set_delay(Op::GetBlob, std::time::Duration::from_millis(5));
        let got = read_in_sequence(&p, &blob, &v, MIB as u32).await;
        assert!(got == want, "the bytes read differ from the blob's");
        assert_eq!(fake.bytes_read(), want.len() as u64, "each byte once");
        // 24 blocks in runs of 2 (8 MiB): 12 requests, and a few more while the window opens.
        let gets = fake.count(Op::GetBlob);
        assert!((12..=20).contains(&gets), "{gets} requests for 96 MiB");
        let peak = fake.peak_in_flight(Op::GetBlob);
        assert!(peak >= 8, "at most {peak} requests in flight");
    }

    #[tokio::test]
    async fn readers_at_once_whose_windows_exceed_the_budget_fetch_each_byte_once() {
        let fake = Arc::new(FakeClient::new());
        let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new()));
        // Four readers with windows of 8 blocks want 36 blocks of room; the cache has 32.
        let p = Prefetcher::new(fake.clone(), 32 * BS, BS, 8, metrics).with_run_blocks(2);
        fake.set_delay(Op::GetBlob, std::time::Duration::from_millis(2));
        let mut files = Vec::new();
        for n in 0..4u8 {
            let name = format!("f{n}");
            let want: Vec<u8> = data(48 * BS as usize).iter().map(|b| b ^ n).collect();
            fake.put(&name, want.clone());
            let etag = fake.properties(&name).await.unwrap().etag;
            let v = Version {
                etag: etag.into(),
                size: want.len() as u64,
            };
            files.push((Arc::<str>::from(name), v, want));
        }
        let reads = files
            .iter()
            .map(|(blob, v, _)| read_in_sequence(&p, blob, v, 512));
        let got = futures::future::join_all(reads).await;
        for ((_, _, want), got) in files.iter().zip(got) {
            assert!(got == *want, "a reader got other bytes than its file's");
        }
        // One reader's readahead must not evict the blocks another fetched and has not read.
        let stats = p.cache().stats.summary();
        assert_eq!(
            fake.bytes_read(),
            4 * 48 * BS,
            "each byte fetched once: {stats}"
        );
        assert!(p.cache().used() <= 32 * BS);
    }

    #[tokio::test]
    async fn a_random_reader_fetches_only_what_it_needs_and_hits_what_it_has() {
        let want = data(20 * BS as usize);
        let (fake, p, blob, v) = setup(&want);
        let pattern = Mutex::new(p.new_pattern());
        for at in [15 * BS + 3, 2 * BS, 9 * BS + 1000, 2 * BS + 10] {
            let b = p.read(&blob, &v, Some(&pattern), at, 50).await.unwrap();
            assert_eq!(&b[..], &want[at as usize..at as usize + 50]);
        }
        // Block 9 and 10 for the read across them; block 2 once.
        assert_eq!(fake.count(Op::GetBlob), 3);
        assert_eq!(fake.bytes_read(), 4 * BS);
    }

    #[tokio::test]
    async fn a_read_of_a_version_that_is_gone_fails_and_mixes_nothing() {
        let want = data(4 * BS as usize);
        let (fake, p, blob, v) = setup(&want);
        let first = p.read(&blob, &v, None, 0, 100).await.unwrap();
        assert_eq!(&first[..], &want[..100]);
        fake.put("f", vec![0u8; 4 * BS as usize]);
        let e = p.read(&blob, &v, None, 2 * BS, 100).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::ConditionNotMet);
        // The cached block of the old version still serves that version.
        let again = p.read(&blob, &v, None, 0, 100).await.unwrap();
        assert_eq!(again, first);
        assert_eq!(p.read(&blob, &v, None, 4 * BS, 10).await.unwrap().len(), 0);
    }
}
