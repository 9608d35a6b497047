//! Owners, modes, special files and extended attributes through a real mount (as root, with
//! `allow_other`: other users are `setpriv` to uid 65534), checked in the blobs' metadata by
//! REST and again after a remount.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

/// Runs `sh -c SCRIPT` in `dir` as uid and gid 65534; its exit status and stderr.
fn sh_as_nobody(dir: &Path, script: &str) -> (bool, String) {
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let (p, n) = (c_path(p), CString::new(name).unwrap());
    // SAFETY: valid C strings and a buffer of the length given.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn get_xattr(p: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let (p, n) = (c_path(p), CString::new(name).unwrap());
    let mut buf = vec![0u8; 65536];
    // SAFETY: valid C strings and a buffer of the length given.
    let rc = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(rc as usize);
    Ok(buf)
}

#[test]
fn owners_special_files_and_xattrs_are_kept_in_metadata_and_survive_a_remount() {
    let f = Fixture::writable("posix");
    let m = f.mount(&["-o", "allow_other", "--metadata-ttl", "0"]);
    let root = m.path();
    // Other users must reach the mount point.
    let parent = root.parent().unwrap();
    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711)).unwrap();

    // A directory given to nobody; nobody's file in it records nobody as owner.
    sh(
        root,
        "mkdir -m 0755 pub && chown 65534:65534 pub && echo mine > mine && chmod 644 mine",
    );
    let (ok, err) = sh_as_nobody(root, "echo hello > pub/theirs && chmod 600 pub/theirs");
    assert!(ok, "{err}");
    assert_eq!(
        sh(root, "stat -c %u:%g:%a pub/theirs").trim(),
        "65534:65534:600"
    );
    let props = f.rest.blob_properties(&f.container, "pub/theirs").unwrap();
    let meta = |k: &str| props.metadata.get(k).cloned();
    assert_eq!(
        (meta("uid"), meta("gid"), meta("mode")),
        (
            Some("65534".into()),
            Some("65534".into()),
            Some("0600".into())
        )
    );
    assert_eq!(f.blob("pub/theirs").unwrap(), b"hello\n");
    // The kernel enforces the stored owners and modes.
    let (ok, err) = sh_as_nobody(root, "echo x >> mine");
    assert!(!ok && err.contains("Permission denied"), "{err}");
    let (ok, err) = sh_as_nobody(root, "chown 0 pub/theirs");
    assert!(!ok && err.contains("not permitted"), "{err}");
    assert_eq!(f.blob("mine").unwrap(), b"mine\n");

    // Special files.
    sh(
        root,
        "mkfifo -m 0640 fifo && mknod chr c 1 3 && mknod blk b 8 1",
    );
    assert_eq!(sh(root, "stat -c %F fifo").trim(), "fifo");
    assert_eq!(
        sh(root, "stat -c %F:%t:%T chr").trim(),
        "character special file:1:3"
    );
    let props = f.rest.blob_properties(&f.container, "fifo").unwrap();
    assert_eq!(
        props.metadata.get("mode").map(String::as_str),
        Some("10640")
    );
    assert_eq!(f.blob("fifo").unwrap(), b"");
    // A FIFO works, locally.
    sh(
        root,
        "(echo through > fifo &) ; test \"$(cat fifo)\" = through",
    );

    // Extended attributes.
    let file = root.join("mine");
    set_xattr(&file, "user.note", b"\x00binary\xff").unwrap();
    assert_eq!(get_xattr(&file, "user.note").unwrap(), b"\x00binary\xff");
    let e = set_xattr(&file, "trusted.x", b"1").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTSUP));
    let e = get_xattr(&file, "user.none").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENODATA));
    let props = f.rest.blob_properties(&f.container, "mine").unwrap();
    assert!(props.metadata.keys().any(|k| k.starts_with("xattr_")));

    // All of it after a remount.
    drop(m);
    let m = f.mount(&["-o", "allow_other"]);
    let root = m.path();
    assert_eq!(
        sh(root, "stat -c %u:%g:%a pub/theirs").trim(),
        "65534:65534:600"
    );
    assert_eq!(sh(root, "stat -c %u:%a pub").trim(), "65534:755");
    assert_eq!(sh(root, "stat -c %F:%a fifo").trim(), "fifo:640");
    assert_eq!(
        sh(root, "stat -c %F:%t:%T blk").trim(),
        "block special file:8:1"
    );
    assert_eq!(
        get_xattr(&root.join("mine"), "user.note").unwrap(),
        b"\x00binary\xff"
    );
    assert_eq!(f.blob("mine").unwrap(), b"mine\n");
}

#[test]
fn tar_x_and_rsync_a_as_root_restore_owners_modes_and_times() {
    let f = Fixture::writable("posixtar");
    let m = f.mount(&[]);
    let root = m.path();
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    sh(
        s,
        "mkdir -p t/d && echo a > t/d/a && echo b > t/b && mkfifo t/p \
         && chown -R 65534:65533 t && chmod 0750 t/d && chmod 0600 t/b \
         && touch -h -d '2001-02-03 04:05:06 UTC' t/b t/d/a t/d",
    );
    sh(s, "tar cf t.tar t");
    let tar = s.join("t.tar");
    sh(root, &format!("mkdir x && tar xpf {} -C x", tar.display()));
    sh(root, &format!("rsync -a {}/t/ r/", s.display()));
    for dir in ["x/t", "r"] {
        let stat = |p: &str| sh(root, &format!("stat -c %u:%g:%a:%F:%Y {dir}/{p}"));
        assert_eq!(
            stat("b").trim(),
            "65534:65533:600:regular file:981173106",
            "{dir}"
        );
        assert_eq!(
            stat("d").trim(),
            "65534:65533:750:directory:981173106",
            "{dir}"
        );
        assert_eq!(
            stat("d/a").trim(),
            "65534:65533:644:regular file:981173106",
            "{dir}"
        );
        assert!(stat("p").starts_with("65534:65533:644:fifo"), "{dir}");
        assert_eq!(sh(root, &format!("cat {dir}/d/a")), "a\n");
    }
    let props = f.rest.blob_properties(&f.container, "x/t/b").unwrap();
    assert_eq!(props.metadata.get("uid").map(String::as_str), Some("65534"));
    // cp -a and rsync -X bring user.* attributes along (where the local disk keeps them).
    if set_xattr(&s.join("t/b"), "user.origin", b"local").is_ok() {
        sh(
            root,
            &format!(
                "cp -a {}/t/b cpa && rsync -aX {}/t/b rsx",
                s.display(),
                s.display()
            ),
        );
        for name in ["cpa", "rsx"] {
            assert_eq!(
                get_xattr(&root.join(name), "user.origin").unwrap(),
                b"local",
                "{name}"
            );
        }
    }
    assert_eq!(f.blob("r/b").unwrap(), b"b\n");
    // And after a remount.
    drop(m);
    let m = f.mount(&[]);
    assert_eq!(
        sh(m.path(), "stat -c %u:%g:%a r/d x/t/b").trim(),
        "65534:65533:750\n65534:65533:600"
    );
}
