//! The filesystem core under faults, against the in-memory fake: lost answers at each kind of
//! mutating request, failures that must leave the data somewhere, and versions that must not
//! mix. (The same promises are checked through a real mount in tests/faults.rs.)

use crate::fs::posix::Creator;
use std::ffi::OsStr;
use std::time::Duration;

use super::tests::setup_rw;
use super::*;
use crate::blob::fake::{Fault, Op};

const ROOT: u64 = ROOT_INO;

async fn create(fs: &Fs, name: &str) -> u64 {
    fs.create(ROOT, OsStr::new(name), false, false, &Creator::DEFAULTS)
        .await
        .unwrap()
        .1
}

async fn open_for_writing(fs: &Fs, ino: u64, truncate: bool) -> u64 {
    let mode = OpenMode {
        write: true,
        truncate,
    };
    fs.open(ino, mode).await.unwrap().0
}

async fn rename(fs: &Fs, from: &str, to: &str) -> Result<(), Errno> {
    fs.rename(ROOT, OsStr::new(from), ROOT, OsStr::new(to), false)
        .await
        .map_err(Errno::from)
}

#[tokio::test]
async fn a_rename_whose_delete_answer_was_lost_keeps_the_file() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    fake.put("a", "precious");
    // The delete went through; its retry answers 412 (If-Match on a blob that is gone).
    fake.inject_next(Op::DeleteBlob, Fault::LoseAnswer);
    assert_eq!(rename(&fs, "a", "b").await, Ok(()));
    assert_eq!(fake.names(), vec!["b"]);
    assert_eq!(&fake.blob("b").unwrap().0[..], b"precious");
    // Retries ran out after the delete went through: the move is complete all the same.
    fake.inject_next(Op::DeleteBlob, Fault::LoseAnswerAndGiveUp);
    assert_eq!(rename(&fs, "b", "c").await, Ok(()));
    assert_eq!(fake.names(), vec!["c"]);
}

#[tokio::test]
async fn a_rename_whose_delete_failed_takes_its_copy_back() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    fake.put("a", "stays");
    fake.fail_next(Op::DeleteBlob, crate::blob::ErrorKind::Transient);
    assert_eq!(rename(&fs, "a", "b").await, Err(libc::EIO));
    assert_eq!(fake.names(), vec!["a"], "one place only: the source");
    assert_eq!(&fake.blob("a").unwrap().0[..], b"stays");
}

#[tokio::test]
async fn a_rename_whose_copy_answer_was_lost_leaves_no_stray_copy() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    fake.put("a", "A");
    fake.inject_next(Op::CopyBlob, Fault::LoseAnswer);
    assert_eq!(rename(&fs, "a", "b").await, Ok(()));
    assert_eq!(fake.names(), vec!["b"]);
    // The copy was made but the call gave up: it is removed, the source stays.
    fake.inject_next(Op::CopyBlob, Fault::LoseAnswerAndGiveUp);
    assert_eq!(rename(&fs, "b", "c").await, Err(libc::EIO));
    assert_eq!(fake.names(), vec!["b"]);
    // RENAME_NOREPLACE: the retry meets its own copy.
    fake.inject_next(Op::CopyBlob, Fault::LoseAnswer);
    assert_eq!(
        fs.rename(ROOT, OsStr::new("b"), ROOT, OsStr::new("c"), true)
            .await,
        Ok(())
    );
    assert_eq!(fake.names(), vec!["c"]);
}

#[tokio::test]
async fn a_directory_rename_survives_lost_answers_everywhere() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    for i in 0..12 {
        fake.put(&format!("d/f{i:02}"), format!("content {i}"));
    }
    for _ in 0..6 {
        fake.inject_next(Op::DeleteBlob, Fault::LoseAnswer);
        fake.inject_next(Op::CopyBlob, Fault::LoseAnswer);
    }
    assert_eq!(rename(&fs, "d", "e").await, Ok(()));
    let names = fake.names();
    assert_eq!(names.len(), 12, "{names:?}");
    for i in 0..12 {
        let b = fake.blob(&format!("e/f{i:02}")).unwrap().0;
        assert_eq!(&b[..], format!("content {i}").as_bytes());
    }
}

