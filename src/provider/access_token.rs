//! Bearer tokens presented to portcullis in place of a session (issue #13):
//! a JWT is verified here against the provider's keys ([`Keys`], so an unknown
//! `kid` re-fetches them, paced as at sign-in) with `jsonwebtoken`, as logout
//! tokens are; an opaque token is asked about at the provider's RFC 7662
//! introspection endpoint. Each refusal has one reason, fit for the audit log
//! and the `401` body: never the token or its contents.

use jsonwebtoken::Validation;
use jsonwebtoken::errors::ErrorKind;
use openidconnect::core::CoreJwsSigningAlgorithm;
use serde_json::{Map, Value};
use url::Url;

use super::http::ProviderHttp;
use super::keys::{KeySet, Keys, KeysError};
use super::logout_token::allowed;
use super::microsoft;
use super::token::client_auth;
use crate::config::ProviderConfig;

/// Longer tokens are refused unread.
pub const MAX_BEARER_TOKEN: usize = 16 * 1024;
/// Clock skew allowed on `exp`, `nbf` and `iat`: the one sign-in allows on `iat`.
pub const BEARER_LEEWAY: u64 = 60;

/// Why a bearer token was not accepted.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum BearerError {
    /// The token is not valid here: `401 invalid_token`.
    #[error("{0}")]
    Invalid(&'static str),
    /// The provider cannot answer now (keys not loaded, introspection down):
    /// `503`, the token may well be good.
    #[error("{0}")]
    Unavailable(String),
}

/// What the provider's bearer tokens must be.
pub(super) struct Rules<'a> {
    /// The discovered issuer (a Microsoft tenant template is matched against `iss`).
    pub issuer: &'a str,
    /// `client_id`, then `extra_audiences`.
    pub audiences: &'a [String],
    /// The provider's advertised algorithms, without `none` and HMAC.
    pub algs: &'a [CoreJwsSigningAlgorithm],
}

/// The verified claims of a JWT bearer token of this provider.
pub(super) async fn verify(
    keys: &Keys,
    rules: &Rules<'_>,
    token: &str,
) -> Result<Map<String, Value>, BearerError> {
    use BearerError::Invalid;
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| Invalid("the token is not a JWS with a supported algorithm"))?;
    // RFC 9068 §2.1 `at+jwt`, or plain JWT; a logout token or anything else
    // that says what it is not, is not an access token.
    if let Some(typ) = &header.typ {
        let typ = typ.to_ascii_lowercase();
        let typ = typ.strip_prefix("application/").unwrap_or(&typ);
        if typ != "at+jwt" && typ != "jwt" {
            return Err(Invalid("the token's typ is neither at+jwt nor JWT"));
        }
    }
    if !allowed(rules.algs).contains(&header.alg) {
        return Err(Invalid(
            "the token's algorithm is not one the provider signs with",
        ));
    }
    let mut validation = Validation::new(header.alg);
    validation.set_audience(rules.audiences);
    validation.set_required_spec_claims(&["iss", "aud", "exp", "sub"]);
    validation.leeway = BEARER_LEEWAY;
    validation.validate_nbf = true;
    if !microsoft::is_template(rules.issuer) {
        validation.set_issuer(&[rules.issuer]);
    }
    let kid = header.kid.as_deref();
    let claims = keys
        .verify(
            |keys| decode(token, kid, keys, &validation),
            |e| *e == UNKNOWN_KEY,
        )
        .await
        .map_err(|e| match e {
            KeysError::NotLoaded => BearerError::Unavailable(
                "the provider's metadata and keys are not loaded yet".into(),
            ),
            KeysError::UnknownKey => UNKNOWN_KEY,
            KeysError::Check(e) => e,
        })?;
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    if microsoft::is_template(rules.issuer) && !microsoft::matches_template(rules.issuer, iss) {
        return Err(Invalid("iss is not the provider's issuer"));
    }
    match claims.get("iat").map(Value::as_u64) {
        None => {}
        Some(Some(iat)) if iat <= crate::now_unix().saturating_add(BEARER_LEEWAY) => {}
        Some(Some(_)) => return Err(Invalid("the token is issued in the future (iat)")),
        Some(None) => return Err(Invalid("iat is not a number")),
    }
    Ok(claims)
}

const UNKNOWN_KEY: BearerError =
    BearerError::Invalid("the token is signed by a key the provider's JWKS does not contain");

fn decode(
    token: &str,
    kid: Option<&str>,
    keys: &KeySet,
    validation: &Validation,
) -> Result<Map<String, Value>, BearerError> {
    let mut candidates = keys.decoding_keys(kid).peekable();
    if candidates.peek().is_none() {
        return Err(UNKNOWN_KEY);
    }
    let mut refusal = BearerError::Invalid("the token's signature does not verify");
    for key in candidates {
        match jsonwebtoken::decode::<Map<String, Value>>(token, key, validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {}
            Err(e) if matches!(e.kind(), ErrorKind::InvalidAlgorithm) => {
                refusal = BearerError::Invalid("the token's algorithm does not fit the key");
            }
            Err(e) => return Err(BearerError::Invalid(claim_error(e.kind()))),
        }
    }
    Err(refusal)
}

