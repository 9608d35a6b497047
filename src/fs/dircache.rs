//! Directory listings and negative lookups, cached for the metadata TTL.
//!
//! A directory is the set of blob names under `path/`, listed with the `/` delimiter. A listing
//! is complete (every page was read), so while it is fresh a name it lacks does not exist:
//! lookups answer ENOENT without a request.

use std::collections::{BTreeMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lru::LruCache;

use super::inode::{EntryInfo, Kind};
use crate::blob::ListPage;

/// Longest name component, in bytes (Linux's NAME_MAX).
pub const NAME_MAX: usize = 255;

/// Why a blob name cannot be shown as a path.
pub fn invalid_component(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty path segment")
    } else if name == "." || name == ".." {
        Some("'.' or '..' segment")
    } else if name.len() > NAME_MAX {
        Some("segment longer than 255 bytes")
    } else if name.contains('\0') {
        Some("NUL in name")
    } else {
        None
    }
}

/// A blob name hidden from the tree, and why.
pub type Hidden = (String, &'static str);

/// One complete listing of a directory.
#[derive(Debug, Clone)]
pub struct Listing {
    pub entries: BTreeMap<String, EntryInfo>,
    fetched: Instant,
}

impl Listing {
    /// The listing of a directory known to be empty now (one this mount just created).
    pub fn empty() -> Listing {
        Listing {
            entries: BTreeMap::new(),
            fetched: Instant::now(),
        }
    }

    /// Builds the entries of directory `dir` ("" for the root) from its List Blobs pages.
    /// A directory and a file of the same name: the directory wins. Names that cannot be a
    /// path are returned in `hidden`. `dir_mtime` is the time given to pure-prefix directories.
    pub fn from_page(dir: &str, page: ListPage, dir_mtime: SystemTime) -> (Listing, Vec<Hidden>) {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut entries: BTreeMap<String, EntryInfo> = BTreeMap::new();
        let mut hidden = Vec::new();
        for p in page.prefixes {
            let Some(leaf) = p.strip_prefix(&prefix).and_then(|l| l.strip_suffix('/')) else {
                continue;
            };
            if let Some(why) = invalid_component(leaf) {
                hidden.push((p, why));
                continue;
            }
            entries
                .entry(leaf.to_string())
                .or_insert(EntryInfo::dir(dir_mtime));
        }
        for b in page.blobs {
            let Some(leaf) = b.name.strip_prefix(&prefix) else {
                continue;
            };
            if leaf.is_empty() {
                continue; // `dir/` itself: the directory's own marker blob.
            }
            if let Some(why) = invalid_component(leaf) {
                hidden.push((b.name, why));
                continue;
            }
            let info = EntryInfo::from_props(&b);
            if info.kind == Kind::Dir {
                // A marker gives the directory its time.
                entries.insert(leaf.to_string(), info);
            } else {
                entries.entry(leaf.to_string()).or_insert(info);
            }
        }
        (
            Listing {
                entries,
                fetched: Instant::now(),
            },
            hidden,
        )
    }
}

/// How a lookup the cache cannot answer asks the service (see [`DirCache::how_to_ask`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// For the name only.
    Name,
    /// For one page of the directory, which answers the name if the directory fits in it.
    Page,
    /// For the whole directory.
    Whole,
}

/// Names of a large directory, listed whole before, looked up one by one within the TTL before
/// it is listed whole again (2 when that listing expired less than a TTL ago).
pub const RELIST_AFTER: u32 = 16;

/// A directory of at most this many entries is listed whole at a lookup the cache cannot
/// answer once another lookup there found a name missing within the TTL, or once it was
/// listed whole before: one request answers this name and every other looked up while the
/// listing is fresh (`git`, `tar x`, `stat` storms probe many missing names of one directory;
/// `rm -r` or `tar c` revalidate every name of a directory whose listing expired). A larger
/// one is remembered as such, and its names are looked up one by one (until many are: see
/// [`DirCache::how_to_ask`]). Otherwise lookups ask for their name only.
pub const SMALL_DIR: u32 = 1000;

