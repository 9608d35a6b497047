//! What must never happen, through a real mount, checked directly against the service: a name
//! silently changed, half a file committed, one open reading two versions, data lost when the
//! token dies or when a directory moves under random faults.

mod common;

use std::io::{Read, Write};
use std::os::unix::io::IntoRawFd;
use std::path::Path;
use std::time::Duration;

use common::*;

/// The errno of an I/O error (0 if it has none).
fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// close(2) of a file, returning its result (the commit's).
fn close(f: std::fs::File) -> Result<(), i32> {
    let fd = f.into_raw_fd();
    // SAFETY: the descriptor is ours; it is closed exactly once.
    match unsafe { libc::close(fd) } {
        0 => Ok(()),
        _ => Err(errno(&std::io::Error::last_os_error())),
    }
}

#[test]
fn every_ascii_byte_and_unicode_in_names_round_trips_or_is_refused() {
    let fx = Fixture::writable("names");
    let m = fx.mount(&[]);
    let mut kept = Vec::new();
    let mut refused = Vec::new();
    let mut names: Vec<String> = (1u8..0x80)
        .filter(|b| *b != b'/')
        .map(|b| format!("n{b:02x}-{}-x", char::from(b)))
        .collect();
    // Unicode: precomposed and decomposed é (two names), astral planes, right-to-left.
    names.extend(
        [
            "caf\u{e9}",
            "cafe\u{301}",
            "\u{1F600} grin",
            "\u{10348}gothic",
            "\u{5B57}\u{7B26}",
            "\u{5E9}\u{5DC}\u{5D5}\u{5DD}",
        ]
        .map(String::from),
    );
    for name in &names {
        let data = format!("content of {name:?}");
        match std::fs::write(m.path().join(name), &data) {
            Ok(()) => kept.push((name.clone(), data)),
            Err(e) => {
                assert_eq!(errno(&e), libc::EINVAL, "{name:?}: {e}");
                refused.push(name.clone());
            }
        }
    }
    // The service holds exactly the names written, byte for byte, nothing else.
    let mut stored = fx.names("");
    stored.sort();
    let mut want: Vec<String> = kept.iter().map(|(n, _)| n.clone()).collect();
    want.sort();
    assert_eq!(stored, want, "names in the service");
    for (name, data) in &kept {
        assert_eq!(
            fx.blob(name).as_deref(),
            Some(data.as_bytes()),
            "{name:?} by REST"
        );
        assert_eq!(
            std::fs::read_to_string(m.path().join(name)).unwrap(),
            *data,
            "{name:?} through the mount"
        );
    }
    // Listed as written; NFC and NFD stay two files.
    let mut listed: Vec<String> = std::fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listed.sort();
    assert_eq!(listed, want, "names through the mount");
    assert!(want.contains(&"caf\u{e9}".to_string()) && want.contains(&"cafe\u{301}".to_string()));
    // Refused: the controls (the service, or its listings, cannot keep them) and the
    // backslash; every printable ASCII byte but '\' is kept.
    for b in (1u8..0x20).chain([0x7f, b'\\']) {
        let name = format!("n{b:02x}-{}-x", char::from(b));
        assert!(refused.contains(&name), "{name:?} should be refused");
    }
    assert_eq!(refused.len(), 0x20 - 1 + 2, "{refused:?}");
    // Renames and mkdir refuse them the same way, and change nothing.
    let e = std::fs::rename(m.path().join(&kept[0].0), m.path().join("a\nb")).unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    let e = std::fs::create_dir(m.path().join("dir\tname")).unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    assert_eq!(fx.names("").len(), kept.len());
}

#[test]
fn blobs_other_tools_named_with_tabs_and_newlines_can_be_read_and_removed() {
    let fx = Fixture::writable("odd-names");
    // Azurite keeps (and lists) these; other control characters break its listings.
    for name in ["tab\there", "new\nline", "carriage\rreturn", " spaced "] {
        fx.put(name, name.as_bytes());
    }
    let m = fx.mount(&[]);
    let mut listed: Vec<String> = std::fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [" spaced ", "carriage\rreturn", "new\nline", "tab\there"]
    );
    for name in &listed {
        assert_eq!(std::fs::read(m.path().join(name)).unwrap(), name.as_bytes());
        std::fs::remove_file(m.path().join(name)).unwrap();
        // The read's release may still be on its way: the blob goes at the last close.
        assert!(
            wait_until(Duration::from_secs(5), || fx.blob(name).is_none()),
            "{name:?} is still in the service"
        );
    }
    assert!(fx.names("").is_empty());
}

/// A small tmpfs, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs (the tests run as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_staging_disk_answers_enospc_and_commits_nothing_half_written() {
    let fx = Fixture::writable("enospc");
    fx.put("big.bin", b"the old version");
    let disk = SmallDisk::new("1m");
    let staging = disk.path().to_str().unwrap().to_string();
    let m = fx.mount(&["--staging-dir", &staging, "--block-size", "64K"]);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.path().join("big.bin"))
        .unwrap();
    let chunk = pseudo_random_bytes(256 << 10, 3);
    let mut failed = None;
    for _ in 0..16 {
        if let Err(e) = f.write_all(&chunk) {
            failed = Some(errno(&e));
            break;
        }
    }
    assert_eq!(failed, Some(libc::ENOSPC), "the 4 MiB write should not fit");
    // Later writes fail too, and the close says so; nothing half written is committed.
    assert!(f.write_all(b"more").is_err());
    assert_eq!(close(f), Err(libc::ENOSPC));
    assert_eq!(fx.blob("big.bin").as_deref(), Some(&b"the old version"[..]));
    assert_eq!(fx.names(""), ["big.bin"], "no partial or conflict copy");
    // Once the kernel's attributes expire, the mount shows the blob as it is.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        std::fs::read(m.path().join("big.bin")).unwrap(),
        b"the old version"
    );
    let log = m.log();
    assert!(log.contains("will not be committed"), "{log}");
    // The mount works on: a file that fits is written.
    std::fs::write(m.path().join("small.txt"), b"fits").unwrap();
    assert_eq!(fx.blob("small.txt").as_deref(), Some(&b"fits"[..]));
}

