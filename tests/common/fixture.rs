//! One Azurite, one container, a proxy in front: what most mount tests start from.

use std::path::Path;
use std::process::Command;

use time::OffsetDateTime;

use super::{container_sas_url, unique_container, Azurite, Mount, Proxy, Rest};

pub struct Fixture {
    /// Direct REST access (not through the proxy, not through the mount).
    pub rest: Rest,
    pub container: String,
    /// In front of Azurite: the mount talks through it (counts, delays, faults).
    pub proxy: Proxy,
    permissions: &'static str,
    // Dropped last: a mount (declared by a test after its fixture) goes first.
    _azurite: Azurite,
}

impl Fixture {
    /// A fixture whose mounts get a read-only SAS (`rl`).
    pub fn new(name: &str) -> Fixture {
        Self::with_permissions(name, "rl")
    }

    /// A fixture whose mounts get a read-write SAS (`racwdl`).
    pub fn writable(name: &str) -> Fixture {
        Self::with_permissions(name, "racwdl")
    }

    fn with_permissions(name: &str, permissions: &'static str) -> Fixture {
        let azurite = Azurite::start();
        let rest = azurite.rest();
        let container = unique_container(name);
        rest.create_container(&container);
        let proxy = Proxy::start(&azurite.account_url());
        Fixture {
            rest,
            container,
            proxy,
            permissions,
            _azurite: azurite,
        }
    }

    /// The container's SAS URL, through the proxy.
    pub fn url(&self) -> String {
        container_sas_url(
            &self.proxy.account_url(),
            &self.container,
            self.permissions,
            None,
            OffsetDateTime::now_utc() + time::Duration::hours(1),
        )
    }

    pub fn mount(&self, extra: &[&str]) -> Mount {
        Mount::start(&self.url(), extra)
    }

    /// Puts a blob directly (by REST).
    pub fn put(&self, name: &str, data: &[u8]) {
        self.rest.put_blob(&self.container, name, data);
    }

    /// A blob's content, read directly (by REST).
    pub fn blob(&self, name: &str) -> Option<Vec<u8>> {
        self.rest.get_blob(&self.container, name)
    }

    /// Blob names under `prefix`, listed directly (by REST).
    pub fn names(&self, prefix: &str) -> Vec<String> {
        self.rest.list_blob_names(&self.container, prefix)
    }
}

/// Runs `sh -c SCRIPT` in `dir`; panics with its output if it fails; returns its stdout.
pub fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{script}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
