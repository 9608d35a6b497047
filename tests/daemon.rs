//! Daemon mode and the way out: `blobmount mount` without --foreground returns once the mount
//! is ready, or fails as the foreground form does; SIGTERM commits the files their programs
//! finished and saves the unfinished ones beside their blobs; a second signal exits at once; a
//! stale mount left by a killed daemon is cleaned; `blobmount unmount`.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::detached::Detached;
use common::process::signal;
use common::{bin, container_sas_url, pseudo_random_bytes, stderr_of, wait_until, Fixture};
use time::OffsetDateTime;

/// The text with Azure request ids (one per request) blanked.
fn without_request_id(text: &str) -> String {
    match text.split_once("request id ") {
        Some((before, after)) => {
            let rest = after.trim_start_matches(|c: char| c.is_ascii_hexdigit() || c == '-');
            format!("{before}request id …{rest}")
        }
        None => text.to_string(),
    }
}

/// A process (node, which the tests need anyway for Azurite) that opens `file` for writing,
/// writes `src` into it (and fsyncs it, with `sync`), creates `marker`, and keeps the file open
/// until killed (on drop). It writes by itself: a helper process closing its copy of the
/// descriptor would commit.
struct OpenWriter(Child);

impl OpenWriter {
    fn start(file: &Path, src: &Path, marker: &Path) -> OpenWriter {
        Self::spawn(file, src, marker, false)
    }

    fn start_synced(file: &Path, src: &Path, marker: &Path) -> OpenWriter {
        Self::spawn(file, src, marker, true)
    }

    fn spawn(file: &Path, src: &Path, marker: &Path, sync: bool) -> OpenWriter {
        let script =
            "const fs = require('fs'); const [file, src, marker, sync] = process.argv.slice(1); \
                      const fd = fs.openSync(file, 'w'); fs.writeSync(fd, fs.readFileSync(src)); \
                      if (sync === 'sync') fs.fsyncSync(fd); \
                      fs.writeFileSync(marker, ''); setTimeout(() => {}, 300000);";
        let mut child = Command::new("node")
            .arg("-e")
            .arg(script)
            .arg(file)
            .arg(src)
            .arg(marker)
            .arg(if sync { "sync" } else { "nosync" })
            .stdin(Stdio::null())
            .spawn()
            .expect("start the writer (node)");
        if !wait_until(Duration::from_secs(120), || marker.exists()) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the writer did not finish writing");
        }
        OpenWriter(child)
    }
}

impl Drop for OpenWriter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn mount_returns_once_the_mount_is_ready_and_unmount_commits_and_stops_it() {
    let fx = Fixture::writable("daemon-ready");
    fx.put("hello.txt", b"hello from the daemon");
    let mut d = Detached::new();
    let out = d.mount(&fx.url());
    assert!(out.status.success(), "mount failed: {}", stderr_of(&out));
    // Ready when the command returned: no waiting here.
    assert!(d.is_mounted(), "not mounted when mount returned");
    // Shown as what it is (findmnt, df -T), whether root mounted it or fusermount3 did.
    let entry = blobmount::mount::mountinfo::mount_at(d.path()).expect("in mountinfo");
    assert_eq!(entry.fstype, "fuse.blobmount", "{entry:?}");
    assert!(
        entry.source.starts_with("blobmount:devstoreaccount1/"),
        "{entry:?}"
    );
    assert_eq!(
        std::fs::read(d.path().join("hello.txt")).unwrap(),
        b"hello from the daemon"
    );
    assert!(d.note_daemon().is_some(), "no daemon found");
    // A file left open for writing after an fsync: the unmount finds it committed.
    let src = d.file("src.bin");
    let data = pseudo_random_bytes(3 << 20, 11);
    std::fs::write(&src, &data).unwrap();
    let writer = OpenWriter::start_synced(&d.path().join("open.bin"), &src, &d.file("written"));
    let out = Command::new(bin())
        .arg("unmount")
        .arg(d.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "unmount failed: {}; state files: {:?}",
        stderr_of(&out),
        std::fs::read_dir(blobmount::mount::state::dir())
            .map(|r| r
                .filter_map(|e| e.ok())
                .map(|e| (
                    e.file_name(),
                    std::fs::read_to_string(e.path()).unwrap_or_default()
                ))
                .filter(|(n, _)| n.to_string_lossy().contains("detached"))
                .collect::<Vec<_>>())
            .unwrap_or_default()
    );
    assert!(
        d.daemons_gone(),
        "the daemon is still running after unmount returned"
    );
    assert!(!d.is_mounted());
    drop(writer);
    assert!(
        fx.blob("open.bin").as_deref() == Some(&data[..]),
        "not committed completely"
    );
    let log = d.log();
    assert!(log.contains("mounted"), "{log}");
    assert!(log.contains("1 open file committed"), "{log}");
}

