//! The proxy leg end to end on loopback: a client, portcullis' server with a
//! handler that only forwards, and an upstream that reports what it received
//! (linkerd's way: the upstream asserts on the request, the client on the
//! response).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::task::TaskTracker;
use url::Url;

use super::*;

/// `server.body_read_timeout`'s default, for tests that do not exercise it.
const BODY_READ: Duration = Duration::from_secs(30);
use crate::config::UpstreamConfig;
use crate::respond::{Problem, problem};
use crate::server::test_support::{LIMITS, Running, spawn};
use crate::server::{ConnInfo, Handler};
use crate::{Body, full};

/// portcullis reduced to its last phase.
struct Forward(Upstream);

impl Handler for Forward {
    async fn handle(&self, mut req: Request<Incoming>, _conn: ConnInfo) -> Response<Body> {
        super::prepare_request(&mut req);
        match self.0.forward(req).await {
            Ok(response) => response,
            Err(error) => problem(Problem::from(error), false),
        }
    }
}

/// The app: `/slow-head` and `/slow-body` dawdle, `/rogue-101` switches
/// protocols unasked, `/duplex` streams the
/// request body back as it comes, `/read-all` answers once it has the whole body, `/gated` holds its second chunk until
/// `gate` is notified, `/chat` and `/ws` accept upgrades, anything else
/// describes the request it received as JSON.
#[derive(Default)]
struct App {
    gate: Arc<Notify>,
}

impl Handler for App {
    async fn handle(&self, mut req: Request<Incoming>, _conn: ConnInfo) -> Response<Body> {
        match req.uri().path() {
            "/slow-head" => {
                tokio::time::sleep(Duration::from_secs(2)).await;
                Response::new(full("late"))
            }
            "/slow-body" => {
                let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    let _ = tx.send(Ok(Frame::data(Bytes::from("finally")))).await;
                });
                Response::new(BodyExt::boxed(StreamBody::new(tokio_stream(rx))))
            }
            "/duplex" => Response::new(req.into_body().map_err(BoxError::from).boxed()),
            "/read-all" => {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                Response::new(full(format!("read {} bytes", body.len())))
            }
            "/gated" => {
                let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
                let gate = self.gate.clone();
                tokio::spawn(async move {
                    let _ = tx.send(Ok(Frame::data(Bytes::from("first;")))).await;
                    gate.notified().await;
                    let _ = tx.send(Ok(Frame::data(Bytes::from("second")))).await;
                });
                Response::new(BodyExt::boxed(StreamBody::new(tokio_stream(rx))))
            }
            "/hop" => Response::builder()
                .header("connection", "x-server-quux, keep-alive")
                .header("x-server-quux", "1")
                .header("keep-alive", "timeout=5")
                .header("proxy-connection", "keep-alive")
                .header("x-kept", "1")
                .body(full("hop"))
                .unwrap(),
            "/rogue-101" => Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "chatproto")
                .body(crate::empty())
                .unwrap(),
            "/chat" => {
                assert_eq!(req.headers()["connection"], "upgrade");
                assert_eq!(req.headers()["upgrade"], "chatproto");
                assert!(!req.headers().contains_key("x-foo"));
                let upgrade = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    let mut io = TokioIo::new(upgrade.await.unwrap());
                    let mut buf = [0u8; 4];
                    io.read_exact(&mut buf).await.unwrap();
                    io.write_all(b"pong:").await.unwrap();
                    io.write_all(&buf).await.unwrap();
                });
                Response::builder()
                    .status(StatusCode::SWITCHING_PROTOCOLS)
                    .header("connection", "upgrade, x-server-quux")
                    .header("x-server-quux", "1")
                    .header("upgrade", "chatproto")
                    .body(crate::empty())
                    .unwrap()
            }
            "/ws" => {
                let Some(key) = req.headers().get("sec-websocket-key") else {
                    return Response::builder()
                        .status(400)
                        .body(crate::empty())
                        .unwrap();
                };
                let accept = derive_accept_key(key.as_bytes());
                let upgrade = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    let io = TokioIo::new(upgrade.await.unwrap());
                    let mut ws =
                        tokio_tungstenite::WebSocketStream::from_raw_socket(io, Role::Server, None)
                            .await;
                    while let Some(Ok(message)) = ws.next().await {
                        if message.is_text() && ws.send(message).await.is_err() {
                            break;
                        }
                    }
                });
                Response::builder()
                    .status(StatusCode::SWITCHING_PROTOCOLS)
                    .header("connection", "upgrade")
                    .header("upgrade", "websocket")
                    .header("sec-websocket-accept", accept)
                    .body(crate::empty())
                    .unwrap()
            }
            _ => {
                let headers: serde_json::Map<String, serde_json::Value> = req
                    .headers()
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_owned(),
                            String::from_utf8_lossy(v.as_bytes()).into(),
                        )
                    })
                    .collect();
                let description = serde_json::json!({
                    "version": format!("{:?}", req.version()),
                    "uri": req.uri().to_string(),
                    "headers": headers,
                });
                Response::new(full(description.to_string()))
            }
        }
    }
}

