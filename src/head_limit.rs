//! `server.max_header_bytes`, enforced per request rather than by hyper: a head
//! pushed over it by portcullis' own cookies (sign-ins piling up, a large
//! session) gets a 431 that deletes them, so the browser's next request fits
//! again instead of every request, sign-in and sign-out included, failing until
//! the cookies expire. hyper reads heads up to [`hard_cap`] and refuses larger
//! ones itself.

use http::header::CONNECTION;
use http::{HeaderValue, Request, Response, StatusCode, Version};

use crate::respond::{self, Problem, Source, with_cookies};
use crate::{App, Body};

/// What hyper reads beyond `server.max_header_bytes`, room for portcullis' own
/// cookies: a session of the most chunks it writes (10 of at most 4000 bytes)
/// and the flow cookies of many sign-ins besides.
pub const OWN_COOKIES_ROOM: usize = 64 * 1024;

/// The largest head hyper reads (HTTP/1.1 read buffer, HTTP/2 header list).
pub fn hard_cap(max_header_bytes: usize) -> usize {
    max_header_bytes.saturating_add(OWN_COOKIES_ROOM)
}

/// The request head as HTTP/1.1 writes it: the request line, each header as
/// `name: value` and CRLF, and the blank line. HTTP/2 heads count the same.
pub fn head_len<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    req.headers().iter().fold(line + 2, |len, (name, value)| {
        len + name.as_str().len() + value.len() + 4
    })
}

/// `None` for a head within `server.max_header_bytes`; else a 431, which
/// deletes portcullis' flow cookies when that brings the head within the
/// limit, else all its cookies when that does, else nothing.
pub fn refuse_oversized<B>(app: &App, req: &Request<B>) -> Option<Response<Body>> {
    let limit = app.config.server.max_header_bytes;
    let len = head_len(req);
    if len <= limit {
        return None;
    }
    let headers = req.headers();
    let (flows, session) = app.sessions.cookies.own_cookie_bytes(headers);
    let without_flows = len.saturating_sub(flows);
    let (deletions, detail) = if without_flows <= limit {
        (
            app.sessions.cookies.clear_flows(headers),
            "This browser had too many sign-ins in progress. They have been cleared: reload the page.",
        )
    } else if without_flows.saturating_sub(session) <= limit {
        (
            app.sessions.cookies.clear_all(headers),
            "This browser's sign-in cookies had grown too large. They have been cleared: reload the page and sign in again.",
        )
    } else {
        (
            Vec::new(),
            "The request's headers are larger than this server accepts.",
        )
    };
    let problem = Problem {
        status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        code: "request_header_fields_too_large",
        title: "Request headers too large",
        detail: detail.into(),
        source: Source::Client,
    };
    let html = respond::wants_html(req.method(), headers);
    let mut resp = with_cookies(respond::problem(problem, html), deletions);
    // As hyper does past its own cap: nothing more is read on this connection.
    if req.version() < Version::HTTP_2 {
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Some(resp)
}
