//! One OpenID Connect provider: discovery, the authorization code flow with PKCE,
//! the code exchange, id_token verification and userinfo (OpenID Connect Core 1.0 §3.1),
//! plus what its preset checks on top (Google's `hd`, Microsoft's tenant issuers).
//!
//! Metadata is an `ArcSwap` snapshot: the request path never takes a lock. The
//! signing keys, and their re-fetch on an unknown `kid`, are [`Keys`].

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreGrantType, CoreIdToken, CoreJsonWebKey, CoreJsonWebKeySet,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AccessTokenHash, AdditionalProviderMetadata, AuthType, AuthUrl, AuthorizationCode,
    ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IdTokenVerifier, IssuerUrl, JwsSigningAlgorithm, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, SignatureVerificationError, TokenResponse, TokenUrl, UserInfoUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use super::access_token::{self, BearerError};
use super::http::{AvailableOnly, HttpError, ProviderHttp};
use super::keys::{Keys, KeysError};
use super::logout_token::{self, LogoutToken, LogoutTokenError};
use super::token::clip;
use super::{Callback, FlowSecrets, ProviderError, SignedIn, google, microsoft};
use crate::config::{IdTokenChecks, OidcSettings, ProviderConfig, TokenAuthMethod};
use crate::metrics::{ProviderCall, ProviderMetrics};
use crate::session::Tokens;

/// How far in the future an id_token's `iat` may be: clock skew between us and the provider.
const IAT_SKEW: Duration = Duration::from_secs(60);
/// Claims userinfo may not override: they describe the id_token, not the user.
const ID_TOKEN_ONLY_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "azp",
    "exp",
    "iat",
    "nbf",
    "nonce",
    "auth_time",
    "at_hash",
    "jti",
];

/// Discovery members openidconnect does not model: RFC 9207 §3 (whether the
/// provider promises `iss` on every authorization response), RFC 8414 §2
/// `revocation_endpoint`, RP-Initiated Logout 1.0 §2.1 `end_session_endpoint`,
/// Back-Channel Logout 1.0 §2.1. Read leniently: a malformed member is absent.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct ExtraMetadata {
    #[serde(default, deserialize_with = "lenient")]
    authorization_response_iss_parameter_supported: bool,
    #[serde(default, deserialize_with = "lenient")]
    revocation_endpoint: Option<Url>,
    #[serde(default, deserialize_with = "lenient")]
    end_session_endpoint: Option<Url>,
    #[serde(default, deserialize_with = "lenient")]
    backchannel_logout_supported: bool,
    #[serde(default, deserialize_with = "lenient")]
    introspection_endpoint: Option<Url>,
}
impl AdditionalProviderMetadata for ExtraMetadata {}

/// The member's value, or the default when it has another type.
fn lenient<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    let value = Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).unwrap_or_default())
}

type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

type OidcClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What discovery learnt, fixed until the next discovery.
struct Discovered {
    client: OidcClient,
    issuer: IssuerUrl,
    userinfo: Option<Url>,
    /// Advertised id_token algorithms minus `none` and every HMAC one.
    allowed_algs: Vec<CoreJwsSigningAlgorithm>,
    iss_parameter_required: bool,
    /// `revocation_url`, else the discovered `revocation_endpoint`.
    revocation: Option<Url>,
    /// With `idp_logout`: `end_session_url`, else the discovered `end_session_endpoint`.
    end_session: Option<Url>,
    backchannel_logout: bool,
    /// `introspection_url`, else the discovered `introspection_endpoint`.
    introspection: Option<Url>,
}

/// Where an id_token comes from, which decides how it is checked.
#[derive(Clone, Copy)]
enum IdTokenFrom<'a> {
    /// The code exchange: the nonce must match; the RFC 9207 `iss` of the callback.
    SignIn {
        nonce: &'a Nonce,
        response_iss: Option<&'a str>,
    },
    /// A refresh: no nonce needed (Core §12.2); `sub` must be the session's.
    Refresh { previous_sub: &'a str },
}

