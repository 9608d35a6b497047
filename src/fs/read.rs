//! Reading open files: a read handle is opened on one version of the blob (its ETag) and reads
//! it through the cache's prefetcher; a file being written here reads its staging.

use bytes::Bytes;

use super::error::{fail, FsError};
use super::handles::{FileHandle, HandleKind, ReadHandle, Version};
use super::inode::{join, Kind};
use super::{Fs, PageCache};
use crate::blob::{BlobError, ErrorKind};
use crate::cache::ReadPattern;

impl Fs {
    /// Opens a file for reading. Its version (ETag) is fixed for the life of the handle.
    /// Returns the handle and how the kernel's page cache may serve it (see [`PageCache`]).
    /// A file being written through this mount is read from its staging instead.
    pub(super) async fn open_read(&self, ino: u64) -> Result<(u64, PageCache), FsError> {
        let (path, mut info, fresh) = self.node(ino)?;
        if info.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        if self.writer(ino).is_some() {
            let handle = ReadHandle::new(None, PageCache::Drop, ReadPattern::new(0, 0));
            let fh = self.handles.open_file(FileHandle {
                ino,
                blob: path.into(),
                kind: HandleKind::Read(handle),
            });
            return Ok((fh, PageCache::Drop));
        }
        if !fresh || info.etag.is_none() {
            info = self.refresh_file(ino, &path).await?;
        }
        let etag = info.etag.clone().ok_or(FsError::Io)?;
        // Open files sharing the kernel's pages of this inode, and the version they read.
        let others = self.handles.is_open(ino);
        let cache = {
            let mut inodes = self.meta.inodes();
            let node = inodes.get_mut(ino).ok_or(FsError::NotFound)?;
            let same = node.page_cache.as_deref() == Some(&*etag);
            if same {
                PageCache::Keep
            } else if others && node.page_cache.is_some() {
                PageCache::Bypass
            } else {
                node.page_cache = Some(etag.clone());
                PageCache::Drop
            }
        };
        let version = Version {
            etag,
            size: info.size,
        };
        let handle = ReadHandle::new(Some(version), cache, self.reads.new_pattern());
        self.fetch_dir_ahead(&path);
        let fh = self.handles.open_file(FileHandle {
            ino,
            blob: path.into(),
            kind: HandleKind::Read(handle),
        });
        Ok((fh, cache))
    }

    /// Directory-aware prefetch: if opening `path` continues a program's reading of its
    /// directory in listing order, the next small files are fetched now, several at once, in
    /// the versions the fresh listing shows (see [`super::scan`]). Starts requests, awaits none.
    fn fetch_dir_ahead(&self, path: &str) {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let listing = self.meta.listings().listing(dir);
        for (next, e) in self.scans.opened(dir, name, listing.as_deref()) {
            let blob: std::sync::Arc<str> = join(dir, &next).into();
            let Some(etag) = e.etag else { continue };
            if self.open_files.unlinked().hides(&blob) {
                continue;
            }
            let v = Version { etag, size: e.size };
            if self.reads.fetch_ahead(&blob, &v) {
                self.reads.metrics().fetched_ahead();
            }
        }
    }

    /// Reads from an open file. Every request carries If-Match with the handle's ETag: a handle
    /// never mixes two versions. If the blob changed before the handle returned any data (it was
    /// opened from metadata that was already stale), the handle moves to the current version.
    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Bytes, FsError> {
        let h = self.handles.file(fh).ok_or(FsError::BadHandle)?;
        if let Some(w) = self.writer(h.ino) {
            // Read your writes: what the file holds now, uncommitted changes included.
            return w.read(offset, size).await.map_err(fail);
        }
        let Some(r) = h.reader() else {
            // A write handle whose file was committed and retired: nothing to read here.
            return Err(FsError::BadHandle);
        };
        let v = match r.version() {
            Some(v) => v,
            // Opened while the file was being written here: the version committed since.
            None => self.switch_version(&h, r).await?,
        };
        match self.read_version(&h, r, &v, offset, size).await {
            Ok(b) => {
                r.served();
                Ok(b)
            }
            Err(e) if e.kind == ErrorKind::ConditionNotMet => {
                let next = match self.meta.same_content(&h.blob, &v.etag) {
                    // Only the metadata changed, through this mount (chmod, setxattr...): the
                    // same bytes under a new ETag, which the handle follows.
                    Some(etag) => {
                        let same = Version { etag, size: v.size };
                        r.retag(same.clone());
                        same
                    }
                    None => {
                        let Ok(v) = self.switch_version(&h, r).await else {
                            return Err(fail(e));
                        };
                        tracing::debug!(blob = %h.blob, "blob changed before the first read of this handle; reading the current version");
                        v
                    }
                };
                let b = self
                    .read_version(&h, r, &next, offset, size)
                    .await
                    .map_err(fail)?;
                r.served();
                Ok(b)
            }
            Err(e) => Err(fail(e)),
        }
    }

    /// Reads version `v` for handle `h` through the prefetcher.
    pub(super) async fn read_version(
        &self,
        h: &FileHandle,
        r: &ReadHandle,
        v: &Version,
        offset: u64,
        size: u32,
    ) -> Result<Bytes, BlobError> {
        self.reads
            .read(&h.blob, v, Some(&r.pattern), offset, size)
            .await
    }

    /// Moves a handle that has returned no data to the blob's current version. ESTALE when it
    /// has (or when the kernel kept pages of its version for it): one open reads one version.
    pub(super) async fn switch_version(
        &self,
        h: &FileHandle,
        r: &ReadHandle,
    ) -> Result<Version, FsError> {
        if !r.may_switch() {
            return Err(FsError::Stale);
        }
        let info = self.refresh_file(h.ino, &h.blob).await?;
        let v = Version {
            etag: info.etag.ok_or(FsError::Io)?,
            size: info.size,
        };
        if !r.switch_to(v.clone()) {
            return Err(FsError::Stale);
        }
        if r.cache == PageCache::Drop {
            // Its open dropped the pages of other versions: they fill with this one now.
            self.meta
                .update(h.ino, |n| n.page_cache = Some(v.etag.clone()));
        }
        Ok(v)
    }
}
