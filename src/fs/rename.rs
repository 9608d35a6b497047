//! rename(2) on blob storage, which has no rename: each blob is copied by the service (Copy
//! Blob), the copy is waited for and checked, and only then is the source deleted. A source
//! whose copy did not succeed is never deleted, and a copy is only removed while its source is
//! known to be intact (or was replaced by someone else before the delete).
//!
//! Lost answers: a Copy Blob retried after its answer was lost simply copies again (with
//! RENAME_NOREPLACE its retry meets its own copy: recognised by the copy's source). A Delete
//! Blob retried after its answer was lost answers 404 or 412: the source is then looked at
//! again, and a source that is gone means the move is complete.
//!
//! A directory is renamed blob by blob. If that fails part way, the blobs already moved are
//! moved back, so the source is whole again and the same `mv` can simply be run again; every
//! blob is at all times in the source or the destination.

use super::error::FsError;
use std::ffi::OsStr;
use std::time::Duration;

use futures::stream::{self, StreamExt};

use super::inode::join;
use super::lifecycle::FileState;
use super::{fail, Fs, Kind};
use crate::blob::{self, BlobError, BlobProps, CopyInfo, CopyState, ErrorKind, WriteOptions};

/// Copies moved at once when renaming a directory.
const PARALLEL_MOVES: usize = 8;
/// What a file's move did: the source version it copied, and the copy.
struct Moved {
    source_etag: String,
    copy: BlobProps,
}

/// What a move may replace at its destination.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Replace {
    Anything,
    /// RENAME_NOREPLACE: only where nothing is.
    Nothing,
    /// Only this version (a blob kept for an unlinked file's open handles).
    Only(String),
}

/// Steps of 10 ms waited for releases in flight before a directory rename answers EBUSY.
const RELEASE_WAIT_STEPS: u32 = 50;
/// How long a pending server-side copy is waited for.
const COPY_TIMEOUT: Duration = Duration::from_secs(3600);

