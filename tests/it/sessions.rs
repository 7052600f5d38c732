//! Broken cookies and broken callbacks mean "signed out", never a 500.

use http::StatusCode;

use crate::support::{Harness, Resp, SECRET, Setup, param};

/// Sends `cookie_value` as the session cookie and expects "no session": a redirect
/// to sign in and the cookie cleared.
async fn cookie_means_signed_out(h: &Harness, cookie_value: &str) {
    let mut b = h.browser();
    let cookie = format!("_portcullis={cookie_value}");
    let resp = b
        .request(
            http::Method::GET,
            &h.url("/private"),
            &[("accept", "text/html"), ("cookie", &cookie)],
            Default::default(),
        )
        .await;
    assert_eq!(
        resp.status,
        StatusCode::FOUND,
        "value {cookie_value:?}: {}",
        resp.text()
    );
    assert!(resp.location().starts_with("/oauth2/sign_in"));
    let cleared = resp.set_cookies();
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("_portcullis=") && c.to_ascii_lowercase().contains("max-age=0")),
        "bad cookie {cookie_value:?} is cleared: {cleared:?}"
    );
}

/// Whether `resp` deletes the cookie `name` that was set on `path`: an empty
/// value and `Max-Age=0`, on the same path (a deletion on another path leaves
/// the cookie in a real browser).
pub(crate) fn deletes_cookie(resp: &Resp, name: &str, path: &str) -> bool {
    resp.set_cookies().iter().any(|c| {
        let mut parts = c.split(';').map(str::trim);
        let first_is_empty_value = parts.next() == Some(&format!("{name}=")[..]);
        let attributes: Vec<String> = parts.map(str::to_ascii_lowercase).collect();
        first_is_empty_value
            && attributes.iter().any(|a| a == "max-age=0")
            && attributes.iter().any(|a| *a == format!("path={path}"))
    })
}

#[tokio::test]
async fn tampered_truncated_and_garbage_session_cookies_mean_signed_out() {
    let h = Harness::start().await;
    let b = h.signed_in("ada").await;
    let good = b.cookies["_portcullis"].clone();
    let mut tampered = good.clone().into_bytes();
    let mid = tampered.len() / 2;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    cookie_means_signed_out(&h, &String::from_utf8(tampered).unwrap()).await;
    cookie_means_signed_out(&h, &good[..good.len() - 5]).await;
    cookie_means_signed_out(&h, &good[..10]).await;
    cookie_means_signed_out(&h, "not-base64-!!!").await;
    cookie_means_signed_out(&h, "").await;
}

#[tokio::test]
async fn cookie_sealed_with_a_foreign_secret_means_signed_out() {
    let foreign = Harness::start().await.signed_in("ada").await.cookies["_portcullis"].clone();
    let other = Harness::with(Setup {
        session_toml: "secret = \"another-secret-0123456789abcdef-0123456789\"".into(),
        ..Setup::default()
    })
    .await;
    cookie_means_signed_out(&other, &foreign).await;
}

