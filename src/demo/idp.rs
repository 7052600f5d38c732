//! The demo identity provider, which is also the test suite's: a small but real
//! OpenID Connect provider on loopback. It publishes discovery and a JWKS, runs
//! the authorization code flow with PKCE, signs RS256 id_tokens, serves userinfo,
//! and can be told to misbehave in each way a relying party must refuse.
//!
//! Tests sign in without a browser with `login_hint=<sub>` on `/authorize`,
//! which approves at once; without it a page lists the demo users.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use url::Url;

use super::upstream::escape_html;
use crate::{Body, full, now_unix};

const ACCESS_TOKEN_LIFETIME: u64 = 3600;
const ID_TOKEN_LIFETIME: u64 = 3600;
const CODE_LIFETIME: u64 = 60;
const PENDING_LIFETIME: u64 = 600;
const MAX_FORM: usize = 64 * 1024;
const RSA_BITS: usize = 2048;

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

// === signing keys ===

/// RSA key generation is slow, so keys are shared by every provider in the process.
static KEY_POOL: Mutex<Vec<Arc<PoolKey>>> = Mutex::new(Vec::new());

struct PoolKey {
    kid: String,
    encoding: EncodingKey,
    public_pem: String,
    jwk: Value,
}

async fn pool_key(index: usize) -> Result<Arc<PoolKey>, String> {
    tokio::task::spawn_blocking(move || {
        let mut pool = KEY_POOL.lock().unwrap_or_else(PoisonError::into_inner);
        while pool.len() <= index {
            pool.push(Arc::new(generate_key()?));
        }
        Ok(pool[index].clone())
    })
    .await
    .map_err(|e| format!("key generation failed: {e}"))?
}

fn generate_key() -> Result<PoolKey, String> {
    let private =
        rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, RSA_BITS).map_err(|e| e.to_string())?;
    let der = private.to_pkcs1_der().map_err(|e| e.to_string())?;
    let public = private.to_public_key();
    let public_pem = public
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| e.to_string())?;
    let n = public.n().to_bytes_be();
    let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(&n)[..9]);
    let jwk = json!({
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(&n),
        "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
    });
    let encoding = EncodingKey::from_rsa_der(der.as_bytes());
    Ok(PoolKey {
        kid,
        encoding,
        public_pem,
        jwk,
    })
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
        (Method::GET, "/jwks") => jwks(state).await,
        (Method::GET, "/authorize") => authorize(state, req.uri().query().unwrap_or("")),
        (Method::POST, "/login") => match read_form(req).await {
            Some(form) => login(state, &form),
            None => text(StatusCode::PAYLOAD_TOO_LARGE, "form too large"),
        },
        (Method::POST, "/token") => {
            let headers = req.headers().clone();
            match read_form(req).await {
                Some(form) => token(state, &headers, &form).await,
                None => invalid_request("form too large or unreadable").into_response(),
            }
        }
        (Method::GET | Method::POST, "/userinfo") => userinfo(state, req.headers()),
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

async fn jwks(state: &State) -> Response<Body> {
    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let index = state.inner().key_index;
    match pool_key(index).await {
        Ok(key) => json_response(StatusCode::OK, json!({ "keys": [key.jwk] })),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

// === authorization endpoint ===

fn authorize(state: &State, query: &str) -> Response<Body> {
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let request = match validate_authorize(state, &params) {
        Ok(request) => request,
        Err(problem) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("invalid authorization request: {problem}"),
            );
        }
    };
    if let Some(user) = params.get("login_hint").and_then(|hint| state.user(hint)) {
        return approve(state, request, &user.sub);
    }
    let id = random_token();
    let mut inner = state.inner();
    let now = now_unix();
    inner
        .pending
        .retain(|_, r| r.created_at + PENDING_LIFETIME > now);
    inner.pending.insert(id.clone(), request);
    drop(inner);
    login_page(state, &id)
}

