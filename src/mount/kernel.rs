//! Making the FUSE mount. As root, blobmount calls mount(2) itself, with the type
//! `fuse.blobmount`: `findmnt`, `df -T` and `mount` then show what the mount is (fuser's own
//! call says `fuse`), as they do for mounts made through fusermount3, which other users need
//! and which sets the same type. If the kernel refuses the call, fuser mounts as before.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use fuser::{Config, Filesystem, MountOption, Session, SessionACL, SessionUnmounter};

/// The filesystem type of blobmount's mounts.
pub const FSTYPE: &str = "fuse.blobmount";

/// Unmounts a session, however it was mounted.
pub enum Unmounter {
    Fuser(SessionUnmounter),
    /// Mounted here: unmounted here (umount2 without MNT_DETACH: EBUSY while busy).
    Direct(PathBuf),
}

impl Unmounter {
    pub fn unmount(&mut self) -> io::Result<()> {
        match self {
            Unmounter::Fuser(u) => u.unmount(),
            Unmounter::Direct(path) => {
                // Gone already (unmounted from outside), or something else mounted there
                // since: nothing of ours to unmount.
                if !super::mountinfo::mount_at(path).is_some_and(|m| m.is_ours()) {
                    return Err(io::Error::from_raw_os_error(libc::EINVAL));
                }
                let c = CString::new(path.as_os_str().as_bytes())?;
                // SAFETY: a valid C string; umount2 has no other memory arguments.
                if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            }
        }
    }
}

/// Mounts `fs` on `mountpoint` with `config` and starts its session (the FUSE handshake).
pub fn mount<FS: Filesystem>(
    fs: FS,
    mountpoint: &Path,
    config: &Config,
    max_read: u32,
) -> io::Result<(Session<FS>, Unmounter)> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        match mount_directly(mountpoint, config, max_read) {
            Ok(dev) => {
                let path = mountpoint.to_path_buf();
                return match Session::from_fd(fs, dev, config.acl, config.clone()) {
                    Ok(session) => Ok((session, Unmounter::Direct(path))),
                    Err(e) => {
                        let _ = Unmounter::Direct(path).unmount();
                        Err(e)
                    }
                };
            }
            Err(e) => tracing::debug!("mount(2) as {FSTYPE} refused ({e}): mounting through fuser"),
        }
    }
    let mut session = Session::new(fs, mountpoint, config)?;
    let unmounter = Unmounter::Fuser(session.unmount_callable());
    Ok((session, unmounter))
}

/// Opens /dev/fuse and mounts it on `mountpoint` as fuser would, with blobmount's type.
fn mount_directly(mountpoint: &Path, config: &Config, max_read: u32) -> io::Result<OwnedFd> {
    let dev: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")?
        .into();
    let mut flags: libc::c_ulong = 0;
    let mut source = String::from("blobmount");
    let mut data = format!(
        "fd={},rootmode=40000,user_id={},group_id={},max_read={max_read}",
        dev.as_raw_fd(),
        // SAFETY: getuid cannot fail.
        unsafe { libc::getuid() },
        // SAFETY: getgid cannot fail.
        unsafe { libc::getgid() },
    );
    for o in &config.mount_options {
        match o {
            MountOption::FSName(name) => source = name.clone(),
            MountOption::RO => flags |= libc::MS_RDONLY,
            MountOption::NoDev => flags |= libc::MS_NODEV,
            MountOption::NoSuid => flags |= libc::MS_NOSUID,
            MountOption::NoExec => flags |= libc::MS_NOEXEC,
            MountOption::DefaultPermissions => data.push_str(",default_permissions"),
            // max_read is in `data` already; the subtype is in the type.
            MountOption::RW | MountOption::Exec | MountOption::Subtype(_) => {}
            MountOption::CUSTOM(c) if c.starts_with("max_read=") => {}
            other => {
                return Err(io::Error::other(format!(
                    "option {other:?} is not handled here"
                )))
            }
        }
    }
    // The kernel has no allow_root: fuser's session checks who may use the mount.
    if config.acl != SessionACL::Owner {
        data.push_str(",allow_other");
    }
    let source = CString::new(source)?;
    let target = CString::new(mountpoint.as_os_str().as_bytes())?;
    let fstype = CString::new(FSTYPE)?;
    let data = CString::new(data)?;
    // SAFETY: valid C strings that outlive the call; the data is the text fuse expects.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(dev)
    } else {
        Err(io::Error::last_os_error())
    }
}
