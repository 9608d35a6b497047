//! Small files that let `blobmount unmount` find the daemon of a mountpoint and learn how it
//! ended: `PID` while it serves, then `CODE MESSAGE` once it has exited; and its status line
//! (token time left, files being written) for `blobmount status`, renewed while it serves. They live in
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

/// Where a daemon of `mountpoint` logs when the machine has no syslog and no --log-file was
/// given: beside its state files, in this user's private directory (made if missing), the
/// file made here, private, never through a symlink another user planted.
pub fn fallback_log(mountpoint: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = dir();
    create_private_dir(&dir)?;
    let key = utf8_percent_encode(&mountpoint.to_string_lossy(), NON_ALPHANUMERIC).to_string();
    let path = dir.join(format!("{key}.log"));
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)?;
    Ok(path)
}

/// The state files of one mountpoint (an absolute path).
#[derive(Debug, Clone)]
pub struct StateFiles {
    pid: PathBuf,
    exit: PathBuf,
    status: PathBuf,
}

/// How long an outcome nobody asked for is kept (`blobmount unmount` reads it within its wait).
const OUTCOME_KEPT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes the outcomes older than [`OUTCOME_KEPT`] (a daemon unmounted from outside leaves
/// one that nobody reads), and status lines of daemons that are gone.
pub fn clean_stale() {
    clean_stale_in(&dir());
}

fn clean_stale_in(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > OUTCOME_KEPT));
        let stale = match path.extension().and_then(|x| x.to_str()) {
            Some("exit") => old,
            Some("status") => !path.with_extension("pid").exists(),
            _ => false,
        };
        if stale {
            let _ = std::fs::remove_file(&path);
        }
    }
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
            status: dir.join(format!("{key}.status")),
        }
    }

    /// Records this process as the mountpoint's daemon, with its --shutdown-timeout (how long
    /// `blobmount unmount` should be ready to wait).
    pub fn serving(&self, shutdown_timeout: std::time::Duration) {
        let result = self
            .pid
            .parent()
            .map_or(Ok(()), create_private_dir)
            .and_then(|()| {
                let _ = std::fs::remove_file(&self.exit);
                let pid = std::process::id() as libc::pid_t;
                let started = start_time(pid).unwrap_or_default();
                let timeout = shutdown_timeout.as_secs();
                write_private(&self.pid, &format!("{pid} {started} {timeout}\n"))
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
        let written = self
            .exit
            .parent()
            .map_or(Ok(()), create_private_dir)
            .and_then(|()| write_private(&self.exit, &format!("{code} {message}\n")));
        if let Err(e) = written {
            tracing::warn!("cannot write {}: {e}", self.exit.display());
        }
        let _ = std::fs::remove_file(&self.pid);
        let _ = std::fs::remove_file(&self.status);
    }

    /// Records the daemon's status line (see `notify::status_line`).
    pub fn write_status(&self, line: &str) {
        // Written whole under a temporary name, then renamed: a reader never sees half a line.
        let tmp = self.status.with_extension("status-new");
        let dir_ok = self
            .status
            .parent()
            .is_none_or(|d| create_private_dir(d).is_ok());
        if dir_ok && write_private(&tmp, &format!("{line}\n")).is_ok() {
            let _ = std::fs::rename(&tmp, &self.status);
        }
    }

    /// The daemon's last status line, and how old it is.
    pub fn status(&self) -> Option<(String, std::time::Duration)> {
        let text = std::fs::read_to_string(&self.status).ok()?;
        let age = std::fs::metadata(&self.status)
            .ok()?
            .modified()
            .ok()?
            .elapsed()
            .unwrap_or_default();
        Some((text.trim_end().to_string(), age))
    }

    /// The daemon serving the mountpoint, if one is alive: the pid recorded, if that process
    /// started when the recorded one did (a pid can be reused once its process is gone).
    pub fn daemon(&self) -> Option<libc::pid_t> {
        let text = std::fs::read_to_string(&self.pid).ok()?;
        let mut fields = text.split_whitespace();
        let pid: libc::pid_t = fields.next()?.parse().ok()?;
        let started: u64 = fields.next()?.parse().ok()?;
        if start_time(pid)? != started {
            return None;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        // "blobmount", or "mount.fuse.blob" (comm is cut at 15 bytes) when run by that name.
        matches!(comm.trim_end(), "blobmount" | "mount.fuse.blob").then_some(pid)
    }

    /// The daemon's --shutdown-timeout, as it recorded it.
    pub fn shutdown_timeout(&self) -> Option<std::time::Duration> {
        let text = std::fs::read_to_string(&self.pid).ok()?;
        let secs = text.split_whitespace().nth(2)?.parse().ok()?;
        Some(std::time::Duration::from_secs(secs))
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

/// The fields of /proc/PID/stat after the command name (field 3, the state, first).
fn stat_fields(pid: libc::pid_t) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let (_, rest) = stat.rsplit_once(") ")?;
    Some(rest.split(' ').map(str::to_string).collect())
}

/// When the process started (clock ticks since boot: field 22 of /proc/PID/stat).
fn start_time(pid: libc::pid_t) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Whether the process is gone, or a zombie (it has exited; only its parent has not
/// collected it yet).
pub fn has_exited(pid: libc::pid_t) -> bool {
    stat_fields(pid).is_none_or(|f| f.first().map(String::as_str) == Some("Z"))
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // In /tmp, another user could have made it first: only a private directory of ours will do.
    let meta = std::fs::symlink_metadata(dir)?;
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(std::io::Error::other(format!(
            "{} is not a private directory of this user",
            dir.display()
        )));
    }
    Ok(())
}

/// Writes a state file without following a symlink planted in its place.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?
        .write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_kept_while_serving_and_old_outcomes_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let s = StateFiles::in_dir(&state, Path::new("/mnt/a"));
        s.serving(std::time::Duration::from_secs(60));
        s.write_status("mounted; SAS valid for 3h12m");
        assert_eq!(s.status().unwrap().0, "mounted; SAS valid for 3h12m");
        clean_stale_in(&state);
        assert!(
            s.status().is_some(),
            "kept while its daemon's pid file is there"
        );
        s.finished(0, "ok");
        assert!(s.status().is_none(), "gone with the daemon");
        assert!(s.outcome().is_some());
        // An outcome nobody read, an hour old, goes; a fresh one stays.
        let old = StateFiles::in_dir(&state, Path::new("/mnt/old"));
        old.finished(0, "ok");
        let f = std::fs::File::options()
            .write(true)
            .open(&old.exit)
            .unwrap();
        f.set_modified(std::time::SystemTime::now() - OUTCOME_KEPT * 2)
            .unwrap();
        std::fs::write(state.join("x.status"), "orphan").unwrap();
        clean_stale_in(&state);
        assert!(old.outcome().is_none());
        assert!(s.outcome().is_some());
        assert!(!state.join("x.status").exists());
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateFiles::in_dir(&dir.path().join("state"), Path::new("/mnt/my data"));
        assert!(s.pid.ends_with("%2Fmnt%2Fmy%20data.pid"), "{:?}", s.pid);
        assert_eq!(s.daemon(), None);
        s.serving(std::time::Duration::from_secs(60));
        assert_eq!(
            s.shutdown_timeout(),
            Some(std::time::Duration::from_secs(60))
        );
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
        let me = std::process::id() as libc::pid_t;
        assert!(start_time(me).unwrap() > 0);
        assert!(!has_exited(me));
        assert!(has_exited(libc::pid_t::MAX));
    }
}