pub(super) struct OidcProvider {
    config: ProviderConfig,
    settings: OidcSettings,
    http: ProviderHttp,
    metrics: ProviderMetrics,
    discovered: ArcSwapOption<Discovered>,
    /// Boxed: the provider types are about the same size without it.
    keys: Box<Keys>,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("id", &self.config.id)
            .field("issuer", &self.settings.issuer.as_str())
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl OidcProvider {
    pub(super) fn new(
        config: ProviderConfig,
        settings: OidcSettings,
        http: ProviderHttp,
        metrics: ProviderMetrics,
    ) -> Self {
        Self {
            keys: Box::new(Keys::new(&config.id, http.clone(), metrics.clone())),
            config,
            settings,
            http,
            metrics,
            discovered: ArcSwapOption::empty(),
        }
    }

    pub(super) fn config(&self) -> &ProviderConfig {
        &self.config
    }

    pub(super) fn id(&self) -> &str {
        &self.config.id
    }

    /// Metadata and JWKS are loaded.
    pub(super) fn is_ready(&self) -> bool {
        self.discovered.load().is_some() && self.keys.is_loaded()
    }

    /// The authorization URL (state, nonce, PKCE S256, scopes, redirect_uri, extra
    /// parameters) and the secrets the callback will need.
    pub(super) fn begin(&self, redirect_uri: &Url) -> Result<(Url, FlowSecrets), ProviderError> {
        let discovered = self.ready()?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        // openidconnect adds `openid` itself.
        let scopes = self.config.scopes.iter().filter(|s| *s != "openid");
        let mut request = discovered
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scopes(scopes.map(|s| Scope::new(s.clone())));
        for (name, value) in &self.config.auth_params {
            request = request.add_extra_param(name.as_str(), value.as_str());
        }
        let (url, state, nonce) = request
            .set_pkce_challenge(challenge)
            .set_redirect_uri(Cow::Owned(RedirectUrl::from_url(redirect_uri.clone())))
            .url();
        let secrets = FlowSecrets {
            state: state.into_secret(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.into_secret(),
        };
        Ok((url, secrets))
    }

    /// Exchanges the code, verifies the id_token and reads userinfo. The caller has
    /// already matched the callback's `state` against `secrets.state`.
    pub(super) async fn finish(
        &self,
        callback: Callback<'_>,
        secrets: &FlowSecrets,
        redirect_uri: &Url,
    ) -> Result<SignedIn, ProviderError> {
        let discovered = self.ready()?;
        check_response_issuer(&discovered, callback.iss)?;

        let exchange = discovered
            .client
            .exchange_code(AuthorizationCode::new(callback.code.to_owned()))
            .map_err(|e| ProviderError::InvalidTokenResponse(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(secrets.pkce_verifier.clone()))
            .set_redirect_uri(Cow::Owned(RedirectUrl::from_url(redirect_uri.clone())));
        let response = self
            .metrics
            .time(ProviderCall::Token, exchange.request_async(&self.http))
            .await
            .map_err(|e| self.token_error(e))?;

        let id_token = response.id_token().ok_or_else(|| {
            ProviderError::InvalidIdToken("the token response has no id_token".into())
        })?;
        let nonce = Nonce::new(secrets.nonce.clone());
        let (claims, raw_id_token) = self
            .identity(
                &discovered,
                id_token,
                response.access_token(),
                IdTokenFrom::SignIn {
                    nonce: &nonce,
                    response_iss: callback.iss,
                },
            )
            .await?;
        let tokens = Tokens {
            access_token: Some(response.access_token().secret().clone()),
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
            id_token: Some(raw_id_token),
            access_expires_at: super::expires_at(response.expires_in().map(|d| d.as_secs())),
        };
        Ok(SignedIn { claims, tokens })
    }

    /// Who the id_token says signed in, verified as `from` requires (OpenID Connect
    /// Core §3.1.3.7; §12.2 on refresh), plus userinfo when the id_token has no
    /// email or the provider always reads it. Also returns the raw id_token.
    async fn identity(
        &self,
        discovered: &Discovered,
        id_token: &CoreIdToken,
        access_token: &openidconnect::AccessToken,
        from: IdTokenFrom<'_>,
    ) -> Result<(Map<String, Value>, String), ProviderError> {
        let (nonce, response_iss) = match from {
            IdTokenFrom::SignIn {
                nonce,
                response_iss,
            } => (Some(nonce), response_iss),
            IdTokenFrom::Refresh { .. } => (None, None),
        };
        self.verify_id_token(discovered, id_token, nonce, access_token)
            .await?;
        let raw = id_token.to_string();
        let mut claims = verified_payload(&raw)?;
        if let IdTokenFrom::Refresh { previous_sub } = from
            && claims.get("sub").and_then(Value::as_str) != Some(previous_sub)
        {
            return Err(ProviderError::InvalidIdToken(
                "the refreshed id_token names another user (sub)".into(),
            ));
        }
        check_authorized_party(&claims, &self.config.client_id)?;
        self.check_preset_claims(discovered, &claims, response_iss)?;
        let wants_userinfo = self.config.fetch_userinfo || !claims.contains_key("email");
        if let (true, Some(url)) = (wants_userinfo, &discovered.userinfo) {
            merge_userinfo(&mut claims, self.userinfo(url, access_token).await?)?;
        }
        if matches!(self.settings.checks, IdTokenChecks::Tenants { .. }) {
            microsoft::email_verified_from_edov(&mut claims);
        }
        if let Some(graph) = &self.settings.graph_url
            && microsoft::has_groups_overage(&claims)
        {
            let call = microsoft::overage_groups(&self.http, graph, access_token.secret());
            let groups = call.await.map_err(|source| ProviderError::Graph {
                provider: self.id().to_owned(),
                source,
            })?;
            claims.insert("groups".into(), groups.into());
        }
        self.remap(&mut claims)?;
        Ok((claims, raw))
    }

    /// What the preset adds to OpenID Connect Core's checks, on verified claims.
    fn check_preset_claims(
        &self,
        discovered: &Discovered,
        claims: &Map<String, Value>,
        response_iss: Option<&str>,
    ) -> Result<(), ProviderError> {
        let issuer = discovered.issuer.as_str();
        match &self.settings.checks {
            IdTokenChecks::Standard => {}
            IdTokenChecks::HostedDomain(domain) => google::check_hosted_domain(claims, domain)?,
            IdTokenChecks::Tenants { allowed } => {
                microsoft::check_tenant(issuer, claims, allowed)?;
            }
        }
        if microsoft::is_template(issuer)
            && let Some(iss) = response_iss
            && claims.get("iss").and_then(Value::as_str) != Some(iss)
        {
            return Err(ProviderError::IssuerMismatch);
        }
        Ok(())
    }

    fn ready(&self) -> Result<Arc<Discovered>, ProviderError> {
        self.discovered
            .load_full()
            .ok_or_else(|| ProviderError::NotReady {
                provider: self.id().to_owned(),
            })
    }

    /// Verifies against the provider's keys; an unknown `kid` re-fetches them
    /// ([`Keys`]). `nonce` is the sign-in's; `None` on refresh.
    async fn verify_id_token(
        &self,
        discovered: &Discovered,
        id_token: &CoreIdToken,
        nonce: Option<&Nonce>,
        access_token: &openidconnect::AccessToken,
    ) -> Result<(), ProviderError> {
        let checked = self
            .keys
            .verify(
                |keys| {
                    let verifier = self.verifier(discovered, &keys.jwks);
                    // Core §12.2: a refreshed id_token need not carry the nonce,
                    // and one it carries is not compared.
                    let claims = match nonce {
                        Some(nonce) => id_token.claims(&verifier, nonce)?,
                        None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(()))?,
                    };
                    // Core §3.1.3.8: at_hash is optional in the code flow, binding when present.
                    Ok(match claims.access_token_hash() {
                        Some(expected) => {
                            check_at_hash(id_token, &verifier, access_token, expected)
                        }
                        None => Ok(()),
                    })
                },
                |e| {
                    matches!(
                        e,
                        ClaimsVerificationError::SignatureVerification(
                            SignatureVerificationError::NoMatchingKey
                        )
                    )
                },
            )
            .await;
        match checked {
            Ok(at_hash) => at_hash,
            Err(KeysError::NotLoaded) => Err(ProviderError::NotReady {
                provider: self.id().to_owned(),
            }),
            Err(KeysError::UnknownKey) => Err(ProviderError::InvalidIdToken(
                "signed by a key the provider's JWKS does not contain".into(),
            )),
            Err(KeysError::Check(e)) => Err(invalid_id_token(&e)),
        }
    }

    fn verifier<'a>(
        &self,
        discovered: &'a Discovered,
        jwks: &CoreJsonWebKeySet,
    ) -> IdTokenVerifier<'a, CoreJsonWebKey> {
        let client_id = ClientId::new(self.config.client_id.clone());
        let issuer = discovered.issuer.clone();
        // Public-key verification only, for confidential clients too: HMAC
        // algorithms (the client secret as key) are never in `allowed_algs`.
        IdTokenVerifier::new_public_client(client_id, issuer, jwks.clone())
            // A tenant template is no issuer: `check_preset_claims` checks `iss` against it.
            .require_issuer_match(!microsoft::is_template(discovered.issuer.as_str()))
            .set_allowed_algs(discovered.allowed_algs.iter().cloned())
            // Other audiences are judged by azp in `check_authorized_party`.
            .set_other_audience_verifier_fn(|_| true)
            .set_issue_time_verifier_fn(|iat| {
                let latest = crate::now_unix().saturating_add(IAT_SKEW.as_secs());
                if iat.timestamp() > i64::try_from(latest).unwrap_or(i64::MAX) {
                    Err(format!("issued in the future ({iat})"))
                } else {
                    Ok(())
                }
            })
    }