fn tokio_stream<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

struct Setup {
    app: Running,
    proxy: Running,
    proxy_tunnels: TaskTracker,
    gate: Arc<Notify>,
}

impl Setup {
    async fn stop(self) {
        self.proxy.stop().await;
        self.app.stop().await;
    }
}

async fn setup(base_path: &str, timeout: Duration) -> Setup {
    let gate = Arc::new(Notify::new());
    let app = spawn(App { gate: gate.clone() }, LIMITS, None, TaskTracker::new()).await;
    let url = format!("http://{}{base_path}", app.addr);
    let upstream = Upstream::new(&config(&url, timeout), BODY_READ);
    let tunnels = upstream.tunnels();
    let proxy = spawn(Forward(upstream), LIMITS, None, tunnels.clone()).await;
    Setup {
        app,
        proxy,
        proxy_tunnels: tunnels,
        gate,
    }
}

fn config(url: &str, timeout: Duration) -> UpstreamConfig {
    UpstreamConfig {
        url: Url::parse(url).unwrap(),
        timeout,
        pass_access_token: false,
        pass_id_token: false,
        pass_authorization: true,
        ca_file: None,
        tls_server_name: None,
        insecure_skip_verify: false,
        client_cert: None,
        protocol: crate::config::UpstreamProtocol::Http1,
        assertion: None,
    }
}

