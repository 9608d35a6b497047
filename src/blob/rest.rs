//! The Blob REST API over HTTP (reqwest with rustls), signed with a SAS.
//!
//! URLs are built with the `url` crate (blob names percent-encoded per path segment); the token
//! is appended at send time from the [`Credential`]. Nothing here logs or reports a URL: errors
//! and log lines name the operation and the blob, so the signature never leaks.
//!
//! Metrics: every attempt is counted by operation and status, every attempt after the first
//! of a call as a retry, and body bytes as they go out and come in ([`crate::metrics`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use url::Url;

// The write operations, in src/blob/rest_write.rs: a child module, so that it shares the
// request machinery below without widening its visibility.
#[path = "rest_write.rs"]
mod write;

use super::retry::RetryPolicy;
use super::xml;
use super::{
    BlobClient, BlobError, BlobProps, ByteStream, Committed, CommittedBlock, ContainerUrl,
    CopyInfo, ErrorKind, ListPage, ListRequest, WriteOptions,
};
use crate::credential::Credential;
use crate::metrics::{self, Metrics, Op};
use bytes::Bytes;

/// What is percent-encoded in a segment of a blob name: everything but the unreserved
/// characters of RFC 3986.
const BLOB_NAME_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The REST API version sent as `x-ms-version`.
pub const API_VERSION: &str = "2023-11-03";

pub(super) type AttemptError = (BlobError, Option<Duration>);

/// How long a request refused for its SAS waits for a new token.
const REFRESH_WAIT: Duration = Duration::from_secs(30);

/// The service refused the signature itself (not a missing permission).
fn is_sas_refused(e: &BlobError) -> bool {
    e.kind == ErrorKind::Forbidden
        && matches!(
            e.code.as_deref(),
            Some("AuthenticationFailed" | "AuthorizationFailure")
        )
}

/// A Blob service client for one container.
pub struct RestClient {
    http: reqwest::Client,
    container: ContainerUrl,
    credential: Arc<Credential>,
    retry: RetryPolicy,
    metrics: &'static Metrics,
}

impl RestClient {
    pub fn new(
        container: ContainerUrl,
        credential: Arc<Credential>,
        retry: RetryPolicy,
    ) -> Result<Self, String> {
        Self::with_read_timeout(container, credential, retry, Duration::from_secs(30))
    }

