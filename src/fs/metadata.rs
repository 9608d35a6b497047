//! The metadata store: what this mount knows of names, without asking the service. The inode
//! table (inode numbers the kernel holds, each with its path and attributes), the listing
//! cache (fresh listings and negative entries) and the names hidden because they cannot be
//! shown. It makes no requests; the operations that do ([`super::Fs`]) record here what they
//! learnt.
//!
//! Each table has its own lock, taken one at a time (never two of them together) and never
//! across a request. Where a caller holds the inode table and also needs the open files'
//! registry, the inode table comes first.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use lru::LruCache;

use super::dircache::{DirCache, Hidden, HiddenNames};
use super::error::FsError;
use super::inode::{Attr, EntryInfo, InodeTable, Node};
use super::lock;

/// Listings kept at most, and negative entries at most (see [`DirCache`]).
const LISTINGS: usize = 1024;
const NEGATIVES: usize = 65536;
/// Hidden names remembered (each reported once).
const HIDDEN: usize = 10_000;
/// Metadata-only changes remembered (see [`Metadata::same_content`]).
const RETAGGED: usize = 4096;

/// A blob and one of its versions (ETag).
type BlobVersion = (Arc<str>, Arc<str>);

/// What the mount knows of names: inodes, listings, negative lookups, hidden names.
pub struct Metadata {
    inodes: Mutex<InodeTable>,
    listings: Mutex<DirCache>,
    hidden: Mutex<HiddenNames>,
    /// Versions this mount replaced by changing only their metadata (chmod, chown, utimes,
    /// setxattr): (blob, old ETag) → new ETag, the same content.
    retagged: Mutex<LruCache<BlobVersion, Arc<str>>>,
    /// How long attributes, listings and negative lookups are trusted.
    ttl: Duration,
}

impl Metadata {
    /// An empty store: the root directory only (its time `mount_time`).
    pub fn new(mount_time: SystemTime, ttl: Duration) -> Self {
        Metadata {
            inodes: Mutex::new(InodeTable::new(mount_time)),
            listings: Mutex::new(DirCache::new(ttl, LISTINGS, NEGATIVES)),
            hidden: Mutex::new(HiddenNames::new(HIDDEN)),
            retagged: Mutex::new(LruCache::new(
                NonZeroUsize::new(RETAGGED).expect("non-zero"),
            )),
            ttl,
        }
    }

    /// This mount changed only the metadata of version `old` of `blob`, which is `new` now:
    /// the same bytes under another ETag.
    pub fn retagged(&self, blob: &str, old: &str, new: &str) {
        lock(&self.retagged).put((blob.into(), old.into()), new.into());
        // The kernel's pages of the old version are the new version's too.
        let mut inodes = self.inodes();
        if let Some(ino) = inodes.ino_of_path(blob) {
            inodes.update_page_cache(ino, old, new);
        }
    }

    /// The latest version of `blob` known to hold the same bytes as `etag` (this mount
    /// changed only its metadata since, perhaps several times), if any.
    pub fn same_content(&self, blob: &str, etag: &str) -> Option<Arc<str>> {
        let mut retagged = lock(&self.retagged);
        let mut at: Option<Arc<str>> = None;
        // A chain of changes, bounded: each step is one Set Blob Metadata of this mount.
        for _ in 0..16 {
            let key = (Arc::from(blob), at.clone().unwrap_or_else(|| etag.into()));
            match retagged.get(&key) {
                Some(next) => at = Some(next.clone()),
                None => break,
            }
        }
        at
    }

