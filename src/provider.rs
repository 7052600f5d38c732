//! Identity providers: the registry the app holds, and one [`Provider`] type over
//! two protocols — OpenID Connect (`oidc`, with the Google and Microsoft checks in
//! `google` and `microsoft`) and plain OAuth 2.0 (`oauth2`, with the profile APIs
//! of `github`, `facebook` and any server through `mapped`) — all over the one
//! HTTP client for providers (`http`).
//!
//! [`Providers::start`] discovers every OpenID Connect provider in the background,
//! so the proxy listens at once and `/oauth2/readyz` tells when sign-in can work.
//! OAuth 2.0 providers have nothing to discover and are ready at once.
//!
//! After sign-in, a session's life at the provider: [`Provider::refresh`] (the
//! `refresh_token` grant), [`Provider::revoke`] (RFC 7009, at sign-out),
//! [`Provider::end_session_url`] (RP-initiated logout) and
//! [`Provider::verify_logout_token`] (back-channel logout). Every signature check
//! — id_tokens at sign-in and refresh, logout tokens — uses the provider's one
//! set of keys (`keys`).

mod access_token;
mod facebook;
mod github;
mod google;
pub mod http;
mod keys;
mod logout_token;
mod mapped;
mod microsoft;
mod oauth2;
mod oidc;
mod revocation;
mod token;

pub use self::access_token::{BEARER_LEEWAY, BearerError, MAX_BEARER_TOKEN};
pub use self::keys::JWKS_REFETCH_INTERVAL;
pub use self::logout_token::{
    BACKCHANNEL_LOGOUT_EVENT, LOGOUT_TOKEN_MAX_AGE, LogoutToken, LogoutTokenError, MAX_LOGOUT_TOKEN,
};
pub(crate) use self::token::clip;

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::Notify;
use url::Url;

use self::oauth2::OAuth2Provider;
use self::oidc::OidcProvider;
use crate::config::{CaBundle, Config, Protocol, ProviderConfig};
use crate::metrics::{ProviderCall, ProviderMetrics};
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
    /// Microsoft: the id_token has a groups overage and Microsoft Graph did
    /// not give the groups (see `microsoft::overage_groups`).
    #[error(
        "provider {provider}: the user's groups could not be read from Microsoft Graph (groups overage; the access token needs GroupMember.Read.All): {source}"
    )]
    Graph {
        provider: String,
        #[source]
        source: HttpError,
    },
}

/// Why a refresh failed, sorted by what the caller does about it. Never carries
/// a token value.
#[derive(thiserror::Error, Debug)]
pub enum RefreshError {
    /// The provider refused the refresh token with an OAuth error (`invalid_grant`:
    /// expired, revoked, the user disabled or no longer permitted). End the session.
    #[error("provider {provider} refused the refresh: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Rejected {
        provider: String,
        error: String,
        description: Option<String>,
    },
    /// The provider could not answer now: unreachable, timed out, `5xx`, `429`,
    /// `temporarily_unavailable`, or its metadata is not loaded yet. Keep the
    /// session (until its lifetime) and try again later.
    #[error("provider {provider} cannot refresh now: {reason}")]
    Unavailable { provider: String, reason: String },
    /// The provider answered, but wrongly: a bad token response, a new id_token
    /// that fails verification or names another user, a profile of someone else.
    /// End the session.
    #[error("provider {provider} answered the refresh wrongly: {reason}")]
    Invalid { provider: String, reason: String },
}

