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

/// Which operation a counter or an injected failure is about: the operations of the REST API,
/// as the metrics count them.
pub use crate::metrics::Op;

/// What an injected fault does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request fails with this kind before the service does anything (a transient kind
    /// stands for retries that ran out).
    Fail(ErrorKind),
    /// The service carries the request out, its answer is lost, and the client sends it again:
    /// the caller gets the answer to the second try, marked
    /// [`BlobError::after_lost_answer`] (as the REST client's retry loop does).
    LoseAnswer,
    /// The service carries the request out, its answer is lost, and the retries run out: the
    /// caller gets a transient error whose request may have been carried out.
    LoseAnswerAndGiveUp,
}

/// Random faults for every mutating request (reads fail transiently instead), from a seed. The
/// fault a request meets depends on the seed, the operation, the blob and how many such
/// requests came before, not on the order of requests to different blobs: concurrent uploads
/// do not make a run irreproducible.
#[derive(Debug, Clone, Copy)]
pub struct RandomFaults {
    pub seed: u64,
    /// Chance, per request, of a fault (0.0–1.0).
    pub rate: f64,
}

#[derive(Default)]
struct State {
    blobs: BTreeMap<String, FakeBlob>,
    counts: HashMap<Op, u64>,
    /// Names List Blobs went through, rolled into a prefix or not (see [`FakeClient::names_listed`]).
    names_listed: u64,
    failures: HashMap<Op, VecDeque<Fault>>,
    random: Option<RandomFaults>,
    /// Requests so far by operation and blob (for random faults).
    seen: HashMap<(Op, String), u64>,
    delays: HashMap<Op, Duration>,
    /// Requests inside their delay now, and the most there ever were, by operation.
    in_flight: HashMap<Op, u64>,
    peak_in_flight: HashMap<Op, u64>,
    etag_seq: u64,
    /// Bytes served by Get Blob.
    bytes_read: u64,
    /// The next Get Blob body breaks after this many bytes.
    cut_stream_after: Option<u64>,
    /// Uncommitted blocks by blob name, then block id.
    staged: HashMap<String, HashMap<String, Bytes>>,
    /// Bytes received by Put Block.
    bytes_uploaded: u64,
    /// How many of the next List Blobs pages of a prefix come back empty, with a continuation
    /// (as Azure's may).
    empty_pages: HashMap<String, u32>,
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

    /// The service drops uncommitted block `id` of `name` (as it does after 7 days).
    pub fn drop_uncommitted_block(&self, name: &str, id: &str) {
        if let Some(blocks) = self.state.lock().unwrap().staged.get_mut(name) {
            blocks.remove(id);
        }
    }

    /// How many names List Blobs went through so far, those it rolled into a prefix included:
    /// the service's work, which a delimiter makes as large as everything under the prefix.
    pub fn names_listed(&self) -> u64 {
        self.state.lock().unwrap().names_listed
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
        self.inject_next(op, Fault::Fail(kind));
    }

    /// The next `n` List Blobs answers for `prefix` are empty pages with a continuation to
    /// where they were to start (Azure may answer so when it has many names to skip).
    pub fn empty_pages_next(&self, prefix: &str, n: u32) {
        let mut s = self.state.lock().unwrap();
        s.empty_pages.insert(prefix.to_string(), n);
    }

    /// The next request of this kind meets `fault` (queued: call again for more).
    pub fn inject_next(&self, op: Op, fault: Fault) {
        self.state
            .lock()
            .unwrap()
            .failures
            .entry(op)
            .or_default()
            .push_back(fault);
    }

    /// Random faults from now on (`None`: no more). Queued faults come first.
    pub fn set_random_faults(&self, faults: Option<RandomFaults>) {
        let mut s = self.state.lock().unwrap();
        s.random = faults;
        s.seen.clear();
    }

    /// Faults still queued.
    pub fn pending_faults(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .failures
            .values()
            .map(VecDeque::len)
            .sum()
    }

    /// The next Get Blob body fails (transiently) after `bytes` bytes, as a connection reset would.
    /// The most requests of `op` that were ever in their delay at once (see
    /// [`set_delay`](Self::set_delay)): how many the code keeps in flight.
    pub fn peak_in_flight(&self, op: Op) -> u64 {
        let s = self.state.lock().unwrap();
        s.peak_in_flight.get(&op).copied().unwrap_or(0)
    }

