//! Keeping the token fresh: a task that fetches a new token from the source ahead of the
//! current one's expiry (or every `--refresh-interval` for tokens without `se`), when the
//! SAS file changes, on SIGHUP, and when the service refuses the token in force. A new token
//! is checked before it replaces the old one; a bad one is logged and the old one stays while
//! it is valid, and the source is tried again with backoff.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;

use super::source::{accept, TokenSource};
use super::Credential;
use crate::blob::ContainerUrl;

/// How early and how often to refresh.
#[derive(Debug, Clone)]
pub struct RefreshConfig {
    /// `--refresh-before`: the margin before `se`. None: max(5 min, 10 % of the lifetime).
    pub before: Option<Duration>,
    /// `--refresh-interval`: for tokens without `se`.
    pub interval: Duration,
}

/// The margin before expiry at which to refresh a token valid for `lifetime`: the configured
/// one or max(5 min, 10 % of the lifetime), never more than half the lifetime, so even a very
/// short token is refreshed before it expires.
pub fn margin(lifetime: Duration, before: Option<Duration>) -> Duration {
    let wanted = before.unwrap_or_else(|| Duration::from_secs(300).max(lifetime / 10));
    wanted.min(lifetime / 2)
}

/// When to fetch the next token: `None` to wait for a request (or the interval).
fn next_refresh(
    expiry: Option<OffsetDateTime>,
    since: OffsetDateTime,
    cfg: &RefreshConfig,
    now: OffsetDateTime,
) -> Duration {
    match expiry {
        Some(se) => {
            let lifetime: Duration = (se - since).try_into().unwrap_or(Duration::ZERO);
            let at = se - margin(lifetime, cfg.before);
            (at - now).try_into().unwrap_or(Duration::ZERO)
        }
        None => cfg.interval,
    }
}

fn file_stamp(source: &TokenSource) -> Option<(SystemTime, u64)> {
    match source {
        TokenSource::File(p) => std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len())),
        TokenSource::Command { .. } => None,
    }
}

/// Tells waiters an attempt is over when dropped (at the end of an iteration).
struct AttemptDone<'a>(&'a Credential);

impl Drop for AttemptDone<'_> {
    fn drop(&mut self) {
        self.0.attempt_done();
    }
}

/// Runs for the life of the mount.
pub async fn run(
    cred: Arc<Credential>,
    source: TokenSource,
    container: ContainerUrl,
    needs_write: bool,
    cfg: RefreshConfig,
) {
    cred.set_refreshable(true);
    let mut since = OffsetDateTime::now_utc();
    let mut stamp = file_stamp(&source);
    let mut failures: u32 = 0;
    loop {
        let current = cred.current();
        let now = OffsetDateTime::now_utc();
        let scheduled = next_refresh(current.expiry, since, &cfg, now);
        // Due now: the token is within its margin (or past it).
        let due = scheduled.is_zero();
        let backoff = Duration::from_secs(1u64 << failures.min(6)).min(Duration::from_secs(60));
        let wait = match (failures, due, &source) {
            (0, _, _) => scheduled,
            // After an attempt that brought no new token: 1, 2, 4 … 60 s, never a busy loop.
            (_, true, _) => backoff,
            // A failing command is retried with backoff even before the token is due; a file
            // is read again when it changes, on SIGHUP, or when its token is due.
            (_, false, TokenSource::Command { .. }) => scheduled.min(backoff),
            (_, false, TokenSource::File(_)) => scheduled,
        };
        let poll = tokio::time::sleep(Duration::from_secs(2));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cred.wanted() => tracing::debug!("a new SAS was asked for"),
            _ = poll, if matches!(source, TokenSource::File(_)) => {
                let now_stamp = file_stamp(&source);
                if now_stamp == stamp {
                    continue;
                }
                stamp = now_stamp;
                tracing::info!("{} changed: reading it", source.describe());
            }
        }
        let result = match source.fetch().await {
            Ok(text) => accept(&text, &container, needs_write, OffsetDateTime::now_utc()),
            Err(e) => Err(e),
        };
        // Whatever happens below, waiters learn of it after this iteration.
        let _done = AttemptDone(&cred);
        match result {
            Ok(token) => {
                let query = token.query();
                if query == current.expose() {
                    tracing::debug!("{} gave the token already in force", source.describe());
                    if due {
                        failures = failures.saturating_add(1);
                    }
                    continue;
                }
                let new_perms = token.permissions().letters();
                let old_perms = current.permissions.as_ref().map(|p| p.letters());
                if old_perms.as_deref().is_some_and(|o| o != new_perms) {
                    tracing::info!(
                        "the new SAS has permissions sp={new_perms} (was {})",
                        old_perms.unwrap_or_default()
                    );
                }
                failures = 0;
                since = token.start().unwrap_or_else(OffsetDateTime::now_utc);
                cred.replace(query);
                match token.expiry() {
                    Some(se) => tracing::info!("new SAS in force, valid until {se}"),
                    None => tracing::info!(
                        "new SAS in force (no expiry: a stored access policy decides)"
                    ),
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let until = match current.expiry {
                    Some(se) if current.is_expired(OffsetDateTime::now_utc()) => {
                        format!("the current one expired at {se}")
                    }
                    Some(se) => format!("keeping the current one, valid until {se}"),
                    None => "keeping the current one".to_string(),
                };
                tracing::warn!(
                    "rejected a new SAS from {}: {e}; {until}",
                    source.describe()
                );
            }
        }
    }
}

