//! The change gate: changes (create, write open, write, rename, unlink, truncate, set
//! attributes…) pass through it while the mount runs; at shutdown it closes, and the shutdown
//! waits for the changes already through before its final commit, so none is cut off half way
//! or lands after it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::error::FsError;

/// Whether changes are allowed, and how many are in progress.
#[derive(Debug, Default)]
pub struct ChangeGate {
    /// Set when the mount shuts down: no more changes.
    closed: AtomicBool,
    /// Changes in progress.
    changes: AtomicUsize,
}

/// A change in progress: counted until dropped.
pub struct Change<'a>(&'a ChangeGate);

impl Drop for Change<'_> {
    fn drop(&mut self) {
        self.0.changes.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ChangeGate {
    /// Starts a change, unless the gate is closed (EROFS). The count goes up before the flag is
    /// read, and [`ChangeGate::close`] sets the flag before the count is read: a change either
    /// sees the flag or is waited for.
    pub fn begin(&self) -> Result<Change<'_>, FsError> {
        self.changes.fetch_add(1, Ordering::SeqCst);
        let change = Change(self);
        if self.is_closed() {
            return Err(FsError::ReadOnly);
        }
        Ok(change)
    }

    /// From now on every change answers EROFS.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Whether the gate is closed (the mount is shutting down).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Changes in progress now.
    pub fn in_progress(&self) -> usize {
        self.changes.load(Ordering::SeqCst)
    }

    /// Waits until no change is in progress, or `deadline`; false if some still are.
    pub async fn drained(&self, deadline: Instant) -> bool {
        loop {
            if self.in_progress() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_gate_refuses_changes_and_waits_for_those_in_progress() {
        let gate = ChangeGate::default();
        let change = gate.begin().expect("open");
        assert_eq!(gate.in_progress(), 1);
        gate.close();
        assert_eq!(gate.begin().err(), Some(FsError::ReadOnly));
        // The refused change is not counted.
        assert_eq!(gate.in_progress(), 1);
        let soon = Instant::now() + Duration::from_millis(30);
        assert!(!gate.drained(soon).await, "one change still in progress");
        drop(change);
        assert!(gate.drained(Instant::now()).await);
    }
}