#[tokio::test]
async fn mkdir_and_symlink_recognise_their_own_put_blob() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    fake.inject_next(Op::PutBlob, Fault::LoseAnswer);
    let d = fs
        .mkdir(ROOT, OsStr::new("d"), &Creator::DEFAULTS)
        .await
        .unwrap();
    assert_eq!(d.kind, Kind::Dir);
    fake.inject_next(Op::PutBlob, Fault::LoseAnswer);
    fs.symlink(
        ROOT,
        OsStr::new("l"),
        std::path::Path::new("target"),
        &Creator::DEFAULTS,
    )
    .await
    .unwrap();
    assert_eq!(fake.names(), vec!["d", "l"]);
    // A blob someone else made is not taken for ours.
    fake.put("x", "theirs");
    fake.inject_next(Op::PutBlob, Fault::LoseAnswer);
    fake.remove("x");
    fake.put_with_metadata("y", "", &[("hdi_isfolder", "true"), ("owner", "them")]);
    assert_eq!(
        fs.mkdir(ROOT, OsStr::new("y"), &Creator::DEFAULTS)
            .await
            .err()
            .map(Errno::from),
        Some(libc::EEXIST)
    );
}

#[tokio::test]
async fn an_empty_file_whose_answer_was_lost_is_committed_once() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    let fh = create(&fs, "empty").await;
    fake.inject_next(Op::PutBlob, Fault::LoseAnswer);
    assert_eq!(fs.flush(fh).await, Ok(()));
    fs.release(fh).await;
    assert_eq!(fake.names(), vec!["empty"], "no conflict copy");
}

#[tokio::test]
async fn a_commit_whose_answer_was_lost_is_recognised() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    fake.put("f", "old");
    let attr = fs.lookup(ROOT, OsStr::new("f")).await.unwrap();
    let fh = open_for_writing(&fs, attr.ino, true).await;
    fs.write(fh, 0, b"new content").await.unwrap();
    // One block: one Put Blob.
    fake.inject_next(Op::PutBlob, Fault::LoseAnswer);
    assert_eq!(fs.flush(fh).await, Ok(()));
    fs.release(fh).await;
    assert_eq!(fake.names(), vec!["f"]);
    assert_eq!(&fake.blob("f").unwrap().0[..], b"new content");
    assert_eq!(fake.pending_faults(), 0, "the fault was met");
    // Several blocks: Put Blocks and one Put Block List.
    let big = vec![5u8; 3 * fs.config().block_size as usize];
    let fh = open_for_writing(&fs, attr.ino, true).await;
    fs.write(fh, 0, &big).await.unwrap();
    fake.inject_next(Op::PutBlockList, Fault::LoseAnswer);
    assert_eq!(fs.flush(fh).await, Ok(()));
    fs.release(fh).await;
    assert_eq!(fake.names(), vec!["f"]);
    assert_eq!(&fake.blob("f").unwrap().0[..], &big[..]);
    assert_eq!(fake.pending_faults(), 0, "the fault was met");
}

#[tokio::test]
async fn an_unlink_whose_answer_was_lost_succeeds() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    fake.put("f", "x");
    fs.lookup(ROOT, OsStr::new("f")).await.unwrap();
    fake.inject_next(Op::DeleteBlob, Fault::LoseAnswer);
    assert_eq!(fs.unlink(ROOT, OsStr::new("f")).await, Ok(()));
    assert!(fake.names().is_empty());
}

