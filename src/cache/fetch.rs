//! Filling a [`Run`] of blocks with one streaming ranged GET: each block is handed to the cache
//! the moment its last byte arrives, so the first reader is served before the whole run is in.
//! A connection that breaks mid-way is resumed from the first missing byte.

use std::sync::Arc;

use bytes::BytesMut;
use futures::StreamExt;

use super::block_cache::Run;
use crate::blob::{retry, BlobClient, BlobError, ErrorKind};

/// What one fetch reads: a version of a blob, cut in blocks of `block_size`.
#[derive(Clone)]
pub struct Source {
    pub client: Arc<dyn BlobClient>,
    pub blob: Arc<str>,
    pub etag: Arc<str>,
    pub block_size: u64,
}

/// Fills `run` from the service. Never returns an error: blocks that cannot be fetched fail
/// in the cache, and their waiters get the error.
pub async fn fill(src: Source, run: Run) {
    let started = std::time::Instant::now();
    let (first, blocks, bytes) = (
        run.next_index().unwrap_or(0),
        run.len(),
        run.remaining_bytes(),
    );
    fill_run(&src, run).await;
    tracing::debug!(blob = %src.blob, first, blocks, bytes, ms = started.elapsed().as_millis() as u64, "block run done");
}

async fn fill_run(src: &Source, mut run: Run) {
    let mut buf = BytesMut::new();
    let mut resumes = 0;
    loop {
        let (Some(index), Some(size)) = (run.next_index(), run.next_size()) else {
            return;
        };
        let offset = index * src.block_size + buf.len() as u64;
        let len = run.remaining_bytes() - buf.len() as u64;
        let error = match src
            .client
            .get_stream(&src.blob, offset, len, Some(&src.etag))
            .await
        {
            Ok(mut stream) => {
                if buf.is_empty() {
                    buf = run.buffer(size);
                }
                loop {
                    match stream.next().await {
                        Some(Ok(mut chunk)) => {
                            while !chunk.is_empty() {
                                let Some(size) = run.next_size() else { break };
                                let take = (size as usize - buf.len()).min(chunk.len());
                                buf.extend_from_slice(&chunk.split_to(take));
                                if buf.len() as u64 == size {
                                    let block = std::mem::take(&mut buf).freeze();
                                    run.complete_next(block);
                                    if let Some(next) = run.next_size() {
                                        buf = run.buffer(next);
                                    }
                                }
                            }
                            if run.is_empty() {
                                return;
                            }
                        }
                        Some(Err(e)) => break e,
                        None => {
                            break BlobError::new(
                                ErrorKind::Transient,
                                "Get Blob",
                                &src.blob,
                                "the answer ended before the requested range",
                            )
                        }
                    }
                }
            }
            Err(e) => {
                run.fail(e);
                return;
            }
        };
        if !error.is_transient() || resumes >= retry::BODY_RESUMES {
            tracing::warn!("{error}");
            run.fail(error);
            return;
        }
        resumes += 1;
        tracing::debug!(blob = %src.blob, resumes, "resuming a broken download: {error}");
        tokio::time::sleep(retry::resume_pause(resumes)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::fake::{FakeClient, Op};
    use crate::cache::block_cache::{Begin, BlockCache, BlockKey};

    fn keys(etag: &str, n: u64, bs: u64, size: u64) -> Vec<(BlockKey, u64)> {
        (0..n)
            .map(|i| {
                let (_, len) = crate::cache::block_range(i, bs, size);
                (
                    BlockKey {
                        blob: "f".into(),
                        etag: etag.into(),
                        index: i,
                    },
                    len,
                )
            })
            .collect()
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 253) as u8).collect()
    }

    #[tokio::test]
    async fn one_request_fills_a_run_and_resumes_after_a_reset() {
        let fake = Arc::new(FakeClient::new());
        let data = pattern(10_000);
        fake.put("f", data.clone());
        let etag: Arc<str> = fake.properties("f").await.unwrap().etag.into();
        let cache = BlockCache::new(1 << 20);
        let ks = keys(&etag, 10, 1000, 10_000);
        let Begin::Started(run) = cache.begin_run(&ks, 1) else {
            panic!()
        };
        fake.cut_next_stream_after(3500);
        let src = Source {
            client: fake.clone(),
            blob: "f".into(),
            etag,
            block_size: 1000,
        };
        fill(src, run).await;
        assert_eq!(fake.count(Op::GetBlob), 2, "one request, one resumption");
        assert_eq!(
            fake.bytes_read(),
            10_000 + 6_500,
            "the resumption starts at the first missing byte"
        );
        for (i, (k, _)) in ks.iter().enumerate() {
            let b = cache.get(k, 1000, |_| panic!("cached")).await.unwrap();
            assert_eq!(&b[..], &data[i * 1000..(i + 1) * 1000]);
        }
    }

    #[tokio::test]
    async fn a_changed_blob_fails_the_run() {
        let fake = Arc::new(FakeClient::new());
        fake.put("f", pattern(3000));
        let cache = BlockCache::new(1 << 20);
        let ks = keys("\"stale\"", 3, 1000, 3000);
        let Begin::Started(run) = cache.begin_run(&ks, 1) else {
            panic!()
        };
        let src = Source {
            client: fake.clone(),
            blob: "f".into(),
            etag: "\"stale\"".into(),
            block_size: 1000,
        };
        let waiter = {
            let cache = cache.clone();
            let k = ks[2].0.clone();
            tokio::spawn(async move { cache.get(&k, 1000, |_| {}).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        fill(src, run).await;
        assert_eq!(
            waiter.await.unwrap().unwrap_err().kind,
            ErrorKind::ConditionNotMet
        );
        assert_eq!(cache.used(), 0);
    }
}
