//! Broken cookies and broken callbacks mean "signed out", never a 500.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use portcullis::now_unix;
use portcullis::session::SessionKeys;

use crate::support::{Browser, Harness, Resp, SECRET, Setup, param};

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
    let token_requests = h.idp.token_requests().len();

    // An attacker who captured the callback URL and the flow cookie replays both.
    let mut attacker = h.browser();
    attacker.cookies.extend(flow_cookies);
    let resp = attacker.get(&callback).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.text());
    assert!(resp.text().contains("already used"), "{}", resp.text());
    assert!(attacker.session_cookies().is_empty());
    // Refused by the flow's own record, before the code reaches the provider
    // (whose refusal of a used code would hide a missing check).
    assert_eq!(h.idp.token_requests().len(), token_requests);
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
async fn a_flow_started_for_one_provider_is_refused_on_another_providers_path() {
    // Two providers on the same identity provider: the code would be good for both.
    let provider = |id: &str| {
        format!(
            "[providers.{id}]\nissuer = \"{{demo_idp}}\"\nclient_id = \"portcullis-demo\"\nclient_secret = \"demo-secret\"\n"
        )
    };
    let h = Harness::with(Setup {
        providers_toml: Some(provider("demo") + &provider("twin")),
        ..Setup::default()
    })
    .await;
    let mut b = h.browser();
    let authorize = b.start(&h, "/").await;
    let callback = b.authorize(&authorize, "ada").await;
    let other = callback.replace("/oauth2/callback/demo?", "/oauth2/callback/twin?");
    assert_ne!(other, callback);
    let resp = b.get(&other).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.text());
    assert!(
        resp.text().contains("different provider"),
        "{}",
        resp.text()
    );
    assert!(b.session_cookies().is_empty());
    assert!(h.idp.token_requests().is_empty(), "no code was exchanged");
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

/// The flow cookies `b` holds.
fn flows(b: &crate::support::Browser) -> Vec<String> {
    b.cookies
        .keys()
        .filter(|k| k.starts_with("_portcullis_flow_"))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_page_that_starts_sign_in_in_a_loop_holds_five_flows_and_still_signs_in() {
    let h = Harness::start().await;
    let mut b = h.browser();
    // About 330 bytes a flow: unbounded, 100 starts fill the 32 KiB head limit.
    for _ in 0..120 {
        b.start(&h, "/again").await;
    }
    assert_eq!(flows(&b).len(), 5, "{:?}", flows(&b));
    let done = b.sign_in(&h, "ada", "/").await;
    assert_eq!(done.status, StatusCode::FOUND, "{}", done.text());
    let out = b.get(&h.url("/oauth2/sign_out")).await;
    assert_eq!(out.status, StatusCode::OK);
}

#[tokio::test]
async fn a_sixth_sign_in_drops_the_oldest_flow() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let mut older = Vec::new();
    for _ in 0..3 {
        older.push(b.start(&h, "/older").await);
    }
    let older_flows = flows(&b);
    // Flows know their age to the second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut newer = Vec::new();
    for _ in 0..4 {
        let before = flows(&b);
        newer.push(b.start(&h, "/newer").await);
        let started: Vec<String> = flows(&b)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        assert_eq!(started.len(), 1);
    }
    let kept = flows(&b);
    assert_eq!(kept.len(), 5, "{kept:?}");
    let older_kept = older_flows.iter().filter(|f| kept.contains(f)).count();
    assert_eq!(
        older_kept, 1,
        "two of the three older flows dropped: {kept:?}"
    );
    // The newest sign-ins finish; a dropped one is refused, and signs nobody in.
    let callback = b.authorize(&newer[0], "ada").await;
    assert_eq!(b.get(&callback).await.status, StatusCode::FOUND);
    b.cookies.retain(|k, _| k.contains("_flow_"));
    let mut refused = 0;
    for authorize in &older {
        let callback = b.authorize(authorize, "ada").await;
        let done = b.get(&callback).await;
        if done.status == StatusCode::BAD_REQUEST {
            refused += 1;
        } else {
            assert_eq!(done.status, StatusCode::FOUND, "{}", done.text());
        }
    }
    assert_eq!(refused, 2);
}

