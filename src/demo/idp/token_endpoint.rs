//! The token endpoint: client authentication (Basic, post or none), the
//! authorization code grant with PKCE, refresh tokens (rotated or not), and the
//! token response. Each call is recorded as a [`TokenRequestSeen`].

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::header::{AUTHORIZATION, CACHE_CONTROL};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::id_token::sign_id_token;
use super::responses::text;
use super::responses::{OAuthError, invalid_grant, json_response, oauth_error, random_token};
use super::{AccessGrant, CODE_LIFETIME, Misbehaviour, RefreshGrant, State, TokenRequestSeen};
use crate::{Body, now_unix};

pub(super) async fn token(
    state: &State,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Response<Body> {
    let (client_auth, secret_ok) = match authenticate_client(state, headers, form) {
        Ok(auth) => auth,
        Err(e) => return e.into_response(),
    };
    let mut seen = TokenRequestSeen {
        client_auth,
        had_code_verifier: form.contains_key("code_verifier"),
        pkce_ok: false,
        grant_type: form.get("grant_type").cloned().unwrap_or_default(),
    };
    if state.inner().misbehaviour == Misbehaviour::TokenEndpointUnavailable {
        state.inner().token_requests.push(seen);
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "<html><body>503 Service Unavailable</body></html>",
        );
    }
    let outcome = token_grant(state, form, secret_ok, &mut seen).await;
    state.inner().token_requests.push(seen);
    outcome.unwrap_or_else(OAuthError::into_response)
}

async fn token_grant(
    state: &State,
    form: &HashMap<String, String>,
    client_ok: bool,
    seen: &mut TokenRequestSeen,
) -> Result<Response<Body>, OAuthError> {
    if !client_ok {
        return Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        ));
    }
    if state.inner().misbehaviour == Misbehaviour::TokenEndpointError {
        return Err(invalid_grant(
            "the demo identity provider was told to refuse this request",
        ));
    }
    let get = |name: &str| form.get(name).map(String::as_str);
    match get("grant_type") {
        Some("authorization_code") => {
            let grant = get("code").and_then(|code| state.inner().codes.remove(code));
            let Some(grant) = grant.filter(|g| g.issued_at + CODE_LIFETIME > now_unix()) else {
                return Err(invalid_grant("the code is unknown, used or expired"));
            };
            if get("redirect_uri") != Some(grant.request.redirect_uri.as_str()) {
                return Err(invalid_grant(
                    "redirect_uri differs from the authorization request",
                ));
            }
            // RFC 7636 §4.6: BASE64URL(SHA256(code_verifier)) == code_challenge.
            let verifier = get("code_verifier").unwrap_or("");
            let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            seen.pkce_ok = bool::from(
                challenge
                    .as_bytes()
                    .ct_eq(grant.request.code_challenge.as_bytes()),
            );
            if !seen.pkce_ok {
                return Err(invalid_grant("PKCE verification failed"));
            }
            let nonce = grant.request.nonce;
            let grant = RefreshGrant {
                sub: grant.sub,
                sid: grant.sid,
            };
            issue_tokens(state, &grant, Some(&nonce), true).await
        }
        Some("refresh_token") => {
            let token = get("refresh_token").unwrap_or("");
            let grant = state.inner().refresh_tokens.get(token).cloned();
            let Some(grant) = grant else {
                return Err(invalid_grant(
                    "the refresh token is unknown, revoked or used",
                ));
            };
            let rotate = state.opts.rotate_refresh_tokens;
            if rotate {
                state.inner().refresh_tokens.remove(token);
            }
            issue_tokens(state, &grant, None, rotate).await
        }
        _ => Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "use authorization_code or refresh_token",
        )),
    }
}

