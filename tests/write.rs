//! Writing through a real FUSE mount of an Azurite container, checked through the mount and
//! directly against the service by REST (content, metadata, committed blocks).

mod common;

use std::io::Write;
use std::os::unix::io::IntoRawFd;
use std::time::Duration;

use common::*;

const MIB: usize = 1 << 20;

/// Put Block requests that carried data (not Put Block From URL).
fn uploaded_blocks(proxy: &Proxy, blob: &str) -> usize {
    proxy.count(|r| {
        r.method == "PUT"
            && r.query_param("comp").as_deref() == Some("block")
            && r.header("x-ms-copy-source").is_none()
            && r.decoded_path().ends_with(&format!("/{blob}"))
    })
}

#[test]
fn a_multi_block_file_copied_in_lands_byte_for_byte() {
    let f = Fixture::writable("cp-in");
    let m = f.mount(&["--block-size", "1M"]);
    let data = pseudo_random_bytes(10 * MIB + 12345, 1);
    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("src.bin"), &data).unwrap();
    sh(
        m.path(),
        &format!("cp '{}' big.bin", local.path().join("src.bin").display()),
    );
    assert!(f.blob("big.bin").unwrap() == data, "content by REST");
    assert!(
        std::fs::read(m.path().join("big.bin")).unwrap() == data,
        "content through the mount"
    );
    assert_eq!(
        std::fs::metadata(m.path().join("big.bin")).unwrap().len(),
        data.len() as u64
    );
    let blocks = f
        .proxy
        .count(|r| r.query_param("comp").as_deref() == Some("blocklist") && r.method == "PUT");
    assert_eq!(blocks, 1, "one commit");
    assert_eq!(uploaded_blocks(&f.proxy, "big.bin"), 11);
}

#[test]
fn a_tree_copies_in_with_mixed_sizes_and_diffs_clean() {
    let f = Fixture::writable("tree");
    let m = f.mount(&["--block-size", "1M"]);
    let src = tempfile::tempdir().unwrap();
    let files = [
        ("a/empty", 0),
        ("a/one", 1),
        ("a/b/small.txt", 100),
        ("a/b/c/block.bin", MIB),
        ("a/b/c/over.bin", MIB + 1),
        ("a/odd name #?%+& ü.txt", 3000),
        ("top.bin", 3 * MIB + 7),
    ];
    for (i, (name, size)) in files.iter().enumerate() {
        let p = src.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, pseudo_random_bytes(*size, i as u64)).unwrap();
    }
    std::fs::create_dir_all(src.path().join("a/emptydir")).unwrap();
    sh(m.path(), &format!("cp -r '{}/.' .", src.path().display()));
    sh(m.path(), &format!("diff -r '{}' .", src.path().display()));
    for (i, (name, size)) in files.iter().enumerate() {
        assert_eq!(
            f.blob(name).unwrap(),
            pseudo_random_bytes(*size, i as u64),
            "{name} by REST"
        );
    }
    // Empty directories persist as hdi_isfolder markers.
    let marker = f
        .rest
        .blob_properties(&f.container, "a/emptydir")
        .expect("marker blob");
    assert_eq!(marker.len, 0);
    assert_eq!(
        marker.metadata.get("hdi_isfolder").map(String::as_str),
        Some("true")
    );
}

