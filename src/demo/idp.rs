//! The demo identity provider, which is also the test suite's: a small but real
//! OpenID Connect provider on loopback. It publishes discovery and a JWKS, runs
//! the authorization code flow with PKCE, signs RS256 id_tokens, serves userinfo,
//! and can be told to misbehave in each way a relying party must refuse.
//!
//! Tests sign in without a browser with `login_hint=<sub>` on `/authorize`,
//! which approves at once; without it a page lists the demo users.
//!
//! Options make it look like a given provider: the issuer under a path
//! (LinkedIn's `/oauth`), Microsoft's per-tenant layout, per-user extra claims
//! (Google's `hd`, Microsoft's `tid`, GitLab's userinfo-only `groups`), which
//! client authentication methods it accepts, and whether it sends `iss` back.
//!
//! Session lifetime at the provider, for tests of refresh and sign-out:
//!
//! - **Refresh.** Every code grant comes with a refresh token. Access tokens live
//!   [`IdpOptions::access_token_lifetime`] seconds (default 3600; set 1–2 for tests
//!   that need a refresh soon). A `refresh_token` grant answers a new access token
//!   and an id_token without `nonce` (OpenID Connect Core §12.2) carrying the
//!   grant's `sid`; with [`IdpOptions::rotate_refresh_tokens`] also a new refresh
//!   token, the old one then being refused. [`DemoIdp::refresh_count`] counts
//!   refresh grants, [`DemoIdp::token_requests`] records each call's grant type and
//!   client authentication. [`DemoIdp::revoke_user_grants`] "disables" a user (their
//!   refresh tokens get `invalid_grant`); [`Misbehaviour::TokenEndpointUnavailable`]
//!   makes `/token` answer `503`, and [`Misbehaviour::RefreshedIdTokenForAnotherUser`]
//!   makes a refresh answer an id_token with another `sub`.
//! - **Sessions.** Each sign-in at the provider (an approved authorization) opens
//!   an IdP session with its own `sid`, carried by every id_token of that grant:
//!   [`DemoIdp::last_sid`], [`DemoIdp::sid_of`], [`DemoIdp::has_session`].
//! - **Revocation** (RFC 7009): `revocation_endpoint` in discovery, `POST /revoke`
//!   with client authentication; [`DemoIdp::revoked`] lists the token values
//!   revoked, [`DemoIdp::revocation_requests`] how each call looked.
//! - **RP-initiated logout**: `end_session_endpoint` in discovery, `GET /end_session`
//!   (Microsoft layout: `/<tenant>/oauth2/v2.0/logout`). It checks `id_token_hint`'s
//!   signature when given, `client_id` when given, and that
//!   `post_logout_redirect_uri` is allowed ([`IdpOptions::post_logout_redirect_uris`];
//!   empty = any loopback URL), ends the IdP session the hint names, and redirects
//!   there with `state`. [`DemoIdp::end_session_calls`] records each call.
//! - **Access tokens for APIs**: [`DemoIdp::access_token_claims`] and
//!   [`DemoIdp::sign_access_token`] make a JWT access token with chosen claims
//!   and [`JwtSigning`]; [`DemoIdp::issue_opaque_token`] an opaque one, which
//!   `POST /introspect` (RFC 7662, client authentication as at `/token`,
//!   `introspection_endpoint` in discovery) describes while it lives;
//!   [`DemoIdp::introspections`] counts the calls, and
//!   [`Misbehaviour::IntrospectionUnavailable`] makes it answer `503`.
//! - **Back-channel logout**: discovery says `backchannel_logout_supported` and
//!   `backchannel_logout_session_supported`; [`DemoIdp::logout_token`] signs a valid
//!   logout token for a `sub` and/or `sid`, and [`DemoIdp::logout_token_with`] one
//!   with a [`LogoutTokenFlaw`] a relying party must refuse.

mod access_token;
mod authorize;
mod discovery;
mod end_session;
mod id_token;
mod keys;
mod logout_token;
mod responses;
mod revocation;
mod token_endpoint;
mod userinfo;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use url::Url;

