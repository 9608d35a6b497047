//! An in-memory [`BlobClient`] for unit tests: a sorted map of blobs with the service's listing
//! semantics (prefix, delimiter, markers, page size), request counters, injectable failures and
//! delays.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use futures::StreamExt;

use super::{BlobClient, BlobError, BlobProps, ByteStream, ErrorKind, ListPage, ListRequest};

#[derive(Debug, Clone)]
struct FakeBlob {
    data: Bytes,
    etag: String,
    last_modified: SystemTime,
    metadata: HashMap<String, String>,
}

/// Which operation a counter or an injected failure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    List,
    Properties,
    GetRange,
}

#[derive(Default)]
struct State {
    blobs: BTreeMap<String, FakeBlob>,
    counts: HashMap<Op, u64>,
    failures: HashMap<Op, VecDeque<ErrorKind>>,
    delays: HashMap<Op, Duration>,
    etag_seq: u64,
    /// Bytes served by Get Blob.
    bytes_read: u64,
    /// The next Get Blob body breaks after this many bytes.
    cut_stream_after: Option<u64>,
}

/// An in-memory container.
#[derive(Default)]
pub struct FakeClient {
    state: Mutex<State>,
}

impl FakeClient {
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates or replaces a blob; its ETag changes.
    pub fn put(&self, name: &str, data: impl Into<Bytes>) {
        self.put_with_metadata(name, data, &[]);
    }

    pub fn put_with_metadata(&self, name: &str, data: impl Into<Bytes>, metadata: &[(&str, &str)]) {
        let mut s = self.state.lock().unwrap();
        s.etag_seq += 1;
        let seq = s.etag_seq;
        let etag = format!("\"0xFAKE{seq:08}\"");
        s.blobs.insert(
            name.to_string(),
            FakeBlob {
                data: data.into(),
                etag,
                last_modified: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seq),
                metadata: metadata
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                    .collect(),
            },
        );
    }

    pub fn remove(&self, name: &str) {
        self.state.lock().unwrap().blobs.remove(name);
    }

    /// How many requests of this kind were made.
    pub fn count(&self, op: Op) -> u64 {
        self.state
            .lock()
            .unwrap()
            .counts
            .get(&op)
            .copied()
            .unwrap_or(0)
    }

    pub fn bytes_read(&self) -> u64 {
        self.state.lock().unwrap().bytes_read
    }

    /// The next request of this kind fails with `kind` (queued: call again for more).
    pub fn fail_next(&self, op: Op, kind: ErrorKind) {
        self.state
            .lock()
            .unwrap()
            .failures
            .entry(op)
            .or_default()
            .push_back(kind);
    }

    /// The next Get Blob body fails (transiently) after `bytes` bytes, as a connection reset would.
    pub fn cut_next_stream_after(&self, bytes: u64) {
        self.state.lock().unwrap().cut_stream_after = Some(bytes);
    }

    /// Every request of this kind waits this long first.
    pub fn set_delay(&self, op: Op, delay: Duration) {
        self.state.lock().unwrap().delays.insert(op, delay);
    }

    /// Counts the request, applies an injected delay or failure.
    async fn enter(&self, op: Op, name: &'static str, target: &str) -> Result<(), BlobError> {
        let (delay, failure) = {
            let mut s = self.state.lock().unwrap();
            *s.counts.entry(op).or_default() += 1;
            let failure = s.failures.get_mut(&op).and_then(VecDeque::pop_front);
            (s.delays.get(&op).copied(), failure)
        };
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        match failure {
            Some(kind) => Err(BlobError::new(kind, name, target, "injected failure")),
            None => Ok(()),
        }
    }

    fn props(name: &str, b: &FakeBlob) -> BlobProps {
        BlobProps {
            name: name.to_string(),
            size: b.data.len() as u64,
            etag: b.etag.clone(),
            last_modified: b.last_modified,
            metadata: b.metadata.clone(),
        }
    }
}

#[async_trait]
impl BlobClient for FakeClient {
    async fn list(&self, req: ListRequest<'_>) -> Result<ListPage, BlobError> {
        self.enter(Op::List, "List Blobs", req.prefix).await?;
        let s = self.state.lock().unwrap();
        let max = req.max_results.unwrap_or(5000).max(1) as usize;
        let mut page = ListPage::default();
        // Entries (blobs and prefixes) in name order; the marker is the name to resume at.
        let start = req.marker.unwrap_or(req.prefix);
        let mut last_prefix: Option<String> = None;
        let mut emitted = 0;
        for (name, blob) in s.blobs.range(start.to_string()..) {
            if !name.starts_with(req.prefix) {
                break;
            }
            let rest = &name[req.prefix.len()..];
            let entry_prefix = req.delimiter.and_then(|d| {
                rest.find(d)
                    .map(|i| format!("{}{}", req.prefix, &rest[..i + d.len()]))
            });
            if let Some(p) = &entry_prefix {
                if last_prefix.as_ref() == Some(p) {
                    continue;
                }
            }
            if emitted == max {
                page.next_marker = Some(name.clone());
                break;
            }
            match entry_prefix {
                Some(p) => {
                    page.prefixes.push(p.clone());
                    last_prefix = Some(p);
                }
                None => page.blobs.push(Self::props(name, blob)),
            }
            emitted += 1;
        }
        Ok(page)
    }

