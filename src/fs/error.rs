//! What the filesystem core answers for a failure: the one table from the blob layer's typed
//! errors to errno. The blob layer says what happened in the service's terms; only here does
//! that become what a program sees.

use crate::blob::{BlobError, ErrorKind};

/// An error number as a program sees it (`libc::E*`).
pub type Errno = i32;

/// The errno a failed Blob service request (or local staging I/O) answers.
pub fn errno_of(e: &BlobError) -> Errno {
    match e.kind {
        ErrorKind::NotFound => libc::ENOENT,
        // The SAS does not allow it, or was refused.
        ErrorKind::Forbidden => libc::EACCES,
        // The blob changed under a handle that reads one version.
        ErrorKind::ConditionNotMet => libc::ESTALE,
        // A create-only write that met someone else's blob is resolved where it is made
        // (conflict copy, EEXIST); one that reaches a program is an I/O failure of that write.
        ErrorKind::AlreadyExists
        | ErrorKind::Conflict
        | ErrorKind::Throttled
        | ErrorKind::Transient
        | ErrorKind::Other => libc::EIO,
        ErrorKind::Local(kind) => local_errno(kind),
    }
}

/// The errno of a failure of the local staging copy (ENOSPC: the staging disk is full).
fn local_errno(kind: std::io::ErrorKind) -> Errno {
    use std::io::ErrorKind as K;
    match kind {
        K::StorageFull => libc::ENOSPC,
        K::QuotaExceeded => libc::EDQUOT,
        K::FileTooLarge => libc::EFBIG,
        K::PermissionDenied => libc::EACCES,
        K::ReadOnlyFilesystem => libc::EROFS,
        _ => libc::EIO,
    }
}

/// Logs a failed request (it carries operation, blob, status, Azure code and request id) and
/// gives the caller's errno.
pub fn fail(e: BlobError) -> Errno {
    match e.kind {
        ErrorKind::NotFound => tracing::debug!("{e}"),
        ErrorKind::ConditionNotMet => tracing::warn!(
            "{e}: the blob changed after it was opened; re-open the file to read the new version"
        ),
        _ => tracing::warn!("{e}"),
    }
    errno_of(&e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno(kind: ErrorKind) -> Errno {
        errno_of(&BlobError::new(kind, "Get Blob", "a", ""))
    }

    #[test]
    fn every_kind_has_its_errno() {
        assert_eq!(errno(ErrorKind::NotFound), libc::ENOENT);
        assert_eq!(errno(ErrorKind::Forbidden), libc::EACCES);
        assert_eq!(errno(ErrorKind::ConditionNotMet), libc::ESTALE);
        for k in [
            ErrorKind::AlreadyExists,
            ErrorKind::Conflict,
            ErrorKind::Throttled,
            ErrorKind::Transient,
            ErrorKind::Other,
        ] {
            assert_eq!(errno(k), libc::EIO, "{k:?}");
        }
    }

    #[test]
    fn local_failures_keep_their_meaning() {
        // As the OS reports them: the io::ErrorKind decoded from the errno, and back.
        for e in [
            libc::ENOSPC,
            libc::EDQUOT,
            libc::EFBIG,
            libc::EACCES,
            libc::EROFS,
        ] {
            let kind = std::io::Error::from_raw_os_error(e).kind();
            assert_eq!(errno(ErrorKind::Local(kind)), e);
        }
        let kind = std::io::Error::from_raw_os_error(libc::EBADF).kind();
        assert_eq!(errno(ErrorKind::Local(kind)), libc::EIO);
    }
}