#[test]
fn a_daemon_that_cannot_mount_fails_as_the_foreground_form_does() {
    let fx = Fixture::writable("daemon-fail");
    let expired = container_sas_url(
        &fx.proxy.account_url(),
        &fx.container,
        "racwdl",
        None,
        OffsetDateTime::now_utc() - time::Duration::hours(1),
    );
    let no_container = container_sas_url(
        &fx.proxy.account_url(),
        "no-such-container",
        "racwdl",
        None,
        OffsetDateTime::now_utc() + time::Duration::hours(1),
    );
    let d = Detached::new();
    let missing = d.path().join("missing");
    // (what, url, mountpoint, extra arguments, exit code, phrase of the error)
    type Case<'a> = (&'a str, String, &'a Path, Vec<&'a str>, i32, &'a str);
    let cases: Vec<Case> = vec![
        ("expired token", expired, d.path(), vec![], 1, "expired"),
        (
            "no container",
            no_container,
            d.path(),
            vec![],
            1,
            "does not exist",
        ),
        (
            "no mountpoint",
            fx.url(),
            &missing,
            vec![],
            2,
            "does not exist",
        ),
        (
            "bad option",
            fx.url(),
            d.path(),
            vec!["--write-buffer=1K"],
            2,
            "--write-buffer",
        ),
        (
            "bad log file",
            fx.url(),
            d.path(),
            vec!["--log-file=/nonexistent/dir/log"],
            1,
            "cannot write the log file",
        ),
    ];
    for (what, url, mountpoint, extra, code, phrase) in cases {
        let run = |foreground: bool| {
            let mut cmd = Command::new(bin());
            cmd.arg("mount").arg(&url).arg(mountpoint).args(&extra);
            if foreground {
                cmd.arg("--foreground");
            }
            let start = Instant::now();
            let out = cmd.env_remove("RUST_LOG").output().unwrap();
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{what}: too slow"
            );
            out
        };
        let fg = run(true);
        let bg = run(false);
        assert_eq!(fg.status.code(), Some(code), "{what}: {}", stderr_of(&fg));
        assert_eq!(bg.status.code(), Some(code), "{what}: {}", stderr_of(&bg));
        assert_eq!(
            without_request_id(&stderr_of(&bg)),
            without_request_id(&stderr_of(&fg)),
            "{what}: not the same error"
        );
        assert!(
            stderr_of(&bg).contains(phrase),
            "{what}: {}",
            stderr_of(&bg)
        );
        assert_eq!(
            stderr_of(&bg).lines().count(),
            1,
            "{what}: {}",
            stderr_of(&bg)
        );
        assert!(!d.is_mounted(), "{what}: left mounted");
    }
    let mut d = d;
    assert_eq!(d.note_daemon(), None, "a daemon was left running");
}

#[test]
fn a_mount_left_by_a_killed_daemon_is_cleaned_and_mounted_again() {
    let fx = Fixture::new("daemon-stale");
    fx.put("file", b"still here");
    let mut d = Detached::new();
    let out = d.mount(&fx.url());
    assert!(out.status.success(), "{}", stderr_of(&out));
    let pid = d.note_daemon().expect("daemon");
    signal(pid, libc::SIGKILL);
    assert!(d.wait_daemons_gone(Duration::from_secs(10)));
    // Dead: "Transport endpoint is not connected" (or "connection aborted").
    let e = std::fs::metadata(d.path()).unwrap_err();
    assert!(
        matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)),
        "{e}"
    );
    let out = d.mount(&fx.url());
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("left mounted by a daemon that is gone"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(std::fs::read(d.path().join("file")).unwrap(), b"still here");
    // Exactly one mount on the mountpoint: the stale one is gone.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let here = d.path().to_string_lossy().into_owned();
    assert_eq!(
        mounts
            .lines()
            .filter(|l| l.split(' ').nth(4) == Some(here.as_str()))
            .count(),
        1
    );
}

