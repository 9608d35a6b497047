//! Metrics of a real mount: the Prometheus endpoint (--metrics-addr) and the SIGUSR1 log line
//! count what the mount did, and never show the SAS.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::process::free_port;
use common::{pseudo_random_bytes, signature_forms, wait_until, Fixture};

/// GET http://addr/path: the status line and the body.
fn get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// The value of the sample line that starts with `series` (name and labels).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// The sum of every sample of a request counter for `op` (any status).
fn requests(text: &str, op: &str) -> f64 {
    let prefix = format!("blobmount_requests_total{{op=\"{op}\",");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn the_endpoint_and_sigusr1_count_what_the_mount_did() {
    let fx = Fixture::writable("metrics");
    let data = pseudo_random_bytes(6 << 20, 3);
    fx.put("in.bin", &data);
    let addr = format!("127.0.0.1:{}", free_port());
    let m = fx.mount(&["--metrics-addr", &addr]);
    // Read twice (the second from the cache), write one file.
    for _ in 0..2 {
        assert!(std::fs::read(m.path().join("in.bin")).unwrap() == data);
    }
    let out = pseudo_random_bytes(1 << 20, 4);
    std::fs::write(m.path().join("out.bin"), &out).unwrap();
    assert!(fx.blob("out.bin").as_deref() == Some(&out[..]));

    let (status, text) = get(&addr, "/metrics");
    assert!(status.contains(" 200"), "{status}");
    assert!(requests(&text, "get_blob") >= 1.0, "{text}");
    // A file of one block is committed with one Put Blob.
    assert!(requests(&text, "put_blob") >= 1.0, "{text}");
    assert!(value(&text, "blobmount_bytes_received_total") >= data.len() as f64);
    assert!(value(&text, "blobmount_bytes_sent_total") >= out.len() as f64);
    assert!(value(&text, "blobmount_cache_hits_total") >= 1.0, "{text}");
    assert!(
        value(&text, "blobmount_cache_misses_total") >= 1.0,
        "{text}"
    );
    assert!(
        value(&text, "blobmount_cache_hit_bytes_total") > 0.0,
        "{text}"
    );
    assert!(value(&text, "blobmount_cache_bytes") > 0.0);
    assert_eq!(value(&text, "blobmount_dirty_bytes"), 0.0, "{text}");
    let left = value(&text, "blobmount_token_seconds_left");
    assert!((3000.0..=3600.0).contains(&left), "{left}");
    for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
        assert!(
            line.ends_with(" counter") || line.ends_with(" gauge"),
            "{line}"
        );
    }
    let (status, _) = get(&addr, "/other");
    assert!(status.contains(" 404"), "{status}");

    m.signal(libc::SIGUSR1);
    assert!(
        wait_until(Duration::from_secs(10), || m.log().contains("SIGUSR1:")),
        "{}",
        m.log()
    );
    let log = m.log();
    let line = log.lines().find(|l| l.contains("SIGUSR1:")).unwrap();
    assert!(line.contains("mounted; SAS valid for"), "{line}");
    assert!(
        line.contains("requests") && line.contains("cache hits"),
        "{line}"
    );
    for s in signature_forms(&fx.url()) {
        assert!(
            !text.contains(&s) && !log.contains(&s),
            "the signature leaked"
        );
    }
}

#[test]
fn a_metrics_address_in_use_is_refused_before_mounting() {
    let fx = Fixture::new("metrics-busy");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let f = common::Mount::expect_failure(&fx.url(), &["--metrics-addr", &addr]);
    assert_eq!(f.code, Some(1), "{f:?}");
    assert!(!f.left_mounted);
    assert!(
        f.stderr
            .contains(&format!("cannot serve metrics on --metrics-addr {addr}")),
        "{}",
        f.stderr
    );
}
