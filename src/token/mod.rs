//! Where the SAS token comes from. Today: the one given at mount time, held in a
//! [`Credential`] that requests read at send time, so a refresher can swap it atomically
//! (requests in flight keep the token they started with).

use std::sync::{Arc, RwLock};

/// The token requests are signed with, swappable while the mount runs.
#[derive(Debug)]
pub struct Credential {
    // Debug of the holder only prints the type: see the manual impl below.
    current: RwLock<Arc<Secret>>,
}

/// A token query string (`sv=…&sig=…`), never shown by Debug.
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    pub fn new(query: String) -> Self {
        Secret(query.trim_start_matches('?').to_string())
    }

    /// The query string to append to request URLs. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Credential {
    pub fn new(token_query: String) -> Self {
        Credential {
            current: RwLock::new(Arc::new(Secret::new(token_query))),
        }
    }

    /// The token in force now.
    pub fn current(&self) -> Arc<Secret> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the token; requests already sent keep the one they had.
    pub fn replace(&self, token_query: String) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(Secret::new(token_query));
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
    }
}
