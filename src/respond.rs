//! The one place where an error becomes a status and a page or JSON
//! (DESIGN §7). Each concern keeps its own error enum; a `From<..> for Problem`
//! here decides what the client sees, and [`problem`] renders it.

use http::header::{CONTENT_TYPE, LOCATION, SET_COOKIE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::identity::IdentityError;
use crate::policy::{Denied, PathRefused};
use crate::provider::ProviderError;
use crate::session::{FlowError, Unavailable};
use crate::upstream::{ClientBodyError, UpstreamError};
use crate::{Body, full, pages};

/// Who failed, which decides how loudly it is logged: a client's mistake is
/// routine, anything else is the operator's to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Client,
    Upstream,
    Provider,
    Internal,
}

/// An error as the client will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: StatusCode,
    /// The JSON `error` code, e.g. `upstream_unavailable`.
    pub code: &'static str,
    /// The page heading.
    pub title: &'static str,
    /// Safe to show: no tokens, secrets or internal addresses. Escaped when rendered.
    pub detail: String,
    pub source: Source,
}

impl Problem {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Bad request",
            detail,
            Source::Client,
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "access_denied",
            "Access denied",
            detail,
            Source::Client,
        )
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Not found",
            "There is nothing here.",
            Source::Client,
        )
    }

    pub fn bad_gateway(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "upstream_unavailable",
            "Upstream unavailable",
            detail,
            Source::Upstream,
        )
    }

    pub fn gateway_timeout(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            "Upstream timed out",
            detail,
            Source::Upstream,
        )
    }

    /// The sign-in provider failed or answered something unusable.
    pub fn provider(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "provider_error",
            "Sign-in failed",
            detail,
            Source::Provider,
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong",
            "portcullis could not handle this request.",
            Source::Internal,
        )
    }

    fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
        source: Source,
    ) -> Self {
        Self {
            status,
            code,
            title,
            detail: detail.into(),
            source,
        }
    }
}

impl From<UpstreamError> for Problem {
    fn from(error: UpstreamError) -> Self {
        match error {
            UpstreamError::Unreachable(_) => {
                Self::bad_gateway("The application behind portcullis cannot be reached.")
            }
            UpstreamError::Protocol(_) => {
                Self::bad_gateway("The application behind portcullis gave no usable answer.")
            }
            UpstreamError::Tls(reason) => Self::bad_gateway(format!(
                "The application's TLS connection was refused ({reason}); check upstream.ca_file, tls_server_name and the client certificate."
            )),
            UpstreamError::ClientBody(ClientBodyError::Unreadable(_)) => {
                Self::bad_request("The request body is malformed or was cut short.")
            }
            UpstreamError::ClientBody(ClientBodyError::Stalled(after)) => Self::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "Request timed out",
                format!(
                    "The request body stalled: less than 1 KiB arrived in {}.",
                    humantime::format_duration(after)
                ),
                Source::Client,
            ),
            UpstreamError::InvalidTarget(why) => {
                Self::bad_request(format!("This request cannot be forwarded: {why}."))
            }
            UpstreamError::Timeout(after) => Self::gateway_timeout(format!(
                "The application behind portcullis did not answer within {}.",
                humantime::format_duration(after)
            )),
        }
    }
}

impl From<Unavailable> for Problem {
    fn from(_: Unavailable) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "session_store_unavailable",
            "Sessions are unavailable",
            "portcullis cannot reach its session store right now. Please try again in a moment.",
            Source::Internal,
        )
    }
}

impl From<crate::authn::AuthnError> for Problem {
    fn from(e: crate::authn::AuthnError) -> Self {
        match e {
            crate::authn::AuthnError::Store(e) => e.into(),
            crate::authn::AuthnError::Provider(why) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "token_check_unavailable",
                "The access token cannot be checked",
                format!(
                    "portcullis cannot check the access token with the identity provider right now ({}). Please try again in a moment.",
                    crate::provider::clip(&why)
                ),
                Source::Provider,
            ),
        }
    }
}

impl From<PathRefused> for Problem {
    fn from(refused: PathRefused) -> Self {
        Self::bad_request(refused.to_string())
    }
}

