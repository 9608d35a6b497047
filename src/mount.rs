//! `blobmount mount`: the checks before mounting, then the FUSE session until unmount or
//! SIGINT/SIGTERM.
//!
//! Each check fails with one line saying what is wrong and what to do, before anything is
//! mounted. None of them prints the token.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config, MountOption, SessionACL};
use time::OffsetDateTime;

use crate::blob::rest::RestClient;
use crate::blob::retry::RetryPolicy;
use crate::blob::{BlobClient, BlobError, ContainerUrl, ErrorKind, ListRequest};
use crate::fs::{Fs, FsConfig};
use crate::fuse::{BlobFuse, MAX_READ};
use crate::sas::SasToken;
use crate::token::refresh::{self, RefreshConfig};
use crate::token::source;
use crate::token::Credential;

/// Everything `mount` needs, from the command line.
#[derive(Debug, Clone)]
pub struct MountOptions {
    pub sas_url: String,
    pub mountpoint: PathBuf,
    pub read_only: bool,
    pub uid: u32,
    pub gid: u32,
    pub file_mode: u16,
    pub dir_mode: u16,
    pub allow_other: bool,
    pub allow_non_empty: bool,
    pub cache_size: u64,
    pub block_size: u64,
    pub metadata_ttl: Duration,
    pub write_buffer: u64,
    pub staging_dir: PathBuf,
    pub sas_file: Option<PathBuf>,
    pub sas_command: Option<String>,
    pub sas_command_timeout: Duration,
    pub refresh_before: Option<Duration>,
    pub refresh_interval: Duration,
    /// `BLOBMOUNT_SAS`, if set.
    pub env_token: Option<String>,
}

impl MountOptions {
    /// Where new tokens come from, if anywhere.
    fn token_source(&self) -> Option<source::TokenSource> {
        match (&self.sas_file, &self.sas_command) {
            (Some(path), _) => Some(source::TokenSource::File(path.clone())),
            (None, Some(command)) => Some(source::TokenSource::Command {
                command: command.clone(),
                timeout: self.sas_command_timeout,
            }),
            (None, None) => None,
        }
    }
}

/// Warns as ssh does when the SAS file can be read by others.
fn check_sas_file_mode(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        let mode = m.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                "the SAS file {} can be read by other users (mode {mode:o}): chmod 600 it",
                path.display()
            );
        }
    }
}

/// A failed check or mount: one line for the user, and the exit code.
#[derive(Debug)]
pub struct MountError {
    pub message: String,
    pub code: i32,
}

impl MountError {
    fn usage(message: impl Into<String>) -> Self {
        MountError {
            message: message.into(),
            code: 2,
        }
    }

    fn failed(message: impl Into<String>) -> Self {
        MountError {
            message: message.into(),
            code: 1,
        }
    }
}

/// The container and token, checked: the token is a valid, current SAS that can list and read
/// a container.
pub struct Target {
    pub container: ContainerUrl,
    pub token: SasToken,
    /// Whether the token allows changing blobs.
    pub writable: bool,
}

/// Parses the SAS URL and checks the token offline: the one in the URL, or `token_text`
/// (a token or SAS URL from a file, the environment or a command) when given.
pub fn check_target(
    sas_url: &str,
    token_text: Option<&str>,
    now: OffsetDateTime,
) -> Result<Target, MountError> {
    let (container, query) = ContainerUrl::parse(sas_url).map_err(MountError::usage)?;
    let text = match (token_text, query) {
        (Some(t), _) => t.to_string(),
        (None, Some(q)) => q,
        (None, None) => {
            return Err(MountError::usage(format!(
                "{} has no SAS token: append ?sv=...&sig=... or give --sas-file, --sas-command or BLOBMOUNT_SAS",
                container.display()
            )))
        }
    };
    let token = source::parse_text(&text, &container)
        .map_err(|e| MountError::usage(format!("malformed SAS token: {e}")))?;
    if let Some(problem) = token.validity_problem(now) {
        // "expired at …" or "not valid until …"
        let verb = if problem.starts_with("expired") {
            ""
        } else {
            "is "
        };
        return Err(MountError::failed(format!(
            "the SAS token {verb}{problem}: get a new one"
        )));
    }
    source::check_scope(&token, false).map_err(MountError::usage)?;
    let p = token.permissions();
    // Put Block needs `w`: without it nothing can be written.
    let writable = p.write();
    Ok(Target {
        container,
        token,
        writable,
    })
}

