//! portcullis' own endpoints under `/oauth2/` (DESIGN §3).

mod callback;
mod forward_auth;
mod sign_in;
mod sign_out;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::respond::{self, Problem, Source};
use crate::server::ConnInfo;
use crate::{App, Body};

pub async fn handle(app: &App, req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
    let html = respond::wants_html(req.method(), req.headers());
    let path = req
        .uri()
        .path()
        .strip_prefix("/oauth2")
        .unwrap_or_default()
        .to_owned();
    let method = req.method().clone();
    let get = method == Method::GET || method == Method::HEAD;
    match path.as_str() {
        "/healthz" if get => respond::text(StatusCode::OK, "OK"),
        "/readyz" if get => match app.providers.all_ready() {
            true => respond::text(StatusCode::OK, "ready"),
            false => respond::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "provider metadata not loaded yet",
            ),
        },
        "/sign_in" if get => sign_in::page(app, &req),
        "/sign_out" if get || method == Method::POST => sign_out::sign_out(app, &req),
        "/userinfo" if get => forward_auth::userinfo(app, &req),
        "/auth" if get => forward_auth::check(app, &req, &conn),
        p if p.starts_with("/start/") && get => sign_in::start(app, &req, &p["/start/".len()..]),
        p if p.starts_with("/callback/") && get => {
            callback::callback(app, &req, &p["/callback/".len()..]).await
        }
        "/healthz" | "/readyz" | "/sign_in" | "/sign_out" | "/userinfo" | "/auth" => {
            respond::problem(method_not_allowed(), html)
        }
        p if p.starts_with("/start/") || p.starts_with("/callback/") => {
            respond::problem(method_not_allowed(), html)
        }
        _ => respond::problem(
            Problem {
                status: StatusCode::NOT_FOUND,
                code: "not_found",
                title: "Not found",
                detail: "There is no such portcullis endpoint.".into(),
                source: Source::Client,
            },
            html,
        ),
    }
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

/// The first value of query parameter `name`.
fn query_param<B>(req: &Request<B>, name: &str) -> Option<String> {
    let query = req.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
