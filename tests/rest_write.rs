//! The write operations of `RestClient` against a real Azurite: each operation is called
//! through the client and its effect checked directly with the harness's REST helper (content,
//! metadata, block list), with odd blob names throughout. A proxy injects a 503 to check that
//! writes are retried, and records what was sent. Errors never show the SAS signature.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use blobmount::blob::rest::RestClient;
use blobmount::blob::retry::RetryPolicy;
use blobmount::blob::{
    BlobClient, BlobError, ContainerUrl, CopyInfo, CopyState, ErrorKind, WriteOptions, FOLDER_META,
};
use blobmount::token::Credential;
use bytes::Bytes;
use common::{
    container_sas_url, pseudo_random_bytes, unique_container, Azurite, Fault, Proxy, Rest,
};
use time::OffsetDateTime;

/// A name with a space, a directory, non-ASCII and URL-special characters.
const ODD: &str = "dir one/ü #?%+&.txt";

/// A quick retry policy: transient failures are retried, with short waits.
fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
    }
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    rest: Rest,
    container: String,
    azurite: Azurite,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let azurite = Azurite::start();
        let rest = azurite.rest();
        let container = unique_container(name);
        rest.create_container(&container);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        Fixture {
            rt,
            rest,
            container,
            azurite,
        }
    }

    /// A container SAS URL (`racwdl`, one hour) for the account at `account_url`.
    fn sas_url(&self, account_url: &str) -> String {
        container_sas_url(
            account_url,
            &self.container,
            "racwdl",
            None,
            OffsetDateTime::now_utc() + time::Duration::hours(1),
        )
    }

    /// A client straight to Azurite.
    fn client(&self) -> RestClient {
        client_for(&self.sas_url(&self.azurite.account_url()), quick_retries())
    }

    fn run<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    fn content(&self, name: &str) -> Option<Vec<u8>> {
        self.rest.get_blob(&self.container, name)
    }

    /// The committed block list as the service lists it: `(id, size)` in order.
    fn block_list(&self, name: &str) -> Vec<(String, u64)> {
        let resp = self
            .rest
            .raw(
                "GET",
                &self.container,
                Some(name),
                &[("comp", "blocklist"), ("blocklisttype", "committed")],
                &[],
                None,
            )
            .unwrap();
        assert_eq!(resp.status, 200, "{}", resp.text());
        blobmount::blob::xml::parse_block_list(&resp.text())
            .unwrap()
            .into_iter()
            .map(|b| (b.id, b.size))
            .collect()
    }

    fn metadata(&self, name: &str) -> Vec<(String, String)> {
        self.rest
            .blob_properties(&self.container, name)
            .unwrap_or_else(|| panic!("{name} does not exist"))
            .metadata
            .into_iter()
            .collect()
    }
}

fn client_for(sas_url: &str, retry: RetryPolicy) -> RestClient {
    let (container, token) = ContainerUrl::parse(sas_url).unwrap();
    RestClient::new(
        container,
        Arc::new(Credential::new(token.expect("a token"))),
        retry,
    )
    .unwrap()
}

/// Block ids of one length with '+', '/' and '=' in them (URL-special in a query).
fn block_id(i: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([0xfb, 0xef, 0xbe, 0xff, 0xff, 0xff, i])
}

fn ids(v: &[u8]) -> Vec<String> {
    v.iter().map(|&i| block_id(i)).collect()
}

