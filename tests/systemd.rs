//! The systemd side: the template unit verifies (systemd-analyze), the install script puts
//! everything in place, the Type=notify protocol (READY=1, STATUS=, STOPPING=1), and the unit's
//! own ExecStart and ExecStop lines mount, commit and unmount as systemd would run them.
//!
//! systemd is not running here (no PID 1 systemd in CI): systemd-analyze works offline, and the
//! notify socket is the test's own. scripts/install-test-deps.sh installs systemd-analyze and
//! man; BLOBMOUNT_NO_SYSTEMD=1 skips the verification on a machine that cannot have them.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::detached::Detached;
use common::process::{terminate, wait_timeout};
use common::{bin, repo_root, Fixture};

const INSTALLED_BIN: &str = "/usr/local/bin/blobmount";
const INSTALLED_CONFIG: &str = "/etc/blobmount/config.toml";

/// Installs into a fresh DESTDIR with scripts/install.sh (the binary under test).
fn install(destdir: &Path) {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/install.sh"))
        .args(["--no-build", "--bin", bin()])
        .env("DESTDIR", destdir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "install.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn install_script_puts_everything_in_place_and_the_unit_verifies() {
    let dest = tempfile::tempdir().unwrap();
    install(dest.path());
    let d = dest.path();
    for f in [
        "usr/local/bin/blobmount",
        "usr/local/share/man/man1/blobmount.1",
        "usr/local/share/man/man1/blobmount-mount.1",
        "usr/local/share/man/man5/blobmount.toml.5",
        "usr/local/share/bash-completion/completions/blobmount",
        "usr/local/share/zsh/site-functions/_blobmount",
        "usr/local/share/fish/vendor_completions.d/blobmount.fish",
        "etc/systemd/system/blobmount@.service",
        "etc/blobmount/config.toml",
    ] {
        let meta = std::fs::metadata(d.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(meta.len() > 0, "{f} is empty");
    }
    let mode = |p: &str| std::fs::metadata(d.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("etc/blobmount"), 0o700);
    assert_eq!(mode("etc/blobmount/config.toml"), 0o600);
    // The example config parses (everything in it is commented out but the comments).
    let example = d.join("etc/blobmount/config.toml");
    blobmount::options::config::load(&example).unwrap();
    let man =
        std::fs::read_to_string(d.join("usr/local/share/man/man1/blobmount-mount.1")).unwrap();
    assert!(man.contains("shutdown") && man.contains("metrics"), "{man}");
    let bash =
        std::fs::read_to_string(d.join("usr/local/share/bash-completion/completions/blobmount"))
            .unwrap();
    assert!(bash.contains("--sas-file"));
    if std::env::var_os("BLOBMOUNT_NO_SYSTEMD").is_some() {
        eprintln!("BLOBMOUNT_NO_SYSTEMD is set: systemd-analyze verify skipped");
        return;
    }
    // systemd-analyze checks that ExecStart's program exists: point it at the installed copy.
    let unit = std::fs::read_to_string(d.join("etc/systemd/system/blobmount@.service")).unwrap();
    assert!(unit.contains(INSTALLED_BIN));
    let here = d.join("usr/local/bin/blobmount");
    let unit = unit.replace(INSTALLED_BIN, &here.to_string_lossy());
    let units = tempfile::tempdir().unwrap();
    for name in ["blobmount@.service", "blobmount@data.service"] {
        std::fs::write(units.path().join(name), &unit).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(["blobmount@.service", "blobmount@data.service"])
        .current_dir(units.path())
        // Documentation=man:blobmount(1) must resolve: to the installed page.
        .env("MANPATH", d.join("usr/local/share/man"))
        .output()
        .expect("systemd-analyze (install systemd, or set BLOBMOUNT_NO_SYSTEMD=1)");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify: {text}"
    );
}

/// The unit's `KEY=` command line, as systemd would run it for instance `name`, with the
/// installed paths replaced by the binary under test and `config`.
fn unit_command(key: &str, name: &str, config: &Path) -> Vec<String> {
    let unit = std::fs::read_to_string(repo_root().join("systemd/blobmount@.service")).unwrap();
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in the unit"));
    // Plain words only (no quotes, no $VARIABLES): so simple splitting is what systemd does.
    assert!(!line.contains(['"', '\'', '$']), "{line}");
    line.split_whitespace()
        .map(|w| match w {
            INSTALLED_BIN => bin().to_string(),
            INSTALLED_CONFIG => config.to_string_lossy().into_owned(),
            w => w.replace("%i", name),
        })
        .collect()
}

/// A socket in the role of systemd's NOTIFY_SOCKET.
struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        NotifySocket { sock, path }
    }

    /// The next message (panics after 30 s without one).
    fn next(&self) -> String {
        let mut buf = vec![0u8; 4096];
        let n = self
            .sock
            .recv(&mut buf)
            .expect("a notification within 30 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

#[test]
fn the_units_exec_lines_mount_notify_commit_and_unmount() {
    let fx = Fixture::writable("unit");
    fx.put("hello.txt", b"from systemd");
    let mut d = Detached::new();
    let url = fx.url();
    let (plain, token) = url.split_once('?').unwrap();
    std::fs::write(d.file("data.sas"), token).unwrap();
    let config = d.file("config.toml");
    std::fs::write(
        &config,
        format!(
            "[mount.data]\nurl = \"{plain}\"\nsas_file = \"data.sas\"\nmountpoint = \"{}\"\nshutdown_timeout = \"30s\"\n",
            d.path().display()
        ),
    )
    .unwrap();
    let notify = NotifySocket::bind(d.path().parent().unwrap());
    let start = unit_command("ExecStart", "data", &config);
    let log = std::fs::File::create(d.file("service.log")).unwrap();
    let mut service = Command::new(&start[0])
        .args(&start[1..])
        .env("NOTIFY_SOCKET", &notify.path)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let log_path = d.file("service.log");
    let service_log = || common::process::read_lossy(&log_path);
    let ready = notify.next();
    assert!(ready.contains("READY=1"), "{ready}");
    assert!(ready.contains("STATUS=mounted; SAS valid for"), "{ready}");
    assert!(
        d.is_mounted(),
        "READY=1 before the mount: {}",
        service_log()
    );
    d.note_daemon();
    assert_eq!(
        std::fs::read(d.path().join("hello.txt")).unwrap(),
        b"from systemd"
    );
    std::fs::write(d.path().join("written.txt"), b"by a service").unwrap();
    // ExecStop: returns once the service has committed and exited.
    let stop = unit_command("ExecStop", "data", &config);
    let out = Command::new(&stop[0]).args(&stop[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "ExecStop: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        service_log()
    );
    let status = match wait_timeout(&mut service, Duration::from_secs(5)) {
        Some(s) => s,
        None => {
            terminate(&mut service, Duration::from_secs(5));
            panic!("the service was still running after ExecStop returned");
        }
    };
    assert_eq!(status.code(), Some(0), "{}", service_log());
    // STATUS= updates may come first.
    let said: Vec<String> = (0..5)
        .map(|_| notify.next())
        .take_while(|m| !m.contains("STOPPING=1"))
        .collect();
    assert!(said.len() < 5, "no STOPPING=1: {said:?}");
    assert!(!d.is_mounted());
    assert_eq!(
        fx.blob("written.txt").as_deref(),
        Some(&b"by a service"[..])
    );
}
