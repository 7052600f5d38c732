//! Sessions ended before their time by this instance's word alone: signed
//! out, refused at refresh, or named by a back-channel logout. The cookie store
//! keeps nothing server-side, so without this list a cookie copied before
//! sign-out would open until it expires.
//!
//! Bounded: at most [`CAPACITY`] entries, each kept for `session.lifetime`
//! (no session it names lives longer). Only hashes are kept, never an id, a
//! `sid` or a `sub` as such. Nearly free on the request path: each opened
//! session is checked again only after a new revocation (two atomic loads
//! otherwise), so one sign-out does not make every later request hash.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{Opened, Session};

/// Revoked sessions, `sid`s and users remembered at most.
pub const CAPACITY: u64 = 100_000;

/// What a revocation names.
#[derive(Debug, Clone, Copy)]
pub enum Revoke<'a> {
    /// One session, by its portcullis id.
    Session(&'a str),
    /// Every session of the provider's session `sid` (back-channel logout).
    Sid { provider: &'a str, sid: &'a str },
    /// Every session of user `sub` at `provider` that began before now
    /// (back-channel logout without `sid`, sign-out everywhere). Times are
    /// whole seconds, and a session begun in the same second is judged
    /// revoked: it may have begun before.
    Sub { provider: &'a str, sub: &'a str },
}

pub struct Revocations {
    /// Hash of what was revoked → Unix seconds when.
    entries: moka::sync::Cache<[u8; 32], u64>,
    /// How many revocations there were: an [`Opened`] session checked at
    /// this count and found alive needs no new check until it moves.
    generation: AtomicU64,
}

impl Revocations {
    pub fn new(lifetime: Duration) -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(lifetime)
                .build(),
            generation: AtomicU64::new(0),
        }
    }

    pub fn revoke(&self, what: Revoke<'_>, now: u64) {
        self.entries.insert(key(what), now);
        // After the entry: a check that reads the new count sees it.
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Whether `opened` was revoked; checked once per revocation since the
    /// last check found it alive.
    pub fn is_revoked(&self, opened: &Opened) -> bool {
        let generation = self.generation.load(Ordering::Acquire);
        if opened.revocations_checked.load(Ordering::Relaxed) == generation {
            return false;
        }
        let revoked = self.names(&opened.session);
        if !revoked {
            opened
                .revocations_checked
                .store(generation, Ordering::Relaxed);
        }
        revoked
    }

    /// Whether `session` is named: itself, its `sid`, or its user after it began.
    fn names(&self, session: &Session) -> bool {
        let provider = &session.provider;
        self.entries
            .contains_key(&key(Revoke::Session(&session.id)))
            || session.sid.as_deref().is_some_and(|sid| {
                self.entries
                    .contains_key(&key(Revoke::Sid { provider, sid }))
            })
            || self
                .entries
                .get(&key(Revoke::Sub {
                    provider,
                    sub: &session.identity.sub,
                }))
                .is_some_and(|revoked_at| session.created_at <= revoked_at)
    }
}

/// SHA-256 over a tag and length-prefixed parts, so no two targets share a key.
fn key(what: Revoke<'_>) -> [u8; 32] {
    let (tag, parts): (&[u8], [&str; 2]) = match what {
        Revoke::Session(id) => (b"session", [id, ""]),
        Revoke::Sid { provider, sid } => (b"sid", [provider, sid]),
        Revoke::Sub { provider, sub } => (b"sub", [provider, sub]),
    };
    let mut hash = Sha256::new();
    hash.update(tag);
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::tests::a_session;

    fn session(id: &str, sub: &str, sid: Option<&str>, created_at: u64) -> Session {
        let mut session = a_session(created_at);
        session.id = id.into();
        session.provider = "corp".into();
        session.identity.sub = sub.into();
        session.sid = sid.map(str::to_owned);
        session
    }

    #[test]
    fn each_kind_of_revocation_ends_what_it_names_and_nothing_else() {
        let list = Revocations::new(Duration::from_secs(3600));
        let a = Opened::new(session("a", "ada", Some("sid-1"), 100));
        let b = Opened::new(session("b", "ada", Some("sid-2"), 100));
        let c = Opened::new(session("c", "grace", None, 100));
        assert!(![&a, &b, &c].iter().any(|s| list.is_revoked(s)));
        assert_eq!(a.revocations_checked.load(Ordering::Relaxed), 0);

        list.revoke(Revoke::Session("a"), 200);
        assert!(list.is_revoked(&a) && !list.is_revoked(&b) && !list.is_revoked(&c));

        list.revoke(
            Revoke::Sid {
                provider: "corp",
                sid: "sid-2",
            },
            200,
        );
        assert!(list.is_revoked(&b) && !list.is_revoked(&c));
        // The same sid at another provider is another session.
        let elsewhere = Opened::new(Session {
            provider: "other".into(),
            ..session("d", "ada", Some("sid-2"), 100)
        });
        assert!(!list.is_revoked(&elsewhere));

        list.revoke(
            Revoke::Sub {
                provider: "corp",
                sub: "grace",
            },
            200,
        );
        assert!(list.is_revoked(&c));
        // A sign-in after the revocation is a new session, and lives.
        assert!(!list.is_revoked(&Opened::new(session("e", "grace", None, 201))));
    }
}
