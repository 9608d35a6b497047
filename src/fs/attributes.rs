//! Attributes kept in blob metadata (chmod, utimes) and symlinks.
//!
//! - `mode` (octal) and `mtime` (RFC 3339, as rclone writes it) are metadata of the blob (of
//!   the marker blob for a directory); getattr and listings show them, so `cp -p` and
//!   `rsync -a` see the times they set.
//! - A symlink is a blob with metadata `is_symlink=true` whose content is the target
//!   (blobfuse2's convention).

use super::error::FsError;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::time::SystemTime;

use bytes::Bytes;

use super::inode::{format_mtime, META_MODE, META_MTIME, META_SYMLINK};
use super::{fail, Attr, EntryInfo, Fs, Kind};
use crate::blob::{BlobProps, ErrorKind, WriteOptions};

impl Fs {
    /// chmod and utimes: kept in the blob's metadata.
    pub async fn set_attrs(
        &self,
        ino: u64,
        mode: Option<u16>,
        mtime: Option<SystemTime>,
    ) -> Result<Attr, FsError> {
        let _change = self.check_writable()?;
        let changes: Vec<(&str, String)> = [
            (META_MODE, mode.map(|m| format!("{:04o}", m & 0o7777))),
            (META_MTIME, mtime.map(format_mtime)),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        if changes.is_empty() {
            return self.getattr(ino).await;
        }
        if let Some(w) = self.writer(ino) {
            {
                let mut f = w.open.lock().await;
                f.state.may_write()?;
                for (k, v) in changes {
                    f.staging.set_meta(k, Some(v));
                }
                f.state.wrote();
            }
            return Ok(self.touch_attr(ino, &w).await);
        }
        let (path, info, _) = self.node(ino)?;
        // A directory keeps its attributes on its marker blob; one without a marker (a bare
        // prefix) has nowhere to keep them: accepted, not kept.
        let mut read = known_props(&path, &info);
        if info.kind == Kind::Dir {
            match self.client.properties(&path).await {
                Ok(p) if p.is_folder_marker() => read = Some(p),
                Ok(_) => return self.attr_of(ino),
                Err(e) if e.kind == ErrorKind::NotFound => return self.attr_of(ino),
                Err(e) => return Err(fail(e)),
            }
        }
        // Read-modify-write of the metadata, conditional on the version read. The first round
        // may use what is known already (the marker's properties just read, or a file's
        // metadata from its listing or this mount's commit): If-Match makes it rewrite only
        // that version's metadata, and a stale one costs a 412 and a fresh read.
        for _ in 0..3 {
            let p = match read.take() {
                Some(p) => p,
                None => self.client.properties(&path).await.map_err(fail)?,
            };
            let mut metadata = p.metadata.clone();
            for (k, v) in &changes {
                metadata.insert(k.to_string(), v.clone());
            }
            let opts = WriteOptions {
                if_match: Some(p.etag.clone()),
                metadata: metadata.clone(),
                ..Default::default()
            };
            match self.client.set_metadata(&path, &opts).await {
                Ok(c) => {
                    let info = EntryInfo::from_props(&BlobProps {
                        name: path.clone(),
                        size: p.size,
                        etag: c.etag,
                        last_modified: c.last_modified,
                        metadata,
                    });
                    return Ok(self.meta.record(ino, info));
                }
                Err(e) if e.kind == ErrorKind::ConditionNotMet => continue,
                Err(e) => return Err(fail(e)),
            }
        }
        Err(FsError::Io)
    }

    /// symlink(2): a blob holding the target, with `is_symlink=true`.
    pub async fn symlink(&self, parent: u64, name: &OsStr, target: &Path) -> Result<Attr, FsError> {
        let target = target.to_str().ok_or(FsError::Invalid)?;
        let metadata = HashMap::from([(META_SYMLINK.to_string(), "true".to_string())]);
        let data = Bytes::copy_from_slice(target.as_bytes());
        let (path, name, c) = self
            .put_new_blob(parent, name, data, metadata.clone())
            .await?;
        let info = EntryInfo::from_props(&BlobProps {
            name: path,
            size: target.len() as u64,
            etag: c.etag,
            last_modified: c.last_modified,
            metadata,
        });
        let ino = self.meta.enter(parent, name, info.clone(), true).ino;
        Ok(self.meta.record(ino, info))
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