#[test]
fn sigterm_while_a_large_write_is_open_keeps_the_old_blob_and_saves_the_unfinished_file_beside_it()
{
    let fx = Fixture::writable("sigterm-write");
    fx.put("big.bin", b"the committed version");
    let mut m = fx.mount(&[]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    let data = pseudo_random_bytes(40 << 20, 5);
    std::fs::write(&src, &data).unwrap();
    let writer = OpenWriter::start(&m.path().join("big.bin"), &src, &dir.path().join("done"));
    m.signal(libc::SIGTERM);
    let status = m.wait_exit(Duration::from_secs(60)).expect("exits");
    let log = m.log();
    // Not finished by its program (no close, no fsync): not committed over the old version.
    assert_eq!(status.code(), Some(1), "{log}");
    drop(writer);
    assert_eq!(
        fx.blob("big.bin").as_deref(),
        Some(&b"the committed version"[..]),
        "the blob was replaced by an unfinished file"
    );
    let partial: Vec<String> = fx
        .names("big.bin.partial-")
        .into_iter()
        .filter(|n| n.starts_with("big.bin.partial-"))
        .collect();
    assert_eq!(partial.len(), 1, "{:?}", fx.names(""));
    let saved = fx.blob(&partial[0]).unwrap();
    assert_eq!(saved.len(), data.len());
    assert!(saved == data, "the saved bytes differ");
    assert!(log.contains("committing 1 file being written"), "{log}");
    assert!(
        log.contains(&format!(
            "1 file not committed: big.bin (unfinished: it was still open and not fsynced; \
             the blob keeps its previous version; its data was saved as {})",
            partial[0]
        )),
        "{log}"
    );
    assert!(!m.is_mounted());
}

/// Checks the local copy of an uncommitted file that the log names, then removes its directory.
fn recovered(log: &str, want: &[u8]) {
    let path = log
        .split("its data is in ")
        .nth(1)
        .and_then(|rest| rest.split([')', ',', '\n']).next())
        .unwrap_or_else(|| panic!("no saved copy named in {log}"));
    assert_eq!(std::fs::read(path).unwrap(), want, "{path}");
    let dir = Path::new(path).parent().unwrap();
    assert!(dir.to_string_lossy().contains("blobmount-recovered-"));
    std::fs::remove_dir_all(dir).unwrap();
}

/// A mount whose Put Block List requests hang, with one file written and left open.
fn hung_commit(fx: &Fixture, extra: &[&str]) -> (common::Mount, OpenWriter, tempfile::TempDir) {
    let m = fx.mount(extra);
    fx.proxy.delay(
        |r| r.query_param("comp").as_deref() == Some("blocklist"),
        Duration::from_secs(60),
    );
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::write(&src, b"cannot be committed").unwrap();
    let w = OpenWriter::start(&m.path().join("stuck.txt"), &src, &dir.path().join("done"));
    (m, w, dir)
}

#[test]
fn a_commit_that_outlives_the_shutdown_timeout_is_reported_in_the_status_and_log() {
    let fx = Fixture::writable("shutdown-timeout");
    let (mut m, _w, _dir) = hung_commit(&fx, &["--shutdown-timeout=1s"]);
    let start = Instant::now();
    m.signal(libc::SIGTERM);
    let status = m.wait_exit(Duration::from_secs(20)).expect("exits");
    let log = m.log();
    assert!(start.elapsed() < Duration::from_secs(15), "{log}");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(
            "1 file not committed: stuck.txt (unfinished: it was still open and not fsynced; \
             the blob keeps its previous version; saving it beside the blob got no answer in \
             time; its data is in "
        ),
        "{log}"
    );
    recovered(&log, b"cannot be committed");
}

#[test]
fn a_second_signal_exits_at_once() {
    let fx = Fixture::writable("second-signal");
    let (mut m, _w, _dir) = hung_commit(&fx, &["--shutdown-timeout=60s"]);
    m.signal(libc::SIGTERM);
    assert!(wait_until(Duration::from_secs(10), || m
        .log()
        .contains("committing 1 file")));
    let start = Instant::now();
    m.signal(libc::SIGINT);
    let status = m.wait_exit(Duration::from_secs(10)).expect("exits at once");
    let log = m.log();
    assert!(start.elapsed() < Duration::from_secs(8), "{log}");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("SIGINT again"), "{log}");
    assert!(log.contains("stuck.txt"), "{log}");
    recovered(&log, b"cannot be committed");
    assert!(!m.is_mounted());
}

