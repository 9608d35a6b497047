//! Owners, modes, times and special files kept in blob metadata (see `fs/posix.rs`).

use super::*;
use crate::fs::posix::Special;

/// The entries of a directory, without `.` and `..`.
async fn named(fs: &Fs, ino: u64) -> Vec<(String, Kind)> {
    let mut all = names(fs, ino).await;
    all.retain(|(n, _)| n != "." && n != "..");
    all
}

const OTHER: Creator = Creator {
    uid: Some(65534),
    gid: Some(65533),
    perm: Some(0o640),
};

#[tokio::test]
async fn a_file_created_by_another_user_records_its_owner_and_mode_and_a_remount_shows_them() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    let (a, fh) = fs
        .create(ROOT_INO, OsStr::new("f"), true, false, &OTHER)
        .await
        .unwrap();
    // Shown at once: the kernel checks the next calls of that user against these.
    assert_eq!(
        (a.uid, a.gid, a.mode),
        (Some(65534), Some(65533), Some(0o640))
    );
    fs.write(fh, 0, b"abc").await.unwrap();
    fs.flush(fh).await.unwrap();
    fs.release(fh).await;
    let (data, meta, _) = fake.blob("f").unwrap();
    assert_eq!(&data[..], b"abc");
    assert_eq!(
        (
            meta["uid"].as_str(),
            meta["gid"].as_str(),
            meta["mode"].as_str()
        ),
        ("65534", "65533", "0640")
    );
    let fs2 = Fs::new(fake.clone(), config(Duration::from_secs(60)));
    let b = lookup(&fs2, ROOT_INO, "f").await.unwrap();
    assert_eq!(
        (b.uid, b.gid, b.mode),
        (Some(65534), Some(65533), Some(0o640))
    );
    // The mount's own user with the default mode records nothing: the blob stays portable.
    let (_, fh) = fs
        .create(ROOT_INO, OsStr::new("mine"), true, false, &MINE)
        .await
        .unwrap();
    fs.release(fh).await;
    assert!(fake.blob("mine").unwrap().1.is_empty());
}

const MINE: Creator = Creator {
    uid: Some(1000),
    gid: Some(1000),
    perm: Some(0o644),
};

#[tokio::test]
async fn chown_keeps_other_metadata_and_ctime_is_last_modified() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    fake.put_with_metadata(
        "f",
        "data",
        &[("owner", "tool"), ("mtime", "2001-09-09T01:46:40Z")],
    );
    let f = lookup(&fs, ROOT_INO, "f").await.unwrap();
    let before = f.ctime;
    std::thread::sleep(Duration::from_millis(5));
    let set = SetAttrs {
        uid: Some(7),
        gid: Some(8),
        ..SetAttrs::default()
    };
    let a = fs.set_attrs(f.ino, set).await.unwrap();
    assert_eq!((a.uid, a.gid), (Some(7), Some(8)));
    assert!(a.ctime > before, "chown changes ctime");
    assert_eq!(a.mtime, f.mtime, "and not mtime");
    let (data, meta, _) = fake.blob("f").unwrap();
    assert_eq!(&data[..], b"data");
    assert_eq!(
        (
            meta["uid"].as_str(),
            meta["gid"].as_str(),
            meta["owner"].as_str()
        ),
        ("7", "8", "tool")
    );
    // utimes keeps atime apart from mtime.
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    let set = SetAttrs {
        atime: Some(t),
        ..SetAttrs::default()
    };
    let a = fs.set_attrs(f.ino, set).await.unwrap();
    assert_eq!((a.atime, a.mtime), (Some(t), f.mtime));
}