/// Checks that the mountpoint can be mounted on.
pub fn check_mountpoint(path: &Path, allow_non_empty: bool) -> Result<PathBuf, MountError> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(MountError::usage(format!("mountpoint {shown} does not exist: create it first (mkdir -p {shown})")))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(MountError::failed(format!(
                "mountpoint {shown} is a dead FUSE mount (transport endpoint not connected): unmount it first with fusermount3 -u {shown}"
            )))
        }
        Err(e) => return Err(MountError::failed(format!("cannot use mountpoint {shown}: {e}"))),
    };
    if !meta.is_dir() {
        return Err(MountError::usage(format!(
            "mountpoint {shown} is not a directory"
        )));
    }
    let canonical = std::fs::canonicalize(path)
        .map_err(|e| MountError::failed(format!("cannot use mountpoint {shown}: {e}")))?;
    if is_mount_point(&canonical) {
        return Err(MountError::failed(format!(
            "mountpoint {shown} is already a mount point: unmount it first (fusermount3 -u {shown}) or choose another directory"
        )));
    }
    let non_empty = std::fs::read_dir(&canonical)
        .map_err(|e| MountError::failed(format!("cannot read mountpoint {shown}: {e}")))?
        .next()
        .is_some();
    if non_empty && !allow_non_empty {
        return Err(MountError::usage(format!(
            "mountpoint {shown} is not empty: mounting would hide its files; pass --allow-non-empty to mount over them anyway"
        )));
    }
    Ok(canonical)
}

/// A directory is a mount point when it is on another device than its parent (or is `/`).
fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(parent) = path.parent() else {
        return true;
    };
    match (std::fs::metadata(path), std::fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev() || a.ino() == b.ino(),
        _ => false,
    }
}

/// Explains a failed container check in one line, with Azure's code and the request id.
fn explain_check_failure(target: &Target, e: &BlobError) -> String {
    let where_ = target.container.display();
    let ids = match (&e.code, &e.request_id) {
        (Some(c), Some(r)) => format!(" ({c}, request id {r})"),
        (Some(c), None) => format!(" ({c})"),
        (None, Some(r)) => format!(" (request id {r})"),
        (None, None) => String::new(),
    };
    match (e.kind, e.code.as_deref()) {
        (ErrorKind::NotFound, _) => format!("container {where_} does not exist{ids}"),
        (ErrorKind::Forbidden, Some("AuthorizationPermissionMismatch")) => {
            format!("the SAS token is not allowed to list {where_}{ids}: it needs the r and l permissions")
        }
        (ErrorKind::Forbidden, Some("AuthorizationSourceIPMismatch")) => {
            format!("the SAS token does not allow this machine's IP address{ids}")
        }
        (ErrorKind::Forbidden, Some("AuthorizationProtocolMismatch")) => {
            format!("the SAS token does not allow this protocol (http vs https){ids}")
        }
        (ErrorKind::Forbidden, _) => format!(
            "the service rejected the SAS token for {where_}{ids}: wrong or revoked signature, a token for another account or container, or a clock far off"
        ),
        (ErrorKind::Transient, _) if e.status.is_some() => {
            format!("the service at {where_} keeps failing (HTTP {}): {}{ids}", e.status.unwrap_or_default(), e.detail)
        }
        (ErrorKind::Transient, _) => format!("cannot reach {where_}: {}{ids}", e.detail),
        _ => format!("checking {where_} failed: {e}"),
    }
}

/// Lists one blob (no delimiter: the cheapest listing) to prove the container exists and the
/// token is accepted.
pub async fn check_container(target: &Target, client: &dyn BlobClient) -> Result<(), MountError> {
    client
        .list(ListRequest {
            prefix: "",
            delimiter: None,
            marker: None,
            max_results: Some(1),
        })
        .await
        .map(|_| ())
        .map_err(|e| MountError::failed(explain_check_failure(target, &e)))
}

fn check_sizes(opts: &MountOptions) -> Result<(), MountError> {
    const MIB: u64 = 1 << 20;
    if opts.block_size < 64 * 1024 || opts.block_size > 4000 * MIB {
        return Err(MountError::usage(
            "--block-size must be between 64K and 4000M",
        ));
    }
    if opts.write_buffer < opts.block_size {
        return Err(MountError::usage(format!(
            "--write-buffer ({}) must hold at least one block of --block-size ({})",
            crate::size::format_size(opts.write_buffer),
            crate::size::format_size(opts.block_size)
        )));
    }
    if opts.cache_size < 2 * opts.block_size {
        return Err(MountError::usage(format!(
            "--cache-size ({}) must hold at least two blocks of --block-size ({})",
            crate::size::format_size(opts.cache_size),
            crate::size::format_size(opts.block_size)
        )));
    }
    Ok(())
}

