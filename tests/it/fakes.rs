//! In-process fakes of the OAuth 2.0 providers that are not OpenID Connect
//! (GitHub, Facebook, a generic server with nested claims). Each answers in its
//! provider's real wire format (from its public documentation), records every
//! request it receives, and can be told to answer errors.
//!
//! The OpenID Connect presets use the demo identity provider instead
//! (`portcullis::demo::idp`), which has the options they need.

pub mod facebook;
pub mod github;
pub mod oauth2;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand::RngCore;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub type Reply = Response<Full<Bytes>>;

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn query_param(&self, name: &str) -> Option<&str> {
        find(&self.query, name)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Query parameters, then form-body parameters (Facebook takes either).
    pub fn params(&self) -> Vec<(String, String)> {
        let mut params = self.query.clone();
        let is_form = self
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            params.extend(url::form_urlencoded::parse(&self.body).into_owned());
        }
        params
    }

    /// The token of `Authorization: Bearer` (or GitHub's older `token`, Facebook's `OAuth`).
    pub fn bearer(&self) -> Option<&str> {
        let (scheme, token) = self.header("authorization")?.split_once(' ')?;
        ["bearer", "token", "oauth"]
            .iter()
            .any(|s| scheme.eq_ignore_ascii_case(s))
            .then(|| token.trim())
    }
}

pub fn find<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// A fake provider on `127.0.0.1:0`; dropping it stops it.
pub struct FakeServer {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Recorded>>>,
    task: JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    pub async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let task = tokio::spawn(accept(listener, handler, log.clone()));
        FakeServer { addr, log, task }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.log).clone()
    }

    /// The requests whose path ends with `suffix`.
    pub fn requests_to(&self, suffix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with(suffix))
            .collect()
    }
}

