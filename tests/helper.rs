//! blobmount as a mount(8) helper and from a config file: `mount -t fuse.blobmount SOURCE DIR
//! -o OPTIONS` (mount(8) runs mount.fuse3, which runs `blobmount SOURCE DIR -o OPTIONS` from the
//! standard PATH), named mounts, and refused options.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::detached::Detached;
use common::{bin, signature_forms, stderr_of, Fixture};

/// mount.fuse3 looks the helper up in a fixed PATH (/usr/local/sbin first): while a test holds
/// this, /usr/local/sbin/blobmount is a symlink to the binary under test. A symlink that was
/// there before is put back afterwards; a file that is not a symlink is never touched.
struct OnPath;

struct PathState {
    users: usize,
    previous: Option<PathBuf>,
}

static ON_PATH: Mutex<PathState> = Mutex::new(PathState {
    users: 0,
    previous: None,
});
const LINK: &str = "/usr/local/sbin/blobmount";

impl OnPath {
    fn install() -> OnPath {
        let mut st = ON_PATH.lock().unwrap_or_else(|e| e.into_inner());
        if st.users == 0 {
            st.previous = match std::fs::read_link(LINK) {
                Ok(target) => {
                    std::fs::remove_file(LINK).unwrap();
                    Some(target)
                }
                Err(_) if Path::new(LINK).exists() => {
                    panic!("{LINK} exists and is not a symlink: not replacing it")
                }
                Err(_) => None,
            };
            std::fs::create_dir_all("/usr/local/sbin").unwrap();
            std::os::unix::fs::symlink(bin(), LINK).unwrap();
        }
        st.users += 1;
        OnPath
    }
}

impl Drop for OnPath {
    fn drop(&mut self) {
        let mut st = ON_PATH.lock().unwrap_or_else(|e| e.into_inner());
        st.users -= 1;
        if st.users == 0 {
            let _ = std::fs::remove_file(LINK);
            if let Some(previous) = st.previous.take() {
                let _ = std::os::unix::fs::symlink(previous, LINK);
            }
        }
    }
}

/// The container URL without its token, and the token, written to a root-only file.
fn plain_url_and_token_file(fx: &Fixture, d: &Detached) -> (String, PathBuf) {
    let url = fx.url();
    let (plain, token) = url.split_once('?').unwrap();
    let file = d.file("box.sas");
    std::fs::write(&file, token).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    (plain.to_string(), file)
}

/// The mount options (per mount, per superblock) of the mount on `path`, from mountinfo.
fn mount_options(path: &Path) -> (String, String) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let here = path.to_string_lossy().into_owned();
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(here.as_str()))
        .unwrap_or_else(|| panic!("{here} not in mountinfo"));
    let fields: Vec<&str> = line.split(' ').collect();
    let dash = fields.iter().position(|f| *f == "-").unwrap();
    (fields[5].to_string(), fields[dash + 3].to_string())
}

fn assert_no_secret(text: &str, url: &str) {
    for s in signature_forms(url) {
        assert!(!text.contains(&s), "the signature leaked: {text}");
    }
}

