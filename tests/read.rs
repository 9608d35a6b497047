//! Reading through a real FUSE mount of an Azurite container: blobs are created by REST (not
//! through the mount), read back through `std::fs` and shell tools, and compared byte for byte.
//! A proxy in front of Azurite counts requests and injects delays and faults.

mod common;

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use common::*;
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn files_of_every_size_read_back_exactly() {
    let f = Fixture::new("sizes");
    let bs = 4 * MIB;
    let sizes = [0, 1, bs - 1, bs, bs + 1, 100 * MIB];
    let mut blobs = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let data = pseudo_random_bytes(*size, i as u64);
        let name = format!("size-{size}.bin");
        f.put(&name, &data);
        blobs.push((name, data));
    }
    let m = f.mount(&[]);
    for (name, data) in &blobs {
        let p = m.path().join(name);
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            data.len() as u64,
            "{name}"
        );
        let read = std::fs::read(&p).unwrap();
        assert!(read == *data, "{name}: content differs");
        let sum = sh(m.path(), &format!("sha256sum '{name}'"));
        assert_eq!(
            sum.split_whitespace().next().unwrap(),
            sha256_hex(data),
            "{name}"
        );
    }
    // cmp against a local copy, and cp out of the mount.
    let local = tempfile::tempdir().unwrap();
    let (name, data) = &blobs[5];
    std::fs::write(local.path().join("ref"), data).unwrap();
    sh(
        m.path(),
        &format!("cmp '{name}' '{}'", local.path().join("ref").display()),
    );
    sh(
        m.path(),
        &format!("cp '{name}' '{}'", local.path().join("copy").display()),
    );
    assert!(std::fs::read(local.path().join("copy")).unwrap() == *data);
    // Direct check against the service: the mount changed nothing.
    assert_eq!(
        f.rest.get_blob(&f.container, &blobs[3].0).unwrap(),
        blobs[3].1
    );
}

#[test]
fn random_offset_reads_return_the_right_bytes() {
    let f = Fixture::new("random");
    let data = pseudo_random_bytes(24 * MIB + 123, 7);
    f.put("r.bin", &data);
    let m = f.mount(&["--block-size", "1M"]);
    let file = std::fs::File::open(m.path().join("r.bin")).unwrap();
    let mut rng = fastrand::Rng::with_seed(3);
    for i in 0..300 {
        let off = rng.usize(..data.len());
        let len = rng.usize(1..=(3 * MIB).min(data.len() - off));
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, off as u64).unwrap();
        assert!(buf == data[off..off + len], "read {i} at {off}+{len}");
    }
    // Past the end: nothing.
    let mut buf = [0u8; 10];
    assert_eq!(file.read_at(&mut buf, data.len() as u64 + 5).unwrap(), 0);
    // Random reads fetched what they needed, not the whole file over and over.
    let fetched: usize = f
        .proxy
        .requests()
        .iter()
        .filter(|r| r.is_get_blob())
        .filter_map(|r| r.header("x-ms-range").map(str::to_string))
        .map(|range| {
            let (a, b) = range.trim_start_matches("bytes=").split_once('-').unwrap();
            b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1
        })
        .sum();
    assert!(
        fetched <= 2 * data.len(),
        "random reads fetched {fetched} bytes of a {} byte file",
        data.len()
    );
}

