//! `blobmount mount` before and around mounting, against a real Azurite: every check that must
//! refuse to mount (bad URL or token, wrong resource or permissions, missing container, wrong
//! signature, unreachable endpoint, unusable mount point) fails with one line on stderr, a
//! non-zero exit, nothing mounted and the signature nowhere in the output; and the cases that
//! must mount (account SAS, read-only token, --allow-non-empty) do, and stop cleanly on
//! SIGTERM, SIGINT and `fusermount3 -u`.
//!
//! Every test starts its own Azurite; nothing is shared between tests.

mod common;

use base64::Engine as _;
use blobmount::sas::{sign_account_sas, sign_service_sas, AccountSasParams, ServiceSasParams};
use common::mount::is_fuse_mount;
use common::process::{free_port, read_lossy, terminate, wait_timeout};
use common::{
    container_sas_url, unique_container, Azurite, Fault, Mount, MountFailure, Proxy, Rest, ACCOUNT,
    ACCOUNT_KEY,
};
use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// How long a pre-mount failure may take (the unreachable case has its own, tighter bound).
const FAIL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a daemon may take to mount, or to exit after being told to stop.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(20);

fn in_hours(h: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::hours(h)
}

/// An Azurite with one container holding two blobs, and a read-only (`rl`) SAS URL for it.
struct Fixture {
    az: Azurite,
    rest: Rest,
    container: String,
}

impl Fixture {
    fn new(prefix: &str) -> Fixture {
        let az = Azurite::start();
        let rest = az.rest();
        let container = unique_container(prefix);
        rest.create_container(&container);
        rest.put_blob(&container, "hello.txt", b"hello, world\n");
        rest.put_blob(&container, "dir/inner.txt", b"inner\n");
        Fixture {
            az,
            rest,
            container,
        }
    }

    fn url(&self, perms: &str) -> String {
        container_sas_url(
            &self.az.account_url(),
            &self.container,
            perms,
            None,
            in_hours(1),
        )
    }
}

/// The forms of the URL's `sig` value that must never be printed: as it is in the URL
/// (percent-encoded), decoded, and the decoded value's leading run of letters and digits (to
/// catch a truncated or re-encoded leak).
fn secrets(url: &str) -> Vec<String> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut out = Vec::new();
    for raw in query.split('&').filter_map(|p| p.strip_prefix("sig=")) {
        let decoded = percent_encoding::percent_decode_str(raw)
            .decode_utf8_lossy()
            .into_owned();
        let prefix: String = decoded
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        out.push(raw.to_string());
        if prefix.len() >= 12 {
            out.push(prefix);
        }
        out.push(decoded);
    }
    assert!(out.iter().all(|s| !s.is_empty()), "empty sig in a test URL");
    out
}

/// Asserts the contract of a pre-mount failure and returns the stderr line: a non-zero exit,
/// nothing mounted, nothing on stdout, exactly one non-empty line on stderr containing one of
/// `phrases` (case-insensitive), and none of `secrets` anywhere.
fn assert_one_line(f: &MountFailure, phrases: &[&str], secrets: &[String]) -> String {
    assert!(
        matches!(f.code, Some(c) if c != 0),
        "wanted a non-zero exit code, got {:?}: {f:?}",
        f.status
    );
    assert!(!f.left_mounted, "something was left mounted: {f:?}");
    for s in secrets {
        assert!(
            !f.stderr.contains(s.as_str()) && !f.stdout.contains(s.as_str()),
            "the SAS signature appears in the output: {f:?}"
        );
    }
    assert!(f.stdout.trim().is_empty(), "unexpected stdout: {f:?}");
    let line = f.stderr.trim();
    assert!(!line.is_empty(), "nothing on stderr: {f:?}");
    assert_eq!(
        line.lines().count(),
        1,
        "stderr is not one line:\n{}",
        f.stderr
    );
    let lower = line.to_lowercase();
    assert!(
        phrases.iter().any(|p| lower.contains(&p.to_lowercase())),
        "stderr {line:?} contains none of {phrases:?}"
    );
    line.to_string()
}

// ---------------------------------------------------------------------------------------
// A daemon on a mount point of the test's choosing (the harness's `Mount` makes its own).
// ---------------------------------------------------------------------------------------

