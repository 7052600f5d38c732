//! portcullis' own endpoints under `/oauth2/` (DESIGN §3).

mod backchannel;
mod callback;
mod forward_auth;
mod sign_in;

pub use backchannel::SeenLogoutTokens;
mod sign_out;

use http::header::ALLOW;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::respond::{self, Problem, Source};
use crate::server::ConnInfo;
use crate::{App, Body, RequestContext};

/// The endpoints of DESIGN §3, by path below `/oauth2`.
enum Endpoint<'a> {
    Healthz,
    Readyz,
    SignIn,
    SignOut,
    SignedOut,
    Userinfo,
    ForwardAuth,
    Jwks,
    Start(&'a str),
    Callback(&'a str),
    BackchannelLogout(&'a str),
}

impl<'a> Endpoint<'a> {
    fn route(path: &'a str) -> Option<Self> {
        Some(match path.strip_prefix("/oauth2")? {
            "/healthz" => Self::Healthz,
            "/readyz" => Self::Readyz,
            "/sign_in" => Self::SignIn,
            "/sign_out" => Self::SignOut,
            "/signed_out" => Self::SignedOut,
            "/userinfo" => Self::Userinfo,
            "/auth" => Self::ForwardAuth,
            "/jwks.json" => Self::Jwks,
            p => {
                if let Some(id) = p.strip_prefix("/start/") {
                    Self::Start(id)
                } else if let Some(id) = p.strip_prefix("/callback/") {
                    Self::Callback(id)
                } else if let Some(id) = p.strip_prefix("/backchannel_logout/") {
                    Self::BackchannelLogout(id)
                } else {
                    return None;
                }
            }
        })
    }

    /// Every endpoint answers GET and HEAD, sign-out also POST (a form);
    /// back-channel logout only POST (from the provider).
    fn allow(&self) -> &'static str {
        match self {
            Self::SignOut => "GET, HEAD, POST",
            Self::BackchannelLogout(_) => "POST",
            _ => "GET, HEAD",
        }
    }

    fn allows(&self, method: &Method) -> bool {
        match self {
            Self::BackchannelLogout(_) => method == Method::POST,
            Self::SignOut => [Method::GET, Method::HEAD, Method::POST].contains(method),
            _ => method == Method::GET || method == Method::HEAD,
        }
    }
}

pub async fn handle<'a>(
    app: &'a App,
    req: Request<Incoming>,
    conn: ConnInfo,
    ctx: &mut RequestContext<'a>,
) -> Response<Body> {
    let html = respond::wants_html(req.method(), req.headers());
    let Some(endpoint) = Endpoint::route(req.uri().path()) else {
        return respond::problem(Problem::not_found(), html);
    };
    if !endpoint.allows(req.method()) {
        let mut resp = respond::problem(method_not_allowed(), html);
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(endpoint.allow()));
        return resp;
    }
    match endpoint {
        Endpoint::Healthz => respond::text(StatusCode::OK, "OK"),
        Endpoint::Readyz => match (app.providers.all_ready(), app.sessions.is_up()) {
            (true, true) => respond::text(StatusCode::OK, "ready"),
            (false, _) => respond::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "provider metadata not loaded yet",
            ),
            (true, false) => respond::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "session store (Redis) unreachable",
            ),
        },
        Endpoint::SignIn => sign_in::page(app, &req).await,
        Endpoint::SignOut => sign_out::sign_out(app, &req).await,
        Endpoint::SignedOut => sign_out::signed_out(app, &req),
        Endpoint::Userinfo => forward_auth::userinfo(app, &req).await,
        Endpoint::ForwardAuth => forward_auth::check(app, &req, &conn, ctx).await,
        Endpoint::Jwks => jwks(app, html),
        Endpoint::Start(id) => sign_in::start(app, &req, id),
        // Boxed: the callback's future (code exchange, id_token check) is
        // large, and every request's future would otherwise be as large
        // (moved into place per request, and held per connection).
        Endpoint::Callback(id) => Box::pin(callback::callback(app, &req, &conn, id, ctx)).await,
        Endpoint::BackchannelLogout(id) => {
            let id = id.to_owned();
            Box::pin(backchannel::backchannel_logout(app, req, &id)).await
        }
    }
}

/// `GET /oauth2/jwks.json`: the keys that verify `X-Portcullis-Assertion`,
/// cacheable for a few minutes. 404 when no route sends one: an app told to
/// expect assertions learns at once that none will come.
fn jwks(app: &App, html: bool) -> Response<Body> {
    let Some(jwks) = app.routes.jwks() else {
        return respond::problem(
            Problem {
                detail: "No route sends a signed identity assertion (assertion = true in [upstream] or [[upstreams]]), so there are no keys to publish.".into(),
                ..Problem::not_found()
            },
            html,
        );
    };
    respond::json_bytes(StatusCode::OK, jwks.clone(), "public, max-age=300")
}

fn method_not_allowed() -> Problem {
    Problem {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        title: "Method not allowed",
        detail: "This endpoint does not accept that method.".into(),
        source: Source::Client,
    }
}

/// The one `rd` validator, for sign-in, the callback's final redirect,
/// forward-auth's redirect and sign-out: a path on this site, or a URL on a
/// host that [`crate::routes::Routes::sends_back_to`] admits (a route's host
/// that shares the session, or `[access] allowed_redirect_domains`); else `/`.
pub(crate) fn safe_rd(app: &App, rd: Option<&str>) -> String {
    crate::redirect::safe_rd_or_own_url(rd, |url| app.routes.sends_back_to(url))
}

/// The first value of query parameter `name`.
fn query_param<B>(req: &Request<B>, name: &str) -> Option<String> {
    let query = req.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests;
