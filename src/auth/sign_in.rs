//! `GET /oauth2/sign_in` (the provider list) and `GET /oauth2/start/{provider}`.

use http::header::SET_COOKIE;
use http::{Request, Response, StatusCode};

use super::query_param;
use crate::pages::SignInButton;
use crate::respond::with_cookies;
use crate::respond::{self, Problem, Source};
use crate::session::Flow;
use crate::{App, Body, now_unix, pages};

pub async fn page<B>(app: &App, req: &Request<B>) -> Response<Body> {
    let rd = super::safe_rd(app, query_param(req, "rd").as_deref());
    // A stale or broken session cookie is cleared whenever the page renders
    // (when the session store can tell).
    let stale = match app.sessions.load(req.headers(), now_unix()).await {
        Ok(loaded) => loaded.clear,
        Err(_) => Vec::new(),
    };
    let providers: Vec<_> = app.providers.iter().collect();
    if app.config.sign_in.auto_redirect && providers.len() == 1 {
        return with_cookies(start(app, req, providers[0].id()), stale);
    }
    let buttons: Vec<SignInButton> = providers
        .iter()
        .map(|p| SignInButton {
            id: p.id(),
            display_name: p.display_name(),
            icon: p.icon(),
        })
        .collect();
    let page = pages::sign_in(&buttons, &rd, app.config.sign_in.template.as_deref());
    with_cookies(respond::html(StatusCode::OK, page), stale)
}

pub fn start<B>(app: &App, req: &Request<B>, provider_id: &str) -> Response<Body> {
    let html = respond::wants_html(req.method(), req.headers());
    let Some(provider) = app.providers.get(provider_id) else {
        return respond::problem(unknown_provider(), html);
    };
    let rd = super::safe_rd(app, query_param(req, "rd").as_deref());
    let redirect_uri = app.config.redirect_uri(provider.id());
    let (url, secrets) = match provider.begin(&redirect_uri) {
        Ok(begun) => begun,
        Err(e) => return respond::problem(Problem::from(e), html),
    };
    let flow = Flow {
        state: secrets.state,
        nonce: secrets.nonce,
        pkce_verifier: secrets.pkce_verifier,
        provider: provider.id().to_owned(),
        rd,
        created_at: now_unix(),
    };
    let mut resp = respond::redirect(url.as_str());
    resp.headers_mut()
        .append(SET_COOKIE, app.sessions.cookies.start_flow(&flow));
    with_cookies(resp, app.sessions.cookies.make_room_for_flow(req.headers()))
}

pub(super) fn unknown_provider() -> Problem {
    Problem {
        status: StatusCode::NOT_FOUND,
        code: "unknown_provider",
        title: "Unknown sign-in provider",
        detail: "No identity provider with that name is configured.".into(),
        source: Source::Client,
    }
}
