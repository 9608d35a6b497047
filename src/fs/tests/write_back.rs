//! `--write-back`: close returns before the commit; what everything sees meanwhile, what
//! fsync, unlink, the shutdown and the limit do, and what a failure after close becomes.

use super::*;
use crate::fs::upload::journal::{Durable, JournalDir};
use crate::fs::write_back::WriteBackConfig;
use tokio::time::Instant;

/// A writable mount with a journal and write-back (`delay`, `limit`); the staging directory
/// lives as long as the mount.
struct WriteBackMount {
    fake: Arc<FakeClient>,
    fs: Arc<Fs>,
    journal: Arc<JournalDir>,
    _dir: tempfile::TempDir,
}

fn mount(delay: Duration, limit: u64) -> WriteBackMount {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(JournalDir::create(&dir.path().join("journal").join("c")).unwrap());
    let fake = Arc::new(FakeClient::new());
    let mut cfg = config(Duration::from_secs(60));
    cfg.read_only = false;
    cfg.staging_dir = dir.path().to_path_buf();
    cfg.journal = Some(journal.clone());
    cfg.write_back = Some(WriteBackConfig { delay, limit });
    let fs = Fs::new(fake.clone(), cfg);
    WriteBackMount {
        fake,
        fs,
        journal,
        _dir: dir,
    }
}

const HOUR: Duration = Duration::from_secs(3600);

impl WriteBackMount {
    /// Creates `name` in the root with `data`, and closes it.
    async fn write_closed(&self, name: &str, data: &[u8]) -> u64 {
        let (a, fh) = self
            .fs
            .create(ROOT_INO, OsStr::new(name), false, true, &Creator::DEFAULTS)
            .await
            .unwrap();
        self.fs.write(fh, 0, data).await.unwrap();
        self.fs.flush(fh).await.unwrap();
        self.fs.release(fh).await;
        a.ino
    }

    async fn read_all(&self, ino: u64) -> Vec<u8> {
        let (fh, _) = self.fs.open(ino, OpenMode::default()).await.unwrap();
        let got = self.fs.read(fh, 0, 1 << 20).await.unwrap().to_vec();
        self.fs.release(fh).await;
        got
    }

