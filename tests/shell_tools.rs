//! Ordinary shell tools on a read-write mount, every result checked through the mount and
//! directly against the service by REST.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// A local tree with mixed sizes, nested directories, odd names and a symlink.
fn make_tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let files: Vec<(String, Vec<u8>)> = [
        ("README.md", 50),
        ("empty", 0),
        ("src/main.rs", 2000),
        ("src/lib/a b c.txt", 70_000),
        ("data/blob.bin", 5 << 20),
        ("data/ü #?%+&.dat", 1234),
    ]
    .iter()
    .enumerate()
    .map(|(i, (n, s))| (n.to_string(), pseudo_random_bytes(*s, 100 + i as u64)))
    .collect();
    for (name, data) in &files {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    std::fs::create_dir_all(root.join("emptydir")).unwrap();
    std::os::unix::fs::symlink("src/main.rs", root.join("link")).unwrap();
    files
}

#[test]
fn rsync_twice_copies_nothing_the_second_time() {
    let f = Fixture::writable("rsync");
    let m = f.mount(&[]);
    let src = tempfile::tempdir().unwrap();
    let files = make_tree(src.path());
    let rsync = |mnt: &Path| {
        format!(
            "rsync -a --stats '{}/' '{}/copy/'",
            src.path().display(),
            mnt.display()
        )
    };
    let first = sh(src.path(), &rsync(m.path()));
    assert!(
        first.contains("Number of regular files transferred: 6"),
        "{first}"
    );
    sh(
        src.path(),
        &format!(
            "diff -r '{}' '{}/copy'",
            src.path().display(),
            m.path().display()
        ),
    );
    for (name, data) in &files {
        assert_eq!(
            f.blob(&format!("copy/{name}")).as_ref(),
            Some(data),
            "{name} by REST"
        );
    }
    let second = sh(src.path(), &rsync(m.path()));
    assert!(
        second.contains("Number of regular files transferred: 0"),
        "{second}"
    );
    // The times rsync set are kept (metadata), and shown after a remount.
    drop(m);
    let m = f.mount(&[]);
    let local = std::fs::metadata(src.path().join("src/main.rs"))
        .unwrap()
        .modified()
        .unwrap();
    let remote = std::fs::metadata(m.path().join("copy/src/main.rs"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(local, remote);
    let third = sh(src.path(), &rsync(m.path()));
    assert!(
        third.contains("Number of regular files transferred: 0"),
        "{third}"
    );
}

#[test]
fn tar_extracts_and_diffs_clean() {
    let f = Fixture::writable("tar");
    let m = f.mount(&[]);
    let src = tempfile::tempdir().unwrap();
    let files = make_tree(src.path());
    let archive = tempfile::NamedTempFile::new().unwrap();
    sh(
        src.path(),
        &format!("tar cf '{}' .", archive.path().display()),
    );
    sh(
        m.path(),
        &format!("mkdir x && cd x && tar xf '{}'", archive.path().display()),
    );
    sh(m.path(), &format!("diff -r '{}' x", src.path().display()));
    assert_eq!(sh(m.path(), "readlink x/link").trim(), "src/main.rs");
    for (name, data) in &files {
        assert_eq!(f.blob(&format!("x/{name}")).as_ref(), Some(data), "{name}");
    }
    let link = f.rest.blob_properties(&f.container, "x/link").unwrap();
    assert_eq!(
        link.metadata.get("is_symlink").map(String::as_str),
        Some("true")
    );
}

#[test]
fn git_init_add_commit_and_fsck() {
    let f = Fixture::writable("git");
    let m = f.mount(&[]);
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path());
    sh(
        m.path(),
        &format!(
            "git init -q repo && cp -r '{}/.' repo/ && cd repo && \
             git -c user.name=t -c user.email=t@example.com add -A && \
             git -c user.name=t -c user.email=t@example.com commit -q -m first && \
             git fsck --full --strict && git status --porcelain",
            src.path().display()
        ),
    );
    let log = sh(&m.path().join("repo"), "git log --oneline");
    assert!(log.contains("first"), "{log}");
    // Clone it back out of the mount and compare.
    let out = tempfile::tempdir().unwrap();
    sh(
        out.path(),
        &format!("git clone -q '{}/repo' clone", m.path().display()),
    );
    // (git keeps no empty directories.)
    sh(
        out.path(),
        &format!(
            "diff -r -x .git -x emptydir '{}' clone",
            src.path().display()
        ),
    );
    assert!(f.names("repo/.git/objects/").len() > 5);
}

#[test]
fn sed_in_place_mv_over_a_file_cp_p_touch_ln_chown() {
    let f = Fixture::writable("edits");
    f.rest
        .put_blob(&f.container, "conf.txt", b"colour=red\nsize=1\n");
    f.rest.put_blob(&f.container, "old.txt", b"old");
    let m = f.mount(&[]);
    let root = m.path();
    sh(root, "sed -i 's/red/blue/' conf.txt");
    assert_eq!(f.blob("conf.txt").unwrap(), b"colour=blue\nsize=1\n");
    // An editor's save: write a temporary file, rename it over the original.
    sh(root, "printf new > .conf.swp && mv .conf.swp old.txt");
    assert_eq!(f.blob("old.txt").unwrap(), b"new");
    assert!(f.blob(".conf.swp").is_none());
    // Times: touch -d and cp -p keep them.
    sh(
        root,
        "touch -d '2001-02-03 04:05:06 UTC' old.txt && cp -p old.txt kept.txt",
    );
    let want = sh(root, "stat -c %Y old.txt");
    assert_eq!(want.trim(), "981173106");
    assert_eq!(sh(root, "stat -c %Y kept.txt"), want);
    let props = f.rest.blob_properties(&f.container, "kept.txt").unwrap();
    assert_eq!(
        props.metadata.get("mtime").map(String::as_str),
        Some("2001-02-03T04:05:06Z")
    );
    sh(root, "chmod 600 kept.txt");
    assert_eq!(sh(root, "stat -c %a kept.txt").trim(), "600");
    // Symlinks; hard links are refused.
    sh(root, "ln -s kept.txt sym && test \"$(cat sym)\" = new");
    let link = Command::new("ln")
        .args(["kept.txt", "hard"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(!link.status.success());
    // chown (the tests run as root) is kept in the blob's metadata, beside the mode and time.
    sh(root, "chown 12345:54321 kept.txt");
    assert_eq!(
        sh(root, "stat -c %u:%g:%a kept.txt").trim(),
        "12345:54321:600"
    );
    let props = f.rest.blob_properties(&f.container, "kept.txt").unwrap();
    let meta = |k: &str| props.metadata.get(k).map(String::as_str);
    assert_eq!(
        (meta("uid"), meta("gid"), meta("mode"), meta("mtime")),
        (
            Some("12345"),
            Some("54321"),
            Some("0600"),
            Some("2001-02-03T04:05:06Z")
        )
    );
}

#[test]
fn mv_of_a_two_hundred_file_directory() {
    let f = Fixture::writable("mvdir");
    std::thread::scope(|s| {
        for t in 0..4 {
            let (c, url) = (f.container.clone(), f.rest.account_url().to_string());
            s.spawn(move || {
                let rest = Rest::new(&url);
                for i in (t..200).step_by(4) {
                    rest.put_blob(
                        &c,
                        &format!("src/sub{}/f{i:03}", i % 3),
                        format!("{i}").as_bytes(),
                    );
                }
            });
        }
    });
    let m = f.mount(&[]);
    sh(m.path(), "mv src dst");
    assert!(f.names("src/").is_empty(), "nothing left in the source");
    let moved = f.names("dst/");
    assert_eq!(moved.len(), 200);
    assert_eq!(f.blob("dst/sub1/f004").unwrap(), b"4");
    assert_eq!(sh(m.path(), "find dst -type f | wc -l").trim(), "200");
    assert!(!m.path().join("src").exists());
}

#[test]
fn mmap_writes_reach_the_blob() {
    let f = Fixture::writable("mmap");
    let m = f.mount(&[]);
    let p = m.path().join("mapped.bin");
    std::fs::write(&p, vec![b'.'; 10_000]).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    // SAFETY: a shared writable mapping of a file we hold open, unmapped before it is closed.
    unsafe {
        use std::os::unix::io::AsRawFd;
        let len = 10_000;
        let ptr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(
            ptr,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        let bytes = std::slice::from_raw_parts_mut(ptr as *mut u8, len);
        assert_eq!(bytes[5000], b'.', "mapped reads see the file");
        bytes[5000..5005].copy_from_slice(b"HELLO");
        assert_eq!(libc::msync(ptr, len, libc::MS_SYNC), 0);
        libc::munmap(ptr, len);
    }
    file.sync_all().unwrap();
    drop(file);
    let mut want = vec![b'.'; 10_000];
    want[5000..5005].copy_from_slice(b"HELLO");
    assert_eq!(f.blob("mapped.bin").unwrap(), want);
}
