//! The end-session endpoint (OpenID Connect RP-Initiated Logout 1.0 §2–§3):
//! checks the `id_token_hint` signature (an expired hint is still a hint),
//! `client_id`, and `post_logout_redirect_uri`, ends the IdP session the hint
//! names, and sends the browser back with `state`. Each call is recorded.

use std::collections::HashMap;

use http::header::{CACHE_CONTROL, LOCATION};
use http::{HeaderValue, Response, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use url::Url;

use super::keys::pool_key;
use super::responses::text;
use super::{EndSessionSeen, State};
use crate::Body;

pub(super) async fn end_session(state: &State, query: &str) -> Response<Body> {
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let param = |name: &str| params.get(name).filter(|v| !v.is_empty()).cloned();
    let mut seen = EndSessionSeen {
        client_id: param("client_id"),
        hint_sub: None,
        hint_sid: None,
        had_id_token_hint: param("id_token_hint").is_some(),
        post_logout_redirect_uri: param("post_logout_redirect_uri"),
        state: param("state"),
        accepted: false,
    };
    let outcome = check(state, &params, &mut seen).await;
    let response = match outcome {
        Ok(target) => {
            seen.accepted = true;
            if let Some(sid) = &seen.hint_sid {
                state.inner().sessions.remove(sid);
            }
            redirect(&target)
        }
        Err(problem) => text(
            StatusCode::BAD_REQUEST,
            &format!("invalid logout request: {problem}"),
        ),
    };
    state.inner().end_session_calls.push(seen);
    response
}

async fn check(
    state: &State,
    params: &HashMap<String, String>,
    seen: &mut EndSessionSeen,
) -> Result<Url, String> {
    if let Some(client_id) = &seen.client_id
        && *client_id != state.opts.client_id
    {
        return Err("unknown client_id".into());
    }
    if let Some(hint) = params.get("id_token_hint").filter(|h| !h.is_empty()) {
        let claims = verify_hint(state, hint).await?;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        seen.hint_sub = text("sub");
        seen.hint_sid = text("sid");
    }
    let uri = seen
        .post_logout_redirect_uri
        .as_deref()
        .ok_or("post_logout_redirect_uri is missing")?;
    let mut target = Url::parse(uri).map_err(|_| "post_logout_redirect_uri is not a URL")?;
    if !allowed(state, uri, &target) {
        return Err("post_logout_redirect_uri is not registered".into());
    }
    if let Some(s) = &seen.state {
        target.query_pairs_mut().append_pair("state", s);
    }
    Ok(target)
}

/// One of the configured URIs exactly, or with none configured any loopback URL.
fn allowed(state: &State, uri: &str, url: &Url) -> bool {
    let listed = &state.opts.post_logout_redirect_uris;
    if !listed.is_empty() {
        return listed.iter().any(|u| u == uri);
    }
    matches!(url.scheme(), "http" | "https")
        && matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"))
}

/// The hint's claims, when one of the provider's keys (current or earlier) signed
/// it for this client. Its expiry does not matter (§2: "the ID Token … MAY be expired").
async fn verify_hint(state: &State, hint: &str) -> Result<serde_json::Map<String, Value>, String> {
    let header = jsonwebtoken::decode_header(hint).map_err(|_| "id_token_hint is not a JWT")?;
    let newest = state.inner().key_index;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[&state.opts.client_id]);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    for index in 0..=newest {
        let key = pool_key(index).await?;
        if header.kid.as_deref() != Some(key.kid.as_str()) {
            continue;
        }
        let decoding =
            DecodingKey::from_rsa_pem(key.public_pem.as_bytes()).map_err(|e| e.to_string())?;
        return jsonwebtoken::decode(hint, &decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| format!("id_token_hint refused: {e}"));
    }
    Err("id_token_hint is signed by no key of this provider".into())
}

fn redirect(target: &Url) -> Response<Body> {
    let Ok(location) = HeaderValue::try_from(target.as_str()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "post_logout_redirect_uri cannot be sent back",
        );
    };
    let mut response = Response::new(crate::empty());
    *response.status_mut() = StatusCode::FOUND;
    response.headers_mut().insert(LOCATION, location);
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
