//! What [`RestClient`] counts, against a scripted HTTP server on loopback: one request per
//! attempt by operation and status, retries, body bytes both ways.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use super::*;
use crate::metrics::{Gauges, Metrics, Op};

/// Answers requests in order with (status, body), recording the body bytes it received.
struct Script {
    answers: Mutex<VecDeque<(u16, &'static str)>>,
    received: Mutex<Vec<usize>>,
}

async fn scripted(answers: &[(u16, &'static str)]) -> (String, Arc<Script>) {
    let script = Arc::new(Script {
        answers: Mutex::new(answers.iter().copied().collect()),
        received: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = script.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let s = s.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let s = s.clone();
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            s.received.lock().unwrap().push(body.len());
                            let (status, text) =
                                s.answers.lock().unwrap().pop_front().expect("scripted");
                            let mut resp = hyper::Response::new(Full::new(Bytes::from(text)));
                            *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, hyper::Error>(resp)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}/devstoreaccount1/box"), script)
}

fn client(url: &str, retries: u32) -> (RestClient, &'static Metrics) {
    let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new()));
    let (c, _) = ContainerUrl::parse(url).unwrap();
    let retry = RetryPolicy {
        max_retries: retries,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
    };
    let client = RestClient::new(
        c,
        Arc::new(Credential::new("sv=2023-11-03&sig=SECRETSIG".into())),
        retry,
    )
    .unwrap()
    .with_metrics(metrics);
    (client, metrics)
}

const BUSY: &str = "<?xml version=\"1.0\"?><Error><Code>ServerBusy</Code></Error>";

#[tokio::test]
async fn attempts_retries_and_bytes_are_counted() {
    let (url, script) =
        scripted(&[(503, BUSY), (206, "hello"), (201, ""), (201, ""), (404, "")]).await;
    let (c, m) = client(&url, 2);

    let stream = c.get_stream("a b", 0, 5, None).await.unwrap();
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
    assert_eq!(chunks.concat(), b"hello");
    c.put_block("a b", "aWQ=", Bytes::from_static(b"12345678"))
        .await
        .unwrap();
    let mut file = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut file, b"0123456789").unwrap();
    c.put_block_from_file("a b", "aWQ=", Arc::new(file), 2, 3)
        .await
        .unwrap();
    let e = c.properties("missing").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);

    let s = m.snapshot();
    assert_eq!(s.requests_of(Op::GetBlob, "503"), 1);
    assert_eq!(s.requests_of(Op::GetBlob, "206"), 1);
    assert_eq!(s.requests_of(Op::PutBlock, "201"), 2);
    assert_eq!(s.requests_of(Op::GetBlobProperties, "404"), 1);
    assert_eq!(s.total_requests(), 5);
    assert_eq!(s.retries_of(Op::GetBlob), 1);
    assert_eq!(s.total_retries(), 1);
    assert_eq!(s.bytes_received, (BUSY.len() + 5) as u64);
    assert_eq!(s.bytes_sent, 8 + 3);
    assert_eq!(*script.received.lock().unwrap(), vec![0, 0, 8, 3, 0]);
    let text = crate::metrics::render_prometheus(m, &Gauges::default());
    assert!(text.contains("blobmount_requests_total{op=\"get_blob\",status=\"503\"} 1\n"));
    assert!(
        !text.contains("SECRETSIG") && !text.contains("sig="),
        "{text}"
    );
}

#[tokio::test]
async fn listings_count_their_body_and_failed_connections_count_as_error() {
    const EMPTY_LIST: &str =
        "<?xml version=\"1.0\"?><EnumerationResults><Blobs/></EnumerationResults>";
    let (url, _script) = scripted(&[(200, EMPTY_LIST)]).await;
    let (c, m) = client(&url, 0);
    let page = c
        .list(ListRequest {
            prefix: "",
            delimiter: Some("/"),
            marker: None,
            max_results: None,
        })
        .await
        .unwrap();
    assert!(page.blobs.is_empty());
    let s = m.snapshot();
    assert_eq!(s.requests_of(Op::ListBlobs, "200"), 1);
    assert_eq!(s.bytes_received, EMPTY_LIST.len() as u64);

    // Nothing listens on a port just released: no answer, no bytes, one retry.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (c, m) = client(&format!("http://127.0.0.1:{port}/acct/box"), 1);
    let e = c
        .put_blob("x", Bytes::from_static(b"abc"), &Default::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transient);
    let s = m.snapshot();
    assert_eq!(s.requests_of(Op::PutBlob, "error"), 2);
    assert_eq!(s.retries_of(Op::PutBlob), 1);
    assert_eq!(s.bytes_sent, 0, "nothing was sent");
}