async fn json(response: Response<Incoming>) -> serde_json::Value {
    serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

fn http1() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

#[tokio::test]
async fn forwards_path_and_query_under_the_base_path_keeping_host() {
    let s = setup("/base/", Duration::from_secs(5)).await;
    let request = Request::get(s.proxy.url("/a/b%20c?x=1&y"))
        .header("host", "app.example.com")
        .body(Full::default())
        .unwrap();
    let seen = json(http1().request(request).await.unwrap()).await;
    assert_eq!(seen["uri"], "/base/a/b%20c?x=1&y");
    assert_eq!(seen["version"], "HTTP/1.1");
    assert_eq!(seen["headers"]["host"], "app.example.com");
    s.stop().await;
}

#[tokio::test]
async fn http2_client_reaches_the_upstream_as_http11_with_host_from_authority() {
    let s = setup("", Duration::from_secs(5)).await;
    // Connected to the proxy, while `:authority` names the public host.
    let stream = TcpStream::connect(s.proxy.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = Request::get("http://app.example.com:8443/h2?q=1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = json(response).await;
    assert_eq!(seen["version"], "HTTP/1.1");
    assert_eq!(seen["uri"], "/h2?q=1");
    assert_eq!(seen["headers"]["host"], "app.example.com:8443");
    s.stop().await;
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_in_both_directions() {
    let s = setup("", Duration::from_secs(5)).await;
    let mut stream = TcpStream::connect(s.proxy.addr).await.unwrap();
    stream
        .write_all(
            b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: x-foo, keep-alive, close\r\nX-Foo: 1\r\nKeep-Alive: timeout=5\r\n\
              TE: trailers\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-Bar: 2\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let seen: serde_json::Value = serde_json::from_str(body).unwrap();
    let sent: Vec<&String> = seen["headers"].as_object().unwrap().keys().collect();
    assert_eq!(sent, ["host", "x-bar"], "{seen}");

    let response = http1()
        .get(s.proxy.url("/hop").parse().unwrap())
        .await
        .unwrap();
    let headers = response.headers();
    assert!(!headers.contains_key("x-server-quux"));
    assert!(!headers.contains_key("keep-alive"));
    assert!(!headers.contains_key("proxy-connection"));
    assert!(!headers.contains_key("connection"));
    assert_eq!(headers["x-kept"], "1");
    s.stop().await;
}

#[tokio::test]
async fn bodies_stream_both_ways_without_buffering() {
    let s = setup("", Duration::from_secs(5)).await;
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    let request = Request::post(s.proxy.url("/duplex"))
        .body(StreamBody::new(tokio_stream(rx)))
        .unwrap();
    let client: Client<_, StreamBody<_>> = Client::builder(TokioExecutor::new()).build_http();
    let pending = tokio::spawn(client.request(request));
    tx.send(Ok(Frame::data(Bytes::from("ping-1"))))
        .await
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(2), pending)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut body = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(2), body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "ping-1");
    tx.send(Ok(Frame::data(Bytes::from("ping-2"))))
        .await
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(2), body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.into_data().unwrap(), "ping-2");
    drop(tx);
    assert!(body.frame().await.is_none());
    s.stop().await;
}

#[tokio::test]
async fn response_chunks_arrive_as_the_upstream_sends_them() {
    let s = setup("", Duration::from_secs(5)).await;
    let response = http1()
        .get(s.proxy.url("/gated").parse().unwrap())
        .await
        .unwrap();
    let mut body = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(2), body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "first;");
    s.gate.notify_one();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "second");
    s.stop().await;
}

#[tokio::test]
async fn waiting_too_long_for_the_response_head_is_504() {
    let s = setup("", Duration::from_millis(300)).await;
    let response = http1()
        .get(s.proxy.url("/slow-head").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(json(response).await["error"], "upstream_timeout");
    s.stop().await;
}

#[tokio::test]
async fn a_slow_upload_is_not_counted_against_the_upstream() {
    let s = setup("", Duration::from_millis(300)).await;
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    let request = Request::post(s.proxy.url("/read-all"))
        .body(StreamBody::new(tokio_stream(rx)))
        .unwrap();
    let client: Client<_, StreamBody<_>> = Client::builder(TokioExecutor::new()).build_http();
    let pending = tokio::spawn(client.request(request));
    tx.send(Ok(Frame::data(Bytes::from("12345"))))
        .await
        .unwrap();
    // Longer than upstream.timeout, spent by the client, not the upstream.
    tokio::time::sleep(Duration::from_millis(800)).await;
    tx.send(Ok(Frame::data(Bytes::from("67890"))))
        .await
        .unwrap();
    drop(tx);
    let response = pending.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "read 10 bytes"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_slow_body_after_a_prompt_head_is_not_cut_off() {
    let s = setup("", Duration::from_millis(300)).await;
    let response = http1()
        .get(s.proxy.url("/slow-body").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "finally"
    );
    s.stop().await;
}

#[tokio::test]
async fn an_upstream_that_is_down_is_502() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let upstream = Upstream::new(&config(&url, Duration::from_secs(5)), BODY_READ);
    let tunnels = upstream.tunnels();
    let proxy = spawn(Forward(upstream), LIMITS, None, tunnels).await;
    let response = http1().get(proxy.url("/").parse().unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(json(response).await["error"], "upstream_unavailable");
    proxy.stop().await;
}

#[tokio::test]
async fn connect_is_refused_without_reaching_the_upstream() {
    let s = setup("", Duration::from_secs(5)).await;
    let mut stream = TcpStream::connect(s.proxy.addr).await.unwrap();
    stream
        .write_all(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 1024];
    let n = stream.read(&mut answer).await.unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    s.stop().await;
}

#[tokio::test]
async fn an_http11_upgrade_is_tunnelled_both_ways() {
    let s = setup("", Duration::from_secs(5)).await;
    let mut stream = TcpStream::connect(s.proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, x-foo\r\nX-Foo: 1\r\nUpgrade: chatproto\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("\r\nupgrade: chatproto\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(!head.contains("x-server-quux"), "{head}");

    stream.write_all(b"ping").await.unwrap();
    let mut reply = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&reply, b"pong:ping");
    drop(stream);
    s.stop().await;
}

#[tokio::test]
async fn a_websocket_echoes_through_the_proxy() {
    let s = setup("", Duration::from_secs(5)).await;
    let url = format!("ws://{}/ws", s.proxy.addr);
    let (mut ws, response) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for text in ["hello", "world"] {
        ws.send(Message::text(text)).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(2), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed, Message::text(text));
    }
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    drop(ws);
    s.stop().await;
}

#[tokio::test]
async fn shutdown_waits_for_an_open_tunnel_then_returns() {
    let s = setup("", Duration::from_millis(300)).await;
    let url = format!("ws://{}/ws", s.proxy.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let closer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        ws.send(Message::text("last")).await.unwrap();
        let echoed = ws.next().await.unwrap().unwrap();
        ws.close(None).await.unwrap();
        while ws.next().await.is_some() {}
        echoed
    });
    let started = std::time::Instant::now();
    s.proxy.stop().await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "did not wait for the tunnel"
    );
    assert_eq!(closer.await.unwrap(), Message::text("last"));
    s.app.stop().await;
}