#[test]
fn mkdir_rmdir_rm_and_their_errors() {
    let f = Fixture::writable("dirs");
    f.rest.put_blob(&f.container, "full/x", b"x");
    let m = f.mount(&[]);
    let root = m.path();
    std::fs::create_dir(root.join("d")).unwrap();
    assert!(f.rest.blob_properties(&f.container, "d").is_some());
    assert_eq!(
        std::fs::create_dir(root.join("d"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EEXIST)
    );
    std::fs::write(root.join("d/f.txt"), b"hi").unwrap();
    assert_eq!(f.blob("d/f.txt").unwrap(), b"hi");
    assert_eq!(
        std::fs::remove_dir(root.join("d"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::ENOTEMPTY)
    );
    std::fs::remove_file(root.join("d/f.txt")).unwrap();
    assert!(f.blob("d/f.txt").is_none());
    std::fs::remove_dir(root.join("d")).unwrap();
    assert!(f.rest.blob_properties(&f.container, "d").is_none());
    assert!(!root.join("d").exists());
    assert_eq!(
        std::fs::remove_dir(root.join("full"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::ENOTEMPTY)
    );
    // rm -r of a directory that exists only as a prefix.
    sh(root, "rm -r full");
    assert!(f.rest.list_blob_names(&f.container, "full").is_empty());
}

#[test]
fn append_overwrite_and_truncate_edit_existing_blobs() {
    let f = Fixture::writable("edit");
    // A blob written by one Put Blob has no blocks: appending must still work.
    f.rest.put_blob(&f.container, "log.txt", b"line one\n");
    let three = pseudo_random_bytes(3 * MIB, 3);
    f.rest.put_blob(&f.container, "three.bin", &three);
    let m = f.mount(&["--block-size", "1M"]);
    let root = m.path();
    sh(root, "echo 'line two' >> log.txt");
    assert_eq!(f.blob("log.txt").unwrap(), b"line one\nline two\n");
    // Overwrite 4 bytes in the middle block: only that block is uploaded.
    f.proxy.clear_log();
    sh(
        root,
        "printf 'ABCD' | dd of=three.bin bs=1 seek=1500000 conv=notrunc status=none",
    );
    let mut want = three.clone();
    want[1_500_000..1_500_004].copy_from_slice(b"ABCD");
    assert!(f.blob("three.bin").unwrap() == want);
    assert_eq!(
        uploaded_blocks(&f.proxy, "three.bin"),
        1,
        "only the changed block went up"
    );
    sh(root, "truncate -s 100 three.bin");
    assert!(f.blob("three.bin").unwrap() == want[..100]);
    sh(root, "truncate -s 200 three.bin");
    let mut grown = want[..100].to_vec();
    grown.resize(200, 0);
    assert_eq!(f.blob("three.bin").unwrap(), grown);
    assert_eq!(std::fs::read(root.join("three.bin")).unwrap(), grown);
}

#[test]
fn a_file_being_written_is_visible_and_readable_before_close() {
    let f = Fixture::writable("visible");
    let m = f.mount(&["--block-size", "1M"]);
    let mut file = std::fs::File::create(m.path().join("growing.bin")).unwrap();
    let data = pseudo_random_bytes(3 * MIB, 4);
    file.write_all(&data[..2 * MIB]).unwrap();
    assert_eq!(
        std::fs::metadata(m.path().join("growing.bin"))
            .unwrap()
            .len(),
        2 * MIB as u64
    );
    // A child process (which inherits, then closes, a copy of the descriptor at exec) does
    // not commit the file: only a process that wrote does, or the last close.
    let ls = sh(m.path(), "ls -l");
    assert!(
        ls.contains("growing.bin") && ls.contains(&(2 * MIB).to_string()),
        "{ls}"
    );
    assert!(std::fs::read(m.path().join("growing.bin")).unwrap() == data[..2 * MIB]);
    assert!(
        f.blob("growing.bin").is_none(),
        "nothing committed before close"
    );
    file.write_all(&data[2 * MIB..]).unwrap();
    drop(file);
    assert!(f.blob("growing.bin").unwrap() == data);
}

#[test]
fn a_failed_commit_makes_close_and_fsync_fail() {
    let f = Fixture::writable("fail");
    let m = f.mount(&[]);
    // Every commit of f.txt fails: its Put Blob (a file of one block) or Put Block List.
    f.proxy.fail_next(
        100,
        |r| {
            let comp = r.query_param("comp");
            r.method == "PUT"
                && r.path.ends_with("/f.txt")
                && (comp.is_none() || comp.as_deref() == Some("blocklist"))
        },
        Fault::status(409, "SomethingWentWrong"),
    );
    let mut file = std::fs::File::create(m.path().join("f.txt")).unwrap();
    file.write_all(b"data").unwrap();
    assert_eq!(
        file.sync_all().unwrap_err().raw_os_error(),
        Some(libc::EIO),
        "fsync reports it"
    );
    let fd = file.into_raw_fd();
    // SAFETY: fd is a valid descriptor we own (into_raw_fd), closed exactly once.
    let rc = unsafe { libc::close(fd) };
    assert_eq!(rc, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EIO),
        "close reports it"
    );
    assert!(f.blob("f.txt").is_none(), "no partial blob");
    assert!(m.log().contains("not committed"), "the log says why");
    f.proxy.clear_rules();
    std::thread::sleep(Duration::from_millis(100));
}

#[test]
fn exclusive_create_fails_on_an_existing_name() {
    let f = Fixture::writable("excl");
    f.rest.put_blob(&f.container, "taken", b"theirs");
    let m = f.mount(&[]);
    let err = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.path().join("taken"))
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.path().join("mine"))
        .unwrap();
    assert_eq!(f.blob("mine").unwrap(), b"");
    assert_eq!(f.blob("taken").unwrap(), b"theirs");
}

#[test]
fn a_blob_changed_while_open_is_kept_and_ours_lands_beside_it() {
    let f = Fixture::writable("conflict");
    f.rest.put_blob(&f.container, "doc.txt", b"original");
    let m = f.mount(&[]);
    let mut file = std::fs::File::create(m.path().join("doc.txt")).unwrap();
    file.write_all(b"my version").unwrap();
    f.rest.put_blob(&f.container, "doc.txt", b"their version");
    let fd = file.into_raw_fd();
    // SAFETY: fd is a valid descriptor we own (into_raw_fd), closed exactly once.
    let rc = unsafe { libc::close(fd) };
    assert_eq!(rc, -1, "close reports the conflict: {}", m.log());
    assert_eq!(f.blob("doc.txt").unwrap(), b"their version");
    let names = f.rest.list_blob_names(&f.container, "doc.txt.conflict-");
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(f.blob(&names[0]).unwrap(), b"my version");
    assert!(
        m.log().contains("saved as"),
        "the log says where the data went"
    );
}

#[test]
fn a_file_removed_while_open_keeps_reading_what_it_had() {
    use std::io::Read;
    let f = Fixture::writable("unlink-open");
    let data = pseudo_random_bytes(3 * MIB, 9);
    f.rest.put_blob(&f.container, "held.bin", &data);
    let m = f.mount(&["--block-size", "1M"]);
    let mut file = std::fs::File::open(m.path().join("held.bin")).unwrap();
    let mut head = vec![0u8; 1000];
    file.read_exact(&mut head).unwrap();
    std::fs::remove_file(m.path().join("held.bin")).unwrap();
    assert!(!m.path().join("held.bin").exists());
    let mut rest = Vec::new();
    file.read_to_end(&mut rest).unwrap();
    head.extend_from_slice(&rest);
    assert!(head == data, "the whole file is still readable");
    assert!(
        f.blob("held.bin").is_some(),
        "deleted at the last close, not before"
    );
    drop(file);
    assert!(common::wait_until(Duration::from_secs(5), || f
        .blob("held.bin")
        .is_none()));
}
