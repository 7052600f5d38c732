//! Token revocation at sign-out (RFC 7009): best effort, bounded, quiet about values.

use url::Url;

use super::http::ProviderHttp;
use super::oauth2::api_error_message;
use super::token::{client_auth, clip};
use crate::config::ProviderConfig;
use crate::session::Tokens;

/// POSTs the refresh token and the access token to `url`, at once, each with
/// its `token_type_hint` (§2.1) and the client's authentication. The refresh
/// token matters most: revoking it should end the whole grant (§2.1). Each call
/// is bounded by the HTTP client's timeout; failures are logged, not returned.
pub(super) async fn revoke(
    http: &ProviderHttp,
    config: &ProviderConfig,
    url: &Url,
    tokens: &Tokens,
) {
    let refresh = tokens
        .refresh_token
        .as_deref()
        .map(|t| (t, "refresh_token"));
    let access = tokens.access_token.as_deref().map(|t| (t, "access_token"));
    let calls = refresh
        .into_iter()
        .chain(access)
        .map(|(token, hint)| async move {
            let mut form = vec![("token", token), ("token_type_hint", hint)];
            let basic = client_auth(config, &mut form);
            match http.post_form(url, &form, basic).await {
                Ok(response) if response.status().is_success() => {
                    tracing::debug!(provider = %config.id, token_type_hint = hint, "token revoked");
                }
                Ok(response) => {
                    let body: Option<serde_json::Value> =
                        serde_json::from_slice(response.body()).ok();
                    let error = body
                        .as_ref()
                        .and_then(api_error_message)
                        .map(|m| clip(&m))
                        .unwrap_or_default();
                    tracing::warn!(
                        provider = %config.id,
                        token_type_hint = hint,
                        status = %response.status(),
                        error,
                        "the provider refused to revoke the token"
                    );
                }
                Err(e) => tracing::warn!(
                    provider = %config.id,
                    token_type_hint = hint,
                    error = %e,
                    "could not revoke the token"
                ),
            }
        });
    futures_util::future::join_all(calls).await;
}
