//! Facebook (OAuth 2.0): identity from Graph's `/me?fields=id,name,email,picture`.
//! Graph error objects become [`ProviderError::ApiError`] in Facebook's own words.

use serde_json::{Map, Value};
use url::Url;

use super::ProviderError;
use super::oauth2::{Api, put, string_of};

pub(super) async fn profile(
    api: &Api<'_>,
    me_url: &Url,
) -> Result<Map<String, Value>, ProviderError> {
    me_claims(&api.get(me_url).await?)
}

/// Facebook returns only confirmed addresses, so a present email is verified.
fn me_claims(me: &Value) -> Result<Map<String, Value>, ProviderError> {
    let sub = string_of(me.get("id"))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ProviderError::InvalidProfile("Facebook's /me has no id".into()))?;
    let mut claims = Map::new();
    claims.insert("sub".into(), sub.into());
    put(&mut claims, "name", me.get("name").and_then(Value::as_str));
    if let Some(email) = me.get("email").and_then(Value::as_str) {
        claims.insert("email".into(), email.into());
        claims.insert("email_verified".into(), true.into());
    }
    let picture = me.pointer("/picture/data/url").and_then(Value::as_str);
    put(&mut claims, "picture", picture);
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn me_becomes_standard_claims() {
        let me = json!({"id": "10158", "name": "Ada", "email": "ada@example.com",
            "picture": {"data": {"height": 50, "is_silhouette": false, "url": "https://x.fbcdn.net/p.jpg", "width": 50}}});
        let c = me_claims(&me).unwrap();
        assert_eq!(c["sub"], "10158");
        assert_eq!(c["email_verified"], true);
        assert_eq!(c["picture"], "https://x.fbcdn.net/p.jpg");
        let without_email = me_claims(&json!({"id": 7, "name": "B"})).unwrap();
        assert_eq!(without_email["sub"], "7");
        assert!(!without_email.contains_key("email_verified"));
        assert!(matches!(
            me_claims(&json!({"name": "x"})),
            Err(ProviderError::InvalidProfile(_))
        ));
    }
}
