//! The link emulator used by the benchmarks (tests/common/link.rs): bytes go through unchanged
//! both ways, a half-close follows the bytes before it, and the delay and bandwidth cap are at
//! least what was asked (lower bounds only: a slow machine makes them longer, never shorter).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::link::{Link, LinkConfig};

/// An echo server on a free port: each connection gets back what it sends, then a half-close
/// once the client half-closes.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = conn.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

fn link(delay_ms: u64, bytes_per_sec: Option<u64>) -> Link {
    let cfg = LinkConfig {
        one_way_delay: Duration::from_millis(delay_ms),
        bytes_per_sec,
    };
    Link::start("127.0.0.1:0".parse().unwrap(), echo_server(), cfg).unwrap()
}

/// Sends `data` through the link to the echo server and reads everything back until the
/// server's half-close (which must come, after all the bytes).
fn round_trip(link: &Link, data: &[u8]) -> Vec<u8> {
    round_trip_to(link.addr(), data)
}

/// [`round_trip`] to an address (for several connections at once, from threads).
fn round_trip_to(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = conn.try_clone().unwrap();
    let data = data.to_vec();
    let sent = std::thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    conn.read_to_end(&mut back)
        .expect("the half-close comes back after the bytes");
    sent.join().unwrap();
    back
}

#[test]
fn bytes_go_through_unchanged_both_ways_and_the_half_close_follows_them() {
    let link = link(1, None);
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    assert_eq!(round_trip(&link, &data), data);
    assert_eq!(round_trip(&link, b""), b"");
    let stats = link.stats();
    assert_eq!(stats.connections.load(Ordering::Relaxed), 2);
    assert_eq!(stats.bytes_up.load(Ordering::Relaxed), data.len());
    assert_eq!(stats.bytes_down.load(Ordering::Relaxed), data.len());
    assert!(common::wait_until(Duration::from_secs(5), || stats
        .open
        .load(Ordering::Relaxed)
        == 0));
}

#[test]
fn a_round_trip_takes_at_least_twice_the_one_way_delay() {
    // With and without a bandwidth cap: its pacing must not take from the delay.
    for rate in [None, Some(100 << 20)] {
        round_trips_take_twice(&link(40, rate));
    }
}

fn round_trips_take_twice(link: &Link) {
    let mut conn = TcpStream::connect(link.addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for _ in 0..3 {
        // After an idle spell, as a small request on a kept-alive connection comes.
        std::thread::sleep(Duration::from_millis(20));
        let t = Instant::now();
        conn.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(80),
            "a round trip took {took:?}"
        );
    }
}

#[test]
fn one_connection_is_held_to_its_bandwidth_and_connections_do_not_share_it() {
    // 1 MiB each way at 4 MiB/s: at least 0.25 s (less the first chunk, sent at once).
    let rate = 4 * 1024 * 1024;
    let link = link(0, Some(rate));
    let data = vec![7u8; 1024 * 1024];
    let t = Instant::now();
    assert_eq!(round_trip(&link, &data), data);
    let one = t.elapsed();
    assert!(
        one >= Duration::from_millis(200),
        "1 MiB at 4 MiB/s took {one:?}"
    );
    // Two connections at once: each has its own cap (the link is per connection, like Azure's),
    // and both are counted as open together.
    let t = Instant::now();
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let addr = link.addr();
            let data = data.clone();
            std::thread::spawn(move || round_trip_to(addr, &data) == data)
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap());
    }
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert!(link.stats().peak_open.load(Ordering::Relaxed) >= 2);
}