async fn accept(listener: TcpListener, handler: Arc<Handler>, log: Arc<Mutex<Vec<Recorded>>>) {
    while let Ok((stream, _)) = listener.accept().await {
        let handler = handler.clone();
        let log = log.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let handler = handler.clone();
                let log = log.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let recorded = Recorded {
                        method: parts.method,
                        path: parts.uri.path().to_owned(),
                        query: url::form_urlencoded::parse(
                            parts.uri.query().unwrap_or("").as_bytes(),
                        )
                        .into_owned()
                        .collect(),
                        headers: parts.headers,
                        body,
                    };
                    lock(&log).push(recorded.clone());
                    Ok::<_, Infallible>(handler(&recorded))
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// === replies ===

pub fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub fn json(status: StatusCode, body: Value) -> Reply {
    reply(status, "application/json; charset=utf-8", body.to_string())
}

pub fn text(status: StatusCode, body: &str) -> Reply {
    reply(status, "text/plain; charset=utf-8", body.to_owned())
}

pub fn redirect(location: &url::Url) -> Reply {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::FOUND;
    response
        .headers_mut()
        .insert(LOCATION, HeaderValue::try_from(location.as_str()).unwrap());
    response
}

pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

// === the authorization code grant, shared by every fake ===

/// Why a code could not be redeemed; each fake words it in its own format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    InvalidClient,
    BadCode,
    RedirectMismatch,
    PkceFailed,
}

#[derive(Debug, Clone)]
struct Grant {
    user: String,
    redirect_uri: String,
    code_challenge: String,
    scope: String,
}

/// A granted access token: whose, and with which scopes.
#[derive(Debug, Clone)]
pub struct AccessGrant {
    pub user: String,
    pub scope: String,
}

/// One client, a queue of users who approve the next authorization request,
/// codes (single-use, PKCE S256 required) and access tokens.
pub struct CodeFlow {
    pub client_id: String,
    pub client_secret: String,
    queue: Mutex<VecDeque<String>>,
    codes: Mutex<HashMap<String, Grant>>,
    tokens: Mutex<HashMap<String, AccessGrant>>,
    /// The next authorization request is denied by the user (`access_denied`).
    deny_next: Mutex<bool>,
}

/// What `/authorize` decided.
pub enum Authorized {
    /// Back to the client with a code (or, if denied, an error) and the state.
    Redirect(url::Url),
    /// A request the provider shows an error page for (never redirects).
    Refused(String),
}

impl CodeFlow {
    pub fn new(client_id: &str, client_secret: &str) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            queue: Mutex::new(VecDeque::new()),
            codes: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            deny_next: Mutex::new(false),
        }
    }

    /// The next authorization request is approved by this user.
    pub fn queue_user(&self, user: &str) {
        lock(&self.queue).push_back(user.into());
    }

    pub fn deny_next(&self) {
        *lock(&self.deny_next) = true;
    }

    /// Checks client_id, redirect_uri, state and PKCE S256, then lets the next queued
    /// user approve. `denied` holds the error parameters of a user's refusal.
    pub fn authorize(&self, params: &[(String, String)], denied: &[(&str, &str)]) -> Authorized {
        if find(params, "client_id") != Some(self.client_id.as_str()) {
            return Authorized::Refused("unknown client_id".into());
        }
        let Some(redirect_uri) = find(params, "redirect_uri") else {
            return Authorized::Refused("redirect_uri is missing".into());
        };
        let Ok(mut target) = url::Url::parse(redirect_uri) else {
            return Authorized::Refused("redirect_uri is not an absolute URL".into());
        };
        let Some(state) = find(params, "state") else {
            return Authorized::Refused("state is missing".into());
        };
        let Some(code_challenge) = find(params, "code_challenge") else {
            return Authorized::Refused("code_challenge is missing".into());
        };
        if find(params, "code_challenge_method") != Some("S256") {
            return Authorized::Refused("code_challenge_method must be S256".into());
        }
        if std::mem::take(&mut *lock(&self.deny_next)) {
            target
                .query_pairs_mut()
                .extend_pairs(denied)
                .append_pair("state", state);
            return Authorized::Redirect(target);
        }
        let Some(user) = lock(&self.queue).pop_front() else {
            return Authorized::Refused("no user is queued to approve".into());
        };
        let code = random_token("code/");
        lock(&self.codes).insert(
            code.clone(),
            Grant {
                user,
                redirect_uri: redirect_uri.into(),
                code_challenge: code_challenge.into(),
                scope: find(params, "scope").unwrap_or("").into(),
            },
        );
        target
            .query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", state);
        Authorized::Redirect(target)
    }

    /// Client authentication (`basic` from the header or `post` from `params`; which one
    /// is returned), then the code, its redirect_uri and the PKCE verifier (RFC 7636 §4.6).
    pub fn redeem(
        &self,
        req: &Recorded,
        params: &[(String, String)],
    ) -> Result<(&'static str, String, AccessGrant), TokenProblem> {
        let (method, client_id, secret) = match basic(req) {
            Some((id, secret)) => ("basic", Some(id), Some(secret)),
            None => (
                "post",
                find(params, "client_id").map(String::from),
                find(params, "client_secret").map(String::from),
            ),
        };
        let secret_ok = secret.is_some_and(|s| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                s.as_bytes(),
                self.client_secret.as_bytes(),
            ))
        });
        if client_id.as_deref() != Some(self.client_id.as_str()) || !secret_ok {
            return Err(TokenProblem::InvalidClient);
        }
        let grant = find(params, "code").and_then(|c| lock(&self.codes).remove(c));
        let Some(grant) = grant else {
            return Err(TokenProblem::BadCode);
        };
        if find(params, "redirect_uri") != Some(grant.redirect_uri.as_str()) {
            return Err(TokenProblem::RedirectMismatch);
        }
        let verifier = find(params, "code_verifier").unwrap_or("");
        if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != grant.code_challenge {
            return Err(TokenProblem::PkceFailed);
        }
        let token = random_token("tok_");
        let access = AccessGrant {
            user: grant.user,
            scope: grant.scope,
        };
        lock(&self.tokens).insert(token.clone(), access.clone());
        Ok((method, token, access))
    }

    pub fn access(&self, token: Option<&str>) -> Option<AccessGrant> {
        lock(&self.tokens).get(token?).cloned()
    }
}

/// RFC 6749 §2.3.1: id and secret form-encoded, then Basic.
fn basic(req: &Recorded) -> Option<(String, String)> {
    let value = req.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((decode(id)?, decode(secret)?))
}