#[tokio::test]
async fn switching_protocols_unasked_is_502_and_opens_no_tunnel() {
    let s = setup("", Duration::from_secs(5)).await;
    let tunnels = s.proxy_tunnels.clone();
    let response = http1()
        .get(s.proxy.url("/rogue-101").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert!(tunnels.is_empty());
    s.stop().await;
}

// === the client's request body (issue #10 items 5 and 6) ===

/// An app that reads each request body whole and reports how that went.
struct Recorder(mpsc::UnboundedSender<Result<usize, String>>);

impl Handler for Recorder {
    async fn handle(&self, req: Request<Incoming>, _conn: ConnInfo) -> Response<Body> {
        let got = req.into_body().collect().await;
        let _ = self
            .0
            .send(got.map(|b| b.to_bytes().len()).map_err(|e| e.to_string()));
        Response::new(full("read"))
    }
}

/// A proxy with `body_read_timeout` in front of a [`Recorder`].
async fn recorded(
    body_read_timeout: Duration,
) -> (
    Running,
    Running,
    mpsc::UnboundedReceiver<Result<usize, String>>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = spawn(Recorder(tx), LIMITS, None, TaskTracker::new()).await;
    let upstream = Upstream::new(
        &config(&format!("http://{}", app.addr), Duration::from_secs(5)),
        body_read_timeout,
    );
    let proxy = spawn(Forward(upstream), LIMITS, None, TaskTracker::new()).await;
    (app, proxy, rx)
}

/// Writes `bytes` and reads the answer until the proxy closes (at most 5 s).
async fn send_raw(stream: &mut TcpStream, bytes: &[u8]) -> (String, bool) {
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .is_ok();
    (String::from_utf8_lossy(&answer).into_owned(), closed)
}

#[tokio::test]
async fn a_stalled_request_body_is_408_and_frees_both_connections() {
    let (app, proxy, mut got) = recorded(Duration::from_millis(300)).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    // One byte of ten, then nothing: a slow POST.
    let (answer, closed) = send_raw(
        &mut stream,
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\na",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(closed, "the client connection is still held");
    // The upstream saw its request end unfinished: the upstream connection
    // was closed, not kept waiting for the rest.
    let seen = tokio::time::timeout(Duration::from_secs(5), got.recv())
        .await
        .expect("the upstream is still waiting for the body")
        .unwrap();
    assert!(seen.is_err(), "the upstream got a whole body: {seen:?}");
    proxy.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_slow_but_steady_request_body_is_not_cut_off() {
    let (app, proxy, mut got) = recorded(Duration::from_millis(400)).await;
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    let request = Request::post(proxy.url("/upload"))
        .body(StreamBody::new(tokio_stream(rx)))
        .unwrap();
    let client: Client<_, StreamBody<_>> = Client::builder(TokioExecutor::new()).build_http();
    let pending = tokio::spawn(client.request(request));
    // Longer in all than the timeout, never a gap as long, and more than a
    // KiB each time.
    for _ in 0..8 {
        let kib = Bytes::from(vec![b'x'; 1024]);
        tx.send(Ok(Frame::data(kib))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tx.send(Ok(Frame::data(Bytes::from("end")))).await.unwrap();
    drop(tx);
    let response = pending.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(got.recv().await.unwrap(), Ok(8 * 1024 + 3));
    proxy.stop().await;
    app.stop().await;
}

/// The slow POST: a byte at a time, never pausing as long as the timeout,
/// never bringing a KiB within it.
#[tokio::test]
async fn a_trickled_request_body_is_408() {
    let (app, proxy, mut got) = recorded(Duration::from_millis(400)).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    for _ in 0..50 {
        // Stops when portcullis has answered (and closed): a write then fails.
        if stream.write_all(b"a").await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await
        {
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let seen = tokio::time::timeout(Duration::from_secs(5), got.recv())
        .await
        .expect("the upstream is still waiting for the body")
        .unwrap();
    assert!(seen.is_err(), "the upstream got a whole body: {seen:?}");
    proxy.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_malformed_chunked_request_body_is_400_not_502() {
    let (app, proxy, _got) = recorded(Duration::from_secs(5)).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (answer, _) = send_raw(
        &mut stream,
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("invalid_request"), "{answer}");
    assert!(!answer.contains("upstream_unavailable"), "{answer}");
    proxy.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_body_that_stalls_after_the_answer_began_resets_the_response() {
    let app = spawn(App::default(), LIMITS, None, TaskTracker::new()).await;
    let upstream = Upstream::new(
        &config(&format!("http://{}", app.addr), Duration::from_secs(5)),
        Duration::from_millis(300),
    );
    let proxy = spawn(Forward(upstream), LIMITS, None, TaskTracker::new()).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    // `/duplex` answers at once and streams the request body back.
    let (answer, closed) = send_raw(
        &mut stream,
        b"POST /duplex HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "the connection is still held");
    // Cut short: the head promised ten bytes, or chunks that never ended.
    assert!(!answer.ends_with("\r\n0\r\n\r\n"), "{answer}");
    proxy.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_tunnel_keeps_its_place_under_max_connections() {
    let app = spawn(App::default(), LIMITS, None, TaskTracker::new()).await;
    let upstream = Upstream::new(
        &config(&format!("http://{}", app.addr), Duration::from_secs(5)),
        BODY_READ,
    );
    let tunnels = upstream.tunnels();
    let limits = crate::server::ServerLimits {
        max_connections: 1,
        ..LIMITS
    };
    let proxy = spawn(Forward(upstream), limits, None, tunnels.clone()).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(
            b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: chatproto\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    stream.write_all(b"ping").await.unwrap();
    let mut reply = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&reply, b"pong:ping");

    // hyper is done with the upgraded connection, the tunnel is not: no place.
    let (answer, _) = send_raw(
        &mut TcpStream::connect(proxy.addr).await.unwrap(),
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        answer.is_empty(),
        "served while the tunnel holds the place: {answer}"
    );

    // The tunnel closes; its place comes back.
    drop(stream);
    let mut served = false;
    for _ in 0..50 {
        let (answer, _) = send_raw(
            &mut TcpStream::connect(proxy.addr).await.unwrap(),
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        if answer.starts_with("HTTP/1.1 200") {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "the tunnel's place was not given back");
    proxy.stop().await;
    app.stop().await;
}

mod grpc;
mod tls;
