//! `blobmount unmount MOUNTPOINT`: asks the mountpoint's daemon to commit its open files and
//! unmount (SIGTERM), waits until it has exited, and exits as it did. This is the systemd
//! unit's ExecStop: it returns only when the daemon is gone.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::checks::lazy_unmount;
use super::mountinfo;
use super::state::{has_exited, StateFiles};
use super::MountError;

/// Unmounts. `wait`: how long to wait for the daemon to exit [default: its
/// --shutdown-timeout and 30 s more].
pub fn run(mountpoint: &Path, wait: Option<Duration>) -> Result<(), MountError> {
    let mountpoint = absolute(mountpoint);
    let shown = mountpoint.display();
    let state = StateFiles::new(&mountpoint);
    let Some(pid) = state.daemon() else {
        return unmount_without_daemon(&mountpoint, &state);
    };
    let wait = wait.unwrap_or_else(|| {
        state.shutdown_timeout().unwrap_or(Duration::from_secs(60)) + Duration::from_secs(30)
    });
    state.clear_outcome();
    // SAFETY: kill with a pid from our state file, checked to be the daemon that wrote it.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        return Err(MountError::failed(format!(
            "cannot signal the daemon of {shown} (pid {pid}): {}",
            std::io::Error::last_os_error()
        )));
    }
    let start = Instant::now();
    while !has_exited(pid) {
        if start.elapsed() > wait {
            return Err(MountError::failed(format!(
                "the daemon of {shown} (pid {pid}) is still running after {}s: see its log",
                wait.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match state.take_outcome() {
        Some(outcome) => outcome_result(&mountpoint, outcome),
        None => Err(MountError::failed(format!(
            "the daemon of {shown} (pid {pid}) exited without saying how it ended (killed?): see its log"
        ))),
    }
}

/// The daemon's own outcome, as this command's.
fn outcome_result(mountpoint: &Path, (code, message): (i32, String)) -> Result<(), MountError> {
    if code == 0 {
        if message.contains(super::shutdown::DETACHED_BUSY) {
            eprintln!(
                "blobmount: {}: {}",
                mountpoint.display(),
                super::shutdown::DETACHED_BUSY
            );
        }
        Ok(())
    } else {
        Err(MountError {
            message: format!("{}: {message}", mountpoint.display()),
            code,
        })
    }
}

/// No daemon of ours serves it. Only a mount of blobmount (see [`mountinfo::MountEntry::is_ours`])
/// is ever touched: a dead one is cleaned, a live one (its daemon's state file gone) unmounted
/// with fusermount3; any other mount at the path is refused, untouched. A path with nothing
/// mounted on it is "not mounted" (an error), unless our daemon of that path just stopped by
/// itself (as after a `umount`): then its outcome is the answer.
fn unmount_without_daemon(mountpoint: &Path, state: &StateFiles) -> Result<(), MountError> {
    let shown = mountpoint.display();
    let dead = match std::fs::metadata(mountpoint) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)) => true,
        Err(e) => return Err(MountError::failed(format!("cannot use {shown}: {e}"))),
        Ok(_) => false,
    };
    let Some(mount) = mountinfo::mount_at(mountpoint) else {
        return match state.take_outcome() {
            Some(outcome) => outcome_result(mountpoint, outcome),
            None => Err(MountError::failed(format!(
                "{shown} is not mounted{}",
                match mountinfo::ours_around(mountpoint) {
                    Some(m) => format!(" (it is inside the blobmount mount {m})"),
                    None => String::new(),
                }
            ))),
        };
    };
    if !mount.is_ours() {
        return Err(MountError::failed(format!(
            "{shown} is a {} mount, not one of blobmount's: left as it is (use umount for it)",
            mount.fstype
        )));
    }
    if dead {
        lazy_unmount(mountpoint);
        return Ok(());
    }
    let out = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(mountpoint)
        .output()
        .map_err(|e| MountError::failed(format!("cannot run fusermount3: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        let why = String::from_utf8_lossy(&out.stderr);
        Err(MountError::failed(format!(
            "cannot unmount {shown}: {}",
            why.trim().trim_start_matches("fusermount3: ")
        )))
    }
}

/// The mountpoint as the daemon recorded it (canonical); a dead mount cannot be resolved, so
/// its parent is.
fn absolute(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|p| p.join(name))
            .unwrap_or(abs),
        _ => abs,
    }
}