#[tokio::test]
async fn a_head_over_the_limit_from_flow_cookies_gets_a_431_that_deletes_only_them() {
    let h = Harness::start().await;
    let mut b = h.signed_in("ada").await;
    b.cookies.insert("app".into(), "kept".into());
    // 40 KB of flow cookies, as browsers from before the five-flow bound may hold.
    let junk: Vec<String> = (0..64)
        .map(|i| format!("_portcullis_flow_{i:016x}"))
        .collect();
    for name in &junk {
        b.cookies.insert(name.clone(), "x".repeat(600));
    }
    let resp = b.get(&h.url("/reports")).await;
    assert_eq!(resp.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(resp.text().contains("have been cleared"), "{}", resp.text());
    assert_eq!(resp.header("x-frame-options"), Some("DENY"));
    for name in &junk {
        assert!(deletes_cookie(&resp, name, "/oauth2/"), "{name}");
    }
    assert_eq!(
        resp.set_cookies().len(),
        junk.len(),
        "the session and the app's cookie stay"
    );
    // The next request fits, still signed in.
    let next = b.get_json(&h.url("/reports")).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.text());
    assert_eq!(
        next.upstream_header("x-forwarded-user").as_deref(),
        Some("ada")
    );
    assert_eq!(next.upstream_header("cookie").as_deref(), Some("app=kept"));
}

