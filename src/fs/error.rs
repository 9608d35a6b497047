//! What the filesystem core answers for a failure. [`FsError`] is the core's one error type:
//! what went wrong, in the filesystem's terms, carrying the service's error when a request
//! failed. [`FsError::to_errno`] is the one table from it to what a program sees; the FUSE
//! adapter calls it, and logs the error there, once ([`FsError::log`]).

use crate::blob::{BlobError, ErrorKind};

/// An error number as a program sees it (`libc::E*`).
pub type Errno = i32;

/// Why a filesystem operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FsError {
    /// No such name, inode or blob.
    #[error("no such file or directory")]
    NotFound,
    /// The name exists (exclusive create, mkdir, RENAME_NOREPLACE).
    #[error("the name exists")]
    Exists,
    /// A directory with entries (rmdir, a directory renamed onto it).
    #[error("the directory is not empty")]
    NotEmpty,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    /// Something in progress holds it (a file still being created, releases on their way).
    #[error("busy")]
    Busy,
    /// A change on a read-only mount, or while the mount shuts down.
    #[error("the mount is read-only")]
    ReadOnly,
    /// The SAS does not allow it, or it expired with nothing to renew it.
    #[error("the token does not allow it")]
    Denied,
    /// A name the service would store as another name, or an argument that makes no sense.
    #[error("invalid name or argument")]
    Invalid,
    /// A blob name over 1,024 characters or 254 segments.
    #[error("name too long")]
    NameTooLong,
    /// No open file or directory with this handle (or not open for this).
    #[error("bad file handle")]
    BadHandle,
    /// A handle that reads one version met another.
    #[error("the file changed since it was opened")]
    Stale,
    /// A file past what a blob can hold.
    #[error("file too large")]
    TooLarge,
    /// No such extended attribute (getxattr, removexattr, XATTR_REPLACE).
    #[error("no such attribute")]
    NoAttribute,
    /// An extended attribute of a namespace that is not kept here.
    #[error("not supported")]
    NotSupported,
    /// An extended attribute too large for a blob's metadata even alone.
    #[error("attribute too large")]
    TooBig,
    /// An extended attribute that does not fit beside the blob's other metadata.
    #[error("no room left in the blob's metadata")]
    NoSpace,
    /// Failed; what happened was logged where it happened (a commit's outcome, a local save).
    #[error("input/output error")]
    Io,
    /// The local staging directory failed this way (a staging file could not be made).
    #[error("local staging: {0}")]
    Local(std::io::ErrorKind),
    /// A request to the service (or to the local staging copy) failed.
    #[error(transparent)]
    Blob(Box<BlobError>),
}

impl From<BlobError> for FsError {
    fn from(e: BlobError) -> Self {
        FsError::Blob(Box::new(e))
    }
}

/// The same error: the same variant, and for a failed request the same kind (the request's
/// details, such as its id, do not matter).
impl PartialEq for FsError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (FsError::Blob(a), FsError::Blob(b)) => a.kind == b.kind,
            (FsError::Local(a), FsError::Local(b)) => a == b,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Eq for FsError {}

/// For callers that speak errno (tests, tools): the same as [`FsError::to_errno`].
impl From<FsError> for Errno {
    fn from(e: FsError) -> Errno {
        e.to_errno()
    }
}

impl FsError {
    /// The errno a program gets for this error: the one table.
    pub fn to_errno(&self) -> Errno {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::Busy => libc::EBUSY,
            FsError::ReadOnly => libc::EROFS,
            FsError::Denied => libc::EACCES,
            FsError::Invalid => libc::EINVAL,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::BadHandle => libc::EBADF,
            FsError::Stale => libc::ESTALE,
            FsError::TooLarge => libc::EFBIG,
            FsError::NoAttribute => libc::ENODATA,
            FsError::NotSupported => libc::ENOTSUP,
            FsError::TooBig => libc::E2BIG,
            FsError::NoSpace => libc::ENOSPC,
            FsError::Io => libc::EIO,
            FsError::Local(kind) => local_errno(*kind),
            FsError::Blob(e) => errno_of(e),
        }
    }

    /// Whether the name (or blob) does not exist: [`FsError::NotFound`], or a request that
    /// answered 404.
    pub fn is_not_found(&self) -> bool {
        self.to_errno() == libc::ENOENT
    }

    /// The service's error, if a request failed.
    pub fn blob(&self) -> Option<&BlobError> {
        match self {
            FsError::Blob(e) => Some(e),
            _ => None,
        }
    }

    /// Logs a failed request (it carries operation, blob, status, Azure code and request id):
    /// called once, where the error reaches FUSE. Failures of the local staging copy are
    /// logged where they happen instead, with what they mean for the file (it will not be
    /// committed), and not again at every later write that answers the same error; the other
    /// errors say nothing more than the program's errno does.
    pub fn log(&self) {
        let Some(e) = self.blob() else { return };
        match e.kind {
            ErrorKind::Local(_) => {}
            ErrorKind::NotFound => tracing::debug!("{e}"),
            ErrorKind::ConditionNotMet => tracing::warn!(
                "{e}: the blob changed after it was opened; re-open the file to read the new version"
            ),
            _ => tracing::warn!("{e}"),
        }
    }
}

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

/// A failed request as the core's error (`.map_err(fail)`).
pub fn fail(e: BlobError) -> FsError {
    FsError::from(e)
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
    fn every_error_has_its_errno() {
        let table = [
            (FsError::NotFound, libc::ENOENT),
            (FsError::Exists, libc::EEXIST),
            (FsError::NotEmpty, libc::ENOTEMPTY),
            (FsError::NotDir, libc::ENOTDIR),
            (FsError::IsDir, libc::EISDIR),
            (FsError::Busy, libc::EBUSY),
            (FsError::ReadOnly, libc::EROFS),
            (FsError::Denied, libc::EACCES),
            (FsError::Invalid, libc::EINVAL),
            (FsError::NameTooLong, libc::ENAMETOOLONG),
            (FsError::BadHandle, libc::EBADF),
            (FsError::Stale, libc::ESTALE),
            (FsError::TooLarge, libc::EFBIG),
            (FsError::Io, libc::EIO),
        ];
        for (e, errno) in table {
            assert_eq!(e.to_errno(), errno, "{e:?}");
            assert_eq!(Errno::from(e), errno);
        }
        let stale = BlobError::new(ErrorKind::ConditionNotMet, "Get Blob", "a", "");
        assert_eq!(FsError::from(stale).to_errno(), libc::ESTALE);
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