    async fn properties(&self, name: &str) -> Result<BlobProps, BlobError> {
        self.enter(Op::Properties, "Get Blob Properties", name)
            .await?;
        let s = self.state.lock().unwrap();
        match s.blobs.get(name) {
            Some(b) => Ok(Self::props(name, b)),
            None => Err(not_found("Get Blob Properties", name)),
        }
    }

    async fn get_stream(
        &self,
        name: &str,
        offset: u64,
        len: u64,
        if_match: Option<&str>,
    ) -> Result<ByteStream, BlobError> {
        self.enter(Op::GetRange, "Get Blob", name).await?;
        let mut s = self.state.lock().unwrap();
        let b = s
            .blobs
            .get(name)
            .ok_or_else(|| not_found("Get Blob", name))?;
        if if_match.is_some_and(|e| e != b.etag) {
            let mut e = BlobError::new(
                ErrorKind::ConditionNotMet,
                "Get Blob",
                name,
                "the blob changed",
            );
            e.status = Some(412);
            e.code = Some("ConditionNotMet".into());
            return Err(e);
        }
        let size = b.data.len() as u64;
        let start = offset.min(size) as usize;
        let end = (offset + len).min(size) as usize;
        let data = b.data.slice(start..end);
        s.bytes_read += data.len() as u64;
        let cut = s.cut_stream_after.take();
        // Served in chunks, as a network would; optionally cut short to test resumption.
        let mut chunks: Vec<Result<Bytes, BlobError>> = Vec::new();
        let mut at = 0;
        while at < data.len() {
            if cut.is_some_and(|c| at as u64 >= c) {
                chunks.push(Err(BlobError::new(
                    ErrorKind::Transient,
                    "Get Blob",
                    name,
                    "injected reset",
                )));
                break;
            }
            let n = (data.len() - at).min(FAKE_CHUNK);
            chunks.push(Ok(data.slice(at..at + n)));
            at += n;
        }
        Ok(futures::stream::iter(chunks).boxed())
    }
}

/// Chunk size of fake Get Blob bodies.
const FAKE_CHUNK: usize = 700;

fn not_found(op: &'static str, name: &str) -> BlobError {
    let mut e = BlobError::new(
        ErrorKind::NotFound,
        op,
        name,
        "The specified blob does not exist.",
    );
    e.status = Some(404);
    e.code = Some("BlobNotFound".into());
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::list_all;

    fn req<'a>(prefix: &'a str, marker: Option<&'a str>, max: u32) -> ListRequest<'a> {
        ListRequest {
            prefix,
            delimiter: Some("/"),
            marker,
            max_results: Some(max),
        }
    }

    #[tokio::test]
    async fn listing_groups_prefixes_and_pages() {
        let f = FakeClient::new();
        for n in ["a", "b/1", "b/2", "b/c/3", "c", "d/"] {
            f.put(n, "x");
        }
        let p1 = f.list(req("", None, 2)).await.unwrap();
        assert_eq!(
            p1.blobs.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(p1.prefixes, ["b/"]);
        let p2 = f.list(req("", p1.next_marker.as_deref(), 2)).await.unwrap();
        assert_eq!(
            p2.blobs.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
        assert_eq!(p2.prefixes, ["d/"]);
        assert_eq!(p2.next_marker, None);
        let all = list_all(&f, "b/", Some("/")).await.unwrap();
        assert_eq!(all.blobs.len(), 2);
        assert_eq!(all.prefixes, ["b/c/"]);
        assert_eq!(f.count(Op::List), 3);
    }

    #[tokio::test]
    async fn ranges_conditions_and_failures() {
        let f = FakeClient::new();
        f.put("x", "hello world");
        let etag = f.properties("x").await.unwrap().etag;
        assert_eq!(
            &f.get_range("x", 6, 100, Some(&etag)).await.unwrap()[..],
            b"world"
        );
        f.put("x", "changed");
        let e = f.get_range("x", 0, 3, Some(&etag)).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::ConditionNotMet);
        f.fail_next(Op::Properties, ErrorKind::Transient);
        assert_eq!(
            f.properties("x").await.unwrap_err().kind,
            ErrorKind::Transient
        );
        assert!(f.properties("x").await.is_ok());
        assert_eq!(
            f.properties("nope").await.unwrap_err().kind,
            ErrorKind::NotFound
        );
    }
}
