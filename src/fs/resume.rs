//! Finishing what a mount that is gone (kill -9, an OOM kill, a power cut) left in its staging
//! journal: at the next mount of the same container, in the background, or with
//! `blobmount recover`.
//!
//! For each file in a journal directory nobody holds any more (see
//! [`super::upload::journal`]):
//! - content the program had finished (closed or fsynced) is committed under its name, with
//!   the condition it was written under (the version it started from, or must-not-exist),
//!   sending only the blocks the service does not still hold uncommitted;
//! - content written after the last close or fsync is committed beside the blob as
//!   `NAME.partial-<UTC>`, never over it;
//! - a blob changed by someone else meanwhile keeps their version; this content goes to
//!   `NAME.conflict-<UTC>`;
//! - a commit whose answer was lost before the mount died is recognised as done (its block
//!   ids are unique to the upload);
//! - a record from another format version, or damaged, is refused with the reason and left in
//!   place, untouched; so is a file whose commit fails now (tried again at the next start).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use futures::stream::{self, StreamExt};

use super::upload::journal::{Durable, Entry, JournalDir};
use super::upload::StagingArea;

/// Files resumed at once (each within the write budget).
const AT_ONCE: usize = 4;

/// What a resume did, for the log, the status line and the metrics.
#[derive(Debug, Default)]
pub struct ResumeProgress {
    /// Files found in journals left behind.
    pub found: AtomicU64,
    /// Of them, finished: committed under their name (or found committed already).
    pub committed: AtomicU64,
    /// Saved beside their blob (`.partial-`: unfinished, `.conflict-`: changed meanwhile).
    pub saved_beside: AtomicU64,
    /// Refused (another format, damaged) or failed: left in place for the next start.
    pub left: AtomicU64,
    /// Blocks found in the service and not sent again, and blocks sent.
    pub blocks_kept: AtomicU64,
    pub blocks_sent: AtomicU64,
}

impl ResumeProgress {
    /// Files found and not done yet.
    pub fn pending(&self) -> u64 {
        let done = self.committed.load(Ordering::Relaxed)
            + self.saved_beside.load(Ordering::Relaxed)
            + self.left.load(Ordering::Relaxed);
        self.found.load(Ordering::Relaxed).saturating_sub(done)
    }

    /// One line for the log and `systemctl status`.
    pub fn summary(&self) -> String {
        format!(
            "{} file(s) left by an earlier mount: {} committed, {} saved beside their blob, {} left in place, {} to go ({} block(s) found in the service, {} sent)",
            self.found.load(Ordering::Relaxed),
            self.committed.load(Ordering::Relaxed),
            self.saved_beside.load(Ordering::Relaxed),
            self.left.load(Ordering::Relaxed),
            self.pending(),
            self.blocks_kept.load(Ordering::Relaxed),
            self.blocks_sent.load(Ordering::Relaxed),
        )
    }
}

/// Finishes the files of every journal directory under `container_dir` that nobody holds
/// (`except`: this mount's own), a few at once. Returns once all are done or left in place.
pub async fn resume_all(
    area: &StagingArea,
    container_dir: &Path,
    except: Option<&Path>,
    progress: &ResumeProgress,
) {
    for path in JournalDir::others(container_dir, except) {
        match JournalDir::adopt(&path) {
            Ok(Some(dir)) => resume_dir(area, dir, progress).await,
            Ok(None) => tracing::debug!("journal {} belongs to a running mount", path.display()),
            Err(e) => tracing::warn!("cannot open the journal {}: {e}", path.display()),
        }
    }
}