fn meta(pairs: &[(&str, &str)]) -> WriteOptions {
    WriteOptions {
        metadata: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<_> = v
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    out.sort();
    out
}

fn expect_err<T: std::fmt::Debug>(
    r: Result<T, BlobError>,
    kind: ErrorKind,
    what: &str,
) -> BlobError {
    let e = r.expect_err(what);
    assert_eq!(e.kind, kind, "{what}: {e}");
    e
}

#[test]
fn blocks_commit_reuse_and_conditions() {
    let fx = Fixture::new("blocks");
    let c = fx.client();
    let parts = [
        pseudo_random_bytes(300_000, 1),
        pseudo_random_bytes(1, 2),
        pseudo_random_bytes(65_536, 3),
    ];
    for (i, part) in parts.iter().enumerate() {
        fx.run(c.put_block(ODD, &block_id(i as u8), Bytes::from(part.clone())))
            .unwrap();
    }
    // Staged blocks are invisible until committed.
    assert_eq!(fx.content(ODD), None);
    let mut first = meta(&[("mode", "0644")]);
    first.if_none_match_any = true;
    first.content_type = Some("text/plain".into());
    let v1 = fx
        .run(c.put_block_list(ODD, &ids(&[0, 1, 2]), &first))
        .unwrap();
    assert!(!v1.etag.is_empty());
    let whole: Vec<u8> = parts.concat();
    assert_eq!(fx.content(ODD).unwrap(), whole);
    assert_eq!(fx.metadata(ODD), pairs(&[("mode", "0644")]));
    let props = fx.run(c.properties(ODD)).unwrap();
    assert_eq!(props.etag, v1.etag);
    assert_eq!(props.last_modified, v1.last_modified);
    let listed = vec![
        (block_id(0), 300_000),
        (block_id(1), 1),
        (block_id(2), 65_536),
    ];
    assert_eq!(fx.block_list(ODD), listed);
    let got: Vec<_> = fx
        .run(c.get_block_list(ODD, None))
        .unwrap()
        .into_iter()
        .map(|b| (b.id, b.size))
        .collect();
    assert_eq!(got, listed);
    // Conditional Get Block List.
    fx.run(c.get_block_list(ODD, Some(&v1.etag))).unwrap();
    let e = expect_err(
        fx.run(c.get_block_list(ODD, Some("\"0x1\""))),
        ErrorKind::ConditionNotMet,
        "Get Block List with a stale ETag",
    );
    assert_eq!(e.status, Some(412));

    // A second commit reuses committed blocks 0 and 2 around a new block 3, conditionally.
    fx.run(c.put_block(ODD, &block_id(3), Bytes::from_static(b"-new-")))
        .unwrap();
    let second = WriteOptions {
        if_match: Some(v1.etag.clone()),
        ..meta(&[("mode", "0600"), ("owner", "me")])
    };
    let v2 = fx
        .run(c.put_block_list(ODD, &ids(&[2, 3, 0]), &second))
        .unwrap();
    assert_ne!(v2.etag, v1.etag);
    let expected: Vec<u8> = [&parts[2][..], b"-new-", &parts[0][..]].concat();
    assert_eq!(fx.content(ODD).unwrap(), expected);
    assert_eq!(
        fx.metadata(ODD),
        pairs(&[("mode", "0600"), ("owner", "me")])
    );
    assert_eq!(
        fx.block_list(ODD),
        vec![
            (block_id(2), 65_536),
            (block_id(3), 5),
            (block_id(0), 300_000)
        ]
    );

    // If-Match with the old version: 412 ConditionNotMet, nothing changes.
    let e = expect_err(
        fx.run(c.put_block_list(ODD, &ids(&[0]), &second)),
        ErrorKind::ConditionNotMet,
        "Put Block List with a stale If-Match",
    );
    assert_eq!(
        (e.status, e.code.as_deref()),
        (Some(412), Some("ConditionNotMet"))
    );
    let e = expect_err(
        fx.run(c.put_blob(ODD, Bytes::from_static(b"x"), &second)),
        ErrorKind::ConditionNotMet,
        "Put Blob with a stale If-Match",
    );
    assert_eq!(e.status, Some(412));
    // If-None-Match: * on an existing blob: 409 BlobAlreadyExists, as the fake says.
    let create = WriteOptions {
        if_none_match_any: true,
        ..Default::default()
    };
    let e = expect_err(
        fx.run(c.put_block_list(ODD, &ids(&[0]), &create)),
        ErrorKind::AlreadyExists,
        "Put Block List with If-None-Match: * on an existing blob",
    );
    assert_eq!(
        (e.status, e.code.as_deref()),
        (Some(409), Some("BlobAlreadyExists"))
    );
    let e = expect_err(
        fx.run(c.put_blob(ODD, Bytes::from_static(b"x"), &create)),
        ErrorKind::AlreadyExists,
        "Put Blob with If-None-Match: * on an existing blob",
    );
    assert_eq!(
        (e.status, e.code.as_deref()),
        (Some(409), Some("BlobAlreadyExists"))
    );
    assert_eq!(fx.content(ODD).unwrap(), expected);

    // An id never staged: 400 InvalidBlockList.
    let e = expect_err(
        fx.run(c.put_block_list(ODD, &ids(&[9]), &WriteOptions::default())),
        ErrorKind::Conflict,
        "Put Block List of an unknown block",
    );
    assert_eq!(
        (e.status, e.code.as_deref()),
        (Some(400), Some("InvalidBlockList"))
    );
    // Get Block List of a missing blob.
    expect_err(
        fx.run(c.get_block_list("missing", None)),
        ErrorKind::NotFound,
        "Get Block List of a missing blob",
    );
    // Put Blob writes a blob without blocks.
    let v = fx
        .run(c.put_blob(ODD, Bytes::from_static(b"small"), &WriteOptions::default()))
        .unwrap();
    assert_eq!(fx.content(ODD).unwrap(), b"small");
    assert_eq!(
        fx.run(c.get_block_list(ODD, Some(&v.etag))).unwrap(),
        vec![]
    );
    assert!(fx.metadata(ODD).is_empty());
}

#[test]
fn put_blob_folder_marker_and_delete() {
    let fx = Fixture::new("putblob");
    let c = fx.client();
    let dir = "dir one/sub ü #?%+&";
    let mut marker = meta(&[(FOLDER_META, "true")]);
    marker.if_none_match_any = true;
    let v = fx.run(c.put_blob(dir, Bytes::new(), &marker)).unwrap();
    let props = fx.rest.blob_properties(&fx.container, dir).unwrap();
    assert_eq!(props.len, 0);
    assert_eq!(props.etag, v.etag);
    assert_eq!(fx.metadata(dir), pairs(&[("hdi_isfolder", "true")]));
    assert!(fx.run(c.properties(dir)).unwrap().is_folder_marker());
    // Content type.
    let typed = WriteOptions {
        content_type: Some("text/csv; charset=utf-8".into()),
        ..Default::default()
    };
    fx.run(c.put_blob(ODD, Bytes::from_static(b"a,b\n"), &typed))
        .unwrap();
    let resp = fx
        .rest
        .raw("HEAD", &fx.container, Some(ODD), &[], &[], None)
        .unwrap();
    assert_eq!(resp.header("content-type"), "text/csv; charset=utf-8");
    assert_eq!(fx.content(ODD).unwrap(), b"a,b\n");

    // Delete: a stale If-Match is refused, the right one deletes, a second delete is 404.
    expect_err(
        fx.run(c.delete_blob(dir, Some("\"0x1\""))),
        ErrorKind::ConditionNotMet,
        "Delete Blob with a stale If-Match",
    );
    fx.run(c.delete_blob(dir, Some(&v.etag))).unwrap();
    assert_eq!(fx.rest.blob_properties(&fx.container, dir), None);
    let e = expect_err(
        fx.run(c.delete_blob(dir, None)),
        ErrorKind::NotFound,
        "Delete Blob of a missing blob",
    );
    assert_eq!(
        (e.status, e.code.as_deref()),
        (Some(404), Some("BlobNotFound"))
    );
    fx.run(c.delete_blob(ODD, None)).unwrap();
    assert_eq!(fx.content(ODD), None);

    // A blob with a snapshot is deleted with it (x-ms-delete-snapshots: include).
    fx.rest.put_blob(&fx.container, "snapped", b"v1");
    let snap = fx
        .rest
        .raw(
            "PUT",
            &fx.container,
            Some("snapped"),
            &[("comp", "snapshot")],
            &[("content-length", "0")],
            Some(Vec::new()),
        )
        .unwrap();
    assert_eq!(snap.status, 201, "{}", snap.text());
    fx.run(c.delete_blob("snapped", None)).unwrap();
    assert_eq!(fx.content("snapped"), None);

    // If-Match on a blob that does not exist: Azurite 3.37 answers 412 ConditionNotMet to
    // every write (the fake says 404 BlobNotFound); Get Block List answers 404.
    let stale = WriteOptions {
        if_match: Some("\"0x1\"".into()),
        ..Default::default()
    };
    fx.run(c.put_block("gone 1", &block_id(0), Bytes::from_static(b"x")))
        .unwrap();
    fx.rest.put_blob(&fx.container, "source", b"abc");
    let missing: Vec<(&str, Result<(), BlobError>)> = vec![
        (
            "put_blob",
            fx.run(c.put_blob("gone 0", Bytes::new(), &stale)).map(drop),
        ),
        (
            "put_block_list",
            fx.run(c.put_block_list("gone 1", &ids(&[0]), &stale))
                .map(drop),
        ),
        (
            "delete_blob",
            fx.run(c.delete_blob("gone 2", Some("\"0x1\""))),
        ),
        (
            "set_metadata",
            fx.run(c.set_metadata("gone 3", &stale)).map(drop),
        ),
        (
            "copy_blob",
            fx.run(c.copy_blob("gone 4", "source", None, &stale))
                .map(drop),
        ),
    ];
    for (what, r) in missing {
        let e = expect_err(r, ErrorKind::ConditionNotMet, what);
        assert_eq!(e.code.as_deref(), Some("ConditionNotMet"), "{what}: {e}");
    }
    expect_err(
        fx.run(c.get_block_list("gone 5", Some("\"0x1\""))),
        ErrorKind::NotFound,
        "Get Block List of a missing blob with If-Match",
    );
    // An empty block list commits an empty blob.
    fx.run(c.put_block_list("empty", &[], &WriteOptions::default()))
        .unwrap();
    assert_eq!(fx.content("empty").unwrap(), b"");

    // Metadata a header cannot carry is refused before anything is sent.
    let e = expect_err(
        fx.run(c.put_blob("x", Bytes::new(), &meta(&[("owner", "Jürgen")]))),
        ErrorKind::Other,
        "non-ASCII metadata",
    );
    assert!(e.to_string().contains("not printable ASCII"), "{e}");
    assert_eq!(fx.content("x"), None);
}

#[test]
fn put_block_from_url_copies_a_range_of_a_put_blob() {
    let fx = Fixture::new("fromurl");
    let c = fx.client();
    let src = "src dir/ü #?%+&.bin";
    let data = pseudo_random_bytes(100_000, 7);
    // Written by Put Blob: the source has no blocks.
    let sv = fx
        .run(c.put_blob(src, Bytes::from(data.clone()), &WriteOptions::default()))
        .unwrap();
    assert_eq!(fx.block_list(src), vec![]);
    fx.run(c.put_block_from_url(ODD, &block_id(0), src, 1000, 5000, Some(&sv.etag)))
        .unwrap();
    fx.run(c.put_block(ODD, &block_id(1), Bytes::from_static(b"+local+")))
        .unwrap();
    fx.run(c.put_block_from_url(ODD, &block_id(2), src, 99_999, 1, None))
        .unwrap();
    fx.run(c.put_block_list(ODD, &ids(&[0, 1, 2]), &WriteOptions::default()))
        .unwrap();
    let expected: Vec<u8> = [&data[1000..6000], b"+local+", &data[99_999..]].concat();
    assert_eq!(fx.content(ODD).unwrap(), expected);
    assert_eq!(
        fx.block_list(ODD),
        vec![(block_id(0), 5000), (block_id(1), 7), (block_id(2), 1)]
    );
    // The source changed: its old ETag no longer matches.
    let e = expect_err(
        fx.run(c.put_block_from_url(ODD, &block_id(3), src, 0, 10, Some("\"0x1\""))),
        ErrorKind::ConditionNotMet,
        "Put Block From URL with a stale source ETag",
    );
    assert_eq!(e.status, Some(412));
    println!("stale source: {e}");
    // A missing source.
    let e = expect_err(
        fx.run(c.put_block_from_url(ODD, &block_id(3), "no such blob", 0, 10, None)),
        ErrorKind::NotFound,
        "Put Block From URL of a missing source",
    );
    println!("missing source: {e}");
    // An empty range is refused without asking.
    let e = expect_err(
        fx.run(c.put_block_from_url(ODD, &block_id(3), src, 0, 0, None)),
        ErrorKind::Conflict,
        "Put Block From URL of nothing",
    );
    assert_eq!(e.code.as_deref(), Some("InvalidRange"));
}

#[test]
fn copy_copy_info_and_set_metadata() {
    let fx = Fixture::new("copy");
    let c = fx.client();
    let src = "src dir/ü #?%+&.bin";
    let data = pseudo_random_bytes(200_000, 11);
    let sv = fx
        .run(c.put_blob(
            src,
            Bytes::from(data.clone()),
            &meta(&[("mode", "0640"), ("owner", "me")]),
        ))
        .unwrap();
    assert_eq!(fx.run(c.copy_info(src)).unwrap(), None);

    // Without metadata in the request, the copy keeps the source's.
    let mut create = WriteOptions {
        if_none_match_any: true,
        ..Default::default()
    };
    let info = fx
        .run(c.copy_blob(ODD, src, Some(&sv.etag), &create))
        .unwrap();
    assert_eq!(info.state, CopyState::Success);
    assert!(!info.id.is_empty());
    assert_eq!(fx.content(ODD).unwrap(), data);
    assert_eq!(
        fx.metadata(ODD),
        pairs(&[("mode", "0640"), ("owner", "me")])
    );
    // The copy's properties name its source, as a blob name of this container.
    assert_eq!(
        fx.run(c.copy_info(ODD)).unwrap(),
        Some(CopyInfo {
            source: Some(src.to_string()),
            ..info.clone()
        })
    );
    // With metadata, the copy has that instead.
    create.metadata = [("mode".to_string(), "0600".to_string())].into();
    let other = "copy two";
    fx.run(c.copy_blob(other, src, None, &create)).unwrap();
    assert_eq!(fx.content(other).unwrap(), data);
    assert_eq!(fx.metadata(other), pairs(&[("mode", "0600")]));

    // Conditions: a stale source ETag, an existing destination with If-None-Match: *.
    let e = expect_err(
        fx.run(c.copy_blob("copy three", src, Some("\"0x1\""), &WriteOptions::default())),
        ErrorKind::ConditionNotMet,
        "Copy Blob with a stale source ETag",
    );
    println!("stale source: {e}");
    assert_eq!(fx.content("copy three"), None);
    let e = fx
        .run(c.copy_blob(ODD, src, None, &create))
        .expect_err("Copy Blob with If-None-Match: * onto an existing blob");
    println!("existing destination: {e}");
    assert!(
        matches!(
            e.kind,
            ErrorKind::AlreadyExists | ErrorKind::ConditionNotMet
        ),
        "{e}"
    );
    let dest_v = fx.run(c.properties(ODD)).unwrap().etag;
    let stale = WriteOptions {
        if_match: Some("\"0x1\"".into()),
        ..Default::default()
    };
    expect_err(
        fx.run(c.copy_blob(ODD, src, None, &stale)),
        ErrorKind::ConditionNotMet,
        "Copy Blob with a stale destination If-Match",
    );
    let e = expect_err(
        fx.run(c.copy_blob("copy four", "no such blob", None, &WriteOptions::default())),
        ErrorKind::NotFound,
        "Copy Blob of a missing source",
    );
    println!("missing source: {e}");

    // Set Blob Metadata replaces the metadata, keeps the content, makes a new version.
    let set = WriteOptions {
        if_match: Some(dest_v.clone()),
        ..meta(&[("mode", "0755"), (FOLDER_META, "false")])
    };
    let v = fx.run(c.set_metadata(ODD, &set)).unwrap();
    assert_ne!(v.etag, dest_v);
    assert_eq!(
        fx.metadata(ODD),
        pairs(&[("mode", "0755"), ("hdi_isfolder", "false")])
    );
    assert_eq!(fx.content(ODD).unwrap(), data);
    assert_eq!(
        fx.rest.blob_properties(&fx.container, ODD).unwrap().etag,
        v.etag
    );
    // The old version no longer matches; a missing blob is NotFound.
    expect_err(
        fx.run(c.set_metadata(ODD, &set)),
        ErrorKind::ConditionNotMet,
        "Set Blob Metadata with a stale If-Match",
    );
    expect_err(
        fx.run(c.set_metadata("missing", &meta(&[("a", "b")]))),
        ErrorKind::NotFound,
        "Set Blob Metadata of a missing blob",
    );
    // Empty metadata clears it.
    fx.run(c.set_metadata(ODD, &WriteOptions::default()))
        .unwrap();
    assert!(fx.metadata(ODD).is_empty());
}

#[test]
fn transient_failures_are_retried_and_requests_carry_their_headers() {
    let fx = Fixture::new("retry");
    let proxy = Proxy::start(&fx.azurite.account_url());
    let c = client_for(&fx.sas_url(&proxy.account_url()), quick_retries());
    let is_put_block = |r: &common::RecordedRequest| {
        r.method == "PUT" && r.query_param("comp").as_deref() == Some("block")
    };
    proxy.fail_next(1, is_put_block, Fault::server_busy());
    fx.run(c.put_block(ODD, &block_id(0), Bytes::from_static(b"hello ")))
        .unwrap();
    assert_eq!(proxy.pending_faults(), 0);
    let sent: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| is_put_block(r))
        .collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[0].injected && sent[0].status == Some(503));
    assert_eq!(sent[1].status, Some(201));
    for r in &sent {
        assert_eq!(r.query_param("blockid"), Some(block_id(0)));
        assert_eq!(r.decoded_path().rsplit('/').next(), Some("ü #?%+&.txt"));
        // base64(md5("hello "))
        assert_eq!(r.header("content-md5"), Some("+BSJN3e8wilf/wXwDlCNpg=="));
        assert_eq!(r.header("content-length"), Some("6"));
    }
    // A 500 on the commit is retried too.
    let is_commit = |r: &common::RecordedRequest| {
        r.method == "PUT" && r.query_param("comp").as_deref() == Some("blocklist")
    };
    proxy.fail_next(1, is_commit, Fault::internal_error());
    fx.run(c.put_block(ODD, &block_id(1), Bytes::from_static(b"world")))
        .unwrap();
    fx.run(c.put_block_list(ODD, &ids(&[0, 1]), &meta(&[("mode", "0644")])))
        .unwrap();
    assert_eq!(proxy.count(is_commit), 2);
    assert_eq!(fx.content(ODD).unwrap(), b"hello world");
    let commit = proxy
        .requests()
        .into_iter()
        .rfind(|r| is_commit(r))
        .unwrap();
    assert_eq!(commit.header("x-ms-meta-mode"), Some("0644"));

    // Put Blob of 0 bytes says so; Delete includes snapshots; conditions go out as given.
    let marker = WriteOptions {
        if_none_match_any: true,
        ..meta(&[(FOLDER_META, "true")])
    };
    fx.run(c.put_blob("d", Bytes::new(), &marker)).unwrap();
    let put = proxy
        .requests()
        .into_iter()
        .rfind(|r| r.method == "PUT" && r.query_param("comp").is_none())
        .unwrap();
    assert_eq!(put.header("x-ms-blob-type"), Some("BlockBlob"));
    assert_eq!(put.header("content-length"), Some("0"));
    assert_eq!(put.header("if-none-match"), Some("*"));
    assert_eq!(put.header("x-ms-meta-hdi_isfolder"), Some("true"));
    fx.run(c.delete_blob("d", None)).unwrap();
    let del = proxy
        .requests()
        .into_iter()
        .rfind(|r| r.method == "DELETE")
        .unwrap();
    assert_eq!(del.header("x-ms-delete-snapshots"), Some("include"));

    // Refused metadata sends nothing.
    let before = proxy.requests().len();
    expect_err(
        fx.run(c.put_block_list(ODD, &ids(&[0]), &meta(&[("note", "café")]))),
        ErrorKind::Other,
        "non-ASCII metadata",
    );
    expect_err(
        fx.run(c.set_metadata(ODD, &meta(&[("bad-name", "x")]))),
        ErrorKind::Other,
        "invalid metadata name",
    );
    assert_eq!(proxy.requests().len(), before);

    // A 503 that persists ends as Throttled after the retries.
    proxy.fail_next(10, is_put_block, Fault::server_busy());
    expect_err(
        fx.run(c.put_block(ODD, &block_id(2), Bytes::from_static(b"x"))),
        ErrorKind::Throttled,
        "Put Block under a persisting 503",
    );
    assert_eq!(proxy.pending_faults(), 6);
}

