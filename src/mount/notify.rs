//! Telling systemd (Type=notify) how the mount is: READY=1 once mounted, STATUS= with a short
//! health line kept current, STOPPING=1 on the way out. Nothing happens outside systemd
//! (no NOTIFY_SOCKET).

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use time::OffsetDateTime;

use super::state::StateFiles;
use crate::fs::Fs;
use crate::token::Credential;

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: committing open files"),
    ]);
}

fn send(state: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(state) {
            tracing::debug!("cannot notify systemd: {e}");
        }
    }
}

/// A daemon started by a systemd service is not the service's main process: it leaves the
/// notifications to its parent's service manager protocol, so it forgets the socket.
pub fn forget_socket() {
    // SAFETY: called in the freshly forked daemon, before any other thread exists.
    unsafe { std::env::remove_var("NOTIFY_SOCKET") };
}

/// One line on the mount's health: the token's time left and the writes in progress.
pub fn status_line(fs: &Fs, credential: &Credential) -> String {
    let token = match credential.current().expiry {
        Some(expiry) => {
            let left = (expiry - OffsetDateTime::now_utc()).whole_seconds();
            if left <= 0 {
                "SAS EXPIRED".to_string()
            } else {
                format!("SAS valid for {}", human(left as u64))
            }
        }
        None => "SAS without expiry".to_string(),
    };
    let g = fs.gauges();
    let writing = match g
        .files_open_for_writing
        .saturating_sub(g.write_back_pending_files)
    {
        0 => String::new(),
        1 => "; 1 file being written".to_string(),
        n => format!("; {n} files being written"),
    };
    let dirty = match g.dirty_bytes {
        0 => String::new(),
        b => format!(", {} not uploaded yet", crate::size::format_size(b)),
    };
    let resuming = match g.resume_pending_files {
        0 => String::new(),
        n => format!("; finishing {n} file(s) an earlier mount left uncommitted"),
    };
    let pending = match g.write_back_pending_files {
        0 => String::new(),
        n => format!(
            "; {n} closed file(s) to commit ({})",
            crate::size::format_size(g.write_back_pending_bytes)
        ),
    };
    let failed = match g.write_back_failed_files {
        0 => String::new(),
        n => format!("; {n} commit(s) after close failed (see the log)"),
    };
    format!("mounted; {token}{writing}{dirty}{pending}{failed}{resuming}")
}

/// Keeps the status line current: in the state file for `blobmount status` (every 5 s), and
/// systemd's STATUS= (every 30 s) under systemd.
pub async fn keep_status(fs: Arc<Fs>, credential: Arc<Credential>, files: StateFiles) {
    let systemd = std::env::var_os("NOTIFY_SOCKET").is_some();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    for n in 0u64.. {
        tick.tick().await;
        if fs.is_stopping() {
            return;
        }
        let line = status_line(&fs, &credential);
        files.write_status(&line);
        // The first tick is now: READY=1 has just said it all.
        if systemd && n > 0 && n % 6 == 0 {
            send(&[NotifyState::Status(&line)]);
        }
    }
}

/// SIGUSR1: the health line and the counters, in the log.
pub fn log_metrics(fs: &Fs, credential: &Credential) {
    tracing::info!(
        "SIGUSR1: {}; {}",
        status_line(fs, credential),
        crate::metrics::summary(crate::metrics::global(), &fs.gauges())
    );
}

/// 3h12m, 5m, 40s.
fn human(secs: u64) -> String {
    let (d, h, m) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h{m:02}m"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human() {
        assert_eq!(super::human(40), "40s");
        assert_eq!(super::human(300), "5m");
        assert_eq!(super::human(3 * 3600 + 12 * 60), "3h12m");
        assert_eq!(super::human(2 * 86400 + 5 * 3600), "2d5h");
    }
}