    pub fn cut_next_stream_after(&self, bytes: u64) {
        self.state.lock().unwrap().cut_stream_after = Some(bytes);
    }

    /// Every request of this kind waits this long first.
    pub fn set_delay(&self, op: Op, delay: Duration) {
        self.state.lock().unwrap().delays.insert(op, delay);
    }

    /// Counts the request, applies an injected delay, and gives the fault it meets, if any: a
    /// [`Fault::Fail`] as the error; lost answers for [`FakeClient::carry_out`] (reads ignore
    /// them: their retry simply succeeds).
    async fn enter(
        &self,
        op: Op,
        name: &'static str,
        target: &str,
    ) -> Result<Option<Fault>, BlobError> {
        let (delay, fault) = {
            let mut s = self.state.lock().unwrap();
            *s.counts.entry(op).or_default() += 1;
            let queued = s.failures.get_mut(&op).and_then(VecDeque::pop_front);
            let fault = queued.or_else(|| {
                let r = s.random?;
                let n = {
                    let n = s.seen.entry((op, target.to_string())).or_default();
                    *n += 1;
                    *n
                };
                let mut rng = fastrand::Rng::with_seed(fault_seed(r.seed, op, target, n));
                if rng.f64() >= r.rate {
                    return None;
                }
                Some(match (op.is_mutating(), rng.u8(..3)) {
                    (false, _) | (true, 0) => Fault::Fail(ErrorKind::Transient),
                    (true, 1) => Fault::LoseAnswer,
                    (true, _) => Fault::LoseAnswerAndGiveUp,
                })
            });
            let delay = s.delays.get(&op).copied();
            if delay.is_some() {
                let now = {
                    let n = s.in_flight.entry(op).or_default();
                    *n += 1;
                    *n
                };
                let peak = s.peak_in_flight.entry(op).or_default();
                *peak = (*peak).max(now);
            }
            (delay, fault)
        };
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
            *self.state.lock().unwrap().in_flight.entry(op).or_default() -= 1;
        }
        if let Some(f) = fault {
            tracing::debug!(op = name, target, "fake: injected {f:?}");
        }
        match fault {
            Some(Fault::Fail(kind)) => Err(BlobError::new(kind, name, target, "injected failure")),
            other => Ok(other),
        }
    }

    /// Carries out a mutating request as `fault` says: once, or once with its answer lost and
    /// then again (the client's retry), or once with its answer lost and no retry left.
    fn carry_out<T>(
        &self,
        fault: Option<Fault>,
        name: &'static str,
        target: &str,
        mut op: impl FnMut(&mut State) -> Result<T, BlobError>,
    ) -> Result<T, BlobError> {
        let mut s = self.state.lock().unwrap();
        match fault {
            None | Some(Fault::Fail(_)) => op(&mut s),
            Some(Fault::LoseAnswer) => {
                let _ = op(&mut s);
                op(&mut s).map_err(|mut e| {
                    e.after_lost_answer = true;
                    e
                })
            }
            Some(Fault::LoseAnswerAndGiveUp) => {
                let _ = op(&mut s);
                Err(BlobError::unanswered(
                    name,
                    target,
                    "injected: carried out, answer lost",
                ))
            }
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
        self.enter(Op::ListBlobs, "List Blobs", req.prefix).await?;
        let mut s = self.state.lock().unwrap();
        let max = req.max_results.unwrap_or(5000).max(1) as usize;
        let mut page = ListPage::default();
        // Entries (blobs and prefixes) in name order; the marker is the name to resume at.
        let start = req.marker.unwrap_or(req.prefix);
        if let Some(n) = s.empty_pages.get_mut(req.prefix).filter(|n| **n > 0) {
            *n -= 1;
            page.next_marker = Some(start.to_string());
            return Ok(page);
        }
        let mut last_prefix: Option<String> = None;
        let mut emitted = 0;
        let mut gone_through = 0;
        for (name, blob) in s.blobs.range(start.to_string()..) {
            if !name.starts_with(req.prefix) {
                break;
            }
            gone_through += 1;
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
        s.names_listed += gone_through;
        Ok(page)
    }

    async fn properties(&self, name: &str) -> Result<BlobProps, BlobError> {
        self.enter(Op::GetBlobProperties, "Get Blob Properties", name)
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
        self.enter(Op::GetBlob, "Get Blob", name).await?;
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
        let fault = self.enter(Op::PutBlock, "Put Block", name).await?;
        self.carry_out(fault, "Put Block", name, |s| {
            write::put_block(s, name, block_id, data.clone())
        })
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
        let fault = self
            .enter(Op::PutBlockFromUrl, "Put Block From URL", name)
            .await?;
        self.carry_out(fault, "Put Block From URL", name, |s| {
            write::put_block_from_url(s, name, block_id, source, offset, len, source_if_match)
        })
    }

    async fn put_block_list(
        &self,
        name: &str,
        block_ids: &[String],
        opts: &WriteOptions,
    ) -> Result<Committed, BlobError> {
        let fault = self.enter(Op::PutBlockList, "Put Block List", name).await?;
        self.carry_out(fault, "Put Block List", name, |s| {
            write::put_block_list(s, name, block_ids, opts)
        })
    }

    async fn put_blob(
        &self,
        name: &str,
        data: Bytes,
        opts: &WriteOptions,
    ) -> Result<Committed, BlobError> {
        let fault = self.enter(Op::PutBlob, "Put Blob", name).await?;
        self.carry_out(fault, "Put Blob", name, |s| {
            write::put_blob(s, name, data.clone(), opts)
        })
    }

    async fn get_block_list(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<Vec<CommittedBlock>, BlobError> {
        self.enter(Op::GetBlockList, "Get Block List", name).await?;
        write::get_block_list(&self.state.lock().unwrap(), name, if_match)
    }

    async fn uncommitted_blocks(&self, name: &str) -> Result<Vec<CommittedBlock>, BlobError> {
        self.enter(Op::GetBlockList, "Get Block List", name).await?;
        Ok(write::uncommitted_blocks(&self.state.lock().unwrap(), name))
    }

    async fn delete_blob(&self, name: &str, if_match: Option<&str>) -> Result<(), BlobError> {
        let fault = self.enter(Op::DeleteBlob, "Delete Blob", name).await?;
        self.carry_out(fault, "Delete Blob", name, |s| {
            write::delete_blob(s, name, if_match)
        })
    }

    async fn copy_blob(
        &self,
        dest: &str,
        source: &str,
        source_if_match: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<CopyInfo, BlobError> {
        let fault = self.enter(Op::CopyBlob, "Copy Blob", dest).await?;
        self.carry_out(fault, "Copy Blob", dest, |s| {
            write::copy_blob(s, dest, source, source_if_match, opts)
        })
    }

    async fn copy_info(&self, name: &str) -> Result<Option<CopyInfo>, BlobError> {
        self.enter(Op::GetBlobProperties, "Get Blob Properties", name)
            .await?;
        let s = self.state.lock().unwrap();
        let b = s
            .blobs
            .get(name)
            .ok_or_else(|| not_found("Get Blob Properties", name))?;
        Ok(b.copy.clone())
    }

    async fn set_metadata(&self, name: &str, opts: &WriteOptions) -> Result<Committed, BlobError> {
        let fault = self
            .enter(Op::SetBlobMetadata, "Set Blob Metadata", name)
            .await?;
        self.carry_out(fault, "Set Blob Metadata", name, |s| {
            write::set_metadata(s, name, opts)
        })
    }
}

/// The seed of the fault decision for the `n`-th request `op` on `target`.
fn fault_seed(seed: u64, op: Op, target: &str, n: u64) -> u64 {
    use std::hash::{Hash, Hasher};
    // DefaultHasher::new() has fixed keys: the same input gives the same hash in every run.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (seed, op, target, n).hash(&mut h);
    h.finish()
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
        assert_eq!(f.count(Op::ListBlobs), 3);
    }

    #[tokio::test]
    async fn a_range_whose_body_breaks_is_asked_again_from_its_first_missing_byte() {
        let f = FakeClient::new();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        f.put("x", data.clone());
        let etag = f.properties("x").await.unwrap().etag;
        f.cut_next_stream_after(30_000);
        let got = f.get_range("x", 10, 90_000, Some(&etag)).await.unwrap();
        assert_eq!(&got[..], &data[10..90_010]);
        assert_eq!(f.count(Op::GetBlob), 2, "one resume for the rest");
        // Without a version to hold it to, the rest could come from another one: an error.
        f.cut_next_stream_after(30_000);
        let e = f.get_range("x", 10, 90_000, None).await.unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert_eq!(f.count(Op::GetBlob), 3, "not resumed");
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
        f.fail_next(Op::GetBlobProperties, ErrorKind::Transient);
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
