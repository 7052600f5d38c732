//! Every id_token and userinfo defect refuses the sign-in and mints no session.

use http::StatusCode;
use portcullis::demo::idp::Misbehaviour;

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

#[tokio::test]
async fn key_rotation_is_followed_by_one_jwks_refetch() {
    let h = Harness::start().await;
    h.signed_in("ada").await;
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
async fn unknown_kid_refetch_is_rate_limited() {
    let h = Harness::start().await;
    h.signed_in("ada").await;
    let fetches = h.idp.jwks_fetches();
    h.idp.misbehave(Misbehaviour::UnknownKid);
    for _ in 0..3 {
        let mut b = h.browser();
        let resp = b.sign_in(&h, "ada", "/").await;
        assert_ne!(resp.status, StatusCode::FOUND);
    }
    // The first unknown kid re-fetches the JWKS (still without it: refused);
    // the next two fall within the minute and do not.
    assert_eq!(
        h.idp.jwks_fetches(),
        fetches + 1,
        "exactly one re-fetch a minute"
    );
}
