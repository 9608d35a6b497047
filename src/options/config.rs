//! The config file (`--config FILE`, TOML): defaults for every option at the top level, and
//! named mounts.
//!
//! ```toml
//! cache_size = "512M"            # any option of `blobmount mount`, for every mount
//!
//! [mount.data]
//! url = "https://ACCOUNT.blob.core.windows.net/data"
//! sas_file = "/etc/blobmount/data.sas"
//! mountpoint = "/mnt/data"
//! options = "ro,allow_other"     # mount(8)-style options, as in fstab
//! uid = 1000                     # and any option, for this mount
//! ```
//!
//! Keys are the long option names (`cache_size` or `cache-size`); values are strings, integers
//! or booleans. Relative paths are relative to the file's directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::{helper, Settings};

/// Where `SOURCE` names are looked up when no --config is given.
pub const DEFAULT_PATH: &str = "/etc/blobmount/config.toml";

#[derive(Debug, Default)]
pub struct ConfigFile {
    pub path: PathBuf,
    /// The top level: defaults for every mount.
    pub defaults: Settings,
    pub mounts: BTreeMap<String, NamedMount>,
}

#[derive(Debug, Default)]
pub struct NamedMount {
    pub url: Option<String>,
    pub mountpoint: Option<PathBuf>,
    pub settings: Settings,
}

/// Reads and parses a config file.
pub fn load(path: &Path) -> Result<ConfigFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    check_owner_and_mode(path)?;
    parse(&text, path)
}

/// A config file can run commands as the mounting user (sas_command) and names the token:
/// like sudoers, it must belong to root or to this user, and nobody else may change it.
fn check_owner_and_mode(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let mode = m.mode() & 0o7777;
    if m.uid() != 0 && m.uid() != uid {
        return Err(format!(
            "config file {} belongs to another user (uid {}): it must be root's or yours",
            path.display(),
            m.uid()
        ));
    }
    if mode & 0o022 != 0 {
        return Err(format!(
            "config file {} can be changed by other users (mode {mode:04o}): chmod go-w it",
            path.display()
        ));
    }
    Ok(())
}

pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, String> {
    let shown = path.display();
    let table: Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default();
        format!("config file {shown}{line}: {}", e.message().trim())
    })?;
    let base = path.parent().unwrap_or(Path::new("/"));
    let mut config = ConfigFile {
        path: path.to_path_buf(),
        ..Default::default()
    };
    let mut top = Vec::new();
    for (key, value) in &table {
        if key == "mount" {
            let Value::Table(mounts) = value else {
                return Err(format!(
                    "config file {shown}: `mount` must be tables such as [mount.NAME]"
                ));
            };
            for (name, m) in mounts {
                let Value::Table(m) = m else {
                    return Err(format!("config file {shown}: mount.{name} must be a table"));
                };
                let origin = format!("config file {shown}, [mount.{name}]");
                config
                    .mounts
                    .insert(name.clone(), named_mount(m, &origin, base)?);
            }
        } else {
            top.push(long_arg(key, value, &format!("config file {shown}"))?);
        }
    }
    config.defaults = settings(&top, &format!("config file {shown}"), base)?;
    Ok(config)
}

fn named_mount(table: &Table, origin: &str, base: &Path) -> Result<NamedMount, String> {
    let mut mount = NamedMount::default();
    let mut args = Vec::new();
    for (key, value) in table {
        match key.as_str() {
            "url" => mount.url = Some(string(value, key, origin)?),
            "mountpoint" => mount.mountpoint = Some(base.join(string(value, key, origin)?)),
            "options" => args.extend(helper::long_args(&string(value, key, origin)?)),
            _ => args.push(long_arg(key, value, origin)?),
        }
    }
    mount.settings = settings(&args, origin, base)?;
    Ok(mount)
}

fn string(value: &Value, key: &str, origin: &str) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        _ => Err(format!("{origin}: {key} must be a string")),
    }
}

