//! Directory-aware prefetch: detects a program reading the files of a directory one after
//! another in listing order (`cp -r` or `tar c` out of the mount, `rsync`, `grep -r`,
//! `find | xargs cat`) and says which files to fetch ahead of it.
//!
//! Each directory has a [`Scan`]: the last file opened for reading there. An open of one of the
//! next files after it, in listing order, continues the scan; any other open starts over.
//! From the second file of a scan on, the next few small files ([`AHEAD`] by default,
//! `--prefetch-files`) are fetched, several at once, so the program finds each in the cache. Only fresh listings are used, and only files
//! of at most `max_size` bytes (one block): a scan that stops wastes little.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use super::dircache::Listing;
use super::inode::{EntryInfo, Kind};

/// How many files a scan fetches ahead of the program by default; also how far ahead in the
/// listing an open still continues a scan (a program may skip a few files).
pub const AHEAD: usize = 8;

/// Directories whose scans are tracked at once.
const DIRS: usize = 64;

/// The last file opened for reading in one directory, and how many in order led to it.
#[derive(Debug)]
struct Scan {
    last: String,
    in_order: u32,
}

/// The scans of all directories, behind one lock (held for no request).
pub struct Scans {
    dirs: Mutex<LruCache<String, Scan>>,
    max_size: u64,
    /// Files fetched ahead of a scan (0: none, and no scan is tracked).
    ahead: usize,
}

impl Scans {
    /// Scans that fetch `ahead` files of at most `max_size` bytes ahead of a program.
    pub fn new(max_size: u64, ahead: usize) -> Self {
        Scans {
            dirs: Mutex::new(LruCache::new(NonZeroUsize::new(DIRS).expect("non-zero"))),
            max_size,
            ahead,
        }
    }

    /// Records that `name` in directory `dir` was opened for reading, and returns the files of
    /// `listing` (the directory's fresh listing, if there is one) to fetch ahead: none unless
    /// `name` continues a scan.
    pub fn opened(
        &self,
        dir: &str,
        name: &str,
        listing: Option<&Listing>,
    ) -> Vec<(String, EntryInfo)> {
        if self.ahead == 0 {
            return Vec::new();
        }
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(listing) = listing else {
            dirs.pop(dir);
            return Vec::new();
        };
        let in_order = match dirs.get(dir) {
            Some(s) if s.last.as_str() < name && self.follows(listing, &s.last, name) => {
                s.in_order + 1
            }
            _ => 0,
        };
        dirs.put(
            dir.to_string(),
            Scan {
                last: name.to_string(),
                in_order,
            },
        );
        drop(dirs);
        if in_order == 0 {
            return Vec::new();
        }
        self.files_after(listing, name)
            .filter(|(_, e)| e.size > 0 && e.size <= self.max_size && e.etag.is_some())
            .take(self.ahead)
            .map(|(n, e)| (n.clone(), e.clone()))
            .collect()
    }

    /// Whether `name` is among the next [`AHEAD`] files after `last` in `listing`.
    fn follows(&self, listing: &Listing, last: &str, name: &str) -> bool {
        self.files_after(listing, last)
            .take(AHEAD)
            .any(|(n, _)| n == name)
    }

    /// The files after `name`, in listing order.
    fn files_after<'a>(
        &self,
        listing: &'a Listing,
        name: &str,
    ) -> impl Iterator<Item = (&'a String, &'a EntryInfo)> {
        use std::ops::Bound::{Excluded, Unbounded};
        listing
            .entries
            .range::<str, _>((Excluded(name), Unbounded))
            .filter(|(_, e)| e.kind == Kind::File)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn listing(names: &[(&str, u64)]) -> Listing {
        let mut l = Listing::empty();
        for (n, size) in names {
            let e = if n.ends_with('/') {
                EntryInfo::dir(SystemTime::UNIX_EPOCH)
            } else {
                EntryInfo::file(*size, SystemTime::UNIX_EPOCH, Some("\"e\"".into()))
            };
            l.entries.insert(n.trim_end_matches('/').to_string(), e);
        }
        l
    }

    fn names(v: &[(String, EntryInfo)]) -> Vec<&str> {
        v.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn files_opened_in_listing_order_fetch_the_next_small_ones() {
        let files: Vec<(String, u64)> = (0..20).map(|i| (format!("f{i:02}"), 100)).collect();
        let mut spec: Vec<(&str, u64)> = files.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        spec.push(("f05b/", 0)); // a subdirectory: skipped
        spec.push(("f06b", 0)); // empty: nothing to fetch
        spec.push(("f07b", 1 << 30)); // too large
        let l = listing(&spec);
        let s = Scans::new(1 << 20, AHEAD);
        assert!(
            s.opened("d", "f00", Some(&l)).is_empty(),
            "one file is no scan"
        );
        let ahead = s.opened("d", "f01", Some(&l));
        assert_eq!(
            names(&ahead),
            ["f02", "f03", "f04", "f05", "f06", "f07", "f08", "f09"]
        );
        // Skipping a few (a filter such as grep --include) continues the scan.
        assert_eq!(s.opened("d", "f04", Some(&l)).len(), AHEAD);
        // Another directory has its own scan.
        assert!(s.opened("e", "f05", Some(&l)).is_empty());
        assert_eq!(s.opened("d", "f05", Some(&l)).len(), AHEAD);
        // Going back, jumping far, or no fresh listing: the scan stops.
        assert!(s.opened("d", "f01", Some(&l)).is_empty());
        assert!(s.opened("d", "f19", Some(&l)).is_empty());
        assert!(s.opened("d", "f00", None).is_empty());
        assert!(s.opened("d", "f01", Some(&l)).is_empty());
        // The end of the directory: nothing more to fetch.
        s.opened("d", "f17", Some(&l));
        s.opened("d", "f18", Some(&l));
        assert_eq!(names(&s.opened("d", "f19", Some(&l))), Vec::<&str>::new());
        // --prefetch-files: how many; 0 fetches nothing.
        let two = Scans::new(1 << 20, 2);
        two.opened("d", "f00", Some(&l));
        assert_eq!(names(&two.opened("d", "f01", Some(&l))), ["f02", "f03"]);
        let off = Scans::new(1 << 20, 0);
        off.opened("d", "f00", Some(&l));
        assert!(off.opened("d", "f01", Some(&l)).is_empty());
    }
}
