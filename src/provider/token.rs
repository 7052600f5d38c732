//! The token endpoint's answer for plain OAuth 2.0 providers (RFC 6749 §5.1, §5.2).
//! Not every server answers as the RFC says: GitHub answers form-encoded unless
//! asked for JSON and reports errors with `200 OK`; Facebook's errors are Graph
//! error objects. All of them end up here as one [`TokenAnswer`] or a typed error.

use http::StatusCode;
use serde_json::{Map, Value};

use super::ProviderError;
use crate::config::{ProviderConfig, TokenAuthMethod};

/// RFC 6749 §2.3.1 client authentication for a form POST to the provider: the
/// HTTP Basic credentials to send, or `None` with `client_id` (and
/// `client_secret`) appended to `form`. A public client (RFC 6749 §4.1.3)
/// identifies itself in the body.
pub(super) fn client_auth<'a>(
    config: &'a ProviderConfig,
    form: &mut Vec<(&'a str, &'a str)>,
) -> Option<(&'a str, &'a str)> {
    let secret = config.client_secret.as_ref().map(|s| s.expose());
    match (secret, config.token_auth_method) {
        (Some(secret), TokenAuthMethod::ClientSecretBasic) => {
            Some((config.client_id.as_str(), secret))
        }
        (Some(secret), TokenAuthMethod::ClientSecretPost) => {
            form.push(("client_id", &config.client_id));
            form.push(("client_secret", secret));
            None
        }
        (None, _) => {
            form.push(("client_id", &config.client_id));
            None
        }
    }
}

/// A successful token answer. Never printed: its fields are bearer credentials.
pub(super) struct TokenAnswer {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<u64>,
}

impl std::fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenAnswer([redacted])")
    }
}

/// Longest provider-supplied text passed on in an error.
const MAX_ERROR_TEXT: usize = 300;

pub(super) fn parse_token_answer(
    status: StatusCode,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<TokenAnswer, ProviderError> {
    let fields = fields(content_type, body)?;
    if let Some(error) = fields.get("error") {
        return Err(rejection(error, fields.get("error_description")));
    }
    if !status.is_success() {
        return Err(ProviderError::InvalidTokenResponse(format!(
            "answered {status} without an OAuth error"
        )));
    }
    let access_token = fields
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ProviderError::InvalidTokenResponse("no access_token".into()))?;
    // §7.1: only bearer tokens can be used as portcullis uses them.
    if let Some(kind) = fields.get("token_type")
        && !kind
            .as_str()
            .is_some_and(|k| k.eq_ignore_ascii_case("bearer"))
    {
        return Err(ProviderError::InvalidTokenResponse(
            "token_type is not bearer".into(),
        ));
    }
    let expires_in = match fields.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        Some(_) => None,
    };
    Ok(TokenAnswer {
        access_token: access_token.to_owned(),
        refresh_token: fields
            .get("refresh_token")
            .and_then(Value::as_str)
            .map(str::to_owned),
        expires_in,
    })
}

/// The answer's fields, from JSON or from a form-encoded body.
fn fields(content_type: Option<&str>, body: &[u8]) -> Result<Map<String, Value>, ProviderError> {
    let essence = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    let is_form = essence.as_deref() == Some("application/x-www-form-urlencoded")
        || (essence.as_deref().is_none_or(|e| e.starts_with("text/"))
            && !body.trim_ascii_start().starts_with(b"{"));
    if is_form {
        return Ok(url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect());
    }
    serde_json::from_slice(body).map_err(|e| {
        ProviderError::InvalidTokenResponse(format!("neither a JSON object nor a form: {e}"))
    })
}

/// RFC 6749 §5.2 `error` (a code), or a Graph error object `{message, type, code}`.
fn rejection(error: &Value, description: Option<&Value>) -> ProviderError {
    let (error, description) = match error {
        Value::Object(graph) => (
            graph
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("error")
                .to_owned(),
            graph.get("message").and_then(Value::as_str),
        ),
        other => (
            other.as_str().unwrap_or("error").to_owned(),
            description.and_then(Value::as_str),
        ),
    };
    ProviderError::TokenRejected {
        error: clip(&error),
        description: description.map(clip),
    }
}

