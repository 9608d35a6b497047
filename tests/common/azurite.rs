//! Azurite (blob service only, in memory) on a free loopback port.

use super::process::{free_port, read_lossy, terminate};
use super::{repo_root, Rest, ACCOUNT};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long Azurite may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long Azurite gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running Azurite blob service. Dropping it stops it (SIGTERM by pid, SIGKILL after 5 s).
pub struct Azurite {
    child: Child,
    port: u16,
    log_path: PathBuf,
    // Working directory and log; Azurite runs in memory and writes nothing else.
    dir: tempfile::TempDir,
}

impl Azurite {
    /// Path of the `azurite-blob` launcher in node_modules; panics if it is not installed.
    pub fn bin() -> PathBuf {
        let bin = repo_root().join("node_modules/.bin/azurite-blob");
        if !bin.exists() {
            panic!(
                "Azurite is not installed ({} is missing): run scripts/install-test-deps.sh",
                bin.display()
            );
        }
        bin
    }

    /// Starts Azurite and waits (at most 30 s) until it answers HTTP on its port.
    pub fn start() -> Azurite {
        let bin = Self::bin();
        let mut last_log = String::new();
        // A free port can be taken by someone else between our probe and Azurite's bind:
        // retry with a new port a few times.
        for _attempt in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("blobmount-azurite-")
                .tempdir()
                .expect("create temp dir for Azurite");
            let log_path = dir.path().join("azurite.log");
            let log = std::fs::File::create(&log_path).expect("create Azurite log file");
            let port = free_port();
            let child = Command::new(&bin)
                .args([
                    "--inMemoryPersistence",
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    &port.to_string(),
                    "--skipApiVersionCheck",
                    "--loose",
                    "--silent",
                    "--disableTelemetry",
                    "--disableProductStyleUrl",
                ])
                // --location conflicts with --inMemoryPersistence in 3.37; the working
                // directory is the temp dir so nothing can land in the repository.
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup log file"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut az = Azurite {
                child,
                port,
                log_path,
                dir,
            };
            match az.wait_ready() {
                Ok(()) => return az,
                Err(log) if log.contains("EADDRINUSE") => {
                    last_log = log;
                    continue; // dropped: killed; try another port
                }
                Err(log) => panic!("Azurite did not start on port {port}; its log:\n{log}"),
            }
        }
        panic!("Azurite could not bind a free port after 5 tries; last log:\n{last_log}");
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("(exited: {status})\n{}", self.log()));
            }
            if answers_http(addr) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "(no answer after {START_TIMEOUT:?})\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:PORT/devstoreaccount1`
    pub fn account_url(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What Azurite printed (errors only: it runs with --silent).
    pub fn log(&self) -> String {
        read_lossy(&self.log_path)
    }

    /// A REST helper for this emulator.
    pub fn rest(&self) -> Rest {
        Rest::new(&self.account_url())
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        terminate(&mut self.child, STOP_GRACE);
        let _ = &self.dir; // removed after the process is gone
    }
}

/// Whether something on `addr` answers an HTTP request with an HTTP status line (any status:
/// an unauthenticated request gets 403, which is enough to know Azurite is serving).
fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    let req =
        format!("GET /{ACCOUNT}?comp=list HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf[..got].starts_with(b"HTTP/1.1 ")
}