impl RefreshError {
    /// Sorts a sign-in error met while refreshing.
    fn from_provider(provider: &str, e: ProviderError) -> Self {
        let provider = provider.to_owned();
        match e {
            ProviderError::TokenRejected { error, .. }
                if error == "temporarily_unavailable" || error == "server_error" =>
            {
                Self::Unavailable {
                    provider,
                    reason: error,
                }
            }
            ProviderError::TokenRejected { error, description } => Self::Rejected {
                provider,
                error,
                description,
            },
            ProviderError::NotPermitted(reason) => Self::Rejected {
                provider,
                error: "not_permitted".into(),
                description: Some(reason),
            },
            ProviderError::NotReady { .. } => Self::Unavailable {
                provider,
                reason: "the provider's metadata is not loaded yet".into(),
            },
            ProviderError::Unreachable { source, .. } => Self::Unavailable {
                provider,
                reason: source.to_string(),
            },
            // A fresh access token that userinfo refuses is the provider's fault, not the network's.
            ProviderError::Userinfo { source, .. } if matches!(&source.reason, http::HttpFailure::Status(s) if s.is_client_error()) => {
                Self::Invalid {
                    provider,
                    reason: format!("userinfo refused the new access token: {source}"),
                }
            }
            ProviderError::Userinfo { source, .. } => Self::Unavailable {
                provider,
                reason: format!("userinfo: {source}"),
            },
            ProviderError::Graph { source, .. } if matches!(&source.reason, http::HttpFailure::Status(s) if s.is_client_error()) => {
                Self::Invalid {
                    provider,
                    reason: format!("Microsoft Graph refused the new access token: {source}"),
                }
            }
            ProviderError::Graph { source, .. } => Self::Unavailable {
                provider,
                reason: format!("Microsoft Graph: {source}"),
            },
            other => Self::Invalid {
                provider,
                reason: other.to_string(),
            },
        }
    }
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
    metrics: ProviderMetrics,
    /// What a bearer token's `aud` may name: `client_id`, then `extra_audiences`.
    audiences: Box<[String]>,
}

#[derive(Debug)]
enum ProtocolImpl {
    Oidc(OidcProvider),
    OAuth2(OAuth2Provider),
}

impl Provider {
    fn new(config: ProviderConfig, http: ProviderHttp, metrics: ProviderMetrics) -> Self {
        let audiences = std::iter::once(&config.client_id)
            .chain(&config.extra_audiences)
            .cloned()
            .collect();
        let protocol = match config.protocol.clone() {
            Protocol::Oidc(settings) => {
                ProtocolImpl::Oidc(OidcProvider::new(config, settings, http, metrics.clone()))
            }
            Protocol::OAuth2(settings) => {
                ProtocolImpl::OAuth2(OAuth2Provider::new(config, settings, http, metrics.clone()))
            }
        };
        Self {
            protocol,
            metrics,
            audiences,
        }
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

    /// The provider can refresh tokens: it has a token endpoint and its protocol
    /// issues refresh tokens. False for Facebook (long-lived tokens, no refresh
    /// tokens) and for an OpenID Connect provider not yet discovered or without a
    /// token endpoint. GitHub OAuth apps give no refresh token (GitHub Apps with
    /// expiring user tokens do): a session without one is never refreshed anyway.
    pub fn can_refresh(&self) -> bool {
        match &self.protocol {
            ProtocolImpl::Oidc(p) => p.can_refresh(),
            ProtocolImpl::OAuth2(p) => p.can_refresh(),
        }
    }

    /// Redeems `refresh_token` (`grant_type=refresh_token`, RFC 6749 §6) with the
    /// provider's client authentication, for the session of `previous_sub`.
    ///
    /// The returned tokens hold the new access token and its expiry; the refresh
    /// token the provider answered (rotation), else `refresh_token` itself; the
    /// new id_token, else `None` (the caller keeps the old one as a logout hint).
    ///
    /// A new id_token is verified as at sign-in (signature against the provider's
    /// keys with the unknown-`kid` re-fetch, `iss`, `aud`, `azp`, `exp`, `iat`,
    /// algorithm, `at_hash`, the preset's `hd`/tenant checks) except `nonce`, which
    /// OpenID Connect Core §12.2 lets a refreshed id_token omit and is not
    /// compared when present; its `sub` must be `previous_sub` (its `iss` is the
    /// provider's by the verification).
    ///
    /// `claims` is then the full identity: with a new id_token, its claims plus
    /// userinfo where the provider's sign-in reads it, merged as at sign-in; for
    /// OAuth 2.0 providers, the profile read again. Without a new id_token,
    /// userinfo is read when the provider has it (its `sub` must be
    /// `previous_sub`) and `claims` holds **only userinfo's claims** (never the
    /// id_token-only ones, nor Microsoft's derived `email_verified`): the caller
    /// overlays them on the identity it has, since claims only the id_token
    /// carries (some providers' `groups`) are not among them. Without either,
    /// `claims` is empty and the caller keeps the identity it has.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        previous_sub: &str,
    ) -> Result<SignedIn, RefreshError> {
        // Not discovered yet is not "cannot": `refresh` answers Unavailable then.
        if refresh_token.is_empty() || (self.is_ready() && !self.can_refresh()) {
            return Err(RefreshError::Rejected {
                provider: self.id().to_owned(),
                error: "no_refresh".into(),
                description: Some("this provider or session cannot refresh".into()),
            });
        }
        let refreshed = match &self.protocol {
            ProtocolImpl::Oidc(p) => p.refresh(refresh_token, previous_sub).await,
            ProtocolImpl::OAuth2(p) => p.refresh(refresh_token, previous_sub).await,
        };
        refreshed.map_err(|e| RefreshError::from_provider(self.id(), e))
    }

