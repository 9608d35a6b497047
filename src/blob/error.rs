//! Typed errors of the Blob service, with what a caller (and a log line) needs to act on them.
//! They say what happened in the service's terms (not found, already exists, condition failed,
//! refused, throttled…); what a filesystem caller makes of them (an errno) is `fs::error`'s.

use std::fmt;

/// What kind of failure this is, independent of the HTTP details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 404: the blob or container does not exist.
    NotFound,
    /// 403: the SAS was rejected (bad signature, expired, missing permission, IP or protocol).
    Forbidden,
    /// 412: a condition (If-Match / If-None-Match) failed: the blob changed.
    ConditionNotMet,
    /// 409 `BlobAlreadyExists` (or `ContainerAlreadyExists`): a create-only write
    /// (`If-None-Match: *`) met an existing blob.
    AlreadyExists,
    /// 409 and other client errors the service explains with an error code.
    Conflict,
    /// 429, 503: the service refused the request for load (before doing any of it), and kept
    /// refusing after retries.
    Throttled,
    /// Retriable failures (connect, reset, timeout, 408, 500, 502, 504) that persisted after
    /// retries.
    Transient,
    /// Anything else: unexpected status, malformed response.
    Other,
    /// Not the service: the local copy of a file being written failed this way (`StorageFull`:
    /// the staging disk is full).
    Local(std::io::ErrorKind),
}

/// An error from one Blob service operation. Never contains the SAS token: requests are
/// logged and reported by operation and blob name, not by URL.
#[derive(Debug, Clone)]
pub struct BlobError {
    pub kind: ErrorKind,
    /// The operation, e.g. "List Blobs", "Get Blob".
    pub op: &'static str,
    /// The blob name or listing prefix the operation was about.
    pub target: String,
    pub status: Option<u16>,
    /// Azure's error code (`x-ms-error-code` or the `<Code>` of the error body).
    pub code: Option<String>,
    pub request_id: Option<Box<str>>,
    /// A short human explanation (for transport errors: the cause, without the URL).
    pub detail: String,
    /// For a transient failure: the request may have reached the service and been carried out,
    /// only its answer was lost (a reset or timeout after sending, 500, 502, 504). False when it
    /// certainly was not (cannot connect, 408, 429, 503).
    pub unanswered: bool,
    /// Set on the final result of a retried call: an earlier attempt went unanswered, so the
    /// service may already have carried out this call. A `404` after a Delete, a `412` after a
    /// conditional write or a `409 BlobAlreadyExists` may then be this call's own success.
    pub after_lost_answer: bool,
}

impl BlobError {
    pub fn new(kind: ErrorKind, op: &'static str, target: &str, detail: impl Into<String>) -> Self {
        BlobError {
            kind,
            op,
            target: target.to_string(),
            status: None,
            code: None,
            request_id: None,
            detail: detail.into(),
            unanswered: false,
            after_lost_answer: false,
        }
    }

    /// A transient failure whose request may have been carried out (see [`BlobError::unanswered`]).
    pub fn unanswered(op: &'static str, target: &str, detail: impl Into<String>) -> Self {
        BlobError {
            unanswered: true,
            ..BlobError::new(ErrorKind::Transient, op, target, detail)
        }
    }

    /// Whether the service may have carried out the call that ended in this error: an earlier
    /// attempt went unanswered, or the last one did.
    pub fn may_have_applied(&self) -> bool {
        self.after_lost_answer || (self.is_transient() && self.unanswered)
    }

    /// Whether a status leaves it open whether the service carried out the request: 500
    /// (including OperationTimedOut), 502, 504. 408, 429 and 503 are refusals before any work.
    pub fn status_leaves_outcome_open(status: u16) -> bool {
        matches!(status, 500 | 502 | 504)
    }

    /// Classifies an HTTP status (and the service's error code) into an error kind.
    pub fn kind_for_status(status: u16, code: Option<&str>) -> ErrorKind {
        match (status, code) {
            (404, _) => ErrorKind::NotFound,
            (403, _) => ErrorKind::Forbidden,
            (412, _) => ErrorKind::ConditionNotMet,
            (409, Some("BlobAlreadyExists" | "ContainerAlreadyExists")) => ErrorKind::AlreadyExists,
            (429 | 503, _) => ErrorKind::Throttled,
            (408 | 500 | 502 | 504, _) => ErrorKind::Transient,
            (400..=499, _) => ErrorKind::Conflict,
            _ => ErrorKind::Other,
        }
    }

    /// Whether trying again later may succeed (and the retry loop does): transient failures
    /// and throttling.
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, ErrorKind::Transient | ErrorKind::Throttled)
    }

    /// Whether a conditional write failed because the blob changed (412) or exists (409).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::ConditionNotMet | ErrorKind::AlreadyExists
        )
    }
}

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} failed", self.op, self.target)?;
        if let Some(s) = self.status {
            write!(f, ": HTTP {s}")?;
        }
        if let Some(c) = &self.code {
            write!(f, " {c}")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        if let Some(r) = &self.request_id {
            write!(f, " (request id {r})")?;
        }
        Ok(())
    }
}

impl std::error::Error for BlobError {}