impl From<Denied> for Problem {
    fn from(denied: Denied) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Access denied",
            denied.to_string(),
            Source::Client,
        )
    }
}

impl From<FlowError> for Problem {
    fn from(error: FlowError) -> Self {
        let detail = match error {
            FlowError::Expired => "This sign-in took too long. Please sign in again.",
            FlowError::Replayed => "This sign-in link was already used. Please sign in again.",
            FlowError::Missing | FlowError::Invalid | FlowError::StateMismatch => {
                "This sign-in cannot be matched to one started in this browser. Please sign in again."
            }
        };
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_callback",
            "Sign-in could not be completed",
            detail,
            Source::Client,
        )
    }
}

impl From<ProviderError> for Problem {
    fn from(error: ProviderError) -> Self {
        match error {
            ProviderError::NotReady { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "provider_not_ready",
                "Sign-in is not available yet",
                "The identity provider's configuration has not been loaded yet. Try again in a moment.",
                Source::Provider,
            ),
            ProviderError::Unreachable { .. }
            | ProviderError::Userinfo { .. }
            | ProviderError::InvalidTokenResponse(_) => Self::provider(
                "The identity provider could not be reached or gave an unusable answer.",
            ),
            ProviderError::TokenRejected { error, description } => Self::new(
                StatusCode::BAD_REQUEST,
                "sign_in_failed",
                "Sign-in failed",
                match description {
                    Some(said) => format!(
                        "The identity provider refused the sign-in code ({error}: {said}). Please sign in again."
                    ),
                    None => format!(
                        "The identity provider refused the sign-in code ({error}). Please sign in again."
                    ),
                },
                Source::Client,
            ),
            ProviderError::InvalidIdToken(_)
            | ProviderError::UserinfoSubMismatch
            | ProviderError::IssuerMismatch => Self::new(
                StatusCode::UNAUTHORIZED,
                "sign_in_failed",
                "Sign-in failed",
                "The identity provider's answer could not be verified.",
                Source::Provider,
            ),
            ProviderError::NotPermitted(reason) => Self::forbidden(reason),
            ProviderError::ApiError { provider, message } => Self::provider(format!(
                "{provider} refused to describe the signed-in user: {message}"
            )),
            ProviderError::InvalidProfile(_) => {
                Self::provider("The identity provider's description of the user is unusable.")
            }
            ProviderError::Graph { .. } => Self::provider(
                "You are in more groups than Microsoft puts in a sign-in token, and they could not be read from Microsoft Graph. Ask the administrator to grant this application the GroupMember.Read.All permission.",
            ),
        }
    }
}

impl From<IdentityError> for Problem {
    fn from(error: IdentityError) -> Self {
        Self::provider(error.to_string())
    }
}

/// DESIGN §1: a browser navigation is a GET or HEAD whose `Accept` lists
/// `text/html` (with a non-zero quality). Everything else is an API client.
pub fn wants_html(method: &Method, headers: &HeaderMap) -> bool {
    accepts_html(method, headers.get_all(http::header::ACCEPT).iter())
}

/// [`wants_html`] from the method and the `Accept` values.
pub fn accepts_html<'a>(method: &Method, accept: impl Iterator<Item = &'a HeaderValue>) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && accept
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(accepts_media_range_html)
}

/// One `Accept` member: `text/html` or `text/html;q=0.8` yes, `text/html;q=0` no.
fn accepts_media_range_html(member: &str) -> bool {
    let mut parts = member.split(';').map(str::trim);
    let is_html = parts
        .next()
        .is_some_and(|range| range.eq_ignore_ascii_case("text/html"));
    let refused = parts.any(|param| {
        param.split_once('=').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("q") && v.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
        })
    });
    is_html && !refused
}

/// Renders `p` as an HTML page for a browser or as
/// `{"error": code, "error_description": detail}`, and logs it.
pub fn problem(p: Problem, html: bool) -> Response<Body> {
    match p.source {
        Source::Client => {
            tracing::debug!(status = p.status.as_u16(), code = p.code, detail = %p.detail, "request refused")
        }
        source => {
            tracing::warn!(status = p.status.as_u16(), code = p.code, ?source, detail = %p.detail, "request failed")
        }
    }
    if html {
        // `html` adds the security headers.
        return self::html(p.status, pages::error(p.status, p.title, &p.detail));
    }
    let mut response = json(
        p.status,
        &serde_json::json!({ "error": p.code, "error_description": p.detail }),
    );
    pages::security_headers(response.headers_mut());
    response
}