fn assert_no_signature(e: &BlobError, url: &str) {
    let shown = format!("{e} / {e:?}");
    for sig in common::signature_forms(url) {
        assert!(!shown.contains(&sig), "the signature leaked: {shown}");
    }
    assert!(!shown.contains("sig="), "{shown}");
}

#[test]
fn errors_never_show_the_signature() {
    let fx = Fixture::new("sig");
    fx.rest.put_blob(&fx.container, "src", b"0123456789");
    // A token signed with another key: every write is refused with 403.
    let wrong_key = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
    let params = blobmount::sas::ServiceSasParams::new(
        common::ACCOUNT,
        &fx.container,
        "racwdl",
        OffsetDateTime::now_utc() + time::Duration::hours(1),
    );
    let token = blobmount::sas::sign_service_sas(&params, &wrong_key).unwrap();
    let wrong_url = format!("{}/{}?{token}", fx.azurite.account_url(), fx.container);
    let c = client_for(&wrong_url, RetryPolicy::none());
    let src_etag = fx.rest.blob_properties(&fx.container, "src").unwrap().etag;
    let results: Vec<(&str, Result<(), BlobError>)> = vec![
        (
            "put_block",
            fx.run(c.put_block(ODD, &block_id(0), Bytes::from_static(b"x"))),
        ),
        (
            "put_block_from_url",
            fx.run(c.put_block_from_url(ODD, &block_id(0), "src", 0, 3, Some(&src_etag))),
        ),
        (
            "put_block_list",
            fx.run(c.put_block_list(ODD, &ids(&[0]), &WriteOptions::default()))
                .map(drop),
        ),
        (
            "put_blob",
            fx.run(c.put_blob(ODD, Bytes::new(), &WriteOptions::default()))
                .map(drop),
        ),
        (
            "get_block_list",
            fx.run(c.get_block_list("src", None)).map(drop),
        ),
        ("delete_blob", fx.run(c.delete_blob("src", None))),
        (
            "copy_blob",
            fx.run(c.copy_blob(ODD, "src", None, &WriteOptions::default()))
                .map(drop),
        ),
        ("copy_info", fx.run(c.copy_info("src")).map(drop)),
        (
            "set_metadata",
            fx.run(c.set_metadata("src", &WriteOptions::default()))
                .map(drop),
        ),
    ];
    for (what, r) in results {
        let e = r.expect_err(what);
        assert_eq!(e.kind, ErrorKind::Forbidden, "{what}: {e}");
        // Azure says AuthenticationFailed, Azurite 3.37 AuthorizationFailure.
        assert_eq!(e.status, Some(403), "{what}: {e}");
        assert_no_signature(&e, &wrong_url);
    }
    assert_eq!(fx.content("src").unwrap(), b"0123456789");

    // With the right token, failures about the copy source (whose URL carries the token)
    // do not show it either.
    let right_url = fx.sas_url(&fx.azurite.account_url());
    let c = client_for(&right_url, RetryPolicy::none());
    let errors = [
        fx.run(c.put_block_from_url(ODD, &block_id(0), "missing", 0, 3, None))
            .unwrap_err(),
        fx.run(c.put_block_from_url(ODD, &block_id(0), "src", 0, 3, Some("\"0x1\"")))
            .unwrap_err(),
        fx.run(c.put_block_from_url(ODD, &block_id(0), "src", 100, 3, None))
            .unwrap_err(),
        fx.run(c.copy_blob(ODD, "missing", None, &WriteOptions::default()))
            .unwrap_err(),
        fx.run(c.copy_blob(ODD, "src", Some("\"0x1\""), &WriteOptions::default()))
            .unwrap_err(),
    ];
    for e in &errors {
        println!("{e}");
        assert_no_signature(e, &right_url);
    }
}