pub use crate::provider::BACKCHANNEL_LOGOUT_EVENT;

use self::keys::pool_key;
use self::responses::{invalid_request, json_response, read_form, text};
use crate::Body;

/// A code must be redeemed within this many seconds.
const CODE_LIFETIME: u64 = 60;

/// The tenant of a user without a `tid` extra claim, in [`Layout::MicrosoftTenants`].
pub const DEFAULT_TENANT_ID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// The tenant Microsoft's `consumers` issuer names (personal accounts).
pub const CONSUMERS_TENANT_ID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// Who may sign in, the one client the provider knows, and how the provider looks.
#[derive(Debug, Clone)]
pub struct IdpOptions {
    pub client_id: String,
    /// `None`: a public client, which authenticates with PKCE alone.
    pub client_secret: Option<String>,
    pub users: Vec<DemoUser>,
    pub layout: Layout,
    pub extra_claims: Vec<ExtraClaim>,
    /// Published in discovery and enforced at `/token`: `client_secret_basic`,
    /// `client_secret_post`, `none`.
    pub token_auth_methods: Vec<String>,
    pub response_iss: ResponseIss,
    /// Seconds an access token lives (`expires_in`); default 3600.
    pub access_token_lifetime: u64,
    /// Each refresh answers a new refresh token and invalidates the one used.
    pub rotate_refresh_tokens: bool,
    /// Whether a refresh answers an id_token (as most providers do); default true.
    pub id_token_on_refresh: bool,
    /// Where `/end_session` may send the browser back; empty = any loopback
    /// (`127.0.0.1`, `[::1]`, `localhost`) http(s) URL.
    pub post_logout_redirect_uris: Vec<String>,
    /// `Cache-Control: max-age` on the discovery document, in seconds.
    pub discovery_max_age: Option<u64>,
}

impl Default for IdpOptions {
    fn default() -> Self {
        Self {
            client_id: "portcullis-demo".into(),
            client_secret: Some("demo-secret".into()),
            users: demo_users(),
            layout: Layout::default(),
            extra_claims: Vec::new(),
            token_auth_methods: ["client_secret_basic", "client_secret_post", "none"]
                .map(String::from)
                .to_vec(),
            response_iss: ResponseIss::default(),
            access_token_lifetime: 3600,
            rotate_refresh_tokens: false,
            id_token_on_refresh: true,
            post_logout_redirect_uris: Vec::new(),
            discovery_max_age: None,
        }
    }
}

/// Where the issuer and the endpoints live.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Layout {
    /// The issuer is `http://127.0.0.1:PORT`, endpoints right under it.
    #[default]
    Root,
    /// The issuer is `http://127.0.0.1:PORT<path>` (e.g. `/oauth`, as LinkedIn's
    /// `https://www.linkedin.com/oauth`), endpoints under it.
    UnderPath(String),
    /// Microsoft Entra ID v2: discovery at `/<tenant>/v2.0/.well-known/openid-configuration`,
    /// endpoints under `/<tenant>/oauth2/v2.0/`, keys at `/<tenant>/discovery/v2.0/keys`,
    /// userinfo at `/oidc/userinfo`. Tenants `common` and `organizations` publish the
    /// literal template issuer `http://127.0.0.1:PORT/{tenantid}/v2.0`; id_tokens carry
    /// `tid` (an extra claim, else [`DEFAULT_TENANT_ID`]) and `iss = <base>/<tid>/v2.0`.
    /// Discovery lists no `code_challenge_methods_supported`, yet PKCE is required.
    MicrosoftTenants,
}

/// A claim added to one user's id_token, userinfo or both, after the standard
/// ones; JSON `null` removes a standard claim instead (GitLab's id_token has no
/// `groups`, its userinfo has).
#[derive(Debug, Clone, PartialEq)]
pub struct ExtraClaim {
    pub sub: String,
    pub name: String,
    pub value: Value,
    pub place: ClaimPlace,
}

impl ExtraClaim {
    /// In both the id_token and userinfo.
    pub fn new(sub: &str, name: &str, value: Value) -> Self {
        Self {
            sub: sub.into(),
            name: name.into(),
            value,
            place: ClaimPlace::Both,
        }
    }