#[tokio::test]
async fn a_commit_that_fails_for_good_is_saved_locally_at_the_last_close() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    let fh = create(&fs, "lost?").await;
    fs.write(fh, 0, b"keep me").await.unwrap();
    for _ in 0..2 {
        fake.fail_next(Op::PutBlob, crate::blob::ErrorKind::Forbidden);
    }
    assert_eq!(fs.flush(fh).await.map_err(Errno::from), Err(libc::EIO));
    fs.release(fh).await;
    assert!(fake.names().is_empty());
    // The data is in a recovery directory of the staging directory.
    let found = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("blobmount-recovered-")
        })
        .map(|e| e.path().join("lost?"))
        .find(|p| std::fs::read(p).is_ok_and(|d| d == b"keep me"));
    let path = found.expect("a recovery copy");
    std::fs::remove_file(&path).unwrap();
    let _ = std::fs::remove_dir(path.parent().unwrap());
}

#[tokio::test]
async fn a_directory_emptied_here_is_still_found_by_rm_r() {
    let (fake, fs) = setup_rw(Duration::ZERO);
    fake.put("d/s/z", "x");
    let d = fs.lookup(ROOT, OsStr::new("d")).await.unwrap();
    let s = fs.lookup(d.ino, OsStr::new("s")).await.unwrap();
    fs.lookup(s.ino, OsStr::new("z")).await.unwrap();
    fs.unlink(s.ino, OsStr::new("z")).await.unwrap();
    // The prefix is gone; the kernel revalidates before its rmdir.
    assert_eq!(fs.lookup(d.ino, OsStr::new("s")).await.unwrap().ino, s.ino);
    fs.rmdir(d.ino, OsStr::new("s")).await.unwrap();
    assert_eq!(
        fs.lookup(d.ino, OsStr::new("s"))
            .await
            .err()
            .map(Errno::from),
        Some(libc::ENOENT)
    );
}

#[tokio::test]
async fn a_handle_served_from_kept_pages_never_moves_to_another_version() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    let bs = fs.config().block_size as usize;
    fake.put("f", vec![0u8; 3 * bs]);
    let a = fs.lookup(ROOT, OsStr::new("f")).await.unwrap();
    let (fh, cache) = fs.open(a.ino, OpenMode::default()).await.unwrap();
    assert_eq!(cache, PageCache::Drop);
    fs.read(fh, 0, 4).await.unwrap();
    fs.release(fh).await;
    // Another machine rewrites it; this mount's attributes are still fresh.
    fake.put("f", vec![1u8; 3 * bs]);
    let (fh, cache) = fs.open(a.ino, OpenMode::default()).await.unwrap();
    assert_eq!(
        cache,
        PageCache::Keep,
        "the kernel's pages of version zero are kept"
    );
    // What the daemon has of version zero is served; what it has not is refused, never the
    // bytes of version one after kept pages of version zero.
    assert_eq!(&fs.read(fh, 0, 4).await.unwrap()[..], &[0u8; 4]);
    assert_eq!(
        fs.read(fh, 2 * bs as u64, 8).await.map_err(Errno::from),
        Err(libc::ESTALE)
    );
    fs.release(fh).await;
}

#[tokio::test]
async fn a_new_version_opened_beside_an_old_one_reads_around_its_pages() {
    let (fake, fs) = setup_rw(Duration::ZERO);
    fake.put("f", "old");
    let a = fs.lookup(ROOT, OsStr::new("f")).await.unwrap();
    let (old, _) = fs.open(a.ino, OpenMode::default()).await.unwrap();
    assert_eq!(&fs.read(old, 0, 3).await.unwrap()[..], b"old");
    fake.put("f", "new");
    let (new, cache) = fs.open(a.ino, OpenMode::default()).await.unwrap();
    assert_eq!(cache, PageCache::Bypass, "the pages hold the old version");
    assert_eq!(&fs.read(new, 0, 3).await.unwrap()[..], b"new");
    assert_eq!(&fs.read(old, 0, 3).await.unwrap()[..], b"old");
    fs.release(old).await;
    fs.release(new).await;
    // Alone again: the next open drops the old pages.
    let (fh, cache) = fs.open(a.ino, OpenMode::default()).await.unwrap();
    assert_eq!(cache, PageCache::Drop);
    fs.release(fh).await;
}

