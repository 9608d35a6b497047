//! The SAS lifecycle on a real mount: short-lived tokens refreshed by a command through a long
//! read, write and listing workload; a SAS file replaced on disk and SIGHUP; bad tokens
//! refused while the mount keeps serving; permissions of the token deciding what is allowed.
//! No test output may contain a signature.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// A token for `container` from `blobmount sas generate`, valid for `expiry` (e.g. "20s").
fn generate(account_url: &str, container: &str, perms: &str, expiry: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_blobmount"))
        .args([
            "sas",
            "generate",
            "--account",
            ACCOUNT,
            "--container",
            container,
        ])
        .args([
            "--permissions",
            perms,
            "--expiry",
            expiry,
            "--endpoint",
            account_url,
        ])
        .env("AZURE_STORAGE_KEY", ACCOUNT_KEY)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The plain container URL (no token), through the fixture's proxy.
fn plain_url(f: &Fixture) -> String {
    format!("{}/{}", f.proxy.account_url(), f.container)
}

/// A `--sas-command` script printing a fresh `expiry`-long token and counting its runs.
fn refresh_script(
    dir: &Path,
    f: &Fixture,
    perms: &str,
    expiry: &str,
) -> (String, std::path::PathBuf) {
    let counter = dir.join("runs");
    let script = dir.join("get-sas.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho run >> '{}'\necho 'issuing a token' >&2\nAZURE_STORAGE_KEY='{}' exec '{}' sas generate --account {} --container {} --permissions {} --expiry {} --endpoint '{}'\n",
            counter.display(),
            ACCOUNT_KEY,
            env!("CARGO_BIN_EXE_blobmount"),
            ACCOUNT,
            f.container,
            perms,
            expiry,
            f.proxy.account_url()
        ),
    )
    .unwrap();
    (format!("sh '{}'", script.display()), counter)
}

