//! Bearer tokens in place of a session (`[access] bearer_tokens`, issue #13):
//! `Authorization: Bearer <token>` becomes an [`Opened`] made from the token's
//! claims, identity mapped as at sign-in, so that `admit`, identity headers,
//! the access log and metrics treat it as they treat a session. It is never
//! stored, refreshed, touched or written to a cookie.
//!
//! A JWT goes to the OpenID Connect provider whose issuer its `iss` names, to
//! be verified against that provider's keys (the ones sign-in uses); any
//! other token to each provider with `introspection = true` in turn (RFC
//! 7662). Verdicts are cached by the token itself, bounded in bytes: a
//! repeated token costs one fast hash and one lookup. An accepted token's entry lives until
//! its `exp` and at most [`MAX_ACCEPTED`] (an introspected one at most
//! `[access] introspection_cache`); a refusal [`REFUSED`], so a bad token
//! cannot make portcullis hammer the provider.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use serde_json::{Map, Value};

use super::{Authenticated, AuthnError};
use crate::App;
use crate::identity::Identity;
use crate::metrics::BearerResult;
use crate::provider::{BearerError, Provider};
use crate::session::{Opened, Session, Tokens};

/// Bytes of verdicts remembered at most: each weighs its token and
/// [`ENTRY_WEIGHT`] for the principal made of it (a few thousand tokens).
const CAPACITY_BYTES: u64 = 8 * 1024 * 1024;
const ENTRY_WEIGHT: usize = 1024;
/// An accepted JWT is checked again at least this often (its key may be
/// withdrawn from the JWKS).
pub const MAX_ACCEPTED: Duration = Duration::from_secs(300);
/// How long a refused token stays refused without being looked at again.
pub const REFUSED: Duration = Duration::from_secs(10);
/// How long a provider that could not answer is not asked again about a token.
pub const UNAVAILABLE: Duration = Duration::from_secs(5);

/// The token of `Authorization: Bearer <token>`, if the request has one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// What was made of a token, cached.
#[derive(Clone)]
enum Verdict {
    Accepted(Arc<Opened>, BearerResult),
    Refused(&'static str),
    Unavailable(Arc<str>),
}

#[derive(Clone)]
struct Entry {
    verdict: Verdict,
    lives: Duration,
}

struct Lifetime;

impl moka::Expiry<Arc<str>, Entry> for Lifetime {
    fn expire_after_create(&self, _: &Arc<str>, entry: &Entry, _: Instant) -> Option<Duration> {
        Some(entry.lives)
    }
}

/// The verdicts on tokens seen lately, by the token: compared whole, so no
/// two tokens share a verdict, and hashed with a per-process seed (as the
/// opened-session cache is), so no client can aim tokens at one bucket. A
/// cryptographic digest would cost a repeated token more than everything
/// else it goes through.
pub struct BearerCache {
    entries: moka::future::Cache<Arc<str>, Entry, foldhash::fast::RandomState>,
}

impl Default for BearerCache {
    fn default() -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .weigher(weight)
                .max_capacity(CAPACITY_BYTES)
                .expire_after(Lifetime)
                .build_with_hasher(foldhash::fast::RandomState::default()),
        }
    }
}

/// A cached verdict's weight: its token, and the principal made of it.
fn weight(token: &Arc<str>, _: &Entry) -> u32 {
    u32::try_from(token.len() + ENTRY_WEIGHT).unwrap_or(u32::MAX)
}

/// The request's principal from its bearer token: a session made from the
/// token, or no session and why the token was refused.
pub(super) async fn authenticate(app: &App, token: &str) -> Result<Authenticated, AuthnError> {
    // A token seen before costs this look-up alone; checking a new one is
    // boxed, so its (large) future is not carried by every bearer request.
    let verdict = match app.bearer.entries.get(token).await {
        Some(seen) => seen.verdict,
        None => Box::pin(check_once(app, token)).await,
    };
    let answer = |session, refused_token| Authenticated {
        session,
        set_cookies: Vec::new(),
        refused_token,
    };
    let (result, outcome) = match verdict {
        Verdict::Accepted(opened, result) => (result, Ok(answer(Some(opened), None))),
        Verdict::Refused(reason) => (BearerResult::Invalid, Ok(answer(None, Some(reason)))),
        Verdict::Unavailable(why) => (
            BearerResult::Unavailable,
            Err(AuthnError::Provider(why.to_string())),
        ),
    };
    app.metrics.bearer_token(result);
    outcome
}

/// The verdict on a token not in the cache, which it enters; concurrent
/// requests with one new token wait for one check.
async fn check_once(app: &App, token: &str) -> Verdict {
    app.bearer
        .entries
        .get_with(Arc::from(token), async {
            let (verdict, lives) = judge(app, token, crate::now_unix()).await;
            if let Verdict::Refused(reason) = &verdict {
                tracing::info!(target: crate::log::AUDIT, reason, "bearer token refused");
            }
            Entry { verdict, lives }
        })
        .await
        .verdict
}

