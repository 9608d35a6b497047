//! Open directories: a snapshot of the listing at opendir (with files being written here, without
//! files unlinked here), served by offset.

use super::error::FsError;
use super::handles::DirHandle;
use super::inode::{join, Attr, Kind};
use super::Fs;

impl Fs {
    /// Opens a directory: lists it completely (or takes a fresh listing) into a snapshot.
    pub async fn opendir(&self, ino: u64) -> Result<u64, FsError> {
        let (path, info, _) = self.node(ino)?;
        if info.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        let listing = self.listing(&path).await?;
        let mut entries = listing.entries.clone();
        {
            // Files unlinked here but kept for their open handles are gone from the tree.
            let unlinked = self.open_files.unlinked();
            entries.retain(|name, _| !unlinked.hides(&join(&path, name)));
        }
        // Files being written here are listed (with their current size) before their commit.
        for (name, info) in self.files_being_written_in(ino) {
            entries.insert(name, info);
        }
        let entries = entries.into_iter().collect();
        Ok(self.handles.open_dir(DirHandle { ino, entries }))
    }

    /// Serves directory entries from offset `offset` of an open directory, `.` and `..`
    /// first. `add(ino, next_offset, name, attr)` returns true when the reply is full. With
    /// `plus`, each entry added gets an inode and a kernel reference (readdirplus); otherwise
    /// entries the kernel never looked up are given a synthetic inode number.
    pub fn readdir(
        &self,
        fh: u64,
        offset: u64,
        plus: bool,
        mut add: impl FnMut(u64, u64, &str, &Attr) -> bool,
    ) -> Result<(), FsError> {
        let h = self.handles.dir(fh).ok_or(FsError::BadHandle)?;
        let mut inodes = self.meta.inodes();
        let dir = inodes.get(h.ino).ok_or(FsError::NotFound)?;
        let dot = dir.attr(h.ino);
        let parent_ino = dir.parent;
        let dotdot = inodes
            .get(parent_ino)
            .map(|n| n.attr(parent_ino))
            .unwrap_or(dot.clone());
        let mut index = offset;
        loop {
            let full = match index {
                0 => add(dot.ino, 1, ".", &dot),
                1 => add(dotdot.ino, 2, "..", &dotdot),
                i => {
                    let Some((name, info)) = h.entries.get((i - 2) as usize) else {
                        break;
                    };
                    if plus {
                        let ino = inodes.upsert(h.ino, name, info.clone(), false);
                        let attr = inodes.get(ino).expect("just upserted").attr(ino);
                        let full = add(ino, i + 1, name, &attr);
                        if !full {
                            inodes.upsert(h.ino, name, info.clone(), true);
                        }
                        full
                    } else {
                        let ino = inodes
                            .child(h.ino, name)
                            .unwrap_or_else(|| synthetic_ino(h.ino, name));
                        let attr = Attr::of(ino, info);
                        add(ino, i + 1, name, &attr)
                    }
                }
            };
            if full {
                break;
            }
            index += 1;
        }
        Ok(())
    }

    pub fn releasedir(&self, fh: u64) {
        self.handles.close_dir(fh);
    }
}

/// A stable inode number for an entry the kernel never looked up (plain readdir only shows it).
fn synthetic_ino(parent: u64, name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (parent, name).hash(&mut h);
    h.finish() | (1 << 63)
}
