//! The session cookie on every signed-in request: open (`load`) and, on sign-in
//! or refresh, seal (`store`). A typical session (~1 KB of JSON, one cookie) and
//! a large one (~6 KB, two chunks).
//!
//! `SessionCookies` keeps the sessions it opened, keyed by the cookie's bytes, so
//! loading one cookie again and again from one `SessionCookies` measures a cache
//! hit (`load_cached`: what a browser's repeat request costs). `load` is the
//! cold path, a cookie that `SessionCookies` has not seen: a fresh
//! `SessionCookies`, made outside the timed part, for every iteration, so
//! decryption, JSON parsing, the checks and the cache insert are measured.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
mod support;

use portcullis::identity::Identity;
use portcullis::session::{Session, SessionCookies, SessionKeys, Tokens};

const COOKIE_NAME: &str = "_portcullis";

/// A session whose JSON is about `target` bytes: a few groups, tokens of realistic
/// length, and extra claims filling the rest.
fn session(target: usize) -> Session {
    let now = portcullis::now_unix();
    let mut session = Session {
        id: portcullis::session::new_session_id(),
        provider: "demo".into(),
        identity: Identity {
            sub: "248289761001".into(),
            email: Some("ada.lovelace@example.com".into()),
            email_verified: Some(true),
            name: Some("Ada Lovelace".into()),
            preferred_username: Some("ada".into()),
            groups: vec!["admins".into(), "engineering".into(), "staff".into()],
            extra: BTreeMap::new(),
            added: Default::default(),
        },
        tokens: Tokens {
            access_token: Some("a".repeat(300)),
            refresh_token: Some("r".repeat(64)),
            id_token: None,
            access_expires_at: Some(now + 300),
        },
        created_at: now,
        expires_at: now + 12 * 3600,
        last_seen_at: now,
        sid: None,
        refreshed_at: 0,
    };
    let mut i = 0;
    while json_len(&session) < target {
        session
            .identity
            .groups
            .push(format!("team-{i:03}-with-a-longer-name"));
        i += 1;
    }
    session
}

fn json_len(session: &Session) -> usize {
    serde_json::to_vec(session).map_or(0, |json| json.len())
}

/// The `Cookie` header a browser sends back for these Set-Cookie values.
fn cookie_header(set_cookies: &[HeaderValue]) -> HeaderMap {
    let pairs: Vec<&str> = set_cookies
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next())
        .collect();
    let mut headers = HeaderMap::new();
    headers.insert(
        COOKIE,
        HeaderValue::try_from(pairs.join("; ")).expect("base64url cookies"),
    );
    headers
}

fn bench_cookies(c: &mut Criterion) {
    let config = support::config("");
    let cookies = SessionCookies::new(&config.session);
    let keys = SessionKeys::new(&config.session);
    let now = portcullis::now_unix();
    let mut group = c.benchmark_group("session_cookie");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (label, size) in [("typical_1k", 1024), ("large_6k", 6 * 1024)] {
        let session = session(size);
        let json = serde_json::to_vec(&session).expect("a Session serialises");
        let set_cookies = cookies.store(&session, &HeaderMap::new()).unwrap();
        let request = cookie_header(&set_cookies);
        let opened = cookies.load(&request, now).session;
        let opened = opened.expect("the bench cookie must open");
        let again = cookies.load(&request, now).session.expect("and open again");
        assert!(
            Arc::ptr_eq(&opened, &again),
            "load_cached must be served by the opened-session cache"
        );
        let cold = SessionCookies::new(&config.session)
            .load(&request, now)
            .session;
        let cold = cold.expect("a fresh SessionCookies opens the bench cookie");
        assert!(
            !Arc::ptr_eq(&opened, &cold),
            "a fresh SessionCookies must open the cookie itself"
        );
        let sealed = keys.seal(COOKIE_NAME, &json);
        group.throughput(Throughput::Bytes(json.len() as u64));

        group.bench_with_input(BenchmarkId::new("store", label), &session, |b, s| {
            b.iter(|| cookies.store(black_box(s), black_box(&HeaderMap::new())))
        });
        // Cold: the cache starts empty every iteration, so this includes the first
        // insert into an empty cache. Making a `SessionCookies` (keys, caches) is
        // setup, and the routine hands it back with the result so that dropping
        // both happens outside the timed part too.
        group.bench_with_input(BenchmarkId::new("load", label), &request, |b, r| {
            b.iter_batched(
                || SessionCookies::new(&config.session),
                |fresh| {
                    let loaded = fresh.load(black_box(r), now);
                    (fresh, loaded)
                },
                BatchSize::SmallInput,
            )
        });
        // Warm: the checks above opened this cookie with `cookies`, so every
        // iteration finds it in the opened-session cache.
        group.bench_with_input(BenchmarkId::new("load_cached", label), &request, |b, r| {
            b.iter(|| cookies.load(black_box(r), now))
        });
        group.bench_with_input(BenchmarkId::new("seal", label), &json, |b, j| {
            b.iter(|| keys.seal(COOKIE_NAME, black_box(j)))
        });
        group.bench_with_input(BenchmarkId::new("open", label), &sealed, |b, v| {
            b.iter(|| keys.open(COOKIE_NAME, black_box(v)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_cookies);
criterion_main!(benches);
