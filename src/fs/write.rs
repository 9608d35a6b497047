//! Files open for writing: opening, writes, truncate, commits on close/fsync, the last release.
//! The data path is in [`super::upload`]; the files being written are [`super::open_files`];
//! what a file may do at each point of its life (commit, refuse, save its data elsewhere) is
//! decided by its [`FileState`] ([`super::lifecycle`]).
//!
//! Lock order: the inode table ([`super::metadata`]) before the open files' registry, never the
//! other way round; a file's own lock (`WriteFile::open`) is never taken while holding either.

use super::error::FsError;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Instant;

use super::handles::{FileHandle, HandleKind, WriteHandle};
use super::inode::join;
use super::lifecycle::{CommitStep, FileState, RetireStep};
use super::open_files::{OpenFile, WriteFile};
use super::posix::Creator;
use super::upload::Staging;
use super::{fail, lock, recovery, Attr, EntryInfo, Fs, Kind};

/// A commit quieter than this is not reported in the log; a longer one every
/// [`COMMIT_PROGRESS_EVERY`].
const COMMIT_QUIET: std::time::Duration = std::time::Duration::from_secs(2);
const COMMIT_PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// How a file is opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenMode {
    pub write: bool,
    pub truncate: bool,
}

/// The process (thread group) a thread id belongs to, from /proc.
fn process_of(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

impl Fs {
    /// Runs for the life of the mount: when a writer waits for the write budget, the dirty
    /// blocks of files not being written at that moment are uploaded, so an idle file cannot
    /// hold the budget from the others.
    pub async fn relieve_write_pressure(self: Arc<Self>) {
        loop {
            self.staging.budget.pressure.notified().await;
            for (_, w) in self.open_files.writers() {
                if let Ok(mut f) = w.open.try_lock() {
                    f.staging.flush_dirty();
                }
            }
        }
    }

    pub(super) fn writer(&self, ino: u64) -> Option<Arc<WriteFile>> {
        self.open_files.writer(ino)
    }

    /// Entries for the files being written in directory `dir` (not committed yet, perhaps);
    /// files unlinked while open have no name there any more.
    pub(super) fn files_being_written_in(&self, dir: u64) -> Vec<(String, EntryInfo)> {
        let inos = self.open_files.writer_inos();
        let inodes = self.meta.inodes();
        inos.into_iter()
            .filter(|ino| inodes.is_attached(*ino))
            .filter_map(|ino| inodes.get(ino))
            .filter(|n| n.parent == dir)
            .map(|n| (n.name.clone(), n.info.clone()))
            .collect()
    }

    fn new_staging(
        &self,
        blob: &str,
        existing: Option<(Arc<str>, u64)>,
        truncate: bool,
        metadata: HashMap<String, String>,
    ) -> Result<Staging, FsError> {
        self.staging
            .stage(blob.into(), existing, truncate, metadata)
            .map_err(|e| {
                tracing::error!(
                    "cannot create a staging file in {}: {e}",
                    self.cfg.staging_dir.display()
                );
                FsError::Local(e.kind())
            })
    }

    /// The kernel's pages of `ino` are about to hold data written here, not a blob version.
    fn forget_page_cache(&self, ino: u64) {
        self.meta.update(ino, |n| n.page_cache = None);
    }

    /// The writer of an existing file (created from its current version if needed), with one
    /// more holder counted (taken under the registry's lock, so a last release cannot drop it
    /// in between): every call is matched by a [`Fs::drop_writer_hold`].
    async fn writer_for(&self, ino: u64, truncate: bool) -> Result<Arc<WriteFile>, FsError> {
        if let Some(w) = self.open_files.hold(ino) {
            if truncate {
                let truncated = {
                    let mut f = w.open.lock().await;
                    match f.state.may_write() {
                        Ok(()) => {
                            let r = f.staging.set_size(0).await;
                            f.changed(r)
                        }
                        Err(e) => Err(e),
                    }
                };
                if let Err(e) = truncated {
                    let _ = self.drop_writer_hold(ino, &w).await;
                    return Err(e);
                }
            }
            return Ok(w);
        }
        let (path, _, _) = self.node(ino)?;
        let props = self.client.properties(&path).await.map_err(fail)?;
        let staging = self.new_staging(
            &path,
            Some((props.etag.as_str().into(), props.size)),
            truncate,
            props.metadata,
        )?;
        self.forget_page_cache(ino);
        let w = WriteFile::new(staging, FileState::opened(truncate), 0);
        // Another open may have raced us: keep the first.
        let kept = self.open_files.hold_or_insert(ino, w.clone());
        if !Arc::ptr_eq(&kept, &w) {
            abandon(&w);
        }
        Ok(kept)
    }

    /// Ends one hold on a writer; the last one commits and retires it (unless someone took it
    /// again meanwhile). Errors of that commit are logged (and returned).
    async fn drop_writer_hold(&self, ino: u64, w: &Arc<WriteFile>) -> Result<(), FsError> {
        if !w.drop_hold() {
            return Ok(());
        }
        if self.write_back().is_some() {
            // The last hold: the write-back takes the file over (with a hold of its own) if
            // there is something to commit.
            w.hold();
            let deferred = self.finish_later(ino, w).await;
            if !w.drop_hold() {
                return deferred;
            }
        }
        self.commit_and_retire(ino, w).await
    }

    /// Ends one hold without deferring the commit (the write-back's own hold).
    pub(super) async fn drop_hold_now(&self, ino: u64, w: &Arc<WriteFile>) -> Result<(), FsError> {
        if !w.drop_hold() {
            return Ok(());
        }
        self.commit_and_retire(ino, w).await
    }

    /// After the last hold: commits what is left and retires the file.
    async fn commit_and_retire(&self, ino: u64, w: &Arc<WriteFile>) -> Result<(), FsError> {
        let result = self.commit(ino, w).await;
        if self.open_files.retire(ino, w) {
            self.retire(ino, w).await;
        }
        result
    }

    /// Ends a change made under a hold taken with [`OpenFiles::hold`](super::open_files):
    /// drops the hold (committing the file if it was the last) and gives the attributes the
    /// kernel is to see; the change's own error first.
    pub(super) async fn release_held(
        &self,
        ino: u64,
        w: &Arc<WriteFile>,
        changed: Result<(), FsError>,
    ) -> Result<Attr, FsError> {
        let attr = self.touch_attr(ino, w).await;
        let committed = self.drop_writer_hold(ino, w).await;
        changed?;
        committed?;
        match self.writer(ino) {
            Some(_) => Ok(attr),
            None => self.attr_of(ino),
        }
    }

    /// The last handle of a file is gone and nobody can reach its staging any more: content
    /// whose commit failed for good is copied to a local directory first (named in the log),
    /// so a failed commit loses nothing.
    async fn retire(&self, ino: u64, w: &WriteFile) {
        let mut f = w.open.lock().await;
        if let FileState::Broken { .. } = f.state {
            // Never committed: the mount shows the blob as it is again.
            self.meta.forget_attributes(ino);
            f.staging.discard_journal();
            return;
        }
        if f.state.at_retire() != RetireStep::Save {
            return;
        }
        // What the mount showed of it (size, listing entry) was the uncommitted content: from
        // now on, the blob as it is.
        self.meta.forget_attributes(ino);
        let name = f.staging.blob().to_string();
        let dir = recovery::directory(&self.cfg.staging_dir);
        match recovery::save_locally(&mut f.staging, &name, &dir).await {
            Ok(path) => {
                tracing::error!(
                    blob = name,
                    "not committed; the blob keeps its previous version, and this file's data is saved in {}",
                    path.display()
                );
                f.saved(path.display().to_string());
            }
            Err(e) => {
                match f.staging.journal_path() {
                    Some(record) => tracing::error!(
                        blob = name,
                        "not committed, and saving its data locally failed too ({e}): it stays in the journal ({}), finished at the next start",
                        record.display()
                    ),
                    None => tracing::error!(
                        blob = name,
                        "not committed, and saving its data locally failed too ({e}): it is lost"
                    ),
                }
                // Refuses further use; the journal (if any) keeps the data for the next start.
                f.state.saved(String::new());
            }
        }
    }

    /// A handle for a writer whose hold the caller took (writer_for, create).
    fn insert_handle(&self, ino: u64, path: &str, file: Arc<WriteFile>) -> u64 {
        self.handles.open_file(FileHandle {
            ino,
            blob: path.into(),
            kind: HandleKind::Write(WriteHandle {
                file,
                processes: std::sync::Mutex::new(Vec::new()),
            }),
        })
    }

    /// Opens a file; for writing, its handle shares the file's staging.
    pub async fn open(&self, ino: u64, mode: OpenMode) -> Result<(u64, super::PageCache), FsError> {
        if !(mode.write || mode.truncate) {
            return self.open_read(ino).await;
        }
        let _change = self.check_writable()?;
        let (path, info, _) = self.node(ino)?;
        match info.kind {
            Kind::Dir => return Err(FsError::IsDir),
            // The kernel serves FIFOs and devices itself; one reaching here (a name that changed
            // kind behind a cached entry) is never written as a file.
            Kind::Special(_) => return Err(FsError::Invalid),
            Kind::File | Kind::Symlink => {}
        }
        let w = self.writer_for(ino, mode.truncate).await?;
        if mode.truncate {
            self.touch_attr(ino, &w).await;
        }
        Ok((self.insert_handle(ino, &path, w), super::PageCache::Drop))
    }

    /// Creates a file (O_CREAT). With `exclusive` (O_EXCL), a name that exists, or that another
    /// handle of this mount is creating, answers EEXIST; the commit then uses
    /// `If-None-Match: *`, so it cannot replace a blob another machine created meanwhile.
    pub async fn create(
        &self,
        parent: u64,
        name: &OsStr,
        exclusive: bool,
        truncate: bool,
        who: &Creator,
    ) -> Result<(Attr, u64), FsError> {
        let _change = self.check_writable()?;
        let (dir, name) = self.child_name(parent, name)?;
        // A file this mount is writing (maybe not committed yet) exists too.
        let existing = match self.resolve_or_writer(parent, &dir, name).await {
            Ok(info) if info.kind == Kind::Dir => return Err(FsError::IsDir),
            Ok(_) if exclusive => return Err(FsError::Exists),
            Ok(info) => Some(info),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let path = join(&dir, name);
        if let Some(info) = existing {
            // O_CREAT of an existing file is an open.
            let attr = self.meta.enter(parent, name, info, true);
            let (fh, _) = self
                .open(
                    attr.ino,
                    OpenMode {
                        write: true,
                        truncate,
                    },
                )
                .await?;
            return Ok((self.attr_of(attr.ino)?, fh));
        }
        self.check_new_name(&path)?;
        // A blob kept for an unlinked file's open handles: the new file replaces that version
        // (and the old file's last close no longer removes it).
        let kept = self.take_over_kept(&path).await?;
        let restore = |kept: &Option<super::unlinked::Kept>| {
            if let Some(k) = kept {
                self.open_files
                    .unlinked()
                    .keep(&path, k.ino, k.etag.clone());
            }
        };
        let replaces = kept.as_ref().map(|k| (Arc::from(k.etag.as_str()), 0));
        let metadata = self.new_entry_metadata(parent, who, Kind::File);
        let staging = match self.new_staging(&path, replaces, true, metadata) {
            Ok(s) => s,
            Err(e) => {
                restore(&kept);
                return Err(e);
            }
        };
        let info = unwritten_info(&staging);
        let (ino, w) = {
            let mut inodes = self.meta.inodes();
            let ino = inodes.upsert(parent, name, info.clone(), true);
            inodes.entries_changed(parent);
            // A new file is a change before any write; created with its first holder: the
            // handle made below.
            let w = WriteFile::new(staging, FileState::opened(true), 1);
            if !self.open_files.insert_new(ino, &w) {
                // Someone in this mount is creating it right now.
                abandon(&w);
                inodes.forget(ino, 1);
                restore(&kept);
                if exclusive {
                    return Err(FsError::Exists);
                }
                return Err(FsError::Busy);
            }
            if let Some(n) = inodes.get_mut(ino) {
                n.page_cache = None;
            }
            (ino, w)
        };
        let attr = self.meta.record(ino, info);
        Ok((attr, self.insert_handle(ino, &path, w)))
    }

    /// Size and time of a file being written, as getattr and listings show them.
    pub(super) async fn touch_attr(&self, ino: u64, w: &WriteFile) -> Attr {
        let info = unwritten_info(&w.open.lock().await.staging);
        self.meta.record(ino, info)
    }

    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32, FsError> {
        let h = self.handles.file(fh).ok_or(FsError::BadHandle)?;
        let w = h.writer().ok_or(FsError::BadHandle)?.file.clone();
        // A block blob has at most 50,000 blocks (growing in size: see grid.rs).
        if offset + data.len() as u64 > self.staging.grid.max_file_size() {
            return Err(FsError::TooLarge);
        }
        self.check_token_usable()?;
        self.wait_for_write_back_room().await;
        let outcome = {
            let mut f = w.open.lock().await;
            // Checked under the lock: the shutdown commit takes it too, so nothing is written
            // after the final commit.
            if self.is_stopping() {
                return Err(FsError::ReadOnly);
            }
            f.state.may_write()?;
            let written = f.staging.write(offset, data).await;
            (f.changed(written), f.staging.size(), f.staging.mtime())
        };
        let (result, size, mtime) = outcome;
        // What the file holds now (a failed write may have written part of its data).
        self.meta.update(h.ino, |n| {
            n.info.size = size;
            n.info.mtime = mtime;
            n.validated = Some(Instant::now());
        });
        result.map(|()| data.len() as u32)
    }

    /// Awaits a commit of `blob` (`size` bytes, `left` of them not uploaded when it began),
    /// saying in the log when it takes long: a `cp` waiting in close for its upload looks hung
    /// otherwise. What is left of this file is at most what it had left, and at most what the
    /// whole mount has not uploaded (the same when one file is being committed).
    async fn with_progress<T>(
        &self,
        blob: &str,
        size: u64,
        left: u64,
        commit: impl std::future::Future<Output = T>,
    ) -> T {
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval_at(start + COMMIT_QUIET, COMMIT_PROGRESS_EVERY);
        tokio::pin!(commit);
        let mut told = false;
        let result = loop {
            tokio::select! {
                r = &mut commit => break r,
                _ = tick.tick() => {
                    told = true;
                    tracing::info!(
                        "committing {blob} ({}): {} left, {}s so far",
                        crate::size::format_size(size),
                        crate::size::format_size(left.min(self.staging.budget.in_use())),
                        start.elapsed().as_secs()
                    );
                }
            }
        };
        if told {
            tracing::info!(
                "committing {blob}: done after {}s",
                start.elapsed().as_secs()
            );
        }
        result
    }

    /// Commits the file's staging (flush on close, fsync). Errors are logged and returned.
    pub(super) async fn commit(&self, ino: u64, w: &WriteFile) -> Result<(), FsError> {
        let mut f = w.open.lock().await;
        self.commit_locked(ino, &mut f).await
    }

    /// Commits a file already locked, if its lifecycle says there is something to commit
    /// (rename keeps the lock until the staging has followed the file to its new name, so no
    /// write slips in between).
    pub(super) async fn commit_locked(&self, ino: u64, f: &mut OpenFile) -> Result<(), FsError> {
        if f.state.commit_requested()? == CommitStep::Nothing {
            return Ok(());
        }
        self.commit_step(ino, f).await
    }

    /// Commits a locked file whose lifecycle said to ([`CommitStep::Commit`]).
    pub(super) async fn commit_step(&self, ino: u64, f: &mut OpenFile) -> Result<(), FsError> {
        // Finished by the program: a restart commits this content if the commit is cut off.
        if let Err(e) = f.staging.mark_finished(false) {
            tracing::warn!(
                blob = f.staging.blob(),
                "cannot write the journal record: {e}"
            );
        }
        let blob = f.staging.blob().to_string();
        let (size, left) = (f.staging.size(), f.staging.not_uploaded());
        let result = self
            .with_progress(&blob, size, left, f.staging.commit())
            .await;
        match result {
            Ok(c) => {
                f.state.committed();
                tracing::debug!(blob, size = f.staging.size(), "committed");
                // Unless the file went on in a conflict copy, the inode shows the new version.
                let names_it = self.node(ino).is_ok_and(|(path, _, _)| path == blob);
                if names_it {
                    let info = EntryInfo::from_props(&f.staging.props(&c.etag, c.last_modified));
                    self.meta.record(ino, info);
                }
                Ok(())
            }
            Err(e) if e.is_conflict() => {
                match f.staging.save_as_sibling("conflict").await {
                    Ok(sibling) => {
                        tracing::error!(
                            blob,
                            "not committed: the blob was changed by someone else since this file was opened ({e}); \
                             their version was kept, and this file's data was saved as {sibling:?} (where further writes to it go)"
                        );
                        // A cached listing of its directory knows neither the sibling nor
                        // their version: asked again.
                        let dir = sibling.rsplit_once('/').map_or("", |(d, _)| d);
                        self.meta.listings().forget_dir(dir);
                        f.state.conflicted(sibling);
                    }
                    Err(e2) => {
                        tracing::error!(
                            blob,
                            "not committed: the blob was changed by someone else since this file was opened ({e}); \
                             their version was kept, and saving this file's data beside it failed too: {e2}"
                        );
                        f.state.commit_failed();
                    }
                }
                Err(FsError::Io)
            }
            Err(e) => {
                tracing::error!(blob, "not committed: {e}");
                f.state.commit_failed();
                Err(match e.kind {
                    crate::blob::ErrorKind::Local(_) => FsError::from(e),
                    _ => FsError::Io,
                })
            }
        }
    }

    /// close(): commits what this file's writers wrote.
    pub async fn flush(&self, fh: u64) -> Result<(), FsError> {
        let Some(h) = self.handles.file(fh) else {
            return Ok(());
        };
        tracing::debug!(fh, ino = h.ino, writer = h.writer().is_some(), "flush");
        match h.writer() {
            Some(w) if self.write_back().is_some() => self.finish_later(h.ino, &w.file).await,
            Some(w) => self.commit(h.ino, &w.file).await,
            None => Ok(()),
        }
    }

    /// Records that process `pid` (as FUSE reports it) opened or wrote through handle `fh`.
    pub fn note_process(&self, fh: u64, pid: u32) {
        let Some(h) = self.handles.file(fh) else {
            return;
        };
        let Some(w) = h.writer() else {
            return;
        };
        let mut procs = lock(&w.processes);
        if procs.len() < 64 && !procs.iter().any(|(p, _)| *p == pid) {
            procs.push((pid, process_of(pid)));
        }
    }

    /// close(2) by process `pid`: commits, unless the process neither opened nor wrote
    /// through this handle (it closes a copy of the descriptor it inherited, e.g. at exec);
    /// then the commit waits for a close by a writer, or the last close (release).
    pub async fn flush_by(&self, fh: u64, pid: u32) -> Result<(), FsError> {
        let Some(h) = self.handles.file(fh) else {
            return Ok(());
        };
        let Some(w) = h.writer() else {
            return Ok(());
        };
        let ours = {
            let procs = lock(&w.processes);
            let tgid = process_of(pid);
            procs.is_empty()
                || procs
                    .iter()
                    .any(|(p, t)| *p == pid || (t.is_some() && *t == tgid))
                || tgid.is_none()
        };
        if !ours {
            tracing::debug!(
                fh,
                pid,
                "close by a process that did not write here: commit deferred"
            );
            return Ok(());
        }
        self.flush(fh).await
    }

    /// fsync(2): commits now, also with write-back (the program's durability point).
    pub async fn fsync(&self, fh: u64) -> Result<(), FsError> {
        let Some(h) = self.handles.file(fh) else {
            return Ok(());
        };
        match h.writer() {
            Some(w) => self.commit(h.ino, &w.file).await,
            None => Ok(()),
        }
    }

    /// The last close of a handle: the last writer commits (if anything is left) and the
    /// staging goes.
    pub async fn release(&self, fh: u64) {
        let Some(h) = self.handles.close_file(fh) else {
            return;
        };
        if let Some(w) = h.writer() {
            let _ = self.drop_writer_hold(h.ino, &w.file).await;
        }
        if !self.has_handles(h.ino) {
            let kept = self.open_files.unlinked().released(h.ino);
            for (name, k) in kept {
                self.delete_kept(&name, &k).await;
            }
        }
    }

    /// Deletes a blob kept for an unlinked file, if it is still the version kept (404 or 412:
    /// gone already, or someone else's version now, which stays).
    pub(super) async fn delete_kept(&self, name: &str, k: &super::unlinked::Kept) {
        match self.client.delete_blob(name, Some(&k.etag)).await {
            Ok(()) => tracing::debug!(blob = name, "deleted at last close"),
            Err(e)
                if matches!(
                    e.kind,
                    crate::blob::ErrorKind::NotFound | crate::blob::ErrorKind::ConditionNotMet
                ) => {}
            Err(e) => {
                tracing::warn!(
                    "deleting a file unlinked while open failed (tried again later): {e}"
                );
                self.open_files.unlinked().retry_later(name, k.etag.clone());
                return;
            }
        }
        self.open_files.unlinked().removed(name, k);
        // A listing made while it was kept (and hidden) has it: not any more.
        let (dir, leaf) = name.rsplit_once('/').unwrap_or(("", name));
        self.meta.listings().remove_entry(dir, leaf);
    }

    /// Whether any handle of this mount is open on `ino`.
    pub(super) fn has_handles(&self, ino: u64) -> bool {
        self.handles.is_open(ino)
    }

    /// truncate(2)/ftruncate(2).
    pub async fn set_size(&self, ino: u64, size: u64) -> Result<Attr, FsError> {
        if size > self.staging.grid.max_file_size() {
            return Err(FsError::TooLarge);
        }
        tracing::debug!(ino, size, "set size");
        let _change = self.check_writable()?;
        let (_, info, _) = self.node(ino)?;
        match info.kind {
            Kind::Dir => return Err(FsError::IsDir),
            Kind::Special(_) => return Err(FsError::Invalid),
            Kind::File | Kind::Symlink => {}
        }
        // Held, so a last release racing with this change cannot retire the file in between:
        // whoever drops the last hold commits it, this change included.
        if let Some(w) = self.open_files.hold(ino) {
            let resized = {
                let mut f = w.open.lock().await;
                match f.state.may_write() {
                    Ok(()) => {
                        let r = f.staging.set_size(size).await;
                        f.changed(r)
                    }
                    Err(e) => Err(e),
                }
            };
            return self.release_held(ino, &w, resized).await;
        }
        // Not open for writing: change and commit at once.
        let w = self.writer_for(ino, false).await?;
        let resized = {
            let mut f = w.open.lock().await;
            let r = f.staging.set_size(size).await;
            f.changed(r)
        };
        let committed = self.drop_writer_hold(ino, &w).await;
        resized?;
        committed?;
        self.attr_of(ino)
    }
}

/// A file being written that nobody used (another open of the same file came first): its
/// journal goes, or the next start would save its empty content beside the blob.
fn abandon(w: &WriteFile) {
    if let Ok(mut f) = w.open.try_lock() {
        f.staging.discard_journal();
    }
}

/// What a file being written shows: its staging's size, time and metadata, and no version
/// (nothing of it is committed as it stands).
fn unwritten_info(staging: &Staging) -> EntryInfo {
    let mut info = EntryInfo::from_props(&staging.props("", staging.mtime()));
    info.etag = None;
    info
}
