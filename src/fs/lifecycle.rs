//! The write lifecycle of one file open for writing: what it holds compared with its blob, and
//! what a close, an fsync, an unlink, a failed local write or the shutdown may do with it.
//!
//! [`FileState`] is changed only through its transition methods, each of which says what the
//! caller must do (commit or not, save the data somewhere, refuse), so the rules live here:
//!
//! - only content the program has finished (closed, fsynced, renamed) replaces the blob;
//! - a file whose local copy lost a write (the staging disk was full) is never committed;
//! - a file unlinked while open is never committed;
//! - content that cannot be committed for good is saved (a sibling blob or a local copy)
//!   before its staging goes.

use super::error::FsError;

/// Where a file open for writing stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    /// Opened, nothing changed: the blob holds what the file holds.
    Clean,
    /// Changed since the program last closed or fsynced it: unfinished content.
    Dirty,
    /// The program closed, fsynced or renamed it, and the commit of that content has not
    /// succeeded yet: it is under way, or it failed and the next close (or the shutdown)
    /// tries again.
    Committing,
    /// The blob (or, after a conflict, its sibling) holds what the file holds.
    Committed,
    /// The blob was changed by someone else: their version was kept, this content was
    /// committed as `sibling`, where further writes go.
    Conflicted { sibling: String },
    /// A write to the local copy failed (e.g. ENOSPC): its content is incomplete and is never
    /// committed; writes, fsync and close answer this error.
    Broken { error: FsError },
    /// Unlinked while open: never committed; its data goes with its last handle.
    Unlinked,
    /// Retired without being committed; its data was saved at `saved_as` (a local path or a
    /// sibling blob). No transition leaves this state.
    Saved { saved_as: String },
}

/// What a commit request (close, fsync, rename) asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitStep {
    /// Nothing to commit: done.
    Nothing,
    /// Commit the staging now, then report with [`FileState::committed`],
    /// [`FileState::conflicted`] or [`FileState::commit_failed`].
    Commit,
}

/// What the shutdown does with a file still open for writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownStep {
    /// Nothing left to do.
    Nothing,
    /// The program had finished it (closed or fsynced): commit it.
    Commit,
    /// Unfinished: keep the blob as it is, save this content beside it.
    SaveUnfinished,
    /// Never to be committed (incomplete or unlinked): its data is dropped.
    Drop,
}

/// What the last handle's release does with the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetireStep {
    /// Committed (or nothing to keep): its staging can go.
    Done,
    /// Its commit failed for good: save its data before the staging goes.
    Save,
}

impl FileState {
    /// A file opened for writing: a new or truncated file is a change before any write.
    pub fn opened(changed: bool) -> Self {
        if changed {
            FileState::Dirty
        } else {
            FileState::Clean
        }
    }

    /// Whether a write (or truncate, chmod, utimes) may go to the local copy now; `Err` with
    /// the errno to answer when not.
    pub fn may_write(&self) -> Result<(), FsError> {
        match self {
            FileState::Broken { error } => Err(error.clone()),
            FileState::Saved { .. } => Err(FsError::Io),
            _ => Ok(()),
        }
    }

    /// The local copy changed.
    pub fn wrote(&mut self) {
        match self {
            FileState::Clean
            | FileState::Dirty
            | FileState::Committing
            | FileState::Committed
            | FileState::Conflicted { .. } => *self = FileState::Dirty,
            // Kept: an unlinked file takes writes that go nowhere; the others refuse them
            // before writing (may_write).
            FileState::Unlinked | FileState::Broken { .. } | FileState::Saved { .. } => {}
        }
    }

    /// Only what the commit sets changed (chmod, utimes, an extended attribute), not the
    /// content: content the program had finished and not committed yet stays finished, its
    /// commit carrying the change (`tar x` sets each file's time after closing it); anything
    /// else is as after a write.
    pub fn meta_changed(&mut self) {
        if *self != FileState::Committing {
            self.wrote();
        }
    }

