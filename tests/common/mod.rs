//! Shared test harness for blobmount's integration tests: `mod common;` in a file under tests/.
//!
//! - [`Azurite`]: an in-memory Azurite blob service on a free loopback port, killed on drop.
//! - [`Rest`]: direct REST calls against the emulator (not through the mount), to seed and
//!   check blobs, authorised by an account SAS.
//! - [`Mount`]: the `blobmount` binary mounted in the foreground on a temporary directory,
//!   unmounted and stopped on drop (also when the test panics).
//! - [`Proxy`]: a counting, fault-injecting HTTP/1.1 reverse proxy in front of Azurite.
//!
//! Azurite comes from `node_modules` (scripts/install-test-deps.sh installs it).
//! Everything binds to 127.0.0.1 only, and every process started here is stopped by its pid.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code, unused_imports)]

pub mod azurite;
pub mod detached;
pub mod fixture;
pub mod link;
pub mod model;
pub mod mount;
pub mod process;
pub mod proxy;
pub mod rest;

pub use azurite::Azurite;
pub use fixture::{sh, Fixture};
pub use mount::{Mount, MountFailure};
pub use proxy::{Fault, Proxy, RecordedRequest};
pub use rest::{container_sas_url, BlobProperties, RawResponse, Rest};

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The emulator's well-known development account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// The emulator's well-known development account key (public; base64).
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The blobmount binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_blobmount")
}

/// A finished command's stderr, as text.
pub fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The repository root (where Cargo.toml, package.json and node_modules are).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Polls `cond` every 50 ms until it is true or `timeout` has passed; returns its last value.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A unique, valid container name (3-63 chars, lowercase letters, digits, '-') from a prefix.
pub fn unique_container(prefix: &str) -> String {
    let clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let clean = clean.trim_matches('-');
    format!(
        "{}-{:08x}",
        if clean.is_empty() { "c" } else { clean },
        fastrand::u32(..)
    )
}

/// Deterministic pseudo-random bytes (a fixed seed gives the same bytes every run).
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}

/// The signature of a SAS URL (or token), raw and percent-encoded: what must never appear in
/// any output.
pub fn signature_forms(url_or_token: &str) -> Vec<String> {
    let query = url_or_token
        .split_once('?')
        .map_or(url_or_token, |(_, q)| q);
    let sig = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "sig")
        .expect("a SAS has a sig")
        .1
        .into_owned();
    let encoded: String = url::form_urlencoded::byte_serialize(sig.as_bytes()).collect();
    vec![sig, encoded]
}
