//! Where the log goes: stderr (in the foreground, and under systemd, whose journal takes
//! stderr), then, once a daemon has detached, a --log-file or syslog (which journald also
//! collects on systemd machines).

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;

enum Sink {
    Stderr,
    File(std::fs::File),
    Syslog,
}

static SINK: Mutex<Sink> = Mutex::new(Sink::Stderr);

/// Libraries at warn, but fuser's session at error: its one warning is "Failed to umount
/// filesystem: Invalid argument" when the session ends after an outside `umount`, which the
/// mount's own shutdown already handled and reported.
const QUIET: &str = "warn,fuser::session=error";

/// Sets up logging to stderr. `--log-level` sets blobmount's own level and keeps libraries at
/// warn (their debug output is not ours to vouch for); RUST_LOG directives are added to it, or
/// used alone without `--log-level`. `detaching`: the log will go elsewhere later, so no
/// terminal colours.
pub fn init(level: Option<&str>, detaching: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => {
            // RUST_LOG directives, when given, come on top (e.g. RUST_LOG=fuser=debug).
            let extra = std::env::var("RUST_LOG").unwrap_or_default();
            // Directives for fuser itself replace its quieting.
            let base = if extra.contains("fuser") {
                "warn"
            } else {
                QUIET
            };
            EnvFilter::new(format!("{base},blobmount={l},{extra}").trim_end_matches(','))
        }
        None => EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(format!("{QUIET},blobmount=info"))),
    };
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(SinkWriter)
        .with_ansi(terminal && !detaching)
        .with_target(false);
    // The journal stamps every line itself (when they stay on stderr, which it takes).
    let _ = if std::env::var_os("JOURNAL_STREAM").is_some() && !detaching {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
}

/// The socket syslog listens on.
pub const SYSLOG_SOCKET: &str = "/dev/log";

/// Whether this machine has syslog (many containers do not: messages sent there are lost).
pub fn syslog_available() -> bool {
    Path::new(SYSLOG_SOCKET).exists()
}

/// From now on, the log goes to `file` (appended to), or to syslog without one.
pub fn detach(file: Option<&Path>) -> std::io::Result<()> {
    let sink = match file {
        Some(path) => Sink::File(open_log(path)?),
        None => {
            // SAFETY: the identity is a static C string; openlog keeps the pointer.
            unsafe { libc::openlog(c"blobmount".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
            Sink::Syslog
        }
    };
    *SINK.lock().unwrap_or_else(|e| e.into_inner()) = sink;
    Ok(())
}

/// Opens the log file now, to report a bad --log-file before detaching.
pub fn check_log_file(path: &Path) -> std::io::Result<()> {
    open_log(path).map(drop)
}

fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

struct SinkWriter;

/// One log event: collected, then written to the sink in one piece.
pub struct EventWriter {
    level: Level,
    buf: Vec<u8>,
}

impl<'a> MakeWriter<'a> for SinkWriter {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> EventWriter {
        EventWriter {
            level: Level::INFO,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> EventWriter {
        EventWriter {
            level: *meta.level(),
            buf: Vec::new(),
        }
    }
}

impl Write for EventWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let mut sink = SINK.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *sink {
            Sink::Stderr => {
                let _ = std::io::stderr().write_all(&self.buf);
            }
            Sink::File(f) => {
                let _ = f.write_all(&self.buf);
            }
            Sink::Syslog => {
                let priority = match self.level {
                    Level::ERROR => libc::LOG_ERR,
                    Level::WARN => libc::LOG_WARNING,
                    Level::INFO => libc::LOG_INFO,
                    _ => libc::LOG_DEBUG,
                };
                let text = String::from_utf8_lossy(&self.buf);
                let line = text.trim_end().replace('\0', " ");
                if let Ok(c) = std::ffi::CString::new(line) {
                    // SAFETY: "%s" with one valid C string argument.
                    unsafe { libc::syslog(priority, c"%s".as_ptr(), c.as_ptr()) };
                }
            }
        }
    }
}
