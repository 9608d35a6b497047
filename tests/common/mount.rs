//! The `blobmount` binary mounted in the foreground on a temporary directory.
//!
//! Layout of the temp dir: `mnt/` (the mount point), `blobmount.log` (stdout and stderr of
//! the daemon) or, for [`Mount::try_start`], `stdout.log` and `stderr.log` apart.
//!
//! Dropping a [`Mount`] unmounts (`fusermount3 -uz`, else `umount -l`), then stops the daemon
//! (SIGTERM by pid, SIGKILL after 5 s) and reaps it; this also runs when the test panics. The
//! temp dir is deleted only once nothing is mounted on it: deleting through a live read-write
//! mount would delete blobs.

use super::process::{read_lossy, signal, terminate, wait_timeout};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long the daemon may take to show up as a FUSE mount.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the daemon gets after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

pub struct Mount {
    child: Option<Child>,
    mountpoint: PathBuf,
    logs: Logs,
    // None once deliberately leaked (the mount could not be removed).
    dir: Option<tempfile::TempDir>,
}

enum Logs {
    Combined(PathBuf),
    Split { stdout: PathBuf, stderr: PathBuf },
}

/// How a `blobmount mount` that was expected to fail before mounting ended.
#[derive(Debug)]
pub struct MountFailure {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Whether anything was mounted on the mount point after the process exited.
    pub left_mounted: bool,
}

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mount")
            .field("pid", &self.child.as_ref().map(|c| c.id()))
            .field("mountpoint", &self.mountpoint)
            .finish()
    }
}

impl Mount {
    /// Runs `blobmount mount SAS_URL MOUNTPOINT --foreground --log-level debug EXTRA...` and
    /// waits (at most 20 s) until MOUNTPOINT is a FUSE mount. Panics with the daemon's log if it
    /// exits first or does not mount in time.
    pub fn start(sas_url: &str, extra: &[&str]) -> Mount {
        let mut args = vec!["--foreground", "--log-level", "debug"];
        args.extend_from_slice(extra);
        match Self::spawn_and_wait(sas_url, &args, true) {
            Ok(m) => m,
            Err(f) => panic!(
                "blobmount mount exited before mounting ({}); its output:\n{}{}",
                f.status, f.stderr, f.stdout
            ),
        }
    }

    /// Runs `blobmount mount SAS_URL MOUNTPOINT --foreground EXTRA...` (no log level added, with
    /// stdout and stderr captured apart) for tests of pre-mount failures: `Err` if the process
    /// exits before mounting, `Ok(Mount)` if it mounted after all.
    pub fn try_start(sas_url: &str, extra: &[&str]) -> Result<Mount, MountFailure> {
        let mut args = vec!["--foreground"];
        args.extend_from_slice(extra);
        Self::spawn_and_wait(sas_url, &args, false)
    }

    /// [`Mount::try_start`] that must fail: asserts a non-zero exit and that nothing was left
    /// mounted, and returns the failure (check `stderr` for the one-line message).
    pub fn expect_failure(sas_url: &str, extra: &[&str]) -> MountFailure {
        match Self::try_start(sas_url, extra) {
            Ok(m) => panic!(
                "blobmount mount was expected to fail but mounted; its log:\n{}",
                m.log()
            ),
            Err(f) => {
                assert!(
                    !f.status.success(),
                    "blobmount mount exited 0 without mounting: {f:?}"
                );
                assert!(!f.left_mounted, "a failed mount left a mount behind: {f:?}");
                f
            }
        }
    }

