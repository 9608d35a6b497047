//! The staging journal, through a real mount killed with SIGKILL: the next mount (or
//! `blobmount recover`) finishes what it had not committed, checked directly against the
//! service: a closed file is committed byte-exact, sending only the blocks the service did not
//! have; content written after the last close goes to `NAME.partial-<UTC>` and the blob keeps
//! its version; a blob changed meanwhile keeps the other version and this content goes to
//! `NAME.conflict-<UTC>`; a record of another format or damaged is refused and left in place.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use common::{bin, pseudo_random_bytes, wait_until, Fixture, Mount, RecordedRequest};

const MIB: usize = 1 << 20;

fn is_put_block(r: &RecordedRequest) -> bool {
    r.method == "PUT" && r.query_param("comp").as_deref() == Some("block")
}

fn is_put_block_list(r: &RecordedRequest) -> bool {
    r.method == "PUT" && r.query_param("comp").as_deref() == Some("blocklist")
}

/// The journal records under a staging directory.
fn records(staging: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&staging.join("journal"), &mut out);
    out
}

/// Waits (10 s at most) until the journal under `staging` has no record left.
fn assert_journal_emptied(staging: &Path) {
    assert!(
        wait_until(Duration::from_secs(10), || records(staging).is_empty()),
        "the journal is emptied once done"
    );
}

/// A file written from a thread of this process: opened, written, then closed when told (the
/// close waits for its commit, and ends with an error when the mount dies under it).
struct Writer {
    close: mpsc::Sender<()>,
    done: std::thread::JoinHandle<()>,
}

impl Writer {
    fn start(path: PathBuf, data: Vec<u8>) -> Writer {
        let (close, wait) = mpsc::channel::<()>();
        let (written, is_written) = mpsc::channel::<()>();
        let done = std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .unwrap();
            f.write_all(&data).unwrap();
            written.send(()).unwrap();
            let _ = wait.recv();
            // close(2): the commit (an error once the mount is killed).
            drop(f);
        });
        is_written
            .recv_timeout(Duration::from_secs(60))
            .expect("the writer wrote");
        Writer { close, done }
    }

    /// Closes the file (without waiting for the close to return).
    fn close(&self) {
        let _ = self.close.send(());
    }
}

/// Kills the mount's daemon with SIGKILL and reaps it (the dead mount is detached on drop).
fn kill9(m: &mut Mount) {
    m.signal(libc::SIGKILL);
    m.wait_exit(Duration::from_secs(10)).expect("killed");
}

fn staging_args(staging: &Path) -> Vec<String> {
    vec![
        "--staging-dir".into(),
        staging.display().to_string(),
        "--block-size".into(),
        "1M".into(),
    ]
}

fn mount(fx: &Fixture, staging: &Path) -> Mount {
    let args = staging_args(staging);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fx.mount(&args)
}

/// A file closed while the upload of its last block (and its commit) hangs, then the mount
/// killed: the journal says it was finished and which blocks were sent (all but the last:
/// every block the writer moved past went while it wrote).
fn killed_during_commit(fx: &Fixture, staging: &Path, name: &str, data: &[u8]) {
    let mut m = mount(fx, staging);
    let w = Writer::start(m.path().join(name), data.to_vec());
    // Every block the writer moved past is sent while it writes; the last waits for the close.
    let moved_past = data.len().div_ceil(MIB) - 1;
    assert!(
        wait_until(Duration::from_secs(30), || fx.proxy.count(is_put_block)
            >= moved_past),
        "{}",
        m.log()
    );
    fx.proxy.delay(
        |r| is_put_block(r) || is_put_block_list(r),
        Duration::from_secs(30),
    );
    w.close();
    // The close has begun its commit (the record says the content is finished), and the
    // answers to the blocks sent while writing have come (the journal lists them).
    let finished = || {
        records(staging).iter().any(|r| {
            let Ok(text) = std::fs::read_to_string(r) else {
                return false;
            };
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            // The blocks sent are appended beside the record, one line each.
            let sent = std::fs::read_to_string(r.with_extension("sent")).unwrap_or_default();
            v["durable"] == "finished" && sent.lines().count() == moved_past
        })
    };
    assert!(wait_until(Duration::from_secs(30), finished), "{}", m.log());
    kill9(&mut m);
    let _ = w.done.join();
    fx.proxy.clear_rules();
    assert_eq!(fx.blob(name), None, "nothing was committed before the kill");
    assert_eq!(records(staging).len(), 1, "one journal record is left");
}

