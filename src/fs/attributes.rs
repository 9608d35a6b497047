//! Attributes kept in blob metadata (chmod, chown, utimes), symlinks and special files.
//!
//! - `mode`, `uid`, `gid`, `mtime`, `atime` are metadata of the blob (of the marker blob for a
//!   directory), spelt as [`super::posix`] says; getattr and listings show them, so `cp -p`,
//!   `rsync -a` and `tar x` as root see what they set.
//! - A symlink is a blob with metadata `is_symlink=true` whose content is the target
//!   (blobfuse2's convention); a FIFO, socket or device a zero-length blob with its type in
//!   `mode`.

use super::error::FsError;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::time::SystemTime;

use bytes::Bytes;

use super::inode::ROOT_INO;
use super::posix::{
    format_mode, format_time, Creator, Defaults, Parent, Special, META_ATIME, META_GID, META_MODE,
    META_MTIME, META_SYMLINK, META_UID,
};
use super::{fail, Attr, EntryInfo, Fs, Kind};
use crate::blob::{BlobProps, ErrorKind, WriteOptions, FOLDER_META};

/// A change to a blob's metadata, which may refuse it.
pub(super) type Edit<'a> = dyn Fn(&mut HashMap<String, String>) -> Result<(), FsError> + Sync + 'a;

/// What setattr changes besides the size; `None`: unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttrs {
    /// Permission bits (the type bits of a special file are kept).
    pub perm: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
}

impl SetAttrs {
    /// The metadata values for an entry of kind `kind`; EINVAL for a time that cannot be
    /// written down (past year 9999).
    fn changes(&self, kind: Kind) -> Result<Vec<(&'static str, String)>, FsError> {
        let special = match kind {
            Kind::Special(s) => Some(s),
            _ => None,
        };
        let time = |t: Option<SystemTime>| {
            t.map(|t| format_time(t).ok_or(FsError::Invalid))
                .transpose()
        };
        Ok([
            (META_MODE, self.perm.map(|m| format_mode(m, special))),
            (META_UID, self.uid.map(|u| u.to_string())),
            (META_GID, self.gid.map(|g| g.to_string())),
            (META_MTIME, time(self.mtime)?),
            (META_ATIME, time(self.atime)?),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect())
    }
}

impl Fs {
    /// chmod, chown and utimes: kept in the blob's metadata. Who may change what was
    /// checked by the kernel (`default_permissions`) against the attributes shown.
    pub async fn set_attrs(&self, ino: u64, set: SetAttrs) -> Result<Attr, FsError> {
        let _change = self.check_writable()?;
        let kind = self.node(ino)?.1.kind;
        let changes = set.changes(kind)?;
        if changes.is_empty() {
            return self.getattr(ino).await;
        }
        let attr = self
            .edit_metadata(ino, &|m| {
                for (k, v) in &changes {
                    m.insert(k.to_string(), v.clone());
                }
                Ok(())
            })
            .await?;
        if kind == Kind::Dir && set.mtime.is_some() {
            // A time set on a directory (tar x, cp -a, rsync -a set it after filling it) wins
            // over the entries this mount changed before.
            self.meta.update(ino, |n| n.entries_changed = None);
            return self.attr_of(ino);
        }
        Ok(attr)
    }

