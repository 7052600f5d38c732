//! Token refresh (DESIGN §4, §1 phase 5): a session whose access token is
//! about to expire (`session.refresh_before`), or whose last refresh is
//! `session.refresh_interval` old, is refreshed with its refresh token before
//! the request goes on.
//!
//! - One refresh per session at a time: concurrent requests wait for it and
//!   share its outcome. The outcome is kept for [`FLIGHT_MEMORY`], so a request
//!   still carrying the old cookie (sent before the new one arrived) gets the
//!   new session instead of spending a refresh token the provider may have
//!   rotated out.
//! - The provider refusing the refresh (`invalid_grant`, a user disabled
//!   there), a refreshed identity the policy no longer admits, or an answer
//!   that does not verify end the session. So does the login hook refusing
//!   the user, when it is asked again at refresh (`hooks.on_refresh`);
//!   otherwise what it added at sign-in is kept.
//!   With a shared store (Redis), a refusal is first checked against the
//!   stored session: another replica may have refreshed it meanwhile with a
//!   refresh token the provider rotated, and its result is used instead.
//! - A provider that cannot be reached does not: the old tokens go on being
//!   used, and the next attempt waits a backoff (doubling to
//!   [`BACKOFF_MAX`]). `session.lifetime` still ends the session.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};

use crate::App;
use crate::identity::Identity;
use crate::login_hook::{HookCall, HookEvent, Judged};
use crate::metrics::RefreshResult;
use crate::provider::{Provider, RefreshError};
use crate::session::store::SaveError;
use crate::session::{Opened, Session, Tokens};

/// How long a refresh's outcome answers for the session it refreshed.
pub const FLIGHT_MEMORY: Duration = Duration::from_secs(60);
/// The first wait after a provider could not be reached, doubled per failure.
const BACKOFF_FIRST: u64 = 2;
pub const BACKOFF_MAX: u64 = 60;

/// What a refresh made of a session.
pub enum Refreshed {
    /// New tokens: go on with this session, and set these cookies.
    Renewed(Arc<Opened>, Vec<HeaderValue>),
    /// Not refreshed now (provider unreachable, or backing off): go on with
    /// the session as it is.
    Kept,
    /// The session is over; the reason is logged.
    Ended(&'static str),
}

impl Clone for Refreshed {
    fn clone(&self) -> Self {
        match self {
            Self::Renewed(opened, cookies) => Self::Renewed(opened.clone(), cookies.clone()),
            Self::Kept => Self::Kept,
            Self::Ended(why) => Self::Ended(why),
        }
    }
}

pub struct Refresher {
    /// `(session id, refreshed_at)` → the outcome of refreshing that session.
    flights: moka::future::Cache<(String, u64), Refreshed>,
    /// Session id → (failures in a row, Unix seconds before which not to retry).
    backoff: moka::sync::Cache<String, (u32, u64)>,
}

impl Default for Refresher {
    fn default() -> Self {
        Self {
            flights: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(FLIGHT_MEMORY)
                .build(),
            backoff: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(BACKOFF_MAX * 2))
                .build(),
        }
    }
}

/// Whether `session` is due for a refresh at `now`.
pub fn due(app: &App, session: &Session, now: u64) -> bool {
    if session.tokens.refresh_token.is_none() {
        return false;
    }
    let config = &app.config.session;
    let expiring = session
        .tokens
        .access_expires_at
        .is_some_and(|at| at <= now.saturating_add(config.refresh_before.as_secs()));
    let last = session.refreshed_at.max(session.created_at);
    let interval_passed = config
        .refresh_interval
        .is_some_and(|every| now >= last.saturating_add(every.as_secs()));
    expiring || interval_passed
}

impl Refresher {
    /// Refreshes `opened` (once, however many requests ask at the same time).
    pub async fn refresh(
        &self,
        app: &App,
        opened: &Opened,
        headers: &HeaderMap,
        now: u64,
    ) -> Refreshed {
        let session = &opened.session;
        if self
            .backoff
            .get(&session.id)
            .is_some_and(|(_, retry_at)| now < retry_at)
        {
            return Refreshed::Kept;
        }
        let key = (session.id.clone(), session.refreshed_at);
        let outcome = self
            .flights
            .get_with_by_ref(&key, async {
                // Counted once per refresh, not per request that waited for it.
                let outcome = self.refresh_once(app, session, headers, now).await;
                app.metrics.refresh(match outcome {
                    Refreshed::Renewed(..) => RefreshResult::Renewed,
                    Refreshed::Kept => RefreshResult::Kept,
                    Refreshed::Ended(_) => RefreshResult::Ended,
                });
                outcome
            })
            .await;
        if matches!(outcome, Refreshed::Kept) {
            // Not an answer to keep: the next attempt, after the backoff, runs.
            self.flights.invalidate(&key).await;
        }
        outcome
    }

