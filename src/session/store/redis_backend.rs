//! The Redis arm of [`Sessions`](super::Sessions): the session cookie holds a
//! sealed handle naming the session id, the session itself is in Redis
//! ([`RedisSessions`]), and a local cache of opened sessions, keyed by the
//! handle as the browser sends it, spares Redis (and the cipher) on nearly
//! every request.
//!
//! The cache follows Redis' invalidations: a session ended on any replica is
//! dropped here as soon as the message arrives (well under a second), and
//! everything is dropped after the subscription was lost. Entries also live
//! at most [`FALLBACK_TTL`]: the one bound on staleness when a message is
//! lost in a way nobody noticed yet (a connection that died silently is found
//! by the next PING, a second or two later), and how a touch or a refresh
//! written by another replica reaches this one (saves publish nothing: every
//! touch would otherwise empty every replica's entry for that session).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::super::cookies::{Loaded, SessionCookies};
use super::super::redis::{Invalidation, RedisSessions, SessionDigest, SetupError};
use super::super::{Opened, Session};
use super::Unavailable;
use crate::config::{RedisConfig, SessionConfig};

/// How long a cached session is used without asking Redis again. Short
/// enough that a missed invalidation, or another replica's refresh, shows
/// here soon; long enough that an active session costs Redis one GET per
/// replica per half minute.
pub const FALLBACK_TTL: Duration = Duration::from_secs(30);
/// What `new_session_id` makes: 32 bytes in base64url, unpadded.
const SESSION_ID_LEN: usize = 43;
/// Bytes of opened sessions kept (estimated): a few thousand typical sessions.
const CACHE_BYTES: u64 = 4 * 1024 * 1024;

pub(super) struct RedisBackend {
    redis: RedisSessions,
    cache: Cache,
    /// The handle's associated data: not the cookie store's, so that a cookie
    /// written by one store never opens as the other's when an operator
    /// switches (it is cleared, and the user signs in again).
    purpose: String,
}

/// Opened sessions by handle, and the handle of each cached session by its
/// id's digest (what invalidations name). One handle per session: it is
/// written once, at sign-in.
#[derive(Clone)]
struct Cache {
    opened: moka::sync::Cache<Bytes, Arc<Opened>, foldhash::fast::RandomState>,
    handles: moka::sync::Cache<SessionDigest, Bytes, foldhash::fast::RandomState>,
    /// Moves on every invalidation: a load that began before one does not
    /// cache what it read (the session may have ended meanwhile).
    generation: Arc<AtomicU64>,
}

impl RedisBackend {
    /// Starts connecting and following invalidations in the background.
    pub(super) fn new(redis: &RedisConfig, session: &SessionConfig) -> Result<Self, SetupError> {
        let redis = RedisSessions::new(redis, session)?;
        let cache = Cache::new();
        tokio::spawn(cache.clone().follow(redis.subscribe()));
        Ok(Self {
            redis,
            cache,
            purpose: format!("{} redis handle", session.cookie_name),
        })
    }

    pub(super) fn is_up(&self) -> bool {
        self.redis.is_up()
    }

