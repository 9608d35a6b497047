//! Self-test of the test harness (tests/common) against Azurite: the emulator starts and
//! stops, the REST helper round-trips blobs with awkward names, and the proxy counts, forwards
//! streamed bodies intact and injects faults. Nothing is mounted here.

mod common;

use common::process::pid_alive;
use common::{pseudo_random_bytes, unique_container, wait_until, Azurite, Fault, Proxy, Rest};
use std::time::{Duration, Instant};

const ODD_NAME: &str = "dir one/ü #?%+&.txt";

#[test]
fn azurite_starts_answers_and_is_gone_after_drop() {
    let az = Azurite::start();
    let pid = az.pid();
    assert!(pid_alive(pid));
    assert_eq!(
        az.account_url(),
        format!("http://127.0.0.1:{}/devstoreaccount1", az.port())
    );
    let rest = az.rest();
    let c = unique_container("start-stop");
    rest.create_container(&c);
    assert!(rest.list_blob_names(&c, "").is_empty());
    drop(rest);
    drop(az);
    // Reaped on drop: the pid no longer exists (not even as a zombie).
    assert!(
        wait_until(Duration::from_secs(2), || !pid_alive(pid)),
        "Azurite pid {pid} still exists after drop"
    );
}

#[test]
fn rest_round_trips_odd_names_byte_for_byte() {
    let az = Azurite::start();
    let rest = az.rest();
    let c = unique_container("odd-names");
    rest.create_container(&c);
    rest.create_container(&c); // idempotent

    let data = pseudo_random_bytes(300 * 1024 + 7, 1);
    rest.put_blob_with_metadata(&c, ODD_NAME, &data, &[("origin", "harness"), ("n", "42")]);
    let others = [
        "a+b&c=d.txt",
        "100%.bin",
        "dir one/sub dir/x#y",
        "z?.txt",
        "日本語/ファイル",
    ];
    for (i, name) in others.iter().enumerate() {
        rest.put_blob(&c, name, name.as_bytes());
        assert_eq!(
            rest.get_blob(&c, name).as_deref(),
            Some(name.as_bytes()),
            "blob {i}"
        );
    }

    assert_eq!(rest.get_blob(&c, ODD_NAME).expect("blob exists"), data);
    let props = rest.blob_properties(&c, ODD_NAME).expect("properties");
    assert_eq!(props.len, data.len() as u64);
    assert!(props.etag.starts_with('"'), "etag {:?}", props.etag);
    assert_eq!(
        props.metadata.get("origin").map(String::as_str),
        Some("harness")
    );
    assert_eq!(props.metadata.get("n").map(String::as_str), Some("42"));

    let mut all = rest.list_blob_names(&c, "");
    all.sort();
    let mut want: Vec<&str> = others.to_vec();
    want.push(ODD_NAME);
    want.sort();
    assert_eq!(all, want);
    assert_eq!(
        rest.list_blob_names(&c, "dir one/"),
        vec!["dir one/sub dir/x#y", ODD_NAME]
    );
    assert_eq!(rest.list_blob_names(&c, "dir one/ü"), vec![ODD_NAME]);

    assert!(rest.delete_blob(&c, ODD_NAME));
    assert!(!rest.delete_blob(&c, ODD_NAME));
    assert_eq!(rest.get_blob(&c, ODD_NAME), None);
    assert_eq!(rest.blob_properties(&c, ODD_NAME), None);
}

#[test]
fn rest_lists_past_one_page() {
    let az = Azurite::start();
    let rest = az.rest();
    let c = unique_container("pages");
    rest.create_container(&c);
    // Azurite's page size is 5000; use maxresults through raw to check paging parse instead.
    for i in 0..7 {
        rest.put_blob(&c, &format!("p/{i}"), b"x");
    }
    let page = rest
        .raw(
            "GET",
            &c,
            None,
            &[
                ("restype", "container"),
                ("comp", "list"),
                ("maxresults", "3"),
            ],
            &[],
            None,
        )
        .expect("list");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<NextMarker>"), "{}", page.text());
    assert_eq!(rest.list_blob_names(&c, "p/").len(), 7);
}