fn validate_authorize(
    state: &State,
    params: &HashMap<String, String>,
) -> Result<AuthRequest, String> {
    let param = |name: &str| params.get(name).filter(|v| !v.is_empty());
    if param("client_id") != Some(&state.opts.client_id) {
        return Err("unknown client_id".into());
    }
    if param("response_type").map(String::as_str) != Some("code") {
        return Err("response_type must be code".into());
    }
    let redirect_uri = param("redirect_uri").ok_or("redirect_uri is missing")?;
    Url::parse(redirect_uri).map_err(|_| "redirect_uri is not an absolute URL")?;
    let code_challenge =
        param("code_challenge").ok_or("code_challenge is missing (PKCE is required)")?;
    if param("code_challenge_method").map(String::as_str) != Some("S256") {
        return Err("code_challenge_method must be S256".into());
    }
    let state_param = param("state").ok_or("state is missing")?;
    let nonce = param("nonce").ok_or("nonce is missing")?;
    Ok(AuthRequest {
        redirect_uri: redirect_uri.clone(),
        state: state_param.clone(),
        nonce: nonce.clone(),
        code_challenge: code_challenge.clone(),
        created_at: now_unix(),
    })
}

fn login(state: &State, form: &HashMap<String, String>) -> Response<Body> {
    let pending = form
        .get("request")
        .and_then(|id| state.inner().pending.remove(id));
    let Some(request) = pending else {
        return text(
            StatusCode::BAD_REQUEST,
            "this sign-in request is unknown or has expired; start again",
        );
    };
    match form.get("sub").and_then(|sub| state.user(sub)) {
        Some(user) => approve(state, request, &user.sub),
        None => text(StatusCode::BAD_REQUEST, "unknown user"),
    }
}

/// Issues a code and sends the browser back (RFC 9207: with `iss`).
fn approve(state: &State, request: AuthRequest, sub: &str) -> Response<Body> {
    let Ok(mut target) = Url::parse(&request.redirect_uri) else {
        return text(
            StatusCode::BAD_REQUEST,
            "redirect_uri is not an absolute URL",
        );
    };
    let code = random_token();
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &request.state)
        .append_pair("iss", &state.issuer);
    let now = now_unix();
    let mut inner = state.inner();
    inner.codes.retain(|_, g| g.issued_at + CODE_LIFETIME > now);
    inner.codes.insert(
        code,
        CodeGrant {
            request,
            sub: sub.to_owned(),
            issued_at: now,
        },
    );
    drop(inner);
    let mut response = Response::new(crate::empty());
    *response.status_mut() = StatusCode::FOUND;
    match HeaderValue::try_from(target.as_str()) {
        Ok(location) => {
            response.headers_mut().insert(LOCATION, location);
            response
        }
        Err(_) => text(StatusCode::BAD_REQUEST, "redirect_uri cannot be sent back"),
    }
}

fn login_page(state: &State, request_id: &str) -> Response<Body> {
    let buttons: String = state
        .opts
        .users
        .iter()
        .map(|u| {
            format!(
                "<li><button name=\"sub\" value=\"{}\">{} &lt;{}&gt;{}</button></li>\n",
                escape_html(&u.sub),
                escape_html(&u.name),
                escape_html(&u.email),
                if u.email_verified {
                    ""
                } else {
                    " (email not verified)"
                }
            )
        })
        .collect();
    let page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Demo identity provider</title></head>\n\
         <body><h1>Demo identity provider</h1><p>Sign in as:</p>\n\
         <form method=\"post\" action=\"/login\"><input type=\"hidden\" name=\"request\" value=\"{}\">\n\
         <ul>\n{buttons}</ul></form></body></html>\n",
        escape_html(request_id)
    );
    let mut response = Response::new(full(page));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

// === token endpoint ===