    pub fn only_in(self, place: ClaimPlace) -> Self {
        Self { place, ..self }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimPlace {
    Both,
    IdToken,
    Userinfo,
}

/// The `iss` parameter of the authorization response (RFC 9207).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseIss {
    /// Sent, and promised in discovery (`authorization_response_iss_parameter_supported`).
    #[default]
    Advertised,
    /// Sent without the promise, as GitHub and Google have started to do.
    Unadvertised,
    /// Never sent (Microsoft, LinkedIn).
    Omitted,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DemoUser {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    pub name: String,
    pub preferred_username: String,
    pub groups: Vec<String>,
}

/// Ada (admins), Grace, and Eve, whose email is not verified.
pub fn demo_users() -> Vec<DemoUser> {
    let user = |sub: &str, email: &str, verified: bool, name: &str, groups: &[&str]| DemoUser {
        sub: sub.into(),
        email: email.into(),
        email_verified: verified,
        name: name.into(),
        preferred_username: sub.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    };
    vec![
        user(
            "ada",
            "ada@example.com",
            true,
            "Ada Lovelace",
            &["admins", "engineering"],
        ),
        user(
            "grace",
            "grace@example.com",
            true,
            "Grace Hopper",
            &["engineering"],
        ),
        user("eve", "eve@example.org", false, "Eve Unverified", &[]),
    ]
}

/// A way for the provider to go wrong, for tokens and userinfo issued from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Misbehaviour {
    #[default]
    Nothing,
    WrongIssuer,
    WrongAudience,
    ExtraAudienceWithoutAzp,
    /// `aud` holds our client id and another client's, and `azp` names the other:
    /// a token issued to another client of the same provider.
    ExtraAudienceForAnotherAzp,
    Expired,
    IssuedInFuture,
    AlgNone,
    AlgHs256WithPublicKey,
    /// Signed by another key under the current key's `kid`.
    BadSignature,
    /// Signed by the key that [`DemoIdp::rotate_key`] will switch to, under its own `kid`.
    UnknownKid,
    MissingNonce,
    WrongNonce,
    UserinfoSubMismatch,
    TokenEndpointError,
    /// Microsoft layout: `iss` names another tenant than the token's `tid`.
    TenantMismatch,
    /// Microsoft layout: no `tid` claim.
    MissingTenant,
    /// `/token` answers `503 Service Unavailable` (with an HTML body), whatever the grant.
    TokenEndpointUnavailable,
    /// A refresh answers an id_token for another user (`sub` of the next demo user).
    RefreshedIdTokenForAnotherUser,
    /// `/introspect` answers `503 Service Unavailable`.
    IntrospectionUnavailable,
}

/// How [`DemoIdp::sign_access_token`] signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JwtSigning {
    /// RS256 with the current key, `typ: at+jwt`.
    #[default]
    Current,
    /// `alg: none`, no signature.
    AlgNone,
    /// HS256 with the current key's public PEM as the secret.
    Hs256WithPublicKey,
    /// RS256 with the key [`DemoIdp::rotate_key`] will switch to, under its own `kid`.
    NextKey,
    /// RS384 with the current key: a sound signature in an algorithm the
    /// provider does not advertise (discovery lists RS256 only).
    Rs384,
}

/// What is wrong with a logout token from [`DemoIdp::logout_token_with`]; each one
/// is a reason OpenID Connect Back-Channel Logout 1.0 §2.6 gives to refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutTokenFlaw {
    WrongIssuer,
    WrongAudience,
    /// `iat` ten minutes ago.
    OldIat,
    /// `iat` an hour ahead.
    IssuedInFuture,
    MissingIat,
    /// `exp` three minutes ago (beyond any clock skew), `iat` four.
    Expired,
    /// No `events` claim.
    MissingEvent,
    /// `events` has the back-channel member, but not as a JSON object.
    EventNotObject,
    WithNonce,
    NoSubNoSid,
    MissingJti,
    /// Signed by another key under the current key's `kid`.
    BadSignature,
    /// Signed by the key [`DemoIdp::rotate_key`] will switch to.
    UnknownKid,
    AlgNone,
    AlgHs256WithPublicKey,
    /// `typ: at+jwt`: an access token, not a logout token.
    WrongTyp,
}