/// Finishes the files of one adopted journal directory, then removes it if nothing is left.
/// Records of one blob are finished one after another, newest first (the newest content gets
/// the name; an older one, whose condition no longer holds, goes to a conflict copy);
/// different blobs a few at once.
async fn resume_dir(area: &StagingArea, dir: JournalDir, progress: &ResumeProgress) {
    dir.remove_strays();
    let entries = dir.entries();
    if entries.is_empty() {
        dir.remove_if_empty();
        return;
    }
    progress
        .found
        .fetch_add(entries.len() as u64, Ordering::Relaxed);
    tracing::info!(
        "resuming {} file(s) a mount that stopped left in its journal {}",
        entries.len(),
        dir.path().display()
    );
    let mut by_blob: BTreeMap<String, Vec<(std::fs::File, Entry)>> = BTreeMap::new();
    for (record, opened) in entries {
        match opened {
            Ok((file, entry)) => by_blob
                .entry(entry.record().blob)
                .or_default()
                .push((file, entry)),
            Err(why) => {
                progress.left.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    "journal record {} refused: {why}; it is left in place, untouched",
                    record.display()
                );
            }
        }
    }
    let boot_id = dir.boot_id().to_string();
    stream::iter(by_blob.into_values())
        .for_each_concurrent(AT_ONCE, |mut group| {
            group.sort_by_key(|(_, e)| std::cmp::Reverse(e.record().created_ns));
            let boot_id = boot_id.clone();
            async move {
                for (file, entry) in group {
                    resume_one(area, file, entry, &boot_id, progress).await;
                }
            }
        })
        .await;
    tracing::info!("{}", progress.summary());
    let path: PathBuf = dir.path().to_path_buf();
    if !dir.remove_if_empty() {
        tracing::warn!(
            "the journal {} still holds files that could not be finished (see above): tried again at the next start, or with `blobmount recover`",
            path.display()
        );
    }
}

/// Finishes one file. Whatever does not succeed leaves its record in place (a staging that is
/// not committed keeps its journal when dropped), to be tried again at the next start.
async fn resume_one(
    area: &StagingArea,
    file: std::fs::File,
    entry: Entry,
    boot_id: &str,
    progress: &ResumeProgress,
) {
    let record = entry.path().to_path_buf();
    let left = |why: String| {
        progress.left.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            "cannot finish the file of journal record {}: {why}; left in place for the next start",
            record.display()
        );
    };
    if entry.record().durable == Durable::Committed {
        // Committed before the mount stopped: nothing to do.
        progress.committed.fetch_add(1, Ordering::Relaxed);
        entry.remove();
        return;
    }
    let as_left = entry.record();
    let reopened = match area.reopen(file, entry, boot_id).await {
        Ok(r) => r,
        Err(e) => return left(e.to_string()),
    };
    let mut s = reopened.staging;
    let blob = s.blob().to_string();
    progress
        .blocks_kept
        .fetch_add(reopened.blocks_kept, Ordering::Relaxed);
    progress
        .blocks_sent
        .fetch_add(reopened.blocks_to_send, Ordering::Relaxed);
    if !reopened.finished {
        // The blocks it sent stay staged under the blob's name (the sibling is sent under its
        // own): a program writing the same file again reuses those it writes alike.
        if let Some(reuse) = &area.reuse {
            reuse.offer(&as_left);
        }
        match s.save_as_sibling("partial").await {
            Ok(sibling) => {
                progress.saved_beside.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    blob,
                    "resumed: written after its last close or fsync when the mount stopped (unfinished): \
                     the blob keeps its version, this content was saved as {sibling:?}"
                );
            }
            Err(e) => {
                save_locally(
                    area,
                    &mut s,
                    &blob,
                    &format!("saving its unfinished content beside it failed ({e})"),
                    progress,
                    left,
                )
                .await
            }
        }
        return;
    }
    s.send_within_budget().await;
    match s.commit().await {
        Ok(_) => {
            progress.committed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                blob,
                "resumed: committed ({} block(s) were in the service already, {} sent)",
                reopened.blocks_kept,
                reopened.blocks_to_send
            );
        }
        Err(e) if e.is_conflict() => match s.save_as_sibling("conflict").await {
            Ok(sibling) => {
                progress.saved_beside.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    blob,
                    "resumed: the blob was changed by someone else since this file was written ({e}); \
                     their version was kept, and this file's content was saved as {sibling:?}"
                );
            }
            Err(e2) => {
                let why = format!("it was changed by someone else meanwhile ({e}), and saving this content beside it failed ({e2})");
                save_locally(area, &mut s, &blob, &why, progress, left).await
            }
        },
        Err(e) => left(format!("committing {blob:?} failed: {e}")),
    }
}

