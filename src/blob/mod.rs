//! The Blob service as this filesystem needs it: a small trait ([`BlobClient`]) with a REST
//! implementation ([`rest::RestClient`]) and an in-memory fake (`fake::FakeClient`, built for tests only) for fast
//! unit tests of everything above it.

pub mod endpoint;
pub mod error;
/// Not in release builds: unit tests have it, and integration tests through the `fake`
/// feature (a dev-dependency of the crate on itself turns it on).
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod rest;
pub mod retry;
pub mod xml;

use std::collections::HashMap;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

pub use endpoint::ContainerUrl;
pub use error::{BlobError, ErrorKind};

/// The metadata key (blobfuse2 and Azure tools' convention) that marks a zero-length blob as a
/// directory.
pub const FOLDER_META: &str = "hdi_isfolder";

/// What the filesystem knows about one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobProps {
    pub name: String,
    pub size: u64,
    pub etag: String,
    pub last_modified: SystemTime,
    /// User metadata, keys lowercased.
    pub metadata: HashMap<String, String>,
}

impl BlobProps {
    /// A zero-length blob with `hdi_isfolder=true` stands for a directory.
    pub fn is_folder_marker(&self) -> bool {
        self.size == 0
            && self
                .metadata
                .get(FOLDER_META)
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// One page of a List Blobs answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub blobs: Vec<BlobProps>,
    /// Common prefixes (virtual directories), each ending with the delimiter.
    pub prefixes: Vec<String>,
    pub next_marker: Option<String>,
}

/// A List Blobs request.
#[derive(Debug, Clone, Default)]
pub struct ListRequest<'a> {
    pub prefix: &'a str,
    pub delimiter: Option<&'a str>,
    pub marker: Option<&'a str>,
    pub max_results: Option<u32>,
}

