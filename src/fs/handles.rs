//! Open file and directory handles.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use super::inode::EntryInfo;
use crate::cache::ReadPattern;

/// The version of a blob a handle reads.
#[derive(Debug, Clone)]
pub struct Version {
    pub etag: Arc<str>,
    pub size: u64,
}

/// An open file: one version of one blob (its ETag at open), read through the block cache.
pub struct FileHandle {
    pub ino: u64,
    pub blob: Arc<str>,
    pub version: Mutex<Version>,
    /// Whether any data was returned through this handle. Until then, a handle opened from
    /// metadata that turns out stale may move to the blob's current version.
    pub served: AtomicBool,
    pub pattern: Mutex<ReadPattern>,
    /// For handles opened for writing: the file's staging, shared by its writers.
    pub writer: Option<Arc<super::write::WriteFile>>,
    /// Processes (thread id as FUSE reports it, and its process id) that opened or wrote
    /// through this handle: a close by any other process (a child closing the copy of the
    /// descriptor it inherited) does not commit.
    pub processes: Mutex<Vec<(u32, Option<u32>)>>,
}

impl FileHandle {
    pub fn version(&self) -> Version {
        self.version
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// An open directory: a snapshot of its entries taken at opendir, served by offset.
pub struct DirHandle {
    pub ino: u64,
    pub entries: Vec<(String, EntryInfo)>,
}

/// The handle tables, keyed by the `fh` numbers given to the kernel.
pub struct Handles<T> {
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

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