    /// The session the request's handle names, if it is usable at `now`.
    /// `Err` only on a cache miss with Redis unreachable.
    pub(super) async fn load(
        &self,
        cookies: &SessionCookies,
        headers: &HeaderMap,
        now: u64,
        idle: Option<u64>,
    ) -> Result<Loaded, Unavailable> {
        let refused = |reason: &str| {
            tracing::debug!(reason, "no session from the request's cookie");
            Ok(Loaded {
                session: None,
                clear: cookies.clear(headers),
            })
        };
        let Some(carried) = cookies.carried_handle(headers) else {
            return Ok(Loaded {
                session: None,
                clear: Vec::new(),
            });
        };
        let Some(handle) = carried else {
            return refused("the session cookie is not one handle");
        };
        if let Some(opened) = self.cache.opened.get(handle) {
            // Unusable as cached may be usable as stored: another replica's
            // touch moves the idle clock, and only Redis knows of it.
            if opened.session.unusable_at(now, idle).is_none() {
                return Ok(Loaded {
                    session: Some(opened),
                    clear: Vec::new(),
                });
            }
            self.cache.opened.invalidate(handle);
        }
        let Some(id) = self.open_handle(cookies, handle) else {
            return refused("the session cookie does not open");
        };
        let generation = self.cache.generation();
        let Some(session) = self.redis.load(&id).await? else {
            return refused("the session ended or expired");
        };
        if let Some(reason) = session.unusable_at(now, idle) {
            return refused(reason);
        }
        let opened = Arc::new(Opened::new(session));
        self.cache
            .insert(Bytes::copy_from_slice(handle), &opened, generation);
        Ok(Loaded {
            session: Some(opened),
            clear: Vec::new(),
        })
    }

    /// Writes `session` to Redis. A session the request's handle already
    /// names (touched, refreshed) needs no cookie; a new one gets a handle.
    pub(super) async fn save(
        &self,
        cookies: &SessionCookies,
        session: Session,
        request_headers: &HeaderMap,
        now: u64,
    ) -> Result<(Arc<Opened>, Vec<HeaderValue>), Unavailable> {
        let generation = self.cache.generation();
        self.redis.save(&session, now).await?;
        let carried = cookies
            .carried_handle(request_headers)
            .flatten()
            .filter(|handle| self.open_handle(cookies, handle).as_ref() == Some(&session.id));
        let (handle, set_cookies) = match carried {
            Some(handle) => (Bytes::copy_from_slice(handle), Vec::new()),
            None => {
                let handle = cookies.keys.seal(&self.purpose, session.id.as_bytes());
                let max_age = session.expires_at.saturating_sub(now);
                let set = cookies.store_handle(&handle, max_age, request_headers);
                (Bytes::from(handle), set)
            }
        };
        let opened = Arc::new(Opened::new(session));
        self.cache.insert(handle, &opened, generation);
        Ok((opened, set_cookies))
    }

    /// Ends the session, on every replica: `session`, or else the one the
    /// request's handle names (a session that did not load, with Redis down
    /// or unusable here, may still be stored). Returns the id it ended.
    pub(super) async fn end(
        &self,
        cookies: &SessionCookies,
        session: Option<&Session>,
        request_headers: &HeaderMap,
    ) -> Option<String> {
        let id = match session {
            Some(session) => Some(session.id.clone()),
            None => cookies
                .carried_handle(request_headers)
                .flatten()
                .and_then(|handle| self.open_handle(cookies, handle)),
        };
        let id = id?;
        if self.redis.delete(&id).await.is_err() {
            tracing::warn!(
                "sign-out: Redis is unreachable, so the session stays stored until it expires; this replica refuses it, and the browser's cookie is deleted"
            );
        }
        Some(id)
    }

    /// The session as Redis holds it now, past the local cache.
    pub(super) async fn stored(&self, id: &str) -> Result<Option<Session>, Unavailable> {
        self.redis.load(id).await
    }

    pub(super) async fn delete_by_sid(&self, provider: &str, sid: &str) -> Result<(), Unavailable> {
        self.redis.delete_by_sid(provider, sid).await.map(drop)
    }

    pub(super) async fn delete_by_sub(&self, provider: &str, sub: &str) -> Result<(), Unavailable> {
        self.redis.delete_by_sub(provider, sub).await.map(drop)
    }

    pub(super) async fn delete(&self, id: &str) -> Result<(), Unavailable> {
        self.redis.delete(id).await
    }

