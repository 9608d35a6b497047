//! The staging journal's records and directories, on a real local disk.

use super::*;
use std::io::Write;

fn record() -> Record {
    Record {
        format: FORMAT.into(),
        version: VERSION,
        blob: "dir/a b.bin".into(),
        expect: Some("\"0x8D1\"".into()),
        base: Some(BaseRecord {
            etag: "\"0x8D1\"".into(),
            len: 10,
        }),
        size: 300,
        block_size: 100,
        metadata: BTreeMap::from([("mode".into(), "644".into())]),
        upload_id: 0xfeed,
        next_seq: 2,
        committed_ids: vec![],
        local: vec![[0, 0], [2, 2]],
        sent: BTreeMap::from([(
            0,
            SentBlock {
                id: "aWQx".into(),
                len: 100,
                md5: "AAAA".into(),
            },
        )]),
        durable: Durable::Unfinished,
        synced: false,
        boot_id: "b".into(),
        attempts: vec![Attempt::Blocks(vec!["aWQx".into()])],
        created_ns: 1,
    }
}

#[test]
fn a_record_reads_back_as_written_and_keeps_no_more_than_it_says() {
    let dir = tempfile::tempdir().unwrap();
    let j = JournalDir::create(dir.path()).unwrap();
    let mut data = j.new_data_file(record().upload_id).unwrap();
    let entry = j.entry(record()).unwrap();
    data.write_all(&[7u8; 300]).unwrap();
    entry.sent(2, "aWQy", 100, &[1; 16]);
    entry.finished(&data, true, |r| r.size = 300).unwrap();
    let found = j.entries();
    assert_eq!(found.len(), 1);
    let (_, got) = &found[0];
    let (_, e) = got.as_ref().unwrap();
    let r = e.record();
    assert_eq!(r.durable, Durable::Finished);
    assert!(r.synced && r.is_finished("other boot"));
    // Block 0's entry lived in memory only; block 2 was appended beside the record.
    assert_eq!(r.sent.keys().copied().collect::<Vec<_>>(), vec![2]);
    assert_eq!(r.attempts.len(), 1);
    // Private: the directory and both files.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(j.path()), 0o700);
    assert_eq!(mode(e.path()), 0o600);
    e.remove();
    assert!(j.entries().is_empty());
    assert!(j.remove_if_empty());
}

#[test]
fn an_unsynced_record_is_finished_only_in_the_boot_that_wrote_it() {
    let mut r = record();
    r.durable = Durable::Finished;
    assert!(r.is_finished("b"));
    assert!(!r.is_finished("after a reboot"));
    r.durable = Durable::Unfinished;
    r.synced = true;
    assert!(!r.is_finished("b"));
}

#[test]
fn other_versions_and_damaged_records_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.json");
    let write = |v: &serde_json::Value| std::fs::write(&p, v.to_string()).unwrap();
    let good = serde_json::to_value(record()).unwrap();
    write(&good);
    assert!(read_record(&p).is_ok());

    let mut old = good.clone();
    old["version"] = 0.into();
    write(&old);
    let e = read_record(&p).unwrap_err();
    assert!(e.contains("format 0") && e.contains("format 1"), "{e}");

    let mut other = good.clone();
    other["format"] = "something else".into();
    write(&other);
    assert!(read_record(&p).unwrap_err().contains("not a blobmount"));

    let mut damaged = good.clone();
    damaged["durable"] = "half done".into();
    write(&damaged);
    assert!(read_record(&p).unwrap_err().contains("damaged"));

    let mut reversed = good.clone();
    reversed["local"] = serde_json::json!([[5, 2]]);
    write(&reversed);
    assert!(read_record(&p).unwrap_err().contains("reversed"));

    // Blocks sent: a last line cut short is left out, a bad line before it refuses.
    write(&good);
    let sent = p.with_extension("sent");
    let line = r#"{"index":3,"id":"aWQz","len":100,"md5":"AAAA"}"#;
    std::fs::write(&sent, format!("{line}\n{{\"index\":4,\"id")).unwrap();
    assert_eq!(read_record(&p).unwrap().sent.len(), 1);
    std::fs::write(&sent, format!("nonsense\n{line}\n")).unwrap();
    assert!(read_record(&p).unwrap_err().contains("damaged"));
    std::fs::remove_file(&sent).unwrap();

    std::fs::write(&p, b"{\"format\": \"blobmount-staging-jour").unwrap();
    assert!(read_record(&p)
        .unwrap_err()
        .contains("not a journal record"));
}

#[test]
fn a_directory_held_by_a_mount_is_not_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let held = JournalDir::create(dir.path()).unwrap();
    assert!(JournalDir::adopt(held.path()).unwrap().is_none());
    let path = held.path().to_path_buf();
    drop(held);
    let adopted = JournalDir::adopt(&path)
        .unwrap()
        .expect("free once its mount is gone");
    assert_eq!(JournalDir::others(dir.path(), None), vec![path.clone()]);
    assert!(JournalDir::others(dir.path(), Some(&path)).is_empty());
    assert!(adopted.remove_if_empty());
}

