//! Mounts made by commands that return once the mount is ready (`blobmount mount` without
//! --foreground, `mount -t fuse.blobmount`): the daemon is not a child of the test, so it is
//! found by its mountpoint, through blobmount's state file (the pid it serves under) or, failing
//! that, by a process whose command line names the mountpoint.
//!
//! Layout of the temp dir: `mnt/` (the mountpoint), `daemon.log` (the daemon's --log-file,
//! when the test passes [`Detached::log_file`]). Dropping a [`Detached`] unmounts (`fusermount3
//! -uz`), then stops every daemon it saw (SIGTERM, SIGKILL after 5 s), also when the test
//! panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use blobmount::mount::state::{has_exited, StateFiles};

use super::mount::is_fuse_mount;
use super::process::{pid_alive, read_lossy, signal};
use super::wait_until;

pub struct Detached {
    mountpoint: PathBuf,
    /// Every daemon pid seen serving the mountpoint.
    pids: Vec<u32>,
    dir: Option<tempfile::TempDir>,
}

impl Detached {
    pub fn new() -> Detached {
        let dir = tempfile::Builder::new()
            .prefix("blobmount-detached-")
            .tempdir()
            .expect("temp dir");
        let mountpoint = std::fs::canonicalize(dir.path())
            .expect("canonical temp dir")
            .join("mnt");
        std::fs::create_dir(&mountpoint).expect("mkdir mnt");
        Detached {
            mountpoint,
            pids: Vec::new(),
            dir: Some(dir),
        }
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// A file beside the mountpoint (for logs, tokens, configs).
    pub fn file(&self, name: &str) -> PathBuf {
        self.mountpoint.parent().expect("parent").join(name)
    }

    /// The path to give as --log-file.
    pub fn log_file(&self) -> PathBuf {
        self.file("daemon.log")
    }

    pub fn log(&self) -> String {
        read_lossy(&self.log_file())
    }

    pub fn is_mounted(&self) -> bool {
        is_fuse_mount(&self.mountpoint)
    }

    /// `blobmount mount SOURCE MOUNTPOINT --log-file LOG` (in the background), then notes the
    /// daemon's pid.
    pub fn mount(&mut self, source: &str) -> Output {
        let mut cmd = Command::new(super::bin());
        cmd.env("STATE_DIRECTORY", self.file("state"))
            .arg("mount")
            .arg(source)
            .arg(&self.mountpoint)
            .arg("--log-file")
            .arg(self.log_file());
        self.run(&mut cmd)
    }

    /// Runs the command (which should mount and return), then notes the daemon's pid.
    pub fn run(&mut self, cmd: &mut Command) -> Output {
        let out = cmd
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .output()
            .expect("run the mount command");
        self.note_daemon();
        out
    }

    /// The daemon serving the mountpoint now, if any (and remembers it for the cleanup).
    pub fn note_daemon(&mut self) -> Option<u32> {
        let pid = StateFiles::new(&self.mountpoint)
            .daemon()
            .map(|p| p as u32)
            .or_else(|| self.find_by_command_line());
        if let Some(p) = pid {
            if !self.pids.contains(&p) {
                self.pids.push(p);
            }
        }
        pid
    }

    fn find_by_command_line(&self) -> Option<u32> {
        let needle = self.mountpoint.to_string_lossy().into_owned();
        let me = std::process::id();
        std::fs::read_dir("/proc")
            .ok()?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| *pid != me)
            .find(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                comm.trim_end() == "blobmount"
                    && String::from_utf8_lossy(&cmdline).contains(&needle)
            })
    }

    /// Whether every daemon seen has exited.
    pub fn daemons_gone(&self) -> bool {
        self.pids.iter().all(|p| has_exited(*p as libc::pid_t))
    }

    /// Waits until every daemon seen has exited.
    pub fn wait_daemons_gone(&self, timeout: Duration) -> bool {
        wait_until(timeout, || self.daemons_gone())
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        self.note_daemon();
        if is_fuse_mount(&self.mountpoint) {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mountpoint)
                .output();
        }
        for pid in &self.pids {
            if pid_alive(*pid) {
                signal(*pid, libc::SIGTERM);
            }
        }
        for pid in &self.pids {
            if !wait_until(Duration::from_secs(5), || has_exited(*pid as libc::pid_t)) {
                signal(*pid, libc::SIGKILL);
            }
        }
        if is_fuse_mount(&self.mountpoint) {
            // Never delete the temp dir through a live mount: it would delete blobs.
            if let Some(d) = self.dir.take() {
                let _ = d.keep();
            }
        }
    }
}
