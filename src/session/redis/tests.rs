//! `RedisSessions` against a real `redis-server` (skipped, with a note, where
//! none is installed, unless `REQUIRE_REDIS` is set).

use std::collections::BTreeMap;
use std::time::Duration;

use redis::AsyncCommands;
use tokio::sync::broadcast::error::TryRecvError;
use tokio::time::{Instant, sleep, timeout};

use super::*;
use crate::config::{RedisUrl, Secret};
use crate::identity::Identity;
use crate::session::Tokens;
use crate::session::tests::session_config;

// Shared with the integration tests, which use other parts of it.
#[allow(dead_code)]
#[path = "../../../tests/it/redis_server.rs"]
mod redis_server;
use redis_server::{MASTER_NAME, RedisServer};

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const OLD_SECRET: &str = "an older secret of at least 32 bytes!";
/// Long enough for anything that should happen; polls end as soon as it has.
const DEADLINE: Duration = Duration::from_secs(10);

fn redis_config(server: &RedisServer) -> RedisConfig {
    RedisConfig {
        url: Some(RedisUrl::new(Secret::new(server.url()))),
        sentinels: Vec::new(),
        master_name: None,
        key_prefix: "portcullis:".to_owned(),
    }
}

/// A store on `server` under `secret` (and `previous` ones), once it is up.
async fn store_with(server: &RedisServer, secret: &str, previous: &[&str]) -> RedisSessions {
    let store = RedisSessions::new(&redis_config(server), &session_config(secret, previous))
        .expect("a store");
    eventually("the store is up", || store.is_up()).await;
    store
}

async fn store(server: &RedisServer) -> RedisSessions {
    store_with(server, SECRET, &[]).await
}

/// Polls `condition` until it holds; fails after [`DEADLINE`].
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        sleep(Duration::from_millis(10)).await;
    }
}

/// The next invalidation that is not `All` (every subscription starts with one).
async fn next_session_invalidation(
    receiver: &mut broadcast::Receiver<Invalidation>,
) -> SessionDigest {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match timeout(deadline - Instant::now(), receiver.recv()).await {
            Ok(Ok(Invalidation::Session(digest))) => return digest,
            Ok(Ok(Invalidation::All)) => {}
            Ok(Err(e)) => panic!("invalidations: {e}"),
            Err(_) => panic!("no invalidation within {DEADLINE:?}"),
        }
    }
}

fn now() -> u64 {
    crate::now_unix()
}

fn session(sub: &str, sid: Option<&str>, lifetime: u64) -> Session {
    let now = now();
    Session {
        id: crate::session::new_session_id(),
        provider: "idp".into(),
        identity: Identity {
            sub: sub.into(),
            email: Some(format!("{sub}@example.com")),
            email_verified: Some(true),
            name: Some("Ada Lovelace".into()),
            preferred_username: None,
            groups: vec!["admins".into()],
            extra: BTreeMap::new(),
            added: Default::default(),
        },
        tokens: Tokens {
            access_token: Some("access-token-value-1234".into()),
            refresh_token: Some("refresh-token-value-5678".into()),
            id_token: Some("id-token-value-9abc".into()),
            access_expires_at: Some(now + 300),
        },
        created_at: now,
        expires_at: now + lifetime,
        last_seen_at: now,
        sid: sid.map(str::to_owned),
        refreshed_at: now,
    }
}

/// A plain connection, to look at what the store wrote.
async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_saved_session_loads_back_whole() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = store(&server).await;
    let saved = session("ada", Some("idp-session-1"), 3600);
    store.save(&saved, now()).await.unwrap();
    assert_eq!(store.load(&saved.id).await.unwrap(), Some(saved.clone()));
    let unknown = crate::session::new_session_id();
    assert_eq!(store.load(&unknown).await.unwrap(), None);
    // Saving again (a touch or a refresh) replaces the record.
    let mut touched = saved.clone();
    touched.last_seen_at += 60;
    store.save(&touched, now()).await.unwrap();
    assert_eq!(store.load(&saved.id).await.unwrap(), Some(touched));
}