#[test]
fn local_blocks_are_kept_as_ranges() {
    assert_eq!(
        ranges([0, 1, 2, 3, 7, 9, 10]),
        vec![[0, 3], [7, 7], [9, 10]]
    );
    assert!(ranges([]).is_empty());
    let r = ranges(0..10_000);
    assert_eq!(r, vec![[0, 9_999]]);
    assert_eq!(indexes(&r).count(), 10_000);
}

#[test]
fn a_removed_entry_stays_removed_when_a_late_upload_reports() {
    let dir = tempfile::tempdir().unwrap();
    let j = JournalDir::create(dir.path()).unwrap();
    let _data = j.new_data_file(record().upload_id).unwrap();
    let entry = j.entry(record()).unwrap();
    entry.remove();
    entry.sent(1, "aWQx", 100, &[0; 16]);
    entry.update(|r| r.size = 1);
    assert!(j.entries().is_empty());
    assert!(j.remove_if_empty());
}

#[test]
fn files_others_may_change_are_not_taken_for_records() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let j = JournalDir::create(dir.path()).unwrap();
    let _data = j.new_data_file(record().upload_id).unwrap();
    let entry = j.entry(record()).unwrap();
    std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let found = j.entries();
    let why = found[0].1.as_ref().map(|_| ()).expect_err("refused");
    assert!(why.contains("others may change it"), "{why}");
    // A directory others may write to is not adopted at all.
    let path = j.path().to_path_buf();
    drop(j);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(JournalDir::others(dir.path(), None).is_empty());
}

#[test]
fn container_directories_have_safe_names_and_no_token() {
    let (c, token) = crate::blob::ContainerUrl::parse(
        "http://127.0.0.1:10000/devstoreaccount1/my-box?sv=1&sig=SECRET",
    )
    .unwrap();
    assert!(token.is_some());
    let d = container_dir(Path::new("/s"), &c);
    assert_eq!(
        d,
        Path::new("/s/journal/127.0.0.1_10000_devstoreaccount1_my-box")
    );
}

#[test]
fn forgetting_blocks_sent_rewrites_the_list_only_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let j = JournalDir::create(dir.path()).unwrap();
    let _data = j.new_data_file(record().upload_id).unwrap();
    let mut r = record();
    r.sent.clear();
    let entry = j.entry(r).unwrap();
    let sent = entry.path().with_extension("sent");
    // Nothing sent, nothing to forget: no file is made.
    entry.forget_sent(|_| false);
    assert!(!sent.exists());
    entry.sent(0, "aWQw", 100, &[0; 16]);
    entry.sent(1, "aWQx", 100, &[1; 16]);
    entry.forget_sent(|i| i == 1);
    let read = || read_record(entry.path()).unwrap().sent;
    assert_eq!(read().keys().copied().collect::<Vec<_>>(), vec![1]);
    entry.forget_sent(|_| true);
    assert_eq!(read().len(), 1);
    entry.forget_sent(|_| false);
    assert!(!sent.exists(), "an empty list is no file");
    assert!(read().is_empty());
}

/// A record flushed as finished is trusted after a power cut: taking it back (the file is
/// written again) is flushed too, and says so.
#[test]
fn taking_back_a_flushed_finish_is_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let j = JournalDir::create(dir.path()).unwrap();
    let data = j.new_data_file(record().upload_id).unwrap();
    let entry = j.entry(record()).unwrap();
    entry.finished(&data, true, |_| {}).unwrap();
    let on_disk = || {
        let found = j.entries();
        let (_, got) = &found[0];
        got.as_ref().unwrap().1.record()
    };
    assert_eq!(entry.flushes(), 1);
    // A change that keeps the content finished is not flushed (nothing rests on it).
    entry.update(|r| r.attempts.clear());
    assert!(on_disk().synced);
    assert_eq!(entry.flushes(), 1);
    entry.update(|r| r.durable = Durable::Unfinished);
    let r = on_disk();
    assert_eq!(r.durable, Durable::Unfinished);
    assert!(!r.is_finished("other boot"));
    assert_eq!(entry.flushes(), 2, "flushed before the content changes");
    // Unfinished again later, after an unflushed finish: not flushed.
    entry.finished(&data, false, |_| {}).unwrap();
    entry.update(|r| r.durable = Durable::Unfinished);
    assert!(!on_disk().synced);
    assert_eq!(entry.flushes(), 2);
    entry.remove();
}

/// Rewriting a record many times uses two inodes (the record and its scratch file, exchanged),
/// not a new one per write; every rewrite is read back whole; removal leaves nothing.
#[test]
fn a_record_rewritten_many_times_is_read_whole_and_uses_two_inodes() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let j = JournalDir::create(dir.path()).unwrap();
    let data = j.new_data_file(record().upload_id).unwrap();
    let entry = j.entry(record()).unwrap();
    let mut inodes = std::collections::BTreeSet::new();
    for n in 0..20u64 {
        entry.update(|r| r.next_seq = n);
        inodes.insert(std::fs::metadata(entry.path()).unwrap().ino());
        let found = j.entries();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1.as_ref().unwrap().1.record().next_seq, n);
    }
    entry.finished(&data, true, |_| {}).unwrap();
    inodes.insert(std::fs::metadata(entry.path()).unwrap().ino());
    assert!(inodes.len() <= 2, "{} inodes for 21 writes", inodes.len());
    entry.remove();
    let left: Vec<_> = std::fs::read_dir(j.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "lock")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
