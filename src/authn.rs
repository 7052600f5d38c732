//! The one authentication step (DESIGN §1 phases 3–5, §10), shared by the
//! proxy, forward-auth and userinfo: which session a request carries, what
//! the matched rule makes of it, and the identity headers it sends upstream.

use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue};

pub mod bearer;
pub mod refresh;

use crate::App;
use crate::assertion::ASSERTION_HEADER;
use crate::identity::encode_header_value;
use crate::now_unix;
use crate::policy::{Denied, Policy, Requirement};
use crate::provider::Provider;
use crate::routes::{HeaderSet, Route};
use crate::session::{Opened, Session, Tokens, Unavailable, UpstreamHeaders};
use refresh::Refreshed;

pub const ACCESS_TOKEN_HEADER: &str = "x-forwarded-access-token";

/// The principal of this request, if any (a session, or one made from a
/// bearer token), and the Set-Cookie values the response must carry
/// (clearing a bad cookie, or writing the session back).
pub struct Authenticated {
    pub session: Option<Arc<Opened>>,
    pub set_cookies: Vec<HeaderValue>,
    /// The request's bearer token was refused, for this reason (never the
    /// token): where a principal is needed it gets `401 invalid_token`, never
    /// a redirect to sign in.
    pub refused_token: Option<&'static str>,
}

/// Why no principal could be established.
#[derive(Debug)]
pub enum AuthnError {
    /// The session store cannot be reached for a session it has not cached.
    Store(Unavailable),
    /// A bearer token cannot be checked now: its provider's keys are not
    /// loaded, or its introspection endpoint does not answer.
    Provider(String),
}

impl From<Unavailable> for AuthnError {
    fn from(e: Unavailable) -> Self {
        Self::Store(e)
    }
}

/// The request's principal. With `[access] bearer_tokens` and an
/// `Authorization: Bearer` header, the token's (see [`bearer`]); the session
/// cookie, if any, is then left alone. Otherwise loads the request's session,
/// refreshes its tokens when they are due, and moves its idle clock.
pub async fn authenticate(app: &App, headers: &HeaderMap) -> Result<Authenticated, AuthnError> {
    if app.config.access.bearer_tokens
        && let Some(token) = bearer::bearer_token(headers)
    {
        return Box::pin(bearer::authenticate(app, token)).await;
    }
    let now = now_unix();
    let loaded = app.sessions.load(headers, now).await?;
    let mut set_cookies = loaded.clear;
    let mut session = loaded.session;
    if let Some(opened) = session
        .as_mut()
        .filter(|o| refresh::due(app, &o.session, now))
    {
        // Boxed: only a request that refreshes carries the refresh's future.
        match Box::pin(app.refresher.refresh(app, opened, headers, now)).await {
            Refreshed::Renewed(renewed, cookies) => {
                *opened = renewed;
                set_cookies.extend(cookies);
            }
            Refreshed::Kept => {}
            Refreshed::Ended(why) => {
                tracing::info!(target: crate::log::AUDIT, provider = %opened.session.provider, sub = opened.session.identity.sub.as_str(), why, "session ended at refresh");
                let ended = app.sessions.end(Some(&opened.session), headers, now).await;
                set_cookies.extend(ended);
                return Ok(Authenticated {
                    session: None,
                    set_cookies,
                    refused_token: None,
                });
            }
        }
    } else if let Some(opened) = session
        .as_mut()
        .filter(|o| app.sessions.needs_touch(&o.session, now))
    {
        let mut touched = opened.session.clone();
        touched.last_seen_at = now;
        match app.sessions.save(touched, headers).await {
            Ok((saved, cookies)) => {
                *opened = saved;
                set_cookies.extend(cookies);
            }
            // The session goes on; its idle clock moves on a later request.
            Err(e) => tracing::warn!(error = %e, "session not written back"),
        }
    }
    Ok(Authenticated {
        session,
        set_cookies,
        refused_token: None,
    })
}

