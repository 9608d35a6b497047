//! The checks before mounting. Each fails with one line saying what is wrong and what to do,
//! before anything is mounted. None of them prints the token.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::{MountError, MountOptions};
use crate::blob::{BlobClient, BlobError, ContainerUrl, ErrorKind, ListRequest};
use crate::sas::SasToken;
use crate::token::source;

/// Warns as ssh does when the SAS file can be read by others.
pub(super) fn check_sas_file_mode(path: &Path) {
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
    let token = source::parse_text(&text, &container).map_err(|e| {
        let e = if e.starts_with("invalid ") || e.starts_with("unsupported ") {
            e
        } else {
            format!("invalid SAS token: {e}")
        };
        // `blobmount mount https://…?sv=…&sig=… DIR` unquoted: the shell ran the URL up to
        // the first `&` as a background command, and the mount got only `sv=…`.
        if token_text.is_none() && !text.contains('&') {
            MountError::usage(format!(
                "{e}: the URL was cut at its first `&` (the shell took it for a background command): quote it, e.g. blobmount mount '{}?sv=…&sig=…' DIR",
                container.display()
            ))
        } else {
            MountError::usage(e)
        }
    })?;
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
    // Put Block needs `w`: without it nothing can be written. A stored access policy's
    // permissions are unknown here: the mount is writable, and the service refuses (EACCES)
    // what the policy does not allow.
    let writable = token.stated_permissions().is_none_or(|p| p.write());
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
            return Err(MountError::usage(format!(
                "mountpoint {shown} does not exist: create it first (mkdir -p {shown})"
            )))
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)) => {
            // Left by a daemon that died (kill -9, crash): nothing serves it any more. Only
            // blobmount's own dead mounts are cleaned; another program's is left to it.
            if let Some(m) = super::mountinfo::mount_at(path).filter(|m| !m.is_ours()) {
                return Err(MountError::failed(format!(
                    "mountpoint {shown} is a dead {} mount of another program: unmount it first (fusermount3 -uz {shown})",
                    m.fstype
                )));
            }
            tracing::warn!(
                "mountpoint {shown} was left mounted by a daemon that is gone (transport endpoint not connected): unmounting it"
            );
            lazy_unmount(path);
            std::fs::metadata(path).map_err(|e| {
                MountError::failed(format!(
                    "mountpoint {shown} is a dead FUSE mount that could not be cleaned ({e}): unmount it with fusermount3 -uz {shown}"
                ))
            })?
        }
        Err(e) => {
            return Err(MountError::failed(format!(
                "cannot use mountpoint {shown}: {e}"
            )))
        }
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
pub(super) fn is_mount_point(path: &Path) -> bool {
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
        (ErrorKind::Transient | ErrorKind::Throttled, _) if e.status.is_some() => {
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
        .map_err(|e| MountError::failed(explain_check_failure(target, &e)))?;
    if let (None, Some(policy)) = (target.token.stated_permissions(), target.token.policy_id()) {
        // The listing showed `l`; reading a name that is not there shows `r`: 404 when the
        // policy allows reading, 403 when it does not.
        match client.properties(READ_PROBE).await {
            Ok(_) => {}
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) if e.kind == ErrorKind::Forbidden => {
                return Err(MountError::failed(format!(
                    "the stored access policy {policy:?} of this SAS does not allow reading (r): mounting needs r and l"
                )))
            }
            Err(e) => return Err(MountError::failed(explain_check_failure(target, &e))),
        }
        tracing::info!(
            "the SAS takes its permissions from the stored access policy {policy:?}: listing and reading work; what it does not allow, the service refuses"
        );
    }
    Ok(())
}

/// A name probed to learn whether a stored access policy allows reading (it need not exist).
const READ_PROBE: &str = ".blobmount-read-probe";

pub(super) fn check_sizes(opts: &MountOptions) -> Result<(), MountError> {
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

/// The FUSE device, named in the error when it cannot be opened (fuser would only say
/// "Permission denied"). Only as root, who opens it: for other users fusermount3 (setuid)
/// does, and may where they may not.
pub fn check_dev_fuse() -> Result<(), MountError> {
    const DEV: &str = "/dev/fuse";
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    match std::fs::OpenOptions::new().read(true).write(true).open(DEV) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(MountError::failed(format!(
            "{DEV} does not exist: load the fuse module (modprobe fuse), or in a container pass the device (docker run --device /dev/fuse --cap-add SYS_ADMIN)"
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(MountError::failed(format!(
                "cannot open {DEV}: {e} (it should be mode 0666; in a container pass --device /dev/fuse)"
            )))
        }
        Err(e) => Err(MountError::failed(format!("cannot open {DEV}: {e}"))),
    }
}

/// Detaches a busy mount: it disappears now and is cleaned up when its last user leaves.
pub(super) fn lazy_unmount(mountpoint: &Path) {
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
                .starts_with("invalid SAS token: ")
        );
        let cut = err("http://127.0.0.1:10000/devstoreaccount1/box?sv=2020-12-06");
        assert!(cut.contains("cut at its first `&`"), "{cut}");
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
