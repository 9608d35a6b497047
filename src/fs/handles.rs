//! Open file and directory handles: what each `fh` given to the kernel stands for. A file
//! handle is a [`ReadHandle`] (one version of a blob) or a [`WriteHandle`] (the file's staging),
//! never both; the [`HandleTable`] owns them all behind its own locks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::inode::EntryInfo;
use super::{lock, PageCache};
use crate::cache::ReadPattern;

/// The version of a blob a handle reads.
pub use crate::cache::Version;

/// An open file: which file, and what kind of handle.
pub struct FileHandle {
    pub ino: u64,
    pub blob: Arc<str>,
    pub kind: HandleKind,
}

/// A handle reads one version of a blob, or writes (and reads) the file's staging.
pub enum HandleKind {
    Read(ReadHandle),
    Write(WriteHandle),
}

/// A handle opened for reading. While the file is being written through this mount, it reads
/// the staging (read your writes); otherwise one version of the blob.
pub struct ReadHandle {
    /// `None`: opened while the file was being written here; the version is looked up at
    /// the first read of the blob.
    version: Mutex<Option<Version>>,
    /// Whether data may have been returned through this handle: some was, or the kernel kept
    /// its page cache of this version for it. Until then, a handle opened from metadata that
    /// turns out stale may move to the blob's current version; after, never (one open reads
    /// one version).
    served: AtomicBool,
    pub pattern: Mutex<ReadPattern>,
    /// How the kernel's page cache serves it.
    pub cache: PageCache,
}

impl ReadHandle {
    /// A handle of `version`, served by the page cache as `cache` says.
    pub fn new(version: Option<Version>, cache: PageCache, pattern: ReadPattern) -> Self {
        ReadHandle {
            version: Mutex::new(version),
            // Kept pages may serve data before any read reaches us.
            served: AtomicBool::new(cache == PageCache::Keep),
            pattern: Mutex::new(pattern),
            cache,
        }
    }

    /// Whether the handle may still move to another version (it has returned no data).
    pub fn may_switch(&self) -> bool {
        !self.served.load(Ordering::Relaxed)
    }

    pub fn version(&self) -> Option<Version> {
        lock(&self.version).clone()
    }

    /// Records that data was returned.
    pub fn served(&self) {
        self.served.store(true, Ordering::Relaxed);
    }

    /// Moves the handle to `version`, which holds the same bytes as its own (this mount
    /// changed only the metadata): allowed even after data was returned.
    pub fn retag(&self, version: Version) {
        *lock(&self.version) = Some(version);
    }

    /// Moves the handle to `version`, unless it has returned data already (false then).
    pub fn switch_to(&self, version: Version) -> bool {
        let mut v = lock(&self.version);
        if self.served.load(Ordering::Relaxed) {
            return false;
        }
        *v = Some(version);
        true
    }
}

/// A handle opened for writing: it shares the file's staging with the other write handles.
pub struct WriteHandle {
    pub file: Arc<super::open_files::WriteFile>,
    /// Processes (thread id as FUSE reports it, and its process id) that opened or wrote
    /// through this handle: a close by any other process (a child closing the copy of the
    /// descriptor it inherited) does not commit.
    pub processes: Mutex<Vec<(u32, Option<u32>)>>,
}

impl FileHandle {
    /// The read side of a read handle.
    pub fn reader(&self) -> Option<&ReadHandle> {
        match &self.kind {
            HandleKind::Read(r) => Some(r),
            HandleKind::Write(_) => None,
        }
    }

    /// The write side of a write handle.
    pub fn writer(&self) -> Option<&WriteHandle> {
        match &self.kind {
            HandleKind::Write(w) => Some(w),
            HandleKind::Read(_) => None,
        }
    }
}

/// An open directory: a snapshot of its entries taken at opendir, served by offset.
pub struct DirHandle {
    pub ino: u64,
    pub entries: Vec<(String, EntryInfo)>,
}

/// One handle table, keyed by the `fh` numbers given to the kernel.
struct Handles<T> {
    next: u64,
    map: HashMap<u64, Arc<T>>,
}

impl<T> Default for Handles<T> {
    fn default() -> Self {
        Handles {
            next: 1,
            map: HashMap::new(),
        }
    }
}

impl<T> Handles<T> {
    pub fn insert(&mut self, h: T) -> u64 {
        let fh = self.next;
        self.next += 1;
        self.map.insert(fh, Arc::new(h));
        fh
    }

    pub fn get(&self, fh: u64) -> Option<Arc<T>> {
        self.map.get(&fh).cloned()
    }

    /// Whether any handle satisfies `pred`.
    pub fn any(&self, pred: impl Fn(&T) -> bool) -> bool {
        self.map.values().any(|h| pred(h))
    }

    pub fn remove(&mut self, fh: u64) -> Option<Arc<T>> {
        self.map.remove(&fh)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}

/// Every open handle of the mount: files and directories, each table behind its own lock
/// (never held across a request).
#[derive(Default)]
pub struct HandleTable {
    files: Mutex<Handles<FileHandle>>,
    dirs: Mutex<Handles<DirHandle>>,
}

impl HandleTable {
    /// Registers an open file; its `fh`.
    pub fn open_file(&self, h: FileHandle) -> u64 {
        lock(&self.files).insert(h)
    }

    /// The open file `fh`.
    pub fn file(&self, fh: u64) -> Option<Arc<FileHandle>> {
        lock(&self.files).get(fh)
    }

    /// Forgets the open file `fh` (its release); what it was.
    pub fn close_file(&self, fh: u64) -> Option<Arc<FileHandle>> {
        lock(&self.files).remove(fh)
    }

    /// Whether any file handle is open on inode `ino`.
    pub fn is_open(&self, ino: u64) -> bool {
        lock(&self.files).any(|h| h.ino == ino)
    }

    /// How many file handles are open.
    pub fn open_count(&self) -> usize {
        lock(&self.files).len()
    }

    /// Registers an open directory; its `fh`.
    pub fn open_dir(&self, h: DirHandle) -> u64 {
        lock(&self.dirs).insert(h)
    }

    /// The open directory `fh`.
    pub fn dir(&self, fh: u64) -> Option<Arc<DirHandle>> {
        lock(&self.dirs).get(fh)
    }

    /// Forgets the open directory `fh` (its releasedir).
    pub fn close_dir(&self, fh: u64) {
        lock(&self.dirs).remove(fh);
    }
}
