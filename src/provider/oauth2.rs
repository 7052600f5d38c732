//! One plain OAuth 2.0 provider (RFC 6749 §4.1 with PKCE, RFC 7636): no discovery,
//! no id_token and so no nonce. Who signed in comes from the provider's profile
//! API — GitHub's, Facebook's Graph, or any server's userinfo through a claim mapping.

use crate::metrics::{ProviderCall, ProviderMetrics};
use http::StatusCode;
use http::header::CONTENT_TYPE;
use openidconnect::{CsrfToken, PkceCodeChallenge};
use serde_json::{Map, Value};
use url::Url;

use super::http::{HttpError, HttpFailure, ProviderHttp};
use super::token::{TokenAnswer, client_auth, clip, parse_token_answer};
use super::{Callback, FlowSecrets, ProviderError, SignedIn, facebook, github, mapped};
use crate::config::{OAuth2Settings, Profile, ProviderConfig};
use crate::session::Tokens;

pub(super) struct OAuth2Provider {
    config: ProviderConfig,
    settings: OAuth2Settings,
    http: ProviderHttp,
    metrics: ProviderMetrics,
}

impl std::fmt::Debug for OAuth2Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2Provider")
            .field("id", &self.config.id)
            .field("auth_url", &self.settings.auth_url.as_str())
            .finish()
    }
}

impl OAuth2Provider {
    pub(super) fn new(
        config: ProviderConfig,
        settings: OAuth2Settings,
        http: ProviderHttp,
        metrics: ProviderMetrics,
    ) -> Self {
        Self {
            config,
            settings,
            http,
            metrics,
        }
    }

    pub(super) fn config(&self) -> &ProviderConfig {
        &self.config
    }

    pub(super) fn begin(&self, redirect_uri: &Url) -> (Url, FlowSecrets) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = CsrfToken::new_random();
        let mut url = self.settings.auth_url.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &self.config.client_id)
                .append_pair("redirect_uri", redirect_uri.as_str());
            if !self.config.scopes.is_empty() {
                query.append_pair("scope", &self.config.scopes.join(" "));
            }
            query
                .append_pair("state", state.secret())
                .append_pair("code_challenge", challenge.as_str())
                .append_pair("code_challenge_method", challenge.method().as_str());
            for (name, value) in &self.config.auth_params {
                query.append_pair(name, value);
            }
        }
        let secrets = FlowSecrets {
            state: state.into_secret(),
            nonce: String::new(),
            pkce_verifier: verifier.into_secret(),
        };
        (url, secrets)
    }

    /// Exchanges the code and reads the profile. A plain OAuth 2.0 server has no
    /// issuer to compare an RFC 9207 `iss` with: mix-ups are stopped by each
    /// provider's own callback path.
    pub(super) async fn finish(
        &self,
        callback: Callback<'_>,
        secrets: &FlowSecrets,
        redirect_uri: &Url,
    ) -> Result<SignedIn, ProviderError> {
        let token = self
            .exchange_code(callback.code, &secrets.pkce_verifier, redirect_uri)
            .await?;
        let claims = self
            .metrics
            .time(ProviderCall::Userinfo, self.profile(&token.access_token))
            .await?;
        let tokens = Tokens {
            access_expires_at: super::expires_at(token.expires_in),
            access_token: Some(token.access_token),
            refresh_token: token.refresh_token,
            id_token: None,
        };
        Ok(SignedIn { claims, tokens })
    }

    async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &str,
        redirect_uri: &Url,
    ) -> Result<TokenAnswer, ProviderError> {
        self.token_request(vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri.as_str()),
            ("code_verifier", pkce_verifier),
        ])
        .await
    }

    /// POSTs `form` to the token endpoint with the client's authentication. A
    /// `5xx` or `429` is the provider being unavailable, not an answer.
    async fn token_request(
        &self,
        mut form: Vec<(&str, &str)>,
    ) -> Result<TokenAnswer, ProviderError> {
        let basic = client_auth(&self.config, &mut form);
        let unreachable = |source| ProviderError::Unreachable {
            provider: self.config.id.clone(),
            source,
        };
        let url = &self.settings.token_url;
        let call = self.http.post_form(url, &form, basic);
        let response = self
            .metrics
            .time(ProviderCall::Token, call)
            .await
            .map_err(unreachable)?;
        let status = response.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(unreachable(HttpError::at(url, HttpFailure::Status(status))));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        parse_token_answer(status, content_type, response.body())
    }

    /// Facebook issues no refresh tokens (its user tokens are long-lived instead).
    pub(super) fn can_refresh(&self) -> bool {
        !matches!(self.settings.profile, Profile::Facebook)
    }

    pub(super) fn http(&self) -> &ProviderHttp {
        &self.http
    }

    /// The `refresh_token` grant, then the profile read again with the new access
    /// token: it must be `previous_sub`'s.
    pub(super) async fn refresh(
        &self,
        refresh_token: &str,
        previous_sub: &str,
    ) -> Result<SignedIn, ProviderError> {
        let token = self
            .token_request(vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
            .await?;
        let claims = self
            .metrics
            .time(ProviderCall::Userinfo, self.profile(&token.access_token))
            .await?;
        if claims.get("sub").and_then(Value::as_str) != Some(previous_sub) {
            return Err(ProviderError::InvalidProfile(
                "the refreshed profile is another user's (sub)".into(),
            ));
        }
        let tokens = Tokens {
            access_expires_at: super::expires_at(token.expires_in),
            access_token: Some(token.access_token),
            refresh_token: Some(
                token
                    .refresh_token
                    .unwrap_or_else(|| refresh_token.to_owned()),
            ),
            id_token: None,
        };
        Ok(SignedIn { claims, tokens })
    }

    /// Who the access token belongs to, from the provider's profile API.
    async fn profile(&self, access_token: &str) -> Result<Map<String, Value>, ProviderError> {
        let api = Api {
            http: &self.http,
            provider: &self.config.display_name,
            access_token,
        };
        let s = &self.settings;
        let mut claims = match &s.profile {
            Profile::Github {
                organizations,
                teams,
            } => github::profile(&api, s, organizations, teams).await?,
            Profile::Facebook => facebook::profile(&api, &s.userinfo_url).await?,
            Profile::Mapped(paths) => return mapped::profile(&api, s, paths).await,
        };
        if let Some(paths) = &self.config.claims {
            mapped::remap(&mut claims, paths)?;
        }
        Ok(claims)
    }
}

