//! WebSocket and other HTTP/1.1 upgrades are tunnelled for signed-in users.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{Harness, Setup};

#[allow(clippy::result_large_err)] // tungstenite's handshake callback signature
/// A real WebSocket echo server that also reports the identity header it saw.
async fn websocket_echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut user = String::new();
                let callback =
                    |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
                        user = req
                            .headers()
                            .get("x-forwarded-user")
                            .map(|v| v.to_str().unwrap().to_owned())
                            .unwrap_or_default();
                        Ok(resp)
                    };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                let _ = ws.send(Message::text(format!("hello {user}"))).await;
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        let _ = ws.send(msg).await;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn websocket_round_trip_through_the_proxy() {
    let upstream = websocket_echo_upstream().await;
    let h = Harness::with(Setup {
        upstream: Some(upstream),
        ..Setup::default()
    })
    .await;
    let b = h.signed_in("ada").await;
    let cookie = b.cookie_header();
    let mut req = format!("ws://{}/socket", h.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    req.headers_mut()
        .insert("x-forwarded-user", "spoofed".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade through portcullis");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("hello ada")
    );
    for i in 0..3 {
        ws.send(Message::text(format!("ping {i}"))).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(format!("ping {i}"))
        );
    }
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn anonymous_websocket_is_refused() {
    let upstream = websocket_echo_upstream().await;
    let h = Harness::with(Setup {
        upstream: Some(upstream),
        ..Setup::default()
    })
    .await;
    let req = format!("ws://{}/socket", h.addr)
        .into_client_request()
        .unwrap();
    let err = tokio_tungstenite::connect_async(req)
        .await
        .expect_err("must not upgrade");
    assert!(err.to_string().contains("401"), "{err}");
}

#[tokio::test]
async fn raw_upgrade_tunnels_bytes_both_ways() {
    let h = Harness::start().await;
    let b = h.signed_in("ada").await;
    let cookie = b.cookie_header();
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let req = format!(
        "GET /chat HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\nCookie: {cookie}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"chatproto hello").await.unwrap();
    let mut buf = [0u8; 15];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"chatproto hello");
}
