//! Back-channel logout tokens (OpenID Connect Back-Channel Logout 1.0 §2.4, §2.6).
//! The JWS is verified by `jsonwebtoken` with a key of the provider's JWKS
//! ([`Keys`], so an unknown `kid` re-fetches it), under the algorithms the
//! provider advertises for id_tokens (never `none` or HMAC); the claims are then
//! checked here, one refusal reason each.

use std::str::FromStr;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use openidconnect::core::CoreJwsSigningAlgorithm;
use serde_json::{Map, Value};

use super::keys::{KeySet, Keys, KeysError};
use super::microsoft;

/// Longer tokens are refused unread.
pub const MAX_LOGOUT_TOKEN: usize = 16 * 1024;
/// A logout token issued longer ago than this is refused (§2.6 lets the RP
/// "reject Logout Tokens […] with an iat too far in the past").
pub const LOGOUT_TOKEN_MAX_AGE: u64 = 5 * 60;
/// Clock skew allowed on `iat` (in the future) and `exp` (just passed).
const SKEW: u64 = 60;
/// §2.4: the member of `events` that makes a JWT a logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// A verified logout token: whom to sign out. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutToken {
    /// The provider's session: sign out the sessions with this `sid`.
    pub sid: Option<String>,
    /// The user: without `sid`, sign out every session of this `sub`.
    pub sub: Option<String>,
    /// The token's id; a second token with the same `jti` must be refused (§2.6
    /// step 8), so the caller remembers it until `exp`.
    pub jti: String,
    /// Unix seconds after which this token is refused anyway: its `exp`, or
    /// `iat` + [`LOGOUT_TOKEN_MAX_AGE`] when earlier or when it has none, plus
    /// the clock skew allowed. A replay cache needs `jti` until then, no longer.
    pub exp: u64,
}

/// Why a logout token was refused. Messages are fit for the `400` body: they
/// name the rule, never the token's contents.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum LogoutTokenError {
    #[error("this provider does not speak OpenID Connect back-channel logout")]
    NotSupported,
    #[error("the provider's metadata and keys are not loaded yet")]
    NotReady,
    #[error("the logout_token is longer than 16 KiB")]
    TooLarge,
    #[error("the logout_token is not a JWS in compact form with a supported algorithm")]
    Malformed,
    #[error("the logout_token's typ is neither logout+jwt nor JWT")]
    WrongType,
    #[error("the logout_token's algorithm is not one the provider signs id_tokens with")]
    Algorithm,
    #[error("the logout_token's signature does not verify")]
    Signature,
    #[error("the logout_token is signed by a key the provider's JWKS does not contain")]
    UnknownKey,
    #[error("the logout_token is invalid: {0}")]
    Invalid(&'static str),
}

/// What the provider's logout tokens must be.
pub(super) struct Rules<'a> {
    /// The discovered issuer (a Microsoft tenant template is filled with `tid`).
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// The provider's id_token algorithms, without `none` and HMAC.
    pub algs: &'a [CoreJwsSigningAlgorithm],
}

pub(super) async fn verify(
    keys: &Keys,
    rules: &Rules<'_>,
    token: &str,
) -> Result<LogoutToken, LogoutTokenError> {
    if token.len() > MAX_LOGOUT_TOKEN {
        return Err(LogoutTokenError::TooLarge);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| LogoutTokenError::Malformed)?;
    // §2.4 recommends explicit typing (RFC 8725 §3.11); a JWT that says it is
    // something else (an access token, `at+jwt`) is not a logout token.
    if let Some(typ) = &header.typ {
        let typ = typ.to_ascii_lowercase();
        let typ = typ.strip_prefix("application/").unwrap_or(&typ);
        if typ != "logout+jwt" && typ != "jwt" {
            return Err(LogoutTokenError::WrongType);
        }
    }
    if !allowed(rules.algs).contains(&header.alg) {
        return Err(LogoutTokenError::Algorithm);
    }
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[rules.client_id]);
    validation.set_required_spec_claims(&["iss", "aud"]);
    if !microsoft::is_template(rules.issuer) {
        validation.set_issuer(&[rules.issuer]);
    }
    // Checked below, with this module's own rules and messages.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let kid = header.kid.as_deref();
    let claims = keys
        .verify(
            |keys| decode(token, kid, keys, &validation),
            |e| *e == LogoutTokenError::UnknownKey,
        )
        .await
        .map_err(|e| match e {
            KeysError::NotLoaded => LogoutTokenError::NotReady,
            KeysError::UnknownKey => LogoutTokenError::UnknownKey,
            KeysError::Check(e) => e,
        })?;
    check_claims(&claims, rules, crate::now_unix())
}

