//! What is mounted where, from `/proc/self/mountinfo`: so that `unmount` and the clean-up of a
//! dead mount only ever touch mounts of blobmount (a FUSE mount whose source is
//! `blobmount:ACCOUNT/CONTAINER`, of type `fuse` or `fuse.blobmount`), never a tmpfs, a disk or
//! another program's FUSE mount that happens to be at the path given.

use std::path::Path;

/// The start of the source of blobmount's mounts (its `fsname`).
pub const SOURCE_PREFIX: &str = "blobmount:";

/// One line of mountinfo: where, what type, from what source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: String,
    pub fstype: String,
    pub source: String,
}

impl MountEntry {
    /// Whether blobmount made this mount: FUSE (with or without the subtype, which a mount by
    /// root without fusermount3 does not show) with blobmount's source name.
    pub fn is_ours(&self) -> bool {
        (self.fstype == "fuse" || self.fstype == "fuse.blobmount")
            && self.source.starts_with(SOURCE_PREFIX)
    }
}

/// The mount whose mount point is exactly `path` (the last one, if several are stacked), from
/// the current mountinfo; None if nothing is mounted there or mountinfo cannot be read.
pub fn mount_at(path: &Path) -> Option<MountEntry> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let path = path.to_str()?;
    parse(&text).filter(|m| m.mount_point == path).last()
}

/// Every blobmount mount, in the order they were mounted.
pub fn ours() -> Vec<MountEntry> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    parse(&text).filter(MountEntry::is_ours).collect()
}

/// The mount point of the blobmount mount that `path` is inside of (the deepest), if any.
pub fn ours_around(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse(&text)
        .filter(|m| m.is_ours() && path.starts_with(&m.mount_point))
        .map(|m| m.mount_point)
        .max_by_key(String::len)
}

/// The entries of a mountinfo text: `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL…] -
/// FSTYPE SOURCE SUPER_OPTIONS` (proc(5)); fields are octal-escaped (`\040` is a space).
pub fn parse(text: &str) -> impl Iterator<Item = MountEntry> + '_ {
    text.lines().filter_map(|line| {
        let mut fields = line.split(' ');
        let mount_point = fields.nth(4)?;
        let mut rest = fields.skip_while(|f| *f != "-");
        rest.next()?;
        let fstype = rest.next()?;
        let source = rest.next().unwrap_or("");
        Some(MountEntry {
            mount_point: unescape(mount_point),
            fstype: unescape(fstype),
            source: unescape(source),
        })
    })
}

/// Undoes mountinfo's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` `\`).
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let v = (d[0] - b'0') as u32 * 64 + (d[1] - b'0') as u32 * 8 + (d[2] - b'0') as u32;
                out.push(v as u8);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
35 22 0:30 / /tmp/a\\040dir rw,nosuid,nodev shared:15 - tmpfs tmpfs rw,size=1024k
36 22 0:31 / /mnt/blob rw,nosuid,nodev,relatime shared:16 - fuse.blobmount blobmount:devstoreaccount1/c rw,user_id=0,group_id=0
37 22 0:32 / /mnt/other rw,relatime - fuse.sshfs host:/x rw
38 22 0:33 / /mnt/bare rw - fuse blobmount:devstoreaccount1/c rw
39 22 0:34 / /mnt/fake rw - tmpfs blobmount:pretend rw
";

    #[test]
    fn entries_are_parsed_unescaped_and_only_fuse_blobmount_is_ours() {
        let all: Vec<MountEntry> = parse(SAMPLE).collect();
        assert_eq!(all.len(), 6);
        assert!(all[4].is_ours(), "plain fuse with our source");
        assert!(!all[5].is_ours(), "our source name on another type");
        assert_eq!(all[1].mount_point, "/tmp/a dir");
        assert_eq!(all[1].fstype, "tmpfs");
        assert!(!all[1].is_ours());
        assert_eq!(all[2].source, "blobmount:devstoreaccount1/c");
        assert!(all[2].is_ours());
        // No optional fields before the separator.
        assert_eq!(all[3].fstype, "fuse.sshfs");
        assert!(!all[3].is_ours());
        assert_eq!(unescape("a\\134b\\011c"), "a\\b\tc");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
    }

    #[test]
    fn the_root_is_found_and_a_path_with_nothing_mounted_is_not() {
        assert!(mount_at(Path::new("/")).is_some());
        assert!(mount_at(Path::new("/surely/not/mounted/here")).is_none());
    }
}
