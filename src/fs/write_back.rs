//! Write-back (`--write-back[=DELAY]`): close returns once the file's content and its journal
//! record are flushed to local disk, and the commit follows in the background within DELAY.
//!
//! A file closed in this mode stays in the registry of files being written
//! ([`super::open_files`]) with one hold of the write-back's own, so everything that sees files
//! being written sees it as it is: reads (from its local copy), lookups, listings and getattr
//! show it as if committed; a rename commits it first (as it does any file being written); an
//! unlink means it is never committed; the shutdown commits it with the others. The journal
//! record says the content is finished and was flushed: after kill -9 or a power cut, the
//! next mount (or `blobmount recover`) commits it.
//!
//! What is pending is bounded by `--write-back-limit` (bytes of the local copies of files
//! closed and not committed): beyond it, writers wait while the oldest are committed at once.
//! A commit that fails after close returned success cannot be reported to the program: it is
//! logged and counted, a conflict keeps the other version and saves this content beside it
//! (`.conflict-`), and a failure that persists saves the data in a local directory, as any
//! file whose commit failed for good.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::error::FsError;
use super::lifecycle::{CommitStep, FileState};
use super::open_files::WriteFile;
use super::{lock, Fs};

/// Commits of closed files under way at once (each is one or a few requests: many small
/// files are committed in parallel, as a program writing them in turn could not).
const AT_ONCE: usize = 16;
/// Attempts of a commit that keeps failing (transient failures: the network, the service)
/// before its data is saved locally instead; the waits between them, doubling.
const ATTEMPTS: u32 = 5;
const FIRST_RETRY: Duration = Duration::from_secs(2);

/// The `--write-back` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteBackConfig {
    /// How long after close a file is committed at the latest (0: at once, in the background).
    pub delay: Duration,
    /// Bytes of closed files not committed yet beyond which writers wait.
    pub limit: u64,
}

/// The default limit (`--write-back-limit`).
pub const DEFAULT_LIMIT: u64 = 1 << 30;
/// The default delay (`--write-back` without a value).
pub const DEFAULT_DELAY: Duration = Duration::from_secs(5);

/// One file closed and not committed yet.
struct Pending {
    file: Arc<WriteFile>,
    /// When it is to be committed.
    due: Instant,
    /// Its size at close (the local disk it takes).
    bytes: u64,
    /// Commits tried and failed so far.
    failures: u32,
}

/// The files closed in write-back mode and not committed yet, and what became of those
/// committed since the mount started.
pub struct WriteBack {
    pub cfg: WriteBackConfig,
    pending: std::sync::Mutex<HashMap<u64, Pending>>,
    /// For the worker: a file is pending, one came back to be retried, a writer waits.
    wake: tokio::sync::Notify,
    /// For waiting writers: a commit ended (room may have come).
    room: tokio::sync::Notify,
    /// Files committed after their close returned, and those whose commit after close failed
    /// for good (saved beside the blob or locally instead), conflicts included.
    pub committed: AtomicU64,
    pub failed: AtomicU64,
    /// Files taken out of `pending` whose commit is under way, and their bytes (still on
    /// local disk until it ends).
    in_flight: std::sync::Mutex<(u64, u64)>,
}

impl WriteBack {
    pub fn new(cfg: WriteBackConfig) -> Self {
        WriteBack {
            cfg,
            pending: Default::default(),
            wake: Default::default(),
            room: Default::default(),
            committed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            in_flight: Default::default(),
        }
    }

    /// Files closed and not committed yet (those being committed included), and their bytes.
    pub fn pending(&self) -> (u64, u64) {
        let (files, bytes) = *lock(&self.in_flight);
        let p = lock(&self.pending);
        (
            p.len() as u64 + files,
            p.values().map(|e| e.bytes).sum::<u64>() + bytes,
        )
    }

    fn over_limit(&self) -> bool {
        self.pending().1 > self.cfg.limit
    }

    /// A commit of `bytes` taken out of `pending` starts, or ends.
    fn in_flight(&self, bytes: u64, starts: bool) {
        let mut f = lock(&self.in_flight);
        if starts {
            *f = (f.0 + 1, f.1 + bytes);
        } else {
            *f = (f.0.saturating_sub(1), f.1.saturating_sub(bytes));
        }
    }
}

