//! Logout tokens (OpenID Connect Back-Channel Logout 1.0 §2.4), signed like the
//! provider's id_tokens, or bent by a [`LogoutTokenFlaw`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::keys::pool_key;
use super::responses::random_token;
use super::{Layout, LogoutTokenFlaw, State};
use crate::now_unix;
use crate::provider::BACKCHANNEL_LOGOUT_EVENT;

/// A valid logout token expires this long after it is issued.
const LIFETIME: u64 = 120;

pub(super) async fn sign(
    state: &State,
    sub: Option<&str>,
    sid: Option<&str>,
    flaw: Option<LogoutTokenFlaw>,
) -> Result<String, String> {
    use LogoutTokenFlaw as F;
    let now = now_unix();
    let iat = match flaw {
        Some(F::OldIat) => now - 600,
        Some(F::IssuedInFuture) => now + 3600,
        Some(F::Expired) => now - 240,
        _ => now,
    };
    let mut claims = json!({
        "iss": if flaw == Some(F::WrongIssuer) {
            "https://evil.example".to_owned()
        } else {
            state.issuer_for(sub.unwrap_or_default())
        },
        "aud": if flaw == Some(F::WrongAudience) { "someone-else" } else { state.opts.client_id.as_str() },
        "iat": iat,
        "exp": if flaw == Some(F::Expired) { now - 180 } else { iat + LIFETIME },
        "jti": random_token(),
        "events": { BACKCHANNEL_LOGOUT_EVENT: {} },
    });
    if let Some(sub) = sub {
        claims["sub"] = json!(sub);
    }
    if state.opts.layout == Layout::MicrosoftTenants {
        claims["tid"] = json!(state.tenant_of(sub.unwrap_or_default()));
    }
    if let Some(sid) = sid {
        claims["sid"] = json!(sid);
    }
    let object = claims.as_object_mut().ok_or("claims are an object")?;
    match flaw {
        Some(F::MissingIat) => {
            object.remove("iat");
        }
        Some(F::MissingEvent) => {
            object.remove("events");
        }
        Some(F::EventNotObject) => {
            object.insert("events".into(), json!({ BACKCHANNEL_LOGOUT_EVENT: "yes" }));
        }
        Some(F::WithNonce) => {
            object.insert("nonce".into(), json!("n-0S6_WzA2Mj"));
        }
        Some(F::NoSubNoSid) => {
            object.remove("sub");
            object.remove("sid");
        }
        Some(F::MissingJti) => {
            object.remove("jti");
        }
        _ => {}
    }

    let key_index = state.inner().key_index;
    let current = pool_key(key_index).await?;
    let typ = if flaw == Some(F::WrongTyp) {
        "at+jwt"
    } else {
        "logout+jwt"
    };
    let sign = |kid: &str, key: &EncodingKey, alg: Algorithm| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, &claims, key).map_err(|e| e.to_string())
    };
    match flaw {
        Some(F::AlgNone) => {
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"logout+jwt"}"#);
            Ok(format!(
                "{header}.{}.",
                URL_SAFE_NO_PAD.encode(claims.to_string())
            ))
        }
        Some(F::AlgHs256WithPublicKey) => sign(
            &current.kid,
            &EncodingKey::from_secret(current.public_pem.as_bytes()),
            Algorithm::HS256,
        ),
        Some(F::BadSignature) => sign(
            &current.kid,
            &pool_key(key_index + 1).await?.encoding,
            Algorithm::RS256,
        ),
        Some(F::UnknownKid) => {
            let next = pool_key(key_index + 1).await?;
            sign(&next.kid, &next.encoding, Algorithm::RS256)
        }
        _ => sign(&current.kid, &current.encoding, Algorithm::RS256),
    }
}