    /// Rewrites the metadata of `ino` with `edit` (which may refuse, e.g. setxattr's
    /// XATTR_CREATE of a name that exists): a file being written here takes it into its
    /// staging, committed with its data; any other blob gets a Set Blob Metadata under
    /// If-Match, so only the version read is rewritten and nothing another writer set
    /// meanwhile is lost.
    pub(super) async fn edit_metadata(&self, ino: u64, edit: &Edit<'_>) -> Result<Attr, FsError> {
        let _change = self.check_writable()?;
        // Held, so a last release racing with this change cannot retire the file in between:
        // whoever drops the last hold commits it, this change included.
        if let Some(w) = self.open_files.hold(ino) {
            let edited = async {
                let mut f = w.open.lock().await;
                f.state.may_write()?;
                let before = f.staging.props("", SystemTime::now()).metadata;
                let mut after = before.clone();
                edit(&mut after)?;
                for k in before.keys().filter(|k| !after.contains_key(*k)) {
                    f.staging.set_meta(k, None);
                }
                for (k, v) in after {
                    if before.get(&k) != Some(&v) {
                        f.staging.set_meta(&k, Some(v));
                    }
                }
                f.state.meta_changed();
                Ok(())
            }
            .await;
            return self.release_held(ino, &w, edited).await;
        }
        let (path, info, _) = self.node(ino)?;
        // A directory keeps its attributes on its marker blob; one without a marker (a bare
        // prefix) gets one now, carrying them. The root has no blob, nor a directory whose
        // name a file's blob holds: chmod and utimes there are accepted, not kept; what must
        // be read back (an extended attribute) is refused.
        let nowhere = |edit: &Edit<'_>| {
            let mut m = HashMap::new();
            edit(&mut m)?;
            match m.keys().any(|k| super::xattr::is_attribute_key(k)) {
                true => Err(FsError::NotSupported),
                false => self.attr_of(ino),
            }
        };
        if info.kind == Kind::Dir && ino == ROOT_INO {
            return nowhere(edit);
        }
        // Read-modify-write of the metadata, conditional on the version read. The first round
        // may use what is known already (a file's metadata from its listing or this mount's
        // commit, a directory marker's from its listing or its mkdir): If-Match makes it
        // rewrite only that version's metadata, and a stale one costs a 412 and a fresh read.
        // (tar x and cp -a set owner, mode and times of every directory they made: one
        // request each, not two.)
        let mut read = known_props(&path, &info);
        for _ in 0..3 {
            let p = match read.take() {
                Some(p) => p,
                None => match self.client.properties(&path).await {
                    Ok(p) => p,
                    Err(e) if e.kind == ErrorKind::NotFound && info.kind == Kind::Dir => {
                        let mut m = HashMap::new();
                        edit(&mut m)?;
                        match self.mark_dir(ino, &path, m).await? {
                            Some(a) => return Ok(a),
                            // Someone made the marker meanwhile: edit theirs, under If-Match.
                            None => continue,
                        }
                    }
                    Err(e) => return Err(fail(e)),
                },
            };
            if info.kind == Kind::Dir && !p.is_folder_marker() {
                // A file's blob holds the directory's name: not the directory's.
                return nowhere(edit);
            }
            let mut metadata = p.metadata.clone();
            edit(&mut metadata)?;
            let opts = WriteOptions {
                if_match: Some(p.etag.clone()),
                metadata: metadata.clone(),
                ..Default::default()
            };
            let (etag, last_modified) = match self.client.set_metadata(&path, &opts).await {
                Ok(c) => (c.etag, c.last_modified),
                // An earlier try's answer was lost: a 412 (If-Match of the version it replaced)
                // or a failure may hide its success, recognised by the blob carrying exactly
                // what was sent. An edit that is not idempotent (XATTR_CREATE, removexattr)
                // must not run again and fail on its own result.
                Err(e) if e.may_have_applied() => {
                    let now = self.client.properties(&path).await.map_err(fail)?;
                    if now.metadata == metadata && now.size == p.size {
                        (now.etag, now.last_modified)
                    } else if e.kind == ErrorKind::ConditionNotMet {
                        read = Some(now);
                        continue;
                    } else {
                        return Err(fail(e));
                    }
                }
                Err(e) if e.kind == ErrorKind::ConditionNotMet => continue,
                // The marker known was removed meanwhile: read again (and mark it anew).
                Err(e) if e.kind == ErrorKind::NotFound && info.kind == Kind::Dir => continue,
                Err(e) => return Err(fail(e)),
            };
            if info.kind != Kind::Dir {
                self.meta.retagged(&path, &p.etag, &etag);
            }
            let info = EntryInfo::from_props(&BlobProps {
                name: path.clone(),
                size: p.size,
                etag,
                last_modified,
                metadata,
            });
            return Ok(self.meta.record(ino, info));
        }
        Err(FsError::Io)
    }

    /// All of the metadata of `ino` as it is now: a file being written here has its staging's,
    /// a file its known metadata while fresh (else one HEAD), a directory its marker's (none
    /// without a marker).
    pub(super) async fn read_metadata(&self, ino: u64) -> Result<HashMap<String, String>, FsError> {
        if let Some(w) = self.writer(ino) {
            let f = w.open.lock().await;
            return Ok(f.staging.props("", SystemTime::now()).metadata);
        }
        let (path, info, fresh) = self.node(ino)?;
        if info.kind == Kind::Dir {
            if ino == ROOT_INO {
                return Ok(HashMap::new());
            }
            return match self.client.properties(&path).await {
                Ok(p) if p.is_folder_marker() => Ok(p.metadata),
                Ok(_) => Ok(HashMap::new()),
                Err(e) if e.kind == ErrorKind::NotFound => Ok(HashMap::new()),
                Err(e) => Err(fail(e)),
            };
        }
        match (&info.metadata, fresh) {
            (Some(m), true) => Ok((**m).clone()),
            _ => {
                let info = self.refresh_file(ino, &path).await?;
                Ok(info.metadata.map(|m| (*m).clone()).unwrap_or_default())
            }
        }
    }

    /// symlink(2): a blob holding the target, with `is_symlink=true`.
    pub async fn symlink(
        &self,
        parent: u64,
        name: &OsStr,
        target: &Path,
        who: &Creator,
    ) -> Result<Attr, FsError> {
        let target = target.to_str().ok_or(FsError::Invalid)?;
        let mut metadata = self.new_entry_metadata(parent, who, Kind::Symlink);
        metadata.insert(META_SYMLINK.to_string(), "true".to_string());
        self.new_entry(
            parent,
            name,
            Bytes::copy_from_slice(target.as_bytes()),
            metadata,
        )
        .await
    }