/// A tmpfs mounted for a test; unmounted in Drop (also on panic).
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount() -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "cannot mount a tmpfs (root needed)");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn unmount_touches_only_blobmount_mounts_and_says_what_is_not_mounted() {
    let fx = Fixture::new("unmount-only-ours");
    fx.put("d/f", b"x");
    let m = fx.mount(&[]);
    let unmount = |path: &Path| {
        Command::new(bin())
            .arg("unmount")
            .arg(path)
            .output()
            .unwrap()
    };
    // Another filesystem at the path: refused, and left mounted with its files.
    let tmp = Tmpfs::mount();
    std::fs::write(tmp.0.path().join("keep"), b"mine").unwrap();
    let out = unmount(tmp.0.path());
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("is a tmpfs mount, not one of blobmount's"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(std::fs::read(tmp.0.path().join("keep")).unwrap(), b"mine");
    // Nothing mounted there, or a directory inside a mount: "not mounted", non-zero.
    let plain = tempfile::tempdir().unwrap();
    let out = unmount(plain.path());
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("is not mounted"),
        "{}",
        stderr_of(&out)
    );
    let out = unmount(&m.path().join("d"));
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("inside the blobmount mount"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(std::fs::read(m.path().join("d/f")).unwrap(), b"x");
}

#[test]
fn a_daemon_on_a_machine_without_syslog_logs_to_a_file_and_says_where() {
    if blobmount::logging::syslog_available() {
        eprintln!("skipped: this machine has syslog (/dev/log)");
        return;
    }
    let fx = Fixture::writable("daemon-no-syslog");
    fx.put("a.txt", b"a");
    let mut d = Detached::new();
    let log = blobmount::mount::state::fallback_log(d.path()).unwrap();
    let _ = std::fs::remove_file(&log);
    // The token in a file: nothing else to say on the terminal than where the log goes.
    let url = fx.url();
    let (plain, token) = url.split_once('?').unwrap();
    let sas = d.file("token.sas");
    std::fs::write(&sas, token).unwrap();
    std::fs::set_permissions(&sas, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = d.run(
        Command::new(bin())
            .arg("mount")
            .arg(plain)
            .arg(d.path())
            .arg("--sas-file")
            .arg(&sas),
    );
    assert!(out.status.success(), "mount failed: {}", stderr_of(&out));
    let said = stderr_of(&out);
    assert!(
        said.contains("no syslog on this machine")
            && said.contains(&format!("the log goes to {}", log.display())),
        "{said}"
    );
    assert_eq!(said.lines().count(), 1, "{said}");
    assert_eq!(std::fs::read(d.path().join("a.txt")).unwrap(), b"a");
    let out = Command::new(bin())
        .arg("unmount")
        .arg(d.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "unmount failed: {}", stderr_of(&out));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(text.contains("mounted "), "the daemon's log: {text:?}");
    let sig = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "sig")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    assert!(!text.contains(&sig), "the log holds the SAS");
}

/// Runs `script` with sh in a mount namespace of its own, with a private /run/blobmount: its
/// mounts and state files are invisible outside, and its `unmount --all` cannot reach another
/// test's mounts (the copies of FUSE mounts the namespace starts with are detached there
/// first, which leaves the originals alone). The daemons it started are killed when it ends,
/// whatever happened.
fn in_own_namespace(script: &str, dir: &Path, url: &str) -> std::process::Output {
    let wrapped = format!(
        "mkdir -p {state} && mount --make-rprivate / && mount -t tmpfs -o mode=0700 tmpfs {state} || exit 97\n\
         awk '{{ for (i = 7; i <= NF; i++) if ($i == \"-\") {{ if ($(i + 1) ~ /^fuse/) print $5; break }} }}' /proc/self/mountinfo \
           | while read -r m; do umount -l \"$m\" 2>/dev/null; done\n\
         trap 'for f in {state}/*.pid; do [ -e \"$f\" ] && kill -9 $(cut -d\" \" -f1 \"$f\"); done' EXIT\n\
         {script}",
        state = blobmount::mount::state::dir().display()
    );
    Command::new("unshare")
        .args(["--mount", "sh", "-c", &wrapped])
        .current_dir(dir)
        .env("B", bin())
        .env("URL", url)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap()
}

#[test]
fn status_lists_the_mounts_and_unmount_all_stops_them_saying_which_was_busy() {
    let fx = Fixture::writable("status-all");
    fx.put("f", b"x");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a")).unwrap();
    std::fs::create_dir_all(dir.path().join("b")).unwrap();
    let script = r#"
        "$B" mount "$URL" "$PWD/a" --log-file "$PWD/a.log" || exit 10
        "$B" mount "$URL" "$PWD/b" --log-file "$PWD/b.log" || exit 11
        sleep 0.5
        echo "== status"; "$B" status
        (cd b && exec sleep 30) & busy=$!
        sleep 0.3
        echo "== unmount"; "$B" unmount --all; echo "rc=$?"
        kill $busy
        echo "== after"; "$B" list | grep "$PWD" || echo "none of ours"
    "#;
    let out = in_own_namespace(script, dir.path(), &fx.url());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = stderr_of(&out);
    assert_ne!(out.status.code(), Some(97), "no mount namespace: {err}");
    assert!(out.status.success(), "{text}\n{err}");
    let section = |name: &str| {
        text.split(&format!("== {name}\n"))
            .nth(1)
            .and_then(|s| s.split("\n== ").next())
            .unwrap_or("")
            .to_string()
    };
    let status = section("status");
    for m in ["a", "b"] {
        let path = dir.path().join(m);
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("{} ", path.display())))
            .unwrap_or_else(|| panic!("no line for {}: {status}", path.display()));
        assert!(
            line.contains(&format!("devstoreaccount1/{}", fx.container))
                && line.contains("mounted; SAS valid for"),
            "{line}"
        );
    }
    assert!(status.starts_with("MOUNTPOINT"), "{status}");
    let unmount = section("unmount");
    // Another test's mount, copied into the namespace as it started and gone outside since,
    // may fail to unmount here: that is its error line, and the exit code of the worst.
    let ours = dir.path().display().to_string();
    let foreign = err
        .lines()
        .any(|l| l.starts_with("blobmount: ") && !l.contains(&ours));
    assert!(foreign || unmount.contains("rc=0"), "{unmount}\n{err}");
    for m in ["a", "b"] {
        let path = dir.path().join(m);
        assert!(
            unmount.contains(&format!("unmounted {}", path.display())),
            "{unmount}"
        );
    }
    assert!(
        err.contains(&format!(
            "{}: {}",
            dir.path().join("b").display(),
            "the mount was busy"
        )),
        "the busy mount's detach is not reported: {err}"
    );
    assert!(section("after").contains("none of ours"), "{text}");
}

