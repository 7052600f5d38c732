//! The reverse proxy itself: streaming, hop-by-hop headers, upstream failures, limits.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Harness, Setup, closed_addr};

#[tokio::test]
async fn request_body_and_method_reach_the_upstream() {
    let h = Harness::start().await;
    let mut b = h.signed_in("ada").await;
    let resp = b
        .request(
            Method::POST,
            &h.url("/submit?x=1"),
            &[
                ("accept", "application/json"),
                ("content-type", "text/plain"),
            ],
            Bytes::from("hello upstream"),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    let echo = resp.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["uri"], "/submit?x=1");
    assert_eq!(echo["body"], "hello upstream");
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let h = Harness::start().await;
    let mut b = h.signed_in("ada").await;
    let resp = b
        .request(
            Method::GET,
            &h.url("/hop"),
            &[
                ("accept", "application/json"),
                ("connection", "x-client-secret"),
                ("x-client-secret", "1"),
                ("te", "trailers"),
                ("proxy-connection", "keep-alive"),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(
        resp.header("x-hop-secret").is_none(),
        "listed in the upstream's Connection header"
    );
    assert!(resp.header("keep-alive").is_none());
    assert_eq!(resp.header("x-normal"), Some("1"));

    let echo = b
        .request(
            Method::GET,
            &h.url("/echo"),
            &[
                ("accept", "application/json"),
                ("connection", "x-client-secret"),
                ("x-client-secret", "1"),
                ("proxy-connection", "keep-alive"),
            ],
            Bytes::new(),
        )
        .await;
    assert!(echo.upstream_header("x-client-secret").is_none());
    assert!(echo.upstream_header("proxy-connection").is_none());
}

#[tokio::test]
async fn the_upstream_gets_the_apps_cookies_and_none_of_portcullis() {
    let h = Harness::start().await;
    let mut b = h.signed_in("ada").await;
    // A sign-in started and left unfinished: a flow cookie beside the session.
    b.start(&h, "/elsewhere").await;
    assert!(b.cookies.keys().any(|k| k.contains("_flow_")));
    b.cookies.insert("app_session".into(), "xyz".into());
    b.cookies.insert("theme".into(), "dark".into());
    let echo = b.get_json(&h.url("/echo")).await;
    assert_eq!(echo.status, StatusCode::OK, "{}", echo.text());
    assert_eq!(
        echo.upstream_values("cookie"),
        ["app_session=xyz; theme=dark"],
        "portcullis' cookies never reach the upstream, the app's all do"
    );
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_upstream_is_504() {
    let closed = closed_addr();
    let h = Harness::with(Setup {
        upstream: Some(closed),
        ..Setup::default()
    })
    .await;
    let mut b = h.signed_in("ada").await;
    let resp = b.get(&h.url("/")).await;
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY);
    assert!(resp.text().to_lowercase().contains("upstream"));

    let h = Harness::start().await;
    let mut b = h.signed_in("ada").await;
    let resp = b.get_json(&h.url("/delay/4000")).await;
    assert_eq!(resp.status, StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn response_body_is_streamed_not_buffered() {
    let h = Harness::start().await;
    let b = h.signed_in("ada").await;
    let cookie = b.cookie_header();
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let req = format!(
        "GET /stream HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // The head and the first chunk arrive before the upstream has finished (5 × 50 ms).
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf))
        .await
        .expect("first bytes before the body ends")
        .unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let mut rest = String::new();
    s.read_to_string(&mut rest).await.unwrap();
    let all = first + &rest;
    assert!(all.contains("chunk 4"), "{all}");
}

#[tokio::test]
async fn oversized_request_head_is_refused() {
    let h = Harness::start().await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let big = "a".repeat(64 * 1024);
    let req = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out:?}");
}

#[tokio::test]
async fn api_rule_answers_401_json_even_to_browsers() {
    let h = Harness::with(Setup {
        extra_toml: "[[rules]]\npath = \"/api/\"\napi = true\n".into(),
        ..Setup::default()
    })
    .await;
    let mut b = h.browser();
    let resp = b.get(&h.url("/api/items")).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(resp.json()["error"], "unauthenticated");
}

#[tokio::test]
async fn group_rule_answers_403_to_users_outside_it() {
    let h = Harness::with(Setup {
        extra_toml: "[[rules]]\npath = \"/admin/\"\ngroups = [\"admins\"]\n".into(),
        ..Setup::default()
    })
    .await;
    let mut grace = h.signed_in("grace").await;
    assert_eq!(
        grace.get(&h.url("/admin/panel")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        grace.get_json(&h.url("/admin/panel")).await.json()["error"],
        "forbidden"
    );
    let mut ada = h.signed_in("ada").await;
    assert_eq!(
        ada.get_json(&h.url("/admin/panel")).await.status,
        StatusCode::OK
    );
    // Dot segments cannot walk around the rule: such a path is refused
    // outright, since the upstream might not resolve it as the rules would.
    assert_eq!(
        grace
            .get_json(&h.url("/public/../admin/panel"))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        grace.get_json(&h.url("/x/%2e%2e/admin/panel")).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn dot_segments_cannot_reach_a_protected_path_through_a_public_rule() {
    let h = Harness::with(Setup {
        extra_toml: "[[rules]]\npath = \"/public/\"\npublic = true\n".into(),
        ..Setup::default()
    })
    .await;
    let mut anonymous = h.browser();
    assert_eq!(
        anonymous.get_json(&h.url("/public/x")).await.status,
        StatusCode::OK
    );
    // The rules would see `/public/x`; an upstream that does not resolve dot
    // segments would serve `/admin/...`. Neither reaches it.
    for path in [
        "/admin/../public/x",
        "/admin/%2e%2e/public/x",
        "/admin%2f..%2fpublic/x",
        "/admin/./../public/x",
    ] {
        let resp = anonymous.get_json(&h.url(path)).await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(resp.json()["error"], "invalid_request", "{path}");
    }
}