/// Content that cannot go to the service for good (its sibling cannot be made: e.g. it keeps
/// ranges of a version that no longer exists) is copied to the local recovery directory, so a
/// record does not fail at every start; if even that fails, the record stays.
async fn save_locally(
    area: &StagingArea,
    s: &mut super::upload::Staging,
    blob: &str,
    why: &str,
    progress: &ResumeProgress,
    left: impl Fn(String),
) {
    let dir = super::recovery::directory(&area.dir);
    match super::recovery::save_locally(s, blob, &dir).await {
        Ok(path) => {
            progress.saved_beside.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                blob,
                "resumed: {why}; its content is saved in {}",
                path.display()
            );
            s.discard_journal();
        }
        Err(e) => left(format!(
            "{blob:?}: {why}, and a local copy failed too ({e})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::fake::{FakeClient, Fault, Op};
    use crate::blob::BlobClient;
    use crate::fs::upload::journal::{Durable, JournalDir};
    use crate::fs::upload::reuse::ReuseIndex;
    use crate::fs::upload::{Grid, Staging, WriteBudget};
    use bytes::Bytes;
    use std::collections::HashMap;
    use std::sync::Arc;

    const BS: u64 = 1000;

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
            .collect()
    }

    struct Env {
        fake: Arc<FakeClient>,
        staging_dir: tempfile::TempDir,
        /// The blocks on offer in the mounts of this test (one mount after another).
        reuse: Arc<ReuseIndex>,
    }

    impl Env {
        fn new() -> Env {
            Env {
                fake: Arc::new(FakeClient::new()),
                staging_dir: tempfile::tempdir().unwrap(),
                reuse: Default::default(),
            }
        }

        fn container_dir(&self) -> PathBuf {
            self.staging_dir.path().join("journal").join("c")
        }

        /// A mount's staging area, with a journal (`Some`) or, for the resume, without.
        fn area(&self, journal: Option<JournalDir>) -> StagingArea {
            StagingArea {
                client: self.fake.clone(),
                budget: WriteBudget::new(64 * BS),
                dir: self.staging_dir.path().to_path_buf(),
                grid: Grid::new(BS),
                journal: journal.map(Arc::new),
                reuse: Some(self.reuse.clone()),
            }
        }

        /// A mount that writes `name` (from scratch, or over its current version) with
        /// `write`, then dies: its journal is left behind as the write left it.
        async fn crash_after(&self, name: &str, write: impl AsyncFnOnce(&mut Staging)) {
            self.crash_after_opening(name, true, write).await
        }

        /// [`Env::crash_after`], the file opened as it is (`truncate` false) or emptied.
        async fn crash_after_opening(
            &self,
            name: &str,
            truncate: bool,
            write: impl AsyncFnOnce(&mut Staging),
        ) {
            let area = self.area(Some(JournalDir::create(&self.container_dir()).unwrap()));
            let existing = self
                .fake
                .properties(name)
                .await
                .ok()
                .map(|p| (Arc::from(p.etag.as_str()), p.size));
            let mut s = area
                .stage(name.into(), existing, truncate, HashMap::new())
                .unwrap();
            write(&mut s).await;
            // The uploads under way finish (or not) as the process dies; nothing else runs.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            std::mem::forget(s);
        }

        async fn resume(&self) -> ResumeProgress {
            let progress = ResumeProgress::default();
            resume_all(&self.area(None), &self.container_dir(), None, &progress).await;
            progress
        }

        /// The one blob named `NAME.KIND-…` beside `name` (a partial or conflict copy).
        fn sibling(&self, name: &str, kind: &str) -> String {
            let names = self.fake.names();
            names
                .iter()
                .find(|n| n.starts_with(&format!("{name}.{kind}-")))
                .unwrap_or_else(|| panic!("no {kind} copy of {name} in {names:?}"))
                .clone()
        }

        fn records(&self) -> usize {
            JournalDir::others(&self.container_dir(), None)
                .iter()
                .flat_map(|d| std::fs::read_dir(d).unwrap())
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "json")
                })
                .count()
        }
    }

    fn n(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn a_finished_file_is_committed_sending_only_the_blocks_the_service_lacks() {
        let env = Env::new();
        let data = pattern(5 * BS as usize + 17, 1);
        env.crash_after("f", async |s| {
            s.write(0, &data).await.unwrap();
            s.mark_finished(true).unwrap();
        })
        .await;
        assert!(env.fake.blob("f").is_none());
        let sent_before = env.fake.bytes_uploaded();
        let puts_before = env.fake.count(Op::PutBlock);
        let p = env.resume().await;
        assert_eq!(env.fake.blob("f").unwrap().0.as_ref(), &data[..]);
        // Blocks 0-4 went up while the writer moved past them; only the last one is sent.
        assert_eq!(n(&p.blocks_kept), 5);
        assert_eq!(n(&p.blocks_sent), 1);
        assert_eq!(env.fake.count(Op::PutBlock) - puts_before, 1);
        assert_eq!(env.fake.bytes_uploaded() - sent_before, 17);
        assert_eq!((n(&p.committed), n(&p.left), p.pending()), (1, 0, 0));
        assert_eq!(env.records(), 0);
        assert!(JournalDir::others(&env.container_dir(), None).is_empty());
    }

    #[tokio::test]
    async fn a_block_changed_after_it_was_sent_is_sent_again() {
        let env = Env::new();
        let mut data = pattern(3 * BS as usize, 2);
        let changed = data.clone();
        env.crash_after("f", async |s| {
            s.write(0, &changed).await.unwrap();
            // Block 0 was sent; its local bytes change (a write the record does not show
            // yet, as after a crash between the write and the record).
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            s.mark_finished(false).unwrap();
            use std::os::unix::fs::FileExt;
            s.local_file().write_all_at(b"XYZ", 10).unwrap();
        })
        .await;
        data[10..13].copy_from_slice(b"XYZ");
        let p = env.resume().await;
        assert_eq!(env.fake.blob("f").unwrap().0.as_ref(), &data[..]);
        assert_eq!(
            n(&p.blocks_kept),
            1,
            "block 1 only: block 0's bytes are not those sent"
        );
        assert_eq!(n(&p.blocks_sent), 2);
    }

    #[tokio::test]
    async fn a_commit_whose_answer_was_lost_is_recognised_and_not_copied() {
        let env = Env::new();
        let data = pattern(2 * BS as usize + 3, 3);
        env.crash_after("f", async |s| {
            s.write(0, &data).await.unwrap();
            s.mark_finished(false).unwrap();
            env.fake
                .inject_next(Op::PutBlockList, Fault::LoseAnswerAndGiveUp);
            assert!(s.commit().await.is_err());
        })
        .await;
        // It landed; the mount died before it knew.
        assert_eq!(env.fake.blob("f").unwrap().0.as_ref(), &data[..]);
        let p = env.resume().await;
        assert_eq!(env.fake.blob("f").unwrap().0.as_ref(), &data[..]);
        assert_eq!((n(&p.committed), n(&p.saved_beside), n(&p.left)), (1, 0, 0));
        assert_eq!(env.fake.names(), vec!["f".to_string()], "no conflict copy");
    }

    /// A copy cut off by a crash, resumed (its content saved as `.partial-`), then run again:
    /// the blocks it writes as before are committed under the ids the first run staged; a
    /// block written otherwise, and the blocks the first run had not sent, are sent.
    #[tokio::test]
    async fn writing_the_interrupted_file_again_sends_only_what_it_had_not_sent() {
        let env = Env::new();
        let data = pattern(4 * BS as usize + 9, 6);
        env.crash_after("f", async |s| {
            s.write(0, &data[..3 * BS as usize + 5]).await.unwrap()
        })
        .await;
        env.resume().await;
        assert!(env.fake.blob(&env.sibling("f", "partial")).is_some());
        // Blocks 0, 1 and 2 were sent by the first run; the second changes block 1.
        let mut again = data.clone();
        again[BS as usize + 3] ^= 0xff;
        let area = env.area(Some(JournalDir::create(&env.container_dir()).unwrap()));
        let (puts, lists) = (
            env.fake.count(Op::PutBlock),
            env.fake.count(Op::GetBlockList),
        );
        let mut s = area.stage("f".into(), None, true, HashMap::new()).unwrap();
        s.write(0, &again).await.unwrap();
        s.commit().await.unwrap();
        assert_eq!(env.fake.blob("f").unwrap().0.as_ref(), &again[..]);
        // Sent: block 1 (changed), 3 and 4 (never sent); one Get Block List said 0 and 2 are
        // still there.
        assert_eq!(env.fake.count(Op::PutBlock) - puts, 3);
        assert_eq!(env.fake.count(Op::GetBlockList) - lists, 1);
        assert_eq!(n(&env.reuse.blocks_reused), 2);
        assert_eq!(n(&env.reuse.bytes_reused), 2 * BS);
        // Committed: what was on offer for "f" is gone with its uncommitted blocks.
        assert!(env.reuse.candidate("f", 0, BS).is_none());
    }

    /// A block found staged that expires before the commit (the service keeps uncommitted
    /// blocks 7 days) makes Put Block List fail with InvalidBlockList: its bytes are sent after
    /// all, and the commit made once more.
    #[tokio::test]
    async fn an_offered_block_that_expires_before_the_commit_is_sent() {
        let env = Env::new();
        let data = pattern(4 * BS as usize + 9, 8);
        env.crash_after("f", async |s| {
            s.write(0, &data[..3 * BS as usize + 5]).await.unwrap()
        })
        .await;
        env.resume().await;
        let offered: Vec<String> = (0..3)
            .map(|i| env.reuse.candidate("f", i * BS, BS).unwrap().id)
            .collect();
        let area = env.area(Some(JournalDir::create(&env.container_dir()).unwrap()));
        let mut s = area.stage("f".into(), None, true, HashMap::new()).unwrap();
        s.write(0, &data).await.unwrap();
        // The uploads have found blocks 0, 1 and 2 staged; then 1 expires.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(n(&env.reuse.blocks_reused), 3);
        env.fake.drop_uncommitted_block("f", &offered[1]);
        let (puts, lists) = (
            env.fake.count(Op::PutBlock),
            env.fake.count(Op::PutBlockList),
        );
        s.commit().await.unwrap();
        assert_eq!(env.fake.blob("f").unwrap().0.as_ref(), &data[..]);
        // The last block, then the three reused ones under ids of this upload.
        assert_eq!(env.fake.count(Op::PutBlock) - puts, 4);
        assert_eq!(env.fake.count(Op::PutBlockList) - lists, 2);
        assert_eq!(n(&env.reuse.blocks_reused), 0);
        // Offered ids went to this write alone: another write of "f" finds none.
        assert!((0..3).all(|i| env.reuse.candidate("f", i * BS, BS).is_none()));
    }

    /// Offered blocks the service no longer holds (the blob was committed meanwhile by someone
    /// else, which drops its uncommitted blocks) are sent: the commit never names a block the
    /// service lacks.
    #[tokio::test]
    async fn offered_blocks_the_service_dropped_are_sent() {
        let env = Env::new();
        let data = pattern(2 * BS as usize + 9, 7);
        env.crash_after("f", async |s| s.write(0, &data).await.unwrap())
            .await;
        env.resume().await;
        env.fake
            .put_blob("f", Bytes::from_static(b"theirs"), &Default::default())
            .await
            .unwrap();
        let area = env.area(Some(JournalDir::create(&env.container_dir()).unwrap()));
        let puts = env.fake.count(Op::PutBlock);
        let existing = env.fake.properties("f").await.unwrap();
        let mut s = area
            .stage(
                "f".into(),
                Some((existing.etag.as_str().into(), existing.size)),
                true,
                HashMap::new(),
            )
            .unwrap();
        s.write(0, &data).await.unwrap();
        s.commit().await.unwrap();
        assert_eq!(env.fake.blob("f").unwrap().0.as_ref(), &data[..]);
        assert_eq!(env.fake.count(Op::PutBlock) - puts, 3);
        assert_eq!(n(&env.reuse.blocks_reused), 0);
    }

    #[tokio::test]
    async fn unfinished_content_goes_beside_the_blob_which_keeps_its_version() {
        let env = Env::new();
        env.fake.put("f", b"old".to_vec());
        let data = pattern(2 * BS as usize + 9, 4);
        env.crash_after("f", async |s| s.write(0, &data).await.unwrap())
            .await;
        let p = env.resume().await;
        assert_eq!(env.fake.blob("f").unwrap().0.as_ref(), b"old");
        let partial = env.sibling("f", "partial");
        assert_eq!(env.fake.blob(&partial).unwrap().0.as_ref(), &data[..]);
        assert_eq!((n(&p.saved_beside), n(&p.left)), (1, 0));
        assert_eq!(env.records(), 0);
    }

    #[tokio::test]
    async fn a_file_changed_in_place_is_finished_whole_from_its_old_version() {
        let env = Env::new();
        let old = pattern(5 * BS as usize, 8);
        let mut new = old.clone();
        new[1500..1510].copy_from_slice(b"0123456789");
        for finished in [false, true] {
            env.fake.put("f", old.clone());
            env.crash_after_opening("f", false, async |s| {
                s.write(1500, b"0123456789").await.unwrap();
                if finished {
                    s.mark_finished(false).unwrap();
                }
            })
            .await;
            let p = env.resume().await;
            assert_eq!(n(&p.left), 0);
            let got = if finished {
                "f".to_string()
            } else {
                assert_eq!(env.fake.blob("f").unwrap().0.as_ref(), &old[..]);
                env.sibling("f", "partial")
            };
            // The untouched blocks come from the old version, not from the (sparse) local copy.
            assert_eq!(
                env.fake.blob(&got).unwrap().0.as_ref(),
                &new[..],
                "finished: {finished}"
            );
            env.fake.remove(&got);
        }
    }

    #[tokio::test]
    async fn a_resume_cut_off_twice_never_reuses_a_block_id() {
        let env = Env::new();
        let data = pattern(4 * BS as usize, 9);
        env.crash_after("f", async |s| {
            s.write(0, &data).await.unwrap();
            s.mark_finished(false).unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            // Block 1 changes behind the record's back: sent again at resume, with block 3
            // (never sent).
            use std::os::unix::fs::FileExt;
            s.local_file().write_all_at(b"B", BS).unwrap();
        })
        .await;
        let mut want = data.clone();
        want[BS as usize] = b'B';
        // The first resume sends block 1 (its first new id), then fails on block 3.
        env.fake.inject_next(Op::PutBlock, Fault::LoseAnswer);
        env.fake
            .inject_next(Op::PutBlock, Fault::Fail(crate::blob::ErrorKind::Forbidden));
        let p = env.resume().await;
        assert_eq!(n(&p.left), 1);
        assert_eq!(env.fake.pending_faults(), 0);
        // The second keeps block 1 as the first sent it; block 3 must get an id of its own
        // (had it the first resume's first id again, it would replace block 1's bytes).
        let p = env.resume().await;
        assert_eq!((n(&p.committed), n(&p.blocks_kept)), (1, 3));
        let (got, _, _) = env.fake.blob("f").unwrap();
        assert!(got.as_ref() == &want[..], "the blocks are not mixed");
    }

    #[tokio::test]
    async fn a_blob_changed_meanwhile_keeps_the_other_version() {
        let env = Env::new();
        let data = pattern(BS as usize * 2, 5);
        env.crash_after("f", async |s| {
            s.write(0, &data).await.unwrap();
            s.mark_finished(false).unwrap();
        })
        .await;
        env.fake
            .put_blob("f", Bytes::from_static(b"theirs"), &Default::default())
            .await
            .unwrap();
        let p = env.resume().await;
        assert_eq!(env.fake.blob("f").unwrap().0.as_ref(), b"theirs");
        let copy = env.sibling("f", "conflict");
        assert_eq!(env.fake.blob(&copy).unwrap().0.as_ref(), &data[..]);
        assert_eq!(n(&p.saved_beside), 1);
    }

    #[tokio::test]
    async fn a_failed_resume_leaves_the_record_for_the_next_start() {
        let env = Env::new();
        let data = pattern(BS as usize + 1, 6);
        env.crash_after("f", async |s| {
            s.write(0, &data).await.unwrap();
            s.mark_finished(false).unwrap();
        })
        .await;
        env.fake
            .fail_next(Op::PutBlockList, crate::blob::ErrorKind::Forbidden);
        let p = env.resume().await;
        assert_eq!(n(&p.left), 1);
        assert!(env.fake.blob("f").is_none());
        assert_eq!(env.records(), 1, "left in place");
        // The next start finishes it.
        let p = env.resume().await;
        assert_eq!(n(&p.committed), 1);
        assert_eq!(env.fake.blob("f").unwrap().0.as_ref(), &data[..]);
        assert_eq!(env.records(), 0);
    }

    #[tokio::test]
    async fn a_committed_record_is_only_cleaned_and_a_running_mounts_journal_is_not_touched() {
        let env = Env::new();
        let data = pattern(10, 7);
        env.crash_after("f", async |s| {
            s.write(0, &data).await.unwrap();
            s.mark_finished(false).unwrap();
            s.commit().await.unwrap();
            assert_eq!(s.journal_record().unwrap().durable, Durable::Committed);
        })
        .await;
        // A mount running now holds its own journal.
        let running = JournalDir::create(&env.container_dir()).unwrap();
        let area = StagingArea {
            journal: Some(Arc::new(running)),
            ..env.area(None)
        };
        let mut s = area.stage("g".into(), None, true, HashMap::new()).unwrap();
        s.write(0, b"in progress").await.unwrap();
        let puts = env.fake.count(Op::PutBlockList) + env.fake.count(Op::PutBlob);
        let p = env.resume().await;
        assert_eq!((n(&p.found), n(&p.committed)), (1, 1));
        assert_eq!(
            env.fake.count(Op::PutBlockList) + env.fake.count(Op::PutBlob),
            puts
        );
        assert!(env.fake.blob("g").is_none(), "not the running mount's file");
        assert_eq!(env.records(), 1, "the running mount's record stays");
    }
}