/// Fresh listings and negative lookups, both bounded in count.
pub struct DirCache {
    ttl: Duration,
    listings: LruCache<String, Arc<Listing>>,
    negatives: LruCache<(String, String), Instant>,
    /// Directories found too large to list at a lookup, and when (see [`LARGE_FOR`]).
    large: LruCache<String, Instant>,
    /// The last lookup that found a name missing, by directory.
    missed: LruCache<String, Instant>,
    /// Directories listed whole, and when (their listing may have expired since).
    listed: LruCache<String, Instant>,
    /// Lookups in a directory that asked the service: since when, and how many.
    asked: LruCache<String, (Instant, u32)>,
}

/// How long a directory found too large to list at a lookup is taken to be so. Only a choice
/// of requests rides on it (a listing or a lookup by name), never what a lookup answers.
const LARGE_FOR: Duration = Duration::from_secs(60);

impl DirCache {
    pub fn new(ttl: Duration, max_listings: usize, max_negatives: usize) -> Self {
        DirCache {
            ttl,
            listings: LruCache::new(NonZeroUsize::new(max_listings.max(1)).expect("non-zero")),
            negatives: LruCache::new(NonZeroUsize::new(max_negatives.max(1)).expect("non-zero")),
            large: LruCache::new(NonZeroUsize::new(max_listings.max(1)).expect("non-zero")),
            missed: LruCache::new(NonZeroUsize::new(max_listings.max(1)).expect("non-zero")),
            listed: LruCache::new(NonZeroUsize::new(max_listings.max(1)).expect("non-zero")),
            asked: LruCache::new(NonZeroUsize::new(max_listings.max(1)).expect("non-zero")),
        }
    }

    /// Whether a lookup in `dir` found a name missing within the TTL: names of this directory
    /// are being probed (`stat` storms, `git`, `tar x`), and one listing would answer them all.
    pub fn missed_lately(&mut self, dir: &str) -> bool {
        self.missed.get(dir).is_some_and(|t| t.elapsed() < self.ttl)
    }

    /// Whether `dir` was listed whole before: once its listing expired, its names are looked up
    /// again one after another (`rm -r`, `tar c`, `ls -l` after the TTL), and one listing
    /// revalidates them all.
    pub fn was_listed(&mut self, dir: &str) -> bool {
        self.listed.get(dir).is_some()
    }

    /// Whether `dir` was listed whole within `within`.
    fn listed_within(&mut self, dir: &str, within: Duration) -> bool {
        self.listed.get(dir).is_some_and(|t| t.elapsed() < within)
    }

    /// A lookup in `dir` found `name` missing: remembered for the TTL.
    pub fn lookup_missed(&mut self, dir: &str, name: &str) {
        self.insert_negative(dir, name);
        if !self.ttl.is_zero() {
            self.missed.put(dir.to_string(), Instant::now());
        }
    }

    /// How a lookup in `dir` that the cache cannot answer asks the service (and counts it).
    /// - Its name only, at first: a lone lookup stays small in a directory of any size.
    /// - One page of `page` entries once names of the directory are being probed (one was
    ///   found missing within the TTL, or the directory was listed whole before and its names
    ///   are being looked up again), unless the directory was found larger than that lately.
    /// - The whole directory, every page, when it is larger but was listed whole before and
    ///   [`RELIST_AFTER`] of its names were looked up one by one within the TTL (2 of them if
    ///   that listing expired less than a TTL ago): a program is going through all of them
    ///   again (`ls -l`, `rm -r` after the TTL).
    pub fn how_to_ask(&mut self, dir: &str) -> Ask {
        let asked = match self.asked.get_mut(dir) {
            Some((since, n)) if since.elapsed() < self.ttl => {
                *n += 1;
                *n
            }
            _ => {
                self.asked.put(dir.to_string(), (Instant::now(), 1));
                1
            }
        };
        let listed = self.was_listed(dir);
        if self.is_large(dir) {
            // Its listing expired a moment ago and a second name is looked up: a program is
            // going through them (an `ls -l` that outlasted the TTL), one listing answers all.
            let walked = asked >= 2 && self.listed_within(dir, 2 * self.ttl);
            if listed && (walked || asked >= RELIST_AFTER) {
                self.asked.pop(dir);
                return Ask::Whole;
            }
            return Ask::Name;
        }
        if listed || self.missed_lately(dir) {
            Ask::Page
        } else {
            Ask::Name
        }
    }

