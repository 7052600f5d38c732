//! Identity providers: the registry the app holds, and one [`Provider`] type over
//! two protocols — OpenID Connect (`oidc`, with the Google and Microsoft checks in
//! `google` and `microsoft`) and plain OAuth 2.0 (`oauth2`, with the profile APIs
//! of `github`, `facebook` and any server through `mapped`) — all over the one
//! HTTP client for providers (`http`).
//!
//! [`Providers::start`] discovers every OpenID Connect provider in the background,
//! so the proxy listens at once and `/oauth2/readyz` tells when sign-in can work.
//! OAuth 2.0 providers have nothing to discover and are ready at once.

mod facebook;
mod github;
mod google;
pub mod http;
mod keys;
mod mapped;
mod microsoft;
mod oauth2;
mod oidc;
mod token;

pub use self::keys::JWKS_REFETCH_INTERVAL;
pub(crate) use self::token::clip;

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::Notify;
use url::Url;

use self::oauth2::OAuth2Provider;
use self::oidc::OidcProvider;
use crate::config::{Config, Protocol, ProviderConfig};
use crate::session::Tokens;
use http::{HttpError, ProviderHttp};

const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Why a sign-in with a provider failed. Never carries a token, code or secret.
#[derive(thiserror::Error, Debug)]
pub enum ProviderError {
    #[error("provider {provider} is not ready: its metadata has not been loaded yet")]
    NotReady { provider: String },
    #[error("provider {provider} could not be reached: {source}")]
    Unreachable {
        provider: String,
        #[source]
        source: HttpError,
    },
    #[error("the provider refused the code: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    TokenRejected {
        error: String,
        description: Option<String>,
    },
    #[error("the provider's token response is invalid: {0}")]
    InvalidTokenResponse(String),
    #[error("the id_token was refused: {0}")]
    InvalidIdToken(String),
    #[error("provider {provider}: userinfo failed: {source}")]
    Userinfo {
        provider: String,
        #[source]
        source: HttpError,
    },
    #[error("userinfo describes a different user (sub) than the id_token")]
    UserinfoSubMismatch,
    #[error("the authorization response's iss does not name this provider (RFC 9207)")]
    IssuerMismatch,
    /// The provider signed the user in, but the provider's own restriction
    /// (Workspace domain, tenant, organization) does not admit them.
    #[error("{0}")]
    NotPermitted(String),
    /// A profile API answered with an error object; `message` is the provider's own words.
    #[error("{provider} answered with an error: {message}")]
    ApiError { provider: String, message: String },
    #[error("the provider's user profile is unusable: {0}")]
    InvalidProfile(String),
}

/// The secrets of one sign-in, kept by the caller (in the flow cookie) between
/// [`Provider::begin`] and [`Provider::finish`]. `nonce` is empty for OAuth 2.0
/// providers: there is no id_token to bind it to.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowSecrets {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

impl std::fmt::Debug for FlowSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowSecrets([redacted])")
    }
}

/// The parameters of the authorization response the caller has read from the callback.
#[derive(Clone, Copy)]
pub struct Callback<'a> {
    pub code: &'a str,
    /// RFC 9207 `iss`, when the provider sent one.
    pub iss: Option<&'a str>,
}

impl std::fmt::Debug for Callback<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callback")
            .field("code", &"[redacted]")
            .field("iss", &self.iss)
            .finish()
    }
}

/// A finished sign-in.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// Claims under their standard names (sub, email, email_verified, name,
    /// preferred_username, picture, groups, and whatever else the provider said).
    /// For OpenID Connect: the verified id_token claims, overlaid by userinfo
    /// (which never overrides `sub`, `iss`, `aud` or the other id_token-only claims).
    pub claims: Map<String, Value>,
    pub tokens: Tokens,
}

/// When an access token of `expires_in` seconds expires, in Unix seconds. Saturates:
/// `expires_in` is the provider's number, and may be as large as `u64::MAX`.
fn expires_at(expires_in: Option<u64>) -> Option<u64> {
    expires_in.map(|secs| crate::now_unix().saturating_add(secs))
}

/// One configured provider, whatever its protocol.
#[derive(Debug)]
pub struct Provider {
    protocol: ProtocolImpl,
}

#[derive(Debug)]
enum ProtocolImpl {
    Oidc(OidcProvider),
    OAuth2(OAuth2Provider),
}

impl Provider {
    fn new(config: ProviderConfig, http: ProviderHttp) -> Self {
        let protocol = match config.protocol.clone() {
            Protocol::Oidc(settings) => {
                ProtocolImpl::Oidc(OidcProvider::new(config, settings, http))
            }
            Protocol::OAuth2(settings) => {
                ProtocolImpl::OAuth2(OAuth2Provider::new(config, settings, http))
            }
        };
        Self { protocol }
    }

