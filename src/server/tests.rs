use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::task::TaskTracker;

use super::test_support::{LIMITS, Running, spawn};
use super::*;
use crate::{Body, full};

/// Answers with what it knows about the connection, after `delay`.
struct Describe {
    delay: Duration,
}

impl Handler for Describe {
    async fn handle(&self, req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
        tokio::time::sleep(self.delay).await;
        let mut response = Response::new(full(format!("{:?} {}", req.version(), req.uri().path())));
        let headers = response.headers_mut();
        headers.insert("x-peer", conn.peer.to_string().parse().unwrap());
        headers.insert("x-tls", conn.tls.to_string().parse().unwrap());
        let hosts: Vec<&str> = req
            .headers()
            .get_all(http::header::HOST)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        headers.insert("x-host", hosts.join(" | ").parse().unwrap());
        response
    }
}

fn describe() -> Describe {
    Describe {
        delay: Duration::ZERO,
    }
}

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/server/testdata")
        .join(name)
}

async fn text(response: Response<Incoming>) -> String {
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

/// Writes `request` raw and reads until the server closes or 2 s pass.
async fn raw_exchange(stream: &mut TcpStream, request: &[u8]) -> String {
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn serves_http1_and_tells_the_handler_who_connected() {
    let server = spawn(describe(), LIMITS, None, TaskTracker::new()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    let answer = raw_exchange(
        &mut stream,
        b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains(&format!("x-peer: {local}")), "{answer}");
    assert!(answer.contains("x-tls: false"), "{answer}");
    assert!(answer.ends_with("HTTP/1.1 /hello"), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn serves_prior_knowledge_http2() {
    let server = spawn(describe(), LIMITS, None, TaskTracker::new()).await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<Bytes>>();
    let response = client
        .get(server.url("/h2").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, "HTTP/2.0 /h2");
    server.stop().await;
}

#[tokio::test]
async fn oversized_request_head_is_refused_with_431() {
    let limits = ServerLimits {
        max_header_bytes: 8192,
        ..LIMITS
    };
    let server = spawn(describe(), limits, None, TaskTracker::new()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let answer = raw_exchange(&mut stream, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_request_head_is_disconnected() {
    let limits = ServerLimits {
        header_read_timeout: Duration::from_millis(200),
        ..LIMITS
    };
    let server = spawn(describe(), limits, None, TaskTracker::new()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    let answer = raw_exchange(&mut stream, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "still open after {:?}",
        started.elapsed()
    );
    assert!(!answer.contains("200 OK"), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_sends_nothing_or_only_the_http2_preface_is_disconnected() {
    let limits = ServerLimits {
        header_read_timeout: Duration::from_millis(200),
        ..LIMITS
    };
    let server = spawn(describe(), limits, None, TaskTracker::new()).await;
    for sent in [&b""[..], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"] {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(sent).await.unwrap();
        let mut answer = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut answer)).await;
        assert!(
            closed.is_ok(),
            "still open 3 s after sending {:?}",
            String::from_utf8_lossy(sent)
        );
    }
    server.stop().await;
}

/// hyper restarts the head timeout whenever it waits for the next request, so a
/// kept-alive connection left idle is closed as a silent new one is.
#[tokio::test]
async fn a_kept_alive_connection_left_idle_is_disconnected() {
    let limits = ServerLimits {
        header_read_timeout: Duration::from_millis(200),
        ..LIMITS
    };
    let server = spawn(describe(), limits, None, TaskTracker::new()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(closed.is_ok(), "still open 3 s after its answer: {answer}");
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("HTTP/1.1 /first"), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight_and_stops_accepting() {
    let mut server = spawn(
        Describe {
            delay: Duration::from_millis(300),
        },
        LIMITS,
        None,
        TaskTracker::new(),
    )
    .await;
    let addr = server.addr;
    let in_flight = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        raw_exchange(&mut stream, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.begin_shutdown();
    let answer = in_flight.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    // hyper closes a kept-alive connection once its response is out.
    assert!(answer.ends_with("HTTP/1.1 /slow"), "{answer}");
    tokio::time::timeout(Duration::from_secs(2), server.finished())
        .await
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn shutdown_waits_for_tunnels() {
    let tunnels = TaskTracker::new();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tunnels.spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = tx.send(());
    });
    let server = spawn(describe(), LIMITS, None, tunnels.clone()).await;
    let started = Instant::now();
    server.stop().await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "returned after {:?}",
        started.elapsed()
    );
    assert!(rx.await.is_ok(), "the tunnel did not finish");
    assert!(tunnels.is_closed() && tunnels.is_empty());
}

#[test]
fn load_tls_offers_h2_and_http11() {
    let config = load_tls(&testdata("cert.pem"), &testdata("key.pem")).unwrap();
    assert_eq!(
        config.alpn_protocols,
        [b"h2".to_vec(), b"http/1.1".to_vec()]
    );
}

#[test]
fn load_tls_errors_name_the_file_and_the_fix() {
    let missing = testdata("missing.pem");
    let error = load_tls(&missing, &testdata("key.pem"))
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("server.tls_cert ") && error.contains("missing.pem"),
        "{error}"
    );

    let error = load_tls(&testdata("key.pem"), &testdata("key.pem")).unwrap_err();
    assert!(matches!(error, TlsError::NoCertificates { .. }), "{error}");
    assert!(error.to_string().contains("BEGIN CERTIFICATE"), "{error}");

    let error = load_tls(&testdata("cert.pem"), &testdata("cert.pem")).unwrap_err();
    assert!(matches!(error, TlsError::Key { .. }), "{error}");
    assert!(error.to_string().starts_with("server.tls_key "), "{error}");

    let error = load_tls(&testdata("cert.pem"), &testdata("other_key.pem")).unwrap_err();
    assert!(matches!(error, TlsError::Rejected(_)), "{error}");
    assert!(
        error.to_string().contains("key belongs to the certificate"),
        "{error}"
    );
}

/// A TLS client trusting the test CA, offering HTTP/2 only.
fn tls_connector() -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(testdata("ca.pem")).unwrap())
        .unwrap();
    let mut client_config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    client_config.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(client_config))
}

/// `GET https://localhost{path}` over TLS and HTTP/2, on a new connection.
async fn tls_get(server: &Running, path: &str) -> Response<Incoming> {
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let tls_stream = tls_connector()
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls_stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls_stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::get(format!("https://localhost{path}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    sender.send_request(request).await.unwrap()
}

#[tokio::test]
async fn serves_tls_and_negotiates_h2_by_alpn() {
    let tls = load_tls(&testdata("cert.pem"), &testdata("key.pem")).unwrap();
    let server = spawn(describe(), LIMITS, Some(tls), TaskTracker::new()).await;
    let response = tls_get(&server, "/secure").await;
    assert_eq!(response.headers()["x-tls"], "true");
    assert_eq!(text(response).await, "HTTP/2.0 /secure");
    server.stop().await;
}

#[tokio::test]
async fn a_failed_tls_handshake_does_not_stop_the_server() {
    let tls = load_tls(&testdata("cert.pem"), &testdata("key.pem")).unwrap();
    let server = spawn(describe(), LIMITS, Some(tls), TaskTracker::new()).await;
    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    let answer = raw_exchange(&mut plain, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(!answer.contains("200 OK"));
    // A connection is only accepted into the backlog by the kernel; a whole
    // request shows the accept loop is still serving.
    let response = tokio::time::timeout(Duration::from_secs(5), tls_get(&server, "/after"))
        .await
        .expect("no answer after a failed TLS handshake");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, "HTTP/2.0 /after");
    server.stop().await;
}

// === connections that end (issue #10 item 5) ===

/// An HTTP/2 frame: 9-byte header, then `payload`.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The client preface and an empty SETTINGS frame.
fn h2_preface() -> Vec<u8> {
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend(h2_frame(0x4, 0, 0, &[]));
    bytes
}

/// HPACK for `GET http://localhost/`: static-table `:method GET`, `:scheme
/// http`, `:path /`, and `:authority` as a literal without indexing.
fn h2_get_block() -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x84, 0x01, 9];
    block.extend_from_slice(b"localhost");
    block
}

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// Reads until the server closes the connection; `false` if it is still open
/// after `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut sink = Vec::new();
    tokio::time::timeout(wait, stream.read_to_end(&mut sink))
        .await
        .is_ok()
}

#[tokio::test]
async fn an_idle_http2_connection_is_told_to_go_away() {
    let limits = ServerLimits {
        idle_timeout: Duration::from_millis(300),
        ..LIMITS
    };
    let server = spawn(describe(), limits, None, TaskTracker::new()).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let request = Request::get(server.url("/first"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(text(response).await, "HTTP/2.0 /first");
    // The server's GOAWAY ends the client's connection; without an idle
    // timeout it stays open for as long as the test runs.
    let ended = tokio::time::timeout(Duration::from_secs(5), connection).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection is still open");
    assert!(sender.is_closed());
    server.stop().await;
}

#[tokio::test]
async fn an_http2_connection_with_a_stream_open_is_not_idle() {
    let limits = ServerLimits {
        idle_timeout: Duration::from_millis(200),
        ..LIMITS
    };
    let server = spawn(
        Describe {
            delay: Duration::from_millis(900),
        },
        limits,
        None,
        TaskTracker::new(),
    )
    .await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    // The first stream ends the first-request wait at once; the second is
    // open far longer than the idle timeout and must still be answered.
    let first = sender.send_request(
        Request::get(server.url("/a"))
            .body(Empty::<Bytes>::new())
            .unwrap(),
    );
    let response = first.await.unwrap();
    assert_eq!(text(response).await, "HTTP/2.0 /a");
    let response = sender
        .send_request(
            Request::get(server.url("/b"))
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(text(response).await, "HTTP/2.0 /b");
    server.stop().await;
}

/// A HEADERS frame without END_HEADERS: the server waits for a CONTINUATION
/// that never comes. After a first whole request (so the first-request timer
/// is over), a keep-alive PING the client cannot answer ends the connection.
#[tokio::test]
async fn a_header_block_left_open_is_dropped_by_keep_alive() {
    let limits = ServerLimits {
        keep_alive_interval: Duration::from_millis(200),
        keep_alive_timeout: Duration::from_millis(200),
        ..LIMITS
    };
    header_block_left_open_is_dropped(limits).await;
}

/// The same, with keep-alive pings too rare to matter: the idle timeout (no
/// stream is open while a header block is unfinished) ends it.
#[tokio::test]
async fn a_header_block_left_open_is_dropped_by_the_idle_timeout() {
    let limits = ServerLimits {
        idle_timeout: Duration::from_millis(300),
        keep_alive_interval: Duration::from_secs(60),
        keep_alive_timeout: Duration::from_millis(300),
        ..LIMITS
    };
    header_block_left_open_is_dropped(limits).await;
}

/// After a first whole HTTP/2 request, a HEADERS frame without END_HEADERS:
/// the connection must be closed under `limits`.
async fn header_block_left_open_is_dropped(limits: ServerLimits) {
    let server = spawn(describe(), limits, None, TaskTracker::new()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut bytes = h2_preface();
    bytes.extend(h2_frame(0x1, END_STREAM | END_HEADERS, 1, &h2_get_block()));
    bytes.extend(h2_frame(0x1, END_STREAM, 3, &h2_get_block()));
    stream.write_all(&bytes).await.unwrap();
    assert!(
        closed_within(&mut stream, Duration::from_secs(5)).await,
        "a half-sent header block held the connection"
    );
    server.stop().await;
}

/// One request on a kept-alive HTTP/1.1 connection, read to the end of its body.
async fn keep_alive_request(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /kept HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"HTTP/1.1 /kept") {
        let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn connections_over_max_connections_are_closed_at_once() {
    let limits = ServerLimits {
        max_connections: 2,
        ..LIMITS
    };
    let server = spawn(describe(), limits, None, TaskTracker::new()).await;
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        keep_alive_request(&mut first)
            .await
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        keep_alive_request(&mut second)
            .await
            .starts_with("HTTP/1.1 200")
    );

    let mut third = TcpStream::connect(server.addr).await.unwrap();
    let answer = raw_exchange(&mut third, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        answer.is_empty(),
        "the third connection was served: {answer}"
    );

    // A place frees when a connection ends.
    drop(first);
    let mut served = false;
    for _ in 0..50 {
        let mut next = TcpStream::connect(server.addr).await.unwrap();
        let answer = raw_exchange(
            &mut next,
            b"GET /again HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        if answer.starts_with("HTTP/1.1 200") {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "no connection served after one closed");
    assert!(
        keep_alive_request(&mut second)
            .await
            .starts_with("HTTP/1.1 200")
    );
    server.stop().await;
}

// === protocol hygiene (issue #10 item 6) ===

#[tokio::test]
async fn two_host_headers_are_400() {
    let server = spawn(describe(), LIMITS, None, TaskTracker::new()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let answer = raw_exchange(
        &mut stream,
        b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("more than one Host"), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn an_http11_request_without_host_is_400() {
    let server = spawn(describe(), LIMITS, None, TaskTracker::new()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let answer = raw_exchange(&mut stream, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn an_absolute_form_target_names_the_host() {
    let server = spawn(describe(), LIMITS, None, TaskTracker::new()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let answer = raw_exchange(
        &mut stream,
        b"GET http://front.example/p HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("x-host: front.example\r\n"), "{answer}");

    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let answer = raw_exchange(
        &mut stream,
        b"GET http://user@front.example/p HTTP/1.1\r\nHost: front.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    server.stop().await;
}

/// An HTTP/2 request over a new prior-knowledge connection.
async fn h2_request(server: &Running, request: Request<Empty<Bytes>>) -> Response<Incoming> {
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender.send_request(request).await.unwrap()
}

#[tokio::test]
async fn http2_host_must_match_authority() {
    let server = spawn(describe(), LIMITS, None, TaskTracker::new()).await;
    let request = |host: &str| {
        Request::get("http://front.example/p")
            .header("host", host)
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let refused = h2_request(&server, request("other.example")).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(text(refused).await.contains("another host than :authority"));

    let same = h2_request(&server, request("FRONT.example")).await;
    assert_eq!(same.status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn http2_userinfo_in_authority_is_400() {
    let server = spawn(describe(), LIMITS, None, TaskTracker::new()).await;
    let request = Request::get("http://user:pw@front.example/p")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = h2_request(&server, request).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(text(response).await.contains("user info"));
    server.stop().await;
}

/// A flood past max_connections is one warning per 10 s, with a count.
#[test]
fn refusals_are_logged_once_per_period_with_a_count() {
    let mut refusals = Refusals::default();
    refusals.note(2);
    let logged = refusals.last_logged.expect("the first refusal is logged");
    assert_eq!(refusals.unlogged, 0);
    for _ in 0..1000 {
        refusals.note(2);
    }
    assert_eq!(
        refusals.last_logged,
        Some(logged),
        "logged again within the period"
    );
    assert_eq!(refusals.unlogged, 1000, "counted for the next line");
}