    /// A client whose requests give up (and are retried) after `read_timeout` without a byte
    /// of answer.
    pub fn with_read_timeout(
        container: ContainerUrl,
        credential: Arc<Credential>,
        retry: RetryPolicy,
        read_timeout: Duration,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("blobmount/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(read_timeout)
            // Below Azure's load balancers' idle timeout (4 min); a server that closes sooner
            // (Azurite: 5 s) makes a reused connection fail once, and that is retried.
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", e.without_url()))?;
        Ok(RestClient {
            http,
            container,
            credential,
            retry,
            metrics: metrics::global(),
        })
    }

    /// Counts into `metrics` instead of the process-wide [`metrics::global`] (for tests).
    pub fn with_metrics(mut self, metrics: &'static Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn container(&self) -> &ContainerUrl {
        &self.container
    }

    fn container_url(&self) -> Url {
        let mut url = self.container.account_url.clone();
        url.path_segments_mut()
            .expect("http(s) URLs have a path")
            .pop_if_empty()
            .push(&self.container.container);
        url
    }

    /// The URL of blob `name`: each `/`-separated segment percent-encoded, every byte but
    /// ASCII letters, digits and `-._~`. (Not through `path_segments_mut`: the URL parser
    /// behind it drops tabs and newlines, which would silently change the name.)
    fn blob_url(&self, name: &str) -> Url {
        let mut url = self.container_url();
        let encoded: Vec<String> = name
            .split('/')
            .map(|segment| utf8_percent_encode(segment, BLOB_NAME_SEGMENT).to_string())
            .collect();
        let path = format!("{}/{}", url.path(), encoded.join("/"));
        url.set_path(&path);
        url
    }

    /// Runs a request with the retry policy. If the service refuses the SAS itself (revoked
    /// early, clock skew), a new token is asked for, and the request is tried once more with it.
    /// A token known to be expired is not sent when nothing can replace it. Each attempt of
    /// `op` after the first is counted as a retry.
    pub(super) async fn run<T, F, Fut>(&self, op: Op, mut attempt: F) -> Result<T, BlobError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, AttemptError>>,
    {
        let mut tries = 0u32;
        let mut attempt = || {
            if tries > 0 {
                self.metrics.retry(op);
            }
            tries += 1;
            attempt()
        };
        let seen = self.credential.generation();
        let current = self.credential.current();
        if current.is_expired(time::OffsetDateTime::now_utc())
            && !self.credential.refreshed_since(seen, REFRESH_WAIT).await
        {
            let se = current.expiry.map(|t| t.to_string()).unwrap_or_default();
            let mut e = BlobError::new(
                ErrorKind::Forbidden,
                "request",
                "",
                format!("SAS expired at {se}"),
            );
            e.code = Some("SasExpired".into());
            tracing::warn!("SAS expired at {se}: no request sent");
            return Err(e);
        }
        let seen = self.credential.generation();
        match self.retry.run(&mut attempt).await {
            Err(e)
                if is_sas_refused(&e)
                    && self.credential.refreshed_since(seen, REFRESH_WAIT).await =>
            {
                tracing::info!(
                    op = e.op,
                    "the service refused the SAS; retrying once with a new one"
                );
                let lost = e.after_lost_answer;
                self.retry.run(&mut attempt).await.map_err(|mut e| {
                    e.after_lost_answer |= lost;
                    self.explain_refusal(e)
                })
            }
            r => r.map_err(|e| self.explain_refusal(e)),
        }
    }

    /// A refused SAS: says so, with when the token expires.
    fn explain_refusal(&self, mut e: BlobError) -> BlobError {
        if is_sas_refused(&e) {
            let until = match self.credential.current().expiry {
                Some(se) => format!("it expires at {se}"),
                None => "it has no expiry".to_string(),
            };
            e.detail = format!("the SAS was rejected ({until}): {}", e.detail);
        }
        e
    }

    /// The body of an answer as text, counted; a transport error while reading it is
    /// transient.
    async fn body_text(
        &self,
        op: Op,
        target: &str,
        resp: Response,
    ) -> Result<String, AttemptError> {
        let body = resp.text().await.map_err(|e| {
            (
                BlobError::unanswered(op.name(), target, transport_detail(&e)),
                None,
            )
        })?;
        self.metrics.received(body.len() as u64);
        Ok(body)
    }

    /// Sends one attempt of a request (callers wrap it in the retry policy, together with
    /// reading the body). The token is added to the URL at send time, so a refreshed token is
    /// used by the next attempt. Counts the attempt, and a body given as bytes once the
    /// request is answered (a streamed body counts itself as it goes).
    async fn attempt<F>(
        &self,
        method: Method,
        op: Op,
        target: &str,
        url: &Url,
        build: F,
    ) -> Result<Response, AttemptError>
    where
        F: FnOnce(RequestBuilder) -> RequestBuilder,
    {
        let started = Instant::now();
        let mut signed = url.clone();
        let token = self.credential.current();
        let query = match signed.query() {
            Some(q) if !q.is_empty() => format!("{q}&{}", token.expose()),
            _ => token.expose().to_string(),
        };
        signed.set_query(Some(&query));
        let req = build(
            self.http
                .request(method, signed)
                .header("x-ms-version", API_VERSION),
        );
        let result = match req.build() {
            Ok(req) => {
                let body = req.body().and_then(|b| b.as_bytes()).map_or(0, <[u8]>::len);
                let result = self.http.execute(req).await;
                let status = result.as_ref().ok().map(|r| r.status().as_u16());
                self.metrics.request(op, status);
                if status.is_some() {
                    self.metrics.sent(body as u64);
                }
                result
            }
            Err(e) => Err(e),
        };
        let ms = started.elapsed().as_millis() as u64;
        let op = op.name();
        match result {
            Ok(resp) if resp.status().is_success() => {
                tracing::debug!(
                    op,
                    target,
                    status = resp.status().as_u16(),
                    request_id = request_id(resp.headers()).unwrap_or_default(),
                    ms,
                    "request"
                );
                Ok(resp)
            }
            Ok(resp) => {
                let err = error_from_response(op, target, resp, self.metrics).await;
                tracing::debug!(
                    op,
                    target,
                    status = err.0.status,
                    code = err.0.code.as_deref().unwrap_or_default(),
                    request_id = err.0.request_id.as_deref().unwrap_or_default(),
                    ms,
                    "request failed"
                );
                Err(err)
            }
            Err(e) => {
                let mut err =
                    BlobError::new(ErrorKind::Transient, op, target, transport_detail(&e));
                // Unless it never connected, the request may have been carried out.
                err.unanswered = !e.is_connect();
                tracing::debug!(op, target, ms, "request failed: {}", err.detail);
                Err((err, None))
            }
        }
    }
}

/// The cause of a transport error, without the URL (which carries the token).
fn transport_detail(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    if e.is_timeout() {
        parts.push("timed out".to_string());
    } else if e.is_connect() {
        parts.push("cannot connect".to_string());
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    if parts.is_empty() {
        parts.push("request failed".to_string());
    }
    parts.join(": ")
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-ms-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn error_from_response(
    op: &'static str,
    target: &str,
    resp: Response,
    metrics: &Metrics,
) -> AttemptError {
    let status = resp.status();
    let headers = resp.headers().clone();
    let retry_after = retry_after(&headers);
    let body = resp.text().await.unwrap_or_default();
    metrics.received(body.len() as u64);
    let (body_code, message) = xml::parse_error(&body);
    let code = header_str(&headers, "x-ms-error-code")
        .map(str::to_string)
        .or(body_code);
    let mut err = BlobError::new(
        BlobError::kind_for_status(status.as_u16(), code.as_deref()),
        op,
        target,
        message.unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string()),
    );
    err.status = Some(status.as_u16());
    err.unanswered = BlobError::status_leaves_outcome_open(status.as_u16());
    err.code = code;
    err.request_id = request_id(&headers).map(Into::into);
    (err, retry_after)
}

/// `x-ms-retry-after-ms`, or `Retry-After` in seconds.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = header_str(headers, "x-ms-retry-after-ms").and_then(|v| v.trim().parse().ok())
    {
        return Some(Duration::from_millis(ms));
    }
    header_str(headers, "retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

fn props_from_headers(name: &str, headers: &HeaderMap) -> Result<BlobProps, BlobError> {
    let bad = |what: &str| {
        BlobError::new(
            ErrorKind::Other,
            "Get Blob Properties",
            name,
            format!("answer lacks a valid {what} header"),
        )
    };
    let size = header_str(headers, "content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("Content-Length"))?;
    let etag = header_str(headers, "etag")
        .ok_or_else(|| bad("ETag"))?
        .to_string();
    let last_modified = header_str(headers, "last-modified")
        .and_then(|v| xml::parse_http_date(v).ok())
        .ok_or_else(|| bad("Last-Modified"))?;
    let metadata: HashMap<String, String> = headers
        .iter()
        .filter_map(|(k, v)| {
            let key = k.as_str().strip_prefix("x-ms-meta-")?;
            Some((key.to_ascii_lowercase(), v.to_str().ok()?.to_string()))
        })
        .collect();
    Ok(BlobProps {
        name: name.to_string(),
        size,
        etag,
        last_modified,
        metadata,
    })
}

#[async_trait]
impl BlobClient for RestClient {
    async fn list(&self, req: ListRequest<'_>) -> Result<ListPage, BlobError> {
        let mut url = self.container_url();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("restype", "container")
                .append_pair("comp", "list")
                .append_pair("include", "metadata");
            if !req.prefix.is_empty() {
                q.append_pair("prefix", req.prefix);
            }
            if let Some(d) = req.delimiter {
                q.append_pair("delimiter", d);
            }
            if let Some(m) = req.marker {
                q.append_pair("marker", m);
            }
            if let Some(n) = req.max_results {
                q.append_pair("maxresults", &n.to_string());
            }
        }
        let target = if req.prefix.is_empty() {
            "/"
        } else {
            req.prefix
        };
        let op = Op::ListBlobs;
        // The body is read inside the retried attempt: a reset while reading it is retried.
        self.run(op, || async {
            let resp = self.attempt(Method::GET, op, target, &url, |r| r).await?;
            let body = self.body_text(op, target, resp).await?;
            xml::parse_list(&body)
                .map_err(|e| (BlobError::new(ErrorKind::Other, op.name(), target, e), None))
        })
        .await
    }

    async fn properties(&self, name: &str) -> Result<BlobProps, BlobError> {
        let url = self.blob_url(name);
        let op = Op::GetBlobProperties;
        let resp = self
            .run(op, || self.attempt(Method::HEAD, op, name, &url, |r| r))
            .await?;
        props_from_headers(name, resp.headers())
    }

    async fn get_stream(
        &self,
        name: &str,
        offset: u64,
        len: u64,
        if_match: Option<&str>,
    ) -> Result<ByteStream, BlobError> {
        let url = self.blob_url(name);
        let range = format!("bytes={}-{}", offset, offset + len.max(1) - 1);
        let op = Op::GetBlob;
        let resp = self
            .run(op, || {
                self.attempt(Method::GET, op, name, &url, |r| {
                    let r = r.header("x-ms-range", &range);
                    match if_match {
                        Some(etag) => r.header("If-Match", etag),
                        None => r,
                    }
                })
            })
            .await?;
        if resp.status() != StatusCode::PARTIAL_CONTENT && resp.status() != StatusCode::OK {
            return Err(BlobError::new(
                ErrorKind::Other,
                "Get Blob",
                name,
                format!("unexpected status {}", resp.status()),
            ));
        }
        let target = name.to_string();
        let metrics = self.metrics;
        Ok(resp
            .bytes_stream()
            .map(move |chunk| {
                if let Ok(c) = &chunk {
                    metrics.received(c.len() as u64);
                }
                chunk.map_err(|e| {
                    BlobError::new(
                        ErrorKind::Transient,
                        "Get Blob",
                        &target,
                        transport_detail(&e),
                    )
                })
            })
            .boxed())
    }

    async fn put_block(&self, name: &str, block_id: &str, data: Bytes) -> Result<(), BlobError> {
        write::put_block(self, name, block_id, data).await
    }

    async fn put_block_from_file(
        &self,
        name: &str,
        block_id: &str,
        file: std::sync::Arc<std::fs::File>,
        offset: u64,
        len: u64,
    ) -> Result<crate::blob::Md5Digest, BlobError> {
        write::put_block_from_file(self, name, block_id, file, offset, len).await
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
        write::put_block_from_url(self, name, block_id, source, offset, len, source_if_match).await
    }

    async fn put_block_list(
        &self,
        name: &str,
        ids: &[String],
        opts: &WriteOptions,
    ) -> Result<Committed, BlobError> {
        write::put_block_list(self, name, ids, opts).await
    }

    async fn put_blob(
        &self,
        name: &str,
        data: Bytes,
        opts: &WriteOptions,
    ) -> Result<Committed, BlobError> {
        write::put_blob(self, name, data, opts).await
    }

    async fn get_block_list(
        &self,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<Vec<CommittedBlock>, BlobError> {
        write::get_block_list(self, name, if_match).await
    }

    async fn delete_blob(&self, name: &str, if_match: Option<&str>) -> Result<(), BlobError> {
        write::delete_blob(self, name, if_match).await
    }

    async fn copy_blob(
        &self,
        dest: &str,
        source: &str,
        source_if_match: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<CopyInfo, BlobError> {
        write::copy_blob(self, dest, source, source_if_match, opts).await
    }

    async fn copy_info(&self, name: &str) -> Result<Option<CopyInfo>, BlobError> {
        write::copy_info(self, name).await
    }

    async fn set_metadata(&self, name: &str, opts: &WriteOptions) -> Result<Committed, BlobError> {
        write::set_metadata(self, name, opts).await
    }

    async fn uncommitted_blocks(&self, name: &str) -> Result<Vec<CommittedBlock>, BlobError> {
        write::uncommitted_blocks(self, name).await
    }

    async fn uncommitted_etag(&self, name: &str) -> Result<Option<String>, BlobError> {
        write::uncommitted_etag(self, name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str) -> RestClient {
        let (c, _) = ContainerUrl::parse(url).unwrap();
        RestClient::new(
            c,
            Arc::new(Credential::new("sig=x".into())),
            RetryPolicy::none(),
        )
        .unwrap()
    }

    #[test]
    fn blob_urls_encode_each_segment() {
        let c = client("http://127.0.0.1:10000/devstoreaccount1/box");
        assert_eq!(
            c.blob_url("dir one/a#b?c%d+e&f ü.txt").as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/box/dir%20one/a%23b%3Fc%25d%2Be%26f%20%C3%BC.txt"
        );
        // Every byte survives: tabs, newlines and other controls too (the URL parser would
        // drop tabs and newlines), and each decodes back to the name.
        let name: String = (1u8..0x80).map(char::from).filter(|c| *c != '/').collect();
        let name = format!("{name}/\u{1F600} e\u{301} \u{E9}");
        let url = c.blob_url(&name);
        let path = url.path().strip_prefix("/devstoreaccount1/box/").unwrap();
        assert!(path.bytes().all(|b| b.is_ascii_graphic()), "{path}");
        assert_eq!(
            percent_encoding::percent_decode_str(path)
                .decode_utf8()
                .unwrap(),
            name
        );
        let c = client("https://acct.blob.core.windows.net/box");
        assert_eq!(
            c.blob_url("x/y").as_str(),
            "https://acct.blob.core.windows.net/box/x/y"
        );
        assert_eq!(
            c.container_url().as_str(),
            "https://acct.blob.core.windows.net/box"
        );
    }

    #[test]
    fn retry_after_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("x-ms-retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
    }
}

#[cfg(test)]
#[path = "rest_metrics_tests.rs"]
mod metrics_tests;
