//! rename(2) on blob storage, which has no rename: each blob is copied by the service (Copy
//! Blob), the copy is waited for and checked, and only then is the source deleted. A source
//! whose copy did not succeed is never deleted.
//!
//! A directory is renamed blob by blob. If that fails part way, the blobs already moved are
//! moved back, so the source is whole again and the same `mv` can simply be run again; every
//! blob is at all times in the source or the destination.

use std::ffi::OsStr;
use std::time::Duration;

use futures::stream::{self, StreamExt};

use super::inode::join;
use super::{fail, lock, Errno, Fs, Kind};
use crate::blob::{self, BlobError, CopyState, ErrorKind, WriteOptions};

/// Copies moved at once when renaming a directory.
const PARALLEL_MOVES: usize = 8;
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
    ) -> Result<(), Errno> {
        let _change = self.check_deletable()?;
        let (src_dir, name) = self.child_name(parent, name)?;
        let (dst_dir, new_name) = self.child_name(new_parent, new_name)?;
        let (src, dst) = (join(&src_dir, name), join(&dst_dir, new_name));
        if src == dst {
            return Ok(());
        }
        let ino = lock(&self.inodes).child(parent, name);
        // A file open for writing here (or just closed: release comes later) is committed
        // first, and its staging follows it to the new name.
        let writer = ino.and_then(|i| self.writer(i));
        // The lock is held until the staging follows the file: no write slips in between.
        let mut staging = match (&writer, ino) {
            (Some(w), Some(ino)) => {
                let mut guard = w.staging.lock().await;
                self.commit_locked(ino, &mut guard).await?;
                Some(guard)
            }
            _ => None,
        };
        let src_info = self.resolve(&src_dir, name).await?;
        if src_info.kind == Kind::Dir && dst.starts_with(&format!("{src}/")) {
            return Err(libc::EINVAL); // into itself
        }
        let dst_info = match self.resolve(&dst_dir, new_name).await {
            Ok(i) => Some(i),
            Err(libc::ENOENT) => None,
            Err(e) => return Err(e),
        };
        if dst_info.is_some() && noreplace {
            return Err(libc::EEXIST);
        }
        match (src_info.kind, dst_info.as_ref().map(|i| i.kind)) {
            (Kind::File | Kind::Symlink, Some(Kind::Dir)) => return Err(libc::EISDIR),
            (Kind::Dir, Some(Kind::File | Kind::Symlink)) => return Err(libc::ENOTDIR),
            (Kind::File | Kind::Symlink, _) => {
                let etag = self.move_blob(&src, &dst, noreplace).await.map_err(fail)?;
                if let Some(s) = staging.as_mut() {
                    s.moved_to(dst.as_str().into(), etag.into());
                }
            }
            (Kind::Dir, target) => {
                if self.writing_under(&src) {
                    // Their stagings are bound to names under the old path.
                    return Err(libc::EBUSY);
                }
                if target.is_some() {
                    self.remove_empty_dir(&dst, false).await?;
                }
                self.move_dir(&src, &dst).await?;
            }
        }
        if let Some(ino) = ino {
            lock(&self.inodes).rename(ino, new_parent, new_name);
        } else {
            lock(&self.inodes).detach(new_parent, new_name);
        }
        let mut dirs = lock(&self.dirs);
        dirs.remove_entry(&src_dir, name);
        dirs.upsert_entry(&dst_dir, new_name, src_info);
        dirs.forget_dir(&src);
        dirs.forget_dir(&dst);
        Ok(())
    }

    /// Whether a file under directory `dir` is open for writing in this mount.
    fn writing_under(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        let inos: Vec<u64> = lock(&self.writers).keys().copied().collect();
        let inodes = lock(&self.inodes);
        inos.iter()
            .filter_map(|i| inodes.get(*i))
            .any(|n| n.path.starts_with(&prefix))
    }

    /// Moves one blob: copy (waited for and checked), then delete the source version copied.
    /// Returns the ETag of the copy.
    async fn move_blob(&self, src: &str, dst: &str, noreplace: bool) -> Result<String, BlobError> {
        let props = self.client.properties(src).await?;
        let opts = WriteOptions {
            if_none_match_any: noreplace,
            ..Default::default()
        };
        let mut info = self
            .client
            .copy_blob(dst, src, Some(&props.etag), &opts)
            .await?;
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
        if let Err(e) = self.client.delete_blob(src, Some(&props.etag)).await {
            // The source changed (or could not be deleted): take the copy back, so the blob is
            // in one place only, and report the failure.
            if let Err(e2) = self.client.delete_blob(dst, Some(&copied.etag)).await {
                tracing::warn!("the copy {dst:?} could not be removed after a failed rename: {e2}");
            }
            return Err(e);
        }
        Ok(copied.etag)
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
        self.move_blob(&from, &to, false).await.map(|_| ())
    }

    /// Moves every blob of directory `src` (and its marker) under `dst`. On failure, moves
    /// back what was moved.
    async fn move_dir(&self, src: &str, dst: &str) -> Result<(), Errno> {
        let src_prefix = format!("{src}/");
        let page = blob::list_all(self.client.as_ref(), &src_prefix, None)
            .await
            .map_err(fail)?;
        let mut moves: Vec<(String, String)> = page
            .blobs
            .iter()
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
        Err(libc::EIO)
    }
}
