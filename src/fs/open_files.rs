//! Files open for writing (by inode), and blobs kept for files unlinked while open: what this
//! mount has in flight that the service does not show yet, or shows although it is gone here.
//!
//! A file being written is one [`WriteFile`]: its staging and its [`FileState`], shared by all
//! its write handles, counted by holders (handles, and operations using it for a moment). The
//! registry hands out holds under its own lock, so a last release cannot drop a file another
//! open is just taking.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::error::FsError;
use super::lifecycle::FileState;
use super::lock;
use super::unlinked::Unlinked;
use super::upload::Staging;
use crate::blob::BlobError;

/// A file being written: one staging shared by all its write handles.
pub struct WriteFile {
    /// The staging and state, behind the file's own lock (held across its requests: a file's
    /// writes and commits are in order; other files are not held up).
    pub(super) open: tokio::sync::Mutex<OpenFile>,
    /// Holders: handles, and operations using the file for a moment.
    holders: AtomicUsize,
}

/// The local copy of a file being written and where it stands.
pub(super) struct OpenFile {
    pub staging: Staging,
    pub state: FileState,
}

impl WriteFile {
    /// A file being written from `staging`, in `state`, with `holders` holders already.
    pub(super) fn new(staging: Staging, state: FileState, holders: usize) -> Arc<Self> {
        Arc::new(WriteFile {
            open: tokio::sync::Mutex::new(OpenFile { staging, state }),
            holders: AtomicUsize::new(holders),
        })
    }

    /// What the file holds now, uncommitted changes included (read your writes).
    pub async fn read(&self, offset: u64, size: u32) -> Result<Bytes, BlobError> {
        self.open
            .lock()
            .await
            .staging
            .read(offset, u64::from(size))
            .await
    }

    /// Ends one hold; true if it was the last.
    pub(super) fn drop_hold(&self) -> bool {
        self.holders.fetch_sub(1, Ordering::SeqCst) == 1
    }

    /// One more hold, for a caller that holds it already (so the count is not at zero and
    /// nobody is retiring it).
    pub(super) fn hold(&self) {
        self.holders.fetch_add(1, Ordering::SeqCst);
    }
}

impl OpenFile {
    /// Records the outcome of a change of the local copy (write, truncate): the file is dirty,
    /// or, when the change failed, broken for good: its content is no longer what the program
    /// wrote, so it is never committed (the blob keeps its version).
    pub(super) fn changed(&mut self, result: Result<(), BlobError>) -> Result<(), FsError> {
        match result {
            Ok(()) => {
                self.state.wrote();
                Ok(())
            }
            Err(e) => {
                let error = FsError::from(e);
                if !matches!(self.state, FileState::Broken { .. }) {
                    tracing::error!(
                        blob = self.staging.blob(),
                        "a write failed ({error}): this file will not be committed, the blob keeps its previous version"
                    );
                }
                self.state.write_failed(error.clone());
                // Never committed: nothing for a restart to finish.
                self.staging.discard_journal();
                Err(error)
            }
        }
    }

    /// The file was unlinked while open: never committed, nothing for a restart to finish.
    pub(super) fn unlinked(&mut self) {
        self.state.unlinked();
        self.staging.discard_journal();
    }

    /// Its data was saved at `saved_as` (a sibling blob or a local copy) instead of being
    /// committed: nothing for a restart to finish.
    pub(super) fn saved(&mut self, saved_as: String) {
        self.state.saved(saved_as);
        self.staging.discard_journal();
    }
}

/// The files of this mount being written, and the blobs it keeps for unlinked open files.
#[derive(Default)]
pub struct OpenFiles {
    writers: Mutex<HashMap<u64, Arc<WriteFile>>>,
    unlinked: Unlinked,
}

impl OpenFiles {
    /// The file being written as inode `ino`, if it is.
    pub fn writer(&self, ino: u64) -> Option<Arc<WriteFile>> {
        lock(&self.writers).get(&ino).cloned()
    }

    /// Every file being written, with its inode.
    pub fn writers(&self) -> Vec<(u64, Arc<WriteFile>)> {
        lock(&self.writers)
            .iter()
            .map(|(ino, w)| (*ino, w.clone()))
            .collect()
    }

    /// The inodes of the files being written.
    pub fn writer_inos(&self) -> Vec<u64> {
        lock(&self.writers).keys().copied().collect()
    }

    /// How many files are being written.
    pub fn len(&self) -> usize {
        lock(&self.writers).len()
    }

    /// The file being written as `ino`, with one more holder counted, if there is one.
    pub(super) fn hold(&self, ino: u64) -> Option<Arc<WriteFile>> {
        let writers = lock(&self.writers);
        writers.get(&ino).cloned().inspect(|w| w.hold())
    }

    /// Registers `w` as the file being written as `ino` unless another open got there first
    /// (that one is kept); the result has one more holder counted.
    pub(super) fn hold_or_insert(&self, ino: u64, w: Arc<WriteFile>) -> Arc<WriteFile> {
        let mut writers = lock(&self.writers);
        let w = writers.entry(ino).or_insert(w).clone();
        w.hold();
        w
    }

    /// Registers a new file `w` as `ino`; false (nothing changed) if one is being written
    /// there already.
    pub(super) fn insert_new(&self, ino: u64, w: &Arc<WriteFile>) -> bool {
        let mut writers = lock(&self.writers);
        if writers.contains_key(&ino) {
            return false;
        }
        writers.insert(ino, w.clone());
        true
    }

    /// Takes `w` out of the registry if it is still the file of `ino` and nobody holds it (a
    /// new open may have taken it again meanwhile); true if it was.
    pub(super) fn retire(&self, ino: u64, w: &Arc<WriteFile>) -> bool {
        let mut writers = lock(&self.writers);
        let same = writers.get(&ino).is_some_and(|cur| Arc::ptr_eq(cur, w));
        let retired = same && w.holders.load(Ordering::SeqCst) == 0;
        if retired {
            writers.remove(&ino);
        }
        retired
    }

    /// The blobs kept for files unlinked while open.
    pub fn unlinked(&self) -> &Unlinked {
        &self.unlinked
    }
}
