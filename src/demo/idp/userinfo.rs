//! The userinfo endpoint: the user behind a bearer access token, with the `sub`
//! the token endpoint decided on (which differs under `UserinfoSubMismatch`),
//! and the user's extra claims.

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use serde_json::json;

use super::responses::{json_response, oauth_error};
use super::{ClaimPlace, State};
use crate::{Body, now_unix};

pub(super) fn userinfo(state: &State, headers: &HeaderMap) -> Response<Body> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let grant = token.and_then(|t| {
        let inner = state.inner();
        inner
            .access_tokens
            .get(t)
            .filter(|g| g.expires_at > now_unix())
            .map(|g| (g.sub.clone(), g.userinfo_sub.clone()))
    });
    let Some(user) = grant.as_ref().and_then(|(sub, _)| state.user(sub)) else {
        let mut response = oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "unknown or expired access token",
        )
        .into_response();
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        return response;
    };
    let userinfo_sub = grant.map(|(_, s)| s).unwrap_or_default();
    let mut claims = json!({
        "sub": userinfo_sub,
        "email": user.email,
        "email_verified": user.email_verified,
        "name": user.name,
        "preferred_username": user.preferred_username,
        "groups": user.groups,
    });
    state.apply_extra_claims(&user.sub, ClaimPlace::Userinfo, &mut claims);
    json_response(StatusCode::OK, claims)
}
