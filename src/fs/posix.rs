//! POSIX attributes kept in blob metadata, and how they are spelt there.
//!
//! Keys, named as rclone's metadata names them where it has a name:
//! - `mode`: octal permission bits (`0644`); a special file's carries its type bits too
//!   (`10644`: a FIFO), as rclone writes st_mode.
//! - `uid`, `gid`: decimal owner and group. A file without them belongs to the mount's
//!   `--uid`/`--gid`; a file records them only when they differ from those (see [`Creator`]).
//! - `mtime`, `atime`: RFC 3339 with nanoseconds. Without `mtime` a file shows Last-Modified;
//!   without `atime`, its mtime.
//! - `rdev`: hexadecimal device number of a character or block device (as rclone writes it).
//!
//! ctime is the blob's Last-Modified: the service changes it on every write of data or
//! metadata, which is what ctime means.

use std::collections::HashMap;
use std::time::SystemTime;

/// Metadata keys blobmount reads and writes.
pub const META_MTIME: &str = "mtime";
pub const META_ATIME: &str = "atime";
pub const META_MODE: &str = "mode";
pub const META_UID: &str = "uid";
pub const META_GID: &str = "gid";
pub const META_RDEV: &str = "rdev";
pub const META_SYMLINK: &str = "is_symlink";

const S_IFMT: u32 = libc::S_IFMT;
const S_ISGID: u32 = libc::S_ISGID;

/// What a name stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// A blob with metadata `is_symlink=true` whose content is the target (blobfuse2's way).
    Symlink,
    /// A FIFO, socket or device: a zero-length blob with its type in `mode`.
    Special(Special),
}

/// A file the kernel serves by itself once it knows the type (mkfifo, mknod, bind): a
/// zero-length blob whose `mode` carries the type bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    Fifo,
    Socket,
    /// A character device and its device number.
    Char(u32),
    /// A block device and its device number.
    Block(u32),
}

impl Special {
    /// The special file that `mode`'s type bits name (with device number `rdev`), if any.
    pub fn from_mode(mode: u32, rdev: u32) -> Option<Special> {
        match mode & S_IFMT {
            libc::S_IFIFO => Some(Special::Fifo),
            libc::S_IFSOCK => Some(Special::Socket),
            libc::S_IFCHR => Some(Special::Char(rdev)),
            libc::S_IFBLK => Some(Special::Block(rdev)),
            _ => None,
        }
    }

    /// The type bits of st_mode.
    pub fn type_bits(self) -> u32 {
        match self {
            Special::Fifo => libc::S_IFIFO,
            Special::Socket => libc::S_IFSOCK,
            Special::Char(_) => libc::S_IFCHR,
            Special::Block(_) => libc::S_IFBLK,
        }
    }

    /// The device number (0 for FIFOs and sockets).
    pub fn rdev(self) -> u32 {
        match self {
            Special::Char(d) | Special::Block(d) => d,
            Special::Fifo | Special::Socket => 0,
        }
    }
}

/// The POSIX attributes a blob's metadata holds (each `None` when it holds none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// Permission bits (setuid, setgid and sticky included).
    pub perm: Option<u16>,
    /// The type of a special file.
    pub special: Option<Special>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: Option<SystemTime>,
    pub atime: Option<SystemTime>,
}

impl Stored {
    /// Reads the attributes out of `metadata`; values that do not parse count as absent.
    pub fn parse(metadata: &HashMap<String, String>, size: u64) -> Stored {
        let mode = metadata
            .get(META_MODE)
            .and_then(|v| u32::from_str_radix(v.trim_start_matches("0o"), 8).ok());
        let number = |k: &str| metadata.get(k).and_then(|v| v.trim().parse::<u32>().ok());
        let rdev = metadata
            .get(META_RDEV)
            .and_then(|v| u32::from_str_radix(v.trim().trim_start_matches("0x"), 16).ok());
        // Content means a regular file, whatever the type bits say: the kernel would never
        // read the content of a FIFO or a device.
        let special = mode
            .filter(|_| size == 0)
            .and_then(|m| Special::from_mode(m, rdev.unwrap_or(0)));
        Stored {
            perm: mode.map(|m| (m & 0o7777) as u16),
            special,
            uid: number(META_UID),
            gid: number(META_GID),
            mtime: metadata.get(META_MTIME).and_then(|v| parse_time(v)),
            atime: metadata.get(META_ATIME).and_then(|v| parse_time(v)),
        }
    }
}

/// The `mode` value for permission bits `perm` of a file of type `special` (None: any other).
pub fn format_mode(perm: u16, special: Option<Special>) -> String {
    let bits = u32::from(perm & 0o7777) | special.map_or(0, Special::type_bits);
    format!("{bits:04o}")
}

/// Formats a time for the `mtime` and `atime` metadata; `None` for a time RFC 3339 cannot
/// write (before year 0 or after 9999).
pub fn format_time(t: SystemTime) -> Option<String> {
    let nanos = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_nanos()).ok()?,
        Err(e) => -i128::try_from(e.duration().as_nanos()).ok()?,
    };
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn parse_time(v: &str) -> Option<SystemTime> {
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(SystemTime::from)
}

/// Who creates a file or directory, and with which permission bits (the umask applied, as
/// the kernel sends them): what create, mkdir, mknod and symlink record. `None`: the mount's
/// default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Creator {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub perm: Option<u16>,
}