    fn spawn_and_wait(sas_url: &str, args: &[&str], combined: bool) -> Result<Mount, MountFailure> {
        let dir = tempfile::Builder::new()
            .prefix("blobmount-mount-")
            .tempdir()
            .expect("create temp dir for the mount");
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint).expect("create mount point");
        let (logs, stdout, stderr) = if combined {
            let p = dir.path().join("blobmount.log");
            let f = File::create(&p).expect("create log file");
            let f2 = f.try_clone().expect("dup log file");
            (Logs::Combined(p), f, f2)
        } else {
            let out = dir.path().join("stdout.log");
            let err = dir.path().join("stderr.log");
            let fo = File::create(&out).expect("create stdout log");
            let fe = File::create(&err).expect("create stderr log");
            (
                Logs::Split {
                    stdout: out,
                    stderr: err,
                },
                fo,
                fe,
            )
        };
        let child = Command::new(env!("CARGO_BIN_EXE_blobmount"))
            .arg("mount")
            .arg(sas_url)
            .arg(&mountpoint)
            .args(args)
            // The default staging directory (and journal) is this mount's own, gone with it;
            // a test that remounts on the same journal gives --staging-dir.
            .env("STATE_DIRECTORY", dir.path().join("state"))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start blobmount");
        let mut m = Mount {
            child: Some(child),
            mountpoint,
            logs,
            dir: Some(dir),
        };
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        loop {
            if is_fuse_mount(&m.mountpoint) {
                return Ok(m);
            }
            let child = m.child.as_mut().expect("child");
            if let Ok(Some(status)) = child.try_wait() {
                // It may have mounted and exited in between: look once more.
                let left_mounted = is_fuse_mount(&m.mountpoint);
                let (stdout, stderr) = m.outputs();
                m.child = None;
                return Err(MountFailure {
                    code: status.code(),
                    status,
                    stdout,
                    stderr,
                    left_mounted,
                });
            }
            if Instant::now() >= deadline {
                let log = m.log();
                drop(m);
                panic!("blobmount did not mount within {MOUNT_TIMEOUT:?}; its output:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Everything the daemon printed so far (stderr, then stdout if captured apart).
    pub fn log(&self) -> String {
        let (stdout, stderr) = self.outputs();
        stderr + &stdout
    }

    fn outputs(&self) -> (String, String) {
        match &self.logs {
            Logs::Combined(p) => (String::new(), read_lossy(p)),
            Logs::Split { stdout, stderr } => (read_lossy(stdout), read_lossy(stderr)),
        }
    }

    /// Whether the mount point is (still) a FUSE mount.
    pub fn is_mounted(&self) -> bool {
        is_fuse_mount(&self.mountpoint)
    }

    /// Sends a signal (e.g. `libc::SIGTERM`, `libc::SIGINT`) to the daemon, by pid.
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            signal(c.id(), sig);
        }
    }

    /// Waits up to `timeout` for the daemon to exit on its own; its status, or `None`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_timeout(self.child.as_mut()?, timeout)
    }

    /// Unmounts with `fusermount3 -u` (not lazy) and waits up to 20 s for the daemon to exit;
    /// returns its exit status. Panics (after cleaning up) if it does not exit.
    pub fn unmount(mut self) -> ExitStatus {
        // The kernel sends a file's release after its close has returned: right after a read,
        // the mount may still count that file as open (EBUSY) for a moment.
        let started = Instant::now();
        let out = loop {
            let out = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mountpoint)
                .output();
            match &out {
                Ok(o)
                    if !o.status.success()
                        && String::from_utf8_lossy(&o.stderr).contains("busy")
                        && started.elapsed() < Duration::from_secs(3) =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => break out,
            }
        };
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "fusermount3 -u {} failed: {}",
                self.mountpoint.display(),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("cannot run fusermount3: {e}"),
        }
        match self.wait_exit(Duration::from_secs(20)) {
            Some(status) => {
                self.child = None;
                status
            }
            None => panic!(
                "blobmount did not exit within 20 s after unmount; its log:\n{}",
                self.log()
            ),
        }
    }

    /// Sends SIGTERM and waits up to 20 s for the daemon to unmount and exit; returns its exit
    /// status. Panics (after cleaning up) if it does not exit.
    pub fn terminate(mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        match self.wait_exit(Duration::from_secs(20)) {
            Some(status) => {
                self.child = None;
                status
            }
            None => panic!(
                "blobmount did not exit within 20 s of SIGTERM; its log:\n{}",
                self.log()
            ),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if is_fuse_mount(&self.mountpoint) {
            let ok = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mountpoint)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                let _ = Command::new("umount")
                    .arg("-l")
                    .arg(&self.mountpoint)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, STOP_GRACE);
        }
        // Never let TempDir's recursive delete walk into a live mount.
        if is_fuse_mount(&self.mountpoint) {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!(
                    "warning: {} is still mounted; leaving {} in place",
                    self.mountpoint.display(),
                    kept.display()
                );
            }
        }
    }
}

/// Whether `path` is the mount point of a FUSE file system (type `fuse`, `fuse.*` or `fuseblk`)
/// according to /proc/self/mountinfo.
pub fn is_fuse_mount(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines().any(|line| {
        let mut halves = line.splitn(2, " - ");
        let (Some(left), Some(right)) = (halves.next(), halves.next()) else {
            return false;
        };
        let mount_point = left.split(' ').nth(4).map(unescape_mountinfo);
        let fstype = right.split(' ').next().unwrap_or("");
        mount_point.as_deref() == Some(want.as_ref())
            && (fstype == "fuse" || fstype == "fuseblk" || fstype.starts_with("fuse."))
    })
}

/// Undoes mountinfo's octal escapes (`\040` for space, `\011`, `\012`, `\134`).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
