//! Names to entries: lookups, attributes and listings, from what the metadata store knows when
//! it is fresh, else from the service (a HEAD and a one-result listing at once, or a full
//! listing), recording what was learnt.

use std::ffi::OsStr;
use std::sync::Arc;

use super::dircache::{invalid_component, Listing, NAME_MAX};
use super::error::{fail, FsError};
use super::inode::{join, Attr, EntryInfo, Kind};
use super::{namespace, Fs, EMPTIED_GRACE};
use crate::blob::{self, ErrorKind, ListRequest};

impl Fs {
    /// A complete, fresh listing of directory `dir` ("" for the root).
    pub(super) async fn listing(&self, dir: &str) -> Result<Arc<Listing>, FsError> {
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
    pub(super) async fn only_kept_under(&self, prefix: &str) -> Result<bool, FsError> {
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
    pub(super) async fn resolve(&self, dir: &str, name: &str) -> Result<EntryInfo, FsError> {
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
    pub(super) async fn refresh_file(&self, ino: u64, path: &str) -> Result<EntryInfo, FsError> {
        let p = self.client.properties(path).await.map_err(fail)?;
        let info = EntryInfo::from_props(&p);
        self.meta.refreshed(ino, &info);
        Ok(info)
    }
}