    /// The inode table, for an update of several steps that must be seen as one.
    pub fn inodes(&self) -> MutexGuard<'_, InodeTable> {
        lock(&self.inodes)
    }

    /// The listing cache, for an update of several steps that must be seen as one.
    pub fn listings(&self) -> MutexGuard<'_, DirCache> {
        lock(&self.listings)
    }

    /// Inodes known.
    pub fn inode_count(&self) -> usize {
        self.inodes().len()
    }

    /// Path, attributes and whether they are fresh (confirmed within the TTL) of `ino`.
    pub fn node(&self, ino: u64) -> Result<(String, EntryInfo, bool), FsError> {
        let inodes = self.inodes();
        let n = inodes.get(ino).ok_or(FsError::NotFound)?;
        Ok((n.path.clone(), n.info.clone(), n.is_fresh(self.ttl)))
    }

    /// The attributes of `ino` as the kernel gets them.
    pub fn attr(&self, ino: u64) -> Result<Attr, FsError> {
        self.inodes()
            .get(ino)
            .map(|n| n.attr(ino))
            .ok_or(FsError::NotFound)
    }

    /// The inode of `name` in directory `parent`, if it has one.
    pub fn child(&self, parent: u64, name: &str) -> Option<u64> {
        self.inodes().child(parent, name)
    }

    /// The inode and attributes of `name` in `parent`, if it has one.
    pub fn child_info(&self, parent: u64, name: &str) -> Option<(u64, EntryInfo)> {
        let inodes = self.inodes();
        let ino = inodes.child(parent, name)?;
        inodes.get(ino).map(|n| (ino, n.info.clone()))
    }

    /// Records `name` in `parent` as `info` (confirmed now); with `lookup`, the kernel holds
    /// one more reference. Its inode and attributes.
    pub fn enter(&self, parent: u64, name: &str, info: EntryInfo, lookup: bool) -> Attr {
        let mut inodes = self.inodes();
        let ino = inodes.upsert(parent, name, info, lookup);
        inodes.get(ino).expect("just upserted").attr(ino)
    }

    /// [`Metadata::enter`] of an entry this mount just created in `parent` (whose mtime and
    /// ctime follow: see [`super::inode::Node::entries_changed`]).
    pub fn added(&self, parent: u64, name: &str, info: EntryInfo) -> Attr {
        let mut inodes = self.inodes();
        let ino = inodes.upsert(parent, name, info, true);
        inodes.entries_changed(parent);
        inodes.get(ino).expect("just upserted").attr(ino)
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes().forget(ino, n);
    }

    /// `name` in `parent` is gone from the tree (its inode lives on while the kernel holds it).
    pub fn detach(&self, parent: u64, name: &str) {
        self.inodes().detach(parent, name);
    }

    /// Changes what is known of `ino`, if it is known; what `f` gives.
    pub fn update<R>(&self, ino: u64, f: impl FnOnce(&mut Node) -> R) -> Option<R> {
        self.inodes().get_mut(ino).map(f)
    }

    /// A HEAD of `ino` found `info`: recorded as confirmed now (unless the name changed kind).
    pub fn refreshed(&self, ino: u64, info: &EntryInfo) {
        self.update(ino, |n| {
            if n.info.kind == info.kind {
                n.info = info.clone();
                n.validated = Some(Instant::now());
            }
        });
    }

    /// `name` was removed here from `parent` (whose path is `dir`): gone from the tree and its
    /// directory's listing; the directory may be empty now (see [`Node::emptied`]).
    pub fn removed(&self, parent: u64, dir: &str, name: &str) {
        self.removed_then(parent, dir, name, |_| {});
    }

    /// [`Metadata::removed`], and `then` with the listing cache still held (one change seen
    /// at once: e.g. a removed directory's own listing forgotten with its entry).
    pub fn removed_then(
        &self,
        parent: u64,
        dir: &str,
        name: &str,
        then: impl FnOnce(&mut DirCache),
    ) {
        {
            let mut inodes = self.inodes();
            inodes.detach(parent, name);
            inodes.emptied(parent);
        }
        let mut listings = self.listings();
        listings.remove_entry(dir, name);
        then(&mut listings);
    }

    /// Records new attributes of an inode and of its entry in the cached listing (if it still
    /// has its name: an unlinked or replaced file's entry is someone else's now, or nothing).
    pub fn record(&self, ino: u64, info: EntryInfo) -> Attr {
        let mut inodes = self.inodes();
        let attached = inodes.is_attached(ino);
        let Some(n) = inodes.get_mut(ino) else {
            return Attr::of(ino, &info);
        };
        n.info = info.clone();
        n.validated = Some(Instant::now());
        let (parent, name) = (n.parent, n.name.clone());
        let attr = n.attr(ino);
        let dir = inodes
            .get(parent)
            .map(|p| p.path.clone())
            .unwrap_or_default();
        drop(inodes);
        if attached {
            self.listings().upsert_entry(&dir, &name, info);
        }
        attr
    }

    /// Attributes of `ino` and its listing entry are to be asked of the service again.
    pub fn forget_attributes(&self, ino: u64) {
        let mut inodes = self.inodes();
        let Some(n) = inodes.get_mut(ino) else {
            return;
        };
        n.validated = None;
        n.page_cache = None;
        let parent = n.parent;
        let dir = inodes.get(parent).map(|p| p.path.clone());
        drop(inodes);
        if let Some(dir) = dir {
            self.listings().forget_dir(&dir);
        }
    }

    /// Names of a listing that cannot be shown (logged once each).
    pub fn report_hidden(&self, hidden: Vec<Hidden>) {
        if !hidden.is_empty() {
            lock(&self.hidden).report(hidden);
        }
    }
}
