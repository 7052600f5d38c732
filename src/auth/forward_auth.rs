//! `GET /oauth2/auth` (forward-auth for nginx `auth_request`, Traefik
//! `forwardAuth`, Caddy `forward_auth`) and `GET /oauth2/userinfo`.

use std::net::IpAddr;
use std::sync::LazyLock;

use http::{HeaderMap, Method, Request, Response, StatusCode};
use serde_json::json;

use crate::authn::{Admission, admit, authenticate, set_identity_headers};
use crate::headers::is_trusted;
use crate::policy::{Admits, Requirement, is_preflight};
use crate::respond::with_cookies;
use crate::respond::{self, Problem};
use crate::routes::{Route, request_host};
use crate::server::ConnInfo;
use crate::{App, Body, RequestContext, empty};

/// 202 with the identity headers for the front proxy to copy upstream, or 401.
/// The original method, URI and host (for choosing the route and matching its
/// rules) are believed only from `trusted_proxies` (DESIGN §8.4); otherwise
/// the default rule applies, with the identity headers of the route that
/// takes this request's own `Host` at `/`.
///
/// For a browser navigation (the original method GET or HEAD, `Accept:
/// text/html`), when asked with `?redirect=1` or when a trusted proxy names
/// the original request with `X-Forwarded-Proto`, `-Host` and `-Uri` (Traefik
/// `forwardAuth`, Caddy `forward_auth`, which pass a non-2xx answer on to the
/// browser), "sign in first" is a 302 to `<public_url>/oauth2/sign_in` with
/// the original URL as `rd` instead of the 401 nginx's `auth_request` needs.
pub async fn check<B>(
    app: &App,
    req: &Request<B>,
    conn: &ConnInfo,
    ctx: &mut RequestContext<'_>,
) -> Response<Body> {
    // Canonical, so an IPv4 proxy reaching a dual-stack listener still matches.
    let trusted = is_trusted(conn.peer_ip.ip(), &app.config.server.trusted_proxies);
    if !trusted && warning_due(&UNTRUSTED_SENDERS, req.headers(), conn.peer_ip.ip()) {
        tracing::warn!(
            peer = %conn.peer_ip.ip(),
            "forward-auth: X-Original-URI / X-Forwarded-Uri from a peer not in \
             server.trusted_proxies is ignored, so its requests are judged by the default \
             rule (signed in) and not by [[rules]]; if this peer is your front proxy, add \
             its address to server.trusted_proxies (logged once per peer)"
        );
    }
    let original = trusted.then(|| original_target(req.headers()));
    // The route of the original request: its host as the trusted proxy says
    // (X-Forwarded-Host, else the Host it passed on), its path as judged below.
    let host = match trusted {
        true => match single(req.headers(), "x-forwarded-host") {
            Ok(Some(host)) => Some(host),
            Ok(None) => request_host(req.headers(), req.uri()),
            Err(why) => return respond::problem(Problem::forbidden(why), false),
        },
        false => request_host(req.headers(), req.uri()),
    };
    let path = match &original {
        Some(Original::Target { path, .. }) => path,
        _ => "/",
    };
    let method = match &original {
        Some(Original::Target { method, .. }) => method,
        _ => req.method(),
    };
    let redirects = respond::wants_html(method, req.headers())
        && (super::query_param(req, "redirect").as_deref() == Some("1")
            || (trusted
                && ["x-forwarded-proto", "x-forwarded-host", "x-forwarded-uri"]
                    .iter()
                    .all(|name| req.headers().contains_key(*name))));
    let route = match app.routes.route(host, path) {
        Ok(Some(route)) => route,
        Ok(None) => {
            return respond::problem(
                Problem::forbidden("No application behind portcullis takes this host and path."),
                false,
            );
        }
        Err(refused) => {
            return respond::problem(
                Problem::forbidden(format!("The original URI is refused: {refused}")),
                false,
            );
        }
    };
    let requirement = match original {
        Some(Original::Target {
            ref method, path, ..
        }) => match judge(route, method, path, host, req.headers()) {
            Ok(requirement) => requirement,
            Err(why) => return respond::problem(Problem::forbidden(why), false),
        },
        // The default rule; a 401 unless `redirects` asks for the sign-in page.
        Some(Original::NotSaid) | None => Requirement::SignedIn {
            admits: Admits::default(),
            api: false,
        },
        Some(Original::Refused(why)) => {
            return respond::problem(Problem::forbidden(why), false);
        }
    };
    let mut authn = match authenticate(app, req.headers()).await {
        Ok(authn) => authn,
        Err(unavailable) => return respond::problem(Problem::from(unavailable), false),
    };
    let set_cookies = std::mem::take(&mut authn.set_cookies);
    let resp = match admit(&route.policy, &authn, &requirement) {
        Admission::Anonymous => accepted(),
        Admission::User(session) => {
            ctx.session = authn.session.clone();
            let mut resp = accepted();
            set_identity_headers(app, route, resp.headers_mut(), session);
            resp
        }
        Admission::Denied(denied) => {
            if let Some(opened) = &authn.session {
                let s = &opened.session;
                tracing::info!(target: crate::log::AUDIT, provider = %s.provider, sub = s.identity.sub.as_str(), reason = %denied, "forward-auth: access denied");
            }
            ctx.session = authn.session.clone();
            respond::problem(Problem::from(denied), redirects)
        }
        Admission::InvalidToken(reason) => respond::invalid_token(reason, false),
        Admission::SignInFirst { api } => {
            let uri = match &original {
                Some(Original::Target { uri, .. }) => Some(*uri),
                _ => None,
            };
            let sign_in = (redirects && !api).then(|| sign_in_location(app, req, host, uri));
            respond::unauthenticated(sign_in.is_some(), sign_in.as_deref().unwrap_or(""))
        }
    };
    with_cookies(resp, set_cookies)
}