    fn config(&self) -> &ProviderConfig {
        match &self.protocol {
            ProtocolImpl::Oidc(p) => p.config(),
            ProtocolImpl::OAuth2(p) => p.config(),
        }
    }

    pub fn id(&self) -> &str {
        &self.config().id
    }

    pub fn display_name(&self) -> &str {
        &self.config().display_name
    }

    /// The sign-in button's icon: an http(s) URL, a `data:image/` URL or a path.
    pub fn icon(&self) -> Option<&str> {
        self.config().icon.as_deref()
    }

    /// Sign-in can start: OpenID Connect metadata and JWKS are loaded (OAuth 2.0: always).
    pub fn is_ready(&self) -> bool {
        match &self.protocol {
            ProtocolImpl::Oidc(p) => p.is_ready(),
            ProtocolImpl::OAuth2(_) => true,
        }
    }

    /// The authorization URL (state, PKCE S256, scopes, redirect_uri, extra
    /// parameters; a nonce for OpenID Connect) and the secrets the callback will need.
    pub fn begin(&self, redirect_uri: &Url) -> Result<(Url, FlowSecrets), ProviderError> {
        match &self.protocol {
            ProtocolImpl::Oidc(p) => p.begin(redirect_uri),
            ProtocolImpl::OAuth2(p) => Ok(p.begin(redirect_uri)),
        }
    }

    /// Exchanges the code and establishes who signed in. The caller has already
    /// matched the callback's `state` against `secrets.state`.
    pub async fn finish(
        &self,
        callback: Callback<'_>,
        secrets: &FlowSecrets,
        redirect_uri: &Url,
    ) -> Result<SignedIn, ProviderError> {
        match &self.protocol {
            ProtocolImpl::Oidc(p) => p.finish(callback, secrets, redirect_uri).await,
            ProtocolImpl::OAuth2(p) => p.finish(callback, secrets, redirect_uri).await,
        }
    }

    fn oidc(&self) -> Option<&OidcProvider> {
        match &self.protocol {
            ProtocolImpl::Oidc(p) => Some(p),
            ProtocolImpl::OAuth2(_) => None,
        }
    }
}

/// Every configured provider. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Providers {
    providers: Arc<[Arc<Provider>]>,
    ready: Arc<Notify>,
}

impl Providers {
    /// Spawns background discovery (metadata + JWKS) per provider, retrying with
    /// backoff from 1 s to 30 s and logging what to fix. Needs a Tokio runtime.
    /// Fails only when no TLS client can be built for calls to providers: then
    /// nobody could sign in, so portcullis must not start (or report ready).
    pub fn start(config: &Config) -> Result<Self, rustls::Error> {
        let http = ProviderHttp::new()?;
        let providers: Arc<[Arc<Provider>]> = config
            .providers
            .iter()
            .map(|p| Arc::new(Provider::new(p.clone(), http.clone())))
            .collect();
        let ready = Arc::new(Notify::new());
        for provider in providers.iter().filter(|p| p.oidc().is_some()) {
            tokio::spawn(discover_until_ready(
                Arc::downgrade(provider),
                ready.clone(),
            ));
        }
        Ok(Self { providers, ready })
    }

    pub fn get(&self, id: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.id() == id).map(|p| &**p)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Provider> {
        self.providers.iter().map(|p| &**p)
    }

    /// Every provider's metadata and JWKS are loaded.
    pub fn all_ready(&self) -> bool {
        self.providers.iter().all(|p| p.is_ready())
    }

    /// Waits until [`all_ready`](Self::all_ready), at most `timeout`; returns it.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.ready.notified();
                if self.all_ready() {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

/// Stops when discovery succeeds or the provider is dropped.
async fn discover_until_ready(provider: Weak<Provider>, ready: Arc<Notify>) {
    let mut delay = RETRY_FIRST;
    loop {
        let Some(provider) = provider.upgrade() else {
            return;
        };
        let Some(p) = provider.oidc() else { return };
        match p.discover().await {
            Ok(()) => {
                tracing::info!(provider = %p.id(), "provider metadata and keys loaded");
                ready.notify_waiters();
                return;
            }
            Err(e) => tracing::error!(
                provider = %p.id(),
                url = %p.discovery_url(),
                error = %e,
                "cannot load the provider's metadata; check providers.{}.issuer and that the provider is reachable (retrying in {}s)",
                p.id(),
                delay.as_secs(),
            ),
        }
        drop(provider);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RETRY_MAX);
    }
}

#[cfg(test)]
mod tests;
