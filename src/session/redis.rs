//! Sessions in Redis (`session.store = "redis"`, DESIGN §4): several replicas
//! share sessions and see each other's sign-outs.
//!
//! - **What is stored**: each session as JSON sealed with the session keys
//!   (AES-256-GCM, as the cookie store), with its Redis key name as
//!   associated data so a record cannot be moved to another key. Reading
//!   Redis reveals no token and no identity; `previous_secrets` still open
//!   records sealed before a rotation. Key names hold digests, never ids,
//!   `sub`s or `sid`s (see [`names`]).
//! - **TTL**: a record lives until the session's `expires_at`, never longer.
//!   The `sub` and `sid` index sets live as long as their longest member; a
//!   member whose record is gone is skipped.
//! - **Invalidations**: every delete publishes the ended sessions' digests;
//!   every instance relays them to [`RedisSessions::subscribe`]rs, in well
//!   under a second. After a subscription is (re)made, [`Invalidation::All`]:
//!   messages may have been lost in between.
//! - **Bounded**: every call gives up after [`link::COMMAND_TIMEOUT`] with
//!   [`Unavailable`]; while Redis is known down, at once. The outage itself
//!   is logged once by the link, not by every request.

mod link;
mod names;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use redis::{AsyncCommands, Script};
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use super::Session;
use super::keys::SessionKeys;
pub use super::store::Unavailable;
use crate::config::{RedisConfig, SessionConfig};
use link::Link;
use names::{Index, Names};

pub use names::SessionDigest;

/// Invalidations a slow subscriber may fall behind by before it is told it
/// lagged (and must then drop everything, as for [`Invalidation::All`]).
const INVALIDATION_BACKLOG: usize = 1024;

/// A session ended somewhere: drop it from any local cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation {
    /// The session whose id has this digest ([`SessionDigest::of`]).
    Session(SessionDigest),
    /// Invalidations may have been missed: drop every cached session.
    All,
}

/// Why the Redis store could not be set up. Validation has already checked
/// what the client would refuse, so this is a backstop.
#[derive(Debug, thiserror::Error)]
#[error(
    "the Redis client refuses the session store's settings ({0}); check session.redis_url and session.redis_sentinels"
)]
pub struct SetupError(redis::RedisError);

/// Sessions in Redis, shared by every replica that uses the same Redis,
/// secrets and key prefix.
pub struct RedisSessions {
    link: Arc<Link>,
    keys: SessionKeys,
    names: Names,
    invalidations: broadcast::Sender<Invalidation>,
    /// [`SAVE`], sent by its SHA-1 once Redis has it.
    save: Script,
    /// The link's background tasks, ended with this value.
    tasks: [AbortHandle; 2],
}

impl std::fmt::Debug for RedisSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessions")
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

/// Stores a sealed session and adds it to its index sets, atomically.
/// Each set's TTL is raised to the session's when shorter (or unset), so a
/// set lives as long as its longest member. KEYS: record, then index sets;
/// ARGV: sealed value, TTL in seconds, the session's digest.
const SAVE: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
local ttl = tonumber(ARGV[2])
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[3])
  if redis.call('TTL', KEYS[i]) < ttl then
    redis.call('EXPIRE', KEYS[i], ttl)
  end
end
return 1
";

impl RedisSessions {
    /// Starts connecting in the background and returns at once; until Redis
    /// answers, calls wait up to their timeout and `is_up` is false. Needs a
    /// Tokio runtime.
    pub fn new(redis: &RedisConfig, session: &SessionConfig) -> Result<Self, SetupError> {
        let link = Arc::new(Link::new(redis).map_err(SetupError)?);
        let names = Names::new(&redis.key_prefix, session);
        let (invalidations, _) = broadcast::channel(INVALIDATION_BACKLOG);
        let tasks = [
            tokio::spawn(Arc::clone(&link).keep_up()).abort_handle(),
            tokio::spawn(Arc::clone(&link).listen(names.channel(), invalidations.clone()))
                .abort_handle(),
        ];
        Ok(Self {
            link,
            keys: SessionKeys::new(session),
            names,
            invalidations,
            save: Script::new(SAVE),
            tasks,
        })
    }

    /// Redis answers commands and invalidations are heard (`/oauth2/readyz`).
    pub fn is_up(&self) -> bool {
        self.link.is_up()
    }

    /// Invalidations from every instance (this one included). On
    /// `RecvError::Lagged`, drop everything, as for [`Invalidation::All`].
    pub fn subscribe(&self) -> broadcast::Receiver<Invalidation> {
        self.invalidations.subscribe()
    }

