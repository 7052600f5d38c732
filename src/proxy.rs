//! The request phases for everything outside `/oauth2/` (DESIGN §1): choose the
//! route (`routes`), match its rule, authenticate, authorise, set its identity
//! headers, stream to its upstream.
//! Spoofed identity headers were already stripped by the dispatcher.

use http::{Request, Response, Uri};
use hyper::body::Incoming;

use crate::authn::{Admission, admit, authenticate, set_identity_headers};
use crate::metrics::Outcome;
use crate::policy::{PathRefused, collapse_slashes, is_preflight};
use crate::respond::{self, Problem};
use crate::server::ConnInfo;
use crate::upstream::UpstreamError;
use crate::{App, Body, RequestContext};

pub async fn handle(
    app: &App,
    mut req: Request<Incoming>,
    conn: ConnInfo,
    ctx: &mut RequestContext<'_>,
) -> Response<Body> {
    // Whether a refusal gets an HTML page: read only when one is made.
    let html = |req: &Request<Incoming>| respond::wants_html(req.method(), req.headers());
    let route = match app.routes.route_request(&req) {
        Ok(Some(route)) => route,
        // Only `[[upstreams]]`, and none takes this host and path.
        Ok(None) => return respond::problem(Problem::not_found(), html(&req)),
        Err(refused) => return respond::problem(Problem::from(refused), html(&req)),
    };
    let host = route
        .policy
        .reads_host()
        .then(|| crate::routes::request_host(req.headers(), req.uri()))
        .flatten();
    let preflight = is_preflight(req.method(), req.headers());
    let requirement =
        match route
            .policy
            .judge_request(req.method(), req.uri().path(), host, preflight)
        {
            Ok(requirement) => requirement,
            Err(refused) => return respond::problem(Problem::from(refused), html(&req)),
        };
    // The upstream gets the path as the rules judged it: `//public/x` could
    // be read as host `public`, path `/x`.
    if let Some(collapsed) = collapse_slashes(req.uri().path()) {
        match with_path(req.uri(), &collapsed) {
            Some(uri) => *req.uri_mut() = uri,
            None => return respond::problem(Problem::from(PathRefused::NotAbsolute), html(&req)),
        }
    }
    let mut authenticated = match authenticate(app, req.headers()).await {
        Ok(authenticated) => authenticated,
        Err(unavailable) => return respond::problem(Problem::from(unavailable), html(&req)),
    };
    let set_cookies = std::mem::take(&mut authenticated.set_cookies);
    let session = &authenticated.session;

    let admitted = match admit(&route.policy, &authenticated, &requirement) {
        Admission::Anonymous => None,
        Admission::User(opened) => {
            ctx.session = session.clone();
            Some(opened)
        }
        Admission::Denied(denied) => {
            if let Some(opened) = &session {
                let s = &opened.session;
                tracing::info!(target: crate::log::AUDIT, provider = %s.provider, sub = s.identity.sub.as_str(), path = req.uri().path(), reason = %denied, "access denied");
            }
            ctx.session = session.clone();
            let resp = match &session {
                Some(opened) => {
                    let rd = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    respond::denied(denied, &opened.session.identity, rd, html(&req))
                }
                None => respond::problem(Problem::from(denied), html(&req)),
            };
            return respond::with_cookies(resp, set_cookies);
        }
        Admission::InvalidToken(reason) => return respond::invalid_token(reason, html(&req)),
        Admission::SignInFirst { api } => {
            let browser = !api && html(&req);
            if browser {
                ctx.outcome = Some(Outcome::SignIn);
            }
            let resp = respond::unauthenticated(browser, &app.routes.sign_in_location(route, &req));
            return respond::with_cookies(resp, set_cookies);
        }
    };
    // Not held across the upstream's await, so not carried in every request's future.
    drop(requirement);

    // Before identity headers are added: see `prepare_request`.
    crate::upstream::prepare_request(&mut req);
    let headers = req.headers_mut();
    if app.routes.strips_client_authorization(route) {
        headers.remove(http::header::AUTHORIZATION);
    }
    // Before the identity headers: its strip of forwarding claims then has
    // fewer names to look at.
    let proto = if conn.tls { "https" } else { "http" };
    crate::headers::set_forwarded(
        headers,
        &conn.peer_ip,
        &app.config.server.trusted_proxies,
        proto,
    );
    if let Some(session) = admitted {
        set_identity_headers(app, route, headers, session);
    }
    app.sessions.cookies.strip_own_cookies(headers);

    // For the error page, should the upstream fail (the request is gone by
    // then): the method and the first `Accept` value.
    let accept = req.headers().get(http::header::ACCEPT).cloned();
    let method = req.method().clone();
    let sent = std::time::Instant::now();
    let resp = match route.upstream.forward(req).await {
        Ok(resp) => {
            ctx.upstream_time = Some(sent.elapsed());
            ctx.outcome = Some(Outcome::Proxied);
            resp
        }
        Err(e) => {
            ctx.outcome = match e {
                UpstreamError::Timeout(_) => Some(Outcome::UpstreamTimeout),
                UpstreamError::Unreachable(_)
                | UpstreamError::Protocol(_)
                | UpstreamError::Tls(_) => Some(Outcome::UpstreamError),
                // The client's doing (its body, its target): by the status.
                UpstreamError::ClientBody(_) | UpstreamError::InvalidTarget(_) => None,
            };
            let html = respond::accepts_html(&method, accept.iter());
            respond::problem(Problem::from(e), html)
        }
    };
    respond::with_cookies(resp, set_cookies)
}

/// `uri` with its path replaced (query, and any scheme and authority, kept).
fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().ok()?);
    Uri::from_parts(parts).ok()
}
