//! The demo identity provider, which is also the test suite's: a small but real
//! OpenID Connect provider on loopback. It publishes discovery and a JWKS, runs
//! the authorization code flow with PKCE, signs RS256 id_tokens, serves userinfo,
//! and can be told to misbehave in each way a relying party must refuse.
//!
//! Tests sign in without a browser with `login_hint=<sub>` on `/authorize`,
//! which approves at once; without it a page lists the demo users.

mod authorize;
mod id_token;
mod keys;
mod responses;
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
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use url::Url;

use self::keys::pool_key;
use self::responses::{invalid_request, json_response, read_form, text};
use crate::Body;

/// A code must be redeemed within this many seconds.
const CODE_LIFETIME: u64 = 60;

/// Who may sign in, and the one client the provider knows.
#[derive(Debug, Clone)]
pub struct IdpOptions {
    pub client_id: String,
    /// `None`: a public client, which authenticates with PKCE alone.
    pub client_secret: Option<String>,
    pub users: Vec<DemoUser>,
}

impl Default for IdpOptions {
    fn default() -> Self {
        Self {
            client_id: "portcullis-demo".into(),
            client_secret: Some("demo-secret".into()),
            users: demo_users(),
        }
    }
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
}

/// What one call to `/token` looked like, for tests of client authentication and PKCE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequestSeen {
    /// `"basic"`, `"post"` or `"none"`.
    pub client_auth: &'static str,
    pub had_code_verifier: bool,
    pub pkce_ok: bool,
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
        let issuer = format!("http://{addr}");
        let issuer_url = Url::parse(&issuer).map_err(std::io::Error::other)?;
        let state = Arc::new(State {
            issuer,
            issuer_url,
            opts,
            jwks_fetches: AtomicUsize::new(0),
            inner: Mutex::new(Inner::default()),
        });
        let server = tokio::spawn(serve(listener, state.clone()));
        Ok(DemoIdp {
            state,
            addr,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`; discovery publishes it without a trailing slash.
    pub fn issuer(&self) -> Url {
        self.state.issuer_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn misbehave(&self, m: Misbehaviour) {
        self.state.inner().misbehaviour = m;
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
}

// === state ===

#[derive(Debug)]
struct State {
    /// Exactly as published, without a trailing slash.
    issuer: String,
    issuer_url: Url,
    opts: IdpOptions,
    jwks_fetches: AtomicUsize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    misbehaviour: Misbehaviour,
    key_index: usize,
    pending: HashMap<String, AuthRequest>,
    codes: HashMap<String, CodeGrant>,
    access_tokens: HashMap<String, AccessGrant>,
    refresh_tokens: HashMap<String, String>,
    token_requests: Vec<TokenRequestSeen>,
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
    issued_at: u64,
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

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
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

async fn route(state: &State, req: Request<Incoming>) -> Response<Body> {
    match (req.method().clone(), req.uri().path()) {
        (Method::GET, "/.well-known/openid-configuration") => {
            json_response(StatusCode::OK, discovery(state))
        }
        (Method::GET, "/jwks") => keys::jwks(state).await,
        (Method::GET, "/authorize") => authorize::authorize(state, req.uri().query().unwrap_or("")),
        (Method::POST, "/login") => match read_form(req).await {
            Some(form) => authorize::login(state, &form),
            None => text(StatusCode::PAYLOAD_TOO_LARGE, "form too large"),
        },
        (Method::POST, "/token") => {
            let headers = req.headers().clone();
            match read_form(req).await {
                Some(form) => token_endpoint::token(state, &headers, &form).await,
                None => invalid_request("form too large or unreadable").into_response(),
            }
        }
        (Method::GET | Method::POST, "/userinfo") => userinfo::userinfo(state, req.headers()),
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

fn discovery(state: &State) -> Value {
    json!({
        "issuer": state.issuer,
        "authorization_endpoint": state.endpoint("/authorize"),
        "token_endpoint": state.endpoint("/token"),
        "userinfo_endpoint": state.endpoint("/userinfo"),
        "jwks_uri": state.endpoint("/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile", "groups"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "azp", "email",
            "email_verified", "name", "preferred_username", "groups"],
        "authorization_response_iss_parameter_supported": true,
    })
}
