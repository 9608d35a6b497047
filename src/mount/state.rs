//! Small files that let `blobmount unmount` find the daemon of a mountpoint and learn how it
//! ended: `PID` while it serves, then `CODE MESSAGE` once it has exited. They live in
//! /run/blobmount (root), $XDG_RUNTIME_DIR/blobmount, or /tmp/blobmount-UID, named after the
//! mountpoint.

use std::path::{Path, PathBuf};

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

/// The directory of the state files.
pub fn dir() -> PathBuf {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    if uid == 0 {
        return PathBuf::from("/run/blobmount");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("blobmount"),
        _ => PathBuf::from(format!("/tmp/blobmount-{uid}")),
    }
}

/// The state files of one mountpoint (an absolute path).
#[derive(Debug, Clone)]
pub struct StateFiles {
    pid: PathBuf,
    exit: PathBuf,
}

impl StateFiles {
    pub fn new(mountpoint: &Path) -> Self {
        Self::in_dir(&dir(), mountpoint)
    }

    fn in_dir(dir: &Path, mountpoint: &Path) -> Self {
        let key = utf8_percent_encode(&mountpoint.to_string_lossy(), NON_ALPHANUMERIC).to_string();
        StateFiles {
            pid: dir.join(format!("{key}.pid")),
            exit: dir.join(format!("{key}.exit")),
        }
    }

    /// Records this process as the mountpoint's daemon.
    pub fn serving(&self) {
        let result = self
            .pid
            .parent()
            .map_or(Ok(()), create_private_dir)
            .and_then(|()| {
                let _ = std::fs::remove_file(&self.exit);
                let pid = std::process::id() as libc::pid_t;
                let started = start_time(pid).unwrap_or_default();
                std::fs::write(&self.pid, format!("{pid} {started}\n"))
            });
        if let Err(e) = result {
            tracing::warn!(
                "cannot write {} (blobmount unmount will not find this daemon): {e}",
                self.pid.display()
            );
        }
    }

    /// Records how the daemon ended.
    pub fn finished(&self, code: i32, message: &str) {
        let _ = std::fs::write(&self.exit, format!("{code} {message}\n"));
        let _ = std::fs::remove_file(&self.pid);
    }

    /// The daemon serving the mountpoint, if one is alive: the pid recorded, if that process
    /// started when the recorded one did (a pid can be reused once its process is gone).
    pub fn daemon(&self) -> Option<libc::pid_t> {
        let text = std::fs::read_to_string(&self.pid).ok()?;
        let (pid, started) = text.trim().split_once(' ')?;
        let pid: libc::pid_t = pid.parse().ok()?;
        if start_time(pid)? != started.parse::<u64>().ok()? {
            return None;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        // "blobmount", or "mount.fuse.blob" (comm is cut at 15 bytes) when run by that name.
        matches!(comm.trim_end(), "blobmount" | "mount.fuse.blob").then_some(pid)
    }

    /// How the daemon ended: its exit code and message.
    pub fn outcome(&self) -> Option<(i32, String)> {
        let text = std::fs::read_to_string(&self.exit).ok()?;
        let (code, message) = text.trim_end().split_once(' ')?;
        Some((code.parse().ok()?, message.to_string()))
    }

    /// How the daemon ended, read once: the file goes.
    pub fn take_outcome(&self) -> Option<(i32, String)> {
        let outcome = self.outcome();
        self.clear_outcome();
        outcome
    }

    /// Forgets a previous outcome (before asking the daemon to stop).
    pub fn clear_outcome(&self) {
        let _ = std::fs::remove_file(&self.exit);
    }
}

/// When the process started (clock ticks since boot: field 22 of /proc/PID/stat).
fn start_time(pid: libc::pid_t) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split(' ').nth(19)?.parse().ok()
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateFiles::in_dir(&dir.path().join("state"), Path::new("/mnt/my data"));
        assert!(s.pid.ends_with("%2Fmnt%2Fmy%20data.pid"), "{:?}", s.pid);
        assert_eq!(s.daemon(), None);
        s.serving();
        // This test process is not called blobmount: not taken for a daemon.
        assert_eq!(s.daemon(), None);
        assert!(s.pid.exists());
        s.finished(1, "2 files were not committed: a, b");
        assert!(!s.pid.exists());
        assert_eq!(
            s.outcome(),
            Some((1, "2 files were not committed: a, b".to_string()))
        );
        assert!(s.take_outcome().is_some());
        assert_eq!(s.outcome(), None);
        // A recorded pid whose process started at another time is not the daemon.
        std::fs::write(&s.pid, format!("{} 1\n", std::process::id())).unwrap();
        assert_eq!(s.daemon(), None);
        assert!(start_time(std::process::id() as libc::pid_t).unwrap() > 0);
    }
}
