//! The inode table: kernel inode numbers for the paths the kernel holds references to.
//!
//! An inode is created when the kernel learns a name (lookup, readdirplus) and counts those
//! references; `forget` releases them, and an inode with none left is dropped, so the table
//! is bounded by what the kernel caches, not by the size of the container.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

pub const ROOT_INO: u64 = 1;

use super::posix::Stored;
pub use super::posix::{format_time as format_mtime, Kind, META_MODE, META_MTIME, META_SYMLINK};

/// What a listing or a HEAD says about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    /// Last change of data or metadata: the blob's Last-Modified.
    pub ctime: SystemTime,
    /// Access time set by utimes, if any (else the mtime is shown).
    pub atime: Option<SystemTime>,
    /// The version of the blob (a directory's: of its marker, if one was seen).
    pub etag: Option<Arc<str>>,
    /// Permission bits kept in the blob's metadata (`chmod`), if any.
    pub mode: Option<u16>,
    /// Owner and group kept in the blob's metadata (`chown`), if any.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// All of the blob's metadata in the version `etag` names, when a listing, a HEAD or this
    /// mount's own commit told it: chmod and utimes rewrite it under If-Match without reading
    /// it first. A directory's are its marker blob's (None, as its `etag`, for a bare prefix
    /// or a marker not seen).
    pub metadata: Option<Arc<HashMap<String, String>>>,
}

impl EntryInfo {
    pub fn dir(mtime: SystemTime) -> Self {
        EntryInfo {
            kind: Kind::Dir,
            size: 0,
            mtime,
            ctime: mtime,
            atime: None,
            etag: None,
            mode: None,
            uid: None,
            gid: None,
            metadata: None,
        }
    }

    pub fn file(size: u64, mtime: SystemTime, etag: Option<Arc<str>>) -> Self {
        EntryInfo {
            kind: Kind::File,
            size,
            mtime,
            ctime: mtime,
            atime: None,
            etag,
            mode: None,
            uid: None,
            gid: None,
            metadata: None,
        }
    }

    /// From a blob's properties: folder markers are directories, `is_symlink` blobs symlinks,
    /// zero-length blobs with type bits in `mode` special files; the attributes in metadata
    /// (see [`super::posix`]) override Last-Modified and the mount's defaults.
    pub fn from_props(p: &crate::blob::BlobProps) -> Self {
        let stored = Stored::parse(&p.metadata, p.size);
        let kind = if p.is_folder_marker() {
            Kind::Dir
        } else if p
            .metadata
            .get(META_SYMLINK)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            Kind::Symlink
        } else if let Some(s) = stored.special {
            Kind::Special(s)
        } else {
            Kind::File
        };
        EntryInfo {
            kind,
            size: if kind == Kind::Dir { 0 } else { p.size },
            mtime: stored.mtime.unwrap_or(p.last_modified),
            ctime: p.last_modified,
            atime: stored.atime,
            etag: Some(p.etag.as_str().into()),
            mode: stored.perm,
            uid: stored.uid,
            gid: stored.gid,
            metadata: Some(Arc::new(p.metadata.clone())),
        }
    }
}

/// Attributes as the FUSE adapter needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub atime: Option<SystemTime>,
    pub mode: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Attr {
    /// The attributes of inode `ino` whose entry is `info`.
    pub fn of(ino: u64, info: &EntryInfo) -> Attr {
        Attr {
            ino,
            kind: info.kind,
            size: info.size,
            mtime: info.mtime,
            ctime: info.ctime,
            atime: info.atime,
            mode: info.mode,
            uid: info.uid,
            gid: info.gid,
        }
    }
}

#[derive(Debug)]
pub struct Node {
    pub parent: u64,
    pub name: String,
    /// The blob name (file) or the prefix without its trailing `/` (directory); "" is the root.
    pub path: String,
    pub info: EntryInfo,
    /// When `info` was last confirmed by the service (`None`: to be asked again).
    pub validated: Option<Instant>,
    lookups: u64,
    /// The version whose pages the kernel may hold for this inode (`None`: unknown, or the
    /// pages of a file written here): the page cache is kept across opens of that version
    /// only.
    pub page_cache: Option<Arc<str>>,
    /// When this mount last removed an entry of this directory. A directory that exists only
    /// as a prefix vanishes with its last blob; it is still found for a while after this mount
    /// emptied it, so `rm -r` (and the kernel's revalidation before its rmdir) finds it.
    pub emptied: Option<Instant>,
    /// When this mount last added, removed or renamed an entry of this directory: its mtime
    /// and ctime are at least that (a marker blob is not rewritten for every entry).
    pub entries_changed: Option<SystemTime>,
}