    /// A write to the local copy failed: the content is no longer what the program wrote.
    pub fn write_failed(&mut self, error: FsError) {
        if !matches!(self, FileState::Unlinked | FileState::Saved { .. }) {
            *self = FileState::Broken { error };
        }
    }

    /// The file was unlinked: it is never committed.
    pub fn unlinked(&mut self) {
        if !matches!(self, FileState::Saved { .. }) {
            *self = FileState::Unlinked;
        }
    }

    /// The program closed, fsynced or renamed the file: commit what it holds, if anything.
    pub fn commit_requested(&mut self) -> Result<CommitStep, FsError> {
        match self {
            FileState::Dirty | FileState::Committing => {
                *self = FileState::Committing;
                Ok(CommitStep::Commit)
            }
            FileState::Clean
            | FileState::Committed
            | FileState::Conflicted { .. }
            | FileState::Unlinked => Ok(CommitStep::Nothing),
            FileState::Broken { error } => Err(error.clone()),
            FileState::Saved { .. } => Err(FsError::Io),
        }
    }

    /// The write-back's delay for a closed file is up: commit it if it is still as it was
    /// closed (written since, it is unfinished again and waits for its next close).
    pub fn due(&self) -> CommitStep {
        match self {
            FileState::Committing => CommitStep::Commit,
            _ => CommitStep::Nothing,
        }
    }

    /// The commit went through.
    pub fn committed(&mut self) {
        if *self == FileState::Committing {
            *self = FileState::Committed;
        }
    }

    /// The commit met someone else's version; this content was committed as `sibling`.
    pub fn conflicted(&mut self, sibling: String) {
        if *self == FileState::Committing {
            *self = FileState::Conflicted { sibling };
        }
    }

    /// The commit failed; it stays to be done (the next close, the shutdown, or saved at the
    /// last release).
    pub fn commit_failed(&mut self) {
        debug_assert_eq!(*self, FileState::Committing);
    }

    /// The shutdown has come: what to do with this file.
    pub fn at_shutdown(&self) -> ShutdownStep {
        match self {
            FileState::Clean | FileState::Committed | FileState::Conflicted { .. } => {
                ShutdownStep::Nothing
            }
            FileState::Committing => ShutdownStep::Commit,
            FileState::Dirty => ShutdownStep::SaveUnfinished,
            FileState::Broken { .. } | FileState::Unlinked => ShutdownStep::Drop,
            FileState::Saved { .. } => ShutdownStep::Nothing,
        }
    }

    /// The last handle is being released, after its final commit attempt.
    pub fn at_retire(&self) -> RetireStep {
        match self {
            // The release commits first; what is still not committed failed for good.
            FileState::Dirty | FileState::Committing => RetireStep::Save,
            _ => RetireStep::Done,
        }
    }

    /// The data was saved at `saved_as` instead of being committed.
    pub fn saved(&mut self, saved_as: String) {
        *self = FileState::Saved { saved_as };
    }