#[tokio::test]
async fn an_expired_token_with_no_source_refuses_writes_at_once() {
    let sas = |at: time::OffsetDateTime| {
        let se = at
            .replace_nanosecond(0)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        format!("sv=2023-11-03&sr=c&sp=racwdl&se={se}&sig=x")
    };
    let now = time::OffsetDateTime::now_utc();
    let cred = Arc::new(crate::token::Credential::new(sas(
        now + time::Duration::hours(1)
    )));
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    let mut cfg = fs.config().clone();
    cfg.credential = Some(cred.clone());
    let fs = Fs::new(fake.clone(), cfg);
    let fh = create(&fs, "f").await;
    fs.write(fh, 0, b"before").await.unwrap();
    cred.replace(sas(now - time::Duration::minutes(1)));
    assert_eq!(
        fs.write(fh, 6, b"after").await.map_err(Errno::from),
        Err(libc::EACCES)
    );
    assert_eq!(
        fs.create(ROOT, OsStr::new("g"), false, false, &Creator::DEFAULTS)
            .await
            .err()
            .map(Errno::from),
        Some(libc::EACCES)
    );
    fs.release(fh).await;
}

#[tokio::test]
async fn a_commit_whose_outcome_could_not_be_checked_is_recognised_at_the_next_close() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    let (a, fh) = fs
        .create(ROOT, OsStr::new("f"), false, false, &Creator::DEFAULTS)
        .await
        .unwrap();
    fs.set_size(a.ino, 126).await.unwrap();
    fake.inject_next(Op::PutBlockList, Fault::LoseAnswer);
    fake.fail_next(Op::GetBlockList, crate::blob::ErrorKind::Transient);
    assert_eq!(fs.fsync(fh).await.map_err(Errno::from), Err(libc::EIO));
    assert_eq!(fs.flush(fh).await, Ok(()));
    fs.release(fh).await;
    assert_eq!(fake.names(), vec!["f"], "no conflict copy");
}

#[tokio::test]
async fn a_file_being_created_here_is_not_replaced_by_rename_noreplace_or_mkdir() {
    let (fake, fs) = setup_rw(Duration::ZERO);
    fake.put("a", "A");
    let fh = create(&fs, "x").await;
    fs.write(fh, 0, b"mine").await.unwrap();
    assert_eq!(
        fs.rename(ROOT, OsStr::new("a"), ROOT, OsStr::new("x"), true)
            .await
            .map_err(Errno::from),
        Err(libc::EEXIST)
    );
    assert_eq!(
        fs.mkdir(ROOT, OsStr::new("x"), &Creator::DEFAULTS)
            .await
            .err()
            .map(Errno::from),
        Some(libc::EEXIST)
    );
    assert_eq!(fs.flush(fh).await, Ok(()));
    fs.release(fh).await;
    assert_eq!(&fake.blob("x").unwrap().0[..], b"mine");
    assert_eq!(&fake.blob("a").unwrap().0[..], b"A");
}

#[tokio::test]
async fn a_rename_after_someone_else_rewrote_the_file_moves_theirs_and_mixes_nothing() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    fake.put("f", vec![b'0'; 3000]);
    let a = fs.lookup(ROOT, OsStr::new("f")).await.unwrap();
    let fh = open_for_writing(&fs, a.ino, false).await;
    // Another machine rewrites it while it is open here, unchanged so far.
    fake.put("f", vec![b'1'; 3000]);
    assert_eq!(rename(&fs, "f", "g").await, Ok(()));
    // Appending needs the old version's last block, which is gone: the write fails (the
    // program is told) rather than mixing it with theirs.
    assert!(fs.write(fh, 3000, b"appended").await.is_err());
    assert!(fs.flush(fh).await.is_err());
    fs.release(fh).await;
    // The name moved with their version; ours never went onto it.
    assert_eq!(&fake.blob("g").unwrap().0[..], &vec![b'1'; 3000][..]);
    assert!(fake.blob("f").is_none());
}