impl Fs {
    /// The write-back, when this mount has it (it needs the journal: a closed file's only
    /// copy until its commit is the local one).
    pub(super) fn write_back(&self) -> Option<&WriteBack> {
        self.write_back
            .as_ref()
            .filter(|_| self.cfg.journal.is_some())
    }

    /// Close in write-back mode: the file's content is finished; it is flushed to local disk
    /// with its record, and its commit is left to the write-back (which takes a hold of its
    /// own). If the flush fails, the file is committed now instead, as without write-back.
    pub(super) async fn finish_later(&self, ino: u64, w: &Arc<WriteFile>) -> Result<(), FsError> {
        let Some(wb) = self.write_back() else {
            return self.commit(ino, w).await;
        };
        if self.is_stopping() {
            // The shutdown may have gone past this file already: committed now.
            return self.commit(ino, w).await;
        }
        let mut f = w.open.lock().await;
        if f.state.commit_requested()? == CommitStep::Nothing {
            return Ok(());
        }
        if let Err(e) = f.staging.mark_finished(true) {
            tracing::warn!(
                blob = f.staging.blob(),
                "cannot flush the file to the staging journal ({e}): committed now instead"
            );
            return self.commit_step(ino, &mut f).await;
        }
        f.staging.release_budget();
        let bytes = f.staging.size();
        drop(f);
        let mut pending = lock(&wb.pending);
        match pending.get_mut(&ino) {
            Some(p) if Arc::ptr_eq(&p.file, w) => p.bytes = bytes,
            _ => {
                // The caller holds it: the count cannot be at zero, nobody retires it now.
                w.hold();
                pending.insert(
                    ino,
                    Pending {
                        file: w.clone(),
                        due: Instant::now() + wb.cfg.delay,
                        bytes,
                        failures: 0,
                    },
                );
            }
        }
        drop(pending);
        wb.wake.notify_one();
        Ok(())
    }

    /// Before a write: waits while closed files not committed yet take more than the limit
    /// (the write-back commits the oldest of them meanwhile, without waiting for their delay).
    pub(super) async fn wait_for_write_back_room(&self) {
        let Some(wb) = self.write_back() else {
            return;
        };
        loop {
            let room = wb.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if !wb.over_limit() || self.is_stopping() {
                return;
            }
            wb.wake.notify_one();
            room.await;
        }
    }