#[test]
fn one_open_never_reads_two_versions_when_another_mount_rewrites_the_blob() {
    let fx = Fixture::writable("versions");
    const BS: usize = 64 << 10;
    let v0 = vec![b'0'; 4 * BS];
    let v1 = vec![b'1'; 4 * BS];
    fx.put("f", &v0);
    // Attributes trusted for a minute: the second open relies on what the first saw.
    let a = fx.mount(&["--block-size", "64K", "--metadata-ttl", "60s"]);
    let b = fx.mount(&["--block-size", "64K"]);
    let path = a.path().join("f");
    // The kernel keeps the first block of v0 in its page cache.
    let mut first = [0u8; BS];
    std::fs::File::open(&path)
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    assert_eq!(&first[..], &v0[..BS]);
    std::fs::write(b.path().join("f"), &v1).unwrap();
    assert_eq!(fx.blob("f").as_deref(), Some(&v1[..]));
    // Open again: either all of one version, or an error (ESTALE) for what it cannot serve
    // of the version it started with — never v0 followed by v1.
    let mut f = std::fs::File::open(&path).unwrap();
    let mut got = Vec::new();
    match f.read_to_end(&mut got) {
        Ok(_) => assert!(
            got == v0 || got == v1,
            "one open read a mix of two versions"
        ),
        Err(e) => {
            assert_eq!(errno(&e), libc::ESTALE, "{e}");
            assert!(got.iter().all(|b| *b == got[0]), "mixed before the error");
        }
    }
    drop(f);
    // Once the attributes expire (or the file is re-opened after ESTALE), v1 is read.
    let _ = b;
    let c = fx.mount(&["--block-size", "64K"]);
    assert_eq!(std::fs::read(c.path().join("f")).unwrap(), v1);
}

#[test]
fn a_token_that_expires_with_nothing_to_renew_it_loses_no_written_data() {
    let fx = Fixture::writable("expiry");
    let staging = tempfile::tempdir().unwrap();
    let url = container_sas_url(
        &fx.proxy.account_url(),
        &fx.container,
        "racwdl",
        None,
        time::OffsetDateTime::now_utc() + time::Duration::seconds(8),
    );
    let m = Mount::start(&url, &["--staging-dir", staging.path().to_str().unwrap()]);
    let mut f = std::fs::File::create(m.path().join("report.txt")).unwrap();
    f.write_all(b"written while the token was valid").unwrap();
    std::thread::sleep(Duration::from_secs(9));
    // Known to be unusable: writes fail at once, and the close cannot commit.
    let e = f.write_all(b"after").unwrap_err();
    assert_eq!(errno(&e), libc::EACCES, "{e}");
    assert!(close(f).is_err());
    // The data is not lost: a local copy, named in the log.
    assert!(
        wait_until(Duration::from_secs(10), || m.log().contains("saved in")),
        "{}",
        m.log()
    );
    let log = m.log();
    let path = log
        .split("data is saved in ")
        .nth(1)
        .and_then(|rest| rest.split(['\n', ' ', '"']).next())
        .unwrap_or_else(|| panic!("no saved copy named in {log}"));
    assert_eq!(
        std::fs::read(path).unwrap(),
        b"written while the token was valid"
    );
    assert!(path.contains("blobmount-recovered-"), "{path}");
    for sig in signature_forms(&url) {
        assert!(!log.contains(&sig), "the signature is in the log");
    }
}

#[test]
fn a_directory_moved_back_and_forth_under_random_faults_loses_nothing() {
    let fx = Fixture::writable("mv-faults");
    let files: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| {
            (
                format!("f{i:02}"),
                pseudo_random_bytes(1000 + i * 77, i as u64),
            )
        })
        .collect();
    for (n, d) in &files {
        fx.put(&format!("a/{n}"), d);
    }
    let m = fx.mount(&["--request-timeout", "2s"]);
    // One request in ten: its answer lost, the connection reset, or a 500.
    fx.proxy.random_faults(
        |_| true,
        9,
        0.10,
        vec![Fault::LoseAnswer, Fault::Reset, Fault::internal_error()],
    );
    let (mut from, mut to) = ("a", "b");
    for round in 0..8 {
        let moved = std::fs::rename(m.path().join(from), m.path().join(to)).is_ok();
        // Every file is in exactly one place, whole; none lost, no stray copy.
        let here = |dir: &str| {
            files
                .iter()
                .filter(|(n, d)| fx.blob(&format!("{dir}/{n}")).as_deref() == Some(&d[..]))
                .count()
        };
        let (in_from, in_to) = (here(from), here(to));
        assert_eq!(
            in_from + in_to,
            files.len(),
            "round {round}: {in_from} in {from}, {in_to} in {to}: {:?}",
            fx.names("")
        );
        assert_eq!(
            fx.names("").len(),
            files.len(),
            "round {round}: stray copies"
        );
        if moved {
            assert_eq!(in_to, files.len(), "round {round}: mv succeeded");
            std::mem::swap(&mut from, &mut to);
        }
    }
    assert!(fx.proxy.injected() > 0, "no fault was injected");
}