    /// Whether `dir` was found too large to list whole at a lookup, lately.
    pub fn is_large(&mut self, dir: &str) -> bool {
        match self.large.get(dir) {
            Some(t) if t.elapsed() < LARGE_FOR => true,
            Some(_) => {
                self.large.pop(dir);
                false
            }
            None => false,
        }
    }

    /// `dir` has more entries than a lookup lists whole.
    pub fn mark_large(&mut self, dir: &str) {
        self.large.put(dir.to_string(), Instant::now());
    }

    /// The listing of `dir` if it is fresh.
    pub fn listing(&mut self, dir: &str) -> Option<Arc<Listing>> {
        match self.listings.get(dir) {
            Some(l) if l.fetched.elapsed() < self.ttl => Some(l.clone()),
            Some(_) => {
                self.listings.pop(dir);
                None
            }
            None => None,
        }
    }

    pub fn insert_listing(&mut self, dir: &str, listing: Listing) -> Arc<Listing> {
        let l = Arc::new(listing);
        if !self.ttl.is_zero() {
            self.listings.put(dir.to_string(), l.clone());
            self.listed.put(dir.to_string(), Instant::now());
            if l.entries.len() > SMALL_DIR as usize {
                self.mark_large(dir);
            }
        }
        l
    }

    /// Records a change made through this mount in a cached listing (and forgets a negative
    /// entry), so the listing stays complete and right until it expires.
    pub fn upsert_entry(&mut self, dir: &str, name: &str, info: EntryInfo) {
        self.negatives.pop(&(dir.to_string(), name.to_string()));
        if let Some(l) = self.listings.get_mut(dir) {
            Arc::make_mut(l).entries.insert(name.to_string(), info);
        }
    }

    /// Records a removal made through this mount.
    pub fn remove_entry(&mut self, dir: &str, name: &str) {
        if let Some(l) = self.listings.get_mut(dir) {
            Arc::make_mut(l).entries.remove(name);
        }
        self.insert_negative(dir, name);
    }

    /// Forgets what is known of directory `dir`'s contents.
    pub fn forget_dir(&mut self, dir: &str) {
        self.listings.pop(dir);
    }

    /// Forgets what is known of `dir` and of every directory below it (listings and missing
    /// names): a rename moved or copied a whole subtree.
    pub fn forget_tree(&mut self, dir: &str) {
        let below = |d: &str| d == dir || dir.is_empty() || d.starts_with(&format!("{dir}/"));
        let listings: Vec<String> = self
            .listings
            .iter()
            .map(|(d, _)| d.clone())
            .filter(|d| below(d))
            .collect();
        for d in listings {
            self.listings.pop(&d);
        }
        let negatives: Vec<(String, String)> = self
            .negatives
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|(d, _)| below(d))
            .collect();
        for k in negatives {
            self.negatives.pop(&k);
        }
    }

    /// Whether `name` in `dir` was recently found not to exist.
    pub fn is_negative(&mut self, dir: &str, name: &str) -> bool {
        let key = (dir.to_string(), name.to_string());
        match self.negatives.get(&key) {
            Some(t) if t.elapsed() < self.ttl => true,
            Some(_) => {
                self.negatives.pop(&key);
                false
            }
            None => false,
        }
    }

    pub fn insert_negative(&mut self, dir: &str, name: &str) {
        if !self.ttl.is_zero() {
            self.negatives
                .put((dir.to_string(), name.to_string()), Instant::now());
        }
    }
}