/// The operations of the Blob service this filesystem uses. Implementations retry transient
/// failures themselves; an error returned here is final.
#[async_trait]
pub trait BlobClient: Send + Sync + 'static {
    /// List Blobs with `include=metadata`.
    async fn list(&self, req: ListRequest<'_>) -> Result<ListPage, BlobError>;

    /// Get Blob Properties (HEAD).
    async fn properties(&self, name: &str) -> Result<BlobProps, BlobError>;

    /// Get Blob of `len > 0` bytes at `offset`, as a stream of chunks. Opening the request is
    /// retried; an error while streaming is reported in the stream (the caller resumes). With
    /// `if_match`, the service answers 412 ([`ErrorKind::ConditionNotMet`]) when the blob's
    /// ETag is no longer that one.
    async fn get_stream(
        &self,
        name: &str,
        offset: u64,
        len: u64,
        if_match: Option<&str>,
    ) -> Result<ByteStream, BlobError>;

    /// Put Block: stages `data` under `block_id` (base64, all ids of a blob the same length),
    /// with Content-MD5. Staged blocks are invisible until a Put Block List commits them.
    async fn put_block(&self, name: &str, block_id: &str, data: Bytes) -> Result<(), BlobError>;

    /// Put Block of `len` bytes at `offset` of a local file, read while it is sent, so a large
    /// block never sits in memory. Gives the MD5 of the bytes sent (the Content-MD5 the service
    /// checked), which the staging journal keeps to tell later whether the local copy still
    /// holds them. The default reads the range into memory (fakes, tests).
    async fn put_block_from_file(
        &self,
        name: &str,
        block_id: &str,
        file: std::sync::Arc<std::fs::File>,
        offset: u64,
        len: u64,
    ) -> Result<Md5Digest, BlobError> {
        let data = tokio::task::spawn_blocking(move || read_file_range(&file, offset, len))
            .await
            .map_err(|e| BlobError::new(ErrorKind::Other, "Put Block", name, e.to_string()))?
            .map_err(|e| {
                BlobError::new(
                    ErrorKind::Other,
                    "Put Block",
                    name,
                    format!("local file: {e}"),
                )
            })?;
        let md5 = md5_of(&data);
        self.put_block(name, block_id, Bytes::from(data)).await?;
        Ok(md5)
    }

    /// Put Block From URL: stages `len` bytes at `offset` of blob `source` (same container)
    /// as block `block_id` of `name`, copied by the service. With `source_if_match`, fails
    /// if the source is no longer that version.
    async fn put_block_from_url(
        &self,
        name: &str,
        block_id: &str,
        source: &str,
        offset: u64,
        len: u64,
        source_if_match: Option<&str>,
    ) -> Result<(), BlobError>;

    /// Put Block List: commits the blob as the given blocks (staged or committed, looked up
    /// as "Latest"), in order. The one commit point of a write.
    async fn put_block_list(
        &self,
        name: &str,
        block_ids: &[String],
        opts: &WriteOptions,
    ) -> Result<Committed, BlobError>;

    /// Put Blob: the whole blob in one request (empty files, directory markers, small files).
    async fn put_blob(
        &self,
        name: &str,
        data: Bytes,
        opts: &WriteOptions,
    ) -> Result<Committed, BlobError>;

    /// Get Block List: the committed blocks of a blob (empty for a blob written by Put Blob).
    async fn get_block_list(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<Vec<CommittedBlock>, BlobError>;

    /// Get Block List of the uncommitted blocks: those staged under `name` and not committed
    /// (the service keeps them for a week, or until the blob is next committed). Empty when
    /// the blob has none or does not exist.
    async fn uncommitted_blocks(&self, name: &str) -> Result<Vec<CommittedBlock>, BlobError>;

    /// Delete Blob.
    async fn delete_blob(&self, name: &str, if_match: Option<&str>) -> Result<(), BlobError>;

    /// Copy Blob from `source` (same container) to `dest`. The service may finish at once
    /// ([`CopyState::Success`]) or later (`Pending`: poll [`BlobClient::copy_info`]).
    async fn copy_blob(
        &self,
        dest: &str,
        source: &str,
        source_if_match: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<CopyInfo, BlobError>;

    /// The state of the last copy into `name` (from its properties).
    async fn copy_info(&self, name: &str) -> Result<Option<CopyInfo>, BlobError>;

    /// The ETag of `name` as Get Block List gives it, for a blob that has uncommitted blocks
    /// only (an upload that was never committed). Such a blob does not exist for reads (404),
    /// but Azurite takes it for an existing blob in `If-None-Match: *` (409); its ETag lets a
    /// new version replace exactly it. `None` when the service gives none. (The fake has no
    /// such blobs.)
    async fn uncommitted_etag(&self, _name: &str) -> Result<Option<String>, BlobError> {
        Ok(None)
    }

    /// Set Blob Metadata: replaces the metadata (a new ETag, same content).
    async fn set_metadata(&self, name: &str, opts: &WriteOptions) -> Result<Committed, BlobError>;

    /// Get Blob of `len` bytes at `offset` into one buffer (small reads, tests). A body that
    /// breaks mid-way (reset, truncated answer) is asked again from its first missing byte, at
    /// most [`retry::BODY_RESUMES`] times, when `if_match` pins the version; an answer that
    /// ends cleanly short (the blob is shorter) is returned as it is.
    async fn get_range(
        &self,
        name: &str,
        offset: u64,
        len: u64,
        if_match: Option<&str>,
    ) -> Result<Bytes, BlobError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let mut buf = bytes::BytesMut::with_capacity(len as usize);
        let mut resumes = 0;
        loop {
            let done = buf.len() as u64;
            let mut stream = self
                .get_stream(name, offset + done, len - done, if_match)
                .await?;
            let error = loop {
                match futures::StreamExt::next(&mut stream).await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => break e,
                    None => return Ok(buf.freeze()),
                }
            };
            // Without If-Match the rest could come from another version: not spliced.
            let resumable = if_match.is_some() && error.is_transient();
            if !resumable || resumes >= retry::BODY_RESUMES || buf.len() as u64 >= len {
                return Err(error);
            }
            resumes += 1;
            tracing::debug!(blob = name, resumes, "resuming a broken download: {error}");
            tokio::time::sleep(retry::resume_pause(resumes)).await;
        }
    }
}