async fn token(
    state: &State,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Response<Body> {
    let (client_auth, secret_ok) = match authenticate_client(state, headers, form) {
        Ok(auth) => auth,
        Err(e) => return e.into_response(),
    };
    let mut seen = TokenRequestSeen {
        client_auth,
        had_code_verifier: form.contains_key("code_verifier"),
        pkce_ok: false,
    };
    let outcome = token_grant(state, form, secret_ok, &mut seen).await;
    state.inner().token_requests.push(seen);
    outcome.unwrap_or_else(OAuthError::into_response)
}

async fn token_grant(
    state: &State,
    form: &HashMap<String, String>,
    client_ok: bool,
    seen: &mut TokenRequestSeen,
) -> Result<Response<Body>, OAuthError> {
    if !client_ok {
        return Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        ));
    }
    if state.inner().misbehaviour == Misbehaviour::TokenEndpointError {
        return Err(invalid_grant(
            "the demo identity provider was told to refuse this request",
        ));
    }
    let get = |name: &str| form.get(name).map(String::as_str);
    match get("grant_type") {
        Some("authorization_code") => {
            let grant = get("code").and_then(|code| state.inner().codes.remove(code));
            let Some(grant) = grant.filter(|g| g.issued_at + CODE_LIFETIME > now_unix()) else {
                return Err(invalid_grant("the code is unknown, used or expired"));
            };
            if get("redirect_uri") != Some(grant.request.redirect_uri.as_str()) {
                return Err(invalid_grant(
                    "redirect_uri differs from the authorization request",
                ));
            }
            // RFC 7636 §4.6: BASE64URL(SHA256(code_verifier)) == code_challenge.
            let verifier = get("code_verifier").unwrap_or("");
            let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            seen.pkce_ok = bool::from(
                challenge
                    .as_bytes()
                    .ct_eq(grant.request.code_challenge.as_bytes()),
            );
            if !seen.pkce_ok {
                return Err(invalid_grant("PKCE verification failed"));
            }
            issue_tokens(state, &grant.sub, Some(&grant.request.nonce), true).await
        }
        Some("refresh_token") => {
            let sub =
                get("refresh_token").and_then(|t| state.inner().refresh_tokens.get(t).cloned());
            let Some(sub) = sub else {
                return Err(invalid_grant("the refresh token is unknown"));
            };
            issue_tokens(state, &sub, None, false).await
        }
        _ => Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "use authorization_code or refresh_token",
        )),
    }
}

/// RFC 6749 §2.3.1: HTTP Basic (form-encoded id and secret) or the request body, never both;
/// no secret at all only for a public client. Returns the method and whether it succeeded.
fn authenticate_client(
    state: &State,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<(&'static str, bool), OAuthError> {
    let basic = match headers.get(AUTHORIZATION) {
        Some(value) => Some(parse_basic(value).ok_or_else(|| {
            oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "malformed Basic authorization",
            )
        })?),
        None => None,
    };
    let (method, client_id, secret) = match (basic, form.get("client_secret")) {
        (Some(_), Some(_)) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "use one client authentication method",
            ));
        }
        (Some((id, secret)), None) => ("basic", Some(id), Some(secret)),
        (None, Some(secret)) => ("post", form.get("client_id").cloned(), Some(secret.clone())),
        (None, None) => ("none", form.get("client_id").cloned(), None),
    };
    let id_ok = client_id.as_deref() == Some(state.opts.client_id.as_str());
    let secret_ok = match (&state.opts.client_secret, &secret) {
        (Some(expected), Some(given)) => bool::from(expected.as_bytes().ct_eq(given.as_bytes())),
        (None, None) => true,
        _ => false,
    };
    Ok((method, id_ok && secret_ok))
}

fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let form_decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .ok()
            .map(|s| s.into_owned())
    };
    Some((form_decode(id)?, form_decode(secret)?))
}

