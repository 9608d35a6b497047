//! The filesystem core, independent of FUSE: names to blobs, attributes, listings, handles and
//! reads (served by the cache's [`Prefetcher`]). Every operation is async and takes no lock across a request,
//! so a slow read never holds up a lookup or a listing elsewhere.
//!
//! Errors are errno values; the FUSE adapter passes them on.

pub mod dircache;
pub mod error;
mod gate;
mod gauges;
pub mod handles;
pub mod inode;
pub mod lifecycle;
mod meta;
pub mod metadata;
pub mod namespace;
mod open_files;
mod recovery;
mod rename;
mod shutdown;
mod unlinked;
pub mod upload;
mod write;

use std::ffi::OsStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::blob::{self, BlobClient, BlobError, ErrorKind, ListRequest};
use crate::cache::{BlockCache, Prefetcher, ReadPattern};
use crate::metrics::{self, Metrics};
use dircache::{invalid_component, Listing, NAME_MAX};
use handles::{DirHandle, FileHandle, HandleKind, ReadHandle, Version};
use inode::join;
pub use inode::{Attr, EntryInfo, Kind, ROOT_INO};
pub use shutdown::CommitReport;
pub use write::OpenMode;

use error::fail;
pub use error::{Errno, FsError};

/// How the kernel's page cache serves an open file. The kernel keeps one set of pages per
/// inode, shared by all its open files: they may hold one version of the blob only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageCache {
    /// Pages of another version (or of data written here) are dropped at open.
    Drop,
    /// The pages hold this version: kept (re-reading costs no request).
    Keep,
    /// Other open files read another version through the pages: this one reads around them
    /// (direct I/O), leaving them as they are.
    Bypass,
}

/// How long a directory that this mount emptied is still found (see [`inode::Node::emptied`]).
const EMPTIED_GRACE: Duration = Duration::from_secs(60);

/// Settings of the filesystem core.
#[derive(Debug, Clone)]
pub struct FsConfig {
    pub uid: u32,
    pub gid: u32,
    pub file_mode: u16,
    pub dir_mode: u16,
    /// How long attributes, listings and negative lookups are trusted.
    pub metadata_ttl: Duration,
    pub block_size: u64,
    pub cache_size: u64,
    pub read_only: bool,
    /// Bytes written but not yet uploaded, for the whole mount (backpressure above it).
    pub write_buffer: u64,
    /// Where the local copies of files being written live (unlinked temp files).
    pub staging_dir: std::path::PathBuf,
    /// The SAS in force, whose permissions decide what is allowed (None: everything).
    pub credential: Option<Arc<crate::token::Credential>>,
}

impl FsConfig {
    /// Most blocks read ahead for one sequential reader: half the cache, at most 64 (large
    /// windows give large requests: fewer per-request costs).
    pub fn max_prefetch_window(&self) -> u64 {
        (self.cache_size / self.block_size / 2).clamp(1, 64)
    }
}

