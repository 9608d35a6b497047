//! A counting, fault-injecting HTTP/1.1 reverse proxy on a free loopback port, in front of
//! Azurite, running on its own tokio runtime thread. Stops on drop.
//!
//! - Every request is recorded (method, raw path, raw query, headers, the status the client
//!   got): [`Proxy::requests`], [`Proxy::count`].
//! - Rules, checked in the order they were added: [`Proxy::delay`] / [`Proxy::delay_next`]
//!   hold matching requests back before forwarding; [`Proxy::fail_next`] meets the next N
//!   matching requests with a [`Fault`] (an Azure-style error or a dropped connection instead
//!   of forwarding; or forwarding, so the service carries the request out, and then losing,
//!   stalling or cutting short its answer); [`Proxy::random_faults`] meets matching requests
//!   with faults at random, from a seed.
//! - [`Proxy::set_unreachable`]: the proxy stops listening (connects are refused) and closes
//!   the connections it has, until set back.
//!
//! HTTP handling is hyper's (server and client, HTTP/1.1): client connections are kept alive;
//! each forwarded request gets its own upstream connection, so no stale pooled connection can
//! fail a request the test did not fault. Bodies stream through in both directions with their
//! framing re-done by hyper (Content-Length kept, chunked re-chunked); hop-by-hop headers are
//! dropped. HEAD responses keep their Content-Length.
//!
//! Predicates run while the proxy's state is locked: they must not call the proxy.

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue, HOST};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = BoxBody<Bytes, BoxError>;
type Predicate = Box<dyn Fn(&RecordedRequest) -> bool + Send + Sync>;

/// One request as the proxy received it. Its Debug form hides the SAS signature.
#[derive(Clone)]
pub struct RecordedRequest {
    /// 0, 1, 2... in order of arrival.
    pub seq: usize,
    pub method: String,
    /// The path as sent (percent-encoded), e.g. `/devstoreaccount1/c/dir%20one/a.txt`.
    pub path: String,
    /// The query as sent (percent-encoded, no '?'), "" if none.
    pub query: String,
    /// Header names are lowercase.
    pub headers: Vec<(String, String)>,
    /// The status the client got; `None` if it got no response (dropped connection) or the
    /// response has not been sent yet.
    pub status: Option<u16>,
    /// Whether a [`Fault`] answered this request instead of Azurite.
    pub injected: bool,
}

impl std::fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(
                url::form_urlencoded::parse(self.query.as_bytes()).map(|(k, v)| {
                    let v = if k == "sig" { "REDACTED".into() } else { v };
                    (k, v)
                }),
            )
            .finish();
        f.debug_struct("RecordedRequest")
            .field("seq", &self.seq)
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &query)
            .field("status", &self.status)
            .field("injected", &self.injected)
            .finish()
    }
}

impl RecordedRequest {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter, percent-decoded (`query_param("comp") == Some("list")`).
    pub fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The path, percent-decoded.
    pub fn decoded_path(&self) -> String {
        percent_encoding::percent_decode_str(&self.path)
            .decode_utf8_lossy()
            .into_owned()
    }

    /// Whether this is a List Blobs request (`comp=list`).
    pub fn is_list(&self) -> bool {
        self.query_param("comp").as_deref() == Some("list")
    }

    /// Whether this is a GET without `comp` (a Get Blob, ranged or not).
    pub fn is_get_blob(&self) -> bool {
        self.method == "GET" && self.query_param("comp").is_none()
    }
}

/// What to answer instead of forwarding.
#[derive(Debug, Clone)]
pub enum Fault {
    /// This status with an Azure-style XML error body (`<Error><Code>..`) and the headers
    /// Azure sends with it (`x-ms-request-id`, `x-ms-error-code`, ...); `Retry-After` if set.
    Status {
        status: u16,
        code: String,
        retry_after: Option<u32>,
    },
    /// Close the connection without an answer, before forwarding (nothing is carried out).
    Reset,
    /// Forward, but cut the response body after `after` bytes and drop the connection.
    TruncateBody { after: u64 },
    /// Forward and read the whole answer (the service carried the request out), then close
    /// the connection without answering: the client's retry meets its own success.
    LoseAnswer,
    /// Forward, then hold the answer back this long (past the client's timeout: the request
    /// was carried out, the client gave up waiting).
    StallAnswer(Duration),
}

impl Fault {
    /// 503 ServerBusy.
    pub fn server_busy() -> Fault {
        Fault::status(503, "ServerBusy")
    }

    /// 500 InternalError.
    pub fn internal_error() -> Fault {
        Fault::status(500, "InternalError")
    }