    /// Best-effort RFC 7009 revocation at sign-out: when the provider has a
    /// revocation endpoint (`revocation_url`, else discovery's
    /// `revocation_endpoint`), POSTs the refresh token and the access token, each
    /// with its `token_type_hint` and the provider's client authentication, both
    /// at once and each within the provider HTTP client's timeout. Failures are
    /// logged (warn, without token values), never returned.
    pub async fn revoke(&self, tokens: &Tokens) {
        let Some(url) = self.revocation_url() else {
            return;
        };
        let (http, config) = match &self.protocol {
            ProtocolImpl::Oidc(p) => (p.http(), p.config()),
            ProtocolImpl::OAuth2(p) => (p.http(), p.config()),
        };
        let revoking = revocation::revoke(http, config, &url, tokens);
        self.metrics.time(ProviderCall::Revocation, revoking).await;
    }

    /// `idp_logout`: sign-out goes on to the provider's end-session endpoint
    /// (which needs the id_token as its hint).
    pub fn logs_out_at_provider(&self) -> bool {
        self.config().idp_logout
    }

    /// Where [`revoke`](Self::revoke) posts, if anywhere.
    pub fn revocation_url(&self) -> Option<Url> {
        match &self.protocol {
            ProtocolImpl::Oidc(p) => p.revocation_url(),
            ProtocolImpl::OAuth2(_) => self.config().revocation_url.clone(),
        }
    }

    /// The URL to send the browser to at sign-out so that the provider ends its
    /// session too (OpenID Connect RP-Initiated Logout 1.0 §2): the end-session
    /// endpoint with `id_token_hint` (when given), `client_id`,
    /// `post_logout_redirect_uri` and `state`. `None` unless `idp_logout` is set
    /// and the endpoint is known (`end_session_url`, else discovery's
    /// `end_session_endpoint`).
    pub fn end_session_url(
        &self,
        id_token_hint: Option<&str>,
        post_logout_redirect_uri: &Url,
        state: &str,
    ) -> Option<Url> {
        let mut url = match &self.protocol {
            ProtocolImpl::Oidc(p) => p.end_session_endpoint()?,
            ProtocolImpl::OAuth2(p) => {
                let config = p.config();
                config
                    .end_session_url
                    .clone()
                    .filter(|_| config.idp_logout)?
            }
        };
        {
            let mut query = url.query_pairs_mut();
            if let Some(hint) = id_token_hint {
                query.append_pair("id_token_hint", hint);
            }
            query
                .append_pair("client_id", &self.config().client_id)
                .append_pair(
                    "post_logout_redirect_uri",
                    post_logout_redirect_uri.as_str(),
                )
                .append_pair("state", state);
        }
        Some(url)
    }

    /// The provider advertises OpenID Connect Back-Channel Logout
    /// (`backchannel_logout_supported` in discovery). OAuth 2.0 providers: false.
    pub fn backchannel_logout_supported(&self) -> bool {
        self.oidc()
            .is_some_and(OidcProvider::backchannel_logout_supported)
    }

    /// Verifies a back-channel `logout_token` (Back-Channel Logout 1.0 §2.6): the
    /// JWS against the provider's keys (an unknown `kid` re-fetches them, paced as
    /// at sign-in) under its asymmetric id_token algorithms, `typ` (when present)
    /// `logout+jwt` or `JWT`, `iss` the provider's (Microsoft's tenant template
    /// filled with `tid`), `aud` our client_id, `iat` present, not in the future
    /// beyond a minute's skew and at most [`LOGOUT_TOKEN_MAX_AGE`] old, `exp` (when
    /// present) not passed, `jti` present, `events` holding the back-channel
    /// logout member as an object, `sid` or `sub`, and no `nonce`. Tokens over
    /// [`MAX_LOGOUT_TOKEN`] bytes are refused unread. The caller refuses a
    /// `jti` it has seen before (keeping it until [`LogoutToken::exp`]).
    pub async fn verify_logout_token(&self, token: &str) -> Result<LogoutToken, LogoutTokenError> {
        match &self.protocol {
            ProtocolImpl::Oidc(p) => p.verify_logout_token(token).await,
            ProtocolImpl::OAuth2(_) => Err(LogoutTokenError::NotSupported),
        }
    }