impl LogoutTokenFlaw {
    /// Every flaw, for tests that try each.
    pub const ALL: [Self; 16] = [
        Self::WrongIssuer,
        Self::WrongAudience,
        Self::OldIat,
        Self::IssuedInFuture,
        Self::MissingIat,
        Self::Expired,
        Self::MissingEvent,
        Self::EventNotObject,
        Self::WithNonce,
        Self::NoSubNoSid,
        Self::MissingJti,
        Self::BadSignature,
        Self::UnknownKid,
        Self::AlgNone,
        Self::AlgHs256WithPublicKey,
        Self::WrongTyp,
    ];
}

/// One call to `/revoke` (RFC 7009).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationSeen {
    /// `"basic"`, `"post"` or `"none"`.
    pub client_auth: &'static str,
    pub client_ok: bool,
    pub token_type_hint: Option<String>,
    /// Whether the token was a live refresh or access token of this provider.
    pub known: bool,
}

/// One call to the end-session endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndSessionSeen {
    pub client_id: Option<String>,
    /// The `sub` and `sid` of a valid `id_token_hint`.
    pub hint_sub: Option<String>,
    pub hint_sid: Option<String>,
    pub had_id_token_hint: bool,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
    /// The provider redirected back (every check passed).
    pub accepted: bool,
}

/// What one call to `/token` looked like, for tests of client authentication and PKCE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequestSeen {
    /// `"basic"`, `"post"` or `"none"`.
    pub client_auth: &'static str,
    pub had_code_verifier: bool,
    pub pkce_ok: bool,
    /// `authorization_code`, `refresh_token`, or what the client sent.
    pub grant_type: String,
}