    /// Any status with an Azure error code, e.g. `Fault::status(403, "AuthenticationFailed")`.
    pub fn status(status: u16, code: &str) -> Fault {
        Fault::Status {
            status,
            code: code.to_string(),
            retry_after: None,
        }
    }
}

enum Action {
    Delay(Duration),
    Fault(Fault),
    /// A fault from the list, for a share `rate` of the matching requests.
    Random {
        rng: fastrand::Rng,
        rate: f64,
        faults: Vec<Fault>,
    },
}

struct Rule {
    pred: Predicate,
    /// `None`: every match, until the rules are cleared.
    remaining: Option<usize>,
    action: Action,
}

#[derive(Default)]
struct State {
    log: Vec<RecordedRequest>,
    rules: Vec<Rule>,
}

struct Shared {
    state: Mutex<State>,
    unreachable: watch::Sender<bool>,
}

pub struct Proxy {
    port: u16,
    account_path: String,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy for the service at `upstream_account_url`
    /// (`http://127.0.0.1:PORT/devstoreaccount1`); [`Proxy::account_url`] is the same account
    /// through the proxy.
    pub fn start(upstream_account_url: &str) -> Proxy {
        let up = url::Url::parse(upstream_account_url).expect("upstream url");
        assert_eq!(up.scheme(), "http", "the proxy forwards plain HTTP only");
        let upstream: SocketAddr = up
            .socket_addrs(|| Some(80))
            .expect("upstream address")
            .into_iter()
            .next()
            .expect("upstream address");
        let account_path = up.path().trim_end_matches('/').to_string();

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy port");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("proxy address");

        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            unreachable: watch::channel(false).0,
        });
        let (tx, rx) = oneshot::channel();
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("proxy-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    accept_loop(listener, addr, upstream, sh, rx).await;
                });
                // Dropping the runtime drops every connection task: all sockets close.
            })
            .expect("spawn proxy thread");
        Proxy {
            port: addr.port(),
            account_path,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PROXYPORT/devstoreaccount1`
    pub fn account_url(&self) -> String {
        format!("http://127.0.0.1:{}{}", self.port, self.account_path)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().log.clone()
    }

    /// How many requests received so far match `pred`.
    pub fn count(&self, pred: impl Fn(&RecordedRequest) -> bool) -> usize {
        self.state().log.iter().filter(|r| pred(r)).count()
    }

    /// Forgets the recorded requests (rules stay).
    pub fn clear_log(&self) {
        self.state().log.clear();
    }

    /// Holds back every matching request by `by` before forwarding it, until [`Proxy::clear_rules`].
    pub fn delay(
        &self,
        pred: impl Fn(&RecordedRequest) -> bool + Send + Sync + 'static,
        by: Duration,
    ) {
        self.add_rule(Box::new(pred), None, Action::Delay(by));
    }

    /// Holds back the next `n` matching requests by `by`.
    pub fn delay_next(
        &self,
        n: usize,
        pred: impl Fn(&RecordedRequest) -> bool + Send + Sync + 'static,
        by: Duration,
    ) {
        self.add_rule(Box::new(pred), Some(n), Action::Delay(by));
    }

    /// Answers the next `n` matching requests with `fault` instead of forwarding them.
    pub fn fail_next(
        &self,
        n: usize,
        pred: impl Fn(&RecordedRequest) -> bool + Send + Sync + 'static,
        fault: Fault,
    ) {
        self.add_rule(Box::new(pred), Some(n), Action::Fault(fault));
    }

    /// Meets each matching request, with probability `rate`, with one of `faults` (chosen at
    /// random), until [`Proxy::clear_rules`]; the same seed gives the same choices for the
    /// same sequence of requests.
    pub fn random_faults(
        &self,
        pred: impl Fn(&RecordedRequest) -> bool + Send + Sync + 'static,
        seed: u64,
        rate: f64,
        faults: Vec<Fault>,
    ) {
        assert!(!faults.is_empty());
        self.add_rule(
            Box::new(pred),
            None,
            Action::Random {
                rng: fastrand::Rng::with_seed(seed),
                rate,
                faults,
            },
        );
    }

    /// How many requests a fault met so far.
    pub fn injected(&self) -> usize {
        self.state().log.iter().filter(|r| r.injected).count()
    }

    /// How many injected faults have not been used yet.
    pub fn pending_faults(&self) -> usize {
        self.state()
            .rules
            .iter()
            .filter(|r| matches!(r.action, Action::Fault(_)))
            .map(|r| r.remaining.unwrap_or(0))
            .sum()
    }

    /// Removes every delay and fault rule.
    pub fn clear_rules(&self) {
        self.state().rules.clear();
    }

    /// `true`: stop listening (new connections are refused) and close open connections, as if
    /// the storage endpoint were unreachable. `false`: listen again on the same port.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.shared.unreachable.send_replace(unreachable);
        if !unreachable {
            // Wait (bounded) until the port accepts again so the caller can rely on it.
            let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
            super::wait_until(Duration::from_secs(5), || {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            });
        }
    }

    fn add_rule(&self, pred: Predicate, remaining: Option<usize>, action: Action) {
        self.state().rules.push(Rule {
            pred,
            remaining,
            action,
        });
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(
    mut listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let mut unreachable = shared.unreachable.subscribe();
    loop {
        if *unreachable.borrow_and_update() {
            drop(listener); // connects are now refused
            loop {
                tokio::select! {
                    _ = &mut shutdown => return,
                    changed = unreachable.changed() => {
                        if changed.is_err() { return; }
                        if !*unreachable.borrow_and_update() { break; }
                    }
                }
            }
            listener = match rebind(addr).await {
                Some(l) => l,
                None => {
                    eprintln!("proxy: cannot listen on {addr} again");
                    return;
                }
            };
            continue;
        }
        tokio::select! {
            _ = &mut shutdown => return,
            changed = unreachable.changed() => {
                if changed.is_err() { return; }
            }
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_connection(stream, upstream, shared.clone()));
            }
        }
    }
}

async fn rebind(addr: SocketAddr) -> Option<TcpListener> {
    for _ in 0..50 {
        // tokio sets SO_REUSEADDR, so TIME_WAIT sockets do not block this.
        if let Ok(l) = TcpListener::bind(addr).await {
            return Some(l);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn serve_connection(stream: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    let mut unreachable = shared.unreachable.subscribe();
    if *unreachable.borrow_and_update() {
        return;
    }
    let sh = shared.clone();
    let service = hyper::service::service_fn(move |req| handle(req, upstream, sh.clone()));
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        _ = unreachable.wait_for(|u| *u) => {} // dropping `conn` closes the socket
    }
}

async fn handle(
    req: Request<Incoming>,
    upstream: SocketAddr,
    shared: Arc<Shared>,
) -> Result<Response<ProxyBody>, BoxError> {
    if *shared.unreachable.borrow() {
        return Err("proxy: unreachable".into());
    }
    let record = RecordedRequest {
        seq: 0,
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().unwrap_or("").to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        status: None,
        injected: false,
    };
    let (seq, delay, fault) = {
        let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let seq = st.log.len();
        let record = RecordedRequest { seq, ..record };
        let mut delay = None;
        let mut fault = None;
        for rule in st.rules.iter_mut() {
            if rule.remaining == Some(0) {
                continue;
            }
            let wanted = match rule.action {
                Action::Delay(_) => delay.is_none(),
                Action::Fault(_) | Action::Random { .. } => fault.is_none(),
            };
            if !wanted || !(rule.pred)(&record) {
                continue;
            }
            if let Some(n) = rule.remaining.as_mut() {
                *n -= 1;
            }
            match &mut rule.action {
                Action::Delay(d) => delay = Some(*d),
                Action::Fault(f) => fault = Some(f.clone()),
                Action::Random { rng, rate, faults } => {
                    if rng.f64() < *rate {
                        fault = Some(faults[rng.usize(..faults.len())].clone());
                    }
                }
            }
        }
        st.log.push(record);
        (seq, delay, fault)
    };
    let set_status = |status: Option<u16>, injected: bool| {
        let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = st.log.get_mut(seq) {
            r.status = status;
            r.injected = injected;
        }
    };

    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    if *shared.unreachable.borrow() {
        return Err("proxy: unreachable".into());
    }

    let mut lose = false;
    let mut stall = None;
    let truncate = match fault {
        Some(Fault::Status {
            status,
            code,
            retry_after,
        }) => {
            set_status(Some(status), true);
            let version = req.headers().get("x-ms-version").cloned();
            return Ok(azure_error(status, &code, retry_after, version));
        }
        Some(Fault::Reset) => {
            set_status(None, true);
            return Err("proxy: injected connection reset".into());
        }
        Some(Fault::TruncateBody { after }) => Some(after),
        Some(Fault::LoseAnswer) => {
            lose = true;
            None
        }
        Some(Fault::StallAnswer(d)) => {
            stall = Some(d);
            None
        }
        None => None,
    };

    match forward(req, upstream).await {
        Ok(resp) if lose => {
            // The service has carried the request out once its answer is complete.
            let _ = resp.into_body().collect().await;
            set_status(None, true);
            Err("proxy: injected loss of the answer".into())
        }
        Ok(resp) => {
            if let Some(d) = stall {
                set_status(Some(resp.status().as_u16()), true);
                let (parts, body) = resp.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                tokio::time::sleep(d).await;
                return Ok(Response::from_parts(parts, full(body)));
            }
            set_status(Some(resp.status().as_u16()), truncate.is_some());
            let (parts, body) = resp.into_parts();
            let body = match truncate {
                Some(after) => truncated(body, after),
                None => body.map_err(|e| -> BoxError { Box::new(e) }).boxed(),
            };
            Ok(Response::from_parts(parts, body))
        }
        Err(e) => {
            set_status(Some(502), false);
            let mut resp = Response::new(full(format!("proxy: upstream {upstream}: {e}\n")));
            *resp.status_mut() = StatusCode::BAD_GATEWAY;
            Ok(resp)
        }
    }
}

/// Headers that belong to one connection and must not be forwarded.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "expect"
    )
}

async fn forward(
    req: Request<Incoming>,
    upstream: SocketAddr,
) -> Result<Response<Incoming>, BoxError> {
    let stream = TcpStream::connect(upstream).await?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });

    let (mut parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    parts.uri = path_and_query.parse()?;
    let names: Vec<HeaderName> = parts.headers.keys().cloned().collect();
    for name in names.iter().filter(|n| is_hop_by_hop(n)) {
        parts.headers.remove(name);
    }
    // The client's Host stays as sent (a transparent proxy): Azurite checks that a copy
    // source URL (Put Block From URL, Copy Blob) names the host the request was sent to.
    if !parts.headers.contains_key(HOST) {
        parts
            .headers
            .insert(HOST, HeaderValue::from_str(&upstream.to_string())?);
    }
    let mut resp = sender
        .send_request(Request::from_parts(parts, body))
        .await?;
    let names: Vec<HeaderName> = resp.headers().keys().cloned().collect();
    for name in names.iter().filter(|n| is_hop_by_hop(n)) {
        resp.headers_mut().remove(name);
    }
    Ok(resp)
}

/// The body, cut after `after` bytes with an error (so the connection is dropped mid-body).
fn truncated(body: Incoming, after: u64) -> ProxyBody {
    let stream = futures::stream::unfold(
        (body, 0u64, false),
        move |(mut body, sent, done)| async move {
            if done {
                return None;
            }
            if sent >= after {
                // Let hyper flush the head and the bytes so far before the error aborts the
                // connection; otherwise the client could see no response at all.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let e: BoxError = "proxy: injected body truncation".into();
                return Some((Err(e), (body, sent, true)));
            }
            match body.frame().await {
                None => None,
                Some(Err(e)) => Some((Err(Box::new(e) as BoxError), (body, sent, true))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        let room = (after - sent) as usize;
                        if data.len() > room {
                            data.truncate(room);
                        }
                        let n = data.len() as u64;
                        Some((Ok(Frame::data(data)), (body, sent + n, false)))
                    }
                    Err(frame) => Some((Ok(frame), (body, sent, false))),
                },
            }
        },
    );
    BodyExt::boxed(StreamBody::new(stream))
}

fn full(s: impl Into<Bytes>) -> ProxyBody {
    Full::new(s.into()).map_err(|e| match e {}).boxed()
}

/// An error response shaped like Azure Storage's.
fn azure_error(
    status: u16,
    code: &str,
    retry_after: Option<u32>,
    version: Option<HeaderValue>,
) -> Response<ProxyBody> {
    let request_id = format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        fastrand::u32(..),
        fastrand::u16(..),
        fastrand::u16(..),
        fastrand::u16(..),
        fastrand::u64(..1 << 48)
    );
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let message = match code {
        "ServerBusy" => {
            "The server is currently unable to receive requests. Please retry your request."
        }
        "InternalError" => "The server encountered an internal error. Please retry the request.",
        "OperationTimedOut" => "The operation could not be completed within the permitted time.",
        _ => "Injected by the test proxy.",
    };
    let body = format!(
        "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>{message}\nRequestId:{request_id}\nTime:{now}</Message></Error>"
    );
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .header("server", "Windows-Azure-Blob/1.0 Microsoft-HTTPAPI/2.0")
        .header("x-ms-request-id", &request_id)
        .header("x-ms-error-code", code)
        .header(
            "date",
            httpdate::fmt_http_date(std::time::SystemTime::now()),
        );
    if let Some(v) = version {
        b = b.header("x-ms-version", v);
    }
    if let Some(secs) = retry_after {
        b = b.header("retry-after", secs.to_string());
    }
    b.body(full(body)).expect("error response")
}
