//! The write side of [`RestClient`]: Put Block, Put Block From URL, Put Block List, Put Blob,
//! Get Block List, Delete Blob, Copy Blob, Set Blob Metadata and the copy state of a blob.
//!
//! A child module of `rest` (declared there), so it uses the client's private request
//! machinery: every request is one `attempt()` wrapped in the retry policy, the token is added
//! at send time, and errors and log lines name the operation and the blob, never a URL.
//!
//! Two operations send a URL *with the token* in a header (`x-ms-copy-source`: Put Block From
//! URL, Copy Blob), for the service to read the source. That header is built per attempt (a
//! refreshed token is used by the next try), marked sensitive, never logged, and any text the
//! service sends back is scrubbed of the token before it goes into an error.
//!
//! Retries: transient failures are retried like reads. A write whose success answer was lost
//! is sent again; that is harmless for staging a block, setting metadata or deleting (the
//! retry of a delete that went through answers 404), but a Put Block List / Put Blob / Copy
//! Blob with `If-None-Match: *` retried after a lost success answer fails with
//! `BlobAlreadyExists` (its own first try created the blob), and one with `If-Match` fails
//! with `ConditionNotMet` (its first try changed the ETag). That is left to the caller, who
//! can tell by reading the blob back; nothing here tries to be clever about it.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use md5::{Digest, Md5};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, RequestBuilder};
use url::Url;

use super::{header_str, AttemptError, RestClient};
use crate::blob::xml;
use crate::blob::{
    BlobError, Committed, CommittedBlock, CopyInfo, CopyState, ErrorKind, Md5Digest, WriteOptions,
};
use crate::metrics::Op;

/// `Content-MD5` of a body: base64 of its MD5.
pub(super) fn content_md5(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(data))
}

/// `x-ms-source-range` for `len > 0` bytes at `offset` (inclusive end).
pub(super) fn source_range(offset: u64, len: u64) -> String {
    format!("bytes={}-{}", offset, offset + len - 1)
}

