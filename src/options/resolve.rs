//! From what was given (SOURCE, MOUNTPOINT, the command line's settings) to the complete
//! [`MountOptions`]: config file layers, then defaults.

use std::path::PathBuf;
use std::time::Duration;

use super::config::{self, ConfigFile};
use super::Settings;
use crate::mount::{MountError, MountOptions};

/// A mount, fully described, and how to run it.
#[derive(Debug)]
pub struct Resolved {
    pub opts: MountOptions,
    pub foreground: bool,
    pub log_level: Option<String>,
    pub log_file: Option<PathBuf>,
}

/// Whether SOURCE is a URL (else a name from the config file).
pub fn is_url(source: &str) -> bool {
    source.contains("://")
}

/// Resolves SOURCE (a container URL, or the NAME of a `[mount.NAME]`), the mountpoint (which
/// a named mount may give) and the command line's settings.
pub fn resolve(
    source: &str,
    mountpoint: Option<PathBuf>,
    cli: Settings,
) -> Result<Resolved, MountError> {
    // What a mistyped SAS URL looks like in an error: without its signature.
    let shown = crate::token::source::scrub_signatures(source);
    if !is_url(source)
        && cli.config.is_none()
        && !std::path::Path::new(config::DEFAULT_PATH).exists()
    {
        // Neither a URL nor a name that could be looked up: say what a URL looks like.
        let why = crate::blob::ContainerUrl::parse(source)
            .err()
            .unwrap_or_else(|| format!("{shown:?} is not a container URL"));
        return Err(MountError::usage(format!(
            "{why} (nor a [mount.NAME] of a config file: {} does not exist)",
            config::DEFAULT_PATH
        )));
    }
    let config_path = match (&cli.config, is_url(source)) {
        (Some(p), _) => Some(p.clone()),
        (None, false) => Some(PathBuf::from(config::DEFAULT_PATH)),
        (None, true) => None,
    };
    let config = match &config_path {
        Some(p) => config::load(p).map_err(|e| {
            if !is_url(source) && cli.config.is_none() {
                MountError::usage(format!(
                    "{shown:?} is not a URL, so it names a [mount.{shown}] of the config file, but {e}"
                ))
            } else {
                MountError::usage(e)
            }
        })?,
        None => ConfigFile::default(),
    };
    let (url, mountpoint, settings, name) = if is_url(source) {
        let mp = mountpoint.ok_or_else(|| MountError::usage("MOUNTPOINT is missing"))?;
        (source.to_string(), mp, cli.over(config.defaults), None)
    } else {
        let ConfigFile {
            path,
            defaults,
            mut mounts,
        } = config;
        let named = mounts.remove(source).ok_or_else(|| {
            let known: Vec<&str> = mounts.keys().map(String::as_str).collect();
            MountError::usage(format!(
                "no [mount.{shown}] in {}{}",
                path.display(),
                if known.is_empty() {
                    String::new()
                } else {
                    format!(" (it has {})", known.join(", "))
                }
            ))
        })?;
        let url = named.url.ok_or_else(|| {
            MountError::usage(format!("[mount.{shown}] in {} has no url", path.display()))
        })?;
        let mp = mountpoint.or(named.mountpoint).ok_or_else(|| {
            MountError::usage(format!(
                "[mount.{shown}] in {} has no mountpoint, and none was given",
                path.display()
            ))
        })?;
        (
            url,
            mp,
            cli.over(named.settings).over(defaults),
            Some(source.to_string()),
        )
    };
    Ok(Resolved {
        foreground: settings.foreground.unwrap_or(false),
        log_level: settings.log_level.clone(),
        log_file: settings.log_file.clone(),
        opts: options(url, mountpoint, name, settings),
    })
}

/// Fills every gap with its default.
fn options(
    sas_url: String,
    mountpoint: PathBuf,
    name: Option<String>,
    s: Settings,
) -> MountOptions {
    // SAFETY: getuid/getgid cannot fail and have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let umask = s.umask.unwrap_or(0o022);
    MountOptions {
        sas_url,
        mountpoint,
        name,
        read_only: s.read_only.unwrap_or(false),
        uid: s.uid.unwrap_or(uid),
        gid: s.gid.unwrap_or(gid),
        file_mode: s.file_mode.unwrap_or(0o666 & !umask),
        dir_mode: s.dir_mode.unwrap_or(0o777 & !umask),
        allow_other: s.allow_other.unwrap_or(false),
        allow_root: s.allow_root.unwrap_or(false),
        allow_non_empty: s.allow_non_empty.unwrap_or(false),
        noexec: s.noexec.unwrap_or(false),
        cache_size: s.cache_size.unwrap_or(256 << 20),
        block_size: s.block_size.unwrap_or(4 << 20),
        metadata_ttl: s.metadata_ttl.unwrap_or(Duration::from_secs(1)),
        prefetch_files: s.prefetch_files.unwrap_or(crate::fs::PREFETCH_FILES),
        write_buffer: s.write_buffer.unwrap_or(256 << 20),
        write_back: s
            .write_back
            .map(|delay| crate::fs::write_back::WriteBackConfig {
                delay,
                limit: s
                    .write_back_limit
                    .unwrap_or(crate::fs::write_back::DEFAULT_LIMIT),
            }),
        staging_dir: s.staging_dir.unwrap_or_else(default_staging_dir),
        sas_file: s.sas_file,
        sas_command: s.sas_command,
        sas_command_timeout: s.sas_command_timeout.unwrap_or(Duration::from_secs(30)),
        refresh_before: s.refresh_before,
        refresh_interval: s.refresh_interval.unwrap_or(Duration::from_secs(15 * 60)),
        request_timeout: s.request_timeout.unwrap_or(Duration::from_secs(30)),
        shutdown_timeout: s.shutdown_timeout.unwrap_or(Duration::from_secs(60)),
        metrics_addr: s.metrics_addr,
        env_token: None,
    }
}

/// Where local copies and the staging journal live unless `--staging-dir` says: a directory
/// that survives a reboot (the journal must), private to the mount's user. systemd's
/// `StateDirectory=` (`$STATE_DIRECTORY`) first; then `/var/lib/blobmount` for root, else
/// `$XDG_STATE_HOME/blobmount` (`~/.local/state/blobmount`); `/var/tmp` as the last resort.
pub fn default_staging_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dirs) = var("STATE_DIRECTORY") {
        // systemd gives one path per StateDirectory= entry, separated by colons.
        if let Some(first) = dirs.to_string_lossy().split(':').next() {
            return PathBuf::from(first);
        }
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/blobmount");
    }
    if let Some(state) = var("XDG_STATE_HOME") {
        return PathBuf::from(state).join("blobmount");
    }
    match var("HOME") {
        Some(home) => PathBuf::from(home).join(".local/state/blobmount"),
        None => PathBuf::from("/var/tmp"),
    }
}