#[tokio::test]
async fn a_commit_after_an_unanswered_one_that_landed_goes_on_top_of_it() {
    use crate::blob::fake::Fault::LoseAnswerAndGiveUp;
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    // An empty file: its Put Blob goes through, the answer never comes.
    let fh = create(&fs, "e").await;
    fake.inject_next(Op::PutBlob, LoseAnswerAndGiveUp);
    assert_eq!(fs.fsync(fh).await.map_err(Errno::from), Err(libc::EIO));
    fs.write(fh, 0, b"then content").await.unwrap();
    assert_eq!(fs.flush(fh).await, Ok(()));
    fs.release(fh).await;
    // A file with blocks: its Put Block List goes through unanswered, then more is written.
    let fh = create(&fs, "b").await;
    fs.write(fh, 0, &vec![7u8; 3000]).await.unwrap();
    fake.inject_next(Op::PutBlockList, LoseAnswerAndGiveUp);
    assert_eq!(fs.fsync(fh).await.map_err(Errno::from), Err(libc::EIO));
    fs.write(fh, 3000, b"more").await.unwrap();
    assert_eq!(fs.flush(fh).await, Ok(()));
    fs.release(fh).await;
    assert_eq!(fake.names(), vec!["b", "e"], "no conflict copies");
    assert_eq!(&fake.blob("e").unwrap().0[..], b"then content");
    let mut want = vec![7u8; 3000];
    want.extend_from_slice(b"more");
    assert_eq!(&fake.blob("b").unwrap().0[..], &want[..]);
}

#[tokio::test]
async fn a_small_file_whose_unanswered_put_blob_landed_is_committed_on_top_of_it() {
    use crate::blob::fake::Fault::LoseAnswerAndGiveUp;
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    // One block: its commit is one Put Blob, which goes through without an answer.
    let fh = create(&fs, "s").await;
    fs.write(fh, 0, b"first part").await.unwrap();
    fake.inject_next(Op::PutBlob, LoseAnswerAndGiveUp);
    assert_eq!(fs.fsync(fh).await.map_err(Errno::from), Err(libc::EIO));
    assert_eq!(&fake.blob("s").unwrap().0[..], b"first part", "it landed");
    // The next commit meets that version (409), recognises it by what it sent (length,
    // SHA-256, metadata) and replaces it: no conflict copy.
    fs.write(fh, 10, b", then more").await.unwrap();
    assert_eq!(fs.flush(fh).await, Ok(()));
    fs.release(fh).await;
    assert_eq!(fake.names(), vec!["s"], "no conflict copies");
    assert_eq!(&fake.blob("s").unwrap().0[..], b"first part, then more");
    assert_eq!(fake.count(Op::PutBlock), 0, "never sent as blocks");
    assert_eq!(fake.count(Op::PutBlockList), 0);
}

#[tokio::test]
async fn unlinking_a_new_file_that_a_failed_rename_copied_over_removes_the_copy() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    // "dst" is open for writing here, never committed; "src" is a committed file.
    let dst = create(&fs, "dst").await;
    fs.write(dst, 0, b"mine").await.unwrap();
    let src = create(&fs, "src").await;
    fs.write(src, 0, b"theirs").await.unwrap();
    assert_eq!(fs.flush(src).await, Ok(()));
    fs.release(src).await;
    // The rename's copy lands on "dst", its delete of "src" fails for good.
    fake.fail_next(Op::DeleteBlob, crate::blob::ErrorKind::Transient);
    assert_eq!(rename(&fs, "src", "dst").await, Err(libc::EIO));
    assert_eq!(
        &fake.blob("dst").unwrap().0[..],
        b"theirs",
        "the copy stayed"
    );
    // Unlinking the name removes what it holds, although this file never wrote it.
    assert_eq!(fs.unlink(ROOT, OsStr::new("dst")).await, Ok(()));
    assert!(fake.blob("dst").is_none(), "the copy is gone with the name");
    assert_eq!(
        fs.lookup(ROOT, OsStr::new("dst"))
            .await
            .map_err(Errno::from)
            .err(),
        Some(libc::ENOENT)
    );
    // The open file still reads what it wrote, and is never committed.
    assert_eq!(&fs.read(dst, 0, 10).await.unwrap()[..], b"mine");
    assert_eq!(fs.flush(dst).await, Ok(()));
    fs.release(dst).await;
    assert_eq!(fake.names(), vec!["src"]);
}