    /// The session with this id, if Redis holds one that opens under the
    /// session keys. Expiry is Redis' TTL; the caller still checks
    /// `expires_at` and the idle timeout.
    pub async fn load(&self, id: &str) -> Result<Option<Session>, Unavailable> {
        let record = self.names.record(&SessionDigest::of(id));
        let sealed: Option<Vec<u8>> = self
            .link
            .run(|mut c| async move { c.get(&record).await })
            .await?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let record = self.names.record(&SessionDigest::of(id));
        let session = self
            .keys
            .open(&record, &sealed)
            .ok()
            .and_then(|json| serde_json::from_slice::<Session>(&json).ok())
            // The digest names the record and sealing binds the name, so this
            // holds unless SHA-256 collides; cheap to be sure.
            .filter(|session| session.id == id);
        if session.is_none() {
            tracing::debug!("a session record in Redis does not open under the session secrets");
        }
        Ok(session)
    }

    /// Stores `session` until its `expires_at` (a session already past it is
    /// deleted instead), indexed under its provider's `sub` and `sid`.
    pub async fn save(&self, session: &Session, now: u64) -> Result<(), Unavailable> {
        let ttl = session.expires_at.saturating_sub(now);
        if ttl == 0 {
            return self.delete(&session.id).await;
        }
        let digest = SessionDigest::of(&session.id);
        let record = self.names.record(&digest);
        // A Session has only string map keys and plain values: serialising cannot fail.
        let json = serde_json::to_vec(session).expect("a Session always serialises");
        let sealed = self.keys.seal(&record, &json);
        let mut save = self.save.prepare_invoke();
        save.key(record);
        save.key(
            self.names
                .index(Index::Sub, &session.provider, &session.identity.sub),
        );
        if let Some(sid) = &session.sid {
            save.key(self.names.index(Index::Sid, &session.provider, sid));
        }
        save.arg(sealed).arg(ttl).arg(digest.hex());
        self.link
            .run(|mut c| async move { save.invoke_async::<()>(&mut c).await })
            .await
    }

    /// Ends the session with this id (if Redis still holds it).
    pub async fn delete(&self, id: &str) -> Result<(), Unavailable> {
        self.end(&[SessionDigest::of(id)], Vec::new())
            .await
            .map(drop)
    }

    /// Ends every session the provider's session `sid` opened (back-channel
    /// logout); returns how many there were.
    pub async fn delete_by_sid(&self, provider: &str, sid: &str) -> Result<usize, Unavailable> {
        self.delete_indexed(self.names.indexes(Index::Sid, provider, sid))
            .await
    }

    /// Ends every session of the user `sub` at `provider` ("sign out
    /// everywhere"); returns how many there were.
    pub async fn delete_by_sub(&self, provider: &str, sub: &str) -> Result<usize, Unavailable> {
        self.delete_indexed(self.names.indexes(Index::Sub, provider, sub))
            .await
    }

    /// `indexes` are one set's names under every secret's key.
    async fn delete_indexed(&self, indexes: Vec<String>) -> Result<usize, Unavailable> {
        let members: Vec<Vec<Vec<u8>>> = self
            .link
            .run(|mut c| {
                let mut pipe = redis::pipe();
                for index in &indexes {
                    pipe.smembers(index);
                }
                async move { pipe.query_async(&mut c).await }
            })
            .await?;
        let mut digests: Vec<SessionDigest> = members
            .iter()
            .flatten()
            .filter_map(|member| SessionDigest::from_hex(member))
            .collect();
        digests.sort_unstable_by_key(SessionDigest::hex);
        digests.dedup();
        if digests.is_empty() {
            return Ok(0);
        }
        self.end(&digests, indexes).await
    }

    /// Deletes the records of `digests`, removes them from `indexes` (a
    /// member added since stays: a session that starts after a sign-out is
    /// not ended by it) and publishes each; returns how many records existed.
    async fn end(
        &self,
        digests: &[SessionDigest],
        indexes: Vec<String>,
    ) -> Result<usize, Unavailable> {
        let hexes: Vec<String> = digests.iter().map(SessionDigest::hex).collect();
        let mut pipe = redis::pipe();
        for digest in digests {
            pipe.del(self.names.record(digest));
        }
        for index in &indexes {
            pipe.srem(index, &hexes).ignore();
        }
        let channel = self.names.channel();
        for hex in &hexes {
            pipe.publish(&channel, hex).ignore();
        }
        self.link
            .run(|mut c| async move {
                let deleted: Vec<usize> = pipe.query_async(&mut c).await?;
                Ok(deleted.into_iter().sum())
            })
            .await
    }
}

impl Drop for RedisSessions {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
