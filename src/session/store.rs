//! Where sessions live (DESIGN §4, §10): one [`Sessions`] for every request
//! path, over a backend. The cookie backend keeps the whole session sealed in
//! the browser's cookies ([`SessionCookies`]); a Redis backend keeps it
//! server-side and the cookie names it.
//!
//! Every backend hands out [`Opened`] sessions (a session and the identity
//! headers made from it, cached together), checks expiry, idle time and
//! revocation on every request, and writes a session back at sign-in, after
//! a refresh, and at most once a minute to move its idle clock.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue};

use super::cookies::{Loaded, SessionCookies, TooLarge};
use super::redis::SetupError;
use super::revocations::{Revocations, Revoke};
use super::{Opened, Session};
use crate::config::{SessionConfig, StoreConfig};
use redis_backend::RedisBackend;

mod redis_backend;

/// The session store cannot be reached (Redis down): a request that needs a
/// session it has not cached gets a 503, and no session is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the session store cannot be reached")]
pub struct Unavailable;

/// Why a session could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("{0}")]
    TooLarge(#[from] TooLarge),
    #[error("{0}")]
    Unavailable(#[from] Unavailable),
}

/// Sessions, whatever holds them.
pub struct Sessions {
    /// The session cookie(s) and the sign-in flow cookies.
    pub cookies: SessionCookies,
    backend: Backend,
    /// Shared with the sessions of earlier configurations (hot reload).
    revocations: Arc<Revocations>,
    idle_timeout: Option<u64>,
}

/// What holds the sessions. A Redis backend (`session.store = "redis"`) keeps
/// each session sealed in Redis under its id; the session cookie then holds
/// only a sealed handle naming that id, written once at sign-in. In front of
/// Redis it keeps its own cache of [`Opened`] sessions (keyed by the sealed
/// handle, so a hit costs what the cookie backend's costs), which Redis
/// pub/sub invalidations empty. `load` misses go to Redis (`Unavailable` when
/// it cannot be reached); `save` writes the record (a refresh or a touch sets
/// no cookie); `end` and `revoke` delete records on every replica at once,
/// and are also put in [`Revocations`] so this instance refuses them at once.
enum Backend {
    /// The whole session in the cookie: nothing server-side but [`Revocations`].
    Cookie,
    /// See [`redis_backend`]. Boxed: the cookie store is the common one.
    Redis(Box<RedisBackend>),
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("cookies", &self.cookies)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// With `store = "redis"`, starts connecting in the background (needs a
    /// Tokio runtime); never waits for Redis.
    pub fn new(config: &SessionConfig) -> Result<Self, SetupError> {
        let backend = match &config.store {
            StoreConfig::Cookie => Backend::Cookie,
            StoreConfig::Redis(redis) => {
                Backend::Redis(Box::new(RedisBackend::new(redis, config)?))
            }
        };
        Ok(Self {
            cookies: SessionCookies::new(config),
            backend,
            revocations: Arc::new(Revocations::new(config.lifetime)),
            idle_timeout: config.idle_timeout.map(|idle| idle.as_secs()),
        })
    }

    /// Counts into `opened` where each cookie session comes from (cache or
    /// decryption).
    pub fn counting(mut self, opened: crate::metrics::OpenedCount) -> Self {
        self.cookies.opened_count = opened;
        self
    }

    /// Keeps refusing what `previous` revoked (a reload builds new sessions).
    pub fn keeping_revocations(mut self, previous: &Sessions) -> Self {
        self.revocations = previous.revocations.clone();
        self
    }

    /// Sessions can be loaded and saved (`/oauth2/readyz`): always with the
    /// cookie store; with Redis, while it answers and invalidations are heard.
    pub fn is_up(&self) -> bool {
        match &self.backend {
            Backend::Cookie => true,
            Backend::Redis(redis) => redis.is_up(),
        }
    }

    /// The request's session, if it carries one usable at `now`, and the
    /// Set-Cookie values clearing cookies that held none.
    pub async fn load(&self, headers: &HeaderMap, now: u64) -> Result<Loaded, Unavailable> {
        let loaded = match &self.backend {
            Backend::Cookie => self.cookies.load(headers, now),
            Backend::Redis(redis) => {
                redis
                    .load(&self.cookies, headers, now, self.idle_timeout)
                    .await?
            }
        };
        match &loaded.session {
            Some(opened) if self.revocations.is_revoked(opened) => {
                tracing::debug!("session revoked");
                Ok(Loaded {
                    session: None,
                    clear: self.cookies.clear(headers),
                })
            }
            _ => Ok(loaded),
        }
    }

    /// Writes `session` (new, refreshed or touched): the [`Opened`] session
    /// the request goes on with, and the Set-Cookie values for its response.
    pub async fn save(
        &self,
        session: Session,
        request_headers: &HeaderMap,
    ) -> Result<(Arc<Opened>, Vec<HeaderValue>), SaveError> {
        match &self.backend {
            Backend::Cookie => {
                let cookies = self.cookies.store(&session, request_headers)?;
                Ok((Arc::new(Opened::new(session)), cookies))
            }
            Backend::Redis(redis) => {
                let now = crate::now_unix();
                Ok(redis
                    .save(&self.cookies, session, request_headers, now)
                    .await?)
            }
        }
    }

    /// The session `id` as the shared store holds it now, past every cache:
    /// what another replica may have written since this one cached it. The
    /// cookie store shares nothing: `None`.
    pub async fn stored(&self, id: &str) -> Option<Session> {
        match &self.backend {
            Backend::Cookie => None,
            Backend::Redis(redis) => redis.stored(id).await.ok().flatten(),
        }
    }

    /// Whether to write `session` back with `last_seen_at = now`, so that an
    /// idle timeout counts from the last request: at most once a minute (a
    /// quarter of an idle timeout under four minutes), never on every request.
    pub fn needs_touch(&self, session: &Session, now: u64) -> bool {
        let Some(idle) = self.idle_timeout else {
            return false;
        };
        let every = (idle / 4).min(60);
        now.saturating_sub(session.last_seen_at) > every
    }

    /// Ends `session` for good (sign-out, a refresh the provider refused):
    /// no copy of its cookie opens again here. The Set-Cookie values delete
    /// every portcullis cookie the request carried.
    pub async fn end(
        &self,
        session: Option<&Session>,
        request_headers: &HeaderMap,
        now: u64,
    ) -> Vec<HeaderValue> {
        if let Some(session) = session {
            self.revocations.revoke(Revoke::Session(&session.id), now);
        }
        if let Backend::Redis(redis) = &self.backend
            && let Some(id) = redis.end(&self.cookies, session, request_headers).await
        {
            self.revocations.revoke(Revoke::Session(&id), now);
        }
        self.cookies.clear_all(request_headers)
    }

    /// `plaintext` sealed for `purpose` (the associated data), for state that
    /// travels through a browser or a provider and must come back unchanged.
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> String {
        self.cookies.keys.seal(purpose, plaintext)
    }

    /// What [`seal`](Self::seal) sealed for `purpose`, if `sealed` is that.
    pub fn open(&self, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
        self.cookies.keys.open(purpose, sealed).ok()
    }

    /// Every session `target` names is refused from its next request on.
    /// With Redis, on every replica: the records go, and each replica drops
    /// its cached copies as the invalidations arrive.
    pub async fn revoke(&self, target: Revoke<'_>, now: u64) -> Result<(), Unavailable> {
        self.revocations.revoke(target, now);
        let Backend::Redis(redis) = &self.backend else {
            return Ok(());
        };
        match target {
            Revoke::Session(id) => redis.delete(id).await,
            Revoke::Sid { provider, sid } => redis.delete_by_sid(provider, sid).await,
            Revoke::Sub { provider, sub } => redis.delete_by_sub(provider, sub).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::session::tests::{a_session, session_config};

    #[test]
    fn touch_at_most_once_a_minute_and_only_with_an_idle_timeout() {
        let with_idle = |idle: Option<u64>| {
            let mut config = session_config("0123456789abcdef0123456789abcdef", &[]);
            config.idle_timeout = idle.map(Duration::from_secs);
            Sessions::new(&config).unwrap()
        };
        let sess = a_session(1_000);
        assert!(!with_idle(None).needs_touch(&sess, sess.last_seen_at + 10_000));

        let idle_2h = with_idle(Some(7200));
        assert!(!idle_2h.needs_touch(&sess, sess.last_seen_at + 60));
        assert!(idle_2h.needs_touch(&sess, sess.last_seen_at + 61));

        let idle_2m = with_idle(Some(120));
        assert!(!idle_2m.needs_touch(&sess, sess.last_seen_at + 30));
        assert!(idle_2m.needs_touch(&sess, sess.last_seen_at + 31));
    }
}