/// Conditions and properties of a write that creates a blob version (Put Block List, Put Blob,
/// Copy Blob, Set Blob Metadata).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// `If-Match`: only if the blob is still this version (else [`ErrorKind::ConditionNotMet`]).
    pub if_match: Option<String>,
    /// `If-None-Match: *`: only if the blob does not exist (else `ConditionNotMet` or
    /// `Conflict` with code `BlobAlreadyExists`).
    pub if_none_match_any: bool,
    /// `If-Unmodified-Since`: only if the blob does not exist, or was last modified at or
    /// before this time (HTTP dates: whole seconds).
    pub if_unmodified_since: Option<SystemTime>,
    /// User metadata of the new version (replaces the old); keys are valid C# identifiers.
    pub metadata: HashMap<String, String>,
    pub content_type: Option<String>,
}

/// The version a write created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub etag: String,
    pub last_modified: SystemTime,
}

/// The MD5 of a block's bytes.
pub type Md5Digest = [u8; 16];

/// The MD5 of `data`.
pub fn md5_of(data: &[u8]) -> Md5Digest {
    use md5::Digest;
    md5::Md5::digest(data).into()
}

/// One block of a blob's block list (committed, or uncommitted where said).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedBlock {
    /// The block id, base64 as the service returns it.
    pub id: String,
    pub size: u64,
}

/// Where a server-side copy stands (`x-ms-copy-status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyState {
    Success,
    Pending,
    /// Failed or aborted, with the service's description.
    Failed(String),
}

/// A Copy Blob operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInfo {
    pub id: String,
    pub state: CopyState,
    /// The blob copied from, when it is in this container (from `x-ms-copy-source` of the
    /// copy's properties; not in Copy Blob's own answer).
    pub source: Option<String>,
}