/// Whether `key` can be a metadata name: a C# identifier (ASCII letters, digits and `_`, not
/// starting with a digit), which is also a valid header name after `x-ms-meta-`.
fn valid_metadata_name(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Header values the service takes: printable ASCII, spaces and tabs.
fn valid_header_text(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// The headers of a write that creates a version: `x-ms-meta-*`, optionally
/// `x-ms-blob-content-type`, `If-Match`, and optionally `If-None-Match: *`. Metadata that
/// cannot go into a header is refused here, before anything is sent.
pub(super) fn write_headers(
    op: Op,
    name: &str,
    opts: &WriteOptions,
    content_type: bool,
    none_match: bool,
) -> Result<HeaderMap, BlobError> {
    let bad = |what: String| BlobError::new(ErrorKind::Other, op.name(), name, what);
    let mut h = HeaderMap::new();
    let mut keys: Vec<&String> = opts.metadata.keys().collect();
    keys.sort();
    for key in keys {
        let value = &opts.metadata[key];
        if !valid_metadata_name(key) {
            return Err(bad(format!(
                "metadata name {key:?} is not valid (ASCII letters, digits and '_', not starting with a digit)"
            )));
        }
        if !valid_header_text(value) {
            return Err(bad(format!(
                "the value of metadata {key:?} is not printable ASCII, which a header cannot carry"
            )));
        }
        let header = HeaderName::from_bytes(format!("x-ms-meta-{key}").as_bytes())
            .map_err(|e| bad(format!("metadata name {key:?}: {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| bad(format!("metadata value of {key:?}: {e}")))?;
        h.insert(header, value);
    }
    if content_type {
        if let Some(ct) = &opts.content_type {
            let v = HeaderValue::from_str(ct)
                .ok()
                .filter(|_| valid_header_text(ct))
                .ok_or_else(|| bad(format!("content type {ct:?} is not printable ASCII")))?;
            h.insert("x-ms-blob-content-type", v);
        }
    }
    if let Some(etag) = &opts.if_match {
        let v = HeaderValue::from_str(etag)
            .map_err(|_| bad(format!("ETag {etag:?} is not a valid header value")))?;
        h.insert("if-match", v);
    }
    if none_match && opts.if_none_match_any {
        h.insert("if-none-match", HeaderValue::from_static("*"));
    }
    if let Some(t) = opts.if_unmodified_since {
        let v = HeaderValue::from_str(&httpdate::fmt_http_date(t))
            .map_err(|_| bad("If-Unmodified-Since is not a valid header value".into()))?;
        h.insert("if-unmodified-since", v);
    }
    Ok(h)
}

fn if_match_header(op: Op, name: &str, etag: &str) -> Result<HeaderValue, BlobError> {
    HeaderValue::from_str(etag).map_err(|_| {
        BlobError::new(
            ErrorKind::Other,
            op.name(),
            name,
            format!("ETag {etag:?} is not a valid header value"),
        )
    })
}

/// The version a write created, from `ETag` (kept as given, quotes and all: it goes back
/// into `If-Match` as is) and `Last-Modified`.
fn committed_from(op: Op, name: &str, headers: &HeaderMap) -> Result<Committed, BlobError> {
    let bad = |what: &str| {
        BlobError::new(
            ErrorKind::Other,
            op.name(),
            name,
            format!("answer lacks a valid {what} header"),
        )
    };
    let etag = header_str(headers, "etag").ok_or_else(|| bad("ETag"))?;
    let last_modified: SystemTime = header_str(headers, "last-modified")
        .and_then(|v| xml::parse_http_date(v).ok())
        .ok_or_else(|| bad("Last-Modified"))?;
    Ok(Committed {
        etag: etag.to_string(),
        last_modified,
    })
}

/// A copy's state from `x-ms-copy-status` (`pending`, `success`, `aborted`, `failed`) and
/// `x-ms-copy-status-description`.
fn copy_state(status: &str, description: Option<&str>) -> Option<CopyState> {
    match status.to_ascii_lowercase().as_str() {
        "success" => Some(CopyState::Success),
        "pending" => Some(CopyState::Pending),
        "failed" | "aborted" => Some(CopyState::Failed(
            description
                .filter(|d| !d.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| status.to_string()),
        )),
        _ => None,
    }
}

/// The copy headers of an answer: `None` without `x-ms-copy-id`.
fn copy_info_from(op: Op, name: &str, headers: &HeaderMap) -> Result<Option<CopyInfo>, BlobError> {
    let Some(id) = header_str(headers, "x-ms-copy-id") else {
        return Ok(None);
    };
    let status = header_str(headers, "x-ms-copy-status").unwrap_or_default();
    let state = copy_state(status, header_str(headers, "x-ms-copy-status-description"))
        .ok_or_else(|| {
            BlobError::new(
                ErrorKind::Other,
                op.name(),
                name,
                format!("unexpected x-ms-copy-status {status:?}"),
            )
        })?;
    Ok(Some(CopyInfo {
        id: id.to_string(),
        state,
        source: None,
    }))
}

/// Removes the token (and its signature, raw or percent-encoded) from text the service sent
/// back about a request that carried it in `x-ms-copy-source`.
pub(super) fn scrub(text: &str, token: &str) -> String {
    let mut secrets: Vec<String> = vec![token.to_string()];
    for (k, v) in url::form_urlencoded::parse(token.as_bytes()) {
        if k == "sig" && !v.is_empty() {
            secrets.push(v.to_string());
            secrets.push(url::form_urlencoded::byte_serialize(v.as_bytes()).collect());
            secrets.push(
                percent_encoding::utf8_percent_encode(&v, percent_encoding::NON_ALPHANUMERIC)
                    .to_string(),
            );
        }
    }
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s.as_str(), "<redacted>");
    }
    out
}

/// An attempt's error with any copy of the token removed.
fn scrubbed((mut e, ra): AttemptError, token: &str) -> AttemptError {
    e.detail = scrub(&e.detail, token);
    e.code = e.code.map(|c| scrub(&c, token));
    (e, ra)
}

impl RestClient {
    /// The blob URL with `comp` (and more) in its query, percent-encoded by the url crate.
    fn blob_url_with(&self, name: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.blob_url(name);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// The URL of blob `source` of this container with the current token, for
    /// `x-ms-copy-source`, as a sensitive header value, with the token it carries.
    fn copy_source(
        &self,
        op: Op,
        target: &str,
        source: &str,
    ) -> Result<(HeaderValue, String), BlobError> {
        let token = self.credential.current();
        let mut url = self.blob_url(source);
        url.set_query(Some(token.expose()).filter(|t| !t.is_empty()));
        let mut value = HeaderValue::from_str(url.as_str()).map_err(|_| {
            BlobError::new(
                ErrorKind::Other,
                op.name(),
                target,
                "the copy source URL is not a valid header value",
            )
        })?;
        value.set_sensitive(true);
        Ok((value, token.expose().to_string()))
    }

    /// One attempt of a PUT without a body (`Content-Length: 0`).
    async fn put_empty<F>(
        &self,
        op: Op,
        target: &str,
        url: &Url,
        build: F,
    ) -> Result<reqwest::Response, AttemptError>
    where
        F: FnOnce(RequestBuilder) -> RequestBuilder,
    {
        self.attempt(Method::PUT, op, target, url, |r| {
            build(r.header("content-length", "0").body(Bytes::new()))
        })
        .await
    }
}

fn with_headers(r: RequestBuilder, h: &HeaderMap) -> RequestBuilder {
    r.headers(h.clone())
}

pub(super) async fn put_block(
    c: &RestClient,
    name: &str,
    block_id: &str,
    data: Bytes,
) -> Result<(), BlobError> {
    let op = Op::PutBlock;
    let url = c.blob_url_with(name, &[("comp", "block"), ("blockid", block_id)]);
    let md5 = content_md5(&data);
    let len = data.len().to_string();
    c.run(op, || {
        c.attempt(Method::PUT, op, name, &url, |r| {
            r.header("content-md5", &md5)
                .header("content-length", &len)
                .body(data.clone())
        })
    })
    .await?;
    Ok(())
}

/// Chunk size when a block is streamed from a local file.
const FILE_CHUNK: u64 = 1 << 20;

/// Reads `len` bytes at `offset` of `file` in chunks, off the async threads.
fn file_chunks(
    file: Arc<std::fs::File>,
    offset: u64,
    len: u64,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures::stream::try_unfold(0u64, move |done| {
        let file = file.clone();
        async move {
            if done >= len {
                return Ok(None);
            }
            let n = FILE_CHUNK.min(len - done);
            let chunk = tokio::task::spawn_blocking(move || {
                crate::blob::read_file_range(&file, offset + done, n)
            })
            .await
            .map_err(std::io::Error::other)??;
            Ok(Some((Bytes::from(chunk), done + n)))
        }
    })
}

/// Put Block streamed from a region of a local file: its MD5 is computed in a first pass,
/// then each attempt streams the region again, so memory holds one chunk at a time.
pub(super) async fn put_block_from_file(
    c: &RestClient,
    name: &str,
    block_id: &str,
    file: Arc<std::fs::File>,
    offset: u64,
    len: u64,
) -> Result<Md5Digest, BlobError> {
    use futures::TryStreamExt;
    let op = Op::PutBlock;
    let local = |e: std::io::Error| {
        BlobError::new(
            ErrorKind::Other,
            op.name(),
            name,
            format!("local file: {e}"),
        )
    };
    let mut hasher = Md5::new();
    let mut chunks = std::pin::pin!(file_chunks(file.clone(), offset, len));
    while let Some(chunk) = chunks.try_next().await.map_err(local)? {
        hasher.update(&chunk);
    }
    let digest: Md5Digest = hasher.finalize().into();
    let md5 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(digest)
    };
    let url = c.blob_url_with(name, &[("comp", "block"), ("blockid", block_id)]);
    let length = len.to_string();
    let metrics = c.metrics;
    c.run(op, || {
        // Counted as the HTTP client takes each chunk.
        let chunks = file_chunks(file.clone(), offset, len)
            .inspect_ok(move |chunk| metrics.sent(chunk.len() as u64));
        let body = reqwest::Body::wrap_stream(chunks);
        c.attempt(Method::PUT, op, name, &url, |r| {
            r.header("content-md5", &md5)
                .header("content-length", &length)
                .body(body)
        })
    })
    .await?;
    Ok(digest)
}

pub(super) async fn put_block_from_url(
    c: &RestClient,
    name: &str,
    block_id: &str,
    source: &str,
    offset: u64,
    len: u64,
    source_if_match: Option<&str>,
) -> Result<(), BlobError> {
    let op = Op::PutBlockFromUrl;
    if len == 0 {
        // No range can say "nothing"; the fake answers this, as the service would an empty
        // range: 416 InvalidRange.
        let mut e = BlobError::new(
            ErrorKind::Conflict,
            op.name(),
            name,
            "a block copied from a URL cannot be empty",
        );
        e.code = Some("InvalidRange".into());
        return Err(e);
    }
    let url = c.blob_url_with(name, &[("comp", "block"), ("blockid", block_id)]);
    let range = source_range(offset, len);
    let if_match = source_if_match
        .map(|e| if_match_header(op, name, e))
        .transpose()?;
    c.run(op, || async {
        let (source_url, token) = c.copy_source(op, name, source).map_err(|e| (e, None))?;
        c.put_empty(op, name, &url, |r| {
            let r = r
                .header("x-ms-copy-source", source_url)
                .header("x-ms-source-range", &range);
            match &if_match {
                Some(v) => r.header("x-ms-source-if-match", v.clone()),
                None => r,
            }
        })
        .await
        .map_err(|e| scrubbed(e, &token))
    })
    .await?;
    Ok(())
}

pub(super) async fn put_block_list(
    c: &RestClient,
    name: &str,
    ids: &[String],
    opts: &WriteOptions,
) -> Result<Committed, BlobError> {
    let op = Op::PutBlockList;
    let headers = write_headers(op, name, opts, true, true)?;
    let body = Bytes::from(
        xml::put_block_list_body(ids)
            .map_err(|e| BlobError::new(ErrorKind::Other, op.name(), name, e))?,
    );
    let len = body.len().to_string();
    let md5 = content_md5(&body);
    let url = c.blob_url_with(name, &[("comp", "blocklist")]);
    // With If-None-Match: * or If-Match, a retry after a lost success answer fails (see the
    // module documentation); the caller sorts that out.
    let resp = c
        .run(op, || {
            c.attempt(Method::PUT, op, name, &url, |r| {
                with_headers(r, &headers)
                    .header("content-type", "application/xml; charset=utf-8")
                    .header("content-md5", &md5)
                    .header("content-length", &len)
                    .body(body.clone())
            })
        })
        .await?;
    committed_from(op, name, resp.headers())
}

pub(super) async fn put_blob(
    c: &RestClient,
    name: &str,
    data: Bytes,
    opts: &WriteOptions,
) -> Result<Committed, BlobError> {
    let op = Op::PutBlob;
    let headers = write_headers(op, name, opts, true, true)?;
    let len = data.len().to_string();
    let md5 = content_md5(&data);
    let url = c.blob_url(name);
    // Same retry caveat as Put Block List with conditions.
    let resp = c
        .run(op, || {
            c.attempt(Method::PUT, op, name, &url, |r| {
                with_headers(r, &headers)
                    .header("x-ms-blob-type", "BlockBlob")
                    .header("content-md5", &md5)
                    // Also for 0 bytes: Put Blob requires it, and an empty body alone would go
                    // out without one.
                    .header("content-length", &len)
                    .body(data.clone())
            })
        })
        .await?;
    committed_from(op, name, resp.headers())
}

pub(super) async fn get_block_list(
    c: &RestClient,
    name: &str,
    if_match: Option<&str>,
) -> Result<Vec<CommittedBlock>, BlobError> {
    let op = Op::GetBlockList;
    let url = c.blob_url_with(
        name,
        &[("comp", "blocklist"), ("blocklisttype", "committed")],
    );
    let want = if_match;
    let if_match = if_match.map(|e| if_match_header(op, name, e)).transpose()?;
    // The body is read inside the retried attempt: a reset while reading it is retried.
    c.run(op, || async {
        let resp = c
            .attempt(Method::GET, op, name, &url, |r| match &if_match {
                Some(v) => r.header("if-match", v.clone()),
                None => r,
            })
            .await?;
        check_answer_etag(op, name, want, resp.headers()).map_err(|e| (e, None))?;
        let body = c.body_text(op, name, resp).await?;
        xml::parse_block_list(&body)
            .map_err(|e| (BlobError::new(ErrorKind::Other, op.name(), name, e), None))
    })
    .await
}

pub(super) async fn uncommitted_blocks(
    c: &RestClient,
    name: &str,
) -> Result<Vec<CommittedBlock>, BlobError> {
    Ok(uncommitted_list(c, name)
        .await?
        .map(|(_, blocks)| blocks)
        .unwrap_or_default())
}

/// The ETag Get Block List (uncommitted blocks) answers with: a blob with uncommitted blocks
/// only has one in Azurite (see [`crate::blob::BlobClient::uncommitted_etag`]).
pub(super) async fn uncommitted_etag(
    c: &RestClient,
    name: &str,
) -> Result<Option<String>, BlobError> {
    Ok(uncommitted_list(c, name).await?.and_then(|(etag, _)| etag))
}

/// Get Block List of the uncommitted blocks: the answer's ETag and the blocks, or None when
/// the blob does not exist at all.
async fn uncommitted_list(
    c: &RestClient,
    name: &str,
) -> Result<Option<(Option<String>, Vec<CommittedBlock>)>, BlobError> {
    let op = Op::GetBlockList;
    let url = c.blob_url_with(
        name,
        &[("comp", "blocklist"), ("blocklisttype", "uncommitted")],
    );
    let result = c
        .run(op, || async {
            let resp = c.attempt(Method::GET, op, name, &url, |r| r).await?;
            let etag = header_str(resp.headers(), "etag").map(str::to_string);
            let body = c.body_text(op, name, resp).await?;
            let blocks = xml::parse_uncommitted_blocks(&body)
                .map_err(|e| (BlobError::new(ErrorKind::Other, op.name(), name, e), None))?;
            Ok(Some((etag, blocks)))
        })
        .await;
    match result {
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        r => r,
    }
}

/// Checks an `If-Match` the service may not have applied: Azurite 3.37 ignores conditional
/// headers on Get Block List, so the answer's ETag is compared here too (the service sends
/// it when the blob has committed blocks; without it there is nothing to compare).
fn check_answer_etag(
    op: Op,
    name: &str,
    if_match: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), BlobError> {
    match (if_match, header_str(headers, "etag")) {
        (Some(want), Some(got)) if want != "*" && want != got => {
            let mut e = BlobError::new(
                ErrorKind::ConditionNotMet,
                op.name(),
                name,
                "the blob is no longer the version given in If-Match",
            );
            e.status = Some(412);
            e.code = Some("ConditionNotMet".into());
            e.request_id = super::request_id(headers).map(Into::into);
            Err(e)
        }
        _ => Ok(()),
    }
}

pub(super) async fn delete_blob(
    c: &RestClient,
    name: &str,
    if_match: Option<&str>,
) -> Result<(), BlobError> {
    let op = Op::DeleteBlob;
    let url = c.blob_url(name);
    let if_match = if_match.map(|e| if_match_header(op, name, e)).transpose()?;
    c.run(op, || {
        c.attempt(Method::DELETE, op, name, &url, |r| {
            // Without it, deleting a blob that has snapshots fails (409 SnapshotsPresent).
            let r = r.header("x-ms-delete-snapshots", "include");
            match &if_match {
                Some(v) => r.header("if-match", v.clone()),
                None => r,
            }
        })
    })
    .await?;
    Ok(())
}

pub(super) async fn copy_blob(
    c: &RestClient,
    dest: &str,
    source: &str,
    source_if_match: Option<&str>,
    opts: &WriteOptions,
) -> Result<CopyInfo, BlobError> {
    let op = Op::CopyBlob;
    // Copy Blob takes no content type: the copy has the source's. Without metadata the copy
    // has the source's metadata too.
    let headers = write_headers(op, dest, opts, false, true)?;
    let source_if_match = source_if_match
        .map(|e| if_match_header(op, dest, e))
        .transpose()?;
    let url = c.blob_url(dest);
    // Same retry caveat as Put Block List with conditions.
    let resp = c
        .run(op, || async {
            let (source_url, token) = c.copy_source(op, dest, source).map_err(|e| (e, None))?;
            c.put_empty(op, dest, &url, |r| {
                let r = with_headers(r, &headers).header("x-ms-copy-source", source_url);
                match &source_if_match {
                    Some(v) => r.header("x-ms-source-if-match", v.clone()),
                    None => r,
                }
            })
            .await
            .map_err(|e| scrubbed(e, &token))
        })
        .await?;
    copy_info_from(op, dest, resp.headers())?.ok_or_else(|| {
        BlobError::new(
            ErrorKind::Other,
            op.name(),
            dest,
            "answer lacks the x-ms-copy-id header",
        )
    })
}

pub(super) async fn copy_info(c: &RestClient, name: &str) -> Result<Option<CopyInfo>, BlobError> {
    let op = Op::GetBlobProperties;
    let url = c.blob_url(name);
    let resp = c
        .run(op, || c.attempt(Method::HEAD, op, name, &url, |r| r))
        .await?;
    let source = copy_source_name(&c.container_url(), resp.headers());
    Ok(copy_info_from(op, name, resp.headers())?.map(|i| CopyInfo { source, ..i }))
}

/// The blob of this container named by `x-ms-copy-source` (a URL, whose query may hold a
/// token: only its path is read, and nothing of it is logged).
fn copy_source_name(container: &Url, headers: &HeaderMap) -> Option<String> {
    let url = Url::parse(header_str(headers, "x-ms-copy-source")?).ok()?;
    if url.host_str() != container.host_str() {
        return None;
    }
    let prefix = format!("{}/", container.path().trim_end_matches('/'));
    let rest = url.path().strip_prefix(&prefix)?;
    percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .ok()
        .map(|n| n.into_owned())
}

pub(super) async fn set_metadata(
    c: &RestClient,
    name: &str,
    opts: &WriteOptions,
) -> Result<Committed, BlobError> {
    let op = Op::SetBlobMetadata;
    // Metadata and If-Match only: Set Blob Metadata changes no content type, and the blob
    // exists (If-None-Match: * is not sent, as the fake ignores it too).
    let headers = write_headers(op, name, opts, false, false)?;
    let url = c.blob_url_with(name, &[("comp", "metadata")]);
    let resp = c
        .run(op, || {
            c.put_empty(op, name, &url, |r| with_headers(r, &headers))
        })
        .await?;
    committed_from(op, name, resp.headers())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::retry::RetryPolicy;
    use crate::blob::ContainerUrl;
    use crate::credential::Credential;
    use std::sync::Arc;

    fn client(url: &str, token: &str) -> RestClient {
        let (c, _) = ContainerUrl::parse(url).unwrap();
        RestClient::new(
            c,
            Arc::new(Credential::new(token.into())),
            RetryPolicy::none(),
        )
        .unwrap()
    }

    #[test]
    fn block_ids_are_percent_encoded_in_the_query() {
        let c = client("http://127.0.0.1:10000/devstoreaccount1/box", "sig=x");
        let url = c.blob_url_with(
            "dir one/ü #?%+&.txt",
            &[("comp", "block"), ("blockid", "AB+/cd==")],
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/box/dir%20one/%C3%BC%20%23%3F%25%2B%26.txt?comp=block&blockid=AB%2B%2Fcd%3D%3D"
        );
        // The service gets the id back as it was.
        let id: Vec<_> = url.query_pairs().filter(|(k, _)| k == "blockid").collect();
        assert_eq!(id[0].1, "AB+/cd==");
    }

    #[test]
    fn copy_source_carries_the_current_token_and_is_sensitive() {
        let c = client(
            "https://acct.blob.core.windows.net/box",
            "sv=2023-11-03&sr=c&sp=racwdl&sig=ab%2Bcd%3D",
        );
        let (v, token) = c
            .copy_source(Op::CopyBlob, "dst", "dir one/a#b.txt")
            .unwrap();
        assert!(v.is_sensitive());
        assert_eq!(
            v.to_str().unwrap(),
            "https://acct.blob.core.windows.net/box/dir%20one/a%23b.txt?sv=2023-11-03&sr=c&sp=racwdl&sig=ab%2Bcd%3D"
        );
        assert_eq!(token, "sv=2023-11-03&sr=c&sp=racwdl&sig=ab%2Bcd%3D");
        assert!(!format!("{v:?}").contains("sig"));
        c.credential.replace("sv=2023-11-03&sig=NEW".into());
        let (v, _) = c.copy_source(Op::CopyBlob, "dst", "s").unwrap();
        assert!(v
            .to_str()
            .unwrap()
            .ends_with("/box/s?sv=2023-11-03&sig=NEW"));
    }

    #[test]
    fn scrub_removes_the_token_and_signature_forms() {
        let token = "sv=1&sig=ab%2Bcd%3D";
        for text in [
            "copy source https://h/c/b?sv=1&sig=ab%2Bcd%3D failed",
            "sig ab+cd= leaked",
            "sig ab%2Bcd%3D leaked",
        ] {
            let s = scrub(text, token);
            assert!(!s.contains("ab+cd=") && !s.contains("ab%2Bcd%3D"), "{s}");
            assert!(s.contains("<redacted>"), "{s}");
        }
        assert_eq!(scrub("nothing here", token), "nothing here");
    }

    #[test]
    fn md5_and_ranges() {
        // RFC 1321 test vectors, base64.
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
        assert_eq!(content_md5(b"abc"), "kAFQmDzST7DWlj99KOF/cg==");
        assert_eq!(source_range(0, 1), "bytes=0-0");
        assert_eq!(source_range(2, 3), "bytes=2-4");
    }

    fn opts(meta: &[(&str, &str)]) -> WriteOptions {
        WriteOptions {
            metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn write_headers_carry_metadata_type_and_conditions() {
        let mut o = opts(&[("hdi_isfolder", "true"), ("Mode", "0644")]);
        o.content_type = Some("text/plain".into());
        o.if_match = Some("\"0x8D1\"".into());
        o.if_none_match_any = true;
        let h = write_headers(Op::PutBlob, "b", &o, true, true).unwrap();
        assert_eq!(h["x-ms-meta-hdi_isfolder"], "true");
        assert_eq!(h["x-ms-meta-mode"], "0644");
        assert_eq!(h["x-ms-blob-content-type"], "text/plain");
        assert_eq!(h["if-match"], "\"0x8D1\"");
        assert_eq!(h["if-none-match"], "*");
        let h = write_headers(Op::SetBlobMetadata, "b", &o, false, false).unwrap();
        assert!(h.get("x-ms-blob-content-type").is_none());
        assert!(h.get("if-none-match").is_none());
        assert_eq!(h["if-match"], "\"0x8D1\"");
        let h = write_headers(Op::PutBlob, "b", &WriteOptions::default(), true, true).unwrap();
        assert!(h.is_empty());
    }

    #[test]
    fn metadata_that_cannot_be_a_header_is_refused() {
        for (k, v) in [
            ("owner", "Jürgen"),
            ("owner", "a\nb"),
            ("1abc", "x"),
            ("a-b", "x"),
            ("", "x"),
            ("ü", "x"),
        ] {
            let e = write_headers(Op::PutBlob, "b", &opts(&[(k, v)]), true, true).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Other, "{k}={v}");
            assert!(e.detail.contains("metadata"), "{}", e.detail);
        }
        write_headers(
            Op::PutBlob,
            "b",
            &opts(&[("_a1", "tab\tand space ~")]),
            true,
            true,
        )
        .unwrap();
    }

    #[test]
    fn copy_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(copy_info_from(Op::CopyBlob, "b", &h).unwrap(), None);
        h.insert("x-ms-copy-id", "id1".parse().unwrap());
        h.insert("x-ms-copy-status", "success".parse().unwrap());
        assert_eq!(
            copy_info_from(Op::CopyBlob, "b", &h).unwrap(),
            Some(CopyInfo {
                id: "id1".into(),
                state: CopyState::Success,
                source: None,
            })
        );
        h.insert("x-ms-copy-status", "pending".parse().unwrap());
        assert_eq!(
            copy_info_from(Op::CopyBlob, "b", &h)
                .unwrap()
                .unwrap()
                .state,
            CopyState::Pending
        );
        h.insert("x-ms-copy-status", "failed".parse().unwrap());
        h.insert(
            "x-ms-copy-status-description",
            "500 InternalError".parse().unwrap(),
        );
        assert_eq!(
            copy_info_from(Op::CopyBlob, "b", &h)
                .unwrap()
                .unwrap()
                .state,
            CopyState::Failed("500 InternalError".into())
        );
        h.insert("x-ms-copy-status", "weird".parse().unwrap());
        assert_eq!(
            copy_info_from(Op::CopyBlob, "b", &h).unwrap_err().kind,
            ErrorKind::Other
        );
    }

    #[test]
    fn the_copy_source_is_read_as_a_blob_name_of_this_container() {
        let container = Url::parse("http://127.0.0.1:10000/devstoreaccount1/box").unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(copy_source_name(&container, &h), None);
        h.insert(
            "x-ms-copy-source",
            "http://127.0.0.1:10000/devstoreaccount1/box/dir%20one/a%0Ab?sv=1&sig=x"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            copy_source_name(&container, &h).as_deref(),
            Some("dir one/a\nb")
        );
        h.insert(
            "x-ms-copy-source",
            "http://127.0.0.1:10000/devstoreaccount1/other/x"
                .parse()
                .unwrap(),
        );
        assert_eq!(copy_source_name(&container, &h), None);
    }

    #[test]
    fn answer_etag_is_checked_against_if_match() {
        let mut h = HeaderMap::new();
        check_answer_etag(Op::GetBlockList, "b", Some("\"0x1\""), &h).unwrap();
        h.insert("etag", "\"0x2\"".parse().unwrap());
        check_answer_etag(Op::GetBlockList, "b", None, &h).unwrap();
        check_answer_etag(Op::GetBlockList, "b", Some("\"0x2\""), &h).unwrap();
        check_answer_etag(Op::GetBlockList, "b", Some("*"), &h).unwrap();
        let e = check_answer_etag(Op::GetBlockList, "b", Some("\"0x1\""), &h).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ConditionNotMet);
        assert_eq!(e.code.as_deref(), Some("ConditionNotMet"));
    }

    #[test]
    fn committed_version_from_headers() {
        let mut h = HeaderMap::new();
        assert!(committed_from(Op::PutBlob, "b", &h).is_err());
        h.insert("etag", "\"0x8DC\"".parse().unwrap());
        h.insert(
            "last-modified",
            "Tue, 03 Jan 2023 11:22:33 GMT".parse().unwrap(),
        );
        let c = committed_from(Op::PutBlob, "b", &h).unwrap();
        assert_eq!(c.etag, "\"0x8DC\"");
        assert_eq!(
            c.last_modified,
            httpdate::parse_http_date("Tue, 03 Jan 2023 11:22:33 GMT").unwrap()
        );
    }
}
