//! Access tokens for APIs: RFC 9068 JWTs with the claims a test chooses,
//! signed as it asks, and RFC 7662 introspection of the opaque ones.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Response, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::keys::pool_key;
use super::responses::{json_response, oauth_error, random_token, text};
use super::token_endpoint::authenticate_client;
use super::{ClaimPlace, JwtSigning, Misbehaviour, State};
use crate::{Body, now_unix};

const LIFETIME: u64 = 3600;

pub(super) fn claims(state: &State, sub: &str) -> Value {
    let now = now_unix();
    let client_id = &state.opts.client_id;
    let mut claims = json!({
        "iss": state.issuer_for(sub),
        "sub": sub,
        "aud": client_id,
        "client_id": client_id,
        "iat": now,
        "exp": now + LIFETIME,
        "jti": random_token(),
    });
    if let Some(user) = state.user(sub) {
        claims["email"] = json!(user.email);
        claims["email_verified"] = json!(user.email_verified);
        claims["name"] = json!(user.name);
        claims["preferred_username"] = json!(user.preferred_username);
        claims["groups"] = json!(user.groups);
    }
    state.apply_extra_claims(sub, ClaimPlace::IdToken, &mut claims);
    claims
}

pub(super) async fn sign(
    claims: &Value,
    signing: JwtSigning,
    key_index: usize,
) -> Result<String, String> {
    let current = pool_key(key_index).await?;
    let sign = |kid: &str, key: &EncodingKey, alg: Algorithm| {
        let mut header = Header::new(alg);
        header.typ = Some("at+jwt".into());
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, key).map_err(|e| e.to_string())
    };
    match signing {
        JwtSigning::Current => sign(&current.kid, &current.encoding, Algorithm::RS256),
        JwtSigning::AlgNone => {
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
            Ok(format!(
                "{header}.{}.",
                URL_SAFE_NO_PAD.encode(claims.to_string())
            ))
        }
        JwtSigning::Hs256WithPublicKey => sign(
            &current.kid,
            &EncodingKey::from_secret(current.public_pem.as_bytes()),
            Algorithm::HS256,
        ),
        JwtSigning::NextKey => {
            let next = pool_key(key_index + 1).await?;
            sign(&next.kid, &next.encoding, Algorithm::RS256)
        }
        JwtSigning::Rs384 => sign(&current.kid, &current.encoding, Algorithm::RS384),
    }
}

/// `POST /introspect` (RFC 7662 §2): the client authenticates as at `/token`;
/// a live opaque access token is `active` with its user's claims, anything
/// else `{"active": false}`.
pub(super) fn introspect(
    state: &State,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Response<Body> {
    state.introspections.fetch_add(1, Ordering::SeqCst);
    if state.inner().misbehaviour == Misbehaviour::IntrospectionUnavailable {
        return text(StatusCode::SERVICE_UNAVAILABLE, "introspection is down");
    }
    match authenticate_client(state, headers, form) {
        Ok((_, true)) => {}
        Ok((_, false)) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            )
            .into_response();
        }
        Err(e) => return e.into_response(),
    }
    let token = form.get("token").map(String::as_str).unwrap_or_default();
    let now = now_unix();
    let grant = state
        .inner()
        .access_tokens
        .get(token)
        .filter(|g| g.expires_at > now)
        .map(|g| (g.sub.clone(), g.expires_at));
    let Some((sub, exp)) = grant else {
        return json_response(StatusCode::OK, json!({ "active": false }));
    };
    let mut answer = claims(state, &sub);
    answer["active"] = json!(true);
    answer["exp"] = json!(exp);
    answer["token_type"] = json!("Bearer");
    answer["username"] = answer["preferred_username"].clone();
    json_response(StatusCode::OK, answer)
}