#[tokio::test]
async fn a_file_whose_unanswered_commit_landed_still_reads_what_it_holds() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    fake.put("r", vec![1u8; 3000]);
    let ino = fs.lookup(ROOT, OsStr::new("r")).await.unwrap().ino;
    let fh = open_for_writing(&fs, ino, false).await;
    fs.write(fh, 0, b"new start").await.unwrap();
    // The commit lands, its answer never comes: the version the untouched bytes were read
    // from is gone, and the one holding them is this file's own commit.
    fake.inject_next(Op::PutBlockList, Fault::LoseAnswerAndGiveUp);
    assert_eq!(fs.fsync(fh).await.map_err(Errno::from), Err(libc::EIO));
    let mut want = vec![1u8; 3000];
    want[..9].copy_from_slice(b"new start");
    assert_eq!(&fs.read(fh, 0, 4000).await.unwrap()[..], &want[..]);
    assert_eq!(fs.flush(fh).await, Ok(()));
    fs.release(fh).await;
    assert_eq!(fake.names(), vec!["r"], "no conflict copies");
    assert_eq!(&fake.blob("r").unwrap().0[..], &want[..]);
}

#[tokio::test]
async fn metadata_edits_whose_answer_was_lost_are_recognised_as_done() {
    use crate::fs::xattr::SetMode;
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    fake.put_with_metadata("f", "data", &[("owner", "tool")]);
    let f = fs.lookup(ROOT, OsStr::new("f")).await.unwrap();
    // Carried out, answer lost, retried: the retry's 412 is this very edit's success, and an
    // edit that is not idempotent does not run again to fail on its own result.
    fake.inject_next(Op::SetBlobMetadata, Fault::LoseAnswer);
    fs.setxattr(f.ino, b"user.a", b"1", SetMode::Create)
        .await
        .unwrap();
    fake.inject_next(Op::SetBlobMetadata, Fault::LoseAnswerAndGiveUp);
    fs.removexattr(f.ino, b"user.a").await.unwrap();
    fake.inject_next(Op::SetBlobMetadata, Fault::LoseAnswer);
    let set = crate::fs::SetAttrs {
        perm: Some(0o600),
        ..Default::default()
    };
    assert_eq!(fs.set_attrs(f.ino, set).await.unwrap().mode, Some(0o600));
    let (data, meta, _) = fake.blob("f").unwrap();
    assert_eq!(&data[..], b"data");
    let mut meta: Vec<_> = meta.into_iter().collect();
    meta.sort();
    assert_eq!(
        meta,
        vec![
            ("mode".to_string(), "0600".to_string()),
            ("owner".to_string(), "tool".to_string())
        ]
    );
    // Someone else's change in between is not taken for ours: the edit goes onto theirs.
    fake.inject_next(Op::SetBlobMetadata, Fault::LoseAnswer);
    fake.put_with_metadata("g", "x", &[]);
    let g = fs.lookup(ROOT, OsStr::new("g")).await.unwrap();
    fs.setxattr(g.ino, b"user.b", b"2", SetMode::Any)
        .await
        .unwrap();
    assert_eq!(fs.getxattr(g.ino, b"user.b").await.unwrap(), b"2");
}
