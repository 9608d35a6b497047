//! The way out. SIGTERM or SIGINT: stop taking changes, commit every open file (within
//! --shutdown-timeout), unmount (lazily if busy), exit. An unmount from outside: the same commit,
//! then exit. A second signal during the commit: exit at once. The exit status and the log say
//! which files could not be committed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::checks::lazy_unmount;
use super::notify;
use super::state::StateFiles;
use crate::fs::{CommitReport, Fs};
use crate::token::Credential;

pub struct Shutdown {
    fs: Arc<Fs>,
    mountpoint: PathBuf,
    timeout: Duration,
    started: AtomicBool,
    pub files: StateFiles,
}

impl Shutdown {
    pub fn new(fs: Arc<Fs>, mountpoint: PathBuf, timeout: Duration) -> Self {
        Shutdown {
            files: StateFiles::new(&mountpoint),
            fs,
            mountpoint,
            timeout,
            started: AtomicBool::new(false),
        }
    }

    /// Claims the shutdown: false when it has already begun.
    pub fn begin(&self) -> bool {
        !self.started.swap(true, Ordering::SeqCst)
    }

    /// Stops changes and commits every open file, within the timeout.
    pub async fn commit(&self) -> CommitReport {
        notify::stopping();
        self.fs.stop_changes();
        let n = self.fs.gauges().files_open_for_writing;
        if n > 0 {
            tracing::info!(
                "committing {n} file{} being written (waiting {}s at most)",
                if n == 1 { "" } else { "s" },
                self.timeout.as_secs()
            );
        }
        self.fs.commit_all(Instant::now() + self.timeout).await
    }

    /// Says how it ended (log, state file) and gives the exit code.
    pub fn finish(&self, report: &CommitReport) -> i32 {
        self.finish_noting(report, None)
    }

    /// [`finish`](Self::finish), with a note added to the outcome (see [`DETACHED_BUSY`]).
    pub fn finish_noting(&self, report: &CommitReport, note: Option<&str>) -> i32 {
        let (code, mut message) = outcome(report);
        if let Some(note) = note {
            message = format!("{message}; {note}");
        }
        if code == 0 {
            tracing::info!("{}: {message}", self.mountpoint.display());
        } else {
            tracing::error!("{}: {message}", self.mountpoint.display());
        }
        self.files.finished(code, &message);
        code
    }
}

/// The note of an outcome whose mount was busy: `blobmount unmount` shows it, so that the
/// programs inside losing their directory ("Transport endpoint is not connected") is no
/// surprise.
pub const DETACHED_BUSY: &str =
    "the mount was busy (a program has a file or its current directory in it): \
     detached; programs still inside get \"Transport endpoint is not connected\"";

/// The exit code and the one-line outcome of a shutdown.
fn outcome(report: &CommitReport) -> (i32, String) {
    if report.is_complete() {
        let message = match report.committed {
            0 => "stopped".to_string(),
            n => format!(
                "stopped; {n} open file{} committed",
                if n == 1 { "" } else { "s" }
            ),
        };
        return (0, message);
    }
    let list: Vec<String> = report
        .failed
        .iter()
        .map(|(name, why)| format!("{name} ({why})"))
        .collect();
    let n = report.failed.len();
    (
        1,
        format!(
            "stopped; {n} file{} not committed: {}",
            if n == 1 { "" } else { "s" },
            list.join(", ")
        ),
    )
}

/// Waits for SIGTERM or SIGINT (serving SIGHUP and SIGUSR1 meanwhile), then shuts down and exits
/// the process.
pub async fn on_signals(
    mut signals: Signals,
    shutdown: Arc<Shutdown>,
    mut unmounter: super::kernel::Unmounter,
    credential: Arc<Credential>,
) {
    let which = signals.wait(&shutdown.fs, &credential).await;
    if !shutdown.begin() {
        // Unmounted from outside, and committing already (the main thread does): a first
        // signal asks for what is under way; a second one means "now".
        tracing::info!(
            "{which}: already shutting down, committing open files (send it again to exit at once)"
        );
        let again = signals.wait(&shutdown.fs, &credential).await;
        tracing::warn!("{again} again: exiting without waiting for the commits");
        let report = shutdown.fs.commit_all(Instant::now()).await;
        std::process::exit(shutdown.finish(&report).max(1));
    }
    tracing::info!("{which}: shutting down {}", shutdown.mountpoint.display());
    let report = tokio::select! {
        report = shutdown.commit() => report,
        again = signals.wait(&shutdown.fs, &credential) => {
            tracing::warn!("{again} again: exiting without waiting for the commits");
            let report = shutdown.fs.commit_all(Instant::now()).await;
            lazy_unmount(&shutdown.mountpoint);
            std::process::exit(shutdown.finish(&report).max(1));
        }
    };
    let busy = match unmounter.unmount() {
        Ok(()) => false,
        // Not mounted any more (an outside umount came first): nothing to detach.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => false,
        Err(e) => {
            tracing::debug!("unmount: {e}");
            lazy_unmount(&shutdown.mountpoint);
            true
        }
    };
    std::process::exit(shutdown.finish_noting(&report, busy.then_some(DETACHED_BUSY)));
}

/// SIGINT, SIGTERM, SIGHUP and SIGUSR1, caught from the moment this is created.
pub struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }

    /// Waits for SIGINT or SIGTERM; each SIGHUP on the way asks for a new token, each SIGUSR1
    /// logs the metrics.
    async fn wait(&mut self, fs: &Fs, credential: &Credential) -> &'static str {
        loop {
            tokio::select! {
                _ = self.int.recv() => return "SIGINT",
                _ = self.term.recv() => return "SIGTERM",
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP: getting a new SAS");
                    credential.request_refresh();
                }
                _ = self.usr1.recv() => notify::log_metrics(fs, credential),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes() {
        assert_eq!(outcome(&CommitReport::default()), (0, "stopped".into()));
        let ok = CommitReport {
            committed: 2,
            failed: vec![],
        };
        assert_eq!(outcome(&ok), (0, "stopped; 2 open files committed".into()));
        let bad = CommitReport {
            committed: 1,
            failed: vec![(
                "a/b".into(),
                "no answer in time; its data is in /r/a/b".into(),
            )],
        };
        assert_eq!(
            outcome(&bad),
            (
                1,
                "stopped; 1 file not committed: a/b (no answer in time; its data is in /r/a/b)"
                    .into()
            )
        );
    }
}
