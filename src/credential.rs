//! The SAS a mount signs its requests with: [`Credential`] holds the token in force, swapped
//! atomically (a request in flight keeps the token it was sent with), with a generation number
//! so a request refused by the service can ask for a newer token and wait for it. The blob
//! layer reads it; `token` fills it (sources and the refresher).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use time::OffsetDateTime;

use crate::sas::{Permissions, SasToken};

/// A token query string (`sv=…&sig=…`) and what it says of itself. Debug never shows it.
pub struct Secret {
    query: String,
    /// `se`, if the token has one.
    pub expiry: Option<OffsetDateTime>,
    /// `sp`, if the token parses.
    pub permissions: Option<Permissions>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("query", &"<redacted>")
            .field("expiry", &self.expiry)
            .finish()
    }
}

impl Secret {
    pub fn new(query: String) -> Self {
        let query = query.trim_start_matches('?').to_string();
        let parsed = SasToken::parse(&query).ok();
        Secret {
            expiry: parsed.as_ref().and_then(SasToken::expiry),
            permissions: parsed.as_ref().and_then(SasToken::stated_permissions),
            query,
        }
    }

    /// The query string to append to request URLs. Never log it.
    pub fn expose(&self) -> &str {
        &self.query
    }

    /// Whether the token's `se` has passed.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expiry.is_some_and(|se| now >= se)
    }
}

/// The token requests are signed with, swappable while the mount runs.
pub struct Credential {
    current: RwLock<Arc<Secret>>,
    generation: AtomicU64,
    /// Woken when a new token is in place.
    changed: tokio::sync::Notify,
    /// Woken to ask the refresher for a new token now.
    wanted: tokio::sync::Notify,
    /// Woken when the refresher has finished an attempt (new token or not).
    attempted: tokio::sync::Notify,
    /// Whether anything can provide a new token (a file, a command...).
    refreshable: AtomicBool,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("current", &self.current())
            .field("generation", &self.generation())
            .finish()
    }
}

impl Credential {
    pub fn new(token_query: String) -> Self {
        Credential {
            current: RwLock::new(Arc::new(Secret::new(token_query))),
            generation: AtomicU64::new(0),
            changed: tokio::sync::Notify::new(),
            wanted: tokio::sync::Notify::new(),
            attempted: tokio::sync::Notify::new(),
            refreshable: AtomicBool::new(false),
        }
    }

    /// The token in force now.
    pub fn current(&self) -> Arc<Secret> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Seconds from `now` until the token in force expires (negative once it has); `None`
    /// when it has no `se`.
    pub fn seconds_left(&self, now: OffsetDateTime) -> Option<i64> {
        self.current().expiry.map(|se| (se - now).whole_seconds())
    }

    /// Counts replacements: a request notes it before sending, to tell later whether the
    /// token changed since.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Replaces the token; requests already sent keep the one they had.
    pub fn replace(&self, token_query: String) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(Secret::new(token_query));
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Declares that a refresher runs for this credential.
    pub fn set_refreshable(&self, yes: bool) {
        self.refreshable.store(yes, Ordering::SeqCst);
    }

    pub fn is_refreshable(&self) -> bool {
        self.refreshable.load(Ordering::SeqCst)
    }

    /// Asks for a token newer than generation `seen` and waits for it up to `timeout`.
    /// Whether one came (false at once when nothing can provide one).
    pub async fn refreshed_since(&self, seen: u64, timeout: Duration) -> bool {
        if self.generation() > seen {
            return true;
        }
        if !self.is_refreshable() {
            return false;
        }
        let changed = self.changed.notified();
        let attempted = self.attempted.notified();
        tokio::pin!(changed, attempted);
        changed.as_mut().enable();
        attempted.as_mut().enable();
        if self.generation() > seen {
            return true;
        }
        self.wanted.notify_one();
        // A new token, or the refresher's word that it got none (same token, failure).
        let _ = tokio::time::timeout(timeout, async {
            tokio::select! {
                _ = changed => {}
                _ = attempted => {}
            }
        })
        .await;
        self.generation() > seen
    }

    /// The refresher finished an attempt: whoever waits for a new token stops waiting.
    pub fn attempt_done(&self) {
        self.attempted.notify_waiters();
    }

    /// Asks the refresher for a new token now (SIGHUP).
    pub fn request_refresh(&self) {
        self.wanted.notify_one();
    }

    /// Resolves when someone asks for a new token.
    pub async fn wanted(&self) {
        self.wanted.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let c = Credential::new("?sv=2024&sig=SECRETSIG".into());
        assert_eq!(c.current().expose(), "sv=2024&sig=SECRETSIG");
        assert!(!format!("{c:?}").contains("SECRETSIG"));
        let held = c.current();
        c.replace("sv=2024&sig=NEW".into());
        assert_eq!(held.expose(), "sv=2024&sig=SECRETSIG");
        assert_eq!(c.current().expose(), "sv=2024&sig=NEW");
        assert_eq!(c.generation(), 1);
    }

    #[test]
    fn seconds_left_until_expiry() {
        let now = time::macros::datetime!(2030-01-01 00:00:00 UTC);
        let c = Credential::new("sv=2023-11-03&se=2030-01-01T01:00:00Z&sp=r&sr=c&sig=x".into());
        assert_eq!(c.seconds_left(now), Some(3600));
        assert_eq!(
            c.seconds_left(now + Duration::from_secs(3605)),
            Some(-5),
            "expired"
        );
        assert_eq!(Credential::new("sig=x".into()).seconds_left(now), None);
    }

    #[tokio::test]
    async fn waiting_for_a_refresh() {
        let c = Arc::new(Credential::new("sig=a".into()));
        assert!(
            !c.refreshed_since(0, Duration::from_millis(10)).await,
            "nothing can refresh"
        );
        c.set_refreshable(true);
        let c2 = c.clone();
        let refresher = tokio::spawn(async move {
            c2.wanted().await;
            c2.replace("sig=b".into());
        });
        assert!(c.refreshed_since(0, Duration::from_secs(5)).await);
        assert_eq!(c.current().expose(), "sig=b");
        refresher.await.unwrap();
        assert!(
            !c.refreshed_since(1, Duration::from_millis(20)).await,
            "timed out"
        );
    }
}