async fn issue_tokens(
    state: &State,
    sub: &str,
    nonce: Option<&str>,
    new_refresh_token: bool,
) -> Result<Response<Body>, OAuthError> {
    let Some(user) = state.user(sub) else {
        return Err(invalid_grant("the user no longer exists"));
    };
    let (misbehaviour, key_index) = {
        let inner = state.inner();
        (inner.misbehaviour, inner.key_index)
    };
    let id_token = sign_id_token(state, user, nonce, misbehaviour, key_index)
        .await
        .map_err(|e| oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &e))?;
    let access_token = random_token();
    let refresh_token = new_refresh_token.then(random_token);
    let userinfo_sub = match misbehaviour {
        Misbehaviour::UserinfoSubMismatch => format!("not-{sub}"),
        _ => sub.to_owned(),
    };
    let mut inner = state.inner();
    let now = now_unix();
    inner.access_tokens.retain(|_, g| g.expires_at > now);
    inner.access_tokens.insert(
        access_token.clone(),
        AccessGrant {
            sub: sub.to_owned(),
            userinfo_sub,
            expires_at: now + ACCESS_TOKEN_LIFETIME,
        },
    );
    if let Some(refresh) = &refresh_token {
        inner.refresh_tokens.insert(refresh.clone(), sub.to_owned());
    }
    drop(inner);
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_LIFETIME,
        "id_token": id_token,
        "scope": "openid email profile groups",
    });
    if let Some(refresh) = refresh_token {
        body["refresh_token"] = Value::String(refresh);
    }
    let mut response = json_response(StatusCode::OK, body);
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

async fn sign_id_token(
    state: &State,
    user: &DemoUser,
    nonce: Option<&str>,
    misbehaviour: Misbehaviour,
    key_index: usize,
) -> Result<String, String> {
    use Misbehaviour as M;
    let now = now_unix();
    let client_id = state.opts.client_id.as_str();
    let (iat, exp) = match misbehaviour {
        M::Expired => (now - 2 * ID_TOKEN_LIFETIME, now - ID_TOKEN_LIFETIME),
        M::IssuedInFuture => (now + 3600, now + 3600 + ID_TOKEN_LIFETIME),
        _ => (now, now + ID_TOKEN_LIFETIME),
    };
    let mut claims = json!({
        "iss": if misbehaviour == M::WrongIssuer { "https://evil.example" } else { state.issuer.as_str() },
        "sub": user.sub,
        "aud": client_id,
        "azp": client_id,
        "iat": iat,
        "exp": exp,
        "auth_time": now,
        "email": user.email,
        "email_verified": user.email_verified,
        "name": user.name,
        "preferred_username": user.preferred_username,
        "groups": user.groups,
    });
    match misbehaviour {
        M::WrongAudience => {
            claims["aud"] = json!("someone-else");
            claims["azp"] = json!("someone-else");
        }
        M::ExtraAudienceWithoutAzp => {
            claims["aud"] = json!([client_id, "someone-else"]);
            claims.as_object_mut().map(|c| c.remove("azp"));
        }
        _ => {}
    }
    match (misbehaviour, nonce) {
        (M::MissingNonce, _) | (_, None) => {}
        (M::WrongNonce, Some(_)) => claims["nonce"] = json!("not-the-nonce"),
        (_, Some(nonce)) => claims["nonce"] = json!(nonce),
    }

    let current = pool_key(key_index).await?;
    let sign = |kid: &str, key: &EncodingKey, alg: Algorithm| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &claims, key).map_err(|e| e.to_string())
    };
    match misbehaviour {
        M::AlgNone => {
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
            Ok(format!(
                "{header}.{}.",
                URL_SAFE_NO_PAD.encode(claims.to_string())
            ))
        }
        M::AlgHs256WithPublicKey => sign(
            &current.kid,
            &EncodingKey::from_secret(current.public_pem.as_bytes()),
            Algorithm::HS256,
        ),
        M::BadSignature => sign(
            &current.kid,
            &pool_key(key_index + 1).await?.encoding,
            Algorithm::RS256,
        ),
        M::UnknownKid => {
            let next = pool_key(key_index + 1).await?;
            sign(&next.kid, &next.encoding, Algorithm::RS256)
        }
        _ => sign(&current.kid, &current.encoding, Algorithm::RS256),
    }
}

// === userinfo ===

