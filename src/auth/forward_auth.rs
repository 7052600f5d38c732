//! `GET /oauth2/auth` (forward-auth for nginx `auth_request`, Traefik
//! `forwardAuth`, Caddy `forward_auth`) and `GET /oauth2/userinfo`.

use http::{HeaderMap, Method, Request, Response, StatusCode};
use serde_json::json;

use crate::headers::is_trusted;
use crate::policy::{Requirement, unambiguous_path};
use crate::proxy::{authenticate, set_identity_headers};
use crate::respond::with_cookies;
use crate::respond::{self, Problem};
use crate::server::ConnInfo;
use crate::{App, Body, empty};

/// 202 with the identity headers for the front proxy to copy upstream, or 401.
/// The original method and URI (for rule matching) are believed only from
/// `trusted_proxies` (DESIGN §8.4); otherwise the default rule applies.
pub fn check<B>(app: &App, req: &Request<B>, conn: &ConnInfo) -> Response<Body> {
    // Canonical, so an IPv4 proxy reaching a dual-stack listener still matches.
    let trusted = is_trusted(conn.peer_ip.ip(), &app.config.server.trusted_proxies);
    let target = match trusted.then(|| original_target(req.headers())) {
        // The front proxy may pass such a path on unresolved: refused, as the
        // proxy path refuses it (`policy::unambiguous_path`).
        Some(None) => {
            return respond::problem(
                Problem::forbidden("The original URI has `.` or `..` segments."),
                false,
            );
        }
        Some(Some(target)) => Some(target),
        None => None,
    };
    let requirement = match &target {
        Some((method, path)) => app.policy.requirement(method, path),
        None => Requirement::SignedIn {
            groups: &[],
            api: true,
        },
    };
    let authn = authenticate(app, req.headers());
    let resp = match (&authn.session, requirement) {
        (None, Requirement::Public) => accepted(),
        (None, Requirement::SignedIn { .. }) => respond::unauthenticated(false, ""),
        (Some(session), _) => match app.policy.authorize(&session.identity, requirement) {
            Ok(()) => {
                let mut resp = accepted();
                set_identity_headers(app, resp.headers_mut(), session);
                resp
            }
            Err(_) if requirement == Requirement::Public => accepted(),
            Err(denied) => respond::problem(Problem::from(denied), false),
        },
    };
    with_cookies(resp, authn.set_cookies)
}

fn accepted() -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::ACCEPTED;
    resp
}

/// nginx sends `X-Original-URI` / `X-Original-Method`; Traefik and Caddy send
/// `X-Forwarded-Uri` / `X-Forwarded-Method`.
/// `None` when the URI's path has dot segments.
fn original_target(headers: &HeaderMap) -> Option<(Method, String)> {
    let pick = |names: [&str; 2]| names.iter().find_map(|n| headers.get(*n)?.to_str().ok());
    let method = pick(["x-forwarded-method", "x-original-method"])
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .unwrap_or(Method::GET);
    let uri = pick(["x-forwarded-uri", "x-original-uri"]).unwrap_or("/");
    let path = uri.split(['?', '#']).next().unwrap_or("/");
    Some((method, unambiguous_path(path)?))
}

/// JSON of the current identity; 401 without a session.
pub fn userinfo<B>(app: &App, req: &Request<B>) -> Response<Body> {
    let authn = authenticate(app, req.headers());
    let resp = match &authn.session {
        None => respond::unauthenticated(false, ""),
        Some(s) => {
            let id = &s.identity;
            respond::json(
                StatusCode::OK,
                &json!({
                    "sub": id.sub,
                    "email": id.email,
                    "email_verified": id.email_verified,
                    "name": id.name,
                    "preferred_username": id.preferred_username,
                    "groups": id.groups,
                    "provider": s.provider,
                    "expires_at": s.expires_at,
                }),
            )
        }
    };
    with_cookies(resp, authn.set_cookies)
}