    fn token_error(
        &self,
        e: RequestTokenError<
            HttpError,
            openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
        >,
    ) -> ProviderError {
        match e {
            // The provider's own text: bounded, as for OAuth 2.0 providers (`token::clip`).
            RequestTokenError::ServerResponse(r) => ProviderError::TokenRejected {
                error: clip(r.error().as_ref()),
                description: r.error_description().map(|d| clip(d)),
            },
            RequestTokenError::Request(source) => ProviderError::Unreachable {
                provider: self.id().to_owned(),
                source,
            },
            RequestTokenError::Parse(e, _) => {
                ProviderError::InvalidTokenResponse(clip(&e.to_string()))
            }
            RequestTokenError::Other(e) => ProviderError::InvalidTokenResponse(clip(&e)),
        }
    }
}

// === after sign-in: refresh, revocation, logout ===

impl OidcProvider {
    pub(super) fn http(&self) -> &ProviderHttp {
        &self.http
    }

    /// Discovered, with a token endpoint.
    pub(super) fn can_refresh(&self) -> bool {
        self.discovered
            .load()
            .as_ref()
            .is_some_and(|d| d.client.token_uri().is_some())
    }

    pub(super) fn revocation_url(&self) -> Option<Url> {
        match self.discovered.load().as_ref() {
            Some(d) => d.revocation.clone(),
            None => self.config.revocation_url.clone(),
        }
    }