#[tokio::test]
async fn redis_holds_no_session_id_token_or_identity_in_clear() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = store(&server).await;
    let saved = session("ada-sub", Some("idp-session-1"), 3600);
    store.save(&saved, now()).await.unwrap();
    let mut raw = raw(&server).await;
    let keys: Vec<String> = raw.keys("*").await.unwrap();
    assert_eq!(keys.len(), 3, "the record and two index sets: {keys:?}");
    let mut everything = keys.join("\n");
    for key in &keys {
        let kind: String = redis::cmd("TYPE")
            .arg(key)
            .query_async(&mut raw)
            .await
            .unwrap();
        match kind.as_str() {
            "string" => everything += &raw.get::<_, String>(key).await.unwrap(),
            "set" => {
                everything += &raw
                    .smembers::<_, Vec<String>>(key)
                    .await
                    .unwrap()
                    .join("\n")
            }
            other => panic!("unexpected {other} at {key}"),
        }
    }
    let secrets = [
        saved.id.as_str(),
        "access-token-value",
        "refresh-token-value",
        "id-token-value",
        "ada-sub",
        "idp-session-1",
        "example.com",
        "Lovelace",
    ];
    for secret in secrets {
        assert!(!everything.contains(secret), "{secret} is in Redis");
    }
}

#[tokio::test]
async fn records_and_index_sets_live_as_long_as_their_sessions() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = store(&server).await;
    let raw = raw(&server).await;
    let short = session("ada", None, 600);
    let long = session("ada", None, 7200);
    store.save(&long, now()).await.unwrap();
    store.save(&short, now()).await.unwrap();
    let ttl = |key: String| {
        let mut raw = raw.clone();
        async move { raw.ttl::<_, i64>(key).await.unwrap() }
    };
    let record_ttl = ttl(store.names.record(&SessionDigest::of(&short.id))).await;
    assert!((595..=600).contains(&record_ttl), "{record_ttl}");
    // The index set keeps the longest member's TTL, not the last one's.
    let index_ttl = ttl(store.names.index(Index::Sub, "idp", "ada")).await;
    assert!((7195..=7200).contains(&index_ttl), "{index_ttl}");
    // Nothing is kept past expires_at: a session already expired is removed.
    let mut expired = short.clone();
    expired.expires_at = now() - 1;
    store.save(&expired, now()).await.unwrap();
    assert_eq!(store.load(&short.id).await.unwrap(), None);
    let keys: Vec<String> = raw.clone().keys("*").await.unwrap();
    assert_eq!(
        keys.len(),
        2,
        "the long session and its index set: {keys:?}"
    );
    for key in keys {
        assert!(ttl(key.clone()).await > 0, "{key} never expires");
    }
}

#[tokio::test]
async fn delete_ends_one_session_and_tells_every_instance() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = store(&server).await;
    let b = store(&server).await;
    let mut heard_by_b = b.subscribe();
    let ended = session("ada", None, 3600);
    let kept = session("ada", None, 3600);
    a.save(&ended, now()).await.unwrap();
    a.save(&kept, now()).await.unwrap();
    assert!(
        b.load(&ended.id).await.unwrap().is_some(),
        "B shares A's sessions"
    );
    a.delete(&ended.id).await.unwrap();
    assert_eq!(
        next_session_invalidation(&mut heard_by_b).await,
        SessionDigest::of(&ended.id)
    );
    assert_eq!(b.load(&ended.id).await.unwrap(), None);
    assert!(b.load(&kept.id).await.unwrap().is_some());
    // Deleting what is gone is no error.
    a.delete(&ended.id).await.unwrap();
}

#[tokio::test]
async fn delete_by_sid_ends_that_provider_sessions_sessions_only() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = store(&server).await;
    let mut heard = store.subscribe();
    let first = session("ada", Some("sid-1"), 3600);
    let second = session("ada", Some("sid-1"), 3600);
    let other = session("ada", Some("sid-2"), 3600);
    for s in [&first, &second, &other] {
        store.save(s, now()).await.unwrap();
    }
    assert_eq!(store.delete_by_sid("idp", "sid-1").await.unwrap(), 2);
    assert_eq!(store.load(&first.id).await.unwrap(), None);
    assert_eq!(store.load(&second.id).await.unwrap(), None);
    assert!(store.load(&other.id).await.unwrap().is_some());
    let mut heard_digests = vec![
        next_session_invalidation(&mut heard).await,
        next_session_invalidation(&mut heard).await,
    ];
    let mut expected = vec![SessionDigest::of(&first.id), SessionDigest::of(&second.id)];
    heard_digests.sort_by_key(SessionDigest::hex);
    expected.sort_by_key(SessionDigest::hex);
    assert_eq!(heard_digests, expected);
    assert_eq!(store.delete_by_sid("idp", "sid-1").await.unwrap(), 0);
    assert_eq!(store.delete_by_sid("other-idp", "sid-2").await.unwrap(), 0);
}