/// Without a source: warns ahead of expiry, and at expiry.
pub async fn warn_expiry(cred: Arc<Credential>, cfg: RefreshConfig) {
    let Some(se) = cred.current().expiry else {
        return;
    };
    let now = OffsetDateTime::now_utc();
    let lifetime: Duration = (se - now).try_into().unwrap_or(Duration::ZERO);
    let ahead: Duration = (se - margin(lifetime, cfg.before) - now)
        .try_into()
        .unwrap_or(Duration::ZERO);
    tokio::time::sleep(ahead).await;
    tracing::warn!(
        "the SAS expires at {se} and nothing can refresh it (use --sas-file or --sas-command)"
    );
    let left: Duration = (se - OffsetDateTime::now_utc())
        .try_into()
        .unwrap_or(Duration::ZERO);
    tokio::time::sleep(left).await;
    tracing::error!("SAS expired at {se}: every request now fails with EACCES until a new token is given (remount)");
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn margins() {
        assert_eq!(
            margin(Duration::from_secs(8 * 3600), None),
            Duration::from_secs(2880),
            "10 % of 8 h"
        );
        assert_eq!(
            margin(Duration::from_secs(1800), None),
            5 * MIN,
            "at least 5 min"
        );
        assert_eq!(
            margin(Duration::from_secs(30), None),
            Duration::from_secs(15),
            "half a short token"
        );
        assert_eq!(margin(Duration::from_secs(3600), Some(2 * MIN)), 2 * MIN);
        assert_eq!(
            margin(Duration::from_secs(60), Some(10 * MIN)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn next_refresh_times() {
        let cfg = RefreshConfig {
            before: None,
            interval: Duration::from_secs(900),
        };
        let now = OffsetDateTime::now_utc();
        let wait = next_refresh(Some(now + time::Duration::seconds(30)), now, &cfg, now);
        assert_eq!(wait.as_secs(), 15);
        assert_eq!(next_refresh(None, now, &cfg, now), Duration::from_secs(900));
        let past = next_refresh(
            Some(now - time::Duration::seconds(5)),
            now - time::Duration::seconds(60),
            &cfg,
            now,
        );
        assert_eq!(past, Duration::ZERO);
    }
}

#[cfg(test)]
mod loop_tests {
    use super::*;
    use crate::sas::{sign_service_sas, ServiceSasParams};

    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    #[tokio::test(flavor = "multi_thread")]
    async fn a_source_giving_the_same_due_token_is_not_run_in_a_loop() {
        let p = ServiceSasParams::new(
            "devstoreaccount1",
            "box",
            "rl",
            OffsetDateTime::now_utc() + time::Duration::seconds(20),
        );
        let tok = sign_service_sas(&p, KEY).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        let cred = Arc::new(Credential::new(tok.clone()));
        let container = ContainerUrl::parse("http://127.0.0.1:10000/devstoreaccount1/box")
            .unwrap()
            .0;
        let src = TokenSource::Command {
            command: format!("echo x >> '{}'; echo '{}'", count.display(), tok),
            timeout: Duration::from_secs(5),
        };
        // Due at once (a margin longer than the lifetime is capped at half of it: 10 s... so
        // use a token whose refresh time has come).
        let cfg = RefreshConfig {
            before: Some(Duration::from_secs(60)),
            interval: Duration::from_secs(900),
        };
        let h = tokio::spawn(run(cred, src, container, false, cfg));
        tokio::time::sleep(Duration::from_secs(14)).await;
        h.abort();
        let n = std::fs::read_to_string(&count)
            .unwrap_or_default()
            .lines()
            .count();
        // Due after 10 s (half the lifetime), then backoff 2, 4 … s: a handful of runs.
        assert!((1..=4).contains(&n), "the command ran {n} times");
    }
}
