//! A link emulator: forwards TCP connections to an upstream address (Azurite) with what a real
//! network between a machine and Azure adds, so benchmarks can judge a design by its round trips
//! and its connections in flight instead of by loopback speed:
//! - a one-way delay in each direction (a round trip costs twice the delay);
//! - a bandwidth cap per connection and direction (Azure gives each connection roughly
//!   50–120 MB/s: one stream cannot go faster however fast the machine is).
//!
//! Bytes go through unchanged and in order; a half-close travels (after the bytes before it)
//! like one on the wire; how much may be in flight per direction is bounded (at least twice the
//! bandwidth-delay product), so a slow reader holds the sender back as TCP would.
//!
//! Used in process by the tests and as a program by `scripts/bench.sh` (`examples/link.rs`).
//! Self-contained (std and tokio only) so both can include it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// What the link adds.
#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    /// Added to every byte in each direction (half the round trip).
    pub one_way_delay: Duration,
    /// Bytes per second per connection and direction; None: no cap.
    pub bytes_per_sec: Option<u64>,
}

/// What went through the link so far.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// Connections open now.
    pub open: AtomicUsize,
    /// The most connections open at once.
    pub peak_open: AtomicUsize,
    /// Bytes forwarded towards the upstream, and back.
    pub bytes_up: AtomicUsize,
    pub bytes_down: AtomicUsize,
}

/// A running link on a loopback port: stops (closing every connection) when dropped.
pub struct Link {
    addr: SocketAddr,
    stats: Arc<LinkStats>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Bytes read at once from a socket: the unit the link delays and paces (2.5 ms at 100 MiB/s;
/// larger chunks would make bursts, smaller ones cost the emulator CPU that the service and
/// the mount measured through it need).
const CHUNK: usize = 256 * 1024;

/// Time a paced direction may catch up after a late timer wake-up (a burst of at most this
/// much at full speed after idling).
const PACING_CREDIT: Duration = Duration::from_millis(3);

impl Link {
    /// Starts a link on `listen` (port 0: a free one) to `upstream`, on a thread of its own.
    pub fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        cfg: LinkConfig,
    ) -> std::io::Result<Link> {
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(LinkStats::default());
        let (tx, rx) = oneshot::channel();
        let st = stats.clone();
        let thread = std::thread::Builder::new()
            .name(format!("link-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("link runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    accept_loop(listener, upstream, cfg, st, rx).await;
                });
                // Dropping the runtime drops every connection task: all sockets close.
                rt.shutdown_background();
            })?;
        Ok(Link {
            addr,
            stats,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// Where programs connect (instead of the upstream).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What went through it so far.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }
}

impl Drop for Link {
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
    listener: TcpListener,
    upstream: SocketAddr,
    cfg: LinkConfig,
    stats: Arc<LinkStats>,
    mut shutdown: oneshot::Receiver<()>,
) {
    loop {
        let (client, _) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let stats = stats.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return; // the client sees the connection close, as with a refused one
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            stats.connections.fetch_add(1, Ordering::Relaxed);
            let open = stats.open.fetch_add(1, Ordering::Relaxed) + 1;
            stats.peak_open.fetch_max(open, Ordering::Relaxed);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            let up = pipe(client_read, server_write, cfg, &stats.bytes_up);
            let down = pipe(server_read, client_write, cfg, &stats.bytes_down);
            tokio::join!(up, down);
            stats.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// One direction of a connection: what `from` sends reaches `to` after the link's delay, no
/// faster than its bandwidth cap.
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    cfg: LinkConfig,
    bytes: &AtomicUsize,
) {
    // In flight at most: twice the bandwidth-delay product, and a few chunks.
    let bdp = cfg.bytes_per_sec.map_or(64 * 1024 * 1024, |r| {
        (r as f64 * cfg.one_way_delay.as_secs_f64()) as usize
    });
    let chunks = (2 * bdp / CHUNK + 4).clamp(4, 1024);
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(chunks);
    let sender = async move {
        // When the last byte read so far has gone through the link's bottleneck.
        let mut sent_at = Instant::now();
        loop {
            // Not zeroed: a socket read often fills a fraction of the chunk, and zeroing
            // 256 KiB per read cost the link more CPU than moving the bytes.
            let mut buf = Vec::with_capacity(CHUNK);
            let n = match from.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let now = Instant::now();
            let departs = if let Some(rate) = cfg.bytes_per_sec {
                // Deadlines, not sleeps of a duration, and a little credit kept when a wake-up
                // comes late: the average rate stays exact although the timer (1 ms) is
                // coarser than one chunk's time. An idle link restarts from now.
                sent_at = sent_at.max(now - PACING_CREDIT)
                    + Duration::from_secs_f64(n as f64 / rate as f64);
                tokio::time::sleep_until(sent_at).await;
                // The credit speeds pacing only: bytes never leave before they were read, or
                // a small request after an idle spell would arrive up to the credit early.
                sent_at.max(now)
            } else {
                now
            };
            if tx.send((departs + cfg.one_way_delay, buf)).await.is_err() {
                break;
            }
        }
        // Dropping `tx` ends the receiver after the chunks queued: the half-close follows
        // the bytes before it.
    };
    let receiver = async move {
        while let Some((due, buf)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&buf).await.is_err() {
                return;
            }
            bytes.fetch_add(buf.len(), Ordering::Relaxed);
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(sender, receiver);
}