fn claim_error(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidIssuer => "iss is not the provider's issuer",
        ErrorKind::InvalidAudience => "aud names neither client_id nor an extra_audiences entry",
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
        ErrorKind::MissingRequiredClaim(c) if c == "exp" => "exp is missing",
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => "aud is missing",
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => "iss is missing",
        ErrorKind::MissingRequiredClaim(c) if c == "sub" => "sub is missing",
        _ => "the token's claims are malformed",
    }
}

/// RFC 7662 introspection of an opaque token at `url`, with the client's
/// authentication (`token_auth_method`, as the token and revocation calls).
/// The answer's claims, once `active` is true, `exp` (when present) not
/// passed and `aud` (else `client_id`, when present) names one of `audiences`.
pub(super) async fn introspect(
    http: &ProviderHttp,
    config: &ProviderConfig,
    url: &Url,
    audiences: &[String],
    token: &str,
) -> Result<Map<String, Value>, BearerError> {
    let mut form = vec![("token", token), ("token_type_hint", "access_token")];
    let basic = client_auth(config, &mut form);
    let response = http.post_form(url, &form, basic).await.map_err(|e| {
        BearerError::Unavailable(format!("provider {}: introspection failed: {e}", config.id))
    })?;
    if !response.status().is_success() {
        return Err(BearerError::Unavailable(format!(
            "provider {}: introspection answered {}",
            config.id,
            response.status()
        )));
    }
    let claims: Map<String, Value> = serde_json::from_slice(response.body()).map_err(|_| {
        BearerError::Unavailable(format!(
            "provider {}: introspection answered something other than a JSON object",
            config.id
        ))
    })?;
    check_introspected(claims, audiences, crate::now_unix())
}

/// RFC 7662 §2.2 on an answer.
fn check_introspected(
    mut claims: Map<String, Value>,
    audiences: &[String],
    now: u64,
) -> Result<Map<String, Value>, BearerError> {
    use BearerError::Invalid;
    if claims.get("active") != Some(&Value::Bool(true)) {
        return Err(Invalid("the provider says the token is not active"));
    }
    match claims.get("exp").map(Value::as_u64) {
        None => {}
        Some(Some(exp)) if exp.saturating_add(BEARER_LEEWAY) > now => {}
        Some(Some(_)) => return Err(Invalid("the token has expired")),
        Some(None) => return Err(Invalid("exp is not a number")),
    }
    let named = |v: &Value| v.as_str().is_some_and(|a| audiences.iter().any(|x| x == a));
    let fits = match (claims.get("aud"), claims.get("client_id")) {
        (Some(Value::Array(auds)), _) => auds.iter().any(named),
        (Some(aud), _) => named(aud),
        (None, Some(client)) => named(client),
        (None, None) => true,
    };
    if !fits {
        return Err(Invalid(
            "aud names neither client_id nor an extra_audiences entry",
        ));
    }
    // RFC 7662 names the user `username`; the identity reads `preferred_username`.
    if !claims.contains_key("preferred_username")
        && let Some(username) = claims.get("username").cloned()
    {
        claims.insert("preferred_username".into(), username);
    }
    if !claims.contains_key("sub") {
        return Err(Invalid("the introspection answer names no user (sub)"));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn introspection_answers_are_checked() {
        let auds = ["api".to_owned(), "other".to_owned()];
        let ok = |v| check_introspected(map(v), &auds, 1000);
        assert!(ok(json!({"active": true, "sub": "a"})).is_ok());
        assert!(ok(json!({"active": true, "sub": "a", "exp": 999, "aud": ["x", "other"]})).is_ok());
        assert!(ok(json!({"active": true, "sub": "a", "client_id": "api"})).is_ok());
        assert!(ok(json!({"active": false, "sub": "a"})).is_err());
        assert!(ok(json!({"active": "true", "sub": "a"})).is_err());
        assert!(ok(json!({"sub": "a"})).is_err());
        assert!(ok(json!({"active": true, "sub": "a", "exp": 100})).is_err());
        assert!(ok(json!({"active": true, "sub": "a", "aud": "x"})).is_err());
        assert!(ok(json!({"active": true, "sub": "a", "client_id": "x"})).is_err());
        assert!(ok(json!({"active": true})).is_err());
        let got = ok(json!({"active": true, "sub": "a", "username": "ada"})).unwrap();
        assert_eq!(got["preferred_username"], "ada");
    }
}
