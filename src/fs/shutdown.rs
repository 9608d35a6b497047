//! Shutting down: stop taking changes, then commit every file still being written, within a
//! deadline, and say which could not be.

use std::collections::HashMap;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use super::lifecycle::{FileState, ShutdownStep};
use super::open_files::WriteFile;
use super::{lock, recovery, Fs};

/// Files committed at once by the shutdown.
const AT_ONCE: usize = 32;

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

impl Fs {
    /// From now on every change answers EROFS: opening for writing, creating, writing to files
    /// already open, removing, renaming, setting attributes. Reads go on.
    pub fn stop_changes(&self) {
        self.gate.close();
    }

    /// Whether the mount is shutting down (changes are refused).
    pub fn is_stopping(&self) -> bool {
        self.gate.is_closed()
    }

    /// Commits every file being written that its program had finished (closed or fsynced),
    /// several at once, and waits until `deadline` at most. A file still being written is not
    /// finished: the blob keeps its version, and the file's content is saved beside it as
    /// `NAME.partial-<UTC>`. Call [`Fs::stop_changes`] first, so that what is committed is
    /// final.
    pub async fn commit_all(&self, deadline: Instant) -> CommitReport {
        if !self.gate.drained(deadline).await {
            tracing::warn!(
                "{} change(s) (renames, creates…) still in progress at the shutdown deadline",
                self.gate.in_progress()
            );
        }
        let writers = self.open_files.writers();
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
        // What each file was doing, for those cut off by the deadline.
        let steps: std::sync::Mutex<HashMap<u64, ShutdownStep>> = Default::default();
        let steps = &steps;
        // Several at once, not all: a write-back mount may have thousands of small files
        // closed and pending, and each commit is a connection in flight.
        let slots = &tokio::sync::Semaphore::new(AT_ONCE);
        let mut pending: FuturesUnordered<_> = writers
            .into_iter()
            .map(|(ino, w)| async move {
                let _slot = slots.acquire().await;
                (ino, self.finish_at_shutdown(ino, &w, steps).await)
            })
            .collect();
        let mut report = CommitReport::default();
        // (inode, name, reason, whether its data still needs a local copy) of the files not
        // committed.
        let mut failed: Vec<(u64, String, String, bool)> = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, pending.next()).await {
                Ok(Some((ino, result))) => {
                    let at = names.iter().position(|(i, _)| *i == ino);
                    let name = at.map(|i| names.swap_remove(i).1).unwrap_or_default();
                    match result {
                        Finished::Done => report.committed += 1,
                        Finished::Failed(why, save) => failed.push((ino, name, why, save)),
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    let steps = lock(steps);
                    for (ino, name) in names.drain(..) {
                        // Its Put Block List may have been sent: the blob has the previous
                        // version or this one (or its sibling exists or not), never a mix.
                        let why = match steps.get(&ino) {
                            Some(ShutdownStep::SaveUnfinished) => {
                                format!(
                                    "{UNFINISHED}; saving it beside the blob got no answer in time"
                                )
                            }
                            _ => "no answer in time".to_string(),
                        };
                        failed.push((ino, name, why, true));
                    }
                    break;
                }
            }
        }
        drop(pending);
        if !failed.is_empty() {
            report.failed = self.save_locally(failed).await;
        }
        // Files unlinked while open: their handles go with the mount, and so do their blobs.
        let kept = self.open_files.unlinked().everything();
        for (name, k) in kept {
            if Instant::now() >= deadline {
                tracing::warn!("{name:?} was unlinked while open and could not be deleted in time");
                continue;
            }
            self.delete_kept(&name, &k).await;
        }
        report.failed.sort();
        self.close_journal().await;
        report
    }

    /// At the end of the shutdown: the journal records of files committed (still open, so
    /// their stagings live on) go, and this mount's journal directory with them if nothing
    /// is left to finish.
    async fn close_journal(&self) {
        let Some(journal) = &self.cfg.journal else {
            return;
        };
        for (_, w) in self.open_files.writers() {
            if let Ok(mut f) = w.open.try_lock() {
                if f.staging.is_committed() {
                    f.staging.discard_journal();
                }
            }
        }
        // Whatever this process drops on its way out, what is left stays for the next start.
        journal.freeze();
        if !journal.remove_if_empty() {
            tracing::warn!(
                "files not committed stay in the staging journal {}: the next mount of this container, or `blobmount recover`, finishes them",
                journal.path().display()
            );
        }
    }

    /// What the shutdown does with one file being written, as its lifecycle says.
    async fn finish_at_shutdown(
        &self,
        ino: u64,
        w: &WriteFile,
        steps: &std::sync::Mutex<HashMap<u64, ShutdownStep>>,
    ) -> Finished {
        let mut f = w.open.lock().await;
        let step = f.state.at_shutdown();
        lock(steps).insert(ino, step);
        match step {
            ShutdownStep::Nothing => Finished::Done,
            ShutdownStep::Commit => match self.commit_locked(ino, &mut f).await {
                Ok(()) => Finished::Done,
                Err(error) => Finished::Failed(
                    format!("commit failed ({error})"),
                    !matches!(f.state, FileState::Conflicted { .. }),
                ),
            },
            ShutdownStep::SaveUnfinished => {
                let why = UNFINISHED;
                match f.staging.save_as_sibling("partial").await {
                    Ok(sibling) => {
                        f.saved(sibling.clone());
                        Finished::Failed(format!("{why}; its data was saved as {sibling}"), false)
                    }
                    Err(e) => {
                        tracing::warn!("saving the unfinished content of a file beside it failed: {e}");
                        Finished::Failed(why.to_string(), true)
                    }
                }
            }
            ShutdownStep::Drop => match &f.state {
                FileState::Broken { error } => Finished::Failed(
                    format!(
                        "a write to it failed ({error}): not committed, the blob keeps its previous version"
                    ),
                    false,
                ),
                _ => Finished::Done,
            },
        }
    }

    /// Copies the data of files that could not be committed (where `save` says so) to a
    /// private local directory (`blobmount-recovered-<UTC>` in the staging directory), so that
    /// a shutdown without the service loses nothing; gives each file's name and reason, with
    /// where its data went.
    async fn save_locally(
        &self,
        failed: Vec<(u64, String, String, bool)>,
    ) -> Vec<(String, String)> {
        let dir = recovery::directory(&self.cfg.staging_dir);
        let budget = Instant::now() + std::time::Duration::from_secs(20);
        let mut out = Vec::new();
        for (ino, name, why, save) in failed {
            if !save {
                out.push((name, why));
                continue;
            }
            let w = self.open_files.writer(ino);
            let saved = match w {
                Some(w) => {
                    let copy = async {
                        let mut f = w.open.lock().await;
                        let saved = recovery::save_locally(&mut f.staging, &name, &dir).await;
                        if saved.is_ok() {
                            // Saved there: nothing left for the next start to finish.
                            f.staging.discard_journal();
                        }
                        saved
                    };
                    match tokio::time::timeout_at(budget, copy).await {
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

/// Why a file still being written is not committed at shutdown.
const UNFINISHED: &str =
    "unfinished: it was still open and not fsynced; the blob keeps its previous version";

/// How the shutdown left one file.
enum Finished {
    /// Committed, or nothing left to commit.
    Done,
    /// Not committed, why, and whether its data still needs a local copy.
    Failed(String, bool),
}

#[cfg(test)]
mod tests {
    use crate::fs::posix::Creator;
    use std::ffi::OsStr;
    use std::time::Duration;

    use super::*;
    use crate::blob::fake::Op;
    use crate::fs::tests::setup_rw;
    use crate::fs::Errno;
    use crate::fs::ROOT_INO as ROOT;

    #[tokio::test]
    async fn finished_files_are_committed_and_unfinished_ones_saved_beside() {
        let (client, fs) = setup_rw(Duration::from_secs(60));
        client.put("c", "old c");
        let open = |name: &'static str| {
            let fs = fs.clone();
            async move {
                let (_, fh) = fs
                    .create(ROOT, OsStr::new(name), false, false, &Creator::DEFAULTS)
                    .await
                    .unwrap();
                fh
            }
        };
        let (a, b, c, d) = (
            open("a").await,
            open("b").await,
            open("c").await,
            open("d").await,
        );
        // a: written and fsynced; b, c: still being written; d: closed, but its commit failed.
        fs.write(a, 0, b"alpha").await.unwrap();
        fs.fsync(a).await.unwrap();
        fs.write(b, 0, b"beta").await.unwrap();
        fs.write(c, 0, b"new c").await.unwrap();
        fs.write(d, 0, b"delta").await.unwrap();
        client.fail_next(Op::PutBlob, crate::blob::ErrorKind::Transient);
        assert_eq!(fs.flush(d).await.map_err(Errno::from), Err(libc::EIO));
        assert_eq!(fs.gauges().files_open_for_writing, 4);
        fs.stop_changes();
        assert_eq!(
            fs.write(a, 5, b"more").await.map_err(Errno::from),
            Err(libc::EROFS)
        );
        assert_eq!(
            fs.create(ROOT, OsStr::new("e"), false, false, &Creator::DEFAULTS)
                .await
                .err()
                .map(Errno::from),
            Some(libc::EROFS)
        );
        let report = fs
            .commit_all(Instant::now() + Duration::from_secs(10))
            .await;
        assert_eq!(report.committed, 2, "{report:?}");
        assert_eq!(&client.blob("a").unwrap().0[..], b"alpha");
        assert_eq!(&client.blob("d").unwrap().0[..], b"delta");
        // Unfinished: the blob keeps its version (or stays absent); the content is beside it.
        assert!(client.blob("b").is_none());
        assert_eq!(&client.blob("c").unwrap().0[..], b"old c");
        let names = client.names();
        for (name, content) in [("b", &b"beta"[..]), ("c", b"new c")] {
            let sibling = names
                .iter()
                .find(|n| n.starts_with(&format!("{name}.partial-")))
                .unwrap_or_else(|| panic!("no partial copy of {name}: {names:?}"));
            assert_eq!(&client.blob(sibling).unwrap().0[..], content);
            let (_, why) = report.failed.iter().find(|(n, _)| n == name).unwrap();
            assert!(why.starts_with("unfinished"), "{why}");
            assert!(why.contains(sibling.as_str()), "{why}");
        }
        assert_eq!(report.failed.len(), 2, "{report:?}");
        // Reads go on.
        assert_eq!(&fs.read(a, 0, 5).await.unwrap()[..], b"alpha");
    }

    #[tokio::test]
    async fn a_commit_that_cannot_finish_in_time_is_reported() {
        let (client, fs) = setup_rw(Duration::from_secs(60));
        let (_, a) = fs
            .create(ROOT, OsStr::new("slow"), false, false, &Creator::DEFAULTS)
            .await
            .unwrap();
        fs.write(a, 0, b"data").await.unwrap();
        // Closed by its program, but not committed yet: the shutdown commits it.
        client.fail_next(Op::PutBlob, crate::blob::ErrorKind::Transient);
        assert_eq!(fs.fsync(a).await.map_err(Errno::from), Err(libc::EIO));
        client.set_delay(Op::PutBlob, Duration::from_secs(30));
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
            .create(ROOT, OsStr::new("open"), false, false, &Creator::DEFAULTS)
            .await
            .unwrap();
        fs.write(a, 0, b"kept").await.unwrap();
        fs.fsync(a).await.unwrap();
        client.set_delay(Op::CopyBlob, Duration::from_millis(300));
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
                .await
                .map_err(Errno::from),
            Err(libc::EROFS)
        );
    }
}
