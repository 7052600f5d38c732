//! id_tokens: the claims for a demo user (plus the IdP session's `sid`, Microsoft's
//! `tid` and `ver`, plus the user's extra claims), signed RS256 with the current
//! key, or bent in the way the current [`Misbehaviour`] asks for.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::keys::pool_key;
use super::{ClaimPlace, DemoUser, Layout, Misbehaviour, State};
use crate::now_unix;

const ID_TOKEN_LIFETIME: u64 = 3600;
/// The tenant a [`Misbehaviour::TenantMismatch`] token's `iss` names.
const OTHER_TENANT_ID: &str = "00000000-0000-0000-0000-00000000dead";

pub(super) async fn sign_id_token(
    state: &State,
    user: &DemoUser,
    nonce: Option<&str>,
    sid: Option<&str>,
    misbehaviour: Misbehaviour,
    key_index: usize,
) -> Result<String, String> {
    use Misbehaviour as M;
    let now = now_unix();
    let client_id = state.opts.client_id.as_str();
    let (iat, exp) = match misbehaviour {
        M::Expired => (now - 2 * ID_TOKEN_LIFETIME, now - ID_TOKEN_LIFETIME),
        M::IssuedInFuture => (now + 3600, now + 3600 + ID_TOKEN_LIFETIME),
        _ => (now, now + ID_TOKEN_LIFETIME),
    };
    let mut claims = json!({
        "iss": if misbehaviour == M::WrongIssuer { "https://evil.example".to_owned() } else { state.issuer_for(&user.sub) },
        "sub": user.sub,
        "aud": client_id,
        "azp": client_id,
        "iat": iat,
        "exp": exp,
        "auth_time": now,
        "email": user.email,
        "email_verified": user.email_verified,
        "name": user.name,
        "preferred_username": user.preferred_username,
        "groups": user.groups,
    });
    if state.opts.layout == Layout::MicrosoftTenants {
        claims["tid"] = json!(state.tenant_of(&user.sub));
        claims["ver"] = json!("2.0");
    }
    if let Some(sid) = sid {
        claims["sid"] = json!(sid);
    }
    state.apply_extra_claims(&user.sub, ClaimPlace::IdToken, &mut claims);
    match misbehaviour {
        M::TenantMismatch => {
            claims["iss"] = json!(format!("{}/{OTHER_TENANT_ID}/v2.0", state.base));
        }
        M::MissingTenant => {
            claims.as_object_mut().map(|c| c.remove("tid"));
        }
        M::WrongAudience => {
            claims["aud"] = json!("someone-else");
            claims["azp"] = json!("someone-else");
        }
        M::ExtraAudienceWithoutAzp => {
            claims["aud"] = json!([client_id, "someone-else"]);
            claims.as_object_mut().map(|c| c.remove("azp"));
        }
        M::ExtraAudienceForAnotherAzp => {
            claims["aud"] = json!([client_id, "someone-else"]);
            claims["azp"] = json!("someone-else");
        }
        _ => {}
    }
    match (misbehaviour, nonce) {
        (M::MissingNonce, _) | (_, None) => {}
        (M::WrongNonce, Some(_)) => claims["nonce"] = json!("not-the-nonce"),
        (_, Some(nonce)) => claims["nonce"] = json!(nonce),
    }

    let current = pool_key(key_index).await?;
    let sign = |kid: &str, key: &EncodingKey, alg: Algorithm| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &claims, key).map_err(|e| e.to_string())
    };
    match misbehaviour {
        M::AlgNone => {
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
            Ok(format!(
                "{header}.{}.",
                URL_SAFE_NO_PAD.encode(claims.to_string())
            ))
        }
        M::AlgHs256WithPublicKey => sign(
            &current.kid,
            &EncodingKey::from_secret(current.public_pem.as_bytes()),
            Algorithm::HS256,
        ),
        M::BadSignature => sign(
            &current.kid,
            &pool_key(key_index + 1).await?.encoding,
            Algorithm::RS256,
        ),
        M::UnknownKid => {
            let next = pool_key(key_index + 1).await?;
            sign(&next.kid, &next.encoding, Algorithm::RS256)
        }
        _ => sign(&current.kid, &current.encoding, Algorithm::RS256),
    }
}