impl Fs {
    /// rename(2). `noreplace` is RENAME_NOREPLACE: an existing target answers EEXIST.
    pub async fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        noreplace: bool,
    ) -> Result<(), FsError> {
        let _change = self.check_deletable()?;
        let (src_dir, name) = self.child_name(parent, name)?;
        let (dst_dir, new_name) = self.child_name(new_parent, new_name)?;
        let result = self
            .rename_checked(
                parent,
                (&src_dir, name),
                new_parent,
                (&dst_dir, new_name),
                noreplace,
            )
            .await;
        if result.is_err() {
            // A failure part way may have moved some blobs (and moved them back): what this
            // mount knows of both places is asked again.
            let mut inodes = self.meta.inodes();
            for (p, n) in [(parent, name), (new_parent, new_name)] {
                if let Some(node) = inodes.child(p, n).and_then(|i| inodes.get_mut(i)) {
                    node.validated = None;
                }
            }
            drop(inodes);
            let mut dirs = self.meta.listings();
            for d in [&src_dir, &dst_dir] {
                dirs.forget_dir(d);
            }
            dirs.forget_tree(&join(&src_dir, name));
            dirs.forget_tree(&join(&dst_dir, new_name));
        }
        result
    }

    async fn rename_checked(
        &self,
        parent: u64,
        (src_dir, name): (&str, &str),
        new_parent: u64,
        (dst_dir, new_name): (&str, &str),
        noreplace: bool,
    ) -> Result<(), FsError> {
        let (src, dst) = (join(src_dir, name), join(dst_dir, new_name));
        if src == dst {
            return Ok(());
        }
        self.check_new_name(&dst)?;
        let ino = self.meta.child(parent, name);
        // A file open for writing here (or just closed: release comes later) is committed
        // first (a rename is a point where the program says the content is what it wants),
        // and its staging follows it to the new name.
        let writer = ino.and_then(|i| self.writer(i));
        // The lock is held until the staging follows the file: no write slips in between.
        let mut open = match (&writer, ino) {
            (Some(w), Some(ino)) => {
                let mut guard = w.open.lock().await;
                self.commit_locked(ino, &mut guard).await?;
                Some(guard)
            }
            _ => None,
        };
        let src_info = self.resolve(src_dir, name).await?;
        if src_info.kind == Kind::Dir && dst.starts_with(&format!("{src}/")) {
            return Err(FsError::Invalid); // into itself
        }
        // A file this mount is writing (maybe not committed yet) exists too.
        let dst_info = match self.resolve_or_writer(new_parent, dst_dir, new_name).await {
            Ok(i) => Some(i),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        if dst_info.is_some() && noreplace {
            return Err(FsError::Exists);
        }
        // What a file's move copied: the source version and the copy.
        let mut moved: Option<Moved> = None;
        match (src_info.kind, dst_info.as_ref().map(|i| i.kind)) {
            (Kind::File | Kind::Symlink | Kind::Special(_), Some(Kind::Dir)) => {
                return Err(FsError::IsDir)
            }
            (Kind::Dir, Some(Kind::File | Kind::Symlink | Kind::Special(_))) => {
                return Err(FsError::NotDir)
            }
            (Kind::File | Kind::Symlink | Kind::Special(_), _) => {
                // A file replaced while open for writing here is unlinked by the rename: its
                // writers must never commit over what takes its name. Locked during the move,
                // so no commit of it lands in between.
                let replaced = self
                    .meta
                    .child(new_parent, new_name)
                    .and_then(|i| self.writer(i));
                let mut replaced = match &replaced {
                    Some(w) => Some(w.open.lock().await),
                    None => None,
                };
                if let Some(f) = replaced.as_mut() {
                    // It stays readable through its handles: what it still reads from its blob
                    // comes local first.
                    f.staging.materialize().await.map_err(fail)?;
                }
                // A blob kept at the destination for an unlinked file's open handles is
                // replaced, that version only (also with RENAME_NOREPLACE: the name is free).
                let kept = self.take_over_kept(&dst).await?;
                let replace = match (&kept, noreplace) {
                    (Some(k), _) => Replace::Only(k.etag.clone()),
                    (None, true) => Replace::Nothing,
                    (None, false) => Replace::Anything,
                };
                // Over an existing file, a copy that went through is never taken back: the
                // old version is gone with it, and the name keeps the new one.
                let over = dst_info.is_some() || kept.is_some();
                let m = match self.move_blob(&src, &dst, replace, over).await {
                    Ok(m) => m,
                    Err(e) => {
                        if let Some(k) = kept {
                            self.give_back_kept(&dst, k).await;
                        }
                        return Err(fail(e));
                    }
                };
                if let Some(f) = replaced.as_mut() {
                    f.unlinked();
                }
                if let Some(f) = open.as_mut() {
                    // Only onto a copy of the version it holds: after a conflict the staging
                    // goes on in its sibling, and a version someone else wrote since must not
                    // be taken for its base (its commit at the old name then meets theirs).
                    let same = f.staging.expected_etag() == Some(m.source_etag.as_str());
                    if same
                        && f.staging.blob() == src
                        && f.state.is_settled()
                        && !matches!(f.state, FileState::Conflicted { .. })
                    {
                        f.staging
                            .moved_to(dst.as_str().into(), m.copy.etag.as_str().into());
                    }
                }
                moved = Some(m);
            }
            (Kind::Dir, target) => {
                if self.still_writing_under(&src).await {
                    // Their stagings are bound to names under the old path.
                    return Err(FsError::Busy);
                }
                if target.is_some() {
                    // Files being created there (not in the service yet) count too.
                    let busy = self.still_writing_under(&dst).await;
                    self.remove_empty_dir(&dst, busy).await?;
                }
                self.move_dir(&src, &dst).await?;
            }
        }
        {
            let mut inodes = self.meta.inodes();
            match ino {
                Some(ino) => {
                    inodes.rename(ino, new_parent, new_name);
                    match (inodes.get_mut(ino), &moved) {
                        (Some(n), None) => {
                            // A directory: its marker, if any, is a copy now, not read back.
                            n.info.etag = None;
                            n.info.metadata = None;
                        }
                        (Some(n), Some(m)) => {
                            // The copy is a new version of the bytes copied: the kernel's pages
                            // hold it too if they held exactly that source version.
                            let etag: std::sync::Arc<str> = m.copy.etag.as_str().into();
                            if n.page_cache.as_deref() == Some(m.source_etag.as_str()) {
                                n.page_cache = Some(etag.clone());
                            } else if n.page_cache.is_some() {
                                n.page_cache = None;
                            }
                            // The copy's metadata is not read back: chmod reads it first.
                            n.info.metadata = None;
                            if self.writer(ino).is_none() {
                                n.info.size = m.copy.size;
                                n.info.etag = Some(etag);
                                n.validated = Some(std::time::Instant::now());
                            } else {
                                n.info.etag = None;
                            }
                        }
                        (None, _) => {}
                    }
                }
                None => inodes.detach(new_parent, new_name),
            }
            inodes.emptied(parent);
        }
        let mut info = src_info;
        // The entry is the copy (a file's: its version, not the source's; a directory's
        // marker's: not read back).
        info.etag = moved.as_ref().map(|m| m.copy.etag.as_str().into());
        info.metadata = None;
        if let Some(m) = &moved {
            info.size = m.copy.size;
        }
        let mut dirs = self.meta.listings();
        dirs.remove_entry(src_dir, name);
        dirs.upsert_entry(dst_dir, new_name, info);
        dirs.forget_tree(&src);
        dirs.forget_tree(&dst);
        Ok(())
    }

    /// Whether a file under directory `dir` is open for writing in this mount.
    fn writing_under(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        let inos = self.open_files.writer_inos();
        let inodes = self.meta.inodes();
        inos.iter()
            .filter(|i| inodes.is_attached(**i))
            .filter_map(|i| inodes.get(*i))
            .any(|n| n.path.starts_with(&prefix))
    }

    /// [`Fs::writing_under`], after a moment for releases on their way: the kernel sends a
    /// file's release after its close has returned, so `cp f d/ && mv d e` may come first.
    pub(super) async fn still_writing_under(&self, dir: &str) -> bool {
        for _ in 0..RELEASE_WAIT_STEPS {
            if !self.writing_under(dir) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.writing_under(dir)
    }

    /// Moves one blob: copy (waited for and checked), then delete the source version copied.
    /// With `over` (the destination existed), a failure after the copy leaves the copy.
    async fn move_blob(
        &self,
        src: &str,
        dst: &str,
        replace: Replace,
        over: bool,
    ) -> Result<Moved, BlobError> {
        let props = self.client.properties(src).await?;
        let copy = self.copy_checked(src, &props, dst, replace, over).await?;
        self.delete_moved(src, &props, dst, &copy, over).await?;
        Ok(Moved {
            source_etag: props.etag,
            copy,
        })
    }

    /// The blob kept at `dst` for an unlinked file's open handles, which a move is about to
    /// replace: the move takes over its removal, and a writer of that file first brings what
    /// it still reads from it into its local copy.
    pub(super) async fn take_over_kept(
        &self,
        dst: &str,
    ) -> Result<Option<super::unlinked::Kept>, FsError> {
        let Some(k) = self.open_files.unlinked().reuse(dst) else {
            return Ok(None);
        };
        if let Some(w) = self.writer(k.ino) {
            if let Err(e) = w.open.lock().await.staging.materialize().await {
                self.open_files.unlinked().keep(dst, k.ino, k.etag);
                return Err(fail(e));
            }
        }
        Ok(Some(k))
    }

    /// Copies version `props` of `src` to `dst`, waits for the copy and checks it (status,
    /// length). A copy that may have been made although the call failed (its answer was lost)
    /// is removed again while `src` is known to be intact.
    async fn copy_checked(
        &self,
        src: &str,
        props: &BlobProps,
        dst: &str,
        replace: Replace,
        over: bool,
    ) -> Result<BlobProps, BlobError> {
        let conditional = replace != Replace::Anything;
        let opts = WriteOptions {
            if_none_match_any: replace == Replace::Nothing,
            if_match: match replace {
                Replace::Only(etag) => Some(etag),
                _ => None,
            },
            ..Default::default()
        };
        let mut info = match self
            .client
            .copy_blob(dst, src, Some(&props.etag), &opts)
            .await
        {
            Ok(info) => info,
            // Conditional on the destination, the retry of a copy whose answer was lost meets
            // the copy: 409 (If-None-Match: *) or 412 (If-Match).
            Err(e)
                if conditional
                    && e.after_lost_answer
                    && (e.kind == crate::blob::ErrorKind::AlreadyExists
                        || e.kind == ErrorKind::ConditionNotMet) =>
            {
                match self.own_copy(src, dst).await {
                    Some(info) => info,
                    None => return Err(e),
                }
            }
            Err(e) => {
                if e.may_have_applied() && !over {
                    self.remove_stray_copy(src, props, dst).await;
                }
                return Err(e);
            }
        };
        let started = std::time::Instant::now();
        let mut wait = Duration::from_millis(50);
        while info.state == CopyState::Pending {
            if started.elapsed() > COPY_TIMEOUT {
                return Err(BlobError::new(
                    ErrorKind::Other,
                    "Copy Blob",
                    dst,
                    "the copy did not finish in time",
                ));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
            info = match self.client.copy_info(dst).await? {
                Some(i) if i.id == info.id => i,
                _ => {
                    return Err(BlobError::new(
                        ErrorKind::Other,
                        "Copy Blob",
                        dst,
                        "the copy was replaced by another",
                    ))
                }
            };
        }
        if let CopyState::Failed(why) = info.state {
            return Err(BlobError::new(
                ErrorKind::Other,
                "Copy Blob",
                dst,
                format!("the copy failed: {why}"),
            ));
        }
        let copied = self.client.properties(dst).await?;
        if copied.size != props.size {
            return Err(BlobError::new(
                ErrorKind::Other,
                "Copy Blob",
                dst,
                format!(
                    "the copy has {} bytes, the source {}: source kept",
                    copied.size, props.size
                ),
            ));
        }
        Ok(copied)
    }

    /// The copy into `dst` if it was copied from `src` (a copy of ours whose answer was lost).
    async fn own_copy(&self, src: &str, dst: &str) -> Option<CopyInfo> {
        let info = self.client.copy_info(dst).await.ok()??;
        (info.source.as_deref() == Some(src)).then_some(info)
    }

    /// After a failed copy that may have been made anyway: removes `dst` if it is a copy of
    /// `src`, which still is the version copied (so nothing is lost by removing it).
    async fn remove_stray_copy(&self, src: &str, props: &BlobProps, dst: &str) {
        let Some(_) = self.own_copy(src, dst).await else {
            return;
        };
        let (Ok(now), Ok(copy)) = (
            self.client.properties(src).await,
            self.client.properties(dst).await,
        ) else {
            return;
        };
        if now.etag != props.etag {
            return;
        }
        match self.client.delete_blob(dst, Some(&copy.etag)).await {
            Ok(()) => tracing::debug!(blob = dst, "removed a copy whose rename failed"),
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!("the copy {dst:?} of a failed rename could not be removed: {e}")
            }
        }
    }

    /// Deletes the source of a move whose copy `copied` is checked. When the delete fails,
    /// the source is looked at again: gone means the move is complete (the delete went
    /// through and its answer was lost, or someone else removed it: the copy holds it);
    /// unchanged means the delete did not happen, and the copy is taken back (the blob stays
    /// in one place); replaced by someone else before the delete, the copy of the old
    /// version is taken back too. When it cannot be told, both are kept.
    async fn delete_moved(
        &self,
        src: &str,
        props: &BlobProps,
        dst: &str,
        copied: &BlobProps,
        over: bool,
    ) -> Result<(), BlobError> {
        let e = match self.client.delete_blob(src, Some(&props.etag)).await {
            Ok(()) => return Ok(()),
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(()),
            Err(e) => e,
        };
        let take_back = match self.client.properties(src).await {
            Err(e2) if e2.kind == ErrorKind::NotFound => return Ok(()),
            Ok(now) if now.etag == props.etag => true,
            // Replaced before our delete (a plain 412, no attempt of ours lost).
            Ok(_) if e.kind == ErrorKind::ConditionNotMet && !e.may_have_applied() => true,
            Ok(_) => {
                tracing::warn!(
                    "{src:?} was moved to {dst:?}, and {src:?} has been written again since: both are kept"
                );
                return Ok(());
            }
            Err(e2) => {
                tracing::warn!(
                    "renaming {src:?} to {dst:?}: deleting the source failed ({e}) and it cannot be checked ({e2}): the copy is kept"
                );
                return Err(e);
            }
        };
        if take_back && over {
            tracing::warn!(
                "renaming {src:?} over {dst:?} failed after the copy: {dst:?} holds the copy, {src:?} is kept"
            );
        }
        if take_back && !over {
            match self.client.delete_blob(dst, Some(&copied.etag)).await {
                Ok(()) => {}
                Err(e2) if e2.kind == ErrorKind::NotFound => {}
                Err(e2) => tracing::warn!(
                    "the copy {dst:?} could not be removed after a failed rename: {e2}"
                ),
            }
        }
        Err(e)
    }

    /// Moves blobs `(from, to)`, several at once; each result keeps its number.
    async fn move_all(
        &self,
        moves: Vec<(usize, (String, String))>,
    ) -> Vec<(usize, Result<(), BlobError>)> {
        let futures: Vec<_> = moves
            .into_iter()
            .map(|(i, (from, to))| {
                let fut = self.move_blob_owned(from, to);
                async move { (i, fut.await) }
            })
            .collect();
        stream::iter(futures)
            .buffer_unordered(PARALLEL_MOVES)
            .collect()
            .await
    }

    async fn move_blob_owned(&self, from: String, to: String) -> Result<(), BlobError> {
        // A blob kept at the destination for an unlinked file's handles: replaced, that
        // version only, and its removal taken over.
        let kept = match self.take_over_kept(&to).await {
            Ok(k) => k,
            Err(_) => {
                return Err(BlobError::new(
                    ErrorKind::Other,
                    "Copy Blob",
                    &to,
                    "a file unlinked while open there could not be kept whole",
                ))
            }
        };
        let replace = match &kept {
            Some(k) => Replace::Only(k.etag.clone()),
            None => Replace::Anything,
        };
        let result = self.move_blob(&from, &to, replace, kept.is_some()).await;
        if let (Err(_), Some(k)) = (&result, kept) {
            self.give_back_kept(&to, k).await;
        }
        result.map(|_| ())
    }

    /// A move onto `dst` took over the blob kept there for an unlinked file's handles, and
    /// failed: the blob is kept (hidden) again, unless the move's copy had replaced that
    /// version before the failure: the name then holds the copy, which is shown (hiding it
    /// would show it only later, at the unlinked file's last close). When that cannot be told,
    /// kept: an unlinked file must not come back.
    async fn give_back_kept(&self, dst: &str, k: super::unlinked::Kept) {
        match self.client.properties(dst).await {
            Ok(p) if p.etag != k.etag => {}
            Err(e) if e.kind == ErrorKind::NotFound => {}
            _ => self.open_files.unlinked().keep(dst, k.ino, k.etag),
        }
    }

    /// Moves every blob of directory `src` (and its marker) under `dst`. On failure, moves
    /// back what was moved.
    async fn move_dir(&self, src: &str, dst: &str) -> Result<(), FsError> {
        let src_prefix = format!("{src}/");
        let page = blob::list_all(self.client.as_ref(), &src_prefix, None)
            .await
            .map_err(fail)?;
        let unlinked = |name: &str| self.open_files.unlinked().hides(name);
        let mut moves: Vec<(String, String)> = page
            .blobs
            .iter()
            // Kept for an unlinked file's handles: not part of the tree, it stays where it is.
            .filter(|b| !unlinked(&b.name))
            .map(|b| {
                (
                    b.name.clone(),
                    format!("{dst}/{}", &b.name[src_prefix.len()..]),
                )
            })
            .collect();
        match self.client.properties(src).await {
            Ok(p) if p.is_folder_marker() => moves.push((src.to_string(), dst.to_string())),
            Ok(_) => {}
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e)),
        }
        let results = self
            .move_all(moves.iter().cloned().enumerate().collect())
            .await;
        let failed: Vec<&BlobError> = results
            .iter()
            .filter_map(|(_, r)| r.as_ref().err())
            .collect();
        let Some(first) = failed.first() else {
            tracing::debug!(src, dst, blobs = moves.len(), "directory renamed");
            return Ok(());
        };
        tracing::error!(
            src,
            dst,
            "renaming the directory failed for {} of {} blobs ({first}); moving the others back",
            failed.len(),
            moves.len()
        );
        let back: Vec<(usize, (String, String))> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(i, _)| (*i, (moves[*i].1.clone(), moves[*i].0.clone())))
            .collect();
        let stuck = self
            .move_all(back)
            .await
            .iter()
            .filter(|(_, r)| r.is_err())
            .count();
        if stuck > 0 {
            tracing::error!(
                src,
                dst,
                "{stuck} blobs could not be moved back and are under {dst}; none was lost (every blob is in one place or the other)"
            );
        }
        Err(FsError::Io)
    }
}
