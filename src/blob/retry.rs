//! Retry policy for transient failures: exponential backoff with full jitter, honouring the
//! service's Retry-After, bounded in attempts.

use std::future::Future;
use std::time::Duration;

use super::BlobError;

/// Times a download whose body broke mid-way is asked again from its first missing byte
/// before the read fails (each resume is a new request, itself retried by the policy).
pub const BODY_RESUMES: u32 = 4;

/// The pause before resume number `resumes` (1-based) of a broken download.
pub fn resume_pause(resumes: u32) -> Duration {
    Duration::from_millis(100 * u64::from(resumes))
}

/// How often and how patiently transient failures are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Backoff before the first retry (before jitter).
    pub base_delay: Duration,
    /// Upper bound of one backoff, also of an honoured Retry-After.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// About 30 s of retrying in all: 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10, 10 s (upper bounds).
    fn default() -> Self {
        RetryPolicy {
            max_retries: 8,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// A short policy for checks a person waits for (before mounting).
    pub fn short() -> Self {
        RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(1),
        }
    }

    /// No retries: for tests.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            base_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
        }
    }

    /// The upper bound of the backoff before retry number `retry` (0-based).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(30)).unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// The wait before retry number `retry`: full jitter below the ceiling, or the server's
    /// Retry-After when it asks for longer (capped at `max_delay`).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.ceiling(retry);
        let jittered = ceiling.mul_f64(fastrand::f64());
        match retry_after {
            Some(ra) => ra.min(self.max_delay).max(jittered),
            None => jittered,
        }
    }

    /// Runs `attempt` until it succeeds, fails with a non-transient error, or retries run out.
    /// `attempt` returns the error and the server's Retry-After, if it gave one. The final
    /// error says whether an earlier attempt went unanswered ([`BlobError::after_lost_answer`]):
    /// the caller of a write then knows that a 404 or 412 may be its own earlier success.
    pub async fn run<T, F, Fut>(&self, mut attempt: F) -> Result<T, BlobError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, (BlobError, Option<Duration>)>>,
    {
        let mut retry = 0;
        let mut lost = false;
        loop {
            match attempt().await {
                Ok(v) => return Ok(v),
                Err((e, retry_after)) if e.is_transient() && retry < self.max_retries => {
                    lost |= e.unanswered;
                    let wait = self.delay(retry, retry_after);
                    tracing::debug!(op = e.op, target = %e.target, retry = retry + 1, wait_ms = wait.as_millis() as u64, "transient failure, retrying: {e}");
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
                Err((mut e, _)) => {
                    e.after_lost_answer |= lost;
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::ErrorKind;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn ceilings_grow_then_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.ceiling(0), Duration::from_millis(200));
        assert_eq!(p.ceiling(1), Duration::from_millis(400));
        assert_eq!(p.ceiling(3), Duration::from_millis(1600));
        assert_eq!(p.ceiling(10), Duration::from_secs(10));
        assert_eq!(p.ceiling(100), Duration::from_secs(10));
        for r in 0..20 {
            assert!(p.delay(r, None) <= p.ceiling(r));
        }
    }

    #[test]
    fn retry_after_is_honoured_but_capped() {
        let p = RetryPolicy::default();
        assert!(p.delay(0, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(600))),
            Duration::from_secs(10)
        );
    }

    fn err(kind: ErrorKind) -> BlobError {
        BlobError::new(kind, "Get Blob", "x", "")
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_then_succeeds() {
        let calls = AtomicU32::new(0);
        let r = RetryPolicy::default()
            .run(|| async {
                if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                    Err((err(ErrorKind::Transient), None))
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_retries() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = RetryPolicy::default()
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err((err(ErrorKind::Transient), Some(Duration::from_secs(1))))
            })
            .await;
        assert_eq!(r.unwrap_err().kind, ErrorKind::Transient);
        assert_eq!(calls.load(Ordering::SeqCst), 9);
    }

    #[tokio::test(start_paused = true)]
    async fn a_final_error_after_a_lost_answer_says_so() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = RetryPolicy::default()
            .run(|| async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => Err((BlobError::unanswered("Delete Blob", "x", "reset"), None)),
                    1 => Err((err(ErrorKind::Transient), None)),
                    _ => Err((err(ErrorKind::NotFound), None)),
                }
            })
            .await;
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.after_lost_answer && e.may_have_applied());
        // Refusals before any work (429, 503, cannot connect) are not lost answers.
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = RetryPolicy::default()
            .run(|| async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => Err((err(ErrorKind::Transient), None)),
                    _ => Err((err(ErrorKind::ConditionNotMet), None)),
                }
            })
            .await;
        let e = r.unwrap_err();
        assert!(!e.after_lost_answer && !e.may_have_applied());
        // Retries exhausted on an unanswered attempt: the outcome is open.
        let r: Result<(), _> = RetryPolicy::none()
            .run(|| async { Err((BlobError::unanswered("Put Blob", "x", "reset"), None)) })
            .await;
        assert!(r.unwrap_err().may_have_applied());
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_retry_final_errors() {
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::Forbidden,
            ErrorKind::ConditionNotMet,
        ] {
            let calls = AtomicU32::new(0);
            let r: Result<(), _> = RetryPolicy::default()
                .run(|| async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err((err(kind), None))
                })
                .await;
            assert_eq!(r.unwrap_err().kind, kind);
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
    }
}