/// Provider text bounded in length and on one line, for pages and logs: it
/// may come through a browser, and a newline in it would forge a log line.
pub(crate) fn clip(text: &str) -> String {
    let mut clipped: String = text
        .chars()
        .take(MAX_ERROR_TEXT)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(MAX_ERROR_TEXT).is_some() {
        clipped.push('…');
    }
    clipped
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: Option<&str> = Some("application/json; charset=utf-8");
    const FORM: Option<&str> = Some("application/x-www-form-urlencoded; charset=utf-8");

    #[test]
    fn json_answer_with_refresh_token_and_lifetime() {
        let body = br#"{"access_token":"at","token_type":"Bearer","expires_in":3600,"refresh_token":"rt"}"#;
        let t = parse_token_answer(StatusCode::OK, JSON, body).unwrap();
        assert_eq!(
            (
                t.access_token.as_str(),
                t.refresh_token.as_deref(),
                t.expires_in
            ),
            ("at", Some("rt"), Some(3600))
        );
    }

    #[test]
    fn githubs_form_encoded_answer() {
        let body = b"access_token=gho_16C7e42F292c6912E7710c838347Ae178B4a&scope=repo%2Cgist&token_type=bearer";
        let t = parse_token_answer(StatusCode::OK, FORM, body).unwrap();
        assert_eq!(t.access_token, "gho_16C7e42F292c6912E7710c838347Ae178B4a");
        assert_eq!(t.expires_in, None);
        // Without a content type, the body's shape decides.
        let t =
            parse_token_answer(StatusCode::OK, None, b"access_token=x&expires_in=28800").unwrap();
        assert_eq!((t.access_token.as_str(), t.expires_in), ("x", Some(28800)));
    }

    #[test]
    fn githubs_200_with_error_is_a_rejection_in_either_form() {
        let form = b"error=bad_verification_code&error_description=The+code+passed+is+incorrect+or+expired.&error_uri=https%3A%2F%2Fdocs.github.com";
        let json = br#"{"error":"bad_verification_code","error_description":"The code passed is incorrect or expired."}"#;
        for (ct, body) in [(FORM, &form[..]), (JSON, &json[..])] {
            match parse_token_answer(StatusCode::OK, ct, body) {
                Err(ProviderError::TokenRejected { error, description }) => {
                    assert_eq!(error, "bad_verification_code");
                    assert_eq!(
                        description.as_deref(),
                        Some("The code passed is incorrect or expired.")
                    );
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn graph_error_object_names_its_message() {
        let body = br#"{"error":{"message":"This authorization code has expired.","type":"OAuthException","code":100,"fbtrace_id":"A1"}}"#;
        match parse_token_answer(StatusCode::BAD_REQUEST, JSON, body) {
            Err(ProviderError::TokenRejected { error, description }) => {
                assert_eq!(error, "OAuthException");
                assert_eq!(
                    description.as_deref(),
                    Some("This authorization code has expired.")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unusable_answers_are_invalid_not_panics() {
        for (status, ct, body) in [
            (StatusCode::OK, JSON, &br#"{"token_type":"bearer"}"#[..]),
            (
                StatusCode::OK,
                JSON,
                br#"{"access_token":"x","token_type":"mac"}"#,
            ),
            (StatusCode::OK, JSON, b"[1,2]"),
            (StatusCode::OK, JSON, b"\xff\xfe"),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Some("text/html"),
                b"<h1>oops</h1>",
            ),
            (StatusCode::BAD_GATEWAY, JSON, br#"{"access_token":"x"}"#),
        ] {
            assert!(
                matches!(
                    parse_token_answer(status, ct, body),
                    Err(ProviderError::InvalidTokenResponse(_))
                ),
                "{status} {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn long_provider_text_is_clipped() {
        let long = "x".repeat(1000);
        assert_eq!(clip(&long).chars().count(), MAX_ERROR_TEXT + 1);
        assert_eq!(clip("short"), "short");
        assert_eq!(clip("a\r\nforged: line"), "a  forged: line");
    }
}