/// Runs `blobmount mount` in the foreground: checks, mounts, serves until unmounted or
/// signalled, then unmounts.
pub fn run(opts: MountOptions) -> Result<(), MountError> {
    check_sizes(&opts)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .thread_name("blobmount-io")
        .build()
        .map_err(|e| MountError::failed(format!("cannot start the I/O runtime: {e}")))?;
    let token_source = opts.token_source();
    let (_, url_token) = ContainerUrl::parse(&opts.sas_url).map_err(MountError::usage)?;
    // The first token: in the URL, else BLOBMOUNT_SAS, else from the file or command.
    let first: Option<String> = match (&url_token, &opts.env_token, &token_source) {
        (Some(_), _, _) => None,
        (None, Some(env), _) => Some(env.clone()),
        (None, None, Some(src)) => Some(
            rt.block_on(src.fetch())
                .map_err(|e| MountError::failed(format!("no SAS token: {e}")))?,
        ),
        (None, None, None) => None,
    };
    if let Some(path) = &opts.sas_file {
        check_sas_file_mode(path);
    }
    let target = check_target(&opts.sas_url, first.as_deref(), OffsetDateTime::now_utc())?;
    let mountpoint = check_mountpoint(&opts.mountpoint, opts.allow_non_empty)?;
    let credential = Arc::new(Credential::new(target.token.query()));
    let check_client = RestClient::new(
        target.container.clone(),
        credential.clone(),
        RetryPolicy::short(),
    )
    .map_err(MountError::failed)?;
    rt.block_on(check_container(&target, &check_client))?;
    // Said once every check has passed: a refusal stays one line.
    if url_token.is_some() {
        tracing::warn!(
            "the SAS is on the command line, where every user can see it (ps): prefer --sas-file or BLOBMOUNT_SAS"
        );
    }
    let read_only = opts.read_only || !target.writable;
    if !target.writable && !opts.read_only {
        tracing::info!("the SAS token has no write permissions: mounting read-only");
    }
    if !read_only {
        std::fs::create_dir_all(&opts.staging_dir).map_err(|e| {
            MountError::failed(format!(
                "cannot use staging directory {}: {e}",
                opts.staging_dir.display()
            ))
        })?;
    }
    let client = RestClient::new(
        target.container.clone(),
        credential.clone(),
        RetryPolicy::default(),
    )
    .map_err(MountError::failed)?;
    let fs = Fs::new(
        Arc::new(client),
        FsConfig {
            uid: opts.uid,
            gid: opts.gid,
            file_mode: opts.file_mode,
            dir_mode: opts.dir_mode,
            metadata_ttl: opts.metadata_ttl,
            block_size: opts.block_size,
            cache_size: opts.cache_size,
            read_only,
            write_buffer: opts.write_buffer,
            staging_dir: opts.staging_dir.clone(),
            credential: Some(credential.clone()),
        },
    );
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(format!(
            "blobmount:{}/{}",
            target.container.account, target.container.container
        )),
        MountOption::Subtype("blobmount".into()),
        if read_only {
            MountOption::RO
        } else {
            MountOption::RW
        },
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::DefaultPermissions,
        MountOption::CUSTOM(format!("max_read={MAX_READ}")),
    ];
    config.acl = if opts.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(4);
    rt.spawn(fs.clone().relieve_write_pressure());
    let refresh_cfg = RefreshConfig {
        before: opts.refresh_before,
        interval: opts.refresh_interval,
    };
    match token_source {
        Some(src) => {
            credential.set_refreshable(true);
            rt.spawn(refresh::run(
                credential.clone(),
                src,
                target.container.clone(),
                false,
                refresh_cfg,
            ));
        }
        None => {
            rt.spawn(refresh::warn_expiry(credential.clone(), refresh_cfg));
        }
    }
    // Signal handlers go in before the mount appears: a SIGTERM right after mounting must
    // unmount, not kill the process and leave a dead mount behind.
    let signals = rt
        .block_on(async { Signals::new() })
        .map_err(|e| MountError::failed(format!("cannot install signal handlers: {e}")))?;
    let adapter = BlobFuse::new(fs, rt.handle().clone());
    let mut session = fuser::Session::new(adapter, &mountpoint, &config).map_err(|e| {
        let hint =
            if e.raw_os_error() == Some(libc::ENOENT) || e.kind() == std::io::ErrorKind::NotFound {
                " (is fuse3 installed? it provides fusermount3)"
            } else {
                ""
            };
        MountError::failed(format!(
            "cannot mount on {}: {e}{hint}",
            mountpoint.display()
        ))
    })?;
    tracing::info!(
        "mounted {} on {} ({})",
        target.container.display(),
        mountpoint.display(),
        if read_only { "read-only" } else { "read-write" }
    );
    let mut unmounter = session.unmount_callable();
    let signal_mountpoint = mountpoint.clone();
    let signal_credential = credential.clone();
    rt.spawn(async move {
        let which = signals.wait(signal_credential).await;
        tracing::info!("{which}: unmounting {}", signal_mountpoint.display());
        if let Err(e) = unmounter.unmount() {
            tracing::warn!("unmount failed ({e}); detaching lazily");
            lazy_unmount(&signal_mountpoint);
        }
    });
    let result = session.run();
    rt.shutdown_background();
    match result {
        Ok(()) => {
            tracing::info!("unmounted {}", mountpoint.display());
            Ok(())
        }
        Err(e) => Err(MountError::failed(format!(
            "the FUSE session ended with an error: {e}"
        ))),
    }
}

