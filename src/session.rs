//! Sessions (DESIGN §4): what a signed-in session holds, and how it travels.

pub mod cookies;
pub mod flow;
#[cfg(test)]
mod flow_proptests;
pub mod keys;
pub mod redis;
pub mod revocations;
pub mod store;

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderName, HeaderValue};
use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};

use crate::identity::Identity;

pub use cookies::{Loaded, SessionCookies};
pub use flow::{Flow, FlowError};
pub use keys::{CodecError, SessionKeys};
pub use store::{Sessions, Unavailable};

/// One signed-in session. A new one, with a new random id, on every sign-in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Random, URL-safe; new on every sign-in.
    pub id: String,
    /// The provider id (table name under `[providers]`) that signed the user in.
    pub provider: String,
    pub identity: Identity,
    pub tokens: Tokens,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds: `created_at + session.lifetime`, never extended.
    pub expires_at: u64,
    /// Unix seconds of the last request seen, for `session.idle_timeout`.
    pub last_seen_at: u64,
    /// The provider's session id (the id_token's `sid`), which back-channel
    /// logout names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Unix seconds of the last token refresh (`created_at` until the first),
    /// for `session.refresh_interval`.
    #[serde(default)]
    pub refreshed_at: u64,
}

impl Session {
    /// Why this session cannot be used at `now`, if it cannot: past its
    /// lifetime, or idle for longer than `idle_timeout`.
    pub fn unusable_at(&self, now: u64, idle_timeout: Option<u64>) -> Option<&'static str> {
        if self.expires_at <= now {
            return Some("session expired");
        }
        match idle_timeout {
            Some(idle) if now.saturating_sub(self.last_seen_at) > idle => {
                Some("session idle for longer than session.idle_timeout")
            }
            _ => None,
        }
    }
}

/// Identity headers made for one header map.
pub struct UpstreamHeaders {
    /// Made once: from the identity and tokens, which an `Opened` never changes.
    pub fixed: Box<[(HeaderName, HeaderValue)]>,
    /// When the map's routes send a signed assertion: the latest one, which
    /// is signed again as it nears expiry.
    pub assertion: Option<crate::assertion::Cached>,
}

/// A session as requests use it: the stored [`Session`], and the identity
/// headers made from it on its first proxied request, cached together. An
/// `Opened` never changes: a refreshed or touched session is a new one, so
/// headers made from old tokens or an old identity cannot outlive them.
pub struct Opened {
    pub session: Session,
    /// The identity headers for the first header map (the only one unless
    /// routes have maps of their own), then for the others.
    upstream_headers: OnceLock<UpstreamHeaders>,
    more_upstream_headers: OnceLock<Box<[OnceLock<UpstreamHeaders>]>>,
    /// The revocation count at which this session was last found alive
    /// ([`revocations::Revocations::is_revoked`]).
    revocations_checked: AtomicU64,
    /// Made from a bearer token: never stored, refreshed or written to a cookie.
    from_bearer: bool,
}

impl Opened {
    pub fn new(session: Session) -> Self {
        Self {
            session,
            upstream_headers: OnceLock::new(),
            more_upstream_headers: OnceLock::new(),
            revocations_checked: AtomicU64::new(0),
            from_bearer: false,
        }
    }

    /// A session made from a bearer token's claims (`authn::bearer`).
    pub fn from_bearer(session: Session) -> Self {
        Self {
            from_bearer: true,
            ..Self::new(session)
        }
    }

    /// Made from a bearer token, not a signed-in session.
    pub fn is_bearer(&self) -> bool {
        self.from_bearer
    }

    /// The identity headers for header map `set` of `sets` (see
    /// `routes::HeaderSet`), made by `make` the first time.
    pub fn upstream_headers(
        &self,
        set: usize,
        sets: usize,
        make: impl FnOnce(&Session) -> UpstreamHeaders,
    ) -> &UpstreamHeaders {
        let cell = match set.checked_sub(1) {
            None => &self.upstream_headers,
            Some(other) => &self
                .more_upstream_headers
                .get_or_init(|| (1..sets.max(set + 1)).map(|_| OnceLock::new()).collect())[other],
        };
        cell.get_or_init(|| make(&self.session))
    }
}

/// Equal when the sessions are: the headers are made from them.
impl PartialEq for Opened {
    fn eq(&self, other: &Self) -> bool {
        self.session == other.session
    }
}

impl std::fmt::Debug for Opened {
    // The headers may hold tokens: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// The provider's tokens. Never logged.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tokens {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// Unix seconds when the access token expires, when the provider said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<u64>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .field("access_expires_at", &self.access_expires_at)
            .finish()
    }
}

/// A new session id: 256 random bits, base64url.
pub fn new_session_id() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{SameSite, Secret, SessionConfig, StoreConfig};

    pub(crate) fn session_config(secret: &str, previous: &[&str]) -> SessionConfig {
        SessionConfig {
            secret: Secret::new(secret),
            previous_secrets: previous.iter().map(|s| Secret::new(*s)).collect(),
            cookie_name: "_portcullis".to_owned(),
            lifetime: Duration::from_secs(12 * 3600),
            idle_timeout: None,
            refresh_before: Duration::from_secs(60),
            refresh_interval: None,
            secure: true,
            same_site: SameSite::Lax,
            domain: None,
            store: StoreConfig::Cookie,
        }
    }

    /// A signed-in session created at `now`, for tests.
    pub(crate) fn a_session(now: u64) -> Session {
        Session {
            id: new_session_id(),
            provider: "demo".to_owned(),
            identity: Identity {
                sub: "ada".to_owned(),
                email: None,
                email_verified: None,
                name: None,
                preferred_username: None,
                groups: Vec::new(),
                extra: Default::default(),
                added: Default::default(),
            },
            tokens: Tokens::default(),
            created_at: now,
            expires_at: now + 3600,
            last_seen_at: now,
            sid: None,
            refreshed_at: now,
        }
    }

    #[test]
    fn identity_headers_are_made_once_per_header_map() {
        let opened = Opened::new(a_session(0));
        let made = std::cell::Cell::new(0);
        let make = |value: &'static str| {
            let made = &made;
            move |_: &Session| {
                made.set(made.get() + 1);
                let header = (
                    HeaderName::from_static("x-set"),
                    HeaderValue::from_static(value),
                );
                UpstreamHeaders {
                    fixed: vec![header].into_boxed_slice(),
                    assertion: None,
                }
            }
        };
        for _ in 0..2 {
            for (set, value) in [(0, "zero"), (1, "one"), (2, "two")] {
                let headers = opened.upstream_headers(set, 3, make(value));
                assert_eq!(headers.fixed[0].1, value, "header map {set}");
            }
        }
        assert_eq!(made.get(), 3, "each map's headers made once");
    }

    #[test]
    fn session_ids_are_random_and_url_safe() {
        let a = new_session_id();
        let b = new_session_id();
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