#[tokio::test]
async fn a_head_over_the_limit_from_session_cookies_gets_a_431_that_deletes_them() {
    let h = Harness::start().await;
    let mut b = h.browser();
    b.cookies.insert("_portcullis".into(), "x".repeat(3900));
    for i in 1..10 {
        b.cookies
            .insert(format!("_portcullis_{i}"), "x".repeat(3900));
    }
    b.cookies
        .insert("_portcullis_flow_0123456789abcdef".into(), "x".repeat(300));
    let resp = b.get_json(&h.url("/oauth2/sign_in")).await;
    assert_eq!(resp.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(resp.json()["error"], "request_header_fields_too_large");
    assert!(
        b.cookies.is_empty(),
        "every portcullis cookie deleted: {:?}",
        b.cookies
    );
    let page = b.get(&h.url("/oauth2/sign_in")).await;
    assert_eq!(page.status, StatusCode::OK);
}

#[tokio::test]
async fn a_head_over_the_limit_for_other_reasons_deletes_nothing() {
    let h = Harness::start().await;
    let mut b = h.signed_in("ada").await;
    let big = "a".repeat(40 * 1024);
    let resp = b
        .request(
            http::Method::GET,
            &h.url("/reports"),
            &[("accept", "text/html"), ("x-big", &big)],
            Default::default(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(resp.set_cookies().is_empty(), "{:?}", resp.set_cookies());
    assert!(!resp.text().contains("cleared"), "{}", resp.text());
    assert_eq!(b.get_json(&h.url("/reports")).await.status, StatusCode::OK);
    // Past the hard cap, hyper refuses the head before portcullis sees it.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let huge = "a".repeat(portcullis::head_limit::hard_cap(32 * 1024) + 1);
    let head = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\n\r\n");
    let _ = s.write_all(head.as_bytes()).await;
    let mut out = String::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        s.read_to_string(&mut out),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out:?}");
}

/// The session `b` holds as the server wrote it, opened with the server's own
/// keys, to be changed and sealed again with [`seal`]: a session portcullis
/// could have written itself.
fn opened_session(h: &Harness, b: &Browser) -> (SessionKeys, serde_json::Value) {
    assert!(
        !b.cookies.contains_key("_portcullis_1"),
        "one cookie, no chunks"
    );
    let keys = SessionKeys::new(&h.app().config.session);
    let json = keys
        .open("_portcullis", &b.cookies["_portcullis"])
        .expect("the session cookie opens");
    let session = serde_json::from_slice(&json).expect("a session");
    (keys, session)
}

fn seal(keys: &SessionKeys, session: &serde_json::Value) -> String {
    keys.seal("_portcullis", session.to_string().as_bytes())
}

/// The status of a request to the app carrying only the session cookie `sealed`.
async fn status_with_session(h: &Harness, sealed: &str) -> StatusCode {
    status_with_cookie(h, &format!("_portcullis={sealed}")).await
}

/// The status of a request to the app carrying only the `Cookie` header `cookie`.
async fn status_with_cookie(h: &Harness, cookie: &str) -> StatusCode {
    h.browser()
        .request(
            http::Method::GET,
            &h.url("/x"),
            &[("accept", "application/json"), ("cookie", cookie)],
            Default::default(),
        )
        .await
        .status
}

/// In the first half of a second of the system clock (the one sessions are
/// judged by), so that the next few requests see the same `now_unix()`.
async fn early_in_a_second() {
    let into = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_millis();
    if into > 500 {
        tokio::time::sleep(Duration::from_millis(u64::from(1010 - into))).await;
    }
}

#[tokio::test]
async fn a_session_is_refused_from_the_second_it_expires() {
    let h = Harness::start().await;
    let b = h.signed_in("ada").await;
    let (keys, mut session) = opened_session(&h, &b);
    early_in_a_second().await;
    let now = now_unix();
    session["expires_at"] = (now + 60).into();
    assert_eq!(
        status_with_session(&h, &seal(&keys, &session)).await,
        StatusCode::OK
    );
    session["expires_at"] = now.into();
    assert_eq!(
        status_with_session(&h, &seal(&keys, &session)).await,
        StatusCode::UNAUTHORIZED,
        "expires_at is now"
    );
}

#[tokio::test]
async fn a_session_served_from_the_opened_session_cache_still_expires() {
    let h = Harness::start().await;
    let b = h.signed_in("ada").await;
    let (keys, mut session) = opened_session(&h, &b);
    early_in_a_second().await;
    let expires_at = now_unix() + 1;
    session["expires_at"] = expires_at.into();
    let sealed = seal(&keys, &session);
    // Opened, found usable and remembered...
    assert_eq!(status_with_session(&h, &sealed).await, StatusCode::OK);
    while now_unix() < expires_at {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ... and the same value, now answered from the cache, is past its expiry.
    assert_eq!(
        status_with_session(&h, &sealed).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_session_idle_for_longer_than_the_idle_timeout_is_refused() {
    let h = Harness::with(Setup {
        session_toml: "idle_timeout = \"10m\"".into(),
        ..Setup::default()
    })
    .await;
    let b = h.signed_in("ada").await;
    let (keys, mut session) = opened_session(&h, &b);
    for (idle, status) in [(590, StatusCode::OK), (601, StatusCode::UNAUTHORIZED)] {
        session["last_seen_at"] = (now_unix() - idle).into();
        let got = status_with_session(&h, &seal(&keys, &session)).await;
        assert_eq!(got, status, "idle for {idle} s");
    }
}

#[tokio::test]
async fn a_session_sealed_for_another_cookie_name_does_not_open_under_this_one() {
    // Two deployments sharing a secret: each value opens only under the name it
    // was sealed for (the name is the seal's associated data).
    let sealed = Harness::start().await.signed_in("ada").await.cookies["_portcullis"].clone();
    let other = Harness::with(Setup {
        session_toml: "cookie_name = \"_other\"".into(),
        ..Setup::default()
    })
    .await;
    let keys = SessionKeys::new(&other.app().config.session);
    let session = keys.open("_portcullis", &sealed).expect("the same secret");
    for (value, status) in [
        (keys.seal("_other", &session), StatusCode::OK),
        (sealed, StatusCode::UNAUTHORIZED),
    ] {
        let got = status_with_cookie(&other, &format!("_other={value}")).await;
        assert_eq!(got, status);
    }
}
