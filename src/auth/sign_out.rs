//! `GET|POST /oauth2/sign_out?rd=`: ends the session locally.

use http::{Request, Response, StatusCode};

use super::query_param;
use crate::redirect::safe_rd;
use crate::respond::with_cookies;
use crate::{App, Body, pages, respond};

pub fn sign_out<B>(app: &App, req: &Request<B>) -> Response<Body> {
    let mut cookies = app.sessions.clear(req.headers());
    cookies.extend(app.sessions.clear_flows(req.headers()));
    let resp = match query_param(req, "rd") {
        Some(rd) => respond::redirect(&safe_rd(Some(&rd))),
        None => respond::html(StatusCode::OK, pages::signed_out()),
    };
    with_cookies(resp, cookies)
}
