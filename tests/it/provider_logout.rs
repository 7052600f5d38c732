//! Sign-out that reaches the provider (RFC 7009 revocation, RP-initiated
//! logout) and sign-out the provider asks for (Back-Channel Logout 1.0), over
//! real sockets against the demo identity provider.

use bytes::Bytes;
use http::{Method, StatusCode};
use portcullis::demo::idp::LogoutTokenFlaw;

use crate::redis_server::RedisServer;
use crate::support::{Browser, Harness, Setup, param};

async fn post_logout_token(h: &Harness, token: &str) -> crate::support::Resp {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("logout_token", token)
        .finish();
    Browser::new()
        .request(
            Method::POST,
            &h.url("/oauth2/backchannel_logout/demo"),
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from(body),
        )
        .await
}

async fn is_signed_in(b: &mut Browser, h: &Harness) -> bool {
    let resp = b.get(&h.url("/private")).await;
    match resp.status {
        StatusCode::OK => true,
        StatusCode::FOUND => false,
        other => panic!("{other}: {}", resp.text()),
    }
}

#[tokio::test]
async fn sign_out_revokes_the_tokens_at_the_provider() {
    let h = Harness::start().await;
    let mut b = h.signed_in("ada").await;
    let resp = b.get(&h.url("/oauth2/sign_out")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let revoked = h.idp.revoked();
    assert_eq!(revoked.len(), 2, "the refresh token and the access token");
    // The revoked refresh token no longer works at the provider.
    assert!(!is_signed_in(&mut b, &h).await);
}

#[tokio::test]
async fn a_cookie_copied_before_sign_out_no_longer_opens() {
    let h = Harness::start().await;
    let mut b = h.signed_in("ada").await;
    let mut copy = Browser::new();
    copy.cookies = b.cookies.clone();
    b.get(&h.url("/oauth2/sign_out")).await;
    assert!(!is_signed_in(&mut copy, &h).await);
}

#[tokio::test]
async fn sign_out_everywhere_ends_the_users_other_sessions_only() {
    let h = Harness::start().await;
    let mut first = h.signed_in("ada").await;
    let mut second = h.signed_in("ada").await;
    let mut grace = h.signed_in("grace").await;
    first.get(&h.url("/oauth2/sign_out?everywhere=1")).await;
    assert!(!is_signed_in(&mut second, &h).await);
    assert!(is_signed_in(&mut grace, &h).await);
    // A new sign-in after it lives. (Within the same second it would not:
    // session times are whole seconds, and a tie is judged revoked.)
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut later = h.signed_in("ada").await;
    assert!(is_signed_in(&mut later, &h).await);
}

#[tokio::test]
async fn rp_initiated_logout_goes_to_the_provider_and_back_to_rd() {
    let h = Harness::with(Setup {
        provider_toml: "idp_logout = true".into(),
        ..Setup::default()
    })
    .await;
    let mut b = h.signed_in("ada").await;
    let resp = b.get(&h.url("/oauth2/sign_out?rd=/goodbye")).await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    let end_session = resp.location().to_owned();
    assert!(
        end_session.starts_with(&format!("{}end_session", h.idp.issuer())),
        "{end_session}"
    );
    assert_eq!(
        param(&end_session, "post_logout_redirect_uri").as_deref(),
        Some(&*h.url("/oauth2/signed_out"))
    );
    assert_eq!(
        param(&end_session, "client_id").as_deref(),
        Some("portcullis-demo")
    );
    assert!(param(&end_session, "id_token_hint").is_some());
    assert!(b.session_cookies().is_empty(), "signed out here first");

    // The provider ends its own session and sends the browser back.
    let resp = b.get(&end_session).await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    assert_eq!(h.idp.end_session_calls().len(), 1);
    let back = resp.location().to_owned();
    assert!(back.starts_with(&h.url("/oauth2/signed_out?")), "{back}");
    let resp = b.get(&back).await;
    assert_eq!(resp.status, StatusCode::FOUND);
    assert_eq!(resp.location(), "/goodbye");

    // A forged or missing state shows the signed-out page, never a redirect.
    for forged in ["/oauth2/signed_out?state=x", "/oauth2/signed_out"] {
        let resp = b.get(&h.url(forged)).await;
        assert_eq!(resp.status, StatusCode::OK, "{forged}");
        assert!(resp.text().contains("signed out"), "{}", resp.text());
    }
}

#[tokio::test]
async fn a_back_channel_logout_by_sid_ends_that_session_only_and_once() {
    let h = Harness::start().await;
    let mut first = h.signed_in("ada").await;
    let first_sid = h.idp.last_sid().expect("the IdP has a session");
    let mut second = h.signed_in("ada").await;

    let token = h.idp.logout_token(None, Some(&first_sid)).await;
    let resp = post_logout_token(&h, &token).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    assert!(!is_signed_in(&mut first, &h).await);
    assert!(is_signed_in(&mut second, &h).await, "another sid lives");

    let replayed = post_logout_token(&h, &token).await;
    assert_eq!(
        replayed.status,
        StatusCode::BAD_REQUEST,
        "{}",
        replayed.text()
    );
}

#[tokio::test]
async fn a_back_channel_logout_by_sub_ends_every_session_of_the_user() {
    let h = Harness::start().await;
    let mut first = h.signed_in("ada").await;
    let mut second = h.signed_in("ada").await;
    let mut grace = h.signed_in("grace").await;
    let resp = post_logout_token(&h, &h.idp.logout_token(Some("ada"), None).await).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert!(!is_signed_in(&mut first, &h).await);
    assert!(!is_signed_in(&mut second, &h).await);
    assert!(is_signed_in(&mut grace, &h).await);
}

#[tokio::test]
async fn a_flawed_logout_token_is_refused_with_400_and_ends_nothing() {
    let h = Harness::start().await;
    let mut b = h.signed_in("ada").await;
    for flaw in LogoutTokenFlaw::ALL {
        let token = h.idp.logout_token_with("ada", flaw).await;
        let resp = post_logout_token(&h, &token).await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{flaw:?}: {}",
            resp.text()
        );
        assert_eq!(resp.json()["error"], "invalid_request", "{flaw:?}");
    }
    for garbage in ["", "x", "a.b.c"] {
        let resp = post_logout_token(&h, garbage).await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{garbage:?}");
    }
    assert!(is_signed_in(&mut b, &h).await);
    // Not a POST: refused with Allow.
    let resp = b.get(&h.url("/oauth2/backchannel_logout/demo")).await;
    assert_eq!(resp.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.header("allow"), Some("POST"));
}

#[tokio::test]
async fn with_redis_a_back_channel_logout_received_by_one_replica_ends_the_session_on_the_other() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = Harness::with(Setup {
        session_toml: format!("store = \"redis\"\nredis_url = \"{}\"", server.url()),
        ..Setup::default()
    })
    .await;
    let b = a.replica().await;
    let mut browser = a.signed_in("ada").await;
    let sid = a.idp.last_sid().unwrap();
    // B has the session cached.
    assert_eq!(browser.get(&b.url("/private")).await.status, StatusCode::OK);

    let token = a.idp.logout_token(None, Some(&sid)).await;
    let resp = post_logout_token(&a, &token).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = browser.get(&b.url("/private")).await.status;
        if status == StatusCode::FOUND {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(
            tokio::time::Instant::now() < deadline,
            "B still serves the session"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