#[test]
fn a_file_closed_while_its_commit_was_cut_off_is_committed_at_the_next_mount_sending_only_what_was_missing(
) {
    let fx = Fixture::writable("journal-resume");
    let staging = tempfile::tempdir().unwrap();
    let data = pseudo_random_bytes(8 * MIB, 11);
    killed_during_commit(&fx, staging.path(), "big.bin", &data);
    fx.proxy.clear_log();
    let m = mount(&fx, staging.path());
    assert!(
        wait_until(Duration::from_secs(60), || fx.blob("big.bin").is_some()),
        "{}",
        m.log()
    );
    assert!(fx.blob("big.bin").unwrap() == data, "committed byte-exact");
    // Blocks 0-6 were in the service: only block 7 went again, and one commit.
    assert_eq!(fx.proxy.count(is_put_block), 1, "{}", m.log());
    assert_eq!(fx.proxy.count(is_put_block_list), 1, "{}", m.log());
    assert!(
        m.log()
            .contains("resumed: committed (7 block(s) were in the service already, 1 sent)"),
        "{}",
        m.log()
    );
    assert_journal_emptied(staging.path());
    // Through the mount too.
    assert!(std::fs::read(m.path().join("big.bin")).unwrap() == data);
}

#[test]
fn blobmount_recover_finishes_the_journal_without_mounting() {
    let fx = Fixture::writable("journal-recover");
    let staging = tempfile::tempdir().unwrap();
    let data = pseudo_random_bytes(8 * MIB + 1234, 12);
    killed_during_commit(&fx, staging.path(), "r.bin", &data);
    let out = std::process::Command::new(bin())
        .arg("recover")
        .arg(fx.url())
        .args(staging_args(staging.path()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "1 file(s) left by an earlier mount: 1 committed, 0 saved beside their blob, 0 left in place, 0 to go (8 block(s) found in the service, 1 sent)"
        ),
        "{stdout}{stderr}"
    );
    assert!(fx.blob("r.bin").unwrap() == data);
    assert!(records(staging.path()).is_empty());
    // The signature is a password: never printed.
    let sig = fx
        .url()
        .split("sig=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    assert!(!stdout.contains(&sig) && !stderr.contains(&sig));
}

#[test]
fn content_written_after_the_last_close_goes_beside_the_blob_which_keeps_its_version() {
    let fx = Fixture::writable("journal-partial");
    let staging = tempfile::tempdir().unwrap();
    let old = b"the committed version".to_vec();
    fx.put("doc.txt", &old);
    let new = pseudo_random_bytes(3 * MIB + 5, 13);
    let mut m = mount(&fx, staging.path());
    // Written, never closed: unfinished.
    let w = Writer::start(m.path().join("doc.txt"), new.clone());
    kill9(&mut m);
    w.close();
    let _ = w.done.join();
    let m = mount(&fx, staging.path());
    let partial = || fx.names("doc.txt.partial-").into_iter().next();
    assert!(
        wait_until(Duration::from_secs(60), || partial().is_some()),
        "{}",
        m.log()
    );
    assert!(
        fx.blob(&partial().unwrap()).unwrap() == new,
        "the unfinished content, whole"
    );
    assert_eq!(
        fx.blob("doc.txt").unwrap(),
        old,
        "the blob keeps its version"
    );
    assert!(wait_until(Duration::from_secs(10), || records(
        staging.path()
    )
    .is_empty()));
}

#[test]
fn a_blob_changed_before_the_resume_keeps_the_other_version_and_this_one_goes_to_a_conflict_copy() {
    let fx = Fixture::writable("journal-conflict");
    let staging = tempfile::tempdir().unwrap();
    let data = pseudo_random_bytes(8 * MIB, 14);
    killed_during_commit(&fx, staging.path(), "c.bin", &data);
    let theirs = b"someone else's version".to_vec();
    fx.put("c.bin", &theirs);
    let m = mount(&fx, staging.path());
    let copy = || fx.names("c.bin.conflict-").into_iter().next();
    assert!(
        wait_until(Duration::from_secs(60), || copy().is_some()),
        "{}",
        m.log()
    );
    assert!(fx.blob(&copy().unwrap()).unwrap() == data);
    assert_eq!(fx.blob("c.bin").unwrap(), theirs);
}

#[test]
fn a_record_of_another_format_or_damaged_is_refused_and_left_in_place() {
    let fx = Fixture::writable("journal-refused");
    let staging = tempfile::tempdir().unwrap();
    fx.put("a.txt", b"version one");
    fx.put("b.txt", b"version one");
    let mut m = mount(&fx, staging.path());
    let wa = Writer::start(m.path().join("a.txt"), b"unfinished a".to_vec());
    let wb = Writer::start(m.path().join("b.txt"), b"unfinished b".to_vec());
    kill9(&mut m);
    for w in [wa, wb] {
        w.close();
        let _ = w.done.join();
    }
    let found = records(staging.path());
    assert_eq!(found.len(), 2);
    let older =
        std::fs::read_to_string(&found[0])
            .unwrap()
            .replacen("\"version\": 1", "\"version\": 0", 1);
    std::fs::write(&found[0], &older).unwrap();
    std::fs::write(
        &found[1],
        b"{\"format\": \"blobmount-staging-journal\", \"vers",
    )
    .unwrap();
    let before: Vec<Vec<u8>> = found.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let m = mount(&fx, staging.path());
    assert!(
        wait_until(Duration::from_secs(30), || {
            m
            .log()
            .contains("2 file(s) left by an earlier mount: 0 committed, 0 saved beside their blob, 2 left in place")
        }),
        "{}",
        m.log()
    );
    let log = m.log();
    assert!(
        log.contains("it is in journal format 0, and this blobmount reads format 1 only"),
        "{log}"
    );
    assert!(log.contains("it is not a journal record"), "{log}");
    // Untouched, and nothing applied.
    let after: Vec<Vec<u8>> = found.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert_eq!(before, after);
    assert_eq!(fx.blob("a.txt").unwrap(), b"version one");
    assert_eq!(fx.blob("b.txt").unwrap(), b"version one");
    assert!(fx.names("a.txt.").is_empty() && fx.names("b.txt.").is_empty());
}

#[test]
fn the_interrupted_copy_run_again_sends_only_the_blocks_it_had_not_sent() {
    let fx = Fixture::writable("journal-reuse");
    let staging = tempfile::tempdir().unwrap();
    let data = pseudo_random_bytes(6 * MIB + 5, 17);
    let mut m = mount(&fx, staging.path());
    // Written, never closed: the six full blocks the writer moved past are sent (and their
    // answers in the journal), the short last one waits for the close.
    let w = Writer::start(m.path().join("copy.bin"), data.clone());
    let sent_lines = || {
        records(staging.path())
            .iter()
            .map(|r| {
                std::fs::read_to_string(r.with_extension("sent"))
                    .unwrap_or_default()
                    .lines()
                    .count()
            })
            .sum::<usize>()
    };
    assert!(
        wait_until(Duration::from_secs(30), || sent_lines() == 6),
        "{}",
        m.log()
    );
    kill9(&mut m);
    w.close();
    let _ = w.done.join();
    // The next mount saves that unfinished content beside the blob, then the copy runs again.
    let m = mount(&fx, staging.path());
    assert!(
        wait_until(Duration::from_secs(60), || !fx
            .names("copy.bin.partial-")
            .is_empty()
            && records(staging.path()).is_empty()),
        "{}",
        m.log()
    );
    fx.proxy.clear_log();
    std::fs::write(m.path().join("copy.bin"), &data).unwrap();
    assert!(
        fx.blob("copy.bin").unwrap() == data,
        "the blob is the copy, byte-exact"
    );
    let to_blob = |r: &RecordedRequest| r.decoded_path().ends_with("/copy.bin");
    assert_eq!(
        fx.proxy.count(|r| is_put_block(r) && to_blob(r)),
        1,
        "only the last block is sent again"
    );
    assert_eq!(fx.proxy.count(|r| is_put_block_list(r) && to_blob(r)), 1);
}

/// Write-back: files closed (close returned) but not yet committed when the mount is killed
/// are all committed byte-exact by the next mount, from the journal alone.
#[test]
fn in_write_back_mode_every_file_closed_before_a_kill_is_committed_byte_exact_by_the_next_mount() {
    let fx = Fixture::writable("journal-write-back");
    let staging = tempfile::tempdir().unwrap();
    fx.put("old.txt", b"the version before");
    let mut files: Vec<(String, Vec<u8>)> = (0..30)
        .map(|i| {
            let len = [0, 1, 4096, 70_000, 200_001][i % 5];
            (
                format!("f{i:02}.dat"),
                pseudo_random_bytes(len, 100 + i as u64),
            )
        })
        .collect();
    files.push(("d/big.bin".into(), pseudo_random_bytes(3 * MIB + 7, 99)));
    files.push(("old.txt".into(), b"the version after".to_vec()));
    let mut args = staging_args(staging.path());
    args.push("--write-back=1h".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut m = fx.mount(&args);
    std::fs::create_dir(m.path().join("d")).unwrap();
    // The time `tar x` gives a file after closing it.
    let when = std::time::UNIX_EPOCH + Duration::from_secs(1_234_567_890);
    for (i, (name, data)) in files.iter().enumerate() {
        // write(2) and close(2): returns once the content and its record are on local disk.
        std::fs::write(m.path().join(name), data).unwrap();
        if i % 2 == 0 {
            set_mtime(&m.path().join(name), when);
        }
    }
    // Seen through the mount as written, and none of it committed yet.
    for (name, data) in &files {
        assert!(
            std::fs::read(m.path().join(name)).unwrap() == *data,
            "{name}"
        );
    }
    for (name, _) in &files[..31] {
        assert_eq!(
            fx.blob(name),
            None,
            "{name} is not committed before the kill"
        );
    }
    assert_eq!(fx.blob("old.txt").unwrap(), b"the version before");
    assert_eq!(
        records(staging.path()).len(),
        files.len(),
        "one record per file"
    );
    kill9(&mut m);
    let m = mount(&fx, staging.path());
    let all_committed = || {
        files
            .iter()
            .all(|(name, data)| fx.blob(name).as_ref() == Some(data))
    };
    assert!(
        wait_until(Duration::from_secs(60), all_committed),
        "{}",
        m.log()
    );
    assert_journal_emptied(staging.path());
    // Nothing saved aside: every one was closed, so none is partial or a conflict.
    let aside: Vec<String> = fx
        .names("")
        .into_iter()
        .filter(|n| n.contains(".partial-") || n.contains(".conflict-"))
        .collect();
    assert!(aside.is_empty(), "{aside:?}");
    for (i, (name, data)) in files.iter().enumerate() {
        let path = m.path().join(name);
        assert!(
            std::fs::read(&path).unwrap() == *data,
            "{name} through the mount"
        );
        if i % 2 == 0 {
            let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
            assert_eq!(
                mtime, when,
                "{name}: the time set after close is committed with it"
            );
        }
    }
}

/// utimensat(2) by path, as `tar x` does after closing a file.
fn set_mtime(path: &Path, t: std::time::SystemTime) {
    use std::os::unix::ffi::OsStrExt;
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as libc::time_t;
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    ];
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path and two timespecs that live across the call.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) };
    assert_eq!(rc, 0, "utimensat {}", path.display());
}

/// Write-back: fsync(2) is still the program's durability point; it commits before returning.
#[test]
fn in_write_back_mode_fsync_commits_before_it_returns() {
    let fx = Fixture::writable("journal-write-back-fsync");
    let staging = tempfile::tempdir().unwrap();
    let mut args = staging_args(staging.path());
    args.push("--write-back=1h".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let m = fx.mount(&args);
    let data = pseudo_random_bytes(2 * MIB + 3, 7);
    let mut f = std::fs::File::create(m.path().join("synced.bin")).unwrap();
    f.write_all(&data).unwrap();
    f.sync_all().unwrap();
    assert!(fx.blob("synced.bin").unwrap() == data, "committed by fsync");
    drop(f);
    std::fs::write(m.path().join("closed.bin"), b"closed only").unwrap();
    assert_eq!(fx.blob("closed.bin"), None, "close alone does not commit");
}