impl Node {
    /// Whether `info` was confirmed within `ttl`.
    pub fn is_fresh(&self, ttl: std::time::Duration) -> bool {
        self.validated.is_some_and(|t| t.elapsed() < ttl)
    }

    pub fn attr(&self, ino: u64) -> Attr {
        let mut a = Attr::of(ino, &self.info);
        if let Some(t) = self.entries_changed {
            a.mtime = a.mtime.max(t);
            a.ctime = a.ctime.max(t);
        }
        a
    }
}

pub struct InodeTable {
    nodes: HashMap<u64, Node>,
    children: HashMap<(u64, String), u64>,
    next_ino: u64,
}

/// Joins a directory path and a name into a blob path.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

impl InodeTable {
    pub fn new(root_mtime: SystemTime) -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT_INO,
            Node {
                parent: ROOT_INO,
                name: String::new(),
                path: String::new(),
                info: EntryInfo::dir(root_mtime),
                validated: Some(Instant::now()),
                lookups: 1,
                page_cache: None,
                emptied: None,
                entries_changed: None,
            },
        );
        InodeTable {
            nodes,
            children: HashMap::new(),
            next_ino: ROOT_INO + 1,
        }
    }

    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Node> {
        self.nodes.get_mut(&ino)
    }

    pub fn child(&self, parent: u64, name: &str) -> Option<u64> {
        self.children.get(&(parent, name.to_string())).copied()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Records that `name` in `parent` is `info` (confirmed now) and returns its inode. The
    /// inode is kept while the kind stays the same; a name that changed kind gets a new inode.
    /// With `lookup`, the kernel's reference count is incremented.
    pub fn upsert(&mut self, parent: u64, name: &str, info: EntryInfo, lookup: bool) -> u64 {
        let key = (parent, name.to_string());
        if let Some(&ino) = self.children.get(&key) {
            let node = self.nodes.get_mut(&ino).expect("children point at nodes");
            if node.info.kind == info.kind {
                node.info = info;
                node.validated = Some(Instant::now());
                if lookup {
                    node.lookups += 1;
                }
                return ino;
            }
            // The name changed kind: the old inode lives on (detached) until forgotten.
            self.children.remove(&key);
        }
        let parent_path = self
            .nodes
            .get(&parent)
            .map(|p| p.path.clone())
            .unwrap_or_default();
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(
            ino,
            Node {
                parent,
                name: name.to_string(),
                path: join(&parent_path, name),
                info,
                validated: Some(Instant::now()),
                lookups: u64::from(lookup),
                page_cache: None,
                emptied: None,
                entries_changed: None,
            },
        );
        self.children.insert(key, ino);
        ino
    }

    /// This mount removed an entry of directory `ino` (see [`Node::emptied`]).
    pub fn emptied(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.emptied = Some(Instant::now());
        }
        self.entries_changed(ino);
    }

    /// This mount added, removed or renamed an entry of directory `ino` (see
    /// [`Node::entries_changed`]).
    pub fn entries_changed(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.entries_changed = Some(SystemTime::now());
        }
    }

    /// The kernel dropped `n` references; the inode goes when none remain.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        node.lookups = node.lookups.saturating_sub(n);
        if node.lookups == 0 {
            let node = self.nodes.remove(&ino).expect("present");
            let key = (node.parent, node.name);
            if self.children.get(&key) == Some(&ino) {
                self.children.remove(&key);
            }
        }
    }

    /// `ino` now lives at `name` in `parent` (rename). An inode that was there is detached.
    /// The paths of everything below a renamed directory follow; their versions are new blobs
    /// (copies, with other ETags), to be asked for again.
    pub fn rename(&mut self, ino: u64, parent: u64, name: &str) {
        let Some(node) = self.nodes.get(&ino) else {
            return;
        };
        let old_key = (node.parent, node.name.clone());
        let old_path = node.path.clone();
        self.entries_changed(old_key.0);
        self.entries_changed(parent);
        if self.children.get(&old_key) == Some(&ino) {
            self.children.remove(&old_key);
        }
        let parent_path = self
            .nodes
            .get(&parent)
            .map(|p| p.path.clone())
            .unwrap_or_default();
        let new_path = join(&parent_path, name);
        self.children.insert((parent, name.to_string()), ino);
        let node = self.nodes.get_mut(&ino).expect("checked above");
        node.parent = parent;
        node.name = name.to_string();
        node.path = new_path.clone();
        node.validated = None;
        // Descendants: their paths start with the old directory path.
        let prefix = format!("{old_path}/");
        for n in self.nodes.values_mut() {
            if let Some(rest) = n.path.strip_prefix(&prefix) {
                n.path = format!("{new_path}/{rest}");
                n.validated = None;
            }
        }
    }

    /// The name no longer exists: unlink it from its parent (the inode lives until forgotten).
    pub fn detach(&mut self, parent: u64, name: &str) {
        self.children.remove(&(parent, name.to_string()));
    }

    /// The inode whose path is `path`, if one has it (a walk from the root).
    pub fn ino_of_path(&self, path: &str) -> Option<u64> {
        let mut ino = ROOT_INO;
        for name in path.split('/').filter(|n| !n.is_empty()) {
            ino = self.child(ino, name)?;
        }
        Some(ino)
    }

    /// The kernel's pages of `ino` for version `old` are those of version `new` (the same
    /// bytes).
    pub fn update_page_cache(&mut self, ino: u64, old: &str, new: &str) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            if n.page_cache.as_deref() == Some(old) {
                n.page_cache = Some(new.into());
            }
        }
    }

    /// Whether `ino` still has its name (it was not unlinked or replaced since).
    pub fn is_attached(&self, ino: u64) -> bool {
        self.nodes
            .get(&ino)
            .is_some_and(|n| self.children.get(&(n.parent, n.name.clone())) == Some(&ino))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(kind: Kind, size: u64) -> EntryInfo {
        EntryInfo {
            kind,
            size,
            ..EntryInfo::file(size, SystemTime::UNIX_EPOCH, None)
        }
    }

    #[test]
    fn metadata_sets_kind_time_and_mode() {
        let mut p = crate::blob::BlobProps {
            name: "x".into(),
            size: 5,
            etag: "\"e\"".into(),
            last_modified: SystemTime::UNIX_EPOCH,
            metadata: Default::default(),
        };
        assert_eq!(EntryInfo::from_props(&p).kind, Kind::File);
        p.metadata
            .insert(META_MTIME.into(), "2024-05-06T07:08:09.123456789Z".into());
        p.metadata.insert(META_MODE.into(), "0600".into());
        p.metadata.insert(META_SYMLINK.into(), "true".into());
        let i = EntryInfo::from_props(&p);
        assert_eq!(i.kind, Kind::Symlink);
        assert_eq!(i.mode, Some(0o600));
        assert_eq!(
            format_mtime(i.mtime).as_deref(),
            Some("2024-05-06T07:08:09.123456789Z")
        );
    }

    #[test]
    fn upsert_reuses_counts_and_forgets() {
        let mut t = InodeTable::new(SystemTime::UNIX_EPOCH);
        let d = t.upsert(ROOT_INO, "d", info(Kind::Dir, 0), true);
        let f = t.upsert(d, "f", info(Kind::File, 3), true);
        assert_eq!(t.get(f).unwrap().path, "d/f");
        assert_eq!(t.upsert(d, "f", info(Kind::File, 5), true), f);
        assert_eq!(t.get(f).unwrap().info.size, 5);
        t.forget(f, 1);
        assert!(t.get(f).is_some());
        t.forget(f, 1);
        assert!(t.get(f).is_none());
        assert_eq!(t.child(d, "f"), None);
        t.forget(ROOT_INO, 10);
        assert!(t.get(ROOT_INO).is_some());
    }

    #[test]
    fn rename_moves_a_subtree() {
        let mut t = InodeTable::new(SystemTime::UNIX_EPOCH);
        let a = t.upsert(ROOT_INO, "a", info(Kind::Dir, 0), true);
        let f = t.upsert(a, "f", info(Kind::File, 1), true);
        let b = t.upsert(ROOT_INO, "b", info(Kind::Dir, 0), true);
        t.rename(a, b, "a2");
        assert_eq!(t.get(a).unwrap().path, "b/a2");
        assert_eq!(t.get(f).unwrap().path, "b/a2/f");
        assert_eq!(t.child(ROOT_INO, "a"), None);
        assert_eq!(t.child(b, "a2"), Some(a));
    }

    #[test]
    fn a_name_that_changes_kind_gets_a_new_inode() {
        let mut t = InodeTable::new(SystemTime::UNIX_EPOCH);
        let a = t.upsert(ROOT_INO, "x", info(Kind::File, 1), true);
        let b = t.upsert(ROOT_INO, "x", info(Kind::Dir, 0), true);
        assert_ne!(a, b);
        assert_eq!(t.child(ROOT_INO, "x"), Some(b));
        t.forget(a, 1);
        assert_eq!(
            t.child(ROOT_INO, "x"),
            Some(b),
            "forgetting the old inode keeps the new name"
        );
    }
}