/// Mount points in /proc/self/mountinfo equal to `path` (stacked mounts count apart).
fn mount_count(path: &Path) -> usize {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = path.to_string_lossy();
    info.lines()
        .filter(|line| line.split(' ').nth(4).map(unescape_mountinfo).as_deref() == Some(&want))
        .count()
}

/// Undoes mountinfo's octal escapes (`\040` for a space and the like).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `blobmount mount URL MOUNTPOINT --foreground EXTRA...` with stdout and stderr captured in a
/// temp dir of its own. Dropping it unmounts anything it mounted (only if it added a mount on
/// top of the ones that were there when it started) and stops the process by its pid.
struct Daemon {
    child: Option<Child>,
    mountpoint: PathBuf,
    mounts_before: usize,
    logs: tempfile::TempDir,
}

impl Daemon {
    fn spawn(sas_url: &str, mountpoint: &Path, extra: &[&str]) -> Daemon {
        let logs = tempfile::Builder::new()
            .prefix("blobmount-premount-")
            .tempdir()
            .expect("temp dir for logs");
        let out = File::create(logs.path().join("stdout.log")).expect("stdout log");
        let err = File::create(logs.path().join("stderr.log")).expect("stderr log");
        let mounts_before = mount_count(mountpoint);
        let child = Command::new(env!("CARGO_BIN_EXE_blobmount"))
            .arg("mount")
            .arg(sas_url)
            .arg(mountpoint)
            .arg("--foreground")
            .args(extra)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start blobmount");
        Daemon {
            child: Some(child),
            mountpoint: mountpoint.to_path_buf(),
            mounts_before,
            logs,
        }
    }

    fn added_mount(&self) -> bool {
        mount_count(&self.mountpoint) > self.mounts_before
    }

    fn outputs(&self) -> (String, String) {
        (
            read_lossy(&self.logs.path().join("stdout.log")),
            read_lossy(&self.logs.path().join("stderr.log")),
        )
    }