/// Reads `len` bytes at `offset` of a local file; past its end (a sparse file's unwritten
/// tail) the bytes are zeros.
pub fn read_file_range(file: &std::fs::File, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    let mut done = 0;
    while done < buf.len() {
        match std::os::unix::fs::FileExt::read_at(file, &mut buf[done..], offset + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(buf)
}

/// After a Put Blob whose answer was lost, the retry answers 409 `BlobAlreadyExists` (with
/// `If-None-Match: *`) or 412 (with `If-Match`): the blob's version if it is exactly what that
/// Put Blob would have made (same content, same metadata), which means the first attempt went
/// through (or someone wrote the very same blob, which comes to the same); `None` if it is
/// anything else; an error if it cannot be told.
pub async fn own_put_blob(
    client: &dyn BlobClient,
    name: &str,
    data: &[u8],
    metadata: &HashMap<String, String>,
) -> Result<Option<Committed>, BlobError> {
    own_put_blob_if(client, name, data.len() as u64, metadata, |got| got == data).await
}

/// [`own_put_blob`] for a Put Blob known by its length, its metadata and a test of its bytes
/// (a digest, when the bytes themselves are no longer at hand).
pub async fn own_put_blob_if(
    client: &dyn BlobClient,
    name: &str,
    len: u64,
    metadata: &HashMap<String, String>,
    same_bytes: impl FnOnce(&[u8]) -> bool,
) -> Result<Option<Committed>, BlobError> {
    let p = match client.properties(name).await {
        Ok(p) => p,
        // Gone again: not ours to claim.
        Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if p.size != len || !same_metadata(&p.metadata, metadata) {
        return Ok(None);
    }
    let got = if len == 0 {
        Bytes::new()
    } else {
        match client.get_range(name, 0, p.size, Some(&p.etag)).await {
            Ok(got) => got,
            Err(e) if matches!(e.kind, ErrorKind::ConditionNotMet | ErrorKind::NotFound) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
    };
    if !same_bytes(&got) {
        return Ok(None);
    }
    tracing::info!(
        blob = name,
        "the write had gone through (its answer was lost)"
    );
    Ok(Some(Committed {
        etag: p.etag,
        last_modified: p.last_modified,
    }))
}

/// Whether the metadata a blob has (`got`, keys lowercased as the service's answers give them)
/// is `sent` (keys compared without case, as the service does).
pub fn same_metadata(got: &HashMap<String, String>, sent: &HashMap<String, String>) -> bool {
    let ours: HashMap<String, &String> = sent
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    got.len() == ours.len() && got.iter().all(|(k, v)| ours.get(k) == Some(&v))
}

/// After `If-None-Match: *` answered 409 `BlobAlreadyExists`: when what exists is only
/// uncommitted blocks (left by an upload never committed, which Azurite's Put Blob counts as a
/// blob), the conditions to try instead, in order: `If-Match` on that state, then (Azurite
/// refuses `If-Match` on such a blob: 412) `If-Unmodified-Since` a point in time after the
/// last of those blocks and before the blob was last seen to have no committed version: it
/// holds for the uncommitted blocks and fails for any version committed since, so nothing
/// committed is ever replaced. Empty when a committed blob is there. Real Azure does not take
/// uncommitted blocks for a blob.
pub async fn over_uncommitted(
    client: &dyn BlobClient,
    name: &str,
    opts: &WriteOptions,
) -> Result<Vec<WriteOptions>, BlobError> {
    match client.properties(name).await {
        Ok(_) => return Ok(Vec::new()),
        Err(e) if e.kind == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let Some(etag) = client.uncommitted_etag(name).await? else {
        return Ok(Vec::new());
    };
    tracing::debug!(
        blob = name,
        "replacing blocks left uncommitted by an earlier upload"
    );
    // Azurite holds the uncommitted blocks' own time (their last Put Block, before the list
    // just read) against If-Unmodified-Since, in whole seconds: blocks sent a moment ago (a
    // file truncated while it was being written) are younger than any time before the check
    // above. So: two seconds later, the blob is seen again without a committed version, and
    // the condition is a second before that (HTTP dates drop the fraction): after the blocks,
    // before any version committed from then on.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let seen_without = SystemTime::now() - std::time::Duration::from_secs(1);
    match client.properties(name).await {
        Ok(_) => return Ok(Vec::new()),
        Err(e) if e.kind == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let matching = WriteOptions {
        if_none_match_any: false,
        if_match: Some(etag),
        ..opts.clone()
    };
    let not_since = WriteOptions {
        if_match: None,
        if_unmodified_since: Some(seen_without),
        ..matching.clone()
    };
    Ok(vec![matching, not_since])
}

/// The error of a write whose answer was lost and whose outcome could not be checked: not a
/// conflict, not a success; the write may have been carried out.
pub fn outcome_unknown(e: &BlobError, check: &BlobError) -> BlobError {
    BlobError::unanswered(
        e.op,
        &e.target,
        format!("{e}; whether it went through could not be checked: {check}"),
    )
}

/// The body of a Get Blob, chunk by chunk.
pub type ByteStream = futures::stream::BoxStream<'static, Result<Bytes, BlobError>>;

/// Lists every page of a request, following NextMarker.
pub async fn list_all(
    client: &dyn BlobClient,
    prefix: &str,
    delimiter: Option<&str>,
) -> Result<ListPage, BlobError> {
    let mut all = ListPage::default();
    let mut marker: Option<String> = None;
    loop {
        let page = client
            .list(ListRequest {
                prefix,
                delimiter,
                marker: marker.as_deref(),
                max_results: Some(5000),
            })
            .await?;
        all.blobs.extend(page.blobs);
        all.prefixes.extend(page.prefixes);
        match page.next_marker {
            Some(m) if !m.is_empty() => marker = Some(m),
            _ => return Ok(all),
        }
    }
}