    /// The end-session endpoint when `idp_logout` is on and one is known.
    pub(super) fn end_session_endpoint(&self) -> Option<Url> {
        self.discovered.load().as_ref()?.end_session.clone()
    }

    pub(super) fn backchannel_logout_supported(&self) -> bool {
        self.discovered
            .load()
            .as_ref()
            .is_some_and(|d| d.backchannel_logout)
    }

    /// See [`super::Provider::refresh`].
    pub(super) async fn refresh(
        &self,
        refresh_token: &str,
        previous_sub: &str,
    ) -> Result<SignedIn, ProviderError> {
        let discovered = self.ready()?;
        let refresh_token_value = RefreshToken::new(refresh_token.to_owned());
        // A 5xx or 429 is the provider being unavailable, not an OAuth answer.
        let http = AvailableOnly(&self.http);
        let exchange = discovered
            .client
            .exchange_refresh_token(&refresh_token_value)
            .map_err(|e| ProviderError::InvalidTokenResponse(e.to_string()))?;
        let response = self
            .metrics
            .time(ProviderCall::Token, exchange.request_async(&http))
            .await
            .map_err(|e| self.token_error(e))?;
        let access_token = response.access_token();

        let (claims, id_token) = match response.id_token() {
            Some(id_token) => {
                let from = IdTokenFrom::Refresh { previous_sub };
                let (claims, raw) = self
                    .identity(&discovered, id_token, access_token, from)
                    .await?;
                (claims, Some(raw))
            }
            None => {
                let mut claims = Map::new();
                if let Some(url) = &discovered.userinfo {
                    claims.insert("sub".into(), Value::String(previous_sub.to_owned()));
                    merge_userinfo(&mut claims, self.userinfo(url, access_token).await?)?;
                    self.remap(&mut claims)?;
                }
                (claims, None)
            }
        };
        let tokens = Tokens {
            access_token: Some(access_token.secret().clone()),
            refresh_token: Some(
                response
                    .refresh_token()
                    .map(|t| t.secret().clone())
                    .unwrap_or_else(|| refresh_token.to_owned()),
            ),
            id_token,
            access_expires_at: super::expires_at(response.expires_in().map(|d| d.as_secs())),
        };
        Ok(SignedIn { claims, tokens })
    }