    /// Whether the blob may be replaced by this content (what a rename needs first: only
    /// committed content follows a file to its new name).
    pub fn is_settled(&self) -> bool {
        matches!(
            self,
            FileState::Clean | FileState::Committed | FileState::Conflicted { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event, as the filesystem may send them in any order.
    #[derive(Debug, Clone, Copy)]
    enum Event {
        Write,
        MetaChange,
        WriteFails,
        Unlink,
        Close,
        CommitOk,
        CommitConflict,
        CommitFails,
    }

    const EVENTS: [Event; 8] = [
        Event::Write,
        Event::MetaChange,
        Event::WriteFails,
        Event::Unlink,
        Event::Close,
        Event::CommitOk,
        Event::CommitConflict,
        Event::CommitFails,
    ];

    /// Thousands of random event sequences: the rules of the module hold after every step.
    #[test]
    fn random_sequences_keep_the_rules() {
        for seed in 0..2000u64 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut s = FileState::opened(rng.bool());
            // Whether the content changed since the last successful commit, and whether a
            // write since the last close is pending.
            let mut broken = false;
            let mut unlinked = false;
            let mut committing = false;
            for _ in 0..40 {
                let e = EVENTS[rng.usize(..EVENTS.len())];
                match e {
                    Event::Write => {
                        if s.may_write().is_ok() {
                            s.wrote();
                            assert!(unlinked || s == FileState::Dirty, "{seed}: {s:?}");
                        } else {
                            assert!(broken, "{seed}: only a broken file refuses writes");
                        }
                    }
                    Event::MetaChange if s.may_write().is_ok() => {
                        let finished = s == FileState::Committing;
                        s.meta_changed();
                        // Finished content stays finished (the shutdown commits it);
                        // anything else waits for the next close.
                        match finished {
                            true => assert_eq!(s.at_shutdown(), ShutdownStep::Commit),
                            false => assert!(unlinked || s == FileState::Dirty, "{seed}"),
                        }
                    }
                    Event::WriteFails => {
                        s.write_failed(FsError::Local(std::io::ErrorKind::StorageFull));
                        broken |= !unlinked;
                    }
                    Event::Unlink => {
                        s.unlinked();
                        unlinked = true;
                    }
                    Event::Close => match s.commit_requested() {
                        Ok(CommitStep::Commit) => {
                            assert!(!broken && !unlinked, "{seed}: commit of {s:?}");
                            committing = true;
                        }
                        Ok(CommitStep::Nothing) => {
                            // An unlinked file has nothing to commit, broken or not.
                            assert!(!broken || unlinked, "{seed}");
                            committing = false;
                        }
                        Err(errno) => {
                            assert!(broken && !unlinked, "{seed}");
                            assert_eq!(errno.to_errno(), libc::ENOSPC);
                        }
                    },
                    Event::CommitOk | Event::CommitConflict | Event::CommitFails
                        if committing && s == FileState::Committing =>
                    {
                        match e {
                            Event::CommitOk => s.committed(),
                            Event::CommitConflict => s.conflicted("x.conflict".into()),
                            _ => s.commit_failed(),
                        }
                        committing = s == FileState::Committing;
                    }
                    _ => {}
                }
                // Never committed once broken or unlinked; unfinished content is never
                // committed by the shutdown.
                if broken || unlinked {
                    assert_ne!(s.at_shutdown(), ShutdownStep::Commit, "{seed}: {s:?}");
                    assert_ne!(s.commit_requested().ok(), Some(CommitStep::Commit));
                }
                if s == FileState::Dirty {
                    assert_eq!(s.at_shutdown(), ShutdownStep::SaveUnfinished);
                    assert_eq!(s.at_retire(), RetireStep::Save);
                }
            }
        }
    }

    #[test]
    fn a_broken_file_refuses_writes_and_commits_with_its_errno() {
        let mut s = FileState::opened(false);
        s.wrote();
        s.write_failed(FsError::Local(std::io::ErrorKind::StorageFull));
        assert_eq!(s.may_write().map_err(|e| e.to_errno()), Err(libc::ENOSPC));
        assert_eq!(
            s.commit_requested().map_err(|e| e.to_errno()),
            Err(libc::ENOSPC)
        );
        assert_eq!(s.at_shutdown(), ShutdownStep::Drop);
        assert_eq!(s.at_retire(), RetireStep::Done);
    }

    #[test]
    fn only_finished_content_is_committed_at_shutdown() {
        let mut s = FileState::opened(true);
        assert_eq!(s.at_shutdown(), ShutdownStep::SaveUnfinished);
        assert_eq!(s.commit_requested(), Ok(CommitStep::Commit));
        s.commit_failed();
        assert_eq!(s.at_shutdown(), ShutdownStep::Commit);
        s.wrote();
        assert_eq!(s.at_shutdown(), ShutdownStep::SaveUnfinished);
        assert_eq!(s.commit_requested(), Ok(CommitStep::Commit));
        s.committed();
        assert_eq!(s.at_shutdown(), ShutdownStep::Nothing);
        assert!(s.is_settled());
    }
}