#[test]
fn container_sas_url_is_path_style_and_grants_only_its_permissions() {
    let az = Azurite::start();
    let rest = az.rest();
    let c = unique_container("sas-url");
    rest.create_container(&c);
    rest.put_blob(&c, ODD_NAME, b"hello");

    let url = rest.container_sas_url(&c, "rl", Duration::from_secs(3600));
    let prefix = format!("{}/{c}?", az.account_url());
    assert!(url.starts_with(&prefix), "{url}");
    assert!(url.contains("sig="), "{url}");

    // Use the container SAS for a list and a read (allowed) and a write (refused).
    let mut list = url::Url::parse(&url).unwrap();
    list.query_pairs_mut()
        .append_pair("restype", "container")
        .append_pair("comp", "list");
    let mut blob = url::Url::parse(&url).unwrap();
    blob.path_segments_mut()
        .unwrap()
        .extend(ODD_NAME.split('/'));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let (list_status, get, put_status) = rt.block_on(async {
        let l = client.get(list).send().await.unwrap().status().as_u16();
        let g = client.get(blob.clone()).send().await.unwrap();
        let g = (g.status().as_u16(), g.bytes().await.unwrap().to_vec());
        let p = client
            .put(blob)
            .header("x-ms-blob-type", "BlockBlob")
            .body("nope")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        (l, g, p)
    });
    assert_eq!(list_status, 200);
    assert_eq!(get, (200, b"hello".to_vec()));
    assert_eq!(put_status, 403);
}

#[test]
fn proxy_forwards_streams_and_counts() {
    let az = Azurite::start();
    let proxy = Proxy::start(&az.account_url());
    assert_eq!(
        proxy.account_url(),
        format!("http://127.0.0.1:{}/devstoreaccount1", proxy.port())
    );
    let rest = Rest::new(&proxy.account_url());
    let c = unique_container("proxy");
    rest.create_container(&c);

    // 9 MiB: a Content-Length body several times larger than any socket buffer, both ways.
    let big = pseudo_random_bytes(9 * 1024 * 1024 + 13, 2);
    rest.put_blob(&c, ODD_NAME, &big);
    assert_eq!(rest.get_blob(&c, ODD_NAME).expect("through proxy"), big);
    assert_eq!(az.rest().get_blob(&c, ODD_NAME).expect("direct"), big);
    // HEAD keeps Content-Length (no body).
    assert_eq!(
        rest.blob_properties(&c, ODD_NAME).map(|p| p.len),
        Some(big.len() as u64)
    );
    // A ranged read.
    let r = rest
        .raw(
            "GET",
            &c,
            Some(ODD_NAME),
            &[],
            &[("range", "bytes=100-199")],
            None,
        )
        .unwrap();
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &big[100..200]);
    // List responses are chunked by Azurite.
    assert_eq!(rest.list_blob_names(&c, ""), vec![ODD_NAME]);

    let reqs = proxy.requests();
    assert!(
        reqs.iter().all(|r| r.status.is_some() && !r.injected),
        "{reqs:#?}"
    );
    assert_eq!(proxy.count(|r| r.is_list()), 1);
    assert_eq!(proxy.count(|r| r.method == "HEAD"), 1);
    assert_eq!(proxy.count(|r| r.is_get_blob()), 2);
    assert_eq!(proxy.count(|r| r.query.contains("comp=list")), 1);
    assert_eq!(
        proxy.count(|r| r.header("range") == Some("bytes=100-199")),
        1
    );
    let put = reqs
        .iter()
        .find(|r| r.method == "PUT" && r.query_param("restype").is_none());
    let put = put.expect("put blob recorded");
    assert_eq!(
        put.decoded_path(),
        format!("/devstoreaccount1/{c}/{ODD_NAME}")
    );
    assert_eq!(put.status, Some(201));
    assert!(put.query_param("sig").is_some());
    proxy.clear_log();
    assert!(proxy.requests().is_empty());
}