#[test]
fn directories_markers_odd_names_and_shell_tools() {
    let f = Fixture::new("tree");
    let odd = "odd name #?%+& ü.txt";
    f.put("top.txt", b"top needle\n");
    f.put("a/b/c.txt", b"deep needle\n");
    f.put("a/b2/d.txt", b"d\n");
    f.put(&format!("a/{odd}"), b"odd needle\n");
    f.put("slashmarker/", b"");
    f.rest
        .put_blob_with_metadata(&f.container, "hdimarker", b"", &[("hdi_isfolder", "true")]);
    f.put("hdimarker/inside.txt", b"inside\n");
    f.put("both", b"the file loses");
    f.put("both/child.txt", b"the directory wins\n");
    // Names that cannot be paths: hidden.
    f.put("bad//empty-segment", b"x");
    // (A `.` segment cannot even be sent: HTTP clients normalise it away. Unit tests cover it.)
    f.put(&format!("bad/{}", "n".repeat(256)), b"x");
    let m = f.mount(&[]);
    let root = m.path();

    let mut names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["a", "bad", "both", "hdimarker", "slashmarker", "top.txt"]
    );
    assert!(root.join("slashmarker").is_dir());
    assert!(root.join("hdimarker").is_dir());
    assert!(root.join("both").is_dir());
    assert_eq!(
        std::fs::read_to_string(root.join("both/child.txt")).unwrap(),
        "the directory wins\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("a").join(odd)).unwrap(),
        "odd needle\n"
    );
    assert_eq!(
        std::fs::read_dir(root.join("slashmarker")).unwrap().count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(root.join("bad")).unwrap().count(),
        0,
        "invalid names are hidden"
    );
    assert!(m.log().contains("hiding a blob"), "hidden names are logged");

    let find = sh(root, "find . | sort");
    let expected = [
        ".",
        "./a",
        "./a/b",
        "./a/b/c.txt",
        "./a/b2",
        "./a/b2/d.txt",
        &format!("./a/{odd}"),
        "./bad",
        "./both",
        "./both/child.txt",
        "./hdimarker",
        "./hdimarker/inside.txt",
        "./slashmarker",
        "./top.txt",
    ];
    let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(find.lines().collect::<Vec<_>>(), expected);

    let ls = sh(root, "ls -l a");
    assert!(
        ls.contains(odd) && ls.contains(" b\n") && ls.contains("-rw-r--r--"),
        "{ls}"
    );
    let grep = sh(root, "grep -r needle . | sort");
    assert_eq!(grep.lines().count(), 3, "{grep}");
    assert_eq!(sh(root, "du -sb a/b | cut -f1").trim(), "12");
    let tar = sh(root, "tar cf - . | tar tf - | sort");
    assert!(
        tar.contains(&format!("./a/{odd}")) && tar.contains("./hdimarker/inside.txt"),
        "{tar}"
    );
    let df = sh(root, "df -P . | tail -1");
    assert!(
        df.split_whitespace()
            .nth(3)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 1 << 30,
        "{df}"
    );
    assert_eq!(
        std::fs::metadata(root.join("top.txt")).unwrap().len(),
        f.rest.blob_properties(&f.container, "top.txt").unwrap().len
    );
    for sig in signature_forms(&f.url()) {
        assert!(!m.log().contains(&sig), "the signature appears in the log");
    }
}

#[test]
fn a_ten_thousand_blob_directory_lists_in_at_most_three_requests() {
    let f = Fixture::new("big-dir");
    let n = 10_000;
    std::thread::scope(|s| {
        for t in 0..8 {
            let (c, url) = (f.container.clone(), f.rest.account_url().to_string());
            s.spawn(move || {
                let rest = Rest::new(&url);
                for i in (t..n).step_by(8) {
                    rest.put_blob(
                        &c,
                        &format!("many/file-{i:05}.txt"),
                        format!("{i}").as_bytes(),
                    );
                }
            });
        }
    });
    let m = f.mount(&["--metadata-ttl", "30s"]);
    assert!(m.path().join("many").is_dir());
    f.proxy.clear_log();
    let ls = sh(m.path(), "ls -l many");
    assert_eq!(ls.lines().filter(|l| l.contains("file-")).count(), n);
    assert!(ls.contains("file-09999.txt"));
    let lists = f.proxy.count(|r| r.is_list());
    let heads = f.proxy.count(|r| r.method == "HEAD");
    assert!(
        lists <= 3,
        "ls -l of {n} entries made {lists} List Blobs requests"
    );
    assert_eq!(heads, 0, "ls -l made per-entry requests");
    // Names the listing did not contain: no request at all.
    f.proxy.clear_log();
    for i in 0..200 {
        assert!(!m.path().join(format!("many/missing-{i}")).exists());
    }
    assert_eq!(
        f.proxy.requests().len(),
        0,
        "missing names in a listed directory cost requests"
    );
}

#[test]
fn a_slow_read_does_not_stall_listings() {
    let f = Fixture::new("slow");
    let data = pseudo_random_bytes(MIB, 9);
    f.put("slow.bin", &data);
    f.put("other/x.txt", b"x");
    let m = f.mount(&["--metadata-ttl", "0"]);
    std::fs::metadata(m.path().join("slow.bin")).unwrap();
    f.proxy.delay(
        |r| r.is_get_blob() && r.path.ends_with("/slow.bin"),
        Duration::from_secs(8),
    );
    let path = m.path().join("slow.bin");
    let reader = std::thread::spawn(move || std::fs::read(path).unwrap());
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let ls = sh(m.path(), "ls -l other && ls -l . && cat other/x.txt");
    let took = started.elapsed();
    assert!(ls.contains("x.txt"));
    assert!(
        !reader.is_finished(),
        "the read should still be held by the proxy"
    );
    assert!(
        took < Duration::from_secs(4),
        "listing took {took:?} while a read was stuck"
    );
    assert!(reader.join().unwrap() == data);
}

