//! Sessions (DESIGN §4): what a signed-in session holds, and how it travels.

pub mod cookies;
pub mod flow;
#[cfg(test)]
mod flow_proptests;
pub mod keys;
pub mod redis;

use std::sync::OnceLock;

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
    /// The identity headers this session sends the upstream, made on its first
    /// proxied request and reused while the opened session stays cached.
    #[serde(skip)]
    pub upstream_headers: UpstreamHeaders,
}

/// Headers derived from a session's `identity` and `tokens` (and the config).
/// A clone starts empty, so a changed copy of a session never carries headers
/// made from the old one; change `identity` or `tokens` only on a fresh clone.
/// Equality ignores them: they are a cache, not part of the session.
#[derive(Default)]
pub struct UpstreamHeaders(OnceLock<Box<[(HeaderName, HeaderValue)]>>);

impl UpstreamHeaders {
    pub fn get_or_init(
        &self,
        make: impl FnOnce() -> Box<[(HeaderName, HeaderValue)]>,
    ) -> &[(HeaderName, HeaderValue)] {
        self.0.get_or_init(make)
    }
}

impl Clone for UpstreamHeaders {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for UpstreamHeaders {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for UpstreamHeaders {
    // Values may hold tokens: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamHeaders")
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
            secure: true,
            same_site: SameSite::Lax,
            domain: None,
            store: StoreConfig::Cookie,
        }
    }

    #[test]
    fn upstream_headers_are_made_once_and_a_clone_starts_without_them() {
        let session = Session {
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
            },
            tokens: Tokens::default(),
            created_at: 1,
            expires_at: 2,
            last_seen_at: 1,
            sid: None,
            upstream_headers: Default::default(),
        };
        let user = |value: &'static str| {
            move || {
                let name = HeaderName::from_static("x-forwarded-user");
                vec![(name, HeaderValue::from_static(value))].into_boxed_slice()
            }
        };
        let made = session.upstream_headers.get_or_init(user("ada"));
        assert_eq!(made[0].1, "ada");
        // Made once: later requests reuse them.
        assert_eq!(
            session.upstream_headers.get_or_init(user("other"))[0].1,
            "ada"
        );
        // A copy that may be changed makes its own.
        let mut copy = session.clone();
        assert_eq!(copy, session, "the cache takes no part in equality");
        copy.identity.sub = "bob".to_owned();
        assert_eq!(copy.upstream_headers.get_or_init(user("bob"))[0].1, "bob");
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
