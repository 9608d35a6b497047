//! The link emulator as a program, for `scripts/bench.sh`: forwards a loopback port to Azurite
//! with a round-trip delay and a per-connection bandwidth cap (see `tests/common/link.rs`).
//!
//! ```text
//! cargo run --release --example link -- --upstream 127.0.0.1:10000 --rtt 10ms --conn-rate 100M
//! ```
//! It prints `listening on 127.0.0.1:PORT` once ready, runs until SIGTERM or SIGINT, then prints
//! what went through it (`connections N peak_open M bytes_up U bytes_down D`) and exits.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Parser;

#[path = "../tests/common/link.rs"]
mod link;

/// Forward a loopback port to an upstream address, as over a real network.
#[derive(Parser)]
#[command(name = "link")]
struct Args {
    /// Where connections are forwarded (Azurite's blob port).
    #[arg(long)]
    upstream: SocketAddr,
    /// Where programs connect (port 0: a free one, printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Round-trip time added (half of it in each direction), e.g. 10ms.
    #[arg(long, default_value = "10ms", value_parser = blobmount::size::parse_duration)]
    rtt: Duration,
    /// Bandwidth per connection and direction, bytes per second (100M = 100 MiB/s); 0: none.
    #[arg(long, default_value = "100M", value_parser = blobmount::size::parse_size)]
    conn_rate: u64,
}

fn main() {
    let args = Args::parse();
    let cfg = link::LinkConfig {
        one_way_delay: args.rtt / 2,
        bytes_per_sec: (args.conn_rate > 0).then_some(args.conn_rate),
    };
    let link = match link::Link::start(args.listen, args.upstream, cfg) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("link: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    println!("listening on {}", link.addr());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("signal runtime");
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    });
    let s = link.stats();
    println!(
        "connections {} peak_open {} bytes_up {} bytes_down {}",
        s.connections.load(Ordering::Relaxed),
        s.peak_open.load(Ordering::Relaxed),
        s.bytes_up.load(Ordering::Relaxed),
        s.bytes_down.load(Ordering::Relaxed)
    );
}
