//! Protocol hygiene through a running portcullis (issue #10 item 6): what the
//! upstream receives when a client sends HTTP/2 cookie fields, an
//! absolute-form target or a malformed body.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Harness, Setup, echoed_values};

async fn public() -> Harness {
    Harness::with(Setup {
        extra_toml: "[[rules]]\npath = \"/public/\"\npublic = true\n".into(),
        ..Setup::default()
    })
    .await
}

/// Writes `request` raw and reads until portcullis closes (at most 5 s).
async fn raw(h: &Harness, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn http2_cookie_fields_reach_the_upstream_as_one_cookie_header() {
    let h = public().await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<Bytes>>();
    let request = Request::get(h.url("/public/x"))
        .header("accept", "application/json")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(Empty::new())
        .unwrap();
    assert_eq!(request.headers().get_all("cookie").iter().count(), 2);
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echoed_values(&json, "cookie"), ["a=1; b=2"]);
}

#[tokio::test]
async fn an_absolute_form_target_is_forwarded_with_its_authority_as_host() {
    let h = public().await;
    let answer = raw(
        &h,
        b"GET http://app.example/public/x HTTP/1.1\r\nHost: other.example\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let json: Value = serde_json::from_str(&answer[answer.find("\r\n\r\n").unwrap() + 4..])
        .unwrap_or_else(|_| panic!("not the echo's JSON: {answer}"));
    assert_eq!(echoed_values(&json, "host"), ["app.example"]);
    assert_eq!(echoed_values(&json, "x-forwarded-host"), ["app.example"]);
    assert_eq!(json["uri"], "/public/x");
}

#[tokio::test]
async fn two_host_headers_are_refused_before_the_upstream() {
    let h = public().await;
    let answer = raw(
        &h,
        b"GET /public/x HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

#[tokio::test]
async fn a_malformed_chunked_body_is_400_not_upstream_unavailable() {
    let h = public().await;
    let answer = raw(
        &h,
        b"POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nnot-a-size\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(!answer.contains("upstream_unavailable"), "{answer}");
}

// === the [server] connection keys, through the config (issue #10 item 5) ===

async fn with_server(keys: &str) -> Harness {
    Harness::with(Setup {
        extra_toml: "[[rules]]\npath = \"/public/\"\npublic = true\n".into(),
        server_toml: keys.into(),
        ..Setup::default()
    })
    .await
}

#[tokio::test]
async fn server_idle_timeout_closes_an_idle_http2_connection() {
    let h = with_server("idle_timeout = \"300ms\"").await;
    let tcp = TcpStream::connect(h.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    let response = sender
        .send_request(
            Request::get(h.url("/public/x"))
                .header("accept", "application/json")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let ended = tokio::time::timeout(Duration::from_secs(5), connection).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection is still open");
}

#[tokio::test]
async fn server_max_connections_closes_the_connection_past_it() {
    let h = with_server("max_connections = 1").await;
    let mut first = TcpStream::connect(h.addr).await.unwrap();
    first
        .write_all(b"GET /oauth2/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(2), first.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // The first is kept alive; the second finds no place.
    let answer = raw(&h, b"GET /oauth2/healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.is_empty(), "served past max_connections: {answer}");
}

#[tokio::test]
async fn server_body_read_timeout_answers_a_stalled_body_with_408() {
    let h = with_server("body_read_timeout = \"300ms\"").await;
    let answer = raw(
        &h,
        b"POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}