/// What the matched rule makes of a request's session.
pub enum Admission<'s> {
    /// Let through without identity: a public path, with no session or with
    /// a user the policy refuses (on a public path they are simply anonymous).
    Anonymous,
    /// Let through as this user.
    User(&'s Opened),
    /// Signed in, but refused.
    Denied(Denied),
    /// Not signed in where that is needed; `api` from the rule.
    SignInFirst { api: bool },
    /// The request's bearer token was refused, for this reason, where a
    /// principal is needed: `401 invalid_token`, never a sign-in.
    InvalidToken(&'static str),
}

/// The one admission decision, for the proxy path and for forward-auth,
/// under the request's route's `policy`.
pub fn admit<'s>(
    policy: &Policy,
    authenticated: &'s Authenticated,
    requirement: &Requirement<'_>,
) -> Admission<'s> {
    match (authenticated.session.as_deref(), requirement) {
        (Some(opened), Requirement::Public | Requirement::SignedIn { .. }) => {
            match policy.authorize(&opened.session.identity, requirement) {
                Ok(()) => Admission::User(opened),
                Err(_) if *requirement == Requirement::Public => Admission::Anonymous,
                Err(denied) => Admission::Denied(denied),
            }
        }
        (_, Requirement::Preflight) | (None, Requirement::Public) => Admission::Anonymous,
        (None, Requirement::SignedIn { api, .. }) => match authenticated.refused_token {
            Some(reason) => Admission::InvalidToken(reason),
            None => Admission::SignInFirst { api: *api },
        },
    }
}

/// Identity headers from the route's header map (`[headers]` unless it has
/// its own), plus the tokens and the signed assertion when configured. Made
/// once per opened session and header map (see [`Opened`]); each request
/// clones them, a reference count per value (the assertion is signed again
/// when it nears expiry).
pub fn set_identity_headers(app: &App, route: &Route, headers: &mut HeaderMap, opened: &Opened) {
    let sets = app.routes.header_sets().len();
    let set = app.routes.header_set(route);
    let made = opened.upstream_headers(route.header_set_index(), sets, |session| {
        identity_headers(set, session)
    });
    for (name, value) in &made.fixed {
        headers.insert(name.clone(), value.clone());
    }
    if let (Some(cached), Some(signer)) = (&made.assertion, &set.assertion)
        && let Some(value) = cached.current(signer, &opened.session, now_unix())
    {
        headers.insert(HeaderName::from_static(ASSERTION_HEADER), value);
    }
}

fn identity_headers(set: &HeaderSet, session: &Session) -> UpstreamHeaders {
    let mut made = Vec::with_capacity(set.map.len() + 2);
    for (name, claim) in &set.map {
        // "provider" names the provider that signed the user in (the session's).
        let value = match claim.as_str() {
            "provider" => encode_header_value(&session.provider),
            claim => session.identity.header_value(claim),
        };
        if let Some(value) = value {
            made.push((name.clone(), value));
        }
    }
    let tokens = &session.tokens;
    if set.pass_access_token
        && let Some(v) = tokens
            .access_token
            .as_deref()
            .and_then(|t| HeaderValue::from_str(t).ok())
    {
        made.push((HeaderName::from_static(ACCESS_TOKEN_HEADER), v));
    }
    if set.pass_id_token
        && let Some(v) = tokens
            .id_token
            .as_deref()
            .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
    {
        made.push((AUTHORIZATION, v));
    }
    UpstreamHeaders {
        fixed: made.into_boxed_slice(),
        assertion: set.assertion.as_ref().map(|_| Default::default()),
    }
}

/// Of a provider's tokens, only those something reads: the session travels in
/// a cookie (or sits in Redis), and a token kept for nothing is one more
/// secret to lose. The refresh token for refreshing; the access token for the
/// upstream (of any route) or for revocation at sign-out; the id_token for an upstream or
/// as the end-session `id_token_hint`.
pub fn kept_tokens(app: &App, provider: &Provider, tokens: Tokens) -> Tokens {
    let routes = &app.routes;
    let refreshes = provider.can_refresh() && tokens.refresh_token.is_some();
    Tokens {
        access_token: tokens
            .access_token
            .filter(|_| routes.passes_access_token() || provider.revocation_url().is_some()),
        id_token: tokens
            .id_token
            .filter(|_| routes.passes_id_token() || provider.logs_out_at_provider()),
        refresh_token: tokens.refresh_token.filter(|_| refreshes),
        access_expires_at: tokens.access_expires_at,
    }
}
