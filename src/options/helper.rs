//! The mount(8) helper form: `blobmount SOURCE MOUNTPOINT -o OPTIONS`, as run by
//! `mount -t fuse.blobmount` (through mount.fuse3) and by fstab entries.
//!
//! Options are mount(8)'s comma-separated list. The standard ones mean what they mean for
//! other filesystems; every long option of `blobmount mount` is accepted as `name=value` (or
//! `name` alone for a yes/no option); options that only matter to mount(8) or systemd are
//! ignored; anything else is an error that names it.

use super::Settings;

/// The helper form's command line, parsed.
#[derive(Debug, PartialEq)]
pub struct HelperArgs {
    pub source: String,
    pub mountpoint: String,
    pub settings: Settings,
}

/// Options that concern mount(8), fstab or systemd, not the filesystem, and options whose
/// effect blobmount always has (nodev, nosuid: see docs/SEMANTICS.md).
const IGNORED: &[&str] = &[
    "defaults",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "_netdev",
    "nofail",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "default_permissions",
    "async",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "nodiratime",
    "diratime",
    "lazytime",
    "nolazytime",
    "silent",
    "loud",
];

/// Translates one mount(8) option list (`ro,allow_other,uid=1000,cache_size=1G`) into
/// `--name=value` arguments for [`Settings::from_long_args`].
pub fn long_args(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    for opt in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (opt, None),
        };
        let translated = match (name, value) {
            ("ro", None) => Some("--read-only=true".to_string()),
            ("rw", None) => Some("--read-only=false".to_string()),
            ("exec", None) => Some("--noexec=false".to_string()),
            _ if IGNORED.contains(&name) && value.is_none() => None,
            // mount(8) and systemd options (x-systemd.automount, x-mount.mkdir, comment=…),
            // and the subtype/fsname that FUSE helpers may pass along.
            _ if name.starts_with("x-") || name == "comment" => None,
            ("subtype", Some(_)) | ("fsname", Some(_)) => None,
            (n, Some(v)) => Some(format!("--{}={v}", n.replace('_', "-"))),
            (n, None) => Some(format!("--{}", n.replace('_', "-"))),
        };
        out.extend(translated);
    }
    out
}

/// Parses `SOURCE MOUNTPOINT [-o OPTIONS]… [-f] [-n] [-s] [-v] [-t TYPE]` (the arguments after
/// the program name).
pub fn parse(args: &[String]) -> Result<HelperArgs, String> {
    let mut positional = Vec::new();
    let mut long = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-o" => {
                let list = it.next().ok_or("-o needs a list of options")?;
                long.extend(long_args(list));
            }
            s if s.starts_with("-o") => long.extend(long_args(&s[2..])),
            // -f: foreground, as for other FUSE filesystems.
            "-f" => long.push("--foreground".to_string()),
            // mount(8)'s -n (no mtab), -s (sloppy), -v (verbose): nothing to do.
            "-n" | "-s" | "-v" => {}
            "-t" => {
                it.next().ok_or("-t needs a type")?;
            }
            s if s.starts_with('-') && s.len() > 1 => {
                return Err(format!(
                    "unknown argument {s}: the mount helper form is blobmount SOURCE MOUNTPOINT -o OPTIONS"
                ))
            }
            _ => positional.push(a.clone()),
        }
    }
    let [source, mountpoint] = <[String; 2]>::try_from(positional).map_err(|p| {
        format!(
            "expected SOURCE MOUNTPOINT, got {} argument{}: the mount helper form is blobmount SOURCE MOUNTPOINT -o OPTIONS (or see blobmount --help)",
            p.len(),
            if p.len() == 1 { "" } else { "s" }
        )
    })?;
    let settings = Settings::from_long_args(&long, "-o options")?;
    Ok(HelperArgs {
        source,
        mountpoint,
        settings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn what_mount_fuse3_passes() {
        // As mount.fuse3 runs it for an fstab line
        // `data /mnt/x fuse.blobmount ro,_netdev,nofail,allow_other,uid=1000,sas_file=/etc/x 0 0`.
        let h = parse(&args(&[
            "data",
            "/mnt/x",
            "-o",
            "ro,allow_other,uid=1000,sas_file=/etc/x,dev,suid",
        ]))
        .unwrap();
        assert_eq!(h.source, "data");
        assert_eq!(h.mountpoint, "/mnt/x");
        assert_eq!(h.settings.read_only, Some(true));
        assert_eq!(h.settings.allow_other, Some(true));
        assert_eq!(h.settings.uid, Some(1000));
        assert_eq!(
            h.settings.sas_file.as_deref(),
            Some(std::path::Path::new("/etc/x"))
        );
        assert_eq!(h.settings.foreground, None);
    }

    #[test]
    fn standard_and_long_options() {
        let h = parse(&args(&[
            "-o",
            "rw,noexec,gid=5,umask=027",
            "https://a.blob.core.windows.net/c",
            "/m",
            "-ocache_size=1G,metadata-ttl=5s,x-systemd.automount,comment=x,_netdev",
            "-n",
            "-t",
            "fuse.blobmount",
        ]))
        .unwrap();
        let s = h.settings;
        assert_eq!(s.read_only, Some(false));
        assert_eq!(s.noexec, Some(true));
        assert_eq!(s.gid, Some(5));
        assert_eq!(s.umask, Some(0o027));
        assert_eq!(s.cache_size, Some(1 << 30));
        assert_eq!(s.metadata_ttl, Some(std::time::Duration::from_secs(5)));
    }

    #[test]
    fn unknown_options_are_listed() {
        let e = parse(&args(&["s", "/m", "-o", "ro,bogus,sync,frob=1"])).unwrap_err();
        assert_eq!(e, "unknown options in -o options: bogus, sync, frob");
        let e = parse(&args(&["s", "/m", "-o", "cache_size=lots"])).unwrap_err();
        assert!(e.contains("lots"), "{e}");
        assert!(!e.contains('\n'));
        let e = parse(&args(&["s", "/m", "-o", "uid"])).unwrap_err();
        assert!(e.contains("uid"), "{e}");
        assert!(parse(&args(&["s"])).unwrap_err().contains("got 1 argument"));
        assert!(parse(&args(&["s", "/m", "-x"]))
            .unwrap_err()
            .contains("unknown argument -x"));
    }

    #[test]
    fn foreground_flag() {
        let h = parse(&args(&["s", "/m", "-f"])).unwrap();
        assert_eq!(h.settings.foreground, Some(true));
        let h = parse(&args(&["s", "/m", "-o", "foreground"])).unwrap();
        assert_eq!(h.settings.foreground, Some(true));
    }
}