/// Azurite's Put Blob takes a blob of uncommitted blocks only for an existing one (409 to
/// `If-None-Match: *`) and refuses `If-Match` on it (412): the conditions
/// `over_uncommitted` gives replace exactly that state, and never a version committed after it
/// was seen.
#[test]
fn a_put_blob_over_uncommitted_blocks_never_replaces_a_committed_version() {
    let fx = Fixture::new("overuncommitted");
    let c = fx.client();
    let create = WriteOptions {
        if_none_match_any: true,
        ..Default::default()
    };
    let put_over = |name: &str, data: &'static [u8]| {
        fx.run(async {
            let tries = blobmount::blob::over_uncommitted(&c, name, &create).await?;
            let mut last = None;
            for opts in tries {
                match c.put_blob(name, Bytes::from_static(data), &opts).await {
                    Err(e) if e.kind == ErrorKind::ConditionNotMet => last = Some(e),
                    r => return r.map(Some),
                }
            }
            last.map_or(Ok(None), Err)
        })
    };
    let id = base64::engine::general_purpose::STANDARD.encode("block-0");
    fx.run(c.put_block("u", &id, Bytes::from_static(b"left over")))
        .unwrap();
    let e = fx
        .run(c.put_blob("u", Bytes::from_static(b"mine"), &create))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
    put_over("u", b"mine")
        .unwrap()
        .expect("the uncommitted blob replaced");
    assert_eq!(fx.content("u").unwrap(), b"mine");

    // Someone commits between the check and the write, within the same second: not replaced.
    fx.run(c.put_block("v", &id, Bytes::from_static(b"left over")))
        .unwrap();
    let tries = fx
        .run(blobmount::blob::over_uncommitted(&c, "v", &create))
        .unwrap();
    assert_eq!(tries.len(), 2);
    fx.rest.put_blob(&fx.container, "v", b"theirs");
    for opts in tries {
        let e = fx
            .run(c.put_blob("v", Bytes::from_static(b"mine"), &opts))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ConditionNotMet, "{e}");
    }
    assert_eq!(fx.content("v").unwrap(), b"theirs");
    // Their version is committed: nothing to replace.
    let tries = fx
        .run(blobmount::blob::over_uncommitted(&c, "v", &create))
        .unwrap();
    assert!(tries.is_empty());
}
