//! Direct Blob REST calls against the emulator, not through the mount: seed blobs before a
//! test and check what the mount did after it.
//!
//! Authorised with an account SAS made by `blobmount::sas::sign_account_sas` (so a broken signer
//! shows up here as 403s, and the tests make no use of any other signing code).
//!
//! Blocking API on top of async reqwest: each `Rest` owns a small current-thread tokio runtime
//! and `block_on`s its requests. Chosen over reqwest's `blocking` feature so that the tests use
//! reqwest with exactly the features the product is built with (a dev-dependency feature would
//! be unified into the library under test) and no extra code is compiled. Consequence: do not
//! call `Rest` from inside an async context (block_on would panic there); tests are plain
//! `#[test]` functions.

use super::{ACCOUNT, ACCOUNT_KEY};
use blobmount::sas::{
    sign_account_sas, sign_service_sas, AccountSasParams, ServiceSasParams, DEFAULT_VERSION,
};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;
use url::Url;

/// Size, ETag and user metadata of a blob. Metadata keys are lowercase (HTTP header names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobProperties {
    pub len: u64,
    pub etag: String,
    pub metadata: BTreeMap<String, String>,
}

/// A response as [`Rest::raw`] got it.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// A header's value as text ("" if absent or not text).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct Rest {
    account_url: Url,
    account_sas: String,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Rest {
    /// A helper for the account at `account_url` (`http://127.0.0.1:PORT/devstoreaccount1`),
    /// authorised by an account SAS (services `b`, resource types `sco`, permissions `rwdlac`,
    /// valid for one day) signed with the well-known development key.
    pub fn new(account_url: &str) -> Rest {
        let account_url = Url::parse(account_url).expect("account url");
        let params = AccountSasParams {
            account: ACCOUNT.to_string(),
            services: "b".to_string(),
            resource_types: "sco".to_string(),
            permissions: "rwdlac".to_string(),
            start: None,
            expiry: Some(OffsetDateTime::now_utc() + time::Duration::days(1)),
            ip: None,
            protocol: None,
            version: DEFAULT_VERSION.to_string(),
            encryption_scope: None,
        };
        let account_sas = sign_account_sas(&params, ACCOUNT_KEY).expect("sign account SAS");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime for Rest");
        let client = reqwest::Client::builder()
            .no_proxy() // never send test traffic to an http_proxy from the environment
            .timeout(Duration::from_secs(120))
            // Azurite closes idle connections after 5 s: never reuse one that old.
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .expect("reqwest client");
        Rest {
            account_url,
            account_sas,
            client,
            rt,
        }
    }

    pub fn account_url(&self) -> &str {
        self.account_url.as_str().trim_end_matches('/')
    }

    /// `account_url/container[/blob path segments]?<account SAS>[&extra query]`. Blob names are
    /// split at '/' and every byte of a segment but ASCII letters and digits is
    /// percent-encoded (not by `path_segments_mut`, whose parser drops tabs and newlines).
    fn url(&self, container: &str, blob: Option<&str>, query: &[(&str, &str)]) -> Url {
        let mut u = self.account_url.clone();
        u.path_segments_mut()
            .expect("account url is a base")
            .pop_if_empty()
            .push(container);
        if let Some(name) = blob {
            let encoded: Vec<String> = name
                .split('/')
                .map(|seg| {
                    percent_encoding::utf8_percent_encode(seg, percent_encoding::NON_ALPHANUMERIC)
                        .to_string()
                })
                .collect();
            let path = format!("{}/{}", u.path(), encoded.join("/"));
            u.set_path(&path);
        }
        u.set_query(Some(&self.account_sas));
        if !query.is_empty() {
            let mut q = u.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        u
    }

    /// One request, any outcome: `Err` only for transport errors (connection refused or
    /// dropped, body cut short). `blob` is split at '/' into path segments.
    pub fn raw(
        &self,
        method: &str,
        container: &str,
        blob: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, String> {
        let method = Method::from_bytes(method.as_bytes()).expect("HTTP method");
        let url = self.url(container, blob, query);
        let mut req = self
            .client
            .request(method, url)
            .header("x-ms-version", DEFAULT_VERSION);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        self.rt.block_on(async {
            let resp = req
                .send()
                .await
                .map_err(|e| format!("request failed: {:?}", e.without_url()))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp
                .bytes()
                .await
                .map_err(|e| format!("reading the body failed: {:?}", e.without_url()))?;
            Ok(RawResponse {
                status,
                headers,
                body: body.to_vec(),
            })
        })
    }

    /// `raw`, panicking unless the status is one of `ok`.
    #[allow(clippy::too_many_arguments)]
    fn call(
        &self,
        what: &str,
        method: &str,
        container: &str,
        blob: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
        ok: &[u16],
    ) -> RawResponse {
        // One retry after a transport error (a connection the server closed as it was reused).
        let resp = self
            .raw(method, container, blob, query, headers, body.clone())
            .or_else(|_| self.raw(method, container, blob, query, headers, body))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        if !ok.contains(&resp.status) {
            panic!(
                "{what}: HTTP {} (wanted {ok:?}): {}",
                resp.status,
                resp.text()
            );
        }
        resp
    }

    /// Creates a container (an existing one is fine).
    pub fn create_container(&self, name: &str) {
        self.call(
            &format!("create container {name}"),
            "PUT",
            name,
            None,
            &[("restype", "container")],
            &[],
            Some(Vec::new()),
            &[201, 409],
        );
    }

    /// Uploads a block blob in one Put Blob request.
    pub fn put_blob(&self, container: &str, name: &str, bytes: &[u8]) {
        self.put_blob_with_metadata(container, name, bytes, &[]);
    }

    /// Uploads a block blob with user metadata (`x-ms-meta-KEY: VALUE`; keys must be valid
    /// C# identifiers, values ASCII).
    pub fn put_blob_with_metadata(
        &self,
        container: &str,
        name: &str,
        bytes: &[u8],
        metadata: &[(&str, &str)],
    ) {
        let meta: Vec<(String, &str)> = metadata
            .iter()
            .map(|(k, v)| (format!("x-ms-meta-{k}"), *v))
            .collect();
        // An empty body would go out without Content-Length, which Put Blob requires.
        let length = bytes.len().to_string();
        let mut headers: Vec<(&str, &str)> =
            vec![("x-ms-blob-type", "BlockBlob"), ("Content-Length", &length)];
        headers.extend(meta.iter().map(|(k, v)| (k.as_str(), *v)));
        self.call(
            &format!("put blob {container}/{name}"),
            "PUT",
            container,
            Some(name),
            &[],
            &headers,
            Some(bytes.to_vec()),
            &[201],
        );
    }

    /// The blob's content, or `None` if it does not exist.
    pub fn get_blob(&self, container: &str, name: &str) -> Option<Vec<u8>> {
        let what = format!("get blob {container}/{name}");
        let resp = self.call(
            &what,
            "GET",
            container,
            Some(name),
            &[],
            &[],
            None,
            &[200, 404],
        );
        (resp.status == 200).then_some(resp.body)
    }

    /// Size, ETag and metadata (Get Blob Properties), or `None` if the blob does not exist.
    pub fn blob_properties(&self, container: &str, name: &str) -> Option<BlobProperties> {
        let what = format!("head blob {container}/{name}");
        let resp = self.call(
            &what,
            "HEAD",
            container,
            Some(name),
            &[],
            &[],
            None,
            &[200, 404],
        );
        if resp.status == 404 {
            return None;
        }
        let headers = &resp.headers;
        let text = |h: &str| {
            headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("head blob {container}/{name}: no {h} header"))
                .to_string()
        };
        let len = text("content-length").parse().expect("content-length");
        let etag = text("etag");
        let metadata = headers
            .iter()
            .filter_map(|(k, v)| {
                let key = k.as_str().strip_prefix("x-ms-meta-")?;
                Some((key.to_string(), v.to_str().ok()?.to_string()))
            })
            .collect();
        Some(BlobProperties {
            len,
            etag,
            metadata,
        })
    }

    /// Deletes a blob; returns whether it existed.
    pub fn delete_blob(&self, container: &str, name: &str) -> bool {
        let what = format!("delete blob {container}/{name}");
        let resp = self.call(
            &what,
            "DELETE",
            container,
            Some(name),
            &[],
            &[],
            None,
            &[202, 404],
        );
        resp.status == 202
    }

    /// Names of all blobs whose name starts with `prefix` (flat listing, every page).
    pub fn list_blob_names(&self, container: &str, prefix: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut marker = String::new();
        loop {
            let mut query = vec![("restype", "container"), ("comp", "list")];
            if !prefix.is_empty() {
                query.push(("prefix", prefix));
            }
            if !marker.is_empty() {
                query.push(("marker", marker.as_str()));
            }
            let what = format!("list blobs in {container}");
            let resp = self.call(&what, "GET", container, None, &query, &[], None, &[200]);
            let text = String::from_utf8(resp.body).expect("list blobs: UTF-8 XML");
            let page: EnumerationResults = quick_xml::de::from_str(&text)
                .unwrap_or_else(|e| panic!("list blobs: cannot parse XML ({e}):\n{text}"));
            names.extend(page.blobs.blob.into_iter().map(|b| b.name));
            match page.next_marker {
                Some(m) if !m.is_empty() => marker = m,
                _ => return names,
            }
        }
    }

    /// A full path-style container SAS URL,
    /// `http://127.0.0.1:PORT/devstoreaccount1/CONTAINER?sv=...&sig=...`, from a service SAS
    /// (`sr=c`) with `permissions` (e.g. "rl", "racwdl") expiring `expiry_from_now` from now.
    pub fn container_sas_url(
        &self,
        container: &str,
        permissions: &str,
        expiry_from_now: Duration,
    ) -> String {
        let expiry = OffsetDateTime::now_utc()
            + time::Duration::try_from(expiry_from_now).expect("expiry fits time::Duration");
        container_sas_url(self.account_url(), container, permissions, None, expiry)
    }
}

/// A full container SAS URL for `account_url` with explicit start and expiry times (for tests
/// of not-yet-valid or expired tokens).
pub fn container_sas_url(
    account_url: &str,
    container: &str,
    permissions: &str,
    start: Option<OffsetDateTime>,
    expiry: OffsetDateTime,
) -> String {
    let params = ServiceSasParams {
        start,
        ..ServiceSasParams::new(ACCOUNT, container, permissions, expiry)
    };
    let token = sign_service_sas(&params, ACCOUNT_KEY).expect("sign service SAS");
    let mut u = Url::parse(account_url).expect("account url");
    u.path_segments_mut()
        .expect("account url is a base")
        .pop_if_empty()
        .push(container);
    u.set_query(Some(&token));
    u.to_string()
}

/// The URL with the `sig` value hidden, for messages.
pub fn redact(url: &Url) -> String {
    let mut u = url.clone();
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "sig" { "REDACTED".into() } else { v };
                (k.into_owned(), v.into_owned())
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnumerationResults {
    #[serde(default)]
    blobs: Blobs,
    #[serde(default)]
    next_marker: Option<String>,
}

#[derive(Deserialize, Default)]
struct Blobs {
    #[serde(rename = "Blob", default)]
    blob: Vec<BlobItem>,
}

#[derive(Deserialize)]
struct BlobItem {
    #[serde(rename = "Name")]
    name: String,
}