/// `key = value` as `--key=value`.
fn long_arg(key: &str, value: &Value, origin: &str) -> Result<String, String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Integer(i) => i.to_string(),
        Value::Boolean(b) => b.to_string(),
        _ => {
            return Err(format!(
                "{origin}: {key} must be a string, an integer or true/false"
            ))
        }
    };
    if key == "config" {
        return Err(format!(
            "{origin}: a config file cannot name another (config)"
        ));
    }
    Ok(format!("--{}={text}", key.replace('_', "-")))
}

/// Parses the arguments and makes relative paths relative to the config file.
fn settings(args: &[String], origin: &str, base: &Path) -> Result<Settings, String> {
    let mut s = Settings::from_long_args(args, origin)?;
    for p in [&mut s.sas_file, &mut s.staging_dir, &mut s.log_file]
        .into_iter()
        .flatten()
    {
        *p = base.join(&*p);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
cache_size = "512M"
log-level = "debug"
allow_other = true

[mount.data]
url = "https://acct.blob.core.windows.net/data"
sas_file = "data.sas"
mountpoint = "/mnt/data"
options = "ro,uid=1000"
metadata_ttl = "5s"

[mount.logs]
url = "https://acct.blob.core.windows.net/logs"
sas_command = "get-sas logs"
gid = 7
"#;

    #[test]
    fn a_config_others_can_change_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[mount.x]\nsas_command = \"echo hi\"\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load(&p).is_ok());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = load(&p).unwrap_err();
        assert!(
            e.contains("can be changed by other users (mode 0666)"),
            "{e}"
        );
    }

    #[test]
    fn sample() {
        let c = parse(SAMPLE, Path::new("/etc/blobmount/config.toml")).unwrap();
        assert_eq!(c.defaults.cache_size, Some(512 << 20));
        assert_eq!(c.defaults.log_level.as_deref(), Some("debug"));
        assert_eq!(c.defaults.allow_other, Some(true));
        let d = &c.mounts["data"];
        assert_eq!(
            d.url.as_deref(),
            Some("https://acct.blob.core.windows.net/data")
        );
        assert_eq!(d.mountpoint.as_deref(), Some(Path::new("/mnt/data")));
        assert_eq!(
            d.settings.sas_file.as_deref(),
            Some(Path::new("/etc/blobmount/data.sas"))
        );
        assert_eq!(d.settings.read_only, Some(true));
        assert_eq!(d.settings.uid, Some(1000));
        let l = &c.mounts["logs"];
        assert_eq!(l.settings.sas_command.as_deref(), Some("get-sas logs"));
        assert_eq!(l.settings.gid, Some(7));
    }

    #[test]
    fn errors_are_one_line_and_say_where() {
        let p = Path::new("/c.toml");
        let e = parse("cache_size = \"lots\"", p).unwrap_err();
        assert!(e.starts_with("config file /c.toml: "), "{e}");
        assert!(e.contains("lots"), "{e}");
        let e = parse("bogus = 1\nfrob = 2", p).unwrap_err();
        assert_eq!(e, "unknown options in config file /c.toml: bogus, frob");
        let e = parse("[mount.x]\nurl = 5", p).unwrap_err();
        assert_eq!(e, "config file /c.toml, [mount.x]: url must be a string");
        let e = parse("a = [1]", p).unwrap_err();
        assert!(e.contains("must be a string, an integer or true/false"));
        let e = parse("x = \n", p).unwrap_err();
        assert!(e.contains("(line 1)"), "{e}");
        for e in [
            parse("[mount.x]\nfrob = 1", p).unwrap_err(),
            parse("cache_size = \"lots\"", p).unwrap_err(),
        ] {
            assert!(!e.contains('\n'), "{e}");
        }
        assert!(parse("config = \"/x\"", p)
            .unwrap_err()
            .contains("cannot name another"));
    }
}