    async fn refresh_once(
        &self,
        app: &App,
        session: &Session,
        headers: &HeaderMap,
        now: u64,
    ) -> Refreshed {
        let Some(provider) = app.providers.get(&session.provider) else {
            return Refreshed::Ended("its provider is no longer configured");
        };
        let Some(refresh_token) = session.tokens.refresh_token.as_deref() else {
            return Refreshed::Kept;
        };
        let signed_in = match provider.refresh(refresh_token, &session.identity.sub).await {
            Ok(signed_in) => signed_in,
            Err(error @ RefreshError::Unavailable { .. }) => {
                let wait = self.back_off(&session.id, now);
                tracing::warn!(target: crate::log::AUDIT, provider = provider.id(), error = %error, retry_in_secs = wait, "cannot refresh the session's tokens; the session goes on with the old ones");
                return Refreshed::Kept;
            }
            Err(error) => {
                // Another replica may have refreshed first, with a refresh
                // token the provider then rotated out: go on with its result.
                if let Some(newer) = app.sessions.stored(&session.id).await
                    && newer.refreshed_at > session.refreshed_at
                {
                    tracing::debug!(provider = provider.id(), "refreshed elsewhere meanwhile");
                    return Refreshed::Renewed(Arc::new(Opened::new(newer)), Vec::new());
                }
                tracing::info!(target: crate::log::AUDIT, provider = provider.id(), sub = session.identity.sub.as_str(), %error, "refresh refused; the session ends");
                return Refreshed::Ended("the provider refused the refresh");
            }
        };
        self.backoff.invalidate(&session.id);
        let mut renewed = session.clone();
        if !signed_in.claims.is_empty() {
            let wanted = app.routes.wanted_claims();
            let identity = match Identity::from_claims(&signed_in.claims, wanted) {
                // A new id_token says all; userinfo alone may leave out what
                // only the first id_token said.
                Ok(identity) if signed_in.tokens.id_token.is_some() => identity,
                Ok(identity) => identity.filled_from(&session.identity),
                Err(_) => return Refreshed::Ended("the refreshed identity is unusable"),
            };
            let added = match app.login_hook.as_ref().filter(|hook| hook.on_refresh()) {
                Some(hook) => {
                    let call = HookCall {
                        event: HookEvent::Refresh,
                        provider: provider.id(),
                        identity: &identity,
                        claims: &signed_in.claims,
                        ip: None,
                        headers,
                    };
                    match hook.judge(&call, &app.metrics).await {
                        Judged::Admit(added) => added,
                        Judged::Unanswered => session.identity.added.clone(),
                        Judged::Denied(_) => {
                            return Refreshed::Ended("the login hook refused the user");
                        }
                        Judged::Failed(_) => {
                            return Refreshed::Ended(
                                "the login hook failed (hooks.on_error = \"deny\")",
                            );
                        }
                    }
                }
                None => session.identity.added.clone(),
            };
            let identity = identity.with_added(added);
            if let Err(denied) = app.routes.policy().admits(&identity) {
                tracing::info!(target: crate::log::AUDIT, provider = provider.id(), sub = identity.sub.as_str(), reason = %denied, "refreshed identity no longer admitted; the session ends");
                return Refreshed::Ended("the policy no longer admits the user");
            }
            renewed.identity = identity;
        }
        renewed.tokens = merge_tokens(app, provider, &session.tokens, signed_in.tokens);
        renewed.refreshed_at = now;
        renewed.last_seen_at = now;
        match app.sessions.save(renewed, headers).await {
            Ok((opened, cookies)) => {
                tracing::debug!(provider = provider.id(), "session refreshed");
                Refreshed::Renewed(opened, cookies)
            }
            Err(SaveError::Unavailable(_)) => Refreshed::Kept,
            Err(SaveError::TooLarge(e)) => {
                tracing::warn!(error = %e, "the refreshed session cannot be stored; the session ends");
                Refreshed::Ended("the refreshed session is too large")
            }
        }
    }

    /// Records a failure; the seconds until the next attempt.
    fn back_off(&self, id: &str, now: u64) -> u64 {
        let failures = self.backoff.get(id).map_or(0, |(n, _)| n) + 1;
        let wait = BACKOFF_FIRST
            .saturating_mul(1 << (failures - 1).min(10))
            .min(BACKOFF_MAX);
        self.backoff.insert(id.to_owned(), (failures, now + wait));
        wait
    }
}

/// The refreshed tokens, with what the provider did not send again kept from
/// before (a refresh token it did not rotate, the id_token), and only those
/// the session keeps at all.
fn merge_tokens(app: &App, provider: &Provider, old: &Tokens, new: Tokens) -> Tokens {
    let merged = Tokens {
        access_token: new.access_token.or_else(|| old.access_token.clone()),
        refresh_token: new.refresh_token.or_else(|| old.refresh_token.clone()),
        id_token: new.id_token.or_else(|| old.id_token.clone()),
        access_expires_at: new.access_expires_at,
    };
    super::kept_tokens(app, provider, merged)
}