#[tokio::test]
async fn delete_by_sub_ends_every_session_of_that_user_at_that_provider() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = store(&server).await;
    let sessions = [
        session("ada", Some("sid-1"), 3600),
        session("ada", None, 3600),
        session("ada", Some("sid-2"), 600),
    ];
    for s in &sessions {
        store.save(s, now()).await.unwrap();
    }
    let mut elsewhere = session("ada", None, 3600);
    elsewhere.provider = "other-idp".into();
    let bob = session("bob", None, 3600);
    store.save(&elsewhere, now()).await.unwrap();
    store.save(&bob, now()).await.unwrap();
    // A member whose record is already gone is skipped, not counted.
    store.delete(&sessions[1].id).await.unwrap();
    assert_eq!(store.delete_by_sub("idp", "ada").await.unwrap(), 2);
    for s in &sessions {
        assert_eq!(store.load(&s.id).await.unwrap(), None);
    }
    assert!(store.load(&elsewhere.id).await.unwrap().is_some());
    assert!(store.load(&bob.id).await.unwrap().is_some());
    assert_eq!(store.delete_by_sub("idp", "ada").await.unwrap(), 0);
}

#[tokio::test]
async fn a_record_moved_to_another_key_does_not_open() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = store(&server).await;
    let mine = session("ada", None, 3600);
    let theirs = session("eve", None, 3600);
    store.save(&mine, now()).await.unwrap();
    store.save(&theirs, now()).await.unwrap();
    let mut raw = raw(&server).await;
    let sealed: Vec<u8> = raw
        .get(store.names.record(&SessionDigest::of(&mine.id)))
        .await
        .unwrap();
    let () = raw
        .set(store.names.record(&SessionDigest::of(&theirs.id)), sealed)
        .await
        .unwrap();
    assert_eq!(store.load(&theirs.id).await.unwrap(), None);
    let () = raw
        .set(
            store.names.record(&SessionDigest::of(&mine.id)),
            "not sealed",
        )
        .await
        .unwrap();
    assert_eq!(store.load(&mine.id).await.unwrap(), None);
}

#[tokio::test]
async fn after_a_secret_rotation_old_sessions_load_and_still_end_everywhere() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let before = store_with(&server, OLD_SECRET, &[]).await;
    let old = session("ada", Some("sid-1"), 3600);
    before.save(&old, now()).await.unwrap();
    let after = store_with(&server, SECRET, &[OLD_SECRET]).await;
    assert_eq!(after.load(&old.id).await.unwrap(), Some(old.clone()));
    let new = session("ada", Some("sid-1"), 3600);
    after.save(&new, now()).await.unwrap();
    // Indexed under the old secret's key and the new one's: both found.
    assert_eq!(after.delete_by_sub("idp", "ada").await.unwrap(), 2);
    // Without the old secret, its records do not open.
    before.save(&old, now()).await.unwrap();
    let stranger = store_with(&server, SECRET, &[]).await;
    assert_eq!(stranger.load(&old.id).await.unwrap(), None);
}

#[tokio::test]
async fn a_redis_outage_is_unavailable_at_once_and_service_resumes_after() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let store = store(&server).await;
    let mut heard = store.subscribe();
    let s = session("ada", None, 3600);
    store.save(&s, now()).await.unwrap();

    server.stop();
    // Bounded: the call returns Unavailable, it does not wait for Redis.
    let loaded = timeout(DEADLINE, store.load(&s.id)).await;
    assert_eq!(loaded.expect("load returned"), Err(Unavailable));
    eventually("is_up turns false", || !store.is_up()).await;
    assert_eq!(store.save(&s, now()).await, Err(Unavailable));
    assert_eq!(store.delete_by_sub("idp", "ada").await, Err(Unavailable));
    while let Ok(_) | Err(TryRecvError::Lagged(_)) = heard.try_recv() {}

    server.restart();
    eventually("is_up turns true again", || store.is_up()).await;
    // Messages may have been lost: subscribers are told to drop everything.
    let all = timeout(DEADLINE, heard.recv())
        .await
        .expect("an invalidation");
    assert_eq!(all.unwrap(), Invalidation::All);
    // The new server is empty (no persistence); the store works again.
    assert_eq!(store.load(&s.id).await.unwrap(), None);
    store.save(&s, now()).await.unwrap();
    assert_eq!(store.load(&s.id).await.unwrap(), Some(s));
}