    /// `[providers.<id>.claims]`, when set.
    fn remap(&self, claims: &mut Map<String, Value>) -> Result<(), ProviderError> {
        match &self.config.claims {
            Some(paths) => super::mapped::remap(claims, paths),
            None => Ok(()),
        }
    }

    async fn userinfo(
        &self,
        url: &Url,
        access_token: &openidconnect::AccessToken,
    ) -> Result<Map<String, Value>, ProviderError> {
        let call = self.http.get_json(url, Some(access_token.secret()));
        self.metrics
            .time(ProviderCall::Userinfo, call)
            .await
            .map_err(|source| ProviderError::Userinfo {
                provider: self.id().to_owned(),
                source,
            })
    }

    /// See [`super::Provider::verify_logout_token`].
    pub(super) async fn verify_logout_token(
        &self,
        token: &str,
    ) -> Result<LogoutToken, LogoutTokenError> {
        let discovered = self.ready().map_err(|_| LogoutTokenError::NotReady)?;
        let rules = logout_token::Rules {
            issuer: discovered.issuer.as_str(),
            client_id: &self.config.client_id,
            algs: &discovered.allowed_algs,
        };
        logout_token::verify(&self.keys, &rules, token).await
    }

    /// This provider's bearer tokens name `iss` (its discovered issuer, or a
    /// tenant of Microsoft's template).
    pub(super) fn issues(&self, iss: &str) -> bool {
        match self.discovered.load().as_ref() {
            Some(d) if microsoft::is_template(d.issuer.as_str()) => {
                microsoft::matches_template(d.issuer.as_str(), iss)
            }
            Some(d) => d.issuer.as_str() == iss,
            // Not discovered yet: the configured issuer, so that the caller
            // answers "not ready" rather than "no such issuer".
            None => {
                self.settings.issuer.as_str().trim_end_matches('/') == iss.trim_end_matches('/')
            }
        }
    }

    /// See [`super::Provider::verify_access_token`].
    pub(super) async fn verify_access_token(
        &self,
        audiences: &[String],
        token: &str,
    ) -> Result<Map<String, Value>, BearerError> {
        let discovered = self
            .ready()
            .map_err(|e| BearerError::Unavailable(e.to_string()))?;
        let rules = access_token::Rules {
            issuer: discovered.issuer.as_str(),
            audiences,
            algs: &discovered.allowed_algs,
        };
        let mut claims = access_token::verify(&self.keys, &rules, token).await?;
        // What the preset checks at sign-in (Google's `hd`, Microsoft's
        // tenants) holds for its tokens too.
        self.check_preset_claims(&discovered, &claims, None)
            .map_err(|_| {
                BearerError::Invalid(
                    "the provider's own restriction (hosted domain, tenant) does not admit the token's user",
                )
            })?;
        if matches!(self.settings.checks, IdTokenChecks::Tenants { .. }) {
            microsoft::email_verified_from_edov(&mut claims);
        }
        Ok(claims)
    }

    /// `introspection_url`, else the discovered `introspection_endpoint`.
    pub(super) fn introspection_url(&self) -> Option<Url> {
        match self.discovered.load().as_ref() {
            Some(d) => d.introspection.clone(),
            None => self.config.introspection_url.clone(),
        }
    }
}

// === discovery ===

impl OidcProvider {
    /// Loads metadata and JWKS (OpenID Connect Discovery 1.0 §4); answers how
    /// long the provider lets the metadata be used (its `Cache-Control`).
    pub(super) async fn discover(&self) -> Result<Option<Duration>, String> {
        let url = Url::parse(&self.discovery_url()).map_err(|e| format!("invalid URL: {e}"))?;
        let response = self
            .metrics
            .time(ProviderCall::Discovery, self.http.get(&url, None))
            .await
            .map_err(|e| e.to_string())?;
        let document = super::http::json_object(&url, &response).map_err(|e| e.to_string())?;
        let max_age = super::http::max_age(&response);
        let metadata: Metadata = serde_json::from_value(Value::Object(document))
            .map_err(|e| format!("invalid metadata document: {e}"))?;
        let published = metadata.issuer().as_str();
        if !self.is_our_issuer(published) {
            return Err(format!(
                "unexpected issuer URI `{published}` (expected `{}`)",
                self.settings.issuer
            ));
        }
        // The provider's own document; endpoints the operator configured
        // instead were checked with the config.
        if self.settings.issuer.scheme() == "https" {
            refuse_plain_http_endpoints(&metadata)?;
        }
        let metadata = self.with_configured_endpoints(metadata);
        let jwks = self.keys.fetch(metadata.jwks_uri()).await?;
        self.install(metadata, jwks)?;
        Ok(max_age)
    }

