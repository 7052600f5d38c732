//! The login hook (`[hooks] on_login`, DESIGN §6): after the provider's
//! identity is verified and before the policy and the session, portcullis
//! POSTs the identity to the app, which may refuse the sign-in or add claims
//! and groups to the identity. Asked again at each token refresh only with
//! `hooks.on_refresh`; never on the request path.
//!
//! Each call is signed (`X-Portcullis-Signature: t=<unix seconds>,v1=<hex
//! HMAC-SHA256(secret, "<t>.<body>")>`), bounded by `hooks.timeout` and
//! [`MAX_ANSWER`]. Only a 2xx with a JSON object of the right shape is an
//! answer; anything else is a failure, which `hooks.on_error` turns into a
//! refusal (the default) or a sign-in without additions.

use std::net::IpAddr;
use std::path::Path;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::header::{CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderMap, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::config::{CaBundle, HookTarget, LoginHookConfig, OnHookError};
use crate::identity::{Added, Identity};
use crate::metrics::{HookResult, Metrics};
use crate::provider::http::{HttpFailure, ProviderHttp, read_limited};
use crate::respond::{Problem, Source};

/// Largest answer read from the hook.
pub const MAX_ANSWER: usize = 64 * 1024;
/// Longest `message` shown on the refusal page, in characters.
pub const MAX_MESSAGE: usize = 500;
/// Largest value of one added claim, as JSON.
pub const MAX_CLAIM_VALUE: usize = 4096;
/// Longest added claim name and group name, in bytes.
const MAX_NAME: usize = 256;
/// Longest `user_agent` sent to the hook, in characters.
const MAX_USER_AGENT: usize = 512;
/// Claims the hook cannot add: the token's own, and those the identity
/// holds in fields of their own (groups are added with `groups`).
const RESERVED_CLAIMS: [&str; 12] = [
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "nbf",
    "email",
    "email_verified",
    "name",
    "preferred_username",
    "groups",
    "provider",
];
const SIGNATURE_HEADER: &str = "x-portcullis-signature";
const REQUEST_ID_HEADER: &str = "x-request-id";

/// The login hook of one configuration.
pub struct LoginHook {
    config: LoginHookConfig,
    http: ProviderHttp,
}

/// When the hook is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookEvent {
    SignIn,
    Refresh,
}

/// What the hook is told: the provider's verified identity and claims, and
/// the request they came with.
pub struct HookCall<'a> {
    pub event: HookEvent,
    pub provider: &'a str,
    pub identity: &'a Identity,
    /// The verified claims (id_token merged with userinfo).
    pub claims: &'a Map<String, Value>,
    /// The client's address; unknown at refresh.
    pub ip: Option<IpAddr>,
    /// The request's headers: `User-Agent` and `X-Request-Id` are passed on.
    pub headers: &'a HeaderMap,
}

/// What the sign-in (or refresh) goes on with.
pub enum Judged {
    /// Let in, with these additions.
    Admit(Added),
    /// The hook failed and `on_error = "allow"`: let in without new additions.
    Unanswered,
    /// The hook said no: this page.
    Denied(Problem),
    /// The hook failed and `on_error = "deny"`: this page.
    Failed(Problem),
}

/// Why a call to the hook gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{0}")]
    Call(HttpFailure),
    #[error("answered {0}")]
    Status(StatusCode),
    #[error("the answer is not a JSON object of the expected shape: {0}")]
    Shape(String),
}

/// The hook's answer as written. Other keys are ignored.
#[derive(Deserialize)]
struct Answer {
    allow: bool,
    #[serde(default)]
    claims: Map<String, Value>,
    #[serde(default)]
    groups: Vec<String>,
    status: Option<u16>,
    message: Option<String>,
}

/// A valid answer.
enum Verdict {
    Allow(Added),
    Deny { status: StatusCode, message: String },
}

impl LoginHook {
    /// The hook `config` names; https hooks trust `extra_ca` too.
    pub fn new(
        config: &LoginHookConfig,
        extra_ca: Option<&CaBundle>,
    ) -> Result<Self, rustls::Error> {
        Ok(Self {
            config: config.clone(),
            http: ProviderHttp::new(extra_ca)?,
        })
    }

    pub fn on_refresh(&self) -> bool {
        self.config.on_refresh
    }

    /// Asks the hook about `call`, counts and logs its answer, and applies
    /// `hooks.on_error` to a failure.
    pub async fn judge(&self, call: &HookCall<'_>, metrics: &Metrics) -> Judged {
        let sub = call.identity.sub.as_str();
        let provider = call.provider;
        match self.ask(call).await {
            Ok(Verdict::Allow(added)) => {
                metrics.login_hook(HookResult::Allowed);
                Judged::Admit(added)
            }
            Ok(Verdict::Deny { status, message }) => {
                metrics.login_hook(HookResult::Denied);
                tracing::info!(target: crate::log::AUDIT, provider, sub, status = status.as_u16(), message = message.as_str(), "sign-in refused by the login hook");
                Judged::Denied(Problem {
                    status,
                    code: "access_denied",
                    title: "Access denied",
                    detail: message,
                    source: Source::Client,
                })
            }
            Err(error) => {
                metrics.login_hook(HookResult::Error);
                match self.config.on_error {
                    OnHookError::Deny => {
                        tracing::warn!(target: crate::log::AUDIT, provider, sub, "hook failed: {error}");
                        Judged::Failed(Problem {
                            status: StatusCode::SERVICE_UNAVAILABLE,
                            code: "hook_failed",
                            title: "Sign-in could not be completed",
                            detail: "The sign-in could not be completed: the application did not confirm it. Please try again in a moment.".into(),
                            source: Source::Upstream,
                        })
                    }
                    OnHookError::Allow => {
                        tracing::warn!(target: crate::log::AUDIT, provider, sub, "hook failed: {error}; signing in without its additions (hooks.on_error = \"allow\")");
                        Judged::Unanswered
                    }
                }
            }
        }
    }

