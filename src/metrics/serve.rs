//! The metrics endpoint: `GET /metrics` in the Prometheus text format, over HTTP/1.1 (hyper).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::{global, render_prometheus, Gauges};

/// The content type of the text exposition format.
pub const CONTENT_TYPE_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A client that has not sent its request headers by then is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves [`global`] metrics and the gauges `gauges` reads, on `listener`: `GET /metrics`
/// answers 200 in the text format 0.0.4, other paths 404, other methods 405. Each connection
/// has its own task, so a slow client holds up nobody else. Runs until dropped (or its task
/// aborted), which also ends the connections it serves.
pub async fn serve(listener: TcpListener, gauges: Arc<dyn Fn() -> Gauges + Send + Sync>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, gauges.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to be closed.
                    tracing::debug!("metrics endpoint: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn connection(stream: TcpStream, gauges: Arc<dyn Fn() -> Gauges + Send + Sync>) {
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let answer = respond(&req, gauges.as_ref());
        async move { Ok::<_, Infallible>(answer) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = conn.await {
        tracing::debug!("metrics endpoint: connection: {e}");
    }
}

fn respond<B>(
    req: &Request<B>,
    gauges: &(dyn Fn() -> Gauges + Send + Sync),
) -> Response<Full<Bytes>> {
    let (status, body) = if req.uri().path() != "/metrics" {
        (
            StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics\n".to_string(),
        )
    } else if req.method() != Method::GET {
        (StatusCode::METHOD_NOT_ALLOWED, "only GET\n".to_string())
    } else {
        (StatusCode::OK, render_prometheus(global(), &gauges()))
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let content_type = if status == StatusCode::OK {
        CONTENT_TYPE_0_0_4
    } else {
        "text/plain; charset=utf-8"
    };
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(ALLOW, HeaderValue::from_static("GET"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn start() -> (String, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gauges: Arc<dyn Fn() -> Gauges + Send + Sync> = Arc::new(|| Gauges {
            cache_budget_bytes: 12345,
            token_seconds_left: Some(60),
            ..Default::default()
        });
        (
            format!("http://{addr}"),
            tokio::spawn(serve(listener, gauges)),
        )
    }

    #[tokio::test]
    async fn answers_metrics_404_and_405_over_loopback() {
        let (base, server) = start().await;
        let http = reqwest::Client::new();
        let resp = http.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        let text = resp.text().await.unwrap();
        assert!(
            text.contains("# TYPE blobmount_requests_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("\nblobmount_cache_budget_bytes 12345\n"),
            "{text}"
        );
        assert!(
            text.contains("\nblobmount_token_seconds_left 60\n"),
            "{text}"
        );
        let resp = http
            .get(format!("{base}/metrics?x=1"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "a query is ignored");
        let resp = http.get(format!("{base}/other")).send().await.unwrap();
        assert_eq!(resp.status(), 404);
        let resp = http.post(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers()[ALLOW], "GET");
        server.abort();
        assert!(server.await.unwrap_err().is_cancelled());
        assert!(
            http.get(format!("{base}/metrics")).send().await.is_err(),
            "an aborted server no longer answers"
        );
    }

    #[tokio::test]
    async fn a_stuck_or_bad_client_blocks_nobody() {
        let (base, server) = start().await;
        let addr = base.trim_start_matches("http://").to_string();
        // Half a request, never finished.
        let mut stuck = TcpStream::connect(&addr).await.unwrap();
        stuck.write_all(b"GET /metr").await.unwrap();
        // Not HTTP at all.
        let mut garbage = TcpStream::connect(&addr).await.unwrap();
        garbage
            .write_all(b"\x00\x01\x02 nonsense\r\n\r\n")
            .await
            .unwrap();
        let resp = tokio::time::timeout(
            Duration::from_secs(5),
            reqwest::get(format!("{base}/metrics")),
        )
        .await
        .expect("answered while another client is stuck")
        .unwrap();
        assert_eq!(resp.status(), 200);
        drop((stuck, garbage));
        assert_eq!(
            reqwest::get(format!("{base}/metrics"))
                .await
                .unwrap()
                .status(),
            200
        );
        server.abort();
    }
}