#[tokio::test]
async fn a_hung_redis_costs_a_request_the_timeout_not_a_hang() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = store(&server).await;
    let s = session("ada", None, 3600);
    store.save(&s, now()).await.unwrap();
    server.pause();
    let loaded = timeout(DEADLINE, store.load(&s.id)).await;
    assert_eq!(loaded.expect("load returned"), Err(Unavailable));
    eventually("is_up turns false", || !store.is_up()).await;
    server.resume();
    eventually("is_up turns true again", || store.is_up()).await;
    assert_eq!(store.load(&s.id).await.unwrap(), Some(s));
}

#[tokio::test]
async fn a_store_built_while_redis_is_down_connects_when_it_comes() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    server.stop();
    // Built without waiting: start-up never blocks on Redis.
    let store = RedisSessions::new(&redis_config(&server), &session_config(SECRET, &[])).unwrap();
    assert!(!store.is_up());
    assert_eq!(store.load("x").await, Err(Unavailable));
    server.restart();
    eventually("the store comes up", || store.is_up()).await;
    assert_eq!(store.load("x").await, Ok(None));
}

#[tokio::test]
async fn through_a_sentinel_the_store_finds_the_master_and_follows_a_failover() {
    let Some(mut master) = RedisServer::start() else {
        return;
    };
    let replica = master.start_replica();
    let sentinel = master.start_sentinel();
    let mut ask_sentinel = raw(&sentinel).await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg(MASTER_NAME)
            .query_async(&mut ask_sentinel)
            .await
            .unwrap();
        if !replicas.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Sentinel never saw the replica"
        );
        sleep(Duration::from_millis(50)).await;
    }
    let config = RedisConfig {
        url: None,
        sentinels: vec![sentinel.addr.to_string()],
        master_name: Some(MASTER_NAME.to_owned()),
        key_prefix: "portcullis:".to_owned(),
    };
    let store = RedisSessions::new(&config, &session_config(SECRET, &[])).unwrap();
    eventually("the store is up through the Sentinel", || store.is_up()).await;
    let s = session("ada", None, 3600);
    store.save(&s, now()).await.unwrap();
    let mut on_replica = raw(&replica).await;
    let record = store.names.record(&SessionDigest::of(&s.id));
    let deadline = Instant::now() + DEADLINE;
    while !on_replica.exists::<_, bool>(&record).await.unwrap() {
        assert!(
            Instant::now() < deadline,
            "the replica never had the session"
        );
        sleep(Duration::from_millis(20)).await;
    }

    master.stop();
    // The Sentinel promotes the replica; the store asks it again and follows.
    let deadline = Instant::now() + 3 * DEADLINE;
    loop {
        if store.load(&s.id).await == Ok(Some(s.clone())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the store did not follow the failover"
        );
        sleep(Duration::from_millis(100)).await;
    }
    eventually("the store is up on the new master", || store.is_up()).await;
    store.delete(&s.id).await.unwrap();
    assert_eq!(store.load(&s.id).await, Ok(None));
}

#[test]
fn session_digests_round_trip_through_hex_and_refuse_anything_else() {
    let digest = SessionDigest::of("some id");
    assert_eq!(
        SessionDigest::from_hex(digest.hex().as_bytes()),
        Some(digest)
    );
    assert_ne!(SessionDigest::of("other id"), digest);
    for bad in [
        "",
        "00",
        &"g".repeat(64),
        &"0".repeat(63),
        &"0".repeat(65),
        &"é".repeat(32),
    ] {
        assert_eq!(SessionDigest::from_hex(bad.as_bytes()), None, "{bad:?}");
    }
}