    /// A JWT bearer token naming `iss` is this provider's to verify: an
    /// OpenID Connect provider whose issuer it is. OAuth 2.0 providers: never.
    pub fn issues(&self, iss: &str) -> bool {
        self.oidc().is_some_and(|p| p.issues(iss))
    }

    /// Verifies a JWT bearer token (`Authorization: Bearer`) of this
    /// provider: the JWS against its keys (an unknown `kid` re-fetches them,
    /// paced as at sign-in) under its advertised asymmetric algorithms (never
    /// `none` or HMAC), `typ` (when present) `at+jwt` or `JWT`, `iss` its
    /// issuer, `aud` its `client_id` or one of `extra_audiences`, `exp`
    /// present and not passed, `nbf` and `iat` not in the future, each with
    /// [`BEARER_LEEWAY`]; `sub` present. No call to the provider unless the
    /// key is unknown. Answers the token's claims.
    pub async fn verify_access_token(
        &self,
        token: &str,
    ) -> Result<Map<String, Value>, BearerError> {
        if token.len() > MAX_BEARER_TOKEN {
            return Err(BearerError::Invalid("the token is longer than 16 KiB"));
        }
        match &self.protocol {
            ProtocolImpl::Oidc(p) => p.verify_access_token(&self.audiences, token).await,
            ProtocolImpl::OAuth2(_) => Err(BearerError::Invalid(
                "the provider does not sign access tokens portcullis can verify",
            )),
        }
    }

    /// `introspection = true`: opaque bearer tokens are asked about here.
    pub fn introspects(&self) -> bool {
        self.config().introspection
    }

    /// RFC 7662 introspection of an opaque bearer token at `introspection_url`
    /// (else the discovered `introspection_endpoint`) with the provider's
    /// client authentication: `active` must be true, `exp` (when answered)
    /// not passed, `aud` (else `client_id`, when answered) `client_id` or one
    /// of `extra_audiences`. Answers the claims (`username` also as
    /// `preferred_username`). Unreachable or answering an error: `Unavailable`.
    pub async fn introspect(&self, token: &str) -> Result<Map<String, Value>, BearerError> {
        if token.len() > MAX_BEARER_TOKEN {
            return Err(BearerError::Invalid("the token is longer than 16 KiB"));
        }
        let (http, url) = match &self.protocol {
            ProtocolImpl::Oidc(p) => (p.http(), p.introspection_url()),
            ProtocolImpl::OAuth2(p) => (p.http(), self.config().introspection_url.clone()),
        };
        let Some(url) = url.filter(|_| self.introspects()) else {
            return Err(BearerError::Unavailable(format!(
                "provider {} has no introspection endpoint",
                self.id()
            )));
        };
        let asking = access_token::introspect(http, self.config(), &url, &self.audiences, token);
        self.metrics.time(ProviderCall::Introspection, asking).await
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
    /// The one HTTP client for providers, and the CAs it was built to trust.
    http: ProviderHttp,
    extra_ca: Option<CaBundle>,
}

impl Providers {
    /// Spawns background discovery (metadata + JWKS) per provider, retrying with
    /// backoff from 1 s to 30 s and logging what to fix, then reading the
    /// metadata again as it asks (see [`rediscovery_after`]). Needs a Tokio
    /// runtime. Fails only when no TLS client can be built for calls to
    /// providers: then nobody could sign in, so portcullis must not start (or
    /// report ready). `metrics` times every call to a provider.
    pub fn start(config: &Config, metrics: ProviderMetrics) -> Result<Self, rustls::Error> {
        Self::start_keeping(config, metrics, None)
    }