    /// The endpoints set in the provider's config win over discovered ones.
    fn with_configured_endpoints(&self, mut metadata: Metadata) -> Metadata {
        if let Some(url) = &self.settings.auth_url {
            metadata = metadata.set_authorization_endpoint(AuthUrl::from_url(url.clone()));
        }
        if let Some(url) = &self.settings.token_url {
            metadata = metadata.set_token_endpoint(Some(TokenUrl::from_url(url.clone())));
        }
        if let Some(url) = &self.settings.userinfo_url {
            metadata = metadata.set_userinfo_endpoint(Some(UserInfoUrl::from_url(url.clone())));
        }
        metadata
    }

    /// Discovery §4.3: the published issuer must be the one configured. `url::Url`
    /// writes an empty path as `/`, which most providers publish without; Microsoft
    /// publishes its tenant-independent endpoints with a tenant template instead.
    fn is_our_issuer(&self, published: &str) -> bool {
        let ours = self.settings.issuer.as_str();
        published == ours
            || (self.settings.issuer.path() == "/" && published == ours.trim_end_matches('/'))
            || (matches!(self.settings.checks, IdTokenChecks::Tenants { .. })
                && microsoft::is_published_issuer_for(ours, published))
    }

    fn install(&self, metadata: Metadata, jwks: CoreJsonWebKeySet) -> Result<(), String> {
        let allowed_algs: Vec<_> = metadata
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|alg| **alg != CoreJwsSigningAlgorithm::None && !alg.uses_shared_secret())
            .cloned()
            .collect();
        if allowed_algs.is_empty() {
            return Err("the provider advertises no asymmetric id_token signing algorithm".into());
        }
        let auth_type = match self.config.token_auth_method {
            TokenAuthMethod::ClientSecretBasic => AuthType::BasicAuth,
            TokenAuthMethod::ClientSecretPost => AuthType::RequestBody,
        };
        let jwks_uri = metadata.jwks_uri().clone();
        let extra = metadata.additional_metadata();
        let https_issuer = self.settings.issuer.scheme() == "https";
        let discovered_endpoint = |name: &str, url: &Option<Url>| {
            let url = url.clone()?;
            if https_issuer && url.scheme() != "https" {
                tracing::warn!(provider = %self.id(), endpoint = name, "ignoring the provider's plain-http {name}: tokens would travel in the clear");
                return None;
            }
            Some(url)
        };
        let revocation = self
            .config
            .revocation_url
            .clone()
            .or_else(|| discovered_endpoint("revocation_endpoint", &extra.revocation_endpoint));
        let end_session =
            self.config.end_session_url.clone().or_else(|| {
                discovered_endpoint("end_session_endpoint", &extra.end_session_endpoint)
            });
        if self.config.idp_logout && end_session.is_none() {
            tracing::error!(
                provider = %self.id(),
                "providers.{}.idp_logout is set, but the provider publishes no end_session_endpoint; set providers.{}.end_session_url or remove idp_logout (sign-out ends only the portcullis session)",
                self.id(),
                self.id(),
            );
        }
        let backchannel_logout = extra.backchannel_logout_supported;
        let introspection = self.config.introspection_url.clone().or_else(|| {
            discovered_endpoint("introspection_endpoint", &extra.introspection_endpoint)
        });
        let discovered = Discovered {
            introspection,
            revocation,
            end_session: end_session.filter(|_| self.config.idp_logout),
            backchannel_logout,
            issuer: metadata.issuer().clone(),
            userinfo: metadata.userinfo_endpoint().map(|u| u.url().clone()),
            allowed_algs,
            iss_parameter_required: metadata
                .additional_metadata()
                .authorization_response_iss_parameter_supported,
            client: CoreClient::from_provider_metadata(
                metadata,
                ClientId::new(self.config.client_id.clone()),
                self.config
                    .client_secret
                    .as_ref()
                    .map(|s| ClientSecret::new(s.expose().to_owned())),
            )
            .set_auth_type(auth_type),
        };
        self.keys.install(jwks_uri, jwks);
        self.discovered.store(Some(Arc::new(discovered)));
        Ok(())
    }

    /// `<issuer>/.well-known/openid-configuration`, for messages to the operator.
    pub(super) fn discovery_url(&self) -> String {
        format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.as_str().trim_end_matches('/')
        )
    }
}

