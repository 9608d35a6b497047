//! Changing names: mkdir, rmdir, unlink, and the checks every change goes through (the mount
//! and the SAS allow it, the name can be stored as it is). Creating files is in
//! `write.rs`, renames in `rename.rs`, attributes and symlinks in `attributes.rs`.

use super::error::FsError;
use std::collections::HashMap;
use std::ffi::OsStr;

use bytes::Bytes;

use super::dircache::{invalid_component, NAME_MAX};
use super::gate::Change;
use super::inode::join;
use super::posix::Creator;
use super::{fail, Attr, EntryInfo, Fs, Kind};
use crate::blob::{ErrorKind, WriteOptions, FOLDER_META};

/// Longest blob name the service takes, in characters.
pub const BLOB_NAME_MAX: usize = 1024;
/// Most `/`-separated segments in a blob name.
pub const BLOB_SEGMENTS_MAX: usize = 254;

/// Why a new blob name would not be stored as it is written, with the error that says so.
/// Such names are refused rather than changed: a name that the service (or the URL and XML on
/// the way) would alter could silently become another file's name.
pub fn unstorable(path: &str) -> Option<(FsError, &'static str)> {
    if path.chars().count() > BLOB_NAME_MAX || path.split('/').count() > BLOB_SEGMENTS_MAX {
        return Some((
            FsError::NameTooLong,
            "longer than a blob name may be (1,024 characters, 254 segments)",
        ));
    }
    for c in path.chars() {
        let why = match c {
            // Azure refuses control characters; Azurite cannot list them (500).
            '\u{1}'..='\u{1f}' | '\u{7f}' | '\u{80}'..='\u{9f}' => "a control character",
            // Azure takes a backslash for a slash.
            '\\' => "a backslash",
            // Not characters (Azure refuses them).
            '\u{e000}'..='\u{f8ff}' | '\u{fdd0}'..='\u{fdef}' | '\u{fffe}' | '\u{ffff}' => {
                "a private-use or non-character code point"
            }
            _ => continue,
        };
        return Some((FsError::Invalid, why));
    }
    if path.split('/').any(|segment| segment.ends_with('.')) {
        // Azure drops a trailing dot from each segment of the URL: `a.` would be `a`.
        return Some((FsError::Invalid, "a name ending with a dot"));
    }
    if path.chars().all(|c| matches!(c, ' ' | '\t' | '\n' | '\r')) {
        // Listings would show it as an empty name (XML drops blank text).
        return Some((FsError::Invalid, "a name of spaces only"));
    }
    None
}

/// Whether no blob can have this name component, so looking it up needs no request: C0
/// control characters other than tab, newline and carriage return (Azure refuses them in
/// names; Azurite takes them, and then fails every listing that would show them with a 500).
pub fn cannot_exist(name: &str) -> bool {
    name.chars()
        .any(|c| matches!(c, '\u{1}'..='\u{1f}') && !matches!(c, '\t' | '\n' | '\r'))
}