/// Calls to a provider's profile API with the user's access token.
pub(super) struct Api<'a> {
    http: &'a ProviderHttp,
    /// The display name, for error messages.
    provider: &'a str,
    access_token: &'a str,
}

impl Api<'_> {
    /// GETs `url` as JSON. An error status with a provider error object becomes
    /// [`ProviderError::ApiError`] in the provider's words; anything else unusable
    /// becomes [`ProviderError::Userinfo`].
    pub(super) async fn get(&self, url: &Url) -> Result<Value, ProviderError> {
        let unusable = |reason| ProviderError::Userinfo {
            provider: self.provider.to_owned(),
            source: HttpError::at(url, reason),
        };
        let response = self
            .http
            .get(url, Some(self.access_token))
            .await
            .map_err(|source| ProviderError::Userinfo {
                provider: self.provider.to_owned(),
                source,
            })?;
        let body: Option<Value> = serde_json::from_slice(response.body()).ok();
        if !response.status().is_success() {
            return Err(match body.as_ref().and_then(api_error_message) {
                Some(message) => ProviderError::ApiError {
                    provider: self.provider.to_owned(),
                    message: clip(&message),
                },
                None => unusable(HttpFailure::Status(response.status())),
            });
        }
        body.ok_or_else(|| unusable(HttpFailure::NotJson("the body is not JSON".into())))
    }
}

/// The message of a provider's error object: Graph's `{"error": {"message"}}`,
/// GitHub's `{"message"}` or RFC 6750's `{"error", "error_description"}`.
pub(super) fn api_error_message(body: &Value) -> Option<String> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    match body.get("error") {
        Some(Value::Object(graph)) => text(graph.get("message")),
        Some(Value::String(code)) => Some(
            text(body.get("error_description"))
                .map(|d| format!("{code}: {d}"))
                .unwrap_or_else(|| code.clone()),
        ),
        _ => text(body.get("message")),
    }
}

/// From a GitHub-style list of `{email, primary, verified}`, the primary verified address.
pub(super) fn primary_verified_email(list: &Value) -> Option<String> {
    list.as_array()?
        .iter()
        .find(|e| {
            e.get("primary").and_then(Value::as_bool) == Some(true)
                && e.get("verified").and_then(Value::as_bool) == Some(true)
        })
        .and_then(|e| e.get("email")?.as_str())
        .map(str::to_owned)
}

/// A JSON object's member as a string; numbers too (numeric user ids).
pub(super) fn string_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Inserts `value` under `name` when there is one.
pub(super) fn put(claims: &mut Map<String, Value>, name: &str, value: Option<impl Into<Value>>) {
    if let Some(v) = value {
        claims.insert(name.to_owned(), v.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_objects_of_every_provider_give_their_message() {
        let graph = json!({"error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190}});
        assert_eq!(
            api_error_message(&graph).as_deref(),
            Some("Invalid OAuth access token.")
        );
        let github =
            json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com"});
        assert_eq!(
            api_error_message(&github).as_deref(),
            Some("Bad credentials")
        );
        let rfc6750 = json!({"error": "invalid_token", "error_description": "expired"});
        assert_eq!(
            api_error_message(&rfc6750).as_deref(),
            Some("invalid_token: expired")
        );
        assert_eq!(api_error_message(&json!({"id": 1})), None);
    }

    #[test]
    fn only_the_primary_verified_email_counts() {
        let list = json!([
            {"email": "old@example.com", "primary": false, "verified": true},
            {"email": "new@example.com", "primary": true, "verified": false},
        ]);
        assert_eq!(primary_verified_email(&list), None);
        let list = json!([
            {"email": "a@example.com", "primary": false, "verified": true},
            {"email": "b@example.com", "primary": true, "verified": true},
        ]);
        assert_eq!(
            primary_verified_email(&list).as_deref(),
            Some("b@example.com")
        );
        assert_eq!(primary_verified_email(&json!({"email": "x"})), None);
    }
}