/// Verifies `token` (no cache) and says how long the verdict holds.
async fn judge(app: &App, token: &str, now: u64) -> (Verdict, Duration) {
    let checked = match unverified_iss(token) {
        Some(iss) => match app.providers.iter().find(|p| p.issues(&iss)) {
            Some(provider) => provider
                .verify_access_token(token)
                .await
                .map(|claims| (provider, claims, BearerResult::Accepted)),
            None => Err(BearerError::Invalid(
                "no configured OpenID Connect provider has the token's issuer (iss)",
            )),
        },
        None => introspect(app, token).await,
    };
    let (provider, claims, result) = match checked {
        Ok(checked) => checked,
        Err(BearerError::Invalid(reason)) => return (Verdict::Refused(reason), REFUSED),
        Err(BearerError::Unavailable(why)) => {
            tracing::warn!(error = %why, "a bearer token could not be checked");
            return (Verdict::Unavailable(why.into()), UNAVAILABLE);
        }
    };
    let Ok(identity) = Identity::from_claims(&claims, app.routes.wanted_claims()) else {
        return (
            Verdict::Refused("the token's claims name no usable user (sub)"),
            REFUSED,
        );
    };
    let cap = match result {
        BearerResult::Introspected => app.config.access.introspection_cache,
        _ => MAX_ACCEPTED,
    };
    let exp = claims.get("exp").and_then(Value::as_u64);
    let expires_at = exp.unwrap_or_else(|| now.saturating_add(cap.as_secs()));
    let lives = Duration::from_secs(expires_at.saturating_sub(now)).min(cap);
    if lives.is_zero() {
        return (Verdict::Refused("the token has expired"), REFUSED);
    }
    let created_at = claims.get("iat").and_then(Value::as_u64).unwrap_or(now);
    let session = Session {
        id: String::new(),
        provider: provider.id().to_owned(),
        identity,
        tokens: Tokens {
            // For `pass_access_token`: the token is the access token.
            access_token: app.routes.passes_access_token().then(|| token.to_owned()),
            refresh_token: None,
            id_token: None,
            access_expires_at: exp,
        },
        created_at,
        expires_at,
        last_seen_at: now,
        sid: None,
        refreshed_at: now,
    };
    (
        Verdict::Accepted(Arc::new(Opened::from_bearer(session)), result),
        lives,
    )
}

/// Each provider with `introspection = true` in turn, until one says the
/// token is active; unavailable only when none said so and one could not answer.
async fn introspect<'a>(
    app: &'a App,
    token: &str,
) -> Result<(&'a Provider, Map<String, Value>, BearerResult), BearerError> {
    let mut refusal = BearerError::Invalid(
        "the token is not a JWT, and no provider introspects tokens (introspection = true)",
    );
    for provider in app.providers.iter().filter(|p| p.introspects()) {
        match provider.introspect(token).await {
            Ok(claims) => return Ok((provider, claims, BearerResult::Introspected)),
            Err(e @ BearerError::Unavailable(_)) => refusal = e,
            Err(e) if matches!(refusal, BearerError::Invalid(_)) => refusal = e,
            Err(_) => {}
        }
    }
    Err(refusal)
}

/// A JWS's `iss`, unverified: only to choose the provider that verifies it.
/// `None` when `token` is not a JWS in compact form (an opaque token).
fn unverified_iss(token: &str) -> Option<String> {
    /// Only `iss` is read; the other claims are skipped, not built.
    #[derive(serde::Deserialize)]
    struct Issuer {
        iss: String,
    }
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
    Some(serde_json::from_slice::<Issuer>(&payload).ok()?.iss)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn the_bearer_scheme_is_read_case_insensitively() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, HeaderValue::from_static(v));
            h
        };
        assert_eq!(bearer_token(&with("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&with("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(&with("Basic YWJj")), None);
        assert_eq!(bearer_token(&with("Bearer ")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn only_a_compact_jws_naming_an_issuer_goes_to_a_provider() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"https://idp.example"}"#);
        assert_eq!(
            unverified_iss(&format!("e30.{payload}.sig")).as_deref(),
            Some("https://idp.example")
        );
        assert_eq!(unverified_iss("opaque-token"), None);
        assert_eq!(unverified_iss(&format!("e30.{payload}.sig.x.y")), None);
        let no_iss = URL_SAFE_NO_PAD.encode(br#"{"sub":"a"}"#);
        assert_eq!(unverified_iss(&format!("e30.{no_iss}.sig")), None);
    }
}
