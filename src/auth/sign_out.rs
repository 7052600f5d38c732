//! `GET|POST /oauth2/sign_out?rd=`: ends the session (on every replica, with
//! Redis), and with `?everywhere=1` every session of the user at that
//! provider; unless another site sent the request (`<img
//! src=".../oauth2/sign_out">`, a cross-site form): then the user is asked
//! first, with a button that posts from portcullis' own page.

use http::header::{ORIGIN, REFERER, REFERRER_POLICY};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use url::Url;

use super::query_param;
use crate::redirect::safe_rd;
use crate::respond::with_cookies;
use crate::session::revocations::Revoke;
use crate::{App, Body, pages, respond};

pub async fn sign_out<B>(app: &App, req: &Request<B>) -> Response<Body> {
    let rd = query_param(req, "rd").map(|rd| safe_rd(Some(&rd)));
    if sent_by_another_site(req.headers(), &app.config.server.public_url) {
        let mut resp = respond::html(StatusCode::OK, pages::confirm_sign_out(rd.as_deref()));
        // `no-referrer` would make the form's POST say `Origin: null`, which
        // browsers without `Sec-Fetch-Site` would have judged foreign again.
        resp.headers_mut()
            .insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        return resp;
    }
    let now = crate::now_unix();
    // An unreachable store still lets the browser forget its cookies.
    let session = match app.sessions.load(req.headers(), now).await {
        Ok(loaded) => loaded.session,
        Err(_) => None,
    };
    let session = session.as_ref().map(|opened| &opened.session);
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
    let resp = match rd {
        Some(rd) => respond::redirect(&rd),
        None => respond::html(StatusCode::OK, pages::signed_out()),
    };
    with_cookies(resp, cookies)
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