/// RFC 6749 §2.3.1: HTTP Basic (form-encoded id and secret) or the request body, never both;
/// no secret at all only for a public client; only the methods the provider accepts.
/// Returns the method and whether it succeeded.
pub(super) fn authenticate_client(
    state: &State,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<(&'static str, bool), OAuthError> {
    let basic = match headers.get(AUTHORIZATION) {
        Some(value) => Some(parse_basic(value).ok_or_else(|| {
            oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "malformed Basic authorization",
            )
        })?),
        None => None,
    };
    let (method, client_id, secret) = match (basic, form.get("client_secret")) {
        (Some(_), Some(_)) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "use one client authentication method",
            ));
        }
        (Some((id, secret)), None) => ("basic", Some(id), Some(secret)),
        (None, Some(secret)) => ("post", form.get("client_id").cloned(), Some(secret.clone())),
        (None, None) => ("none", form.get("client_id").cloned(), None),
    };
    let method_name = match method {
        "basic" => "client_secret_basic",
        "post" => "client_secret_post",
        _ => "none",
    };
    if !state
        .opts
        .token_auth_methods
        .iter()
        .any(|m| m == method_name)
    {
        return Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            &format!("this provider does not accept {method_name}"),
        ));
    }
    let id_ok = client_id.as_deref() == Some(state.opts.client_id.as_str());
    let secret_ok = match (&state.opts.client_secret, &secret) {
        (Some(expected), Some(given)) => bool::from(expected.as_bytes().ct_eq(given.as_bytes())),
        (None, None) => true,
        _ => false,
    };
    Ok((method, id_ok && secret_ok))
}

fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let form_decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .ok()
            .map(|s| s.into_owned())
    };
    Some((form_decode(id)?, form_decode(secret)?))
}

/// Answers an access token, an id_token (unless this is a refresh and the
/// provider sends none), and a new refresh token when `new_refresh_token`.
async fn issue_tokens(
    state: &State,
    grant: &RefreshGrant,
    nonce: Option<&str>,
    new_refresh_token: bool,
) -> Result<Response<Body>, OAuthError> {
    let sub = grant.sub.as_str();
    let Some(user) = state.user(sub) else {
        return Err(invalid_grant("the user no longer exists"));
    };
    let (misbehaviour, key_index) = {
        let inner = state.inner();
        (inner.misbehaviour, inner.key_index)
    };
    let refreshing = nonce.is_none();
    let id_token_user = match misbehaviour {
        Misbehaviour::RefreshedIdTokenForAnotherUser if refreshing => {
            let users = &state.opts.users;
            let at = users.iter().position(|u| u.sub == sub).unwrap_or(0);
            &users[(at + 1) % users.len()]
        }
        _ => user,
    };
    let id_token = if refreshing && !state.opts.id_token_on_refresh {
        None
    } else {
        Some(
            sign_id_token(
                state,
                id_token_user,
                nonce,
                Some(&grant.sid),
                misbehaviour,
                key_index,
            )
            .await
            .map_err(|e| oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &e))?,
        )
    };
    let access_token = random_token();
    let refresh_token = new_refresh_token.then(random_token);
    let userinfo_sub = match misbehaviour {
        Misbehaviour::UserinfoSubMismatch => format!("not-{sub}"),
        _ => sub.to_owned(),
    };
    let lifetime = state.opts.access_token_lifetime;
    let mut inner = state.inner();
    let now = now_unix();
    inner.access_tokens.retain(|_, g| g.expires_at > now);
    inner.access_tokens.insert(
        access_token.clone(),
        AccessGrant {
            sub: sub.to_owned(),
            userinfo_sub,
            expires_at: now.saturating_add(lifetime),
        },
    );
    if let Some(refresh) = &refresh_token {
        inner.refresh_tokens.insert(refresh.clone(), grant.clone());
    }
    drop(inner);
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": "openid email profile groups",
    });
    if let Some(id_token) = id_token {
        body["id_token"] = Value::String(id_token);
    }
    if let Some(refresh) = refresh_token {
        body["refresh_token"] = Value::String(refresh);
    }
    let mut response = json_response(StatusCode::OK, body);
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
