//! The revocation endpoint (RFC 7009): client authentication as at `/token`,
//! then `token` is forgotten whether it is a refresh or an access token.
//! Unknown tokens are answered `200` too (§2.2). Each call is recorded.

use std::collections::HashMap;

use http::{HeaderMap, Response, StatusCode};

use super::responses::{invalid_request, oauth_error};
use super::token_endpoint::authenticate_client;
use super::{RevocationSeen, State};
use crate::Body;

pub(super) fn revoke(
    state: &State,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Response<Body> {
    let (client_auth, client_ok) = match authenticate_client(state, headers, form) {
        Ok(auth) => auth,
        Err(e) => return e.into_response(),
    };
    let token_type_hint = form.get("token_type_hint").cloned();
    let Some(token) = form.get("token").filter(|t| !t.is_empty()) else {
        return invalid_request("token is missing").into_response();
    };
    let mut inner = state.inner();
    let known = client_ok
        && (inner.refresh_tokens.remove(token).is_some()
            || inner.access_tokens.remove(token).is_some());
    inner.revocation_requests.push(RevocationSeen {
        client_auth,
        client_ok,
        token_type_hint,
        known,
    });
    if !client_ok {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        )
        .into_response();
    }
    inner.revoked.push(token.clone());
    drop(inner);
    let mut response = Response::new(crate::empty());
    *response.status_mut() = StatusCode::OK;
    response
}