fn userinfo(state: &State, headers: &HeaderMap) -> Response<Body> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let grant = token.and_then(|t| {
        let inner = state.inner();
        inner
            .access_tokens
            .get(t)
            .filter(|g| g.expires_at > now_unix())
            .map(|g| (g.sub.clone(), g.userinfo_sub.clone()))
    });
    let Some(user) = grant.as_ref().and_then(|(sub, _)| state.user(sub)) else {
        let mut response = oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "unknown or expired access token",
        )
        .into_response();
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        return response;
    };
    let userinfo_sub = grant.map(|(_, s)| s).unwrap_or_default();
    json_response(
        StatusCode::OK,
        json!({
            "sub": userinfo_sub,
            "email": user.email,
            "email_verified": user.email_verified,
            "name": user.name,
            "preferred_username": user.preferred_username,
            "groups": user.groups,
        }),
    )
}

// === helpers ===

/// The form body, or `None` when it is larger than [`MAX_FORM`] or unreadable.
async fn read_form(req: Request<Incoming>) -> Option<HashMap<String, String>> {
    let body: Bytes = Limited::new(req.into_body(), MAX_FORM)
        .collect()
        .await
        .ok()?
        .to_bytes();
    Some(url::form_urlencoded::parse(&body).into_owned().collect())
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An RFC 6749 §5.2 error response.
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    fn into_response(self) -> Response<Body> {
        json_response(
            self.status,
            json!({ "error": self.error, "error_description": self.description }),
        )
    }
}