#[test]
fn proxy_injects_503_then_forwards() {
    let az = Azurite::start();
    let proxy = Proxy::start(&az.account_url());
    let rest = Rest::new(&proxy.account_url());
    let c = unique_container("inject");
    rest.create_container(&c);
    rest.put_blob(&c, "f.txt", b"data");

    proxy.fail_next(2, |r| r.is_get_blob(), Fault::server_busy());
    assert_eq!(proxy.pending_faults(), 2);
    for _ in 0..2 {
        let r = rest.raw("GET", &c, Some("f.txt"), &[], &[], None).unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.header("x-ms-error-code"), "ServerBusy");
        assert!(!r.header("x-ms-request-id").is_empty());
        assert_eq!(r.header("content-type"), "application/xml");
        assert!(r.text().contains("<Code>ServerBusy</Code>"), "{}", r.text());
    }
    assert_eq!(proxy.pending_faults(), 0);
    assert_eq!(rest.get_blob(&c, "f.txt").as_deref(), Some(&b"data"[..]));
    // Other requests were not affected.
    assert!(rest.blob_properties(&c, "f.txt").is_some());

    proxy.fail_next(1, |r| r.method == "HEAD", Fault::internal_error());
    let r = rest.raw("HEAD", &c, Some("f.txt"), &[], &[], None).unwrap();
    assert_eq!(r.status, 500);
    assert_eq!(r.header("x-ms-error-code"), "InternalError");

    let gets: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.is_get_blob())
        .collect();
    let got: Vec<_> = gets.iter().map(|r| (r.status, r.injected)).collect();
    assert_eq!(
        got,
        vec![(Some(503), true), (Some(503), true), (Some(200), false)]
    );
    assert_eq!(proxy.count(|r| r.injected), 3);
}

#[test]
fn proxy_resets_truncates_delays_and_goes_unreachable() {
    let az = Azurite::start();
    let proxy = Proxy::start(&az.account_url());
    let rest = Rest::new(&proxy.account_url());
    let c = unique_container("faults");
    rest.create_container(&c);
    let data = pseudo_random_bytes(2 * 1024 * 1024, 3);
    rest.put_blob(&c, "big", &data);

    // A dropped connection: a transport error, not a status.
    proxy.fail_next(1, |r| r.is_get_blob(), Fault::Reset);
    let e = rest
        .raw("GET", &c, Some("big"), &[], &[], None)
        .unwrap_err();
    assert!(e.contains("request failed"), "{e}");

    // A body cut short: the status arrives, the body fails.
    proxy.fail_next(1, |r| r.is_get_blob(), Fault::TruncateBody { after: 1000 });
    let e = rest
        .raw("GET", &c, Some("big"), &[], &[], None)
        .unwrap_err();
    assert!(e.contains("reading the body failed"), "{e}");
    assert_eq!(rest.get_blob(&c, "big").unwrap(), data);

    // A delay.
    proxy.delay_next(1, |r| r.method == "HEAD", Duration::from_millis(700));
    let t = Instant::now();
    assert!(rest.blob_properties(&c, "big").is_some());
    assert!(
        t.elapsed() >= Duration::from_millis(700),
        "{:?}",
        t.elapsed()
    );
    let t = Instant::now();
    assert!(rest.blob_properties(&c, "big").is_some());
    assert!(
        t.elapsed() < Duration::from_millis(700),
        "{:?}",
        t.elapsed()
    );

    // Unreachable: connects are refused; then back.
    proxy.set_unreachable(true);
    assert!(wait_until(Duration::from_secs(5), || {
        std::net::TcpStream::connect(("127.0.0.1", proxy.port())).is_err()
    }));
    let e = rest
        .raw("GET", &c, Some("big"), &[], &[], None)
        .unwrap_err();
    assert!(e.contains("request failed"), "{e}");
    proxy.set_unreachable(false);
    assert_eq!(rest.get_blob(&c, "big").unwrap(), data);
}

#[test]
fn proxy_stops_on_drop() {
    let az = Azurite::start();
    let proxy = Proxy::start(&az.account_url());
    let port = proxy.port();
    let rest = Rest::new(&proxy.account_url());
    rest.create_container(&unique_container("stop"));
    drop(proxy);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
