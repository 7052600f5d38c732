//! `POST /oauth2/backchannel_logout/{provider}`: OpenID Connect Back-Channel
//! Logout 1.0. The provider posts a signed `logout_token` naming a session
//! (`sid`) or a user (`sub`); every portcullis session it names is refused
//! from its next request on (on every replica, with Redis).
//!
//! §2.8: 200 when the logout is done, 400 with an OAuth error body when the
//! token is refused; `Cache-Control: no-store` either way.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;

use crate::session::revocations::Revoke;
use crate::{App, Body, now_unix, respond};

/// A logout token is a few hundred bytes; the form around it is bounded too.
const MAX_BODY: usize = 16 * 1024;
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// `jti`s already acted on, per provider, so a replayed token is refused.
pub struct SeenLogoutTokens(moka::sync::Cache<(String, String), ()>);

impl Default for SeenLogoutTokens {
    fn default() -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(100_000)
                // Longer than a logout token is accepted for (its `iat` age).
                .time_to_live(Duration::from_secs(3600))
                .build(),
        )
    }
}

pub async fn backchannel_logout(
    app: &App,
    req: Request<Incoming>,
    provider_id: &str,
) -> Response<Body> {
    let Some(provider) = app.providers.get(provider_id) else {
        return refused(StatusCode::NOT_FOUND, "unknown provider");
    };
    let body = Limited::new(req.into_body(), MAX_BODY).collect();
    let body = match tokio::time::timeout(BODY_TIMEOUT, body).await {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(_)) => {
            return refused(
                StatusCode::BAD_REQUEST,
                "the body is unreadable or too large",
            );
        }
        Err(_) => {
            return refused(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time",
            );
        }
    };
    let token = url::form_urlencoded::parse(&body)
        .find(|(name, _)| name == "logout_token")
        .map(|(_, value)| value.into_owned());
    let Some(token) = token else {
        return refused(StatusCode::BAD_REQUEST, "no logout_token in the form body");
    };
    let logout = match provider.verify_logout_token(&token).await {
        Ok(logout) => logout,
        Err(e) => {
            tracing::warn!(target: crate::log::AUDIT, provider = provider.id(), error = %e, "back-channel logout refused");
            return refused(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    let first_time = app
        .seen_logout_tokens
        .0
        .entry((provider.id().to_owned(), logout.jti.clone()))
        .or_insert(())
        .is_fresh();
    if !first_time {
        return refused(
            StatusCode::BAD_REQUEST,
            "this logout_token was already used",
        );
    }
    let now = now_unix();
    let target = match (&logout.sid, &logout.sub) {
        (Some(sid), _) => Revoke::Sid {
            provider: provider.id(),
            sid,
        },
        (None, Some(sub)) => Revoke::Sub {
            provider: provider.id(),
            sub,
        },
        // The token's check requires one of them.
        (None, None) => return refused(StatusCode::BAD_REQUEST, "neither sid nor sub"),
    };
    if let Err(e) = app.sessions.revoke(target, now).await {
        // §2.8: the logout could not be done; the provider may retry.
        tracing::warn!(provider = provider.id(), error = %e, "back-channel logout could not reach the session store");
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "the session store cannot be reached",
        );
    }
    tracing::info!(
        target: crate::log::AUDIT,
        provider = provider.id(),
        by_sid = logout.sid.is_some(),
        "back-channel logout"
    );
    no_store(respond::text(StatusCode::OK, ""))
}

fn refused(status: StatusCode, description: &str) -> Response<Body> {
    let body = json!({"error": "invalid_request", "error_description": description});
    respond::json(status, &body)
}

fn no_store(mut resp: Response<Body>) -> Response<Body> {
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}