pub struct Fs {
    client: Arc<dyn BlobClient>,
    /// The read path: block cache and readahead.
    reads: Prefetcher,
    cfg: FsConfig,
    mount_time: SystemTime,
    /// What the mount knows of names: inodes, listings, negative lookups.
    meta: metadata::Metadata,
    /// Open files and directories.
    handles: handles::HandleTable,
    /// Files being written (every handle of a file shares one staging), and blobs of files
    /// unlinked here while still open (hidden, removed at the last close).
    open_files: open_files::OpenFiles,
    staging: upload::StagingArea,
    /// Changes pass it while the mount runs; it closes at shutdown (see [`Fs::stop_changes`]).
    gate: gate::ChangeGate,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Fs {
    pub fn new(client: Arc<dyn BlobClient>, cfg: FsConfig) -> Arc<Self> {
        Self::counting_into(client, cfg, metrics::global())
    }

    /// An Fs that counts into `metrics` instead of the process-wide [`metrics::global`].
    pub fn counting_into(
        client: Arc<dyn BlobClient>,
        cfg: FsConfig,
        metrics: &'static Metrics,
    ) -> Arc<Self> {
        let mount_time = SystemTime::now();
        let staging = upload::StagingArea {
            client: client.clone(),
            budget: upload::WriteBudget::new(cfg.write_buffer),
            dir: cfg.staging_dir.clone(),
            grid: upload::Grid::new(cfg.block_size),
        };
        Arc::new(Fs {
            reads: Prefetcher::new(
                client.clone(),
                cfg.cache_size,
                cfg.block_size,
                cfg.max_prefetch_window(),
                metrics,
            ),
            client,
            meta: metadata::Metadata::new(mount_time, cfg.metadata_ttl),
            cfg,
            mount_time,
            handles: handles::HandleTable::default(),
            open_files: open_files::OpenFiles::default(),
            staging,
            gate: gate::ChangeGate::default(),
        })
    }

    pub fn config(&self) -> &FsConfig {
        &self.cfg
    }

    pub fn cache(&self) -> &Arc<BlockCache> {
        self.reads.cache()
    }

    /// Inodes currently known (for tests and diagnostics).
    pub fn inode_count(&self) -> usize {
        self.meta.inode_count()
    }

    /// Path, attributes and whether they are fresh, of `ino`.
    fn node(&self, ino: u64) -> Result<(String, EntryInfo, bool), FsError> {
        self.meta.node(ino)
    }

    fn attr_of(&self, ino: u64) -> Result<Attr, FsError> {
        self.meta.attr(ino)
    }

    /// A complete, fresh listing of directory `dir` ("" for the root).
    async fn listing(&self, dir: &str) -> Result<Arc<Listing>, FsError> {
        if let Some(l) = self.meta.listings().listing(dir) {
            return Ok(l);
        }
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let page = blob::list_all(self.client.as_ref(), &prefix, Some("/"))
            .await
            .map_err(fail)?;
        // Subdirectories that may hold nothing but blobs kept for unlinked files.
        let suspects: Vec<String> = {
            let unlinked = self.open_files.unlinked();
            page.prefixes
                .iter()
                .filter(|p| unlinked.count_under(p) > 0)
                .filter(|p| {
                    let marker = p.trim_end_matches('/');
                    !page
                        .blobs
                        .iter()
                        .any(|b| b.name == marker && b.is_folder_marker())
                })
                .cloned()
                .collect()
        };
        let (mut listing, hidden) = Listing::from_page(dir, page, self.mount_time);
        self.meta.report_hidden(hidden);
        for p in suspects {
            if self.only_kept_under(&p).await? {
                let leaf = p[prefix.len()..].trim_end_matches('/');
                listing.entries.remove(leaf);
            }
        }
        Ok(self.meta.listings().insert_listing(dir, listing))
    }

    /// Whether everything under `prefix` is blobs kept for unlinked files' open handles (the
    /// directory is gone for this mount then); false at once when none is kept there.
    async fn only_kept_under(&self, prefix: &str) -> Result<bool, FsError> {
        let kept = self.open_files.unlinked().count_under(prefix);
        if kept == 0 {
            return Ok(false);
        }
        let page = self
            .client
            .list(ListRequest {
                prefix,
                delimiter: None,
                marker: None,
                max_results: Some(kept as u32 + 1),
            })
            .await
            .map_err(fail)?;
        let unlinked = self.open_files.unlinked();
        Ok(page.next_marker.is_none() && page.blobs.iter().all(|b| unlinked.hides(&b.name)))
    }

    /// What `name` in directory `dir` is, from a fresh listing, a negative entry, or the service:
    /// a HEAD of the blob and a one-result listing of `dir/name/`, concurrently.
    async fn resolve(&self, dir: &str, name: &str) -> Result<EntryInfo, FsError> {
        if self.open_files.unlinked().hides(&join(dir, name)) {
            return Err(FsError::NotFound);
        }
        if namespace::cannot_exist(name) {
            return Err(FsError::NotFound);
        }
        {
            let mut dirs = self.meta.listings();
            if let Some(l) = dirs.listing(dir) {
                return l.entries.get(name).cloned().ok_or(FsError::NotFound);
            }
            if dirs.is_negative(dir, name) {
                return Err(FsError::NotFound);
            }
        }
        let path = join(dir, name);
        let sub = format!("{path}/");
        let (head, list) = futures::join!(
            self.client.properties(&path),
            self.client.list(ListRequest {
                prefix: &sub,
                // Any blob under the prefix makes a directory; no delimiter, so the service
                // can answer with the first one it finds.
                delimiter: None,
                marker: None,
                max_results: Some(1),
            })
        );
        let list = list.map_err(fail)?;
        let head = match head {
            Ok(p) => Some(p),
            Err(e) if e.kind == ErrorKind::NotFound => None,
            Err(e) => return Err(fail(e)),
        };
        let marker = head.as_ref().is_some_and(|p| p.is_folder_marker());
        if (!list.blobs.is_empty() || !list.prefixes.is_empty())
            && (marker || !self.only_kept_under(&sub).await?)
        {
            return Ok(match &head {
                Some(p) if p.is_folder_marker() => EntryInfo::from_props(p),
                _ => EntryInfo::dir(self.mount_time),
            });
        }
        match head {
            Some(p) => Ok(EntryInfo::from_props(&p)),
            None => {
                self.meta.listings().insert_negative(dir, name);
                Err(FsError::NotFound)
            }
        }
    }

    /// Looks up `name` in directory `parent`; the kernel holds a reference to the result.
    pub async fn lookup(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        let name = name.to_str().ok_or(FsError::NotFound)?;
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        if invalid_component(name).is_some() {
            return Err(FsError::NotFound);
        }
        let (dir, dir_info, _) = self.node(parent)?;
        if dir_info.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        // Known and confirmed within the TTL: no request.
        {
            let mut inodes = self.meta.inodes();
            if let Some(ino) = inodes.child(parent, name) {
                let fresh = inodes
                    .get(ino)
                    .is_some_and(|n| n.is_fresh(self.cfg.metadata_ttl))
                    || self.writer(ino).is_some();
                if fresh {
                    let info = inodes.get(ino).expect("child exists").info.clone();
                    let ino = inodes.upsert(parent, name, info, true);
                    return Ok(inodes.get(ino).expect("just upserted").attr(ino));
                }
            }
        }
        match self.resolve(&dir, name).await {
            Ok(info) => Ok(self.meta.enter(parent, name, info, true)),
            Err(e) => {
                if e.is_not_found() {
                    let mut inodes = self.meta.inodes();
                    if let Some(ino) = inodes.child(parent, name) {
                        let emptied_here = inodes.get(ino).is_some_and(|n| {
                            n.info.kind == Kind::Dir
                                && n.emptied.is_some_and(|t| t.elapsed() < EMPTIED_GRACE)
                        });
                        if emptied_here {
                            let info = inodes.get(ino).expect("just found").info.clone();
                            let ino = inodes.upsert(parent, name, info, true);
                            return Ok(inodes.get(ino).expect("just upserted").attr(ino));
                        }
                    }
                    inodes.detach(parent, name);
                }
                Err(e)
            }
        }
    }

    pub fn forget(&self, ino: u64, n: u64) {
        self.meta.forget(ino, n);
    }

    /// Attributes of an inode; a file's are refreshed with a HEAD once the TTL has passed.
    pub async fn getattr(&self, ino: u64) -> Result<Attr, FsError> {
        let (path, info, fresh) = self.node(ino)?;
        if fresh || info.kind == Kind::Dir || self.writer(ino).is_some() {
            return self.attr_of(ino);
        }
        self.refresh_file(ino, &path).await?;
        self.attr_of(ino)
    }

    /// HEADs a file and records what it found.
    async fn refresh_file(&self, ino: u64, path: &str) -> Result<EntryInfo, FsError> {
        let p = self.client.properties(path).await.map_err(fail)?;
        let info = EntryInfo::from_props(&p);
        self.meta.refreshed(ino, &info);
        Ok(info)
    }

    /// Opens a directory: lists it completely (or takes a fresh listing) into a snapshot.
    pub async fn opendir(&self, ino: u64) -> Result<u64, FsError> {
        let (path, info, _) = self.node(ino)?;
        if info.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        let listing = self.listing(&path).await?;
        let mut entries = listing.entries.clone();
        {
            // Files unlinked here but kept for their open handles are gone from the tree.
            let unlinked = self.open_files.unlinked();
            entries.retain(|name, _| !unlinked.hides(&join(&path, name)));
        }
        // Files being written here are listed (with their current size) before their commit.
        for (name, info) in self.files_being_written_in(ino) {
            entries.insert(name, info);
        }
        let entries = entries.into_iter().collect();
        Ok(self.handles.open_dir(DirHandle { ino, entries }))
    }

    /// Serves directory entries from offset `offset` of an open directory, `.` and `..`
    /// first. `add(ino, next_offset, name, attr)` returns true when the reply is full. With
    /// `plus`, each entry added gets an inode and a kernel reference (readdirplus); otherwise
    /// entries the kernel never looked up are given a synthetic inode number.
    pub fn readdir(
        &self,
        fh: u64,
        offset: u64,
        plus: bool,
        mut add: impl FnMut(u64, u64, &str, &Attr) -> bool,
    ) -> Result<(), FsError> {
        let h = self.handles.dir(fh).ok_or(FsError::BadHandle)?;
        let mut inodes = self.meta.inodes();
        let dir = inodes.get(h.ino).ok_or(FsError::NotFound)?;
        let dot = dir.attr(h.ino);
        let parent_ino = dir.parent;
        let dotdot = inodes
            .get(parent_ino)
            .map(|n| n.attr(parent_ino))
            .unwrap_or(dot.clone());
        let mut index = offset;
        loop {
            let full = match index {
                0 => add(dot.ino, 1, ".", &dot),
                1 => add(dotdot.ino, 2, "..", &dotdot),
                i => {
                    let Some((name, info)) = h.entries.get((i - 2) as usize) else {
                        break;
                    };
                    if plus {
                        let ino = inodes.upsert(h.ino, name, info.clone(), false);
                        let attr = inodes.get(ino).expect("just upserted").attr(ino);
                        let full = add(ino, i + 1, name, &attr);
                        if !full {
                            inodes.upsert(h.ino, name, info.clone(), true);
                        }
                        full
                    } else {
                        let ino = inodes
                            .child(h.ino, name)
                            .unwrap_or_else(|| synthetic_ino(h.ino, name));
                        let attr = Attr {
                            ino,
                            kind: info.kind,
                            size: info.size,
                            mtime: info.mtime,
                            mode: info.mode,
                        };
                        add(ino, i + 1, name, &attr)
                    }
                }
            };
            if full {
                break;
            }
            index += 1;
        }
        Ok(())
    }

    pub fn releasedir(&self, fh: u64) {
        self.handles.close_dir(fh);
    }

    /// Opens a file for reading. Its version (ETag) is fixed for the life of the handle.
    /// Returns the handle and how the kernel's page cache may serve it (see [`PageCache`]).
    /// A file being written through this mount is read from its staging instead.
    async fn open_read(&self, ino: u64) -> Result<(u64, PageCache), FsError> {
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
        let fh = self.handles.open_file(FileHandle {
            ino,
            blob: path.into(),
            kind: HandleKind::Read(handle),
        });
        Ok((fh, cache))
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
                let Ok(v) = self.switch_version(&h, r).await else {
                    return Err(fail(e));
                };
                tracing::debug!(blob = %h.blob, "blob changed before the first read of this handle; reading the current version");
                let b = self
                    .read_version(&h, r, &v, offset, size)
                    .await
                    .map_err(fail)?;
                r.served();
                Ok(b)
            }
            Err(e) => Err(fail(e)),
        }
    }

    /// Reads version `v` for handle `h` through the prefetcher.
    async fn read_version(
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
    async fn switch_version(&self, h: &FileHandle, r: &ReadHandle) -> Result<Version, FsError> {
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

/// A stable inode number for an entry the kernel never looked up (plain readdir only shows it).
fn synthetic_ino(parent: u64, name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (parent, name).hash(&mut h);
    h.finish() | (1 << 63)
}

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod tests;