    /// As [`start`](Self::start), for a reload: the providers of `previous`
    /// whose settings did not change (nor the CAs trusted for providers) are
    /// kept as they are, with their metadata, keys and discovery; the others
    /// start afresh.
    pub fn start_keeping(
        config: &Config,
        metrics: ProviderMetrics,
        previous: Option<&Providers>,
    ) -> Result<Self, rustls::Error> {
        Self::start_with(config, metrics, previous, REDISCOVERY_MIN)
    }

    /// `floor`: the shortest wait between two readings of a provider's metadata.
    fn start_with(
        config: &Config,
        metrics: ProviderMetrics,
        previous: Option<&Providers>,
        floor: Duration,
    ) -> Result<Self, rustls::Error> {
        let extra_ca = config.server.extra_ca_file.clone();
        let previous = previous.filter(|p| p.extra_ca == extra_ca);
        let http = match previous {
            Some(p) => p.http.clone(),
            None => ProviderHttp::new(extra_ca.as_ref())?,
        };
        let ready = previous.map_or_else(Default::default, |p| p.ready.clone());
        let providers: Arc<[Arc<Provider>]> = config
            .providers
            .iter()
            .map(|settings| {
                let kept = previous.and_then(|p| {
                    p.providers
                        .iter()
                        .find(|kept| kept.config() == settings)
                        .cloned()
                });
                kept.unwrap_or_else(|| {
                    let provider = Arc::new(Provider::new(
                        settings.clone(),
                        http.clone(),
                        metrics.clone(),
                    ));
                    if provider.oidc().is_some() {
                        tokio::spawn(discover_and_follow(
                            Arc::downgrade(&provider),
                            ready.clone(),
                            floor,
                        ));
                    }
                    provider
                })
            })
            .collect();
        Ok(Self {
            providers,
            ready,
            http,
            extra_ca,
        })
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

/// How long metadata is used before it is read again, when the provider says
/// nothing (OpenID Connect Discovery has no rule: a day is what operators
/// expect of a sidecar, and an issuer that moves an endpoint is followed
/// within it).
const REDISCOVERY_DEFAULT: Duration = Duration::from_secs(24 * 3600);
/// The least time between two readings, whatever `Cache-Control` says.
const REDISCOVERY_MIN: Duration = Duration::from_secs(5 * 60);
/// A failed re-reading is retried with backoff up to this (the metadata
/// already loaded keeps serving meanwhile).
const REREAD_RETRY_MAX: Duration = Duration::from_secs(3600);

/// When to read metadata again: its `max-age`, within `floor` and a day.
fn rediscovery_after(max_age: Option<Duration>, floor: Duration) -> Duration {
    max_age.map_or(REDISCOVERY_DEFAULT, |age| {
        age.clamp(floor, REDISCOVERY_DEFAULT)
    })
}

/// Loads the provider's metadata and keys, retrying until it succeeds, then
/// reads them again whenever they expire; stops when the provider is dropped
/// (removed by a reload).
async fn discover_and_follow(provider: Weak<Provider>, ready: Arc<Notify>, floor: Duration) {
    let mut delay = RETRY_FIRST;
    let mut loaded = false;
    loop {
        let Some(provider) = provider.upgrade() else {
            return;
        };
        let Some(p) = provider.oidc() else { return };
        let wait = match p.discover().await {
            Ok(max_age) => {
                if loaded {
                    tracing::debug!(provider = %p.id(), "provider metadata and keys read again");
                } else {
                    tracing::info!(provider = %p.id(), "provider metadata and keys loaded");
                    loaded = true;
                    ready.notify_waiters();
                }
                delay = RETRY_FIRST;
                rediscovery_after(max_age, floor)
            }
            Err(e) if loaded => {
                tracing::warn!(
                    provider = %p.id(),
                    url = %p.discovery_url(),
                    error = %e,
                    "cannot read the provider's metadata again; signing in goes on with the metadata already loaded (retrying in {}s)",
                    delay.as_secs(),
                );
                let wait = delay;
                delay = (delay * 2).min(REREAD_RETRY_MAX);
                wait
            }
            Err(e) => {
                tracing::error!(
                    provider = %p.id(),
                    url = %p.discovery_url(),
                    error = %e,
                    "cannot load the provider's metadata; check providers.{}.issuer and that the provider is reachable (retrying in {}s)",
                    p.id(),
                    delay.as_secs(),
                );
                let wait = delay;
                delay = (delay * 2).min(RETRY_MAX);
                wait
            }
        };
        drop(provider);
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests;