/// SIGINT and SIGTERM, caught from the moment this is created.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for SIGINT or SIGTERM; each SIGHUP on the way asks for a new token.
    async fn wait(mut self, credential: Arc<Credential>) -> &'static str {
        loop {
            tokio::select! {
                _ = self.int.recv() => return "SIGINT",
                _ = self.term.recv() => return "SIGTERM",
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP: getting a new SAS");
                    credential.request_refresh();
                }
            }
        }
    }
}

/// Detaches a busy mount: it disappears now and is cleaned up when its last user leaves.
fn lazy_unmount(mountpoint: &Path) {
    let status = std::process::Command::new("fusermount3")
        .arg("-uz")
        .arg(mountpoint)
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(mountpoint)
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sas::{sign_service_sas, ServiceSasParams};

    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn url(perms: &str, blob: Option<&str>, expiry_from_now: time::Duration) -> String {
        let mut p = ServiceSasParams::new(
            "devstoreaccount1",
            "box",
            perms,
            OffsetDateTime::now_utc() + expiry_from_now,
        );
        p.blob = blob.map(str::to_string);
        let token = sign_service_sas(&p, KEY).unwrap();
        format!("http://127.0.0.1:10000/devstoreaccount1/box?{token}")
    }

    fn err(u: &str) -> String {
        check_target(u, None, OffsetDateTime::now_utc())
            .err()
            .expect("should fail")
            .message
    }

    #[test]
    fn token_checks() {
        let ok = check_target(
            &url("rl", None, time::Duration::hours(1)),
            None,
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        assert!(!ok.writable);
        assert!(
            check_target(
                &url("racwdl", None, time::Duration::hours(1)),
                None,
                OffsetDateTime::now_utc()
            )
            .unwrap()
            .writable
        );
        assert!(err(&url("rl", None, time::Duration::hours(-1))).contains("expired"));
        assert!(err(&url("rl", Some("b.txt"), time::Duration::hours(1))).contains("blob SAS"));
        assert!(err(&url("r", None, time::Duration::hours(1))).contains("l (list)"));
        assert!(err(&url("l", None, time::Duration::hours(1))).contains("r (read)"));
        assert!(err("http://127.0.0.1:10000/devstoreaccount1/box").contains("no SAS token"));
        assert!(
            err("http://127.0.0.1:10000/devstoreaccount1/box?sv=2020-12-06&sp=rl&sig=abc")
                .contains("malformed")
        );
        assert!(err("::nonsense").contains("malformed"));
    }

    #[test]
    fn mountpoint_checks() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_mountpoint(dir.path(), false).is_ok());
        let missing = dir.path().join("missing");
        assert!(check_mountpoint(&missing, false)
            .unwrap_err()
            .message
            .contains("does not exist"));
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(check_mountpoint(&file, false)
            .unwrap_err()
            .message
            .contains("not a directory"));
        assert!(check_mountpoint(dir.path(), false)
            .unwrap_err()
            .message
            .contains("not empty"));
        assert!(check_mountpoint(dir.path(), true).is_ok());
        assert!(check_mountpoint(Path::new("/proc"), true)
            .unwrap_err()
            .message
            .contains("already a mount"));
    }
}