/// An https issuer whose document lists a plain-http endpoint would have the
/// client secret, codes and tokens sent in the clear: refused.
fn refuse_plain_http_endpoints(metadata: &Metadata) -> Result<(), String> {
    let endpoints = [
        (
            "authorization_endpoint",
            Some(metadata.authorization_endpoint().url()),
        ),
        ("token_endpoint", metadata.token_endpoint().map(|u| u.url())),
        (
            "userinfo_endpoint",
            metadata.userinfo_endpoint().map(|u| u.url()),
        ),
        ("jwks_uri", Some(metadata.jwks_uri().url())),
    ];
    for (name, url) in endpoints {
        if let Some(url) = url
            && url.scheme() != "https"
        {
            return Err(format!(
                "the https issuer publishes a plain-http {name} ({}); refused, as secrets and tokens would travel in the clear",
                url.origin().ascii_serialization()
            ));
        }
    }
    Ok(())
}

// === verification helpers ===

/// RFC 9207 §2.4: a present `iss` must name this provider; an absent one is refused
/// only when the provider promised to send it (DESIGN §9: some send it unadvertised).
/// Under a tenant template any tenant fits here; the token's own `iss` must then equal it.
fn check_response_issuer(discovered: &Discovered, iss: Option<&str>) -> Result<(), ProviderError> {
    let issuer = discovered.issuer.as_str();
    match iss {
        Some(iss) if microsoft::is_template(issuer) => microsoft::matches_template(issuer, iss)
            .then_some(())
            .ok_or(ProviderError::IssuerMismatch),
        Some(iss) if iss != issuer => Err(ProviderError::IssuerMismatch),
        None if discovered.iss_parameter_required => Err(ProviderError::IssuerMismatch),
        _ => Ok(()),
    }
}

/// The payload of an id_token whose signature and claims are already verified,
/// with every claim (groups and the rest) kept.
fn verified_payload(raw: &str) -> Result<Map<String, Value>, ProviderError> {
    let payload = raw.split('.').nth(1).unwrap_or("");
    URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(|| ProviderError::InvalidIdToken("the payload is not a JSON object".into()))
}

/// Core §3.1.3.7 items 4–5: with several audiences `azp` must be present, and when
/// present it must be our client_id (openidconnect leaves this to the client).
fn check_authorized_party(
    claims: &Map<String, Value>,
    client_id: &str,
) -> Result<(), ProviderError> {
    let several_audiences = claims
        .get("aud")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() > 1);
    match claims.get("azp") {
        Some(Value::String(azp)) if azp == client_id => Ok(()),
        Some(_) => Err(ProviderError::InvalidIdToken(
            "azp is not our client_id".into(),
        )),
        None if several_audiences => Err(ProviderError::InvalidIdToken(
            "several audiences and no azp".into(),
        )),
        None => Ok(()),
    }
}

/// Core §5.3.2: userinfo's `sub` must be the id_token's; its other claims fill in.
fn merge_userinfo(
    claims: &mut Map<String, Value>,
    userinfo: Map<String, Value>,
) -> Result<(), ProviderError> {
    if userinfo.get("sub") != claims.get("sub")
        || !userinfo.get("sub").is_some_and(Value::is_string)
    {
        return Err(ProviderError::UserinfoSubMismatch);
    }
    for (name, value) in userinfo {
        if !ID_TOKEN_ONLY_CLAIMS.contains(&name.as_str()) {
            claims.insert(name, value);
        }
    }
    Ok(())
}

/// The id_token's `at_hash` must be the hash of the access token it came with.
fn check_at_hash(
    id_token: &CoreIdToken,
    verifier: &IdTokenVerifier<'_, CoreJsonWebKey>,
    access_token: &openidconnect::AccessToken,
    expected: &AccessTokenHash,
) -> Result<(), ProviderError> {
    let actual = id_token
        .signing_alg()
        .and_then(|alg| Ok((alg, id_token.signing_key(verifier)?)))
        .map_err(|e| invalid_id_token(&ClaimsVerificationError::SignatureVerification(e)))
        .and_then(|(alg, key)| {
            AccessTokenHash::from_token(access_token, alg, key)
                .map_err(|e| ProviderError::InvalidIdToken(format!("at_hash: {e}")))
        })?;
    if actual != *expected {
        return Err(ProviderError::InvalidIdToken(
            "at_hash does not match the access token".into(),
        ));
    }
    Ok(())
}