    async fn ask(&self, call: &HookCall<'_>) -> Result<Verdict, HookError> {
        let body = body(call);
        let timestamp = crate::now_unix();
        let signature = sign(self.config.secret.expose(), timestamp, &body);
        let mut request = http::Request::post(match &self.config.on_login {
            HookTarget::Http(url) => url.as_str(),
            HookTarget::Unix(_) => "/",
        })
        .header(CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature);
        if let HookTarget::Unix(_) = self.config.on_login {
            request = request.header(HOST, "localhost");
        }
        if let Some(id) = call.headers.get(REQUEST_ID_HEADER) {
            request = request.header(REQUEST_ID_HEADER, id);
        }
        let request = request
            .body(body)
            .map_err(|e| HookError::Call(HttpFailure::InvalidRequest(e.to_string())))?;
        let timeout = self.config.timeout;
        let response = match &self.config.on_login {
            HookTarget::Http(_) => self
                .http
                .send_within(request, timeout, MAX_ANSWER)
                .await
                .map_err(|e| HookError::Call(e.reason))?,
            HookTarget::Unix(path) => {
                match tokio::time::timeout(timeout, post_unix(path, request)).await {
                    Ok(answer) => answer.map_err(HookError::Call)?,
                    Err(_) => return Err(HookError::Call(HttpFailure::TimedOut(timeout))),
                }
            }
        };
        if !response.status().is_success() {
            return Err(HookError::Status(response.status()));
        }
        let answer: Answer = serde_json::from_slice(response.body())
            .map_err(|e| HookError::Shape(crate::provider::clip(&e.to_string())))?;
        verdict(answer).map_err(HookError::Shape)
    }
}

/// The JSON the hook is sent.
fn body(call: &HookCall<'_>) -> Vec<u8> {
    let identity = call.identity;
    let user_agent = call.headers.get(USER_AGENT).map(|ua| {
        String::from_utf8_lossy(ua.as_bytes())
            .chars()
            .take(MAX_USER_AGENT)
            .collect::<String>()
    });
    json!({
        "event": match call.event {
            HookEvent::SignIn => "sign_in",
            HookEvent::Refresh => "refresh",
        },
        "provider": call.provider,
        "sub": identity.sub,
        "email": identity.email,
        "email_verified": identity.email_verified,
        "name": identity.name,
        "preferred_username": identity.preferred_username,
        "groups": identity.groups,
        "claims": call.claims,
        "ip": call.ip.map(|ip| ip.to_string()),
        "user_agent": user_agent,
    })
    .to_string()
    .into_bytes()
}

/// `t=<timestamp>,v1=<lowercase hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn sign(secret: &str, timestamp: u64, body: &[u8]) -> String {
    use std::fmt::Write;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let mut header = format!("t={timestamp},v1=");
    for byte in mac.finalize().into_bytes() {
        let _ = write!(header, "{byte:02x}");
    }
    header
}

/// The checked answer: a refusal's status (any 4xx, else 403) and its
/// message made one short line; additions with names that are not reserved
/// and values of bounded size.
fn verdict(answer: Answer) -> Result<Verdict, String> {
    if !answer.allow {
        let status = answer
            .status
            .and_then(|s| StatusCode::from_u16(s).ok())
            .filter(StatusCode::is_client_error)
            .unwrap_or(StatusCode::FORBIDDEN);
        let message = answer
            .message
            .as_deref()
            .map(one_line)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "The application refused this sign-in.".to_owned());
        return Ok(Verdict::Deny { status, message });
    }
    for (name, value) in &answer.claims {
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(format!(
                "a claim name is empty or longer than {MAX_NAME} bytes"
            ));
        }
        if RESERVED_CLAIMS.contains(&name.as_str()) {
            return Err(format!("the claim {name:?} cannot be added"));
        }
        if value.to_string().len() > MAX_CLAIM_VALUE {
            return Err(format!(
                "the claim {name:?} is larger than {MAX_CLAIM_VALUE} bytes"
            ));
        }
    }
    if answer
        .groups
        .iter()
        .any(|g| g.is_empty() || g.len() > MAX_NAME)
    {
        return Err(format!("a group is empty or longer than {MAX_NAME} bytes"));
    }
    Ok(Verdict::Allow(Added {
        claims: answer.claims.into_iter().collect(),
        groups: answer.groups,
    }))
}

/// `text` without control characters, trimmed, at most [`MAX_MESSAGE`] characters.
fn one_line(text: &str) -> String {
    let line: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE)
        .collect();
    line.trim().to_owned()
}

/// POSTs `request` over the Unix socket at `path`; the answer is read up to
/// [`MAX_ANSWER`] bytes.
async fn post_unix(
    path: &Path,
    request: http::Request<Vec<u8>>,
) -> Result<http::Response<Vec<u8>>, HttpFailure> {
    let stream = tokio::net::UnixStream::connect(path)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => HttpFailure::ConnectionRefused,
            _ => HttpFailure::Connect(format!("{}: {e}", path.display())),
        })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| HttpFailure::Connect(crate::error_chain(&e)))?;
    // Driven until the answer is read; stopped when this call ends.
    let _connection = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(connection));
    let response = sender
        .send_request(request.map(|body| Full::new(Bytes::from(body))))
        .await
        .map_err(|e| HttpFailure::Request(crate::error_chain(&e)))?;
    read_limited(response, MAX_ANSWER).await
}
