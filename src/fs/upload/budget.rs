//! The mount-wide write budget: bytes written but not yet uploaded. A writer that would exceed
//! it waits (backpressure) while uploads catch up, so memory and the staging disk's dirty data
//! stay bounded whatever programs write.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The mount-wide budget of bytes written but not yet uploaded.
pub struct WriteBudget {
    sem: Arc<Semaphore>,
    bytes: u64,
    /// Signalled when a writer has waited a while: other files' dirty blocks should go up.
    pub pressure: tokio::sync::Notify,
}

impl WriteBudget {
    pub fn new(bytes: u64) -> Arc<Self> {
        let permits = bytes.min(Semaphore::MAX_PERMITS as u64) as usize;
        Arc::new(WriteBudget {
            sem: Arc::new(Semaphore::new(permits)),
            bytes,
            pressure: tokio::sync::Notify::new(),
        })
    }

    pub fn available(&self) -> u64 {
        self.sem.available_permits() as u64
    }

    pub fn total(&self) -> u64 {
        self.bytes
    }

    /// What is held now: the shares of blocks written and not yet uploaded, uploads in
    /// progress included (a block whose upload failed holds none until it is written again).
    pub fn in_use(&self) -> u64 {
        (self.bytes.min(Semaphore::MAX_PERMITS as u64)).saturating_sub(self.available())
    }

    /// What a block of `len` bytes holds of the budget while it is written and uploaded: all
    /// of it, up to half the budget. Larger blocks (only in files of thousands of blocks) are
    /// uploaded straight from the local copy, so they need no more memory than that.
    pub fn share(&self, len: u64) -> u64 {
        len.min(self.bytes / 2).max(1)
    }

    pub(super) fn try_take(&self, n: u64) -> Option<OwnedSemaphorePermit> {
        self.sem.clone().try_acquire_many_owned(n as u32).ok()
    }

    pub(super) async fn take(&self, n: u64) -> OwnedSemaphorePermit {
        self.sem
            .clone()
            .acquire_many_owned(n as u32)
            .await
            .expect("the write budget is never closed")
    }
}