impl Fs {
    /// Changes need a read-write mount and a SAS that may write (the token in force: a
    /// refreshed one may allow less, or more, than the first).
    /// The returned guard counts the change as in progress until it is dropped: keep it for
    /// the whole operation (the shutdown waits for changes in progress).
    pub(super) fn check_writable(&self) -> Result<Change<'_>, FsError> {
        if self.cfg.read_only {
            return Err(FsError::ReadOnly);
        }
        let change = self.gate.begin()?;
        if !self.token_allows('w') {
            tracing::debug!("the SAS in force has no write permission");
            return Err(FsError::ReadOnly);
        }
        self.check_token_usable()?;
        Ok(change)
    }

    /// Removing (unlink, rmdir, rename's source) needs the SAS's `d`: without it, EACCES at once.
    pub(super) fn check_deletable(&self) -> Result<Change<'_>, FsError> {
        let change = self.check_writable()?;
        if !self.token_allows('d') {
            tracing::debug!("the SAS in force has no delete permission");
            return Err(FsError::Denied);
        }
        Ok(change)
    }

    /// A token that has expired with nothing to replace it makes every change fail: writes
    /// fail at once (EACCES) instead of succeeding locally and failing at close.
    pub(super) fn check_token_usable(&self) -> Result<(), FsError> {
        let Some(cred) = &self.cfg.credential else {
            return Ok(());
        };
        if !cred.is_refreshable() && cred.current().is_expired(time::OffsetDateTime::now_utc()) {
            tracing::debug!("the SAS has expired and nothing can renew it: change refused");
            return Err(FsError::Denied);
        }
        Ok(())
    }

    /// Whether the SAS in force has permission `letter` (or nothing is known of it).
    fn token_allows(&self, letter: char) -> bool {
        let Some(cred) = &self.cfg.credential else {
            return true;
        };
        cred.current()
            .permissions
            .as_ref()
            .is_none_or(|p| p.has(letter))
    }

    /// The directory path of `parent` and a validated `name` in it.
    pub(super) fn child_name<'a>(
        &self,
        parent: u64,
        name: &'a OsStr,
    ) -> Result<(String, &'a str), FsError> {
        let name = name.to_str().ok_or(FsError::Invalid)?;
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        if invalid_component(name).is_some() || name.contains('/') {
            return Err(FsError::Invalid);
        }
        let (dir, info, _) = self.node(parent)?;
        if info.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        Ok((dir, name))
    }

    /// A name about to be created (file, directory, symlink, rename target) must be stored as
    /// it is: see [`unstorable`].
    pub(super) fn check_new_name(&self, path: &str) -> Result<(), FsError> {
        match unstorable(path) {
            Some((error, why)) => {
                tracing::info!("{path:?} refused: {why} cannot be kept in a blob name as it is");
                Err(error)
            }
            None => Ok(()),
        }
    }

    /// mkdir: a zero-length marker blob with `hdi_isfolder=true`, so the directory persists
    /// while empty (blobfuse2's and Azure tools' convention).
    /// Its mode and owner are the marker's metadata (see [`super::posix`]).
    pub async fn mkdir(&self, parent: u64, name: &OsStr, who: &Creator) -> Result<Attr, FsError> {
        let mut meta = self.new_entry_metadata(parent, who, Kind::Dir);
        meta.insert(FOLDER_META.to_string(), "true".to_string());
        let attr = self.new_entry(parent, name, Bytes::new(), meta).await?;
        // Nothing was under the name a moment ago (the lookup before the Put Blob), so the new
        // directory's listing is known: empty, as if listed then. Lookups of the names created
        // in it next (`tar x`, `cp -r`) answer from it without a request while it is fresh (the
        // metadata TTL), and this mount's own changes keep it complete.
        let (path, _, _) = self.node(attr.ino)?;
        self.meta
            .listings()
            .insert_listing(&path, super::dircache::Listing::empty());
        Ok(attr)
    }

    /// Creates the blob `name` in directory `parent` in one Put Blob, only if nothing has that
    /// name (`If-None-Match: *`; EEXIST otherwise). For directory markers and symlinks. A
    /// retry after a lost answer that finds the very blob it wrote takes it as its own.
    pub(super) async fn put_new_blob<'a>(
        &self,
        parent: u64,
        name: &'a OsStr,
        data: Bytes,
        metadata: HashMap<String, String>,
    ) -> Result<(String, &'a str, crate::blob::Committed), FsError> {
        let _change = self.check_writable()?;
        let (dir, name) = self.child_name(parent, name)?;
        // A file this mount is writing (maybe not committed yet) exists too.
        match self.resolve_or_writer(parent, &dir, name).await {
            Ok(_) => return Err(FsError::Exists),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let path = join(&dir, name);
        self.check_new_name(&path)?;
        // A blob kept for an unlinked file's open handles is replaced, that version only.
        let kept = self.take_over_kept(&path).await?;
        let opts = WriteOptions {
            if_none_match_any: kept.is_none(),
            if_match: kept.as_ref().map(|k| k.etag.clone()),
            metadata,
            ..Default::default()
        };
        let restore = |kept: &Option<super::unlinked::Kept>| {
            if let Some(k) = kept {
                self.open_files
                    .unlinked()
                    .keep(&path, k.ino, k.etag.clone());
            }
        };
        let c = match self.client.put_blob(&path, data.clone(), &opts).await {
            Ok(c) => c,
            Err(e) if e.kind == ErrorKind::ConditionNotMet && kept.is_some() => {
                let client = self.client.as_ref();
                let own = match e.after_lost_answer {
                    true => crate::blob::own_put_blob(client, &path, &data, &opts.metadata)
                        .await
                        .map_err(fail)?,
                    false => None,
                };
                // Otherwise someone else replaced the kept version meanwhile: theirs stays.
                own.ok_or(FsError::Exists)?
            }
            Err(e) if e.kind == crate::blob::ErrorKind::AlreadyExists => {
                let client = self.client.as_ref();
                let own = match e.after_lost_answer {
                    true => crate::blob::own_put_blob(client, &path, &data, &opts.metadata)
                        .await
                        .map_err(fail)?,
                    false => None,
                };
                match own {
                    Some(c) => c,
                    // Uncommitted blocks only (an upload never committed): replaced.
                    None => {
                        let mut made = None;
                        let tries = crate::blob::over_uncommitted(client, &path, &opts)
                            .await
                            .map_err(fail)?;
                        for opts in tries {
                            match client.put_blob(&path, data.clone(), &opts).await {
                                Ok(c) => {
                                    made = Some(c);
                                    break;
                                }
                                Err(e) if e.kind == ErrorKind::ConditionNotMet => continue,
                                Err(e) => return Err(fail(e)),
                            }
                        }
                        made.ok_or(FsError::Exists)?
                    }
                }
            }
            Err(e) => {
                // Not written: the kept blob stays to be removed by its file's last close.
                restore(&kept);
                return Err(fail(e));
            }
        };
        Ok((path, name, c))
    }

    /// Removes the markers of directory `path` (`path` with `hdi_isfolder`, `path/`), after
    /// checking that no blob remains under it (ENOTEMPTY) and that nothing is being written
    /// there (`busy`). A marker already gone (or whose delete's answer was lost) is fine.
    pub(super) async fn remove_empty_dir(&self, path: &str, busy: bool) -> Result<(), FsError> {
        let prefix = format!("{path}/");
        // Enough results to see past the `path/` marker and the blobs kept for unlinked
        // files, which do not count.
        let kept = self.open_files.unlinked().count_under(&prefix) as u32;
        let page = self
            .client
            .list(crate::blob::ListRequest {
                prefix: &prefix,
                delimiter: None,
                marker: None,
                max_results: Some(kept + 2),
            })
            .await
            .map_err(fail)?;
        let unlinked_here = |name: &str| self.open_files.unlinked().hides(name);
        if busy
            || page
                .blobs
                .iter()
                .any(|b| b.name != prefix && !unlinked_here(&b.name))
        {
            return Err(FsError::NotEmpty);
        }
        for marker in [path, prefix.as_str()] {
            match self.client.delete_blob(marker, None).await {
                Ok(()) => {}
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(fail(e)),
            }
        }
        Ok(())
    }

    /// rmdir: refuses (ENOTEMPTY) while any blob remains under the prefix, then removes the
    /// directory's marker blobs (`name` with `hdi_isfolder`, `name/`), if any.
    pub async fn rmdir(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        let _change = self.check_deletable()?;
        let (dir, name) = self.child_name(parent, name)?;
        match self.resolve(&dir, name).await {
            Ok(info) if info.kind != Kind::Dir => return Err(FsError::NotDir),
            Ok(_) => {}
            // A directory that existed only as a prefix disappears with its last blob: removing
            // it then is a success (`rm -r` removes the files first, then the directory).
            Err(e) if e.is_not_found() && self.known_dir(parent, name) => {
                self.meta.detach(parent, name);
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        let path = join(&dir, name);
        let writing_inside = self.still_writing_under(&path).await;
        self.remove_empty_dir(&path, writing_inside).await?;
        self.meta
            .removed_then(parent, &dir, name, |listings| listings.forget_dir(&path));
        Ok(())
    }

    /// unlink: deletes the blob. A file still open here stays readable (and writable) through
    /// its handles: its name is gone for this mount at once, its blob is kept until the last
    /// close and deleted then, if it is still the version unlinked (see `unlinked.rs`).
    /// A file being written is never committed any more (its lifecycle says so). A delete
    /// answered 404 is a success: the blob is gone (this call's own earlier attempt, whose
    /// answer was lost, or someone else removed it).
    pub async fn unlink(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        let _change = self.check_deletable()?;
        let (dir, name) = self.child_name(parent, name)?;
        let info = self.resolve_or_writer(parent, &dir, name).await?;
        if info.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        let path = join(&dir, name);
        let ino = self.meta.child(parent, name);
        // The version of the blob the open handles read, if the file is open here.
        // What becomes of the blob: kept for the handles open here (that version), or deleted
        // now. A file being written here and never committed has no blob of its own, but the
        // name may hold one it never wrote (a failed rename's copy over it that stayed, or
        // another machine's): the name goes with whatever it holds (404: there was none).
        enum Blob {
            Keep(u64, String),
            /// Keep the version the blob has now (an earlier commit of the file may have gone
            /// through without an answer).
            KeepCurrent(u64),
            Delete,
        }
        let writer = ino.and_then(|i| self.writer(i));
        // Taken after any commit in progress (none can land after this) and held until the
        // blob is dealt with: the file is unlinked only once that has worked.
        let mut open = match &writer {
            Some(w) => Some(w.open.lock().await),
            None => None,
        };
        let blob = match (ino, &open) {
            (Some(ino), Some(f)) if f.staging.blob() == path => match f.staging.expected_etag() {
                _ if f.staging.is_unsure() => Blob::KeepCurrent(ino),
                Some(etag) => Blob::Keep(ino, etag.to_string()),
                None => Blob::Delete,
            },
            // After a conflict the staging goes on in its sibling: `path` is the other
            // version, which goes now.
            (_, Some(_)) => Blob::Delete,
            (Some(ino), None) if self.has_handles(ino) => match &info.etag {
                Some(etag) => Blob::Keep(ino, etag.to_string()),
                None => Blob::Delete,
            },
            _ => Blob::Delete,
        };
        match blob {
            Blob::Keep(ino, etag) => self.open_files.unlinked().keep(&path, ino, etag),
            Blob::KeepCurrent(ino) => match self.client.properties(&path).await {
                Ok(p) => self.open_files.unlinked().keep(&path, ino, p.etag),
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(fail(e)),
            },
            Blob::Delete => match self.client.delete_blob(&path, None).await {
                Ok(()) => {}
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(fail(e)),
            },
        }
        if let Some(f) = open.as_mut() {
            f.unlinked();
        }
        drop(open);
        if let Some(ino) = ino {
            // Its last handle may have closed while this was decided: it goes now then.
            if !self.has_handles(ino) {
                let kept = self.open_files.unlinked().released(ino);
                for (name, k) in kept {
                    self.delete_kept(&name, &k).await;
                }
            }
        }
        self.meta.removed(parent, &dir, name);
        Ok(())
    }

    /// Whether the kernel holds `name` in `parent` as a directory.
    fn known_dir(&self, parent: u64, name: &str) -> bool {
        self.meta
            .child_info(parent, name)
            .is_some_and(|(_, info)| info.kind == Kind::Dir)
    }

    /// What `name` is, counting files this mount is writing and has not committed yet.
    pub(super) async fn resolve_or_writer(
        &self,
        parent: u64,
        dir: &str,
        name: &str,
    ) -> Result<EntryInfo, FsError> {
        if let Some((ino, info)) = self.meta.child_info(parent, name) {
            if self.writer(ino).is_some() {
                return Ok(info);
            }
        }
        self.resolve(dir, name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_change_are_refused() {
        for ok in [
            "a",
            "dir/file.txt",
            " lead and trail ",
            "a b/c\u{e9}\u{301}\u{1F600}",
            ".hidden",
            "a.b",
            "#?%&+=;",
        ] {
            assert_eq!(unstorable(ok), None, "{ok:?}");
        }
        for (bad, errno) in [
            ("a\nb", libc::EINVAL),
            ("a\tb", libc::EINVAL),
            ("a\rb", libc::EINVAL),
            ("a\u{1}b", libc::EINVAL),
            ("a\u{7f}", libc::EINVAL),
            ("a\u{85}", libc::EINVAL),
            ("a\\b", libc::EINVAL),
            ("dot.", libc::EINVAL),
            ("dir./x", libc::EINVAL),
            ("...", libc::EINVAL),
            ("  ", libc::EINVAL),
            ("\u{e000}", libc::EINVAL),
            ("\u{fffe}", libc::EINVAL),
        ] {
            assert_eq!(
                unstorable(bad).map(|(e, _)| e.to_errno()),
                Some(errno),
                "{bad:?}"
            );
        }
        assert_eq!(unstorable(&"x".repeat(1024)), None);
        assert_eq!(
            unstorable(&"x".repeat(1025)).map(|(e, _)| e.to_errno()),
            Some(libc::ENAMETOOLONG)
        );
        assert_eq!(unstorable("d/".repeat(254).trim_end_matches('/')), None);
        assert_eq!(
            unstorable(&"d/".repeat(255)).map(|(e, _)| e.to_errno()),
            Some(libc::ENAMETOOLONG)
        );
    }
}
