//! The authorization endpoint: validates the request, then approves at once for a
//! known `login_hint` or shows a page of demo users whose buttons post to `/login`.
//! Approval issues a single-use code and redirects back to the client.

use std::collections::HashMap;

use http::header::{CACHE_CONTROL, LOCATION};
use http::{HeaderValue, Response, StatusCode};
use url::Url;

use super::responses::{random_token, text};
use super::{AuthRequest, CODE_LIFETIME, CodeGrant, ResponseIss, State};
use crate::demo::upstream::layout_page;
use crate::pages::{self, escape};
use crate::{Body, now_unix};

/// Requests waiting on the login page are forgotten after this many seconds.
const PENDING_LIFETIME: u64 = 600;
const LOGIN: &str = include_str!("login.html");

pub(super) fn authorize(state: &State, query: &str) -> Response<Body> {
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

pub(super) fn login(state: &State, form: &HashMap<String, String>) -> Response<Body> {
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

/// Issues a code and sends the browser back, with `iss` unless the provider omits it (RFC 9207).
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
        .append_pair("state", &request.state);
    if state.opts.response_iss != ResponseIss::Omitted {
        target
            .query_pairs_mut()
            .append_pair("iss", &state.issuer_for(sub));
    }
    let now = now_unix();
    // Each approval is a sign-in at the provider: a new IdP session and its sid.
    let sid = random_token();
    let mut inner = state.inner();
    inner.codes.retain(|_, g| g.issued_at + CODE_LIFETIME > now);
    inner.codes.insert(
        code,
        CodeGrant {
            request,
            sub: sub.to_owned(),
            sid: sid.clone(),
            issued_at: now,
        },
    );
    inner.sessions.insert(sid.clone(), sub.to_owned());
    inner.last_sid_of.insert(sub.to_owned(), sid.clone());
    inner.last_sid = Some(sid);
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
                "<button class=\"button\" name=\"sub\" value=\"{}\">{} &lt;{}&gt;{}</button>\n",
                escape(&u.sub),
                escape(&u.name),
                escape(&u.email),
                if u.email_verified {
                    ""
                } else {
                    " (email not verified)"
                }
            )
        })
        .collect();
    let main = pages::render(
        LOGIN,
        &[
            ("request", &escape(request_id)),
            ("users", buttons.trim_end()),
        ],
    );
    let mut response = layout_page("Demo identity provider", &main);
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