/// A running provider. Dropping the handle stops it and its connections.
#[derive(Debug)]
pub struct DemoIdp {
    state: Arc<State>,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl Drop for DemoIdp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl DemoIdp {
    /// Binds `127.0.0.1:0`.
    pub async fn start(opts: IdpOptions) -> std::io::Result<DemoIdp> {
        Self::start_on(TcpListener::bind(("127.0.0.1", 0)).await?, opts).await
    }

    pub async fn start_on(listener: TcpListener, opts: IdpOptions) -> std::io::Result<DemoIdp> {
        let addr = listener.local_addr()?;
        // The current key, a stranger for BadSignature and the next one for UnknownKid.
        for index in 0..3 {
            pool_key(index).await.map_err(std::io::Error::other)?;
        }
        let base = format!("http://{addr}");
        let issuer = match &opts.layout {
            Layout::UnderPath(path) => format!("{base}/{}", path.trim_matches('/')),
            Layout::Root | Layout::MicrosoftTenants => base.clone(),
        };
        let issuer_url = Url::parse(&issuer).map_err(std::io::Error::other)?;
        let state = Arc::new(State {
            base,
            issuer,
            issuer_url,
            opts,
            jwks_fetches: AtomicUsize::new(0),
            introspections: AtomicUsize::new(0),
            inner: Mutex::new(Inner::default()),
        });
        let server = tokio::spawn(serve(listener, state.clone()));
        Ok(DemoIdp {
            state,
            addr,
            server,
        })
    }

    /// `http://127.0.0.1:PORT` (plus the path of [`Layout::UnderPath`]); discovery
    /// publishes it without a trailing slash. In [`Layout::MicrosoftTenants`], the base
    /// under which each tenant's issuer lives.
    pub fn issuer(&self) -> Url {
        self.state.issuer_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn misbehave(&self, m: Misbehaviour) {
        self.state.inner().misbehaviour = m;
    }

    /// Moves the end-session endpoint to `path` under the issuer (plain
    /// layouts): discovery publishes it there from now on, and it is served
    /// there (as well as at the old path).
    pub fn move_end_session(&self, path: &str) {
        self.state.inner().end_session_path = Some(path.to_owned());
    }

    /// Switches to a new key and `kid`; the JWKS then serves only the new key.
    pub fn rotate_key(&self) {
        self.state.inner().key_index += 1;
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn token_requests(&self) -> Vec<TokenRequestSeen> {
        self.state.inner().token_requests.clone()
    }

    /// Calls to `/token` with `grant_type=refresh_token`, answered or not.
    pub fn refresh_count(&self) -> usize {
        self.state
            .inner()
            .token_requests
            .iter()
            .filter(|r| r.grant_type == "refresh_token")
            .count()
    }

    /// The token values `/revoke` was asked to revoke, in order (known or not).
    pub fn revoked(&self) -> Vec<String> {
        self.state.inner().revoked.clone()
    }

    pub fn revocation_requests(&self) -> Vec<RevocationSeen> {
        self.state.inner().revocation_requests.clone()
    }

    pub fn end_session_calls(&self) -> Vec<EndSessionSeen> {
        self.state.inner().end_session_calls.clone()
    }

    /// The user is disabled at the provider: every refresh token of theirs is
    /// forgotten (a refresh then gets `invalid_grant`), and so are their access tokens.
    pub fn revoke_user_grants(&self, sub: &str) {
        let mut inner = self.state.inner();
        inner.refresh_tokens.retain(|_, g| g.sub != sub);
        inner.access_tokens.retain(|_, g| g.sub != sub);
    }

    /// Every refresh token the provider would still accept.
    pub fn refresh_tokens(&self) -> Vec<String> {
        self.state.inner().refresh_tokens.keys().cloned().collect()
    }

    /// The `sid` of the latest sign-in at the provider, of anyone.
    pub fn last_sid(&self) -> Option<String> {
        self.state.inner().last_sid.clone()
    }

    /// The `sid` of `sub`'s latest sign-in at the provider.
    pub fn sid_of(&self, sub: &str) -> Option<String> {
        self.state.inner().last_sid_of.get(sub).cloned()
    }

    /// The IdP session `sid` is open (signed in, not ended at `/end_session`).
    pub fn has_session(&self, sid: &str) -> bool {
        self.state.inner().sessions.contains_key(sid)
    }

    /// A valid logout token (Back-Channel Logout 1.0 §2.4) for `sub` and/or `sid`,
    /// signed with the current key, `typ: logout+jwt`, a fresh `jti`.
    /// The claims of an RFC 9068 access token for `sub`, for this provider
    /// and its client: `iss`, `sub`, `aud` (the client_id), `client_id`,
    /// `iat`, `exp` (in an hour), `jti`, and the user's email, name and groups.
    /// Change them, then [`sign_access_token`](Self::sign_access_token).
    pub fn access_token_claims(&self, sub: &str) -> Value {
        access_token::claims(&self.state, sub)
    }

    /// `claims` signed as `signing` says.
    pub async fn sign_access_token(&self, claims: &Value, signing: JwtSigning) -> String {
        let key_index = self.state.inner().key_index;
        access_token::sign(claims, signing, key_index)
            .await
            .expect("demo keys sign")
    }

    /// A new opaque access token for `sub`, live for `access_token_lifetime`.
    pub fn issue_opaque_token(&self, sub: &str) -> String {
        let token = responses::random_token();
        let expires_at = crate::now_unix().saturating_add(self.state.opts.access_token_lifetime);
        self.state.inner().access_tokens.insert(
            token.clone(),
            AccessGrant {
                sub: sub.to_owned(),
                userinfo_sub: sub.to_owned(),
                expires_at,
            },
        );
        token
    }

    /// Calls to `/introspect` so far.
    pub fn introspections(&self) -> usize {
        self.state.introspections.load(Ordering::SeqCst)
    }

    pub async fn logout_token(&self, sub: Option<&str>, sid: Option<&str>) -> String {
        logout_token::sign(&self.state, sub, sid, None)
            .await
            .expect("demo keys sign")
    }

    /// A logout token for `sub` (and its latest `sid`) bent by `flaw`.
    pub async fn logout_token_with(&self, sub: &str, flaw: LogoutTokenFlaw) -> String {
        let sid = self.sid_of(sub);
        logout_token::sign(&self.state, Some(sub), sid.as_deref(), Some(flaw))
            .await
            .expect("demo keys sign")
    }
}

// === state ===

#[derive(Debug)]
struct State {
    /// `http://127.0.0.1:PORT`.
    base: String,
    /// Exactly as published, without a trailing slash (the base in the Microsoft layout).
    issuer: String,
    issuer_url: Url,
    opts: IdpOptions,
    jwks_fetches: AtomicUsize,
    introspections: AtomicUsize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    misbehaviour: Misbehaviour,
    key_index: usize,
    pending: HashMap<String, AuthRequest>,
    codes: HashMap<String, CodeGrant>,
    access_tokens: HashMap<String, AccessGrant>,
    refresh_tokens: HashMap<String, RefreshGrant>,
    token_requests: Vec<TokenRequestSeen>,
    /// Open IdP sessions: sid → sub.
    sessions: HashMap<String, String>,
    last_sid: Option<String>,
    last_sid_of: HashMap<String, String>,
    revoked: Vec<String>,
    revocation_requests: Vec<RevocationSeen>,
    end_session_calls: Vec<EndSessionSeen>,
    /// Where [`DemoIdp::move_end_session`] moved the end-session endpoint.
    end_session_path: Option<String>,
}

#[derive(Debug, Clone)]
struct AuthRequest {
    redirect_uri: String,
    state: String,
    nonce: String,
    code_challenge: String,
    created_at: u64,
}

#[derive(Debug)]
struct CodeGrant {
    request: AuthRequest,
    sub: String,
    sid: String,
    issued_at: u64,
}

/// What a refresh token stands for: the user and the IdP session of the grant.
#[derive(Debug, Clone)]
struct RefreshGrant {
    sub: String,
    sid: String,
}

#[derive(Debug)]
struct AccessGrant {
    sub: String,
    userinfo_sub: String,
    expires_at: u64,
}

impl State {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn user(&self, sub: &str) -> Option<&DemoUser> {
        self.opts.users.iter().find(|u| u.sub == sub)
    }

    /// The user's Microsoft tenant: the `tid` extra claim, else [`DEFAULT_TENANT_ID`].
    fn tenant_of(&self, sub: &str) -> String {
        self.extra_claims(sub, ClaimPlace::IdToken)
            .find(|c| c.name == "tid")
            .and_then(|c| c.value.as_str())
            .unwrap_or(DEFAULT_TENANT_ID)
            .to_owned()
    }

    /// The `iss` of the user's tokens and authorization responses.
    fn issuer_for(&self, sub: &str) -> String {
        match self.opts.layout {
            Layout::MicrosoftTenants => format!("{}/{}/v2.0", self.base, self.tenant_of(sub)),
            Layout::Root | Layout::UnderPath(_) => self.issuer.clone(),
        }
    }

    fn extra_claims<'s>(
        &'s self,
        sub: &'s str,
        place: ClaimPlace,
    ) -> impl Iterator<Item = &'s ExtraClaim> {
        self.opts
            .extra_claims
            .iter()
            .filter(move |c| c.sub == sub && (c.place == place || c.place == ClaimPlace::Both))
    }

    /// Adds (or, for `null`, removes) the user's extra claims for `place`.
    fn apply_extra_claims(&self, sub: &str, place: ClaimPlace, claims: &mut Value) {
        let Some(claims) = claims.as_object_mut() else {
            return;
        };
        for extra in self.extra_claims(sub, place) {
            match &extra.value {
                Value::Null => claims.remove(&extra.name),
                value => claims.insert(extra.name.clone(), value.clone()),
            };
        }
    }
}

// === server ===

async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "demo identity provider: accept failed");
                continue;
            }
        };
        let state = state.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req).await) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "demo identity provider: connection ended");
            }
        });
        while connections.try_join_next().is_some() {}
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Discovery,
    Jwks,
    Authorize,
    Login,
    Token,
    Userinfo,
    Revoke,
    Introspect,
    EndSession,
}