fn invalid_id_token(e: &ClaimsVerificationError) -> ProviderError {
    let reason = match e {
        ClaimsVerificationError::SignatureVerification(inner) => format!("signature: {inner}"),
        other => other.to_string(),
    };
    ProviderError::InvalidIdToken(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn an_https_issuer_may_not_publish_plain_http_endpoints() {
        let document = |token: &str, jwks: &str| -> Metadata {
            serde_json::from_value(json!({
                "issuer": "https://idp.example.com",
                "authorization_endpoint": "https://idp.example.com/authorize",
                "token_endpoint": token,
                "jwks_uri": jwks,
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }))
            .unwrap()
        };
        let https = "https://idp.example.com";
        assert!(
            refuse_plain_http_endpoints(&document(
                &format!("{https}/token"),
                &format!("{https}/jwks")
            ))
            .is_ok()
        );
        let refused = refuse_plain_http_endpoints(&document(
            "http://idp.example.com/token",
            &format!("{https}/jwks"),
        ))
        .unwrap_err();
        assert!(refused.contains("token_endpoint"), "{refused}");
        let refused = refuse_plain_http_endpoints(&document(
            &format!("{https}/token"),
            "http://idp.example.com/jwks",
        ))
        .unwrap_err();
        assert!(refused.contains("jwks_uri"), "{refused}");
    }

    #[test]
    fn logout_metadata_is_read_and_malformed_members_are_absent_not_fatal() {
        let document = |extra: Value| -> Metadata {
            let mut d = json!({
                "issuer": "https://idp.example.com",
                "authorization_endpoint": "https://idp.example.com/authorize",
                "jwks_uri": "https://idp.example.com/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            });
            d.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::from_value(d).unwrap()
        };
        let good = document(json!({
            "revocation_endpoint": "https://idp.example.com/revoke",
            "end_session_endpoint": "https://idp.example.com/logout",
            "backchannel_logout_supported": true,
        }));
        let extra = good.additional_metadata();
        assert_eq!(
            extra.revocation_endpoint.as_ref().map(Url::as_str),
            Some("https://idp.example.com/revoke")
        );
        assert!(extra.end_session_endpoint.is_some() && extra.backchannel_logout_supported);
        let bad = document(json!({
            "revocation_endpoint": 5,
            "end_session_endpoint": "not a url",
            "backchannel_logout_supported": "yes",
            "authorization_response_iss_parameter_supported": null,
        }));
        let extra = bad.additional_metadata();
        assert!(extra.revocation_endpoint.is_none() && extra.end_session_endpoint.is_none());
        assert!(!extra.backchannel_logout_supported);
        assert!(!extra.authorization_response_iss_parameter_supported);
    }

    #[test]
    fn userinfo_fills_in_but_never_overrides_id_token_claims() {
        let mut claims = map(json!({"iss": "https://idp", "sub": "ada", "aud": "c", "nonce": "n"}));
        let userinfo = map(json!({"sub": "ada", "iss": "https://evil", "aud": "x",
            "nonce": "m", "email": "ada@example.com"}));
        merge_userinfo(&mut claims, userinfo).unwrap();
        assert_eq!(
            claims,
            map(
                json!({"iss": "https://idp", "sub": "ada", "aud": "c", "nonce": "n",
                "email": "ada@example.com"})
            )
        );
    }

    #[test]
    fn userinfo_must_name_the_same_string_sub() {
        let claims = map(json!({"sub": "ada"}));
        for userinfo in [json!({"sub": "eve"}), json!({}), json!({"email": "x"})] {
            assert!(matches!(
                merge_userinfo(&mut claims.clone(), map(userinfo)),
                Err(ProviderError::UserinfoSubMismatch)
            ));
        }
        let numeric = map(json!({"sub": 1}));
        assert!(matches!(
            merge_userinfo(&mut numeric.clone(), numeric),
            Err(ProviderError::UserinfoSubMismatch)
        ));
    }
}
