//! `GET|POST /oauth2/sign_out?rd=`: ends the session, here and at the provider.
//!
//! Unless another site sent the request (`<img src=".../oauth2/sign_out">`, a
//! cross-site form): then the user is asked first, with a button that posts
//! from portcullis' own page. Otherwise the session is ended for good (every
//! replica, with Redis), `?everywhere=1` ends every session of the user at
//! that provider, the provider's tokens are revoked (RFC 7009) where it can,
//! and with `idp_logout` the browser goes on to the provider's end-session
//! endpoint, which sends it back to `/oauth2/signed_out` with the `rd`.

use http::header::{ORIGIN, REFERER, REFERRER_POLICY};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use url::Url;

use super::query_param;
use crate::respond::with_cookies;
use crate::session::revocations::Revoke;
use crate::{App, Body, now_unix, pages, respond};

/// The associated data of the `state` sent to the provider's end-session endpoint.
const SIGNED_OUT_STATE: &str = "signed_out";
/// How long the provider may keep the browser before `/oauth2/signed_out`.
const SIGNED_OUT_STATE_LIFETIME: u64 = 3600;

/// What the end-session `state` carries back: the validated `rd`.
#[derive(Serialize, Deserialize)]
struct SignedOutState {
    rd: Option<String>,
    at: u64,
}

pub async fn sign_out<B>(app: &App, req: &Request<B>) -> Response<Body> {
    let rd = query_param(req, "rd").map(|rd| super::safe_rd(app, Some(&rd)));
    if sent_by_another_site(req.headers(), &app.config.server.public_url) {
        let mut resp = respond::html(StatusCode::OK, pages::confirm_sign_out(rd.as_deref()));
        // `no-referrer` would make the form's POST say `Origin: null`, which
        // browsers without `Sec-Fetch-Site` would have judged foreign again.
        resp.headers_mut()
            .insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        return resp;
    }
    let now = now_unix();
    // An unreachable store still lets the browser forget its cookies.
    let opened = match app.sessions.load(req.headers(), now).await {
        Ok(loaded) => loaded.session,
        Err(_) => None,
    };
    let session = opened.as_ref().map(|opened| &opened.session);
    if let Some(s) = session
        && query_param(req, "everywhere").as_deref() == Some("1")
    {
        let everywhere = Revoke::Sub {
            provider: &s.provider,
            sub: &s.identity.sub,
        };
        if let Err(e) = app.sessions.revoke(everywhere, now).await {
            tracing::warn!(error = %e, "sign-out everywhere: the other sessions could not be ended");
        }
    }
    let cookies = app.sessions.end(session, req.headers(), now).await;
    let provider = session.and_then(|s| Some((s, app.providers.get(&s.provider)?)));
    if let Some((s, provider)) = provider {
        tracing::info!(target: crate::log::AUDIT, provider = provider.id(), sub = s.identity.sub.as_str(), "signed out");
        provider.revoke(&s.tokens).await;
        let state = SignedOutState {
            rd: rd.clone(),
            at: now,
        };
        // A handful of strings: serialising cannot fail.
        let state = serde_json::to_vec(&state).expect("state serialises");
        let state = app.sessions.seal(SIGNED_OUT_STATE, &state);
        let back = app.config.post_logout_redirect_uri();
        if let Some(end_session) =
            provider.end_session_url(s.tokens.id_token.as_deref(), &back, &state)
        {
            return with_cookies(respond::redirect(end_session.as_str()), cookies);
        }
    }
    with_cookies(signed_out_or(rd), cookies)
}

/// `GET /oauth2/signed_out?state=`: where the provider's end-session endpoint
/// sends the browser back. Follows the `rd` the sign-out was asked with, else
/// shows the signed-out page; clears any portcullis cookie left.
pub fn signed_out<B>(app: &App, req: &Request<B>) -> Response<Body> {
    let now = now_unix();
    let rd = query_param(req, "state")
        .and_then(|sealed| app.sessions.open(SIGNED_OUT_STATE, &sealed))
        .and_then(|json| serde_json::from_slice::<SignedOutState>(&json).ok())
        .filter(|state| now.saturating_sub(state.at) <= SIGNED_OUT_STATE_LIFETIME)
        .and_then(|state| state.rd)
        // Checked when sealed; checked again, as every `rd` is.
        .map(|rd| super::safe_rd(app, Some(&rd)));
    let cookies = app.sessions.cookies.clear_all(req.headers());
    with_cookies(signed_out_or(rd), cookies)
}

fn signed_out_or(rd: Option<String>) -> Response<Body> {
    match rd {
        Some(rd) => respond::redirect(&rd),
        None => respond::html(StatusCode::OK, pages::signed_out()),
    }
}

/// What the browser says of the request's initiator: `Sec-Fetch-Site:
/// cross-site` (Fetch Metadata), or, from a browser that sends no
/// `Sec-Fetch-Site`, an `Origin` (else a `Referer`) that is not public_url's
/// origin (`Origin: null` included). A typed URL, a bookmark and same-site
/// pages are not another site; neither is a client that sends none of these.
fn sent_by_another_site(headers: &HeaderMap, public_url: &Url) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes().eq_ignore_ascii_case(b"cross-site");
    }
    let Some(initiator) = headers.get(ORIGIN).or_else(|| headers.get(REFERER)) else {
        return false;
    };
    let origin = initiator
        .to_str()
        .ok()
        .and_then(|value| Url::parse(value).ok())
        .map(|url| url.origin());
    origin != Some(public_url.origin())
}