#[test]
fn mount_t_fuse_blobmount_with_o_options_end_to_end() {
    let _path = OnPath::install();
    let fx = Fixture::writable("mount-t");
    fx.put("dir/file.txt", b"through mount(8)");
    let mut d = Detached::new();
    let (plain, token_file) = plain_url_and_token_file(&fx, &d);
    let options = format!(
        "ro,allow_other,uid=1234,gid=2345,umask=027,noexec,_netdev,nofail,sas_file={},log_file={},metadata_ttl=0",
        token_file.display(),
        d.log_file().display()
    );
    let out = d.run(
        Command::new("mount")
            .args(["-t", "fuse.blobmount"])
            .arg(&plain)
            .arg(d.path())
            .arg("-o")
            .arg(&options),
    );
    assert!(out.status.success(), "mount failed: {}", stderr_of(&out));
    assert!(d.is_mounted(), "not mounted when mount(8) returned");
    let file = d.path().join("dir/file.txt");
    assert_eq!(std::fs::read(&file).unwrap(), b"through mount(8)");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1234, 2345));
    assert_eq!(meta.mode() & 0o7777, 0o640);
    let dir = std::fs::metadata(d.path().join("dir")).unwrap();
    assert_eq!(dir.mode() & 0o7777, 0o750);
    // ro wins over a token that may write.
    let e = std::fs::write(d.path().join("new.txt"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    let (per_mount, per_sb) = mount_options(d.path());
    for o in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(
            per_mount.split(',').any(|x| x == o),
            "{o} not in {per_mount}"
        );
    }
    assert!(per_sb.contains("allow_other"), "{per_sb}");
    let out = Command::new("umount").arg(d.path()).output().unwrap();
    assert!(out.status.success(), "umount: {}", stderr_of(&out));
    assert!(d.wait_daemons_gone(Duration::from_secs(20)));
    let log = d.log();
    assert!(log.contains("stopped"), "{log}");
    assert_no_secret(&log, &fx.url());
}

#[test]
fn a_named_mount_from_the_config_file() {
    let _path = OnPath::install();
    let fx = Fixture::writable("named");
    fx.put("a.txt", b"named mount");
    let mut d = Detached::new();
    let (plain, token_file) = plain_url_and_token_file(&fx, &d);
    let config = d.file("config.toml");
    std::fs::write(
        &config,
        format!(
            "metadata_ttl = \"0\"\n\n[mount.box]\nurl = \"{plain}\"\nsas_file = \"box.sas\"\nmountpoint = \"{}\"\noptions = \"ro\"\nlog_file = \"daemon.log\"\n",
            d.path().display()
        ),
    )
    .unwrap();
    assert_eq!(token_file.parent(), config.parent());
    // blobmount mount NAME: everything comes from the file, and the token never reaches a
    // command line.
    let out = d.run(
        Command::new(bin())
            .args(["mount", "--config"])
            .arg(&config)
            .arg("box"),
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(d.is_mounted());
    assert_eq!(
        std::fs::read(d.path().join("a.txt")).unwrap(),
        b"named mount"
    );
    let pid = d.note_daemon().expect("daemon");
    let cmdline = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap())
        .into_owned();
    assert_no_secret(&cmdline, &fx.url());
    assert_eq!(
        std::fs::write(d.path().join("b"), b"x")
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EROFS)
    );
    let out = Command::new(bin())
        .args(["unmount", "--config"])
        .arg(&config)
        .arg("box")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(!d.is_mounted());
    // The same name through mount(8), as an fstab line `box /mnt fuse.blobmount
    // config=...,_netdev 0 0` would mount it.
    let out = d.run(
        Command::new("mount")
            .args(["-t", "fuse.blobmount", "box"])
            .arg(d.path())
            .arg("-o")
            .arg(format!("config={},_netdev", config.display())),
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(
        std::fs::read(d.path().join("a.txt")).unwrap(),
        b"named mount"
    );
    let out = Command::new("umount").arg(d.path()).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(d.wait_daemons_gone(Duration::from_secs(20)));
    assert_no_secret(&d.log(), &fx.url());
}

#[test]
fn unknown_options_are_refused_and_listed() {
    let _path = OnPath::install();
    let fx = Fixture::new("bad-options");
    let mut d = Detached::new();
    let out = d.run(
        Command::new(bin())
            .arg(fx.url())
            .arg(d.path())
            .args(["-o", "ro,bogus,frob=1,cache_size=1G"]),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert_eq!(
        stderr_of(&out),
        "blobmount: unknown options in -o options: bogus, frob\n"
    );
    let out = d.run(
        Command::new("mount")
            .args(["-t", "fuse.blobmount"])
            .arg(fx.url())
            .arg(d.path())
            .args(["-o", "sync"]),
    );
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("unknown option in -o options: sync"),
        "{}",
        stderr_of(&out)
    );
    assert_no_secret(&stderr_of(&out), &fx.url());
    assert!(!d.is_mounted());
}