/// The endpoint a path names in the provider's layout, with the Microsoft tenant if any.
fn endpoint<'p>(layout: &Layout, path: &'p str) -> Option<(Endpoint, Option<&'p str>)> {
    use Endpoint as E;
    // The login page's form posts here whatever the layout.
    if path == "/login" {
        return Some((E::Login, None));
    }
    match layout {
        Layout::Root | Layout::UnderPath(_) => {
            let prefix = match layout {
                Layout::UnderPath(p) => p.trim_end_matches('/'),
                _ => "",
            };
            let endpoint = match path.strip_prefix(prefix)? {
                "/.well-known/openid-configuration" => E::Discovery,
                "/jwks" => E::Jwks,
                "/authorize" => E::Authorize,
                "/token" => E::Token,
                "/userinfo" => E::Userinfo,
                "/revoke" => E::Revoke,
                "/introspect" => E::Introspect,
                "/end_session" => E::EndSession,
                _ => return None,
            };
            Some((endpoint, None))
        }
        Layout::MicrosoftTenants => {
            if path == "/oidc/userinfo" {
                return Some((E::Userinfo, None));
            }
            let (tenant, rest) = path.strip_prefix('/')?.split_once('/')?;
            let endpoint = match rest {
                "v2.0/.well-known/openid-configuration" => E::Discovery,
                "discovery/v2.0/keys" => E::Jwks,
                "oauth2/v2.0/authorize" => E::Authorize,
                "oauth2/v2.0/token" => E::Token,
                "oauth2/v2.0/logout" => E::EndSession,
                _ => return None,
            };
            Some((endpoint, Some(tenant)))
        }
    }
}