    /// Waits for the process to exit without mounting; panics (after cleaning up) if it mounts
    /// or is still running after [`FAIL_TIMEOUT`].
    fn expect_failure(mut self) -> MountFailure {
        let deadline = Instant::now() + FAIL_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("child");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                let left_mounted = self.added_mount();
                let (stdout, stderr) = self.outputs();
                return MountFailure {
                    code: status.code(),
                    status,
                    stdout,
                    stderr,
                    left_mounted,
                };
            }
            if self.added_mount() {
                let (o, e) = self.outputs();
                drop(self);
                panic!("blobmount mounted but was expected to fail:\n{e}{o}");
            }
            if Instant::now() >= deadline {
                let (o, e) = self.outputs();
                drop(self);
                panic!("blobmount neither failed nor mounted within {FAIL_TIMEOUT:?}:\n{e}{o}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the process has mounted; panics (after cleaning up) if it exits first.
    fn wait_mounted(&mut self) {
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        while !self.added_mount() {
            let child = self.child.as_mut().expect("child");
            if let Ok(Some(status)) = child.try_wait() {
                let (o, e) = self.outputs();
                panic!("blobmount exited ({status}) instead of mounting:\n{e}{o}");
            }
            if Instant::now() >= deadline {
                let (o, e) = self.outputs();
                panic!("blobmount did not mount within {MOUNT_TIMEOUT:?}:\n{e}{o}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `fusermount3 -u` (not lazy), then the exit status of the daemon.
    fn unmount(mut self) -> ExitStatus {
        let out = Command::new("fusermount3")
            .arg("-u")
            .arg(&self.mountpoint)
            .output()
            .expect("run fusermount3");
        assert!(
            out.status.success(),
            "fusermount3 -u failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status = wait_timeout(self.child.as_mut().expect("child"), MOUNT_TIMEOUT);
        match status {
            Some(s) => {
                self.child = None;
                s
            }
            None => {
                let (o, e) = self.outputs();
                panic!("blobmount did not exit after fusermount3 -u:\n{e}{o}");
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.added_mount() {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mountpoint)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(5));
        }
    }
}

/// A temp dir for mount points, canonical (the daemon reports canonical paths).
fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("blobmount-premount-mp-")
        .tempdir()
        .expect("temp dir");
    let path = std::fs::canonicalize(dir.path()).expect("canonical temp dir");
    (dir, path)
}

// ---------------------------------------------------------------------------------------
// The URL and the token.
// ---------------------------------------------------------------------------------------

#[test]
fn malformed_url_is_refused() {
    let f = Mount::expect_failure("not-a-url", &[]);
    assert_one_line(&f, &["malformed container url"], &[]);
}

#[test]
fn url_without_token_is_refused() {
    let fx = Fixture::new("no-token");
    let url = format!("{}/{}", fx.az.account_url(), fx.container);
    let f = Mount::expect_failure(&url, &[]);
    assert_one_line(&f, &["no SAS token"], &[]);
}

#[test]
fn malformed_token_garbled_version_is_refused() {
    let fx = Fixture::new("garbled-sv");
    let good = fx.url("rl");
    let (before, after) = good.split_once("sv=").expect("the token has sv=");
    let (_, rest) = after.split_once('&').expect("sv is not the last parameter");
    let url = format!("{before}sv=not-a-version&{rest}");
    let f = Mount::expect_failure(&url, &[]);
    let line = assert_one_line(&f, &["unsupported SAS version"], &secrets(&url));
    assert!(line.contains("version"), "{line}");
    assert!(
        !line.contains("SAS token: invalid"),
        "nested prefixes: {line}"
    );
}

#[test]
fn malformed_token_without_sig_is_refused() {
    let fx = Fixture::new("no-sig");
    let good = fx.url("rl");
    let secret = secrets(&good);
    let (base, query) = good.split_once('?').unwrap();
    let query: Vec<&str> = query
        .split('&')
        .filter(|p| !p.starts_with("sig="))
        .collect();
    let url = format!("{base}?{}", query.join("&"));
    let f = Mount::expect_failure(&url, &[]);
    let line = assert_one_line(&f, &["invalid SAS token: missing `sig`"], &secret);
    assert!(line.contains("sig"), "{line}");
    assert_eq!(line.matches("SAS").count(), 1, "one prefix: {line}");
}

#[test]
fn a_url_the_shell_cut_at_its_first_ampersand_is_explained() {
    let fx = Fixture::new("cut-url");
    let good = fx.url("rl");
    let secret = secrets(&good);
    let (cut, _) = good
        .split_once('&')
        .expect("the token has several parameters");
    let f = Mount::expect_failure(cut, &[]);
    let line = assert_one_line(&f, &["invalid SAS token", "quote it"], &secret);
    assert!(line.contains("first `&`"), "{line}");
}

#[test]
fn expired_token_is_refused() {
    let fx = Fixture::new("expired");
    let url = container_sas_url(
        &fx.az.account_url(),
        &fx.container,
        "rl",
        Some(in_hours(-3)),
        in_hours(-1),
    );
    let f = Mount::expect_failure(&url, &[]);
    assert_one_line(&f, &["expired"], &secrets(&url));
}

#[test]
fn not_yet_valid_token_is_refused() {
    let fx = Fixture::new("not-yet");
    let url = container_sas_url(
        &fx.az.account_url(),
        &fx.container,
        "rl",
        Some(in_hours(1)),
        in_hours(2),
    );
    let f = Mount::expect_failure(&url, &[]);
    assert_one_line(&f, &["not valid until", "not yet valid"], &secrets(&url));
}

#[test]
fn blob_sas_is_refused() {
    let fx = Fixture::new("blob-sas");
    let mut p = ServiceSasParams::new(ACCOUNT, &fx.container, "rl", in_hours(1));
    p.blob = Some("hello.txt".into());
    let token = sign_service_sas(&p, ACCOUNT_KEY).expect("sign blob SAS");
    assert!(token.contains("sr=b&"), "{token}");
    let url = format!("{}/{}?{token}", fx.az.account_url(), fx.container);
    let f = Mount::expect_failure(&url, &[]);
    let line = assert_one_line(&f, &["blob SAS"], &secrets(&url));
    assert!(line.contains("sr=c"), "should say what to use: {line}");
}

#[test]
fn token_without_read_is_refused() {
    let fx = Fixture::new("no-read");
    let url = fx.url("l");
    let f = Mount::expect_failure(&url, &[]);
    let line = assert_one_line(&f, &["lacks the r (read)"], &secrets(&url));
    assert!(!line.contains("l (list)"), "{line}");
}

#[test]
fn token_without_list_is_refused() {
    let fx = Fixture::new("no-list");
    let url = fx.url("r");
    let f = Mount::expect_failure(&url, &[]);
    let line = assert_one_line(&f, &["lacks the l (list)"], &secrets(&url));
    assert!(!line.contains("r (read)"), "{line}");
}

#[test]
fn missing_container_is_refused() {
    let az = Azurite::start();
    let never_created = unique_container("never-created");
    let url = container_sas_url(&az.account_url(), &never_created, "rl", None, in_hours(1));
    let f = Mount::expect_failure(&url, &[]);
    let line = assert_one_line(&f, &["does not exist"], &secrets(&url));
    assert!(line.contains(&never_created), "{line}");
}

#[test]
fn wrong_signature_is_refused_with_error_code_and_request_id() {
    let fx = Fixture::new("wrong-key");
    let wrong_key = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
    let p = ServiceSasParams::new(ACCOUNT, &fx.container, "rl", in_hours(1));
    let token = sign_service_sas(&p, &wrong_key).expect("sign with the wrong key");
    let url = format!("{}/{}?{token}", fx.az.account_url(), fx.container);
    let f = Mount::expect_failure(&url, &[]);
    let line = assert_one_line(&f, &["rejected the SAS token"], &secrets(&url));
    assert!(
        line.contains("AuthorizationFailure") || line.contains("AuthenticationFailed"),
        "no Azure error code in {line:?}"
    );
    assert!(line.contains("request id"), "no request id in {line:?}");
    assert!(!line.contains(&wrong_key), "{line}");
}

#[test]
fn unreachable_endpoint_fails_after_a_short_retry() {
    // A port with nothing listening: connections are refused.
    let port = free_port();
    let account_url = format!("http://127.0.0.1:{port}/{ACCOUNT}");
    let url = container_sas_url(&account_url, "nobody-home", "rl", None, in_hours(1));
    let t = Instant::now();
    let f = Mount::expect_failure(&url, &[]);
    let took = t.elapsed();
    assert_one_line(&f, &["cannot reach"], &secrets(&url));
    assert!(
        took < Duration::from_secs(15),
        "took {took:?} to give up on an unreachable endpoint"
    );
}

#[test]
fn unreachable_proxy_fails_after_a_short_retry() {
    let fx = Fixture::new("unreachable-proxy");
    let proxy = Proxy::start(&fx.az.account_url());
    proxy.set_unreachable(true);
    let url = container_sas_url(&proxy.account_url(), &fx.container, "rl", None, in_hours(1));
    let t = Instant::now();
    let f = Mount::expect_failure(&url, &[]);
    let took = t.elapsed();
    assert_one_line(&f, &["cannot reach"], &secrets(&url));
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[test]
fn busy_service_is_retried_briefly_then_refused() {
    let fx = Fixture::new("busy");
    let proxy = Proxy::start(&fx.az.account_url());
    proxy.fail_next(100, |r| r.is_list(), Fault::server_busy());
    let url = container_sas_url(&proxy.account_url(), &fx.container, "rl", None, in_hours(1));
    let t = Instant::now();
    let f = Mount::expect_failure(&url, &[]);
    let took = t.elapsed();
    let line = assert_one_line(&f, &["ServerBusy"], &secrets(&url));
    assert!(line.contains("request id"), "{line}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    // Retried, but only a little (RetryPolicy::short: two retries).
    let lists = proxy.count(|r| r.is_list());
    assert!(
        (2..=4).contains(&lists),
        "{lists} list requests before giving up"
    );
}

// ---------------------------------------------------------------------------------------
// The mount point.
// ---------------------------------------------------------------------------------------

#[test]
fn missing_mountpoint_is_refused() {
    let fx = Fixture::new("mp-missing");
    let url = fx.url("rl");
    let (_dir, base) = scratch();
    let mp = base.join("missing");
    let f = Daemon::spawn(&url, &mp, &[]).expect_failure();
    let line = assert_one_line(&f, &["does not exist"], &secrets(&url));
    assert!(line.contains("mountpoint"), "{line}");
    assert!(!mp.exists(), "the mount point was created");
}

#[test]
fn mountpoint_that_is_a_file_is_refused() {
    let fx = Fixture::new("mp-file");
    let url = fx.url("rl");
    let (_dir, base) = scratch();
    let mp = base.join("a-file");
    std::fs::write(&mp, b"not a directory").unwrap();
    let f = Daemon::spawn(&url, &mp, &[]).expect_failure();
    assert_one_line(&f, &["not a directory"], &secrets(&url));
    assert_eq!(std::fs::read(&mp).unwrap(), b"not a directory");
}

#[test]
fn mountpoint_that_is_already_a_mount_is_refused() {
    let fx = Fixture::new("mp-mounted");
    let url = fx.url("rl");
    let first = Mount::start(&url, &[]);
    let mp = first.path().to_path_buf();
    assert_eq!(mount_count(&mp), 1);

    let f = Daemon::spawn(&url, &mp, &[]).expect_failure();
    assert_one_line(&f, &["already a mount point"], &secrets(&url));
    // The first mount is untouched and still serves.
    assert_eq!(mount_count(&mp), 1);
    assert!(first.is_mounted());
    assert_eq!(
        std::fs::read(mp.join("hello.txt")).unwrap(),
        b"hello, world\n"
    );
    let status = first.unmount();
    assert!(status.success(), "{status}");
    assert_eq!(mount_count(&mp), 0);
}

#[test]
fn non_empty_mountpoint_is_refused() {
    let fx = Fixture::new("mp-non-empty");
    let url = fx.url("rl");
    let (_dir, mp) = scratch();
    std::fs::write(mp.join("hidden.txt"), b"mine").unwrap();
    let f = Daemon::spawn(&url, &mp, &[]).expect_failure();
    let line = assert_one_line(&f, &["not empty"], &secrets(&url));
    assert!(line.contains("--allow-non-empty"), "{line}");
    assert_eq!(std::fs::read(mp.join("hidden.txt")).unwrap(), b"mine");
}

#[test]
fn allow_non_empty_mounts_over_files_and_gives_them_back() {
    let fx = Fixture::new("mp-allow");
    let url = fx.url("rl");
    let (_dir, mp) = scratch();
    std::fs::write(mp.join("hidden.txt"), b"mine").unwrap();

    let mut d = Daemon::spawn(&url, &mp, &["--allow-non-empty"]);
    d.wait_mounted();
    let mut names: Vec<String> = std::fs::read_dir(&mp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["dir", "hello.txt"]);
    assert_eq!(
        std::fs::metadata(mp.join("hidden.txt")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        std::fs::read(mp.join("hello.txt")).unwrap(),
        b"hello, world\n"
    );

    let status = d.unmount();
    assert!(status.success(), "{status}");
    assert!(!is_fuse_mount(&mp));
    assert_eq!(std::fs::read(mp.join("hidden.txt")).unwrap(), b"mine");
}

// ---------------------------------------------------------------------------------------
// Account SAS, read-only tokens.
// ---------------------------------------------------------------------------------------

fn account_sas_url(az: &Azurite, container: &str, srt: &str, perms: &str) -> String {
    let p = AccountSasParams {
        account: ACCOUNT.into(),
        services: "b".into(),
        resource_types: srt.into(),
        permissions: perms.into(),
        expiry: Some(in_hours(1)),
        ..Default::default()
    };
    let token = sign_account_sas(&p, ACCOUNT_KEY).expect("sign account SAS");
    format!("{}/{container}?{token}", az.account_url())
}

#[test]
fn account_sas_mounts_and_lists() {
    let fx = Fixture::new("account-sas");
    for srt in ["co", "sco"] {
        let url = account_sas_url(&fx.az, &fx.container, srt, "rl");
        assert!(url.contains(&format!("srt={srt}&")), "{url}");
        let m = Mount::start(&url, &[]);
        let mut names: Vec<String> = std::fs::read_dir(m.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["dir", "hello.txt"], "srt={srt}");
        assert_eq!(
            std::fs::read(m.path().join("dir/inner.txt")).unwrap(),
            b"inner\n",
            "srt={srt}"
        );
        let log = m.log();
        for s in secrets(&url) {
            assert!(!log.contains(&s), "the signature is in the log:\n{log}");
        }
        let status = m.unmount();
        assert!(status.success(), "srt={srt}: {status}");
    }
}

#[test]
fn account_sas_for_service_only_is_refused() {
    let fx = Fixture::new("account-srt-s");
    let url = account_sas_url(&fx.az, &fx.container, "s", "rl");
    let f = Mount::expect_failure(&url, &[]);
    let line = assert_one_line(&f, &["srt=s"], &secrets(&url));
    assert!(line.contains("account SAS"), "{line}");
}

#[test]
fn read_only_token_mounts_read_only_and_writes_fail_with_erofs() {
    let fx = Fixture::new("read-only");
    let url = fx.url("rl");
    let m = Mount::start(&url, &[]);
    assert!(
        common::wait_until(Duration::from_secs(5), || m
            .log()
            .contains("no write permissions")),
        "no read-only notice in the log:\n{}",
        m.log()
    );
    let p = m.path();
    let erofs = |what: &str, r: std::io::Result<()>| {
        let e = r.expect_err(&format!("{what} succeeded on a read-only mount"));
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{what}: {e}");
    };
    erofs("write a new file", std::fs::write(p.join("new.txt"), b"x"));
    erofs(
        "overwrite a blob",
        std::fs::write(p.join("hello.txt"), b"changed"),
    );
    erofs(
        "open a blob for appending",
        std::fs::OpenOptions::new()
            .append(true)
            .open(p.join("hello.txt"))
            .map(drop),
    );
    erofs("mkdir", std::fs::create_dir(p.join("newdir")));
    erofs("remove a blob", std::fs::remove_file(p.join("hello.txt")));
    erofs(
        "rename a blob",
        std::fs::rename(p.join("hello.txt"), p.join("renamed.txt")),
    );
    erofs("rmdir", std::fs::remove_dir(p.join("dir")));

    // Nothing changed in the container.
    let mut names = fx.rest.list_blob_names(&fx.container, "");
    names.sort();
    assert_eq!(names, ["dir/inner.txt", "hello.txt"]);
    assert_eq!(
        fx.rest.get_blob(&fx.container, "hello.txt").unwrap(),
        b"hello, world\n"
    );
    assert_eq!(
        std::fs::read(p.join("hello.txt")).unwrap(),
        b"hello, world\n"
    );
    let status = m.unmount();
    assert!(status.success(), "{status}");
}

// ---------------------------------------------------------------------------------------
// Stopping.
// ---------------------------------------------------------------------------------------

fn stops_cleanly_on(sig: i32, name: &str) {
    let fx = Fixture::new(name);
    let mut m = Mount::start(&fx.url("rl"), &[]);
    let mp = m.path().to_path_buf();
    assert_eq!(
        std::fs::read(mp.join("hello.txt")).unwrap(),
        b"hello, world\n"
    );
    m.signal(sig);
    let status = m
        .wait_exit(MOUNT_TIMEOUT)
        .unwrap_or_else(|| panic!("no exit within {MOUNT_TIMEOUT:?} of {name}:\n{}", m.log()));
    assert_eq!(status.code(), Some(0), "{name}: {status}\n{}", m.log());
    assert!(!is_fuse_mount(&mp), "still mounted after {name}");
    assert_eq!(mount_count(&mp), 0, "a mount is left after {name}");
}

#[test]
fn sigterm_unmounts_and_exits_zero() {
    stops_cleanly_on(libc::SIGTERM, "SIGTERM");
}

#[test]
fn sigint_unmounts_and_exits_zero() {
    stops_cleanly_on(libc::SIGINT, "SIGINT");
}

#[test]
fn fusermount_u_makes_the_daemon_exit_zero() {
    let fx = Fixture::new("fusermount");
    let m = Mount::start(&fx.url("rl"), &[]);
    let mp = m.path().to_path_buf();
    assert!(std::fs::metadata(mp.join("dir")).unwrap().is_dir());
    let status = m.unmount();
    assert_eq!(status.code(), Some(0), "{status}");
    assert_eq!(mount_count(&mp), 0);
}
