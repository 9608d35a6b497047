//! An in-memory [`BlobClient`] for unit tests: a sorted map of blobs with the service's listing
//! semantics (prefix, delimiter, markers, page size), staged and committed blocks, conditional
//! writes, request counters, injectable failures and delays.

mod write;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use futures::StreamExt;

use super::{
    BlobClient, BlobError, BlobProps, ByteStream, Committed, CommittedBlock, CopyInfo, ErrorKind,
    ListPage, ListRequest, WriteOptions,
};

#[derive(Debug, Clone)]
struct FakeBlob {
    data: Bytes,
    etag: String,
    last_modified: SystemTime,
    metadata: HashMap<String, String>,
    /// Committed blocks (id, size); empty for a blob written in one Put Blob.
    blocks: Vec<(String, u64)>,
    copy: Option<CopyInfo>,
}

/// Which operation a counter or an injected failure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    List,
    Properties,
    GetRange,
    PutBlock,
    PutBlockFromUrl,
    PutBlockList,
    PutBlob,
    GetBlockList,
    Delete,
    Copy,
    SetMetadata,
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
    /// Uncommitted blocks by blob name, then block id.
    staged: HashMap<String, HashMap<String, Bytes>>,
    /// Bytes received by Put Block.
    bytes_uploaded: u64,
}

impl State {
    fn next_version(&mut self) -> (String, SystemTime) {
        self.etag_seq += 1;
        let seq = self.etag_seq;
        (
            format!("\"0xFAKE{seq:08}\""),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seq),
        )
    }
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
        let (etag, last_modified) = s.next_version();
        s.blobs.insert(
            name.to_string(),
            FakeBlob {
                data: data.into(),
                etag,
                last_modified,
                metadata: metadata
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                    .collect(),
                blocks: Vec::new(),
                copy: None,
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

    /// Bytes received by Put Block (not Put Block From URL: the service copies those).
    pub fn bytes_uploaded(&self) -> u64 {
        self.state.lock().unwrap().bytes_uploaded
    }

    /// A blob's content, metadata and committed block sizes, as the service holds them.
    pub fn blob(&self, name: &str) -> Option<(Bytes, HashMap<String, String>, Vec<u64>)> {
        let s = self.state.lock().unwrap();
        s.blobs.get(name).map(|b| {
            (
                b.data.clone(),
                b.metadata.clone(),
                b.blocks.iter().map(|(_, n)| *n).collect(),
            )
        })
    }

    /// Names of all blobs, in order.
    pub fn names(&self) -> Vec<String> {
        self.state.lock().unwrap().blobs.keys().cloned().collect()
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

    async fn put_block(&self, name: &str, block_id: &str, data: Bytes) -> Result<(), BlobError> {
        self.enter(Op::PutBlock, "Put Block", name).await?;
        write::put_block(&mut self.state.lock().unwrap(), name, block_id, data)
    }

    async fn put_block_from_url(
        &self,
        name: &str,
        block_id: &str,
        source: &str,
        offset: u64,
        len: u64,
        source_if_match: Option<&str>,
    ) -> Result<(), BlobError> {
        self.enter(Op::PutBlockFromUrl, "Put Block From URL", name)
            .await?;
        write::put_block_from_url(
            &mut self.state.lock().unwrap(),
            name,
            block_id,
            source,
            offset,
            len,
            source_if_match,
        )
    }

    async fn put_block_list(
        &self,
        name: &str,
        block_ids: &[String],
        opts: &WriteOptions,
    ) -> Result<Committed, BlobError> {
        self.enter(Op::PutBlockList, "Put Block List", name).await?;
        write::put_block_list(&mut self.state.lock().unwrap(), name, block_ids, opts)
    }

    async fn put_blob(
        &self,
        name: &str,
        data: Bytes,
        opts: &WriteOptions,
    ) -> Result<Committed, BlobError> {
        self.enter(Op::PutBlob, "Put Blob", name).await?;
        write::put_blob(&mut self.state.lock().unwrap(), name, data, opts)
    }

    async fn get_block_list(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<Vec<CommittedBlock>, BlobError> {
        self.enter(Op::GetBlockList, "Get Block List", name).await?;
        write::get_block_list(&self.state.lock().unwrap(), name, if_match)
    }

    async fn delete_blob(&self, name: &str, if_match: Option<&str>) -> Result<(), BlobError> {
        self.enter(Op::Delete, "Delete Blob", name).await?;
        write::delete_blob(&mut self.state.lock().unwrap(), name, if_match)
    }

    async fn copy_blob(
        &self,
        dest: &str,
        source: &str,
        source_if_match: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<CopyInfo, BlobError> {
        self.enter(Op::Copy, "Copy Blob", dest).await?;
        write::copy_blob(
            &mut self.state.lock().unwrap(),
            dest,
            source,
            source_if_match,
            opts,
        )
    }

    async fn copy_info(&self, name: &str) -> Result<Option<CopyInfo>, BlobError> {
        self.enter(Op::Properties, "Get Blob Properties", name)
            .await?;
        let s = self.state.lock().unwrap();
        let b = s
            .blobs
            .get(name)
            .ok_or_else(|| not_found("Get Blob Properties", name))?;
        Ok(b.copy.clone())
    }

    async fn set_metadata(&self, name: &str, opts: &WriteOptions) -> Result<Committed, BlobError> {
        self.enter(Op::SetMetadata, "Set Blob Metadata", name)
            .await?;
        write::set_metadata(&mut self.state.lock().unwrap(), name, opts)
    }
}

/// Chunk size of fake Get Blob bodies.
const FAKE_CHUNK: usize = 700;

pub(super) fn not_found(op: &'static str, name: &str) -> BlobError {
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