    /// mknod(2), mkfifo(3), bind(2) of a Unix socket: a zero-length blob whose `mode` has
    /// the type. The kernel serves the file itself; the mount is `nodev`, so a device node
    /// kept here never opens a device.
    pub async fn mknod(
        &self,
        parent: u64,
        name: &OsStr,
        special: Special,
        who: &Creator,
    ) -> Result<Attr, FsError> {
        let metadata = self.new_entry_metadata(parent, who, Kind::Special(special));
        self.new_entry(parent, name, Bytes::new(), metadata).await
    }

    /// mknod(2) of a regular file: an empty blob, in one Put Blob (EEXIST if the name is
    /// taken).
    pub async fn create_empty(
        &self,
        parent: u64,
        name: &OsStr,
        who: &Creator,
    ) -> Result<Attr, FsError> {
        let metadata = self.new_entry_metadata(parent, who, Kind::File);
        self.new_entry(parent, name, Bytes::new(), metadata).await
    }

    /// Creates a blob for a new directory marker, symlink, special or empty file, in one Put
    /// Blob, and enters it in `parent`.
    pub(super) async fn new_entry(
        &self,
        parent: u64,
        name: &OsStr,
        data: Bytes,
        metadata: HashMap<String, String>,
    ) -> Result<Attr, FsError> {
        let size = data.len() as u64;
        let (path, name, c) = self
            .put_new_blob(parent, name, data, metadata.clone())
            .await?;
        let info = EntryInfo::from_props(&BlobProps {
            name: path,
            size,
            etag: c.etag,
            last_modified: c.last_modified,
            metadata,
        });
        let ino = self.meta.added(parent, name, info.clone()).ino;
        Ok(self.meta.record(ino, info))
    }

    /// A bare-prefix directory gets a marker blob carrying the attributes set on it, only if
    /// none appeared meanwhile (If-None-Match; `None`: one did).
    async fn mark_dir(
        &self,
        ino: u64,
        path: &str,
        mut metadata: HashMap<String, String>,
    ) -> Result<Option<Attr>, FsError> {
        metadata.insert(FOLDER_META.to_string(), "true".to_string());
        let opts = WriteOptions {
            if_none_match_any: true,
            metadata: metadata.clone(),
            ..Default::default()
        };
        let c = match self.client.put_blob(path, Bytes::new(), &opts).await {
            Ok(c) => c,
            Err(e) if e.kind == ErrorKind::AlreadyExists => {
                // Someone else's, or ours (a retry after a lost answer): either way the edit
                // goes again onto the marker as it is now, which rewrites ours to the same.
                return Ok(None);
            }
            Err(e) => return Err(fail(e)),
        };
        let info = EntryInfo::from_props(&BlobProps {
            name: path.to_string(),
            size: 0,
            etag: c.etag,
            last_modified: c.last_modified,
            metadata,
        });
        Ok(Some(self.meta.record(ino, info)))
    }

    /// The mount's defaults for entries that record no attributes.
    pub(super) fn defaults(&self) -> Defaults {
        Defaults {
            uid: self.cfg.uid,
            gid: self.cfg.gid,
            file_mode: self.cfg.file_mode,
            dir_mode: self.cfg.dir_mode,
        }
    }

    /// What a new entry of `parent` made by `who` records (see [`Creator::metadata`]).
    pub(super) fn new_entry_metadata(
        &self,
        parent: u64,
        who: &Creator,
        kind: Kind,
    ) -> HashMap<String, String> {
        let d = self.defaults();
        let p = self.attr_of(parent).ok();
        let mut parent = Parent {
            perm: p.as_ref().and_then(|a| a.mode).unwrap_or(d.dir_mode),
            gid: p.and_then(|a| a.gid).unwrap_or(d.gid),
        };
        if !self.cfg.keep_owners {
            // A personal mount records no owners, not even a setgid directory's group.
            parent.perm &= !(libc::S_ISGID as u16);
        }
        who.metadata(kind, parent, &d)
    }

    /// readlink(2): the blob's content.
    pub async fn readlink(&self, ino: u64) -> Result<Bytes, FsError> {
        let (path, info, _) = self.node(ino)?;
        if info.kind != Kind::Symlink {
            return Err(FsError::Invalid);
        }
        self.client
            .get_range(&path, 0, info.size, None)
            .await
            .map_err(fail)
    }
}

/// The properties of a file blob as far as chmod needs them, when its version and all of its
/// metadata are known.
fn known_props(path: &str, info: &EntryInfo) -> Option<BlobProps> {
    let (etag, metadata) = (info.etag.as_ref()?, info.metadata.as_ref()?);
    Some(BlobProps {
        name: path.to_string(),
        size: info.size,
        etag: etag.to_string(),
        last_modified: info.mtime,
        metadata: (**metadata).clone(),
    })
}