fn invalid_request(description: &str) -> OAuthError {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

fn invalid_grant(description: &str) -> OAuthError {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

fn oauth_error(status: StatusCode, error: &'static str, description: &str) -> OAuthError {
    OAuthError {
        status,
        error,
        description: description.to_owned(),
    }
}

fn json_response(status: StatusCode, body: Value) -> Response<Body> {
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(full(format!("{message}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::http::ProviderHttp;

    async fn call(request: http::Request<Vec<u8>>) -> (StatusCode, HeaderMap, String) {
        let response = ProviderHttp::new().unwrap().send(request).await.unwrap();
        let (parts, body) = response.into_parts();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    async fn get(url: &str) -> (StatusCode, HeaderMap, String) {
        call(Request::get(url).body(Vec::new()).unwrap()).await
    }

    async fn post_form(
        url: &str,
        form: &[(&str, &str)],
        basic: Option<&str>,
    ) -> (StatusCode, HeaderMap, String) {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request =
            Request::post(url).header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(credentials) = basic {
            request = request.header(
                AUTHORIZATION,
                format!("Basic {}", STANDARD.encode(credentials)),
            );
        }
        call(request.body(body.into_bytes()).unwrap()).await
    }

    fn authorize_url(idp: &DemoIdp, verifier: &str, extra: &[(&str, &str)]) -> String {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let mut url = idp.issuer().join("/authorize").unwrap();
        url.query_pairs_mut()
            .append_pair("client_id", "portcullis-demo")
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", "http://app.test/cb")
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "st<1>")
            .append_pair("nonce", "n1")
            .extend_pairs(extra);
        url.to_string()
    }

    fn code_from(headers: &HeaderMap) -> String {
        let location = Url::parse(headers[LOCATION].to_str().unwrap()).unwrap();
        assert_eq!(location.path(), "/cb");
        let query: HashMap<_, _> = location.query_pairs().into_owned().collect();
        assert_eq!(query["state"], "st<1>");
        query["code"].clone()
    }

    #[tokio::test]
    async fn authorize_requires_pkce_s256_state_nonce_and_the_known_client() {
        let idp = DemoIdp::start(IdpOptions::default()).await.unwrap();
        let good = authorize_url(&idp, "v", &[("login_hint", "ada")]);
        assert_eq!(get(&good).await.0, StatusCode::FOUND);
        for drop in [
            "code_challenge",
            "state",
            "nonce",
            "redirect_uri",
            "client_id",
        ] {
            let mut url = Url::parse(&good).unwrap();
            let kept: Vec<(String, String)> = url
                .query_pairs()
                .into_owned()
                .filter(|(k, _)| k != drop)
                .collect();
            url.query_pairs_mut().clear().extend_pairs(kept);
            assert_eq!(
                get(url.as_str()).await.0,
                StatusCode::BAD_REQUEST,
                "without {drop}"
            );
        }
        let plain = good.replace("code_challenge_method=S256", "code_challenge_method=plain");
        assert_eq!(get(&plain).await.0, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn login_page_lists_users_escaped_and_posting_one_returns_a_code() {
        let mut opts = IdpOptions::default();
        opts.users[0].name = "<script>x</script>".into();
        let idp = DemoIdp::start(opts).await.unwrap();
        let (status, _, page) = get(&authorize_url(&idp, "v", &[])).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("&lt;script&gt;") && !page.contains("<script>"));
        let start = page.find("name=\"request\" value=\"").unwrap() + 22;
        let request_id = &page[start..start + page[start..].find('"').unwrap()];
        let login = idp.issuer().join("/login").unwrap();
        let (status, headers, _) = post_form(
            login.as_str(),
            &[("request", request_id), ("sub", "grace")],
            None,
        )
        .await;
        assert_eq!(status, StatusCode::FOUND);
        code_from(&headers);
        let (status, _, _) = post_form(
            login.as_str(),
            &[("request", request_id), ("sub", "grace")],
            None,
        )
        .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "a pending request is single-use"
        );
    }

    #[tokio::test]
    async fn token_endpoint_checks_the_secret_and_refresh_tokens_work() {
        let idp = DemoIdp::start(IdpOptions::default()).await.unwrap();
        let token_url = idp.issuer().join("/token").unwrap();
        let (_, headers, _) = get(&authorize_url(&idp, "verifier", &[("login_hint", "ada")])).await;
        let code = code_from(&headers);
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "http://app.test/cb"),
            ("code_verifier", "verifier"),
        ];
        let (status, _, body) =
            post_form(token_url.as_str(), &form, Some("portcullis-demo:wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("invalid_client"));
        let (status, _, body) = post_form(
            token_url.as_str(),
            &form,
            Some("portcullis-demo:demo-secret"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let tokens: Value = serde_json::from_str(&body).unwrap();
        let refresh = tokens["refresh_token"].as_str().unwrap();
        let refresh_form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
        let (status, _, body) = post_form(
            token_url.as_str(),
            &refresh_form,
            Some("portcullis-demo:demo-secret"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let refreshed: Value = serde_json::from_str(&body).unwrap();
        assert_ne!(refreshed["access_token"], tokens["access_token"]);
        assert!(refreshed["id_token"].is_string());
    }

    #[tokio::test]
    async fn userinfo_needs_a_valid_bearer_token() {
        let idp = DemoIdp::start(IdpOptions::default()).await.unwrap();
        let request = Request::get(idp.issuer().join("/userinfo").unwrap().as_str())
            .header(AUTHORIZATION, "Bearer nope")
            .body(Vec::new())
            .unwrap();
        let (status, headers, _) = call(request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(headers.contains_key(WWW_AUTHENTICATE));
    }

    #[tokio::test]
    async fn discovery_publishes_the_exact_issuer_and_jwks_only_the_current_key() {
        let idp = DemoIdp::start(IdpOptions::default()).await.unwrap();
        let issuer = format!("http://{}", idp.addr());
        let (_, _, body) = get(&format!("{issuer}/.well-known/openid-configuration")).await;
        let metadata: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(metadata["issuer"], issuer);
        let kid =
            |body: &str| serde_json::from_str::<Value>(body).unwrap()["keys"][0]["kid"].clone();
        let before = kid(&get(&format!("{issuer}/jwks")).await.2);
        idp.rotate_key();
        let (_, _, after) = get(&format!("{issuer}/jwks")).await;
        assert_ne!(kid(&after), before);
        assert_eq!(
            serde_json::from_str::<Value>(&after).unwrap()["keys"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(idp.jwks_fetches(), 2);
    }
}
