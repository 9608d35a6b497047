//! Files unlinked here while still open. POSIX keeps an unlinked file readable (and writable)
//! through the descriptors open on it, so its blob stays in the service until its last handle
//! closes (what is not in the local copy is read from it), but for this mount the name is gone:
//! lookups, listings and directory checks skip it, and a new file, directory or rename of that
//! name replaces the kept blob (conditionally on the version kept) and takes over its removal.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// A blob kept for the open handles of an unlinked file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// The unlinked file's inode (its last release removes the blob).
    pub ino: u64,
    /// The version kept: only that version is removed.
    pub etag: String,
}

/// The owner of a kept blob whose file has no handle left (its removal is to be retried).
const ORPHAN: u64 = u64::MAX;

/// The kept blobs of this mount, by blob name.
#[derive(Debug, Default)]
pub struct Unlinked {
    by_name: Mutex<HashMap<String, Kept>>,
}

impl Unlinked {
    fn by_name(&self) -> MutexGuard<'_, HashMap<String, Kept>> {
        self.by_name.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `name` was unlinked while open: its blob (version `etag`) is kept for inode `ino`.
    pub fn keep(&self, name: &str, ino: u64, etag: String) {
        self.by_name().insert(name.to_string(), Kept { ino, etag });
    }

    /// Whether `name` is a kept blob, which this mount does not show.
    pub fn hides(&self, name: &str) -> bool {
        self.by_name().contains_key(name)
    }

    /// How many kept blobs have names starting with `prefix`.
    pub fn count_under(&self, prefix: &str) -> usize {
        self.by_name()
            .keys()
            .filter(|n| n.starts_with(prefix))
            .count()
    }

    /// The name is used again: whoever takes it replaces the kept version (given) and is no
    /// longer to remove it.
    pub fn reuse(&self, name: &str) -> Option<Kept> {
        self.by_name().remove(name)
    }

    /// The last handle of `ino` closed: the blobs to remove now (with those whose removal
    /// failed before, see [`Unlinked::retry_later`]). They stay hidden until
    /// [`Unlinked::removed`]: a listing made while the delete is under way must not show them.
    pub fn released(&self, ino: u64) -> Vec<(String, Kept)> {
        self.by_name()
            .iter()
            .filter(|(_, k)| k.ino == ino || k.ino == ORPHAN)
            .map(|(n, k)| (n.clone(), k.clone()))
            .collect()
    }

    /// The kept blob `name` was removed (unless the name was taken again meanwhile).
    pub fn removed(&self, name: &str, kept: &Kept) {
        let mut by_name = self.by_name();
        if by_name.get(name).is_some_and(|k| k.etag == kept.etag) {
            by_name.remove(name);
        }
    }

    /// Removing `name` failed: it stays hidden, and is tried again at the next last close (or
    /// at the shutdown).
    pub fn retry_later(&self, name: &str, etag: String) {
        self.by_name()
            .insert(name.to_string(), Kept { ino: ORPHAN, etag });
    }

    /// Every kept blob (the mount is going away with its handles).
    pub fn everything(&self) -> Vec<(String, Kept)> {
        self.by_name()
            .iter()
            .map(|(n, k)| (n.clone(), k.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_blobs_are_hidden_until_released_or_reused() {
        let u = Unlinked::default();
        u.keep("a", 7, "e1".into());
        u.keep("b", 7, "e2".into());
        u.keep("c", 8, "e3".into());
        assert!(u.hides("a") && !u.hides("d"));
        assert_eq!(u.reuse("c").map(|k| k.etag), Some("e3".into()));
        assert!(!u.hides("c"));
        let mut gone = u.released(7);
        gone.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            gone.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(u.hides("a"), "hidden until removed");
        for (n, k) in &gone {
            u.removed(n, k);
        }
        assert!(u.everything().is_empty());
    }
}
