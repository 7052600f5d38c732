//! Sessions (DESIGN §4): what a signed-in session holds, and how it travels.

use serde::{Deserialize, Serialize};

use crate::identity::Identity;

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
            .field("access_token", &self.access_token.as_ref().map(|_| "[redacted]"))
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "[redacted]"))
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .field("access_expires_at", &self.access_expires_at)
            .finish()
    }
}