    /// Waits (at most 5 s) until `name` is committed.
    async fn until_committed(&self, name: &str) -> Vec<u8> {
        for _ in 0..500 {
            if let Some((data, _, _)) = self.fake.blob(name) {
                return data.to_vec();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{name} was not committed");
    }

    /// Waits (at most 2 minutes) until one commit after close has failed for good, and none
    /// went through.
    async fn until_one_failed(&self) {
        for _ in 0..1200 {
            if self.fs.gauges().write_back_failed_files == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let g = self.fs.gauges();
        assert_eq!(
            (g.write_back_failed_files, g.write_back_committed_files),
            (1, 0)
        );
    }

    fn records(&self) -> Vec<crate::fs::upload::journal::Record> {
        self.journal
            .entries()
            .into_iter()
            .map(|(_, e)| e.unwrap().1.record())
            .collect()
    }
}

#[tokio::test]
async fn close_returns_before_the_commit_and_the_file_is_seen_as_committed_meanwhile() {
    let m = mount(Duration::from_millis(300), 1 << 30);
    tokio::spawn(m.fs.clone().run_write_back());
    let data = pattern(3 * BS as usize + 5);
    let ino = m.write_closed("f", &data).await;
    // Closed: not committed, flushed to the journal as finished.
    assert!(m.fake.blob("f").is_none());
    assert_eq!(m.fake.count(Op::PutBlockList), 0);
    let r = m.records();
    assert_eq!(r.len(), 1);
    assert!(r[0].durable == Durable::Finished && r[0].synced, "{r:?}");
    let g = m.fs.gauges();
    let pending = (g.write_back_pending_files, g.write_back_pending_bytes);
    assert_eq!(pending, (1, data.len() as u64));
    // Seen as it is: lookup, getattr, listing, read.
    assert_eq!(
        lookup(&m.fs, ROOT_INO, "f").await.unwrap().size,
        data.len() as u64
    );
    assert_eq!(m.fs.getattr(ino).await.unwrap().size, data.len() as u64);
    assert!(names(&m.fs, ROOT_INO).await.iter().any(|(n, _)| n == "f"));
    assert_eq!(m.read_all(ino).await, data);
    // Committed within the delay, once; the journal record goes.
    assert_eq!(m.until_committed("f").await, data);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(m.records().is_empty());
    let g = m.fs.gauges();
    assert_eq!(
        (g.write_back_pending_files, g.write_back_committed_files),
        (0, 1)
    );
    assert_eq!(m.fake.count(Op::PutBlockList), 1);
    assert_eq!(m.read_all(ino).await, data);
}

#[tokio::test]
async fn fsync_commits_before_it_returns() {
    let m = mount(HOUR, 1 << 30);
    tokio::spawn(m.fs.clone().run_write_back());
    let (_, fh) =
        m.fs.create(ROOT_INO, OsStr::new("s"), false, true, &Creator::DEFAULTS)
            .await
            .unwrap();
    m.fs.write(fh, 0, b"synced").await.unwrap();
    m.fs.fsync(fh).await.unwrap();
    assert_eq!(&m.fake.blob("s").unwrap().0[..], b"synced");
    m.fs.flush(fh).await.unwrap();
    m.fs.release(fh).await;
    // Nothing more to commit: no second commit, nothing pending.
    assert_eq!(m.fs.gauges().write_back_pending_files, 0);
    assert_eq!(m.fake.count(Op::PutBlob), 1);
}

#[tokio::test]
async fn a_file_written_again_before_its_commit_is_committed_at_its_next_close() {
    let m = mount(Duration::from_millis(50), 1 << 30);
    tokio::spawn(m.fs.clone().run_write_back());
    let ino = m.write_closed("f", b"first").await;
    let (fh, _) =
        m.fs.open(
            ino,
            OpenMode {
                write: true,
                truncate: false,
            },
        )
        .await
        .unwrap();
    m.fs.write(fh, 5, b" and more").await.unwrap();
    // The delay passes while the file is unfinished again: nothing is committed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(m.fake.blob("f").is_none(), "unfinished content committed");
    m.fs.flush(fh).await.unwrap();
    m.fs.release(fh).await;
    assert_eq!(m.until_committed("f").await, b"first and more");
}

#[tokio::test]
async fn a_file_unlinked_before_its_commit_is_never_committed() {
    let m = mount(HOUR, 1 << 30);
    m.fake.put("old", "the old version");
    let old = lookup(&m.fs, ROOT_INO, "old").await.unwrap();
    let (fh, _) =
        m.fs.open(
            old.ino,
            OpenMode {
                write: true,
                truncate: true,
            },
        )
        .await
        .unwrap();
    m.fs.write(fh, 0, b"new").await.unwrap();
    m.fs.flush(fh).await.unwrap();
    m.fs.release(fh).await;
    m.write_closed("new", b"never").await;
    m.fs.unlink(ROOT_INO, OsStr::new("old")).await.unwrap();
    m.fs.unlink(ROOT_INO, OsStr::new("new")).await.unwrap();
    m.fs.stop_changes();
    let report =
        m.fs.commit_all(Instant::now() + Duration::from_secs(5))
            .await;
    assert!(report.is_complete(), "{report:?}");
    assert!(m.fake.blob("old").is_none() && m.fake.blob("new").is_none());
    assert!(m.records().is_empty());
}

#[tokio::test]
async fn the_shutdown_commits_every_closed_file() {
    let m = mount(HOUR, 1 << 30);
    tokio::spawn(m.fs.clone().run_write_back());
    for i in 0..40 {
        m.write_closed(&format!("f{i}"), &pattern(100 + i)).await;
    }
    assert_eq!(m.fs.gauges().write_back_pending_files, 40);
    assert!(m.fake.names().is_empty());
    m.fs.stop_changes();
    let report =
        m.fs.commit_all(Instant::now() + Duration::from_secs(5))
            .await;
    assert_eq!((report.committed, report.failed.len()), (40, 0));
    for i in 0..40 {
        assert_eq!(
            &m.fake.blob(&format!("f{i}")).unwrap().0[..],
            &pattern(100 + i)[..]
        );
    }
    assert!(m.records().is_empty());
}

#[tokio::test]
async fn a_conflict_after_close_keeps_their_version_and_saves_this_one_beside() {
    let m = mount(Duration::from_millis(200), 1 << 30);
    tokio::spawn(m.fs.clone().run_write_back());
    m.write_closed("c", b"mine").await;
    // Someone else creates it before the commit.
    m.fake.put("c", "theirs");
    m.until_one_failed().await;
    assert_eq!(&m.fake.blob("c").unwrap().0[..], b"theirs");
    let sibling = m
        .fake
        .names()
        .into_iter()
        .find(|n| n.starts_with("c.conflict-"))
        .expect("a conflict copy");
    assert_eq!(&m.fake.blob(&sibling).unwrap().0[..], b"mine");
}

#[tokio::test]
async fn beyond_the_limit_writers_wait_while_the_oldest_files_are_committed() {
    let m = mount(HOUR, 2 * BS);
    tokio::spawn(m.fs.clone().run_write_back());
    m.fake
        .set_delay(Op::PutBlockList, Duration::from_millis(200));
    let data = pattern(3 * BS as usize);
    m.write_closed("big", &data).await;
    // Over the limit: committed without waiting for the delay, and the next write waits
    // until it is.
    let (_, fh) =
        m.fs.create(
            ROOT_INO,
            OsStr::new("next"),
            false,
            true,
            &Creator::DEFAULTS,
        )
        .await
        .unwrap();
    m.fs.write(fh, 0, b"x").await.unwrap();
    assert_eq!(&m.fake.blob("big").unwrap().0[..], &data[..]);
    assert_eq!(m.fs.gauges().write_back_pending_files, 0);
    m.fs.flush(fh).await.unwrap();
    m.fs.release(fh).await;
    // Under the limit: pending for its delay.
    assert_eq!(m.fs.gauges().write_back_pending_files, 1);
    assert!(m.fake.blob("next").is_none());
}

/// A commit after close that keeps failing is tried five times over about 30 s, then given
/// up: counted as failed, the blob left as it was, and the content saved locally (the
/// directory named in the log), so nothing the program wrote is lost.
#[tokio::test(start_paused = true)]
async fn a_commit_that_keeps_failing_after_close_is_given_up_counted_and_saved_locally() {
    let m = mount(Duration::from_millis(200), 1 << 30);
    for _ in 0..20 {
        m.fake.fail_next(Op::PutBlob, ErrorKind::Transient);
        m.fake.fail_next(Op::PutBlockList, ErrorKind::Transient);
    }
    tokio::spawn(m.fs.clone().run_write_back());
    let started = Instant::now();
    m.write_closed("lost-net", b"the content close said was kept")
        .await;
    m.until_one_failed().await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(40),
        "{waited:?}"
    );
    let attempts = m.fake.count(Op::PutBlob) + m.fake.count(Op::PutBlockList);
    assert_eq!(attempts, 5, "five attempts");
    assert!(m.fake.blob("lost-net").is_none(), "never committed");
    // Saved in the staging directory's blobmount-recovered-<UTC>/.
    let mut saved = Vec::new();
    for e in std::fs::read_dir(m._dir.path()).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("blobmount-recovered-") {
            saved.push(std::fs::read(e.path().join("lost-net")).unwrap());
        }
    }
    assert_eq!(saved, [b"the content close said was kept".to_vec()]);
    assert_eq!(m.fs.gauges().write_back_pending_files, 0);
}

/// One failed commit after close is tried again after its wait, and counted once committed.
#[tokio::test(start_paused = true)]
async fn a_commit_that_fails_once_after_close_is_tried_again_and_committed() {
    let m = mount(Duration::from_millis(200), 1 << 30);
    m.fake.fail_next(Op::PutBlob, ErrorKind::Transient);
    m.fake.fail_next(Op::PutBlockList, ErrorKind::Transient);
    tokio::spawn(m.fs.clone().run_write_back());
    m.write_closed("flaky", b"second time lucky").await;
    assert_eq!(&m.until_committed("flaky").await[..], b"second time lucky");
    let g = m.fs.gauges();
    assert_eq!(
        (g.write_back_failed_files, g.write_back_committed_files),
        (0, 1)
    );
    assert!(m.records().is_empty(), "its record is gone once committed");
}

/// `utimes` and `chmod` after close (what `tar x` does to every file) keep the content
/// finished: the new metadata is in the record at once, nothing is flushed again (the content
/// and its record were at close), and the commit carries it.
#[tokio::test]
async fn a_time_set_after_close_is_committed_without_flushing_the_file_again() {
    let m = mount(HOUR, 1 << 30);
    let ino = m.write_closed("t", b"tarred").await;
    let w = m.fs.writer(ino).expect("pending, so still open");
    let flushes = w.open.lock().await.staging.journal_flushes();
    assert!(flushes >= 1, "close flushed the record");
    let t = std::time::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    m.fs.set_attrs(ino, perm_mtime(Some(0o640), Some(t)))
        .await
        .unwrap();
    assert_eq!(w.open.lock().await.staging.journal_flushes(), flushes);
    let r = m.records();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].durable, Durable::Finished);
    let mtime = crate::fs::inode::format_mtime(t).unwrap();
    assert_eq!(
        r[0].metadata.get(crate::fs::inode::META_MTIME),
        Some(&mtime)
    );
    drop(w);
    m.fs.stop_changes();
    let report =
        m.fs.commit_all(Instant::now() + Duration::from_secs(10))
            .await;
    assert_eq!(report.committed, 1, "{:?}", report.failed);
    let (data, meta, _) = m.fake.blob("t").unwrap();
    assert_eq!(&data[..], b"tarred");
    assert_eq!(meta.get(crate::fs::inode::META_MTIME), Some(&mtime));
}
