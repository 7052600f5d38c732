//! Token refresh over real sockets (DESIGN §4): the demo identity provider
//! issues access tokens of 61 s, so with `refresh_before = "60s"` a session
//! is due one second after sign-in, and a refreshed one is not due again at
//! once. Each test counts the refreshes at the provider.

use std::time::Duration;

use futures_util::future::join_all;
use http::StatusCode;
use portcullis::demo::idp::{IdpOptions, Misbehaviour};

use crate::redis_server::RedisServer;
use crate::support::{Browser, Harness, Setup};

const ACCESS_TOKEN_LIFETIME: u64 = 61;

async fn harness(session_toml: &str) -> Harness {
    Harness::with(Setup {
        idp: IdpOptions {
            access_token_lifetime: ACCESS_TOKEN_LIFETIME,
            ..IdpOptions::default()
        },
        upstream_toml: "pass_access_token = true".into(),
        session_toml: session_toml.into(),
        ..Setup::default()
    })
    .await
}

/// Until the session is due (the clock moves in whole seconds).
async fn wait_until_due() {
    tokio::time::sleep(Duration::from_millis(2100)).await;
}

async fn access_token_seen_upstream(b: &mut Browser, h: &Harness) -> String {
    let resp = b.get_json(&h.url("/whoami")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    resp.upstream_header("x-forwarded-access-token")
        .expect("the access token is passed upstream")
}

#[tokio::test]
async fn a_due_session_is_refreshed_once_for_concurrent_requests_and_sends_the_new_token() {
    let h = harness("").await;
    let mut b = h.signed_in("ada").await;
    let first = access_token_seen_upstream(&mut b, &h).await;
    assert_eq!(h.idp.refresh_count(), 0, "not due yet");

    wait_until_due().await;
    // Eight requests of one session at once, each with the same (old) cookie.
    let cookie = b.cookie_header();
    let requests = (0..8).map(|_| {
        let url = h.url("/whoami");
        let cookie = cookie.clone();
        async move {
            let mut b = Browser::new();
            b.request(
                http::Method::GET,
                &url,
                &[("accept", "application/json"), ("cookie", &cookie)],
                Default::default(),
            )
            .await
        }
    });
    let answers = join_all(requests).await;
    assert_eq!(h.idp.refresh_count(), 1, "one refresh for all of them");
    let tokens: Vec<String> = answers
        .iter()
        .map(|resp| {
            assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
            assert!(
                resp.set_cookies()
                    .iter()
                    .any(|c| c.starts_with("_portcullis=")),
                "each carries the refreshed session"
            );
            resp.upstream_header("x-forwarded-access-token").unwrap()
        })
        .collect();
    assert!(tokens.iter().all(|t| *t == tokens[0]), "all use its result");
    assert_ne!(tokens[0], first, "the upstream gets the new access token");

    // The browser keeps the new cookie: served without another refresh, and
    // never again with the old token's headers.
    b.cookies.insert(
        "_portcullis".into(),
        answers[0].set_cookies()[0]
            .split(';')
            .next()
            .unwrap()
            .trim_start_matches("_portcullis=")
            .to_owned(),
    );
    assert_eq!(access_token_seen_upstream(&mut b, &h).await, tokens[0]);
    assert_eq!(h.idp.refresh_count(), 1);
}

#[tokio::test]
async fn a_refresh_the_provider_refuses_ends_the_session() {
    let h = harness("").await;
    let mut browser = h.signed_in("ada").await;
    let mut api = Browser::new();
    api.cookies = browser.cookies.clone();
    // The user is disabled at the provider: their refresh tokens are refused.
    h.idp.revoke_user_grants("ada");
    wait_until_due().await;

    let resp = browser.get(&h.url("/private")).await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    assert!(resp.location().starts_with("/oauth2/sign_in"));
    assert!(
        browser.session_cookies().is_empty(),
        "the session cookie is deleted"
    );
    // A copy of the cookie (an API client) is refused too, without a second try.
    let resp = api.get_json(&h.url("/private")).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{}", resp.text());
    assert_eq!(h.idp.refresh_count(), 1);
}

#[tokio::test]
async fn an_unavailable_provider_does_not_end_the_session_and_is_retried_after_a_backoff() {
    let h = harness("").await;
    let mut b = h.signed_in("ada").await;
    let first = access_token_seen_upstream(&mut b, &h).await;
    h.idp.misbehave(Misbehaviour::TokenEndpointUnavailable);
    wait_until_due().await;

    assert_eq!(
        access_token_seen_upstream(&mut b, &h).await,
        first,
        "old tokens go on"
    );
    assert_eq!(h.idp.refresh_count(), 1);
    // Within the backoff: not asked again.
    assert_eq!(access_token_seen_upstream(&mut b, &h).await, first);
    assert_eq!(h.idp.refresh_count(), 1);

    // After it, the provider is asked again and answers.
    h.idp.misbehave(Misbehaviour::Nothing);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let renewed = access_token_seen_upstream(&mut b, &h).await;
    assert_eq!(h.idp.refresh_count(), 2);
    assert_ne!(renewed, first);
}

#[tokio::test]
async fn refresh_interval_refreshes_long_lived_tokens_too() {
    let h = Harness::with(Setup {
        upstream_toml: "pass_access_token = true".into(),
        session_toml: "refresh_interval = \"2s\"".into(),
        ..Setup::default()
    })
    .await;
    let mut b = h.signed_in("ada").await;
    let first = access_token_seen_upstream(&mut b, &h).await;
    assert_eq!(h.idp.refresh_count(), 0);
    wait_until_due().await;
    let renewed = access_token_seen_upstream(&mut b, &h).await;
    assert_eq!(h.idp.refresh_count(), 1);
    assert_ne!(renewed, first);
}

#[tokio::test]
async fn the_refresh_token_never_reaches_the_upstream() {
    let h = harness("").await;
    let mut b = h.signed_in("ada").await;
    wait_until_due().await;
    let resp = b.get_json(&h.url("/whoami")).await;
    assert_eq!(h.idp.refresh_count(), 1);
    let echoed = resp.text();
    for token in h.idp.refresh_tokens() {
        assert!(
            !echoed.contains(&token),
            "a refresh token reached the upstream"
        );
    }
}

#[tokio::test]
async fn with_redis_a_replica_holding_the_old_session_goes_on_with_anothers_rotated_refresh() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = Harness::with(Setup {
        idp: IdpOptions {
            access_token_lifetime: ACCESS_TOKEN_LIFETIME,
            rotate_refresh_tokens: true,
            ..IdpOptions::default()
        },
        upstream_toml: "pass_access_token = true".into(),
        session_toml: format!("store = \"redis\"\nredis_url = \"{}\"", server.url()),
        ..Setup::default()
    })
    .await;
    let b = a.replica().await;
    let mut browser = a.signed_in("ada").await;
    // B caches the session as signed in.
    let resp = browser.get_json(&b.url("/whoami")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    wait_until_due().await;

    let on_a = access_token_seen_upstream(&mut browser, &a).await;
    assert_eq!(a.idp.refresh_count(), 1);
    // B still holds the old session, due, with the refresh token A spent:
    // the provider refuses it, and B goes on with what A stored.
    let resp = browser.get_json(&b.url("/whoami")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(a.idp.refresh_count(), 2, "B tried its old refresh token");
    assert_eq!(
        resp.upstream_header("x-forwarded-access-token").as_deref(),
        Some(&*on_a),
        "B uses A's refreshed tokens"
    );
    assert_eq!(access_token_seen_upstream(&mut browser, &a).await, on_a);
}