/// The mount's defaults for files that record no attributes (`--uid`, `--gid`,
/// `--file-mode`, `--dir-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    pub uid: u32,
    pub gid: u32,
    pub file_mode: u16,
    pub dir_mode: u16,
}

/// What a new entry inherits from its directory (a setgid directory's group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    /// The directory's permission bits.
    pub perm: u16,
    pub gid: u32,
}

impl Creator {
    /// The mount's defaults in every respect.
    pub const DEFAULTS: Creator = Creator {
        uid: None,
        gid: None,
        perm: None,
    };

    /// The metadata a new entry of kind `kind` records: only what differs from the mount's
    /// defaults, so a container written by one user through one mount carries no owners and
    /// stays portable; a special file always records its type. In a setgid directory the
    /// entry takes the directory's group, and a new directory keeps the setgid bit (as ext4
    /// does). A symlink's permission bits mean nothing and are not kept.
    pub fn metadata(&self, kind: Kind, parent: Parent, d: &Defaults) -> HashMap<String, String> {
        let dir = kind == Kind::Dir;
        let default_perm = if dir { d.dir_mode } else { d.file_mode };
        let mut perm = self.perm.unwrap_or(default_perm) & 0o7777;
        let mut gid = self.gid.unwrap_or(d.gid);
        if parent.perm & S_ISGID as u16 != 0 {
            gid = parent.gid;
            if dir {
                perm |= S_ISGID as u16;
            }
        }
        let special = match kind {
            Kind::Special(s) => Some(s),
            _ => None,
        };
        let mut m = HashMap::new();
        if kind != Kind::Symlink && (perm != default_perm || special.is_some()) {
            m.insert(META_MODE.to_string(), format_mode(perm, special));
        }
        if let Some(Special::Char(dev) | Special::Block(dev)) = special {
            m.insert(META_RDEV.to_string(), format!("{dev:x}"));
        }
        if let Some(uid) = self.uid.filter(|&u| u != d.uid) {
            m.insert(META_UID.to_string(), uid.to_string());
        }
        if gid != d.gid {
            m.insert(META_GID.to_string(), gid.to_string());
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Defaults = Defaults {
        uid: 1000,
        gid: 1000,
        file_mode: 0o644,
        dir_mode: 0o755,
    };
    const PLAIN: Parent = Parent {
        perm: 0o755,
        gid: 1000,
    };

    fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn rclone_st_mode_and_owners_parse() {
        let s = Stored::parse(&meta(&[("mode", "100640"), ("uid", "7"), ("gid", "8")]), 3);
        assert_eq!(
            (s.perm, s.special, s.uid, s.gid),
            (Some(0o640), None, Some(7), Some(8))
        );
        let s = Stored::parse(&meta(&[("mode", "020600"), ("rdev", "103")]), 0);
        assert_eq!(s.special, Some(Special::Char(259)));
        assert_eq!(s.perm, Some(0o600));
        // Content wins over type bits; garbage counts as absent.
        let s = Stored::parse(&meta(&[("mode", "010644"), ("uid", "x")]), 1);
        assert_eq!((s.special, s.uid), (None, None));
    }

    #[test]
    fn a_creator_like_the_defaults_records_nothing() {
        let c = Creator {
            uid: Some(1000),
            gid: Some(1000),
            perm: Some(0o644),
        };
        assert!(c.metadata(Kind::File, PLAIN, &DEFAULTS).is_empty());
        let c = Creator {
            perm: Some(0o755),
            ..c
        };
        assert!(c.metadata(Kind::Dir, PLAIN, &DEFAULTS).is_empty());
        assert!(c.metadata(Kind::Symlink, PLAIN, &DEFAULTS).is_empty());
        assert!(Creator::DEFAULTS
            .metadata(Kind::Dir, PLAIN, &DEFAULTS)
            .is_empty());
    }

    #[test]
    fn another_owner_a_mode_and_a_device_are_recorded() {
        let c = Creator {
            uid: Some(65534),
            gid: Some(65533),
            perm: Some(0o600),
        };
        let m = c.metadata(Kind::Special(Special::Block(0x0801)), PLAIN, &DEFAULTS);
        assert_eq!(
            m,
            meta(&[
                ("mode", "60600"),
                ("rdev", "801"),
                ("uid", "65534"),
                ("gid", "65533")
            ])
        );
        let back = Stored::parse(&m, 0);
        assert_eq!(back.special, Some(Special::Block(0x0801)));
        assert_eq!(
            (back.perm, back.uid, back.gid),
            (Some(0o600), Some(65534), Some(65533))
        );
    }

    #[test]
    fn a_setgid_directory_gives_its_group_and_passes_the_bit_to_subdirectories() {
        let parent = Parent {
            perm: 0o2775,
            gid: 50,
        };
        let c = Creator {
            uid: Some(1000),
            gid: Some(1000),
            perm: Some(0o755),
        };
        let m = c.metadata(Kind::Dir, parent, &DEFAULTS);
        assert_eq!(m, meta(&[("mode", "2755"), ("gid", "50")]));
        let m = c.metadata(Kind::File, parent, &DEFAULTS);
        assert_eq!(m, meta(&[("mode", "0755"), ("gid", "50")]));
    }
}