/// Logs each hidden blob name once (up to a bound, so memory stays bounded).
pub struct HiddenNames {
    seen: HashSet<String>,
    max: usize,
}

impl HiddenNames {
    pub fn new(max: usize) -> Self {
        HiddenNames {
            seen: HashSet::new(),
            max,
        }
    }

    pub fn report(&mut self, hidden: Vec<Hidden>) {
        for (name, why) in hidden {
            if self.seen.len() >= self.max || self.seen.contains(&name) {
                continue;
            }
            tracing::warn!(blob = %name, "hiding a blob whose name cannot be a path: {why}");
            self.seen.insert(name);
            if self.seen.len() == self.max {
                tracing::warn!("more hidden blob names exist; not logging further ones");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::BlobProps;
    use std::collections::HashMap;

    fn blob(name: &str, size: u64, folder: bool) -> BlobProps {
        let mut metadata = HashMap::new();
        if folder {
            metadata.insert("hdi_isfolder".to_string(), "true".to_string());
        }
        BlobProps {
            name: name.into(),
            size,
            etag: "\"e\"".into(),
            last_modified: SystemTime::UNIX_EPOCH + Duration::from_secs(5),
            metadata,
        }
    }

    #[test]
    fn listing_kinds_markers_conflicts_and_hidden_names() {
        let page = ListPage {
            blobs: vec![
                blob("d/", 0, false),
                blob("d/file", 10, false),
                blob("d/both", 3, false),
                blob("d/marker", 0, true),
                blob("d/..", 1, false),
                blob(&format!("d/{}", "x".repeat(256)), 1, false),
            ],
            prefixes: vec!["d/both/".into(), "d/sub/".into(), "d//".into()],
            next_marker: None,
        };
        let (l, hidden) = Listing::from_page("d", page, SystemTime::UNIX_EPOCH);
        let kinds: Vec<(&str, Kind)> = l
            .entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("both", Kind::Dir),
                ("file", Kind::File),
                ("marker", Kind::Dir),
                ("sub", Kind::Dir)
            ]
        );
        assert_eq!(l.entries["file"].size, 10);
        assert_eq!(
            l.entries["marker"].mtime,
            SystemTime::UNIX_EPOCH + Duration::from_secs(5)
        );
        assert_eq!(hidden.len(), 3);
    }

    #[test]
    fn fresh_listings_and_negatives_expire() {
        let mut c = DirCache::new(Duration::from_millis(30), 10, 10);
        let (l, _) = Listing::from_page("", ListPage::default(), SystemTime::UNIX_EPOCH);
        c.insert_listing("", l);
        c.insert_negative("", "nope");
        assert!(c.listing("").is_some());
        assert!(c.is_negative("", "nope"));
        assert!(!c.is_negative("", "other"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(c.listing("").is_none());
        assert!(!c.is_negative("", "nope"));
    }

    #[test]
    fn zero_ttl_caches_nothing() {
        let mut c = DirCache::new(Duration::ZERO, 10, 10);
        let (l, _) = Listing::from_page("", ListPage::default(), SystemTime::UNIX_EPOCH);
        c.insert_listing("", l);
        c.insert_negative("", "x");
        assert!(c.listing("").is_none());
        assert!(!c.is_negative("", "x"));
    }

    #[test]
    fn component_rules() {
        assert!(invalid_component("ok name ü #?%+&").is_none());
        assert!(invalid_component("").is_some());
        assert!(invalid_component(".").is_some());
        assert!(invalid_component("..").is_some());
        assert!(invalid_component(&"a".repeat(255)).is_none());
        assert!(invalid_component(&"a".repeat(256)).is_some());
    }
}