#[tokio::test]
async fn fifos_sockets_and_devices_are_empty_blobs_with_their_type_and_survive_a_remount() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    let kinds = [
        ("fifo", Special::Fifo),
        ("sock", Special::Socket),
        ("chr", Special::Char(0x0103)),
        ("blk", Special::Block(0x0801)),
    ];
    for (name, s) in kinds {
        let a = fs
            .mknod(ROOT_INO, OsStr::new(name), s, &OTHER)
            .await
            .unwrap();
        assert_eq!((a.kind, a.size, a.uid), (Kind::Special(s), 0, Some(65534)));
    }
    assert_eq!(
        fs.mknod(ROOT_INO, OsStr::new("fifo"), Special::Fifo, &MINE)
            .await
            .map_err(Errno::from)
            .err(),
        Some(libc::EEXIST)
    );
    assert_eq!(fake.blob("fifo").unwrap().1["mode"], "10640");
    assert_eq!(fake.blob("blk").unwrap().1["rdev"], "801");
    let mut cfg = config(Duration::from_secs(60));
    cfg.read_only = false;
    let fs2 = Fs::new(fake.clone(), cfg);
    let mut listed = named(&fs2, ROOT_INO).await;
    listed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want: Vec<(String, Kind)> = kinds
        .iter()
        .map(|(n, s)| (n.to_string(), Kind::Special(*s)))
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(listed, want);
    // chmod keeps the type.
    let c = lookup(&fs2, ROOT_INO, "chr").await.unwrap();
    let a = fs2
        .set_attrs(
            c.ino,
            SetAttrs {
                perm: Some(0o600),
                ..SetAttrs::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (a.kind, a.mode),
        (Kind::Special(Special::Char(0x0103)), Some(0o600))
    );
    assert_eq!(fake.blob("chr").unwrap().1["mode"], "20600");
    // Renamed like a file.
    fs2.rename(
        ROOT_INO,
        OsStr::new("fifo"),
        ROOT_INO,
        OsStr::new("fifo2"),
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        lookup(&fs2, ROOT_INO, "fifo2").await.unwrap().kind,
        Kind::Special(Special::Fifo)
    );
}

#[tokio::test]
async fn mkdir_records_mode_and_owner_on_its_marker_and_a_setgid_directory_passes_its_group() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    let who = Creator {
        perm: Some(0o2770),
        ..OTHER
    };
    let d = fs.mkdir(ROOT_INO, OsStr::new("d"), &who).await.unwrap();
    assert_eq!(
        (d.mode, d.uid, d.gid),
        (Some(0o2770), Some(65534), Some(65533))
    );
    let meta = fake.blob("d").unwrap().1;
    assert_eq!(
        (meta["mode"].as_str(), meta["hdi_isfolder"].as_str()),
        ("2770", "true")
    );
    // Someone else's file in it takes the directory's group.
    let (f, fh) = fs
        .create(d.ino, OsStr::new("f"), true, false, &MINE)
        .await
        .unwrap();
    fs.release(fh).await;
    assert_eq!(f.gid, Some(65533));
    assert_eq!(fake.blob("d/f").unwrap().1["gid"], "65533");
    let fs2 = Fs::new(fake.clone(), config(Duration::from_secs(60)));
    let d2 = lookup(&fs2, ROOT_INO, "d").await.unwrap();
    assert_eq!(
        (d2.kind, d2.mode, d2.uid),
        (Kind::Dir, Some(0o2770), Some(65534))
    );
}

#[tokio::test]
async fn chmod_of_a_bare_prefix_directory_gives_it_a_marker_that_keeps_the_mode() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    fake.put("p/f", "x");
    let p = lookup(&fs, ROOT_INO, "p").await.unwrap();
    let set = SetAttrs {
        perm: Some(0o700),
        uid: Some(5),
        ..SetAttrs::default()
    };
    let a = fs.set_attrs(p.ino, set).await.unwrap();
    assert_eq!((a.kind, a.mode, a.uid), (Kind::Dir, Some(0o700), Some(5)));
    let meta = fake.blob("p").unwrap().1;
    assert_eq!((meta["mode"].as_str(), meta["uid"].as_str()), ("0700", "5"));
    let fs2 = Fs::new(fake.clone(), config(Duration::from_secs(60)));
    let p2 = lookup(&fs2, ROOT_INO, "p").await.unwrap();
    assert_eq!((p2.mode, p2.uid), (Some(0o700), Some(5)));
    assert_eq!(
        named(&fs2, p2.ino).await,
        vec![("f".to_string(), Kind::File)]
    );
}