/// `<public_url>/oauth2/sign_in?rd=<the original URL>`: the URL rebuilt from
/// what a trusted proxy said (`X-Forwarded-Proto`, else `public_url`'s
/// scheme; the host the route was chosen by; the original URI), kept only
/// when the one `rd` validator admits it, else `/`. A URL on `public_url`'s
/// own origin goes as its path. Without a trusted original URI: `/`.
fn sign_in_location<B>(
    app: &App,
    req: &Request<B>,
    host: Option<&str>,
    uri: Option<&str>,
) -> String {
    let public_url = &app.config.server.public_url;
    let rebuilt = uri.zip(host).and_then(|(uri, host)| {
        let scheme = match single(req.headers(), "x-forwarded-proto") {
            Ok(Some(proto)) if proto.eq_ignore_ascii_case("https") => "https",
            Ok(Some(proto)) if proto.eq_ignore_ascii_case("http") => "http",
            Ok(None) => public_url.scheme(),
            _ => return None,
        };
        if !uri.starts_with('/') {
            return None;
        }
        let url = url::Url::parse(&format!("{scheme}://{host}{uri}")).ok()?;
        if url.origin() == public_url.origin() {
            return Some(uri.to_owned());
        }
        let rd = super::safe_rd(app, Some(url.as_str()));
        if rd == "/" && first_time(&UNLISTED_HOSTS, url.host_str().unwrap_or_default()) {
            tracing::warn!(
                host = url.host_str().unwrap_or_default(),
                "forward-auth: after sign-in the browser cannot be sent back to this host, \
                 as it is not in access.allowed_redirect_domains (nor a route's host that \
                 gets the session cookie); it goes to / instead (logged once per host)"
            );
        }
        Some(rd)
    });
    app.routes
        .central_sign_in(rebuilt.as_deref().unwrap_or("/"))
}

/// Hosts already warned about not being an allowed `rd` target.
static UNLISTED_HOSTS: LazyLock<moka::sync::Cache<String, ()>> =
    LazyLock::new(|| moka::sync::Cache::new(1024));

fn first_time(warned: &moka::sync::Cache<String, ()>, host: &str) -> bool {
    warned.entry(host.to_owned()).or_insert(()).is_fresh()
}

/// The rules' verdict on the original path, which the front proxy passes on
/// as it is: a path it would forward with `//` is refused, not collapsed.
/// `host` and `headers`: of the original request, for rules' `host` and
/// `skip_preflight` (a front proxy passes the preflight's headers on).
fn judge<'a>(
    route: &'a Route,
    method: &Method,
    path: &str,
    host: Option<&str>,
    headers: &http::HeaderMap,
) -> Result<Requirement<'a>, String> {
    if path.contains("//") {
        return Err("The original URI has an empty segment (`//`).".into());
    }
    route
        .policy
        .judge_request(method, path, host, is_preflight(method, headers))
        .map_err(|refused| format!("The original URI is refused: {refused}"))
}

/// Peers already warned about sending original-request headers untrusted.
static UNTRUSTED_SENDERS: LazyLock<OncePerPeer> = LazyLock::new(|| OncePerPeer::new(1024));

/// Remembers peers, to say something once per peer: bounded (the least
/// recently seen are forgotten past `capacity`, and may be told again).
pub(crate) struct OncePerPeer(moka::sync::Cache<IpAddr, ()>);

impl OncePerPeer {
    pub(crate) fn new(capacity: u64) -> Self {
        Self(moka::sync::Cache::new(capacity))
    }

