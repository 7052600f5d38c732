//! Every id_token and userinfo defect refuses the sign-in and mints no session.

use std::time::Duration;

use http::StatusCode;
use portcullis::demo::idp::Misbehaviour;
use portcullis::provider::JWKS_REFETCH_INTERVAL;

use crate::support::{Harness, Setup};

async fn sign_in_is_refused(m: Misbehaviour) {
    sign_in_is_refused_with(m, Setup::default()).await
}

async fn sign_in_is_refused_with(m: Misbehaviour, setup: Setup) {
    let h = Harness::with(setup).await;
    h.idp.misbehave(m);
    let mut b = h.browser();
    let resp = b.sign_in(&h, "ada", "/").await;
    assert_ne!(resp.status, StatusCode::FOUND, "{m:?} must not sign in");
    assert!(resp.status.is_client_error() || resp.status.is_server_error());
    assert_ne!(
        resp.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{m:?}: never a 500"
    );
    assert!(b.session_cookies().is_empty(), "{m:?} minted a session");
    // And the browser is still signed out.
    assert_eq!(
        b.get_json(&h.url("/")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn wrong_issuer_is_refused() {
    sign_in_is_refused(Misbehaviour::WrongIssuer).await;
}

#[tokio::test]
async fn wrong_audience_is_refused() {
    sign_in_is_refused(Misbehaviour::WrongAudience).await;
}

#[tokio::test]
async fn several_audiences_without_azp_are_refused() {
    sign_in_is_refused(Misbehaviour::ExtraAudienceWithoutAzp).await;
}

#[tokio::test]
async fn a_token_for_another_client_naming_us_as_an_extra_audience_is_refused() {
    sign_in_is_refused(Misbehaviour::ExtraAudienceForAnotherAzp).await;
}

#[tokio::test]
async fn expired_token_is_refused() {
    sign_in_is_refused(Misbehaviour::Expired).await;
}

#[tokio::test]
async fn token_issued_in_the_future_is_refused() {
    sign_in_is_refused(Misbehaviour::IssuedInFuture).await;
}

#[tokio::test]
async fn alg_none_is_refused() {
    sign_in_is_refused(Misbehaviour::AlgNone).await;
}

#[tokio::test]
async fn hmac_signed_with_the_public_key_is_refused() {
    sign_in_is_refused(Misbehaviour::AlgHs256WithPublicKey).await;
}

#[tokio::test]
async fn bad_signature_is_refused() {
    sign_in_is_refused(Misbehaviour::BadSignature).await;
}

#[tokio::test]
async fn missing_nonce_is_refused() {
    sign_in_is_refused(Misbehaviour::MissingNonce).await;
}

#[tokio::test]
async fn wrong_nonce_is_refused() {
    sign_in_is_refused(Misbehaviour::WrongNonce).await;
}

#[tokio::test]
async fn userinfo_with_another_sub_is_refused() {
    let setup = Setup {
        provider_toml: "fetch_userinfo = true".into(),
        ..Setup::default()
    };
    sign_in_is_refused_with(Misbehaviour::UserinfoSubMismatch, setup).await;
}

/// Moves Tokio's clock (the one portcullis' JWKS pacing reads) `by` forward at
/// once, firing the timers that fall due, as if that time had passed.
async fn skip(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

#[tokio::test]
async fn key_rotation_is_followed_by_one_jwks_refetch() {
    let h = Harness::start().await;
    h.signed_in("ada").await;
    skip(JWKS_REFETCH_INTERVAL).await;
    let fetches = h.idp.jwks_fetches();
    h.idp.rotate_key();
    // The next token carries a kid portcullis has not seen: one re-fetch, then success.
    h.signed_in("grace").await;
    assert_eq!(h.idp.jwks_fetches(), fetches + 1);
    // Further sign-ins use the cached keys.
    h.signed_in("ada").await;
    assert_eq!(h.idp.jwks_fetches(), fetches + 1);
}

#[tokio::test]
async fn two_key_rotations_ten_seconds_apart_both_sign_in() {
    let h = Harness::start().await;
    let fetches = h.idp.jwks_fetches();
    for _ in 0..2 {
        skip(Duration::from_secs(10)).await;
        h.idp.rotate_key();
        h.signed_in("ada").await;
    }
    assert_eq!(
        h.idp.jwks_fetches(),
        fetches + 2,
        "one re-fetch per rotation"
    );
}

#[tokio::test]
async fn a_rotation_right_after_a_refetch_waits_for_the_next_one_which_is_shared() {
    let h = Harness::start().await;
    skip(JWKS_REFETCH_INTERVAL).await;
    h.idp.rotate_key();
    h.signed_in("ada").await;
    let fetches = h.idp.jwks_fetches();
    // Rotated again at once: the re-fetch just made is too recent to repeat now.
    h.idp.rotate_key();
    let mut browsers = Vec::new();
    for sub in ["ada", "grace", "ada"] {
        let mut b = h.browser();
        let authorize = b.start(&h, "/").await;
        let callback = b.authorize(&authorize, sub).await;
        browsers.push((b, callback));
    }
    let tokens_before = h.idp.token_requests().len();
    let callbacks = futures_util::future::join_all(
        browsers
            .iter_mut()
            .map(|(b, callback)| async move { b.get(callback).await }),
    );
    let meanwhile = async {
        // Every callback has met the new key and is waiting, none answered.
        while h.idp.token_requests().len() < tokens_before + 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            h.idp.jwks_fetches(),
            fetches,
            "no re-fetch within the interval"
        );
        skip(JWKS_REFETCH_INTERVAL).await;
    };
    let (answers, ()) = tokio::join!(callbacks, meanwhile);
    for answer in answers {
        assert_eq!(answer.status, StatusCode::FOUND, "{}", answer.text());
    }
    assert_eq!(h.idp.jwks_fetches(), fetches + 1, "one re-fetch, shared");
}

#[tokio::test]
async fn an_unknown_kid_is_refused_after_one_refetch() {
    let h = Harness::start().await;
    h.signed_in("ada").await;
    skip(JWKS_REFETCH_INTERVAL).await;
    let fetches = h.idp.jwks_fetches();
    h.idp.misbehave(Misbehaviour::UnknownKid);
    let mut b = h.browser();
    let resp = b.sign_in(&h, "ada", "/").await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{}", resp.text());
    assert!(b.session_cookies().is_empty());
    assert_eq!(
        h.idp.jwks_fetches(),
        fetches + 1,
        "one re-fetch, not a loop"
    );
}