#[tokio::test]
async fn a_directory_s_times_follow_the_entries_this_mount_adds_removes_and_renames() {
    let (_fake, fs) = setup_rw(Duration::from_secs(60));
    let a = fs.mkdir(ROOT_INO, OsStr::new("a"), &MINE).await.unwrap();
    let b = fs.mkdir(ROOT_INO, OsStr::new("b"), &MINE).await.unwrap();
    let times = |ino| {
        let a = fs.attr_of(ino).unwrap();
        (a.mtime, a.ctime)
    };
    let pause = || std::thread::sleep(Duration::from_millis(5));
    let mut before = times(a.ino);
    pause();
    let (_, fh) = fs
        .create(a.ino, OsStr::new("f"), true, false, &MINE)
        .await
        .unwrap();
    fs.release(fh).await;
    let after = times(a.ino);
    assert!(after.0 > before.0 && after.1 > before.1, "create");
    before = after;
    let before_b = times(b.ino);
    pause();
    fs.rename(a.ino, OsStr::new("f"), b.ino, OsStr::new("g"), false)
        .await
        .unwrap();
    assert!(times(a.ino).0 > before.0, "rename: the old directory");
    assert!(times(b.ino).0 > before_b.0, "rename: the new directory");
    let before_b = times(b.ino);
    pause();
    fs.unlink(b.ino, OsStr::new("g")).await.unwrap();
    assert!(times(b.ino).1 > before_b.1, "unlink");
    // A time set on the directory afterwards (tar x, rsync -a) is what it shows.
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let set = SetAttrs {
        mtime: Some(t),
        ..SetAttrs::default()
    };
    assert_eq!(fs.set_attrs(b.ino, set).await.unwrap().mtime, t);
    assert_eq!(times(b.ino).0, t);
}

#[tokio::test]
async fn a_time_past_year_9999_is_refused_and_writes_nothing() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    fake.put("f", "data");
    let f = lookup(&fs, ROOT_INO, "f").await.unwrap();
    let set = SetAttrs {
        mtime: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(300_000_000_000)),
        ..SetAttrs::default()
    };
    assert_eq!(
        fs.set_attrs(f.ino, set).await.map_err(Errno::from).err(),
        Some(libc::EINVAL)
    );
    assert!(fake.blob("f").unwrap().1.is_empty());
}

#[tokio::test]
async fn a_reader_follows_this_mount_s_own_metadata_changes_but_not_a_new_content() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    let data = pattern(64 * BS as usize);
    fake.put("f", data.clone());
    let f = lookup(&fs, ROOT_INO, "f").await.unwrap();
    let (fh, _) = fs.open(f.ino, OpenMode::default()).await.unwrap();
    let first = fs.read(fh, 0, BS as u32).await.unwrap();
    assert_eq!(&first[..], &data[..BS as usize]);
    // chmod and setxattr give the blob new ETags, the same bytes: the open handle reads on.
    let set = SetAttrs {
        perm: Some(0o600),
        ..SetAttrs::default()
    };
    fs.set_attrs(f.ino, set).await.unwrap();
    fs.setxattr(f.ino, b"user.k", b"v", crate::fs::xattr::SetMode::Any)
        .await
        .unwrap();
    let at = 40 * BS;
    let later = fs.read(fh, at, BS as u32).await.unwrap();
    assert_eq!(&later[..], &data[at as usize..(at + BS) as usize]);
    // Another writer's content is another version: the handle that returned data fails.
    let meta: Vec<(String, String)> = fake.blob("f").unwrap().1.into_iter().collect();
    let meta: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    fake.put_with_metadata("f", pattern(64 * BS as usize + 1), &meta);
    assert_eq!(
        fs.read(fh, 50 * BS, BS as u32)
            .await
            .map_err(Errno::from)
            .err(),
        Some(libc::ESTALE)
    );
    fs.release(fh).await;
}