    /// The session id a handle names, if it is one of ours.
    fn open_handle(&self, cookies: &SessionCookies, handle: &[u8]) -> Option<String> {
        let id = cookies.keys.open(&self.purpose, handle).ok()?;
        let id = String::from_utf8(id).ok()?;
        (id.len() == SESSION_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then_some(id)
    }
}

impl Cache {
    fn new() -> Self {
        Self {
            opened: moka::sync::Cache::builder()
                .weigher(|handle: &Bytes, opened: &Arc<Opened>| weight(handle, &opened.session))
                .max_capacity(CACHE_BYTES)
                .time_to_live(FALLBACK_TTL)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            handles: moka::sync::Cache::builder()
                // Every cached session has one; a few more than fit in `opened`.
                .max_capacity(CACHE_BYTES / 512)
                .time_to_live(FALLBACK_TTL)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Caches `opened`, unless an invalidation came since `generation` was
    /// read: inserted first and checked after, so an invalidation landing in
    /// between still finds the entry and drops it.
    fn insert(&self, handle: Bytes, opened: &Arc<Opened>, generation: u64) {
        let digest = SessionDigest::of(&opened.session.id);
        self.handles.insert(digest, handle.clone());
        self.opened.insert(handle, Arc::clone(opened));
        if self.generation() != generation {
            self.drop_session(&digest);
        }
    }

    fn drop_session(&self, digest: &SessionDigest) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(handle) = self.handles.remove(digest) {
            self.opened.invalidate(&handle);
        }
    }

    fn drop_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.opened.invalidate_all();
        self.handles.invalidate_all();
    }

    /// Applies invalidations until the store is dropped. Falling behind the
    /// channel means some were missed: everything goes.
    async fn follow(self, mut invalidations: broadcast::Receiver<Invalidation>) {
        loop {
            match invalidations.recv().await {
                Ok(Invalidation::Session(digest)) => self.drop_session(&digest),
                Ok(Invalidation::All) | Err(RecvError::Lagged(_)) => self.drop_all(),
                Err(RecvError::Closed) => return,
            }
        }
    }
}

/// Estimated bytes of a cached session: its tokens dominate.
fn weight(handle: &[u8], session: &Session) -> u32 {
    let tokens = &session.tokens;
    let token_bytes = [
        &tokens.access_token,
        &tokens.refresh_token,
        &tokens.id_token,
    ]
    .iter()
    .filter_map(|t| t.as_ref().map(String::len))
    .sum::<usize>();
    u32::try_from(handle.len() + token_bytes + 1024).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::tests::a_session;

    fn opened() -> Arc<Opened> {
        Arc::new(Opened::new(a_session(crate::now_unix())))
    }

    #[test]
    fn a_load_overtaken_by_an_invalidation_is_not_cached() {
        let cache = Cache::new();
        let (kept, overtaken) = (opened(), opened());
        let before = cache.generation();
        cache.insert(Bytes::from_static(b"kept"), &kept, before);
        assert!(cache.opened.get(b"kept".as_slice()).is_some());

        let before = cache.generation();
        // Some session ends while this load waits for Redis...
        cache.drop_session(&SessionDigest::of("another session"));
        cache.insert(Bytes::from_static(b"overtaken"), &overtaken, before);
        // ...so what it read may be stale: used once, not kept.
        assert!(cache.opened.get(b"overtaken".as_slice()).is_none());
        assert!(cache.opened.get(b"kept".as_slice()).is_some());
    }

    #[test]
    fn invalidations_drop_the_named_session_or_all() {
        let cache = Cache::new();
        let (first, second) = (opened(), opened());
        cache.insert(Bytes::from_static(b"first"), &first, cache.generation());
        cache.insert(Bytes::from_static(b"second"), &second, cache.generation());
        cache.drop_session(&SessionDigest::of(&first.session.id));
        assert!(cache.opened.get(b"first".as_slice()).is_none());
        assert!(cache.opened.get(b"second".as_slice()).is_some());
        cache.drop_all();
        assert!(cache.opened.get(b"second".as_slice()).is_none());
    }
}