/// A signed-in user the policy refuses: for a browser, the 403 page naming
/// the account (`email`, else `name`, else `preferred_username`, else `sub`)
/// with a way to sign in with another one, back to `rd`; for an API client,
/// the JSON error as for any [`Problem`].
pub fn denied(
    denied: Denied,
    identity: &crate::identity::Identity,
    rd: &str,
    html: bool,
) -> Response<Body> {
    let p = Problem::from(denied);
    if !html {
        return problem(p, false);
    }
    tracing::debug!(status = p.status.as_u16(), code = p.code, detail = %p.detail, "request refused");
    let who = identity
        .email
        .as_deref()
        .or(identity.name.as_deref())
        .or(identity.preferred_username.as_deref())
        .unwrap_or(&identity.sub);
    self::html(p.status, pages::denied(p.title, &p.detail, who, rd))
}

/// Not signed in. A browser is sent to `sign_in_location`; an API client gets
/// `401` with a `WWW-Authenticate` challenge (RFC 9110 §11.6.1 requires one on
/// every 401; RFC 6750 §3 gives the Bearer form).
pub fn unauthenticated(html: bool, sign_in_location: &str) -> Response<Body> {
    if html {
        return redirect(sign_in_location);
    }
    let mut response = json(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({
            "error": "unauthenticated",
            "error_description": "sign in at /oauth2/sign_in",
        }),
    );
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Bearer realm="portcullis""#),
    );
    response
}

/// A bearer token that is not valid here (RFC 6750 §3.1 `invalid_token`):
/// `401` with the challenge saying so, and never a redirect to sign in, even
/// for a browser. `reason` names the rule broken, never the token.
pub fn invalid_token(reason: &'static str, html: bool) -> Response<Body> {
    let mut response = problem(
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "Invalid access token",
            reason,
            Source::Client,
        ),
        html,
    );
    let challenge = format!(
        r#"Bearer realm="portcullis", error="invalid_token", error_description="{}""#,
        reason.replace(['"', '\\'], "'")
    );
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::try_from(challenge).unwrap_or(HeaderValue::from_static(
            r#"Bearer realm="portcullis", error="invalid_token""#,
        )),
    );
    response
}

/// Bytes that cannot stand in a `Location` value as they are: controls, space
/// and (always, by `utf8_percent_encode`) non-ASCII.
const LOCATION_UNSAFE: &AsciiSet = &CONTROLS.add(b' ');

/// `302 Found` to `location`, never cached (it may carry a flow's state).
pub fn redirect(location: &str) -> Response<Body> {
    let encoded = utf8_percent_encode(location, LOCATION_UNSAFE).to_string();
    let Ok(location) = HeaderValue::try_from(encoded) else {
        return problem(Problem::internal(), false);
    };
    let mut response = Response::new(crate::empty());
    *response.status_mut() = StatusCode::FOUND;
    response.headers_mut().insert(LOCATION, location);
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    response
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    json_bytes(status, value.to_string(), "no-store")
}

/// JSON already serialised, with its `Cache-Control`.
pub fn json_bytes(
    status: StatusCode,
    json: impl Into<bytes::Bytes>,
    cache_control: &'static str,
) -> Response<Body> {
    let mut response = Response::new(full(json));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    headers.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

pub fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    pages::security_headers(response.headers_mut());
    response
}

/// `resp` carrying `set_cookies` (a cleared or refreshed session, a flow cookie).
pub fn with_cookies(mut resp: Response<Body>, set_cookies: Vec<HeaderValue>) -> Response<Body> {
    for c in set_cookies {
        resp.headers_mut().append(SET_COOKIE, c);
    }
    resp
}

/// A short plain-text answer (health endpoints).
pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    response
}

#[cfg(test)]
mod tests;