#[tokio::test]
async fn previous_secret_still_opens_sessions_after_rotation() {
    let old = Harness::start().await;
    let b = old.signed_in("ada").await;
    let sealed = b.cookies["_portcullis"].clone();
    let new = Harness::with(Setup {
        session_toml: format!("previous_secrets = [\"{SECRET}\"]\nsecret = \"rotated-secret-0123456789abcdef-0123456789\""),
        ..Setup::default()
    })
    .await;
    let mut nb = new.browser();
    let resp = nb
        .request(
            http::Method::GET,
            &new.url("/x"),
            &[
                ("accept", "application/json"),
                ("cookie", &format!("_portcullis={sealed}")),
            ],
            Default::default(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(
        resp.upstream_header("x-forwarded-user").as_deref(),
        Some("ada")
    );
}

#[tokio::test]
async fn malformed_cookie_headers_never_panic() {
    let h = Harness::start().await;
    let mut b = h.browser();
    for cookie in [
        ";;;",
        "=",
        "_portcullis",
        "_portcullis_1=abc",
        "_portcullis=a; _portcullis=b",
        "_portcullis_2=x; _portcullis=y",
        "_portcullis_flow_zz=1",
        "_portcullis=\u{e9}\u{e9}",
    ] {
        let resp = b
            .request(
                http::Method::GET,
                &h.url("/p"),
                &[("accept", "application/json"), ("cookie", cookie)],
                Default::default(),
            )
            .await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "cookie {cookie:?}");
    }
}

#[tokio::test]
async fn callback_with_unknown_state_is_refused() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let authorize = b.start(&h, "/").await;
    let callback = b.authorize(&authorize, "ada").await;
    let code = param(&callback, "code").unwrap();
    let resp = b
        .get(&h.url(&format!("/oauth2/callback/demo?code={code}&state=forged")))
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert!(b.session_cookies().is_empty());
}

#[tokio::test]
async fn callback_without_flow_cookie_is_refused() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let authorize = b.start(&h, "/").await;
    let callback = b.authorize(&authorize, "ada").await;
    b.cookies.clear();
    let resp = b.get(&callback).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert!(b.session_cookies().is_empty());
}

#[tokio::test]
async fn replayed_callback_is_refused_even_with_the_flow_cookie() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let authorize = b.start(&h, "/").await;
    let flow_cookies: Vec<(String, String)> = b
        .cookies
        .iter()
        .filter(|(k, _)| k.contains("_flow_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let callback = b.authorize(&authorize, "ada").await;
    assert_eq!(b.get(&callback).await.status, StatusCode::FOUND);

    // An attacker who captured the callback URL and the flow cookie replays both.
    let mut attacker = h.browser();
    attacker.cookies.extend(flow_cookies);
    let resp = attacker.get(&callback).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.text());
    assert!(attacker.session_cookies().is_empty());
}

#[tokio::test]
async fn callback_on_another_providers_path_is_refused() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let authorize = b.start(&h, "/").await;
    let callback = b.authorize(&authorize, "ada").await;
    let other = callback.replace("/oauth2/callback/demo", "/oauth2/callback/other");
    let resp = b.get(&other).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert!(b.session_cookies().is_empty());
}

#[tokio::test]
async fn every_sign_in_mints_a_new_session() {
    let h = Harness::start().await;
    let mut b = h.signed_in("ada").await;
    let first = b.cookies["_portcullis"].clone();
    let resp = b.sign_in(&h, "grace", "/").await;
    assert_eq!(resp.status, StatusCode::FOUND);
    assert_ne!(b.cookies["_portcullis"], first);
    let app = b.get_json(&h.url("/")).await;
    assert_eq!(
        app.upstream_header("x-forwarded-user").as_deref(),
        Some("grace")
    );
}

#[tokio::test]
async fn sign_in_page_deletes_broken_session_cookies_and_keeps_a_good_session() {
    let h = Harness::start().await;
    let mut b = h.browser();
    b.cookies.insert("_portcullis".into(), "garbage".into());
    b.cookies
        .insert("_portcullis_1".into(), "more-garbage".into());
    let page = b.get(&h.url("/oauth2/sign_in?rd=/x")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    for name in ["_portcullis", "_portcullis_1"] {
        assert!(
            deletes_cookie(&page, name, "/"),
            "the sign-in page deletes the broken {name}: {:?}",
            page.set_cookies()
        );
    }
    assert!(b.session_cookies().is_empty(), "{:?}", b.cookies);

    // A session that opens is left alone.
    let mut signed_in = h.signed_in("ada").await;
    let page = signed_in.get(&h.url("/oauth2/sign_in?rd=/x")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.set_cookies().is_empty(), "{:?}", page.set_cookies());
    assert!(!signed_in.session_cookies().is_empty());
}