    /// Runs for the life of the mount (with `--write-back`): commits each closed file when
    /// its delay is up, or at once while the pending bytes are over the limit, several at a
    /// time. Stops at shutdown, which commits what is left.
    pub async fn run_write_back(self: Arc<Self>) {
        let Some(wb) = self.write_back() else {
            return;
        };
        let slots = Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
        loop {
            if self.is_stopping() {
                return;
            }
            let (due, next) = self.due_now(wb, slots.available_permits());
            for (ino, p) in due {
                let permit = slots.clone().acquire_owned().await.expect("never closed");
                let fs = self.clone();
                wb.in_flight(p.bytes, true);
                tokio::spawn(async move {
                    let wb = fs
                        .write_back()
                        .expect("the worker runs with write-back only");
                    let bytes = p.bytes;
                    fs.commit_pending(wb, ino, p).await;
                    drop(permit);
                    wb.in_flight(bytes, false);
                    wb.room.notify_waiters();
                    // A retry may have been put back, due later.
                    wb.wake.notify_one();
                });
            }
            let wait = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                // notify_one keeps a wake-up that comes while nobody waits.
                _ = wb.wake.notified() => {}
                _ = tokio::time::sleep_until(wait) => {}
                // A commit slot frees up: more may be due.
                _ = slots.clone().acquire_owned(), if slots.available_permits() == 0 => {}
            }
        }
    }

    /// Takes out the files due now (at most `room`): those whose delay is up, oldest first,
    /// then, while over the limit, the oldest of the others. Also when the next one is due.
    fn due_now(&self, wb: &WriteBack, room: usize) -> (Vec<(u64, Pending)>, Option<Instant>) {
        let now = Instant::now();
        let mut pending = lock(&wb.pending);
        // Most wake-ups (each close is one) find nothing due: said without sorting them all.
        let first = pending.values().map(|p| p.due).min();
        let total: u64 = pending.values().map(|p| p.bytes).sum();
        if first.is_none_or(|at| at > now) && total <= wb.cfg.limit {
            return (Vec::new(), first);
        }
        let mut order: Vec<(Instant, u64, u64)> =
            pending.iter().map(|(i, p)| (p.due, *i, p.bytes)).collect();
        order.sort();
        let mut left: u64 = order.iter().map(|(_, _, bytes)| bytes).sum();
        let mut due = Vec::new();
        let mut next = None;
        for (at, ino, bytes) in order {
            if due.len() >= room {
                break;
            }
            if at <= now || left > wb.cfg.limit {
                due.extend(pending.remove(&ino).map(|p| (ino, p)));
                left -= bytes;
            } else {
                next = Some(at);
                break;
            }
        }
        (due, next)
    }

    /// Commits one closed file (if it still is as it was closed: a file written again since
    /// is committed at its next close), then drops the write-back's hold. A failure is tried
    /// again later, a few times; the last try is the commit the hold's release makes, after
    /// which a file still not committed is saved like any whose commit failed for good.
    async fn commit_pending(&self, wb: &WriteBack, ino: u64, mut p: Pending) {
        let w = p.file.clone();
        if p.failures + 1 >= ATTEMPTS {
            return self.last_try(wb, ino, &w).await;
        }
        let outcome = {
            let mut f = w.open.lock().await;
            match f.state.due() {
                CommitStep::Nothing => None,
                CommitStep::Commit => {
                    let r = self.commit_step(ino, &mut f).await;
                    Some((r, f.state.is_settled(), f.staging.blob().to_string()))
                }
            }
        };
        match outcome {
            None => {}
            Some((Ok(()), _, _)) => {
                wb.committed.fetch_add(1, Relaxed);
            }
            Some((Err(e), true, blob)) => {
                // Settled without replacing the blob: a conflict, saved beside it.
                wb.failed.fetch_add(1, Relaxed);
                tracing::error!(
                    blob,
                    "the commit after close did not replace the blob ({e}), after close had returned success"
                );
            }
            Some((Err(e), false, _)) if self.is_stopping() => {
                // The shutdown commits (or saves and reports) every file still open.
                tracing::debug!("a commit after close failed during the shutdown: {e}");
            }
            Some((Err(e), false, blob)) => {
                p.failures += 1;
                let wait = FIRST_RETRY * 2u32.pow(p.failures - 1);
                tracing::warn!(
                    blob,
                    "the commit after close failed ({e}); tried again in {}s",
                    wait.as_secs()
                );
                p.due = Instant::now() + wait;
                if self.pend_again(wb, ino, p) {
                    return;
                }
                // Closed again meanwhile: that entry (with its own hold) commits it.
            }
        }
        let _ = self.drop_hold_now(ino, &w).await;
    }

    /// The last try of a closed file's commit: dropping the write-back's hold commits it (if
    /// it was the last hold) and retires it, saving what is still not committed.
    async fn last_try(&self, wb: &WriteBack, ino: u64, w: &Arc<WriteFile>) {
        let due = w.open.lock().await.state.due() == CommitStep::Commit;
        let result = self.drop_hold_now(ino, w).await;
        if !due {
            return;
        }
        let blob = w.open.lock().await.staging.blob().to_string();
        match result {
            Err(e) => {
                wb.failed.fetch_add(1, Relaxed);
                tracing::error!(
                    blob,
                    "the commit after close failed for good ({e}), after close had returned success (where its data is saved is logged with it)"
                );
            }
            Ok(()) if w.open.lock().await.state == FileState::Committed => {
                wb.committed.fetch_add(1, Relaxed);
            }
            // Their version kept, this one beside it (logged): failed, as in commit_pending.
            Ok(()) if matches!(w.open.lock().await.state, FileState::Conflicted { .. }) => {
                wb.failed.fetch_add(1, Relaxed);
            }
            // Another hold is left (the file was opened again): its close commits it.
            Ok(()) => {}
        }
    }

    /// Puts a file whose commit failed back among the pending ones, unless it was closed
    /// again meanwhile (that entry commits it); whether it was put back.
    fn pend_again(&self, wb: &WriteBack, ino: u64, p: Pending) -> bool {
        let mut pending = lock(&wb.pending);
        match pending.entry(ino) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(p);
                true
            }
            std::collections::hash_map::Entry::Occupied(_) => false,
        }
    }
}