/// The provider's algorithms as `jsonwebtoken` names them; HMAC never, whatever
/// the list says.
pub(super) fn allowed(algs: &[CoreJwsSigningAlgorithm]) -> Vec<Algorithm> {
    algs.iter()
        .filter_map(|alg| serde_json::to_value(alg).ok())
        .filter_map(|name| Algorithm::from_str(name.as_str()?).ok())
        .filter(|alg| !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        .collect()
}

/// Verifies the signature with the key named by `kid` (without one: each
/// signing key in turn) and the standard claims `iss` and `aud`.
fn decode(
    token: &str,
    kid: Option<&str>,
    keys: &KeySet,
    validation: &Validation,
) -> Result<Map<String, Value>, LogoutTokenError> {
    let mut candidates = keys.decoding_keys(kid).peekable();
    if candidates.peek().is_none() {
        return Err(LogoutTokenError::UnknownKey);
    }
    let mut refusal = LogoutTokenError::Signature;
    for key in candidates {
        match jsonwebtoken::decode::<Map<String, Value>>(token, key, validation) {
            Ok(data) => return Ok(data.claims),
            // Another key's family or a wrong key: try the next one.
            Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {}
            Err(e) if matches!(e.kind(), ErrorKind::InvalidAlgorithm) => {
                refusal = LogoutTokenError::Algorithm;
            }
            // The signature verified; a claim did not.
            Err(e) => return Err(claim_error(e.kind())),
        }
    }
    Err(refusal)
}

fn claim_error(kind: &ErrorKind) -> LogoutTokenError {
    match kind {
        ErrorKind::InvalidIssuer => LogoutTokenError::Invalid("iss is not the provider's issuer"),
        ErrorKind::InvalidAudience => {
            LogoutTokenError::Invalid("aud does not contain our client_id")
        }
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => {
            LogoutTokenError::Invalid("iss is missing")
        }
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => {
            LogoutTokenError::Invalid("aud is missing")
        }
        _ => LogoutTokenError::Malformed,
    }
}

/// §2.6 steps 3–7 on claims whose signature, `iss` and `aud` are verified.
fn check_claims(
    claims: &Map<String, Value>,
    rules: &Rules<'_>,
    now: u64,
) -> Result<LogoutToken, LogoutTokenError> {
    use LogoutTokenError::Invalid;
    if microsoft::is_template(rules.issuer) {
        let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
        let tid = claims.get("tid").and_then(Value::as_str);
        let tenant_issuer = tid.map(|t| rules.issuer.replacen("{tenantid}", t, 1));
        if !microsoft::matches_template(rules.issuer, iss) || tenant_issuer.as_deref() != Some(iss)
        {
            return Err(Invalid("iss is not the provider's issuer"));
        }
    }
    let iat = claims
        .get("iat")
        .ok_or(Invalid("iat is missing"))?
        .as_u64()
        .ok_or(Invalid("iat is not a time"))?;
    if iat > now.saturating_add(SKEW) {
        return Err(Invalid("iat is in the future"));
    }
    if iat.saturating_add(LOGOUT_TOKEN_MAX_AGE) < now {
        return Err(Invalid("iat is more than 5 minutes ago"));
    }
    let exp = match claims.get("exp") {
        None => None,
        Some(exp) => Some(exp.as_u64().ok_or(Invalid("exp is not a time"))?),
    };
    if exp.is_some_and(|exp| exp.saturating_add(SKEW) < now) {
        return Err(Invalid("exp has passed"));
    }
    let jti = match claims.get("jti") {
        Some(Value::String(jti)) if !jti.is_empty() && jti.len() <= 256 => jti.clone(),
        Some(_) => return Err(Invalid("jti is not a string of at most 256 characters")),
        None => return Err(Invalid("jti is missing")),
    };
    let event = claims
        .get("events")
        .and_then(|events| events.get(BACKCHANNEL_LOGOUT_EVENT));
    if !event.is_some_and(Value::is_object) {
        return Err(Invalid(
            "events has no back-channel logout member (a JSON object)",
        ));
    }
    let text = |name: &str| match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(Invalid("sub and sid must be non-empty strings")),
    };
    let (sub, sid) = (text("sub")?, text("sid")?);
    if sub.is_none() && sid.is_none() {
        return Err(Invalid("neither sub nor sid is present"));
    }
    if claims.contains_key("nonce") {
        return Err(Invalid(
            "nonce is present (a logout token must not have one)",
        ));
    }
    let refused_after = exp
        .unwrap_or(u64::MAX)
        .min(iat.saturating_add(LOGOUT_TOKEN_MAX_AGE));
    Ok(LogoutToken {
        sid,
        sub,
        jti,
        exp: refused_after.saturating_add(SKEW),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISSUER: &str = "https://idp.example";

    fn rules() -> Rules<'static> {
        Rules {
            issuer: ISSUER,
            client_id: "c",
            algs: &[],
        }
    }

    fn good(now: u64) -> Map<String, Value> {
        json!({"iss": ISSUER, "aud": "c", "iat": now, "jti": "j1", "sid": "s1",
            "events": {BACKCHANNEL_LOGOUT_EVENT: {}}})
        .as_object()
        .cloned()
        .unwrap()
    }

    #[test]
    fn the_replay_horizon_is_the_earlier_of_exp_and_max_age() {
        let now = 1_000_000;
        let t = check_claims(&good(now), &rules(), now).unwrap();
        assert_eq!(t.exp, now + LOGOUT_TOKEN_MAX_AGE + SKEW);
        assert_eq!((t.sid.as_deref(), t.sub), (Some("s1"), None));
        let mut with_exp = good(now);
        with_exp.insert("exp".into(), json!(now + 30));
        assert_eq!(
            check_claims(&with_exp, &rules(), now).unwrap().exp,
            now + 30 + SKEW
        );
        with_exp.insert("exp".into(), json!(u64::MAX));
        assert_eq!(
            check_claims(&with_exp, &rules(), now).unwrap().exp,
            now + LOGOUT_TOKEN_MAX_AGE + SKEW
        );
    }

    #[test]
    fn mistyped_claims_are_refused_not_panics() {
        let now = 1_000_000;
        for (name, value) in [
            ("iat", json!("now")),
            ("iat", json!(-1)),
            ("exp", json!(1.5)),
            ("jti", json!(7)),
            ("jti", json!("x".repeat(300))),
            ("sid", json!(["s"])),
            ("events", json!([BACKCHANNEL_LOGOUT_EVENT])),
            ("events", json!({BACKCHANNEL_LOGOUT_EVENT: []})),
        ] {
            let mut claims = good(now);
            claims.insert(name.into(), value.clone());
            assert!(
                matches!(
                    check_claims(&claims, &rules(), now),
                    Err(LogoutTokenError::Invalid(_))
                ),
                "{name} = {value}"
            );
        }
    }

    #[test]
    fn hmac_is_never_allowed_even_when_listed() {
        use CoreJwsSigningAlgorithm as A;
        let algs = [A::RsaSsaPkcs1V15Sha256, A::HmacSha256, A::EcdsaP256Sha256];
        assert_eq!(allowed(&algs), [Algorithm::RS256, Algorithm::ES256]);
    }
}
