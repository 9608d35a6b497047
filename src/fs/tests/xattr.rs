//! Extended attributes in blob metadata (see `fs/xattr.rs`).

use super::*;
use crate::fs::xattr::SetMode;

fn err<T>(r: Result<T, FsError>) -> Option<Errno> {
    r.err().map(Errno::from)
}

#[tokio::test]
async fn user_attributes_round_trip_any_bytes_beside_other_tools_metadata() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    fake.put_with_metadata("f", "data", &[("owner", "tool")]);
    let f = lookup(&fs, ROOT_INO, "f").await.unwrap();
    let value = b"\x00\xff binary\n";
    fs.setxattr(f.ino, b"user.Tag", value, SetMode::Any)
        .await
        .unwrap();
    fs.setxattr(f.ino, b"user.empty", b"", SetMode::Create)
        .await
        .unwrap();
    assert_eq!(fs.getxattr(f.ino, b"user.Tag").await.unwrap(), value);
    assert_eq!(fs.getxattr(f.ino, b"user.empty").await.unwrap(), b"");
    assert_eq!(
        fs.listxattr(f.ino).await.unwrap(),
        b"user.Tag\0user.empty\0".to_vec()
    );
    let (data, meta, _) = fake.blob("f").unwrap();
    assert_eq!((&data[..], meta["owner"].as_str()), (&b"data"[..], "tool"));
    // A fresh mount reads them from the listing: no HEAD.
    let fs2 = Fs::new(fake.clone(), config(Duration::from_secs(60)));
    names(&fs2, ROOT_INO).await;
    let f2 = lookup(&fs2, ROOT_INO, "f").await.unwrap();
    let heads = fake.count(Op::GetBlobProperties);
    assert_eq!(fs2.getxattr(f2.ino, b"user.Tag").await.unwrap(), value);
    assert_eq!(fake.count(Op::GetBlobProperties), heads);
    // Removed; the flags and other namespaces answer as Linux says.
    fs.removexattr(f.ino, b"user.Tag").await.unwrap();
    assert_eq!(
        err(fs.getxattr(f.ino, b"user.Tag").await),
        Some(libc::ENODATA)
    );
    assert_eq!(
        err(fs.removexattr(f.ino, b"user.Tag").await),
        Some(libc::ENODATA)
    );
    assert_eq!(
        err(fs
            .setxattr(f.ino, b"user.empty", b"x", SetMode::Create)
            .await),
        Some(libc::EEXIST)
    );
    assert_eq!(
        err(fs
            .setxattr(f.ino, b"user.none", b"x", SetMode::Replace)
            .await),
        Some(libc::ENODATA)
    );
    assert_eq!(
        err(fs.setxattr(f.ino, b"security.x", b"x", SetMode::Any).await),
        Some(libc::ENOTSUP)
    );
    assert_eq!(
        err(fs.getxattr(f.ino, b"security.selinux").await),
        Some(libc::ENODATA)
    );
    assert_eq!(fake.blob("f").unwrap().1["owner"], "tool");
}

#[tokio::test]
async fn attributes_past_azure_s_metadata_limit_are_refused_and_nothing_is_written() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    fake.put("f", "data");
    let f = lookup(&fs, ROOT_INO, "f").await.unwrap();
    let big = vec![1u8; 8 * 1024];
    assert_eq!(
        err(fs.setxattr(f.ino, b"user.big", &big, SetMode::Any).await),
        Some(libc::E2BIG)
    );
    let part = vec![2u8; 2 * 1024];
    let mut stored = 0;
    let refused = loop {
        let name = format!("user.p{stored}");
        match fs
            .setxattr(f.ino, name.as_bytes(), &part, SetMode::Any)
            .await
        {
            Ok(()) => stored += 1,
            Err(e) => break Errno::from(e),
        }
    };
    assert_eq!((refused, stored), (libc::ENOSPC, 2));
    let meta = fake.blob("f").unwrap().1;
    let size: usize = meta.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert!(size <= crate::fs::xattr::METADATA_LIMIT, "{size}");
    assert_eq!(meta.len(), 2);
}

#[tokio::test]
async fn directories_and_files_being_written_keep_attributes_too() {
    let (fake, fs) = setup_rw(Duration::from_secs(60));
    let d = fs
        .mkdir(ROOT_INO, OsStr::new("d"), &Creator::DEFAULTS)
        .await
        .unwrap();
    fs.setxattr(d.ino, b"user.d", b"1", SetMode::Any)
        .await
        .unwrap();
    assert_eq!(fs.getxattr(d.ino, b"user.d").await.unwrap(), b"1");
    let meta = fake.blob("d").unwrap().1;
    assert_eq!(meta["hdi_isfolder"], "true", "still a marker");
    // Before its first commit: kept with the data, committed at close.
    let (c, fh) = fs
        .create(ROOT_INO, OsStr::new("c"), true, false, &Creator::DEFAULTS)
        .await
        .unwrap();
    fs.write(fh, 0, b"abc").await.unwrap();
    fs.setxattr(c.ino, b"user.c", b"2", SetMode::Any)
        .await
        .unwrap();
    assert_eq!(fs.getxattr(c.ino, b"user.c").await.unwrap(), b"2");
    fs.flush(fh).await.unwrap();
    fs.release(fh).await;
    let (data, meta, _) = fake.blob("c").unwrap();
    assert_eq!(&data[..], b"abc");
    assert_eq!(meta.len(), 1);
    let fs2 = Fs::new(fake.clone(), config(Duration::from_secs(60)));
    let c2 = lookup(&fs2, ROOT_INO, "c").await.unwrap();
    assert_eq!(fs2.listxattr(c2.ino).await.unwrap(), b"user.c\0".to_vec());
    // The container's root has no blob to keep one on: refused, not dropped in silence.
    assert_eq!(
        err(fs.setxattr(ROOT_INO, b"user.r", b"1", SetMode::Any).await),
        Some(libc::ENOTSUP)
    );
}