#[test]
fn unmount_takes_a_directory_named_without_a_slash_as_a_path() {
    let fx = Fixture::new("unmount-relative");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let script = r#"
        "$B" mount "$URL" data --log-file "$PWD/d.log" || exit 10
        "$B" unmount data; echo "rc=$?"
        grep -c " $PWD/data " /proc/self/mountinfo || true
    "#;
    let out = in_own_namespace(script, dir.path(), &fx.url());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}\n{}", stderr_of(&out));
    assert!(text.starts_with("rc=0\n0"), "{text}\n{}", stderr_of(&out));
}

#[test]
fn a_long_commit_says_in_the_log_how_much_is_left_and_when_it_is_done() {
    let fx = Fixture::writable("commit-progress");
    let m = fx.mount(&[]);
    // The upload is quick, its Put Block List slow: close waits 3 s for the commit.
    fx.proxy.delay(
        |r| r.query_param("comp").as_deref() == Some("blocklist"),
        Duration::from_secs(3),
    );
    let data = pseudo_random_bytes(12 << 20, 5);
    std::fs::write(m.path().join("big.bin"), &data).unwrap();
    assert!(
        fx.blob("big.bin").as_deref() == Some(&data[..]),
        "committed when close returned"
    );
    let log = m.log();
    assert!(
        log.contains("committing big.bin (12 MiB): ") && log.contains(" left, 2s so far"),
        "{log}"
    );
    assert!(log.contains("committing big.bin: done after "), "{log}");
}