#[test]
fn changes_outside_the_mount_are_seen_after_the_ttl_and_reopen() {
    let f = Fixture::new("ttl");
    f.put("f.txt", b"version one");
    f.put("gone.txt", b"soon deleted");
    let m = f.mount(&["--metadata-ttl", "1s"]);
    let p = m.path().join("f.txt");
    assert_eq!(std::fs::read(&p).unwrap(), b"version one");
    assert!(!m.path().join("new.txt").exists());
    f.put("f.txt", b"version two, longer");
    f.put("new.txt", b"new");
    f.rest.delete_blob(&f.container, "gone.txt");
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(std::fs::read(&p).unwrap(), b"version two, longer");
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 19);
    assert_eq!(std::fs::read(m.path().join("new.txt")).unwrap(), b"new");
    assert!(!m.path().join("gone.txt").exists());
    let mut names: Vec<_> = std::fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["f.txt", "new.txt"]);
}

#[test]
fn a_blob_changed_under_an_open_handle_is_never_mixed() {
    let f = Fixture::new("handle");
    let old = pseudo_random_bytes(3 * MIB, 1);
    f.put("f.bin", &old);
    let m = f.mount(&["--block-size", "1M", "--metadata-ttl", "0"]);
    let mut file = std::fs::File::open(m.path().join("f.bin")).unwrap();
    let mut first = vec![0u8; 4096];
    file.read_exact(&mut first).unwrap();
    assert!(first == old[..4096]);
    let new = pseudo_random_bytes(3 * MIB, 2);
    f.put("f.bin", &new);
    // Data this handle already has stays the old version; data it has not fetched is refused
    // (ESTALE) rather than served from the new version.
    file.seek(SeekFrom::Start(2 * MIB as u64 + 10)).unwrap();
    let mut buf = vec![0u8; 100];
    let err = file.read_exact(&mut buf).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ESTALE), "{err}");
    drop(file);
    // A new open reads the new version, all of it.
    assert!(std::fs::read(m.path().join("f.bin")).unwrap() == new);
}

#[test]
fn transient_errors_are_retried_and_final_errors_reach_the_caller() {
    let f = Fixture::new("errors");
    for name in ["busy.txt", "denied.txt", "conflict.txt"] {
        f.put(name, name.as_bytes());
    }
    let m = f.mount(&["--metadata-ttl", "30s"]);
    for name in ["busy.txt", "denied.txt", "conflict.txt"] {
        std::fs::metadata(m.path().join(name)).unwrap();
    }
    // 503 twice, then success: the reader never notices.
    f.proxy.fail_next(
        2,
        |r| r.is_get_blob() && r.path.ends_with("/busy.txt"),
        Fault::server_busy(),
    );
    assert_eq!(
        std::fs::read(m.path().join("busy.txt")).unwrap(),
        b"busy.txt"
    );
    assert_eq!(f.proxy.pending_faults(), 0);
    // 403 is final: EACCES. (The rule stays until cleared: the kernel itself reads a page again
    // after a failed readahead.)
    f.proxy.fail_next(
        100,
        |r| r.is_get_blob() && r.path.ends_with("/denied.txt"),
        Fault::status(403, "AuthorizationFailure"),
    );
    let err = std::fs::read(m.path().join("denied.txt")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");
    assert!(
        100 - f.proxy.pending_faults() <= 3,
        "a final error is not retried"
    );
    f.proxy.clear_rules();
    // Another final error: EIO, and a log line with operation, blob, status, code, request id.
    f.proxy.fail_next(
        100,
        |r| r.is_get_blob() && r.path.ends_with("/conflict.txt"),
        Fault::status(409, "SomethingOdd"),
    );
    let err = std::fs::read(m.path().join("conflict.txt")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    f.proxy.clear_rules();
    let log = m.log();
    let line = log
        .lines()
        .find(|l| l.contains("SomethingOdd") && l.contains("WARN"))
        .unwrap_or_else(|| panic!("no warning about the failure in the log:\n{log}"));
    for part in ["Get Blob", "conflict.txt", "409", "request id"] {
        assert!(line.contains(part), "log line lacks {part:?}: {line}");
    }
    // Errors are not cached: the next read succeeds.
    assert_eq!(
        std::fs::read(m.path().join("conflict.txt")).unwrap(),
        b"conflict.txt"
    );
}
