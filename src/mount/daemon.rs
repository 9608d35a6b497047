//! Background mode: `blobmount mount` forks a daemon and returns only when the daemon says the
//! filesystem is mounted (exit 0), or with the daemon's own error and exit code. The answer
//! comes through a pipe: `ok`, or `err CODE MESSAGE`.
//!
//! The fork happens before any thread exists (no runtime yet), so the child is a clean copy.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};

/// The daemon's end of the pipe to the waiting `blobmount mount`.
pub struct ReadyPipe(Option<std::fs::File>);

impl ReadyPipe {
    /// The mount is up: the waiting command prints `notice` (if any) and exits 0.
    pub fn ready(&mut self, notice: Option<&str>) {
        if let Some(mut f) = self.0.take() {
            let _ = match notice {
                Some(n) => writeln!(f, "ok {}", n.replace('\n', " ")),
                None => f.write_all(b"ok\n"),
            };
        }
    }

    /// The mount failed: the waiting command prints `message` and exits with `code`.
    pub fn failed(&mut self, code: i32, message: &str) {
        if let Some(mut f) = self.0.take() {
            let _ = writeln!(f, "err {code} {}", message.replace('\n', " "));
        }
    }
}

/// Forks. In the parent, waits for the daemon's answer and exits the process with it; in the
/// daemon (the child), returns the pipe to answer through, in a new session, in `/`.
pub fn fork() -> Result<ReadyPipe, String> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!(
            "cannot create a pipe: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the fds were just created and are owned here.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread exists yet (the caller forks before starting any).
    match unsafe { libc::fork() } {
        -1 => Err(format!(
            "cannot start the daemon: {}",
            std::io::Error::last_os_error()
        )),
        0 => {
            drop(read_end);
            // SAFETY: plain system calls without memory arguments (chdir's is a static string).
            unsafe {
                libc::setsid();
                libc::chdir(c"/".as_ptr());
            }
            super::notify::forget_socket();
            Ok(ReadyPipe(Some(std::fs::File::from(write_end))))
        }
        child => {
            drop(write_end);
            std::process::exit(wait_for_answer(std::fs::File::from(read_end), child))
        }
    }
}

/// Reads the daemon's answer; prints its error; gives the exit code.
fn wait_for_answer(mut pipe: std::fs::File, child: libc::pid_t) -> i32 {
    let mut answer = String::new();
    let _ = pipe.read_to_string(&mut answer);
    let answer = answer.trim_end();
    if answer == "ok" {
        return 0;
    }
    if let Some(notice) = answer.strip_prefix("ok ") {
        eprintln!("blobmount: {notice}");
        return 0;
    }
    if let Some(rest) = answer.strip_prefix("err ") {
        let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
        eprintln!("blobmount: {message}");
        return code.parse().unwrap_or(1);
    }
    // No answer: the daemon died before it could give one.
    let mut status = 0;
    // SAFETY: waits for our own child; status is a valid int.
    unsafe { libc::waitpid(child, &mut status, 0) };
    let how = if libc::WIFSIGNALED(status) {
        format!("was killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    };
    eprintln!("blobmount: the daemon {how} before the mount was ready (see its log)");
    1
}

/// Points stdin, stdout and stderr at /dev/null: the daemon no longer has a terminal.
pub fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors, from a valid open fd.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}