async fn route(state: &State, req: Request<Incoming>) -> Response<Body> {
    use Endpoint as E;
    let moved = state.inner().end_session_path.clone();
    let found = match moved {
        Some(moved)
            if state.issuer_url.path().trim_end_matches('/').to_owned() + &moved
                == req.uri().path() =>
        {
            Some((E::EndSession, None))
        }
        _ => endpoint(&state.opts.layout, req.uri().path()),
    };
    let Some((endpoint, tenant)) = found else {
        return text(StatusCode::NOT_FOUND, "not found");
    };
    match (req.method().clone(), endpoint) {
        (Method::GET, E::Discovery) => {
            let mut response = json_response(
                StatusCode::OK,
                discovery::metadata(state, tenant.unwrap_or_default()),
            );
            if let Some(age) = state.opts.discovery_max_age {
                response.headers_mut().insert(
                    http::header::CACHE_CONTROL,
                    http::HeaderValue::from_str(&format!("public, max-age={age}"))
                        .expect("a valid header value"),
                );
            }
            response
        }
        (Method::GET, E::Jwks) => keys::jwks(state).await,
        (Method::GET, E::Authorize) => authorize::authorize(state, req.uri().query().unwrap_or("")),
        (Method::POST, E::Login) => match read_form(req).await {
            Some(form) => authorize::login(state, &form),
            None => text(StatusCode::PAYLOAD_TOO_LARGE, "form too large"),
        },
        (Method::POST, E::Token) => {
            let headers = req.headers().clone();
            match read_form(req).await {
                Some(form) => token_endpoint::token(state, &headers, &form).await,
                None => invalid_request("form too large or unreadable").into_response(),
            }
        }
        (Method::GET | Method::POST, E::Userinfo) => userinfo::userinfo(state, req.headers()),
        (Method::POST, E::Revoke) => {
            let headers = req.headers().clone();
            match read_form(req).await {
                Some(form) => revocation::revoke(state, &headers, &form),
                None => invalid_request("form too large or unreadable").into_response(),
            }
        }
        (Method::POST, E::Introspect) => {
            let headers = req.headers().clone();
            match read_form(req).await {
                Some(form) => access_token::introspect(state, &headers, &form),
                None => invalid_request("form too large or unreadable").into_response(),
            }
        }
        (Method::GET, E::EndSession) => {
            end_session::end_session(state, req.uri().query().unwrap_or("")).await
        }
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}