fn runs(counter: &Path) -> usize {
    std::fs::read_to_string(counter)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[test]
fn twenty_second_tokens_carry_a_long_workload_without_a_single_error() {
    let f = Fixture::writable("refresh");
    let data = pseudo_random_bytes(24 << 20, 1);
    f.put("big.bin", &data);
    for i in 0..20 {
        f.put(&format!("list/{i}"), b"x");
    }
    let dir = tempfile::tempdir().unwrap();
    let (command, counter) = refresh_script(dir.path(), &f, "racwdl", "20s");
    let m = Mount::start(
        &plain_url(&f),
        &[
            "--sas-command",
            &command,
            "--block-size",
            "1M",
            "--cache-size",
            "4M",
        ],
    );
    assert_eq!(runs(&counter), 1, "the first token came from the command");
    let started = Instant::now();
    let run_for = Duration::from_secs(65);
    // Sequential read (a small cache: every pass goes to the service), a growing write
    // committed at the end, and listings, for more than three token lifetimes.
    let mut out = std::fs::File::create(m.path().join("written.bin")).unwrap();
    let mut written = Vec::new();
    let (mut reads, mut lists) = (0, 0);
    while started.elapsed() < run_for {
        let mut file = std::fs::File::open(m.path().join("big.bin")).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut offset = 0;
        while offset < data.len() && started.elapsed() < run_for {
            let n = file.read(&mut buf).unwrap();
            assert!(buf[..n] == data[offset..offset + n], "read at {offset}");
            offset += n;
            reads += 1;
            if reads % 8 == 0 {
                let chunk = pseudo_random_bytes(64 << 10, reads as u64);
                out.write_all(&chunk).unwrap();
                written.extend_from_slice(&chunk);
                assert_eq!(
                    std::fs::read_dir(m.path().join("list")).unwrap().count(),
                    20
                );
                lists += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    out.sync_all().unwrap();
    drop(out);
    assert!(
        f.blob("written.bin").unwrap() == written,
        "the write spanning the expiries landed whole"
    );
    assert!(
        lists > 20 && reads > 100,
        "the workload ran ({reads} reads, {lists} listings)"
    );
    let n = runs(&counter);
    assert!(
        n >= 4,
        "the command ran before each expiry: {n} runs in {:?}",
        started.elapsed()
    );
    let log = m.log();
    assert!(log.contains("new SAS in force"), "{log}");
    assert!(
        log.contains("SAS command: issuing a token"),
        "the command's stderr is in the log"
    );
    assert!(!log.contains("ERROR"), "no errors: {log}");
    let leaked: Vec<&str> = log.lines().filter(|l| l.contains("sig=")).collect();
    assert!(leaked.is_empty(), "log lines show a token: {leaked:?}");
}

#[test]
fn a_replaced_sas_file_is_read_and_bad_contents_are_refused() {
    let f = Fixture::writable("sasfile");
    f.put("a.txt", b"hello");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token.sas");
    // The first token lives 15 s; the file is then replaced.
    let first = generate(&f.proxy.account_url(), &f.container, "racwdl", "15s");
    std::fs::write(&file, &first).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let m = Mount::start(&plain_url(&f), &["--sas-file", file.to_str().unwrap()]);
    assert!(
        m.log().contains("can be read by other users"),
        "warned about the mode"
    );
    // Garbage, a token for another container, an expired token: each refused, old one kept.
    let other = generate(&f.proxy.account_url(), "othercontainer", "racwdl", "1h");
    let expired = generate(&f.proxy.account_url(), &f.container, "racwdl", "1s");
    std::thread::sleep(Duration::from_secs(2));
    for (bad, why) in [
        ("not a token at all", "invalid SAS token"),
        (other.as_str(), "not the mounted"),
        (expired.as_str(), "expired"),
    ] {
        std::fs::write(&file, bad).unwrap();
        m.signal(libc::SIGHUP);
        assert!(
            wait_until(Duration::from_secs(10), || m.log().matches(why).count()
                >= 1),
            "no refusal ({why}) in the log:\n{}",
            m.log()
        );
        assert_eq!(
            std::fs::read(m.path().join("a.txt")).unwrap(),
            b"hello",
            "still serving"
        );
    }
    // A good one, written in place: picked up without a signal.
    let second = generate(&f.proxy.account_url(), &f.container, "racwdl", "1h");
    std::fs::write(&file, &second).unwrap();
    assert!(wait_until(Duration::from_secs(10), || m
        .log()
        .contains("new SAS in force")));
    // Past the first token's expiry, everything still works: the new token is in use.
    std::thread::sleep(Duration::from_secs(14));
    std::fs::write(m.path().join("b.txt"), b"after").unwrap();
    assert_eq!(f.blob("b.txt").unwrap(), b"after");
    assert_eq!(std::fs::read(m.path().join("a.txt")).unwrap(), b"hello");
    for sig in signature_forms(&first)
        .into_iter()
        .chain(signature_forms(&second))
    {
        assert!(!m.log().contains(&sig), "a signature is in the log");
    }
}

#[test]
fn a_failing_hanging_or_lying_command_is_refused_while_the_mount_serves() {
    let f = Fixture::writable("badcmd");
    f.put("a.txt", b"hello");
    let dir = tempfile::tempdir().unwrap();
    let good = generate(&f.proxy.account_url(), &f.container, "racwdl", "1h");
    let other = generate(&f.proxy.account_url(), "othercontainer", "racwdl", "1h");
    let expired = generate(&f.proxy.account_url(), &f.container, "racwdl", "1s");
    std::thread::sleep(Duration::from_secs(2));
    // The command gives a good token first, then misbehaves in turn.
    let state = dir.path().join("n");
    let script = dir.path().join("cmd.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nn=$(cat '{state}' 2>/dev/null || echo 0); echo $((n+1)) > '{state}'\ncase $n in\n0) echo '{good}';;\n1) echo oops >&2; exit 7;;\n2) sleep 30;;\n3) echo garbage;;\n4) echo '{other}';;\n5) echo '{expired}';;\n*) echo '{good}';;\nesac\n",
            state = state.display()
        ),
    )
    .unwrap();
    let command = format!("sh '{}'", script.display());
    let m = Mount::start(
        &plain_url(&f),
        &["--sas-command", &command, "--sas-command-timeout", "2s"],
    );
    for (step, why) in [
        (1, "failed"),
        (2, "did not finish within 2s"),
        (3, "invalid SAS token"),
        (4, "not the mounted"),
    ] {
        m.signal(libc::SIGHUP);
        assert!(
            wait_until(Duration::from_secs(15), || m.log().contains(why)),
            "step {step}: no refusal ({why}) in the log:\n{}",
            m.log()
        );
        assert_eq!(
            std::fs::read(m.path().join("a.txt")).unwrap(),
            b"hello",
            "step {step}: still serving"
        );
    }
    assert!(
        m.log().contains("SAS command: oops"),
        "the command's stderr is logged"
    );
    for sig in signature_forms(&good) {
        assert!(!m.log().contains(&sig), "a signature is in the log");
    }
}

#[test]
fn a_token_without_delete_refuses_removal_locally() {
    let f = Fixture::writable("nodelete");
    f.put("keep.txt", b"keep");
    let url = generate(&f.proxy.account_url(), &f.container, "racwl", "1h");
    let m = Mount::start(&url, &[]);
    f.proxy.clear_log();
    let err = std::fs::remove_file(m.path().join("keep.txt")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    assert_eq!(
        f.proxy.count(|r| r.method == "DELETE"),
        0,
        "refused without asking the service"
    );
    assert_eq!(f.blob("keep.txt").unwrap(), b"keep");
    std::fs::write(m.path().join("new.txt"), b"writes still work").unwrap();
    assert_eq!(f.blob("new.txt").unwrap(), b"writes still work");
    assert!(
        m.log().contains("visible") || m.log().contains("command line"),
        "warned about the token in argv"
    );
}

#[test]
fn a_refused_token_is_refreshed_and_the_request_retried_once() {
    let f = Fixture::writable("revoked");
    f.put("a.txt", b"hello");
    let dir = tempfile::tempdir().unwrap();
    let (command, counter) = refresh_script(dir.path(), &f, "racwdl", "1h");
    let m = Mount::start(&plain_url(&f), &["--sas-command", &command]);
    assert_eq!(runs(&counter), 1);
    // The service refuses the token once (revoked early): a new one is fetched, the read retried.
    f.proxy.fail_next(
        1,
        |r| r.is_get_blob(),
        Fault::status(403, "AuthenticationFailed"),
    );
    assert_eq!(std::fs::read(m.path().join("a.txt")).unwrap(), b"hello");
    assert_eq!(runs(&counter), 2, "one refresh");
    assert_eq!(f.proxy.pending_faults(), 0);
    // Refused again and again: EACCES, with a log line saying the SAS was rejected.
    // (a.txt is cached by now: read a file not read yet.)
    f.put("b.txt", b"world");
    assert!(m.path().join("b.txt").exists());
    f.proxy.fail_next(
        100,
        |r| r.is_get_blob(),
        Fault::status(403, "AuthenticationFailed"),
    );
    let err = std::fs::read(m.path().join("b.txt")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    assert!(m.log().contains("the SAS was rejected"), "{}", m.log());
    f.proxy.clear_rules();
}

/// Sets the container's stored access policy `id` (through the SDK, with the account key).
fn set_policy(f: &Fixture, id: &str, permissions: &str) {
    let out = std::process::Command::new("node")
        .current_dir(common::repo_root())
        .args(["scripts/demo-seed.mjs", f.rest.account_url(), &f.container])
        .args(["--policy", id, permissions, "2"])
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A container URL (through the proxy) with a token that names only the policy: sv, si, sr, sig.
fn policy_url(f: &Fixture, id: &str) -> String {
    let params = blobmount::sas::ServiceSasParams {
        account: ACCOUNT.into(),
        container: f.container.clone(),
        identifier: Some(id.into()),
        ..Default::default()
    };
    let token = blobmount::sas::sign_service_sas(&params, ACCOUNT_KEY).unwrap();
    assert!(!token.contains("sp=") && !token.contains("se="), "{token}");
    format!("{}/{}?{token}", f.proxy.account_url(), f.container)
}

#[test]
fn a_token_of_a_stored_access_policy_mounts_with_the_policy_s_permissions() {
    let f = Fixture::new("policy");
    f.put("a.txt", b"hello");
    // The policy reads and lists: the mount serves reads, and the service refuses writes.
    set_policy(&f, "readers", "rl");
    let m = Mount::start(&policy_url(&f, "readers"), &[]);
    assert!(
        m.log().contains("stored access policy \"readers\""),
        "{}",
        m.log()
    );
    assert_eq!(std::fs::read(m.path().join("a.txt")).unwrap(), b"hello");
    // The refusal comes at the commit, as any failed commit: EIO from fsync (or close), and
    // the log says why.
    let mut file = std::fs::File::create(m.path().join("new.txt")).unwrap();
    file.write_all(b"x").unwrap();
    let e = file.sync_all().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    drop(file);
    assert!(
        m.log().contains("not committed") && m.log().contains("403"),
        "{}",
        m.log()
    );
    assert_eq!(f.blob("new.txt"), None, "nothing was written");
    drop(m);
    // A policy that writes: the same kind of token writes, checked by REST.
    set_policy(&f, "writers", "racwdl");
    let m = Mount::start(&policy_url(&f, "writers"), &[]);
    std::fs::write(m.path().join("new.txt"), b"written").unwrap();
    assert_eq!(f.blob("new.txt").as_deref(), Some(&b"written"[..]));
    drop(m);
    // A policy that does not read: refused at mount, in one line.
    set_policy(&f, "listers", "l");
    let fail = Mount::expect_failure(&policy_url(&f, "listers"), &[]);
    assert!(
        fail.stderr.contains("does not allow reading"),
        "{}",
        fail.stderr
    );
}
