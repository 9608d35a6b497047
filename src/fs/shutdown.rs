//! Shutting down: stop taking changes, then commit every file still being written, within a
//! deadline, and say which could not be.

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use super::write::WriteFile;
use super::{lock, Errno, Fs};

/// What the shutdown commit did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CommitReport {
    /// Files committed, or with nothing left to commit.
    pub committed: usize,
    /// Files that could not be committed, with the reason.
    pub failed: Vec<(String, String)>,
}

impl CommitReport {
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// A change in progress (create, write open, rename, unlink, truncate, set attributes…): the
/// shutdown waits for these before the final commit, so none is cut off half way or lands
/// after it.
pub(super) struct Change<'a>(&'a Fs);

impl Drop for Change<'_> {
    fn drop(&mut self) {
        self.0.changes.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Fs {
    /// Starts a change, unless the mount is shutting down (EROFS). The count goes up before
    /// the flag is read, and [`Fs::stop_changes`] sets the flag before the count is read: a
    /// change either sees the flag or is waited for.
    pub(super) fn begin_change(&self) -> Result<Change<'_>, Errno> {
        self.changes.fetch_add(1, Ordering::SeqCst);
        let change = Change(self);
        if self.is_stopping() {
            return Err(libc::EROFS);
        }
        Ok(change)
    }

    /// Waits until no change is in progress, or `deadline`; false if some still are.
    async fn changes_done(&self, deadline: Instant) -> bool {
        loop {
            if self.changes.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// From now on every change answers EROFS: opening for writing, creating, writing to files
    /// already open, removing, renaming, setting attributes. Reads go on.
    pub fn stop_changes(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Commits every file being written, all at once, and waits until `deadline` at most.
    /// Call [`Fs::stop_changes`] first, so that what is committed is final.
    pub async fn commit_all(&self, deadline: Instant) -> CommitReport {
        if !self.changes_done(deadline).await {
            tracing::warn!(
                "{} change(s) (renames, creates…) still in progress at the shutdown deadline",
                self.changes.load(Ordering::SeqCst)
            );
        }
        let writers: Vec<(u64, Arc<WriteFile>)> = lock(&self.writers)
            .iter()
            .map(|(ino, w)| (*ino, w.clone()))
            .collect();
        let mut names: Vec<(u64, String)> = writers
            .iter()
            .map(|(ino, _)| {
                let name = self
                    .node(*ino)
                    .map(|(path, _, _)| path)
                    .unwrap_or_else(|_| format!("inode {ino}"));
                (*ino, name)
            })
            .collect();
        let mut pending: FuturesUnordered<_> = writers
            .into_iter()
            .map(|(ino, w)| async move { (ino, self.commit(ino, &w).await) })
            .collect();
        let mut report = CommitReport::default();
        // (inode, name, reason) of the files not committed.
        let mut failed: Vec<(u64, String, String)> = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, pending.next()).await {
                Ok(Some((ino, result))) => {
                    let at = names.iter().position(|(i, _)| *i == ino);
                    let name = at.map(|i| names.swap_remove(i).1).unwrap_or_default();
                    match result {
                        Ok(()) => report.committed += 1,
                        Err(errno) => failed.push((
                            ino,
                            name,
                            format!(
                                "commit failed ({})",
                                std::io::Error::from_raw_os_error(errno)
                            ),
                        )),
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    for (ino, name) in names.drain(..) {
                        // Its Put Block List may have been sent: the blob has the previous
                        // version or this one, never a mix.
                        failed.push((ino, name, "no answer in time".to_string()));
                    }
                    break;
                }
            }
        }
        drop(pending);
        if !failed.is_empty() {
            report.failed = self.save_locally(failed).await;
        }
        report.failed.sort();
        report
    }

    /// Copies the data of files that could not be committed to a private local directory
    /// (`blobmount-recovered-<UTC>` in the staging directory), so that a shutdown without the
    /// service loses nothing; gives each file's name and reason, with where its data went.
    async fn save_locally(&self, failed: Vec<(u64, String, String)>) -> Vec<(String, String)> {
        let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
        let stamp = time::OffsetDateTime::now_utc()
            .format(&fmt)
            .unwrap_or_default();
        let dir = self
            .cfg
            .staging_dir
            .join(format!("blobmount-recovered-{stamp}"));
        let budget = Instant::now() + std::time::Duration::from_secs(20);
        let mut out = Vec::new();
        for (ino, name, why) in failed {
            let w = lock(&self.writers).get(&ino).cloned();
            let saved = match w {
                Some(w) => {
                    match tokio::time::timeout_at(budget, save_copy(&w, &name, &dir)).await {
                        Ok(Ok(path)) => format!("its data is in {}", path.display()),
                        Ok(Err(e)) => format!("its data could not be saved: {e}"),
                        Err(_) => "its data could not be saved in time".to_string(),
                    }
                }
                None => "its data is gone".to_string(),
            };
            out.push((name, format!("{why}; {saved}")));
        }
        out
    }
}

/// Writes a staging's whole content to `dir/NAME` (private: mode 0600, in a 0700 directory).
async fn save_copy(w: &WriteFile, name: &str, dir: &Path) -> Result<PathBuf, String> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let s = w.staging.lock().await;
    // The blob's path, when every part of it is a plain name; else one flat name.
    let relative = if Path::new(name)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        PathBuf::from(name)
    } else {
        PathBuf::from(name.replace('/', "_"))
    };
    let path = dir.join(relative);
    let parent = path.parent().unwrap_or(dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .map_err(|e| format!("{}: {e}", parent.display()))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let size = s.size();
    let mut offset = 0;
    while offset < size {
        let n = (size - offset).min(4 << 20);
        let data = s.read(offset, n).await.map_err(|e| e.to_string())?;
        file.write_all(&data)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        offset += n;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::time::Duration;

    use super::*;
    use crate::blob::fake::Op;
    use crate::fs::tests::setup_rw;
    use crate::fs::ROOT_INO as ROOT;

    #[tokio::test]
    async fn commits_every_open_file_then_refuses_changes() {
        let (client, fs) = setup_rw(Duration::from_secs(60));
        let (_, a) = fs
            .create(ROOT, OsStr::new("a"), false, false)
            .await
            .unwrap();
        let (_, b) = fs
            .create(ROOT, OsStr::new("b"), false, false)
            .await
            .unwrap();
        fs.write(a, 0, b"alpha").await.unwrap();
        fs.write(b, 0, b"beta").await.unwrap();
        assert_eq!(fs.gauges().files_open_for_writing, 2);
        fs.stop_changes();
        assert_eq!(fs.write(a, 5, b"more").await, Err(libc::EROFS));
        assert_eq!(
            fs.create(ROOT, OsStr::new("c"), false, false).await.err(),
            Some(libc::EROFS)
        );
        let report = fs
            .commit_all(Instant::now() + Duration::from_secs(10))
            .await;
        assert_eq!(report.committed, 2);
        assert!(report.is_complete(), "{report:?}");
        assert_eq!(&client.blob("a").unwrap().0[..], b"alpha");
        assert_eq!(&client.blob("b").unwrap().0[..], b"beta");
        // Reads go on.
        assert_eq!(&fs.read(a, 0, 5).await.unwrap()[..], b"alpha");
    }

    #[tokio::test]
    async fn a_commit_that_cannot_finish_in_time_is_reported() {
        let (client, fs) = setup_rw(Duration::from_secs(60));
        let (_, a) = fs
            .create(ROOT, OsStr::new("slow"), false, false)
            .await
            .unwrap();
        fs.write(a, 0, b"data").await.unwrap();
        client.set_delay(Op::PutBlockList, Duration::from_secs(30));
        fs.stop_changes();
        let report = fs
            .commit_all(Instant::now() + Duration::from_millis(200))
            .await;
        assert_eq!(report.committed, 0);
        assert_eq!(report.failed.len(), 1, "{report:?}");
        let (name, why) = &report.failed[0];
        assert_eq!(name, "slow");
        // Nothing is lost: the data went to a local file, named in the report.
        let (head, path) = why.split_once("; its data is in ").expect(why);
        assert_eq!(head, "no answer in time");
        assert_eq!(std::fs::read(path).unwrap(), b"data");
        let dir = std::path::Path::new(path).parent().unwrap();
        assert!(dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("blobmount-recovered-"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn changes_in_progress_finish_before_the_final_commit() {
        let (client, fs) = setup_rw(Duration::from_secs(60));
        client.put("src.txt", "moved");
        let (_, a) = fs
            .create(ROOT, OsStr::new("open"), false, false)
            .await
            .unwrap();
        fs.write(a, 0, b"kept").await.unwrap();
        client.set_delay(Op::Copy, Duration::from_millis(300));
        let renaming = {
            let fs = fs.clone();
            tokio::spawn(async move {
                fs.rename(
                    ROOT,
                    OsStr::new("src.txt"),
                    ROOT,
                    OsStr::new("dst.txt"),
                    false,
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        fs.stop_changes();
        let report = fs
            .commit_all(Instant::now() + Duration::from_secs(10))
            .await;
        assert!(
            renaming.is_finished(),
            "the commit did not wait for the rename"
        );
        assert_eq!(renaming.await.unwrap(), Ok(()));
        assert_eq!(report.committed, 1);
        assert_eq!(client.names(), vec!["dst.txt", "open"]);
        // A change begun after the stop is refused.
        assert_eq!(
            fs.rename(ROOT, OsStr::new("dst.txt"), ROOT, OsStr::new("x"), false)
                .await,
            Err(libc::EROFS)
        );
    }
}
