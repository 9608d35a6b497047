//! Changing the tree: opening files for writing, writes, commits on flush/fsync/release,
//! truncate, create, mkdir, rmdir, unlink. The data path is in [`super::staging`].
//!
//! Lock order: `inodes` before `writers`, never the other way round.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::dircache::{invalid_component, NAME_MAX};
use super::handles::{FileHandle, Version};
use super::inode::join;
use super::shutdown::Change;
use super::staging::{CommitOutcome, Staging};
use super::{fail, lock, Attr, EntryInfo, Errno, Fs, Kind};
use crate::blob::{BlobError, ErrorKind, WriteOptions, FOLDER_META};
use crate::cache::ReadPattern;

/// How a file is opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenMode {
    pub write: bool,
    pub truncate: bool,
}

/// A file being written: one staging shared by all its write handles.
pub struct WriteFile {
    pub(super) staging: tokio::sync::Mutex<Staging>,
    handles: AtomicUsize,
}

impl WriteFile {
    pub async fn read(&self, offset: u64, size: u32) -> Result<Bytes, BlobError> {
        self.staging
            .lock()
            .await
            .read(offset, u64::from(size))
            .await
    }
}

/// The process (thread group) a thread id belongs to, from /proc.
fn process_of(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether a commit failed because the blob changed (or appeared) since writing started.
fn is_conflict(e: &BlobError) -> bool {
    e.kind == ErrorKind::ConditionNotMet || e.code.as_deref() == Some("BlobAlreadyExists")
}

impl Fs {
    /// Runs for the life of the mount: when a writer waits for the write budget, the dirty
    /// blocks of files not being written at that moment are uploaded, so an idle file cannot
    /// hold the budget from the others.
    pub async fn relieve_write_pressure(self: Arc<Self>) {
        loop {
            self.staging.budget.pressure.notified().await;
            let writers: Vec<Arc<WriteFile>> = lock(&self.writers).values().cloned().collect();
            for w in writers {
                if let Ok(mut s) = w.staging.try_lock() {
                    s.flush_dirty();
                }
            }
        }
    }

    pub(super) fn writer(&self, ino: u64) -> Option<Arc<WriteFile>> {
        lock(&self.writers).get(&ino).cloned()
    }

    /// Entries for the files being written in directory `dir` (not committed yet, perhaps).
    pub(super) fn files_being_written_in(&self, dir: u64) -> Vec<(String, EntryInfo)> {
        let inos: Vec<u64> = lock(&self.writers).keys().copied().collect();
        let inodes = lock(&self.inodes);
        inos.into_iter()
            .filter_map(|ino| inodes.get(ino))
            .filter(|n| n.parent == dir)
            .map(|n| (n.name.clone(), n.info.clone()))
            .collect()
    }

    /// Changes need a read-write mount and a SAS that may write (the token in force: a
    /// refreshed one may allow less, or more, than the first).
    /// The returned guard counts the change as in progress until it is dropped: keep it for
    /// the whole operation (the shutdown waits for changes in progress).
    pub(super) fn check_writable(&self) -> Result<Change<'_>, Errno> {
        if self.cfg.read_only {
            return Err(libc::EROFS);
        }
        let change = self.begin_change()?;
        if !self.token_allows('w') {
            tracing::debug!("the SAS in force has no write permission");
            return Err(libc::EROFS);
        }
        Ok(change)
    }

    /// Removing (unlink, rmdir, rename's source) needs the SAS's `d`: without it, EACCES at once.
    pub(super) fn check_deletable(&self) -> Result<Change<'_>, Errno> {
        let change = self.check_writable()?;
        if !self.token_allows('d') {
            tracing::debug!("the SAS in force has no delete permission");
            return Err(libc::EACCES);
        }
        Ok(change)
    }

    /// Whether the SAS in force has permission `letter` (or nothing is known of it).
    fn token_allows(&self, letter: char) -> bool {
        let Some(cred) = &self.cfg.credential else {
            return true;
        };
        cred.current()
            .permissions
            .as_ref()
            .is_none_or(|p| p.has(letter))
    }

    /// The directory path of `parent` and a validated `name` in it.
    pub(super) fn child_name<'a>(
        &self,
        parent: u64,
        name: &'a OsStr,
    ) -> Result<(String, &'a str), Errno> {
        let name = name.to_str().ok_or(libc::EINVAL)?;
        if name.len() > NAME_MAX {
            return Err(libc::ENAMETOOLONG);
        }
        if invalid_component(name).is_some() || name.contains('/') {
            return Err(libc::EINVAL);
        }
        let (dir, info, _) = self.node(parent)?;
        if info.kind != Kind::Dir {
            return Err(libc::ENOTDIR);
        }
        Ok((dir, name))
    }

    /// Records new attributes of an inode and of its entry in the cached listing.
    pub(super) fn record(&self, ino: u64, info: EntryInfo) -> Attr {
        let mut inodes = lock(&self.inodes);
        let Some(n) = inodes.get_mut(ino) else {
            return Attr {
                ino,
                kind: info.kind,
                size: info.size,
                mtime: info.mtime,
                mode: info.mode,
            };
        };
        n.info = info.clone();
        n.validated = Instant::now();
        let (parent, name) = (n.parent, n.name.clone());
        let attr = n.attr(ino);
        let dir = inodes
            .get(parent)
            .map(|p| p.path.clone())
            .unwrap_or_default();
        drop(inodes);
        lock(&self.dirs).upsert_entry(&dir, &name, info);
        attr
    }

    fn new_staging(
        &self,
        blob: &str,
        existing: Option<(Arc<str>, u64)>,
        truncate: bool,
        metadata: HashMap<String, String>,
    ) -> Result<Staging, Errno> {
        self.staging
            .stage(blob.into(), existing, truncate, metadata)
            .map_err(|e| {
                tracing::error!(
                    "cannot create a staging file in {}: {e}",
                    self.cfg.staging_dir.display()
                );
                libc::EIO
            })
    }

    /// The writer of an existing file, created (from its current version) if needed.
    /// The writer of an existing file (created from its current version if needed), with one
    /// more holder counted (taken under the registry's lock, so a last release cannot drop it
    /// in between): every call is matched by a [`Fs::drop_writer_hold`].
    async fn writer_for(&self, ino: u64, truncate: bool) -> Result<Arc<WriteFile>, Errno> {
        let existing = {
            let writers = lock(&self.writers);
            writers.get(&ino).cloned().inspect(|w| {
                w.handles.fetch_add(1, Ordering::SeqCst);
            })
        };
        if let Some(w) = existing {
            if truncate {
                let truncated = w.staging.lock().await.set_size(0).await.map_err(fail);
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
        let w = Arc::new(WriteFile {
            staging: tokio::sync::Mutex::new(staging),
            handles: AtomicUsize::new(0),
        });
        // Another open may have raced us: keep the first.
        let mut writers = lock(&self.writers);
        let w = writers.entry(ino).or_insert(w).clone();
        w.handles.fetch_add(1, Ordering::SeqCst);
        Ok(w)
    }

    /// Ends one hold on a writer; the last one commits and retires it (unless someone took it
    /// again meanwhile). Errors of that commit are logged (and returned).
    async fn drop_writer_hold(&self, ino: u64, w: &Arc<WriteFile>) -> Result<(), Errno> {
        if w.handles.fetch_sub(1, Ordering::SeqCst) != 1 {
            return Ok(());
        }
        let result = self.commit(ino, w).await;
        let mut writers = lock(&self.writers);
        let same = writers.get(&ino).is_some_and(|cur| Arc::ptr_eq(cur, w));
        if same && w.handles.load(Ordering::SeqCst) == 0 {
            writers.remove(&ino);
        }
        result
    }

    /// A handle for a writer whose hold the caller took (writer_for, create).
    fn insert_handle(&self, ino: u64, path: &str, writer: Arc<WriteFile>) -> u64 {
        lock(&self.files).insert(FileHandle {
            ino,
            blob: path.into(),
            version: std::sync::Mutex::new(Version {
                etag: "".into(),
                size: 0,
            }),
            served: false.into(),
            pattern: std::sync::Mutex::new(ReadPattern::new(0, 0)),
            writer: Some(writer),
            processes: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Opens a file; for writing, its handle shares the file's staging.
    pub async fn open(&self, ino: u64, mode: OpenMode) -> Result<(u64, bool), Errno> {
        if !(mode.write || mode.truncate) {
            return self.open_read(ino, None).await;
        }
        let _change = self.check_writable()?;
        let (path, info, _) = self.node(ino)?;
        if info.kind == Kind::Dir {
            return Err(libc::EISDIR);
        }
        let w = self.writer_for(ino, mode.truncate).await?;
        if mode.truncate {
            self.touch_attr(ino, &w).await;
        }
        Ok((self.insert_handle(ino, &path, w), false))
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
    ) -> Result<(Attr, u64), Errno> {
        let _change = self.check_writable()?;
        let (dir, name) = self.child_name(parent, name)?;
        let existing = match self.resolve(&dir, name).await {
            Ok(info) if info.kind == Kind::Dir => return Err(libc::EISDIR),
            Ok(_) if exclusive => return Err(libc::EEXIST),
            Ok(info) => Some(info),
            Err(libc::ENOENT) => None,
            Err(e) => return Err(e),
        };
        let path = join(&dir, name);
        if let Some(info) = existing {
            // O_CREAT of an existing file is an open.
            let attr = {
                let mut inodes = lock(&self.inodes);
                let ino = inodes.upsert(parent, name, info, true);
                inodes.get(ino).expect("just upserted").attr(ino)
            };
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
        let staging = self.new_staging(&path, None, false, HashMap::new())?;
        let info = EntryInfo::file(0, SystemTime::now(), None);
        let ino = {
            let mut inodes = lock(&self.inodes);
            let ino = inodes.upsert(parent, name, info.clone(), true);
            let mut writers = lock(&self.writers);
            if writers.contains_key(&ino) {
                // Someone in this mount is creating it right now.
                drop(writers);
                inodes.forget(ino, 1);
                if exclusive {
                    return Err(libc::EEXIST);
                }
                return Err(libc::EBUSY);
            }
            // Created with its first holder: the handle made below.
            writers.insert(
                ino,
                Arc::new(WriteFile {
                    staging: tokio::sync::Mutex::new(staging),
                    handles: AtomicUsize::new(1),
                }),
            );
            ino
        };
        let attr = self.record(ino, info);
        let w = self.writer(ino).ok_or(libc::EIO)?;
        Ok((attr, self.insert_handle(ino, &path, w)))
    }

    /// Size and time of a file being written, as getattr and listings show them.
    pub(super) async fn touch_attr(&self, ino: u64, w: &WriteFile) -> Attr {
        let info = {
            let s = w.staging.lock().await;
            let mut info = EntryInfo::from_props(&s.props("", s.mtime()));
            info.etag = None;
            info
        };
        self.record(ino, info)
    }

    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let h = lock(&self.files).get(fh).ok_or(libc::EBADF)?;
        // A block blob has at most 50,000 blocks (growing in size: see grid.rs).
        if offset + data.len() as u64 > self.staging.grid.max_file_size() {
            return Err(libc::EFBIG);
        }
        let w = h.writer.clone().ok_or(libc::EBADF)?;
        let (size, mtime) = {
            let mut s = w.staging.lock().await;
            // Checked under the lock: the shutdown commit takes it too, so nothing is written
            // after the final commit.
            if self.is_stopping() {
                return Err(libc::EROFS);
            }
            s.write(offset, data).await.map_err(fail)?;
            (s.size(), s.mtime())
        };
        let mut inodes = lock(&self.inodes);
        if let Some(n) = inodes.get_mut(h.ino) {
            n.info.size = size;
            n.info.mtime = mtime;
            n.validated = Instant::now();
        }
        Ok(data.len() as u32)
    }

    /// Commits the file's staging (flush on close, fsync). Errors are logged and returned.
    pub(super) async fn commit(&self, ino: u64, w: &WriteFile) -> Result<(), Errno> {
        let mut s = w.staging.lock().await;
        self.commit_locked(ino, &mut s).await
    }

    /// Commits a staging already locked (rename keeps the lock until the staging has followed
    /// the file to its new name, so no write slips in between).
    pub(super) async fn commit_locked(&self, ino: u64, s: &mut Staging) -> Result<(), Errno> {
        if lock(&self.unlinked).contains_key(&ino) {
            return Ok(()); // unlinked while open: nothing to keep
        }
        let blob = s.blob().to_string();
        match s.commit().await {
            Ok(CommitOutcome::Unchanged) => Ok(()),
            Ok(CommitOutcome::Committed(c)) => {
                tracing::debug!(blob, size = s.size(), "committed");
                let info = EntryInfo::from_props(&s.props(&c.etag, c.last_modified));
                self.record(ino, info);
                Ok(())
            }
            Err(e) if is_conflict(&e) => {
                match s.save_conflict_copy(&blob).await {
                    Ok(sibling) => tracing::error!(
                        blob,
                        "not committed: the blob was changed by someone else since this file was opened ({e}); \
                         their version was kept, and this file's data was saved as {sibling:?} (where further writes to it go)"
                    ),
                    Err(e2) => tracing::error!(
                        blob,
                        "not committed: the blob was changed by someone else since this file was opened ({e}); \
                         their version was kept, and saving this file's data beside it failed too: {e2}"
                    ),
                }
                Err(libc::EIO)
            }
            Err(e) => {
                tracing::error!(blob, "not committed: {e}");
                Err(libc::EIO)
            }
        }
    }

    /// close(): commits what this file's writers wrote.
    pub async fn flush(&self, fh: u64) -> Result<(), Errno> {
        let Some(h) = lock(&self.files).get(fh) else {
            return Ok(());
        };
        tracing::debug!(fh, ino = h.ino, writer = h.writer.is_some(), "flush");
        match &h.writer {
            Some(w) => self.commit(h.ino, w).await,
            None => Ok(()),
        }
    }

    /// Records that process `pid` (as FUSE reports it) opened or wrote through handle `fh`.
    pub fn note_process(&self, fh: u64, pid: u32) {
        let Some(h) = lock(&self.files).get(fh) else {
            return;
        };
        let mut procs = lock(&h.processes);
        if procs.len() < 64 && !procs.iter().any(|(p, _)| *p == pid) {
            procs.push((pid, process_of(pid)));
        }
    }

    /// close(2) by process `pid`: commits, unless the process neither opened nor wrote
    /// through this handle (it closes a copy of the descriptor it inherited, e.g. at exec);
    /// then the commit waits for a close by a writer, or the last close (release).
    pub async fn flush_by(&self, fh: u64, pid: u32) -> Result<(), Errno> {
        let Some(h) = lock(&self.files).get(fh) else {
            return Ok(());
        };
        if h.writer.is_none() {
            return Ok(());
        }
        let ours = {
            let procs = lock(&h.processes);
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

    pub async fn fsync(&self, fh: u64) -> Result<(), Errno> {
        self.flush(fh).await
    }

    /// The last close of a handle: the last writer commits (if anything is left) and the
    /// staging goes.
    pub async fn release(&self, fh: u64) {
        let Some(h) = lock(&self.files).remove(fh) else {
            return;
        };
        if let Some(w) = &h.writer {
            let _ = self.drop_writer_hold(h.ino, w).await;
        }
        if !self.has_handles(h.ino) {
            let pending = lock(&self.unlinked).remove(&h.ino).flatten();
            if let Some((path, etag)) = pending {
                // Unlinked while open: it goes now, if it is still the version unlinked.
                match self.client.delete_blob(&path, Some(&etag)).await {
                    Ok(()) => tracing::debug!(blob = path, "deleted at last close"),
                    Err(e)
                        if matches!(e.kind, ErrorKind::NotFound | ErrorKind::ConditionNotMet) => {}
                    Err(e) => tracing::warn!("deleting a file unlinked while open failed: {e}"),
                }
            }
        }
    }

    /// Whether any handle of this mount is open on `ino`.
    fn has_handles(&self, ino: u64) -> bool {
        lock(&self.files).any(|h| h.ino == ino)
    }

    /// truncate(2)/ftruncate(2).
    pub async fn set_size(&self, ino: u64, size: u64) -> Result<Attr, Errno> {
        if size > self.staging.grid.max_file_size() {
            return Err(libc::EFBIG);
        }
        tracing::debug!(ino, size, "set size");
        let _change = self.check_writable()?;
        let (_, info, _) = self.node(ino)?;
        if info.kind == Kind::Dir {
            return Err(libc::EISDIR);
        }
        if let Some(w) = self.writer(ino) {
            w.staging.lock().await.set_size(size).await.map_err(fail)?;
            return Ok(self.touch_attr(ino, &w).await);
        }
        // Not open for writing: change and commit at once.
        let w = self.writer_for(ino, false).await?;
        let resized = w.staging.lock().await.set_size(size).await.map_err(fail);
        let committed = self.drop_writer_hold(ino, &w).await;
        resized?;
        committed?;
        self.attr_of(ino)
    }

    /// mkdir: a zero-length marker blob with `hdi_isfolder=true`, so the directory persists
    /// while empty (blobfuse2's and Azure tools' convention).
    pub async fn mkdir(&self, parent: u64, name: &OsStr) -> Result<Attr, Errno> {
        let meta = HashMap::from([(FOLDER_META.to_string(), "true".to_string())]);
        let (path, name, c) = self.put_new_blob(parent, name, Bytes::new(), meta).await?;
        let info = EntryInfo::dir(c.last_modified);
        let ino = lock(&self.inodes).upsert(parent, name, info.clone(), true);
        lock(&self.dirs).forget_dir(&path);
        Ok(self.record(ino, info))
    }

    /// Creates the blob `name` in directory `parent` in one Put Blob, only if nothing has that
    /// name (`If-None-Match: *`; EEXIST otherwise). For directory markers and symlinks.
    pub(super) async fn put_new_blob<'a>(
        &self,
        parent: u64,
        name: &'a OsStr,
        data: Bytes,
        metadata: HashMap<String, String>,
    ) -> Result<(String, &'a str, crate::blob::Committed), Errno> {
        let _change = self.check_writable()?;
        let (dir, name) = self.child_name(parent, name)?;
        match self.resolve(&dir, name).await {
            Ok(_) => return Err(libc::EEXIST),
            Err(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let path = join(&dir, name);
        let opts = WriteOptions {
            if_none_match_any: true,
            metadata,
            ..Default::default()
        };
        let c = self
            .client
            .put_blob(&path, data, &opts)
            .await
            .map_err(|e| match e.code.as_deref() {
                Some("BlobAlreadyExists") => libc::EEXIST,
                _ => fail(e),
            })?;
        Ok((path, name, c))
    }

    /// Removes the markers of directory `path` (`path` with `hdi_isfolder`, `path/`), after
    /// checking that no blob remains under it (ENOTEMPTY) and that nothing is being written
    /// there (`busy`).
    pub(super) async fn remove_empty_dir(&self, path: &str, busy: bool) -> Result<(), Errno> {
        let prefix = format!("{path}/");
        let page = self
            .client
            .list(crate::blob::ListRequest {
                prefix: &prefix,
                delimiter: None,
                marker: None,
                max_results: Some(2),
            })
            .await
            .map_err(fail)?;
        if busy || page.blobs.iter().any(|b| b.name != prefix) {
            return Err(libc::ENOTEMPTY);
        }
        for marker in [path, prefix.as_str()] {
            match self.client.delete_blob(marker, None).await {
                Ok(()) => {}
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(fail(e)),
            }
        }
        Ok(())
    }

    /// rmdir: refuses (ENOTEMPTY) while any blob remains under the prefix, then removes the
    /// directory's marker blobs (`name` with `hdi_isfolder`, `name/`), if any.
    pub async fn rmdir(&self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        let _change = self.check_deletable()?;
        let (dir, name) = self.child_name(parent, name)?;
        match self.resolve(&dir, name).await {
            Ok(info) if info.kind != Kind::Dir => return Err(libc::ENOTDIR),
            Ok(_) => {}
            // A directory that existed only as a prefix disappears with its last blob: removing
            // it then is a success (`rm -r` removes the files first, then the directory).
            Err(libc::ENOENT) if self.known_dir(parent, name) => {
                lock(&self.inodes).detach(parent, name);
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        let path = join(&dir, name);
        let child = lock(&self.inodes).child(parent, name);
        let writing_inside = child.is_some_and(|ino| !self.files_being_written_in(ino).is_empty());
        self.remove_empty_dir(&path, writing_inside).await?;
        lock(&self.inodes).detach(parent, name);
        let mut dirs = lock(&self.dirs);
        dirs.remove_entry(&dir, name);
        dirs.forget_dir(&path);
        Ok(())
    }

    /// unlink: deletes the blob. A file being created here and not yet committed just goes.
    /// unlink: deletes the blob. A file still open here stays readable through its handles:
    /// its blob is deleted at the last close (if it is still the version unlinked). A file
    /// being written is not committed any more.
    pub async fn unlink(&self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        let _change = self.check_deletable()?;
        let (dir, name) = self.child_name(parent, name)?;
        let info = self.resolve_or_writer(parent, &dir, name).await?;
        if info.kind == Kind::Dir {
            return Err(libc::EISDIR);
        }
        let path = join(&dir, name);
        let ino = lock(&self.inodes).child(parent, name);
        let writing = ino.is_some_and(|i| self.writer(i).is_some());
        let reading = ino.is_some_and(|i| self.has_handles(i));
        match (ino, &info.etag) {
            (Some(ino), Some(etag)) if reading && !writing => {
                lock(&self.unlinked).insert(ino, Some((path.clone(), etag.to_string())));
            }
            _ => {
                if let (Some(ino), true) = (ino, writing) {
                    lock(&self.unlinked).insert(ino, None);
                }
                match self.client.delete_blob(&path, None).await {
                    Ok(()) => {}
                    Err(e) if e.kind == ErrorKind::NotFound && (info.etag.is_none() || writing) => {
                    }
                    Err(e) => return Err(fail(e)),
                }
            }
        }
        lock(&self.inodes).detach(parent, name);
        lock(&self.dirs).remove_entry(&dir, name);
        Ok(())
    }

    /// Whether the kernel holds `name` in `parent` as a directory.
    fn known_dir(&self, parent: u64, name: &str) -> bool {
        let inodes = lock(&self.inodes);
        inodes
            .child(parent, name)
            .and_then(|ino| inodes.get(ino))
            .is_some_and(|n| n.info.kind == Kind::Dir)
    }

    /// What `name` is, counting files this mount is writing and has not committed yet.
    async fn resolve_or_writer(
        &self,
        parent: u64,
        dir: &str,
        name: &str,
    ) -> Result<EntryInfo, Errno> {
        let known = {
            let inodes = lock(&self.inodes);
            inodes
                .child(parent, name)
                .and_then(|ino| inodes.get(ino).map(|n| (ino, n.info.clone())))
        };
        if let Some((ino, info)) = known {
            if self.writer(ino).is_some() {
                return Ok(info);
            }
        }
        self.resolve(dir, name).await
    }
}