    /// True the first time `peer` is seen.
    pub(crate) fn first_time(&self, peer: IpAddr) -> bool {
        self.0.entry(peer).or_insert(()).is_fresh()
    }
}

/// Whether an untrusted `peer` sent an original URI, for the first time:
/// a `trusted_proxies` mistake otherwise turns every rule into the default
/// one without a word. Costs nothing when neither header is present.
fn warning_due(warned: &OncePerPeer, headers: &HeaderMap, peer: IpAddr) -> bool {
    (headers.contains_key("x-original-uri") || headers.contains_key("x-forwarded-uri"))
        && warned.first_time(peer)
}

fn accepted() -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::ACCEPTED;
    resp
}

/// What a trusted front proxy says the original request was.
enum Original<'h> {
    /// `uri` as the proxy sent it; `path`, its path (no query or fragment).
    Target {
        method: Method,
        uri: &'h str,
        path: &'h str,
    },
    /// No original URI at all: the default rule applies, as for anyone else.
    NotSaid,
    /// Said in a way that cannot be relied on: refused, never guessed, since
    /// a guess could pick a laxer rule than the request's own.
    Refused(&'static str),
}

/// nginx sends `X-Original-URI` / `X-Original-Method`; Traefik and Caddy send
/// `X-Forwarded-Uri` / `X-Forwarded-Method`. The front proxy passes the
/// client's own headers along too, so a client can add the family its proxy
/// does not set: when both families are present they must agree.
fn original_target(headers: &HeaderMap) -> Original<'_> {
    let family = |uri: &str, method: &str| Ok((single(headers, uri)?, single(headers, method)?));
    let said = family("x-forwarded-uri", "x-forwarded-method")
        .and_then(|forwarded| Ok((forwarded, family("x-original-uri", "x-original-method")?)));
    let (forwarded, original) = match said {
        Ok(both) => both,
        Err(why) => return Original::Refused(why),
    };
    let (uri, method) = match (forwarded, original) {
        ((None, None), (None, None)) => return Original::NotSaid,
        ((None, None), said) | (said, (None, None)) => said,
        (a, b) if a == b => a,
        _ => {
            return Original::Refused(
                "X-Forwarded-Uri/-Method and X-Original-URI/-Method name different requests.",
            );
        }
    };
    let (Some(uri), Some(method)) = (uri, method) else {
        tracing::warn!(
            "a trusted proxy sent the original URI without its method (or the method alone); \
             send both, e.g. nginx: proxy_set_header X-Original-Method $request_method;"
        );
        return Original::Refused("The original request needs both its URI and its method.");
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Original::Refused("The original method is not an HTTP method.");
    };
    let path = uri.split(['?', '#']).next().unwrap_or("/");
    Original::Target { method, uri, path }
}

/// The one value of `name`, if sent; more than one, or one that is not
/// visible ASCII, cannot be relied on.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, &'static str> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => value
            .to_str()
            .map(Some)
            .map_err(|_| "An original-request header is not readable text."),
        (Some(_), Some(_)) => Err("An original-request header was sent more than once."),
    }
}

/// JSON of the current identity; 401 without a session.
pub async fn userinfo<B>(app: &App, req: &Request<B>) -> Response<Body> {
    let authn = match authenticate(app, req.headers()).await {
        Ok(authn) => authn,
        Err(unavailable) => return respond::problem(Problem::from(unavailable), false),
    };
    let resp = match &authn.session {
        None => match authn.refused_token {
            Some(reason) => respond::invalid_token(reason, false),
            None => respond::unauthenticated(false, ""),
        },
        Some(opened) => {
            let s = &opened.session;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, http::HeaderValue::from_static("/admin/x"));
        headers
    }

    #[test]
    fn an_untrusted_original_uri_is_warned_about_once_per_peer() {
        let warned = OncePerPeer::new(16);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(
            !warning_due(&warned, &HeaderMap::new(), a),
            "no header, no warning"
        );
        assert!(warning_due(&warned, &with("x-original-uri"), a));
        assert!(!warning_due(&warned, &with("x-original-uri"), a));
        assert!(!warning_due(&warned, &with("x-forwarded-uri"), a));
        assert!(warning_due(&warned, &with("x-forwarded-uri"), b));
        assert!(!warning_due(&warned, &with("x-original-uri"), b));
    }

    #[test]
    fn the_peers_remembered_are_bounded() {
        let warned = OncePerPeer::new(16);
        for i in 0..=255u8 {
            for j in 0..=3u8 {
                warned.first_time(IpAddr::from([10, 1, j, i]));
            }
        }
        warned.0.run_pending_tasks();
        assert!(warned.0.entry_count() <= 16, "{}", warned.0.entry_count());
    }
}

#[cfg(test)]
mod proptests;
