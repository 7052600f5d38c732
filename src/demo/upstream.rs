//! The demo upstream app, which is also the test suite's echo upstream: it shows
//! what the proxy forwarded, and has a few paths that misbehave on purpose.
//!
//! - `Accept: text/html`: a "You are signed in" page listing the `X-Forwarded-*` headers.
//! - otherwise: JSON `{"method", "uri", "headers": [[name, value], ..], "body"}`.
//! - `/delay/{ms}` answers after a pause; `/status/{code}` answers that status.
//! - `/hop` answers with hop-by-hop headers a proxy must strip.
//! - `/stream` sends 5 chunks 50 ms apart.
//! - `Upgrade: echo` → `101`, then echoes raw bytes; `Upgrade: websocket` → `426`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, UPGRADE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::pages::{self, escape};
use crate::{Body, full};

/// The main part of the HTML page: the `X-Forwarded-*` headers and a way out.
const SIGNED_IN: &str = "<h1>You are signed in</h1>
<p>portcullis sent these identity headers:</p>
<table>
{{rows}}
</table>
<p><a class=\"button\" href=\"/oauth2/sign_out\">Sign out</a></p>
";

const MAX_ECHO_BODY: usize = 1024 * 1024;
const STREAM_CHUNKS: usize = 5;
const STREAM_INTERVAL: Duration = Duration::from_millis(50);

/// Binds `127.0.0.1:0` and serves in a background task until the handle is aborted.
pub async fn start() -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = start_on(listener).await {
            tracing::error!(error = %e, "demo upstream stopped");
        }
    });
    Ok((addr, task))
}

/// Serves on `listener` until accepting fails. Connections end with this future.
pub async fn start_on(listener: TcpListener) -> std::io::Result<()> {
    let mut connections = JoinSet::new();
    loop {
        let (stream, _) = listener.accept().await?;
        connections.spawn(async move {
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "demo upstream connection ended");
            }
        });
        while connections.try_join_next().is_some() {}
    }
}

async fn answer(mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if let Some(protocol) = req.headers().get(UPGRADE) {
        if protocol.as_bytes().eq_ignore_ascii_case(b"echo") {
            return Ok(upgrade_to_echo(&mut req));
        }
        return Ok(status_response(
            StatusCode::UPGRADE_REQUIRED,
            "this upstream speaks only Upgrade: echo",
        ));
    }
    let path = req.uri().path().to_owned();
    if let Some(ms) = path.strip_prefix("/delay/") {
        let Ok(ms) = ms.parse::<u64>() else {
            return Ok(status_response(
                StatusCode::BAD_REQUEST,
                "/delay/{ms} wants a number",
            ));
        };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return Ok(echo(req).await);
    }
    if let Some(code) = path.strip_prefix("/status/") {
        return Ok(
            match code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
            {
                Some(status) => {
                    status_response(status, status.canonical_reason().unwrap_or("status"))
                }
                None => status_response(
                    StatusCode::BAD_REQUEST,
                    "/status/{code} wants a status code",
                ),
            },
        );
    }
    match path.as_str() {
        "/hop" => Ok(hop_by_hop()),
        "/stream" => Ok(stream()),
        _ if wants_html(req.headers()) => Ok(signed_in_page(req.headers())),
        _ => Ok(echo(req).await),
    }
}

/// RFC 9110 §7.8: answer 101 and, once hyper hands the connection over, echo bytes back.
fn upgrade_to_echo(req: &mut Request<Incoming>) -> Response<Body> {
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut io = TokioIo::new(upgraded);
        let mut buf = [0u8; 4096];
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if io.write_all(&buf[..n]).await.is_err() || io.flush().await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut response = Response::new(crate::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("upgrade"));
    response
        .headers_mut()
        .insert(UPGRADE, HeaderValue::from_static("echo"));
    response
}

async fn echo(req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_ECHO_BODY).collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        Err(_) => return status_response(StatusCode::PAYLOAD_TOO_LARGE, "body larger than 1 MiB"),
    };
    let headers: Vec<[String; 2]> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            [
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ]
        })
        .collect();
    let uri = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let json = serde_json::json!({
        "method": parts.method.as_str(),
        "uri": uri,
        "headers": headers,
        "body": body,
    });
    let mut response = Response::new(full(json.to_string()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.contains("text/html")))
}

fn signed_in_page(headers: &HeaderMap) -> Response<Body> {
    let rows: String = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-forwarded-"))
        .map(|(name, value)| {
            format!(
                "<tr><th>{}</th><td>{}</td></tr>\n",
                escape(name.as_str()),
                escape(&String::from_utf8_lossy(value.as_bytes()))
            )
        })
        .collect();
    layout_page(
        "Demo app",
        &pages::render(SIGNED_IN, &[("rows", rows.trim_end())]),
    )
}

/// A page in portcullis' own layout (`src/pages/layout.html`), so that the demo
/// app and the demo identity provider look like portcullis' pages. `main` is
/// inserted as given: escape what it shows. Styles come only from the layout's
/// `<style>` and there are no scripts, so the markup fits portcullis'
/// Content-Security-Policy; the demo does not send that header, though: its
/// `form-action 'self'` would stop the provider's redirect back after the login
/// form, and `default-src 'none'` would block the app page's own fetches.
pub(crate) fn layout_page(title: &str, main: &str) -> Response<Body> {
    let mut response = Response::new(full(pages::page(title, main)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), including one named only in `Connection`.
fn hop_by_hop() -> Response<Body> {
    let mut response = Response::new(full("hop"));
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("close, x-hop-secret"));
    headers.insert("x-hop-secret", HeaderValue::from_static("1"));
    headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    headers.insert("x-normal", HeaderValue::from_static("1"));
    response
}

fn stream() -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, crate::BoxError>>(1);
    tokio::spawn(async move {
        for i in 0..STREAM_CHUNKS {
            if i > 0 {
                tokio::time::sleep(STREAM_INTERVAL).await;
            }
            if tx
                .send(Ok(Frame::data(Bytes::from(format!("chunk {i}\n")))))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let frames =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    let mut response = Response::new(StreamBody::new(frames).boxed());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn status_response(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(full(text.to_owned()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    fn client() -> Client<HttpConnector, Full<Bytes>> {
        Client::builder(TokioExecutor::new()).build_http()
    }

    async fn get(addr: SocketAddr, path: &str, accept: &str) -> Response<Bytes> {
        let req = Request::get(format!("http://{addr}{path}"))
            .header("accept", accept)
            .header("x-forwarded-user", "<ada>")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (parts, body) = client().request(req).await.unwrap().into_parts();
        Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
    }

    #[tokio::test]
    async fn echoes_method_uri_headers_and_body_as_json() {
        let (addr, _task) = start().await.unwrap();
        let req = Request::post(format!("http://{addr}/a/b?x=1&y=%2F"))
            .header("x-test", "yes")
            .body(Full::new(Bytes::from_static(b"hello")))
            .unwrap();
        let resp = client().request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["method"], "POST");
        assert_eq!(json["uri"], "/a/b?x=1&y=%2F");
        assert_eq!(json["body"], "hello");
        let headers = json["headers"].as_array().unwrap();
        assert!(headers.iter().any(|h| h[0] == "x-test" && h[1] == "yes"));
    }

    #[tokio::test]
    async fn html_page_lists_forwarded_headers_escaped() {
        let (addr, _task) = start().await.unwrap();
        let resp = get(addr, "/", "text/html,application/xhtml+xml").await;
        let page = String::from_utf8_lossy(resp.body());
        assert!(page.contains("You are signed in"));
        assert!(page.contains("&lt;ada&gt;"));
        assert!(!page.contains("<ada>"));
        assert!(page.contains("/oauth2/sign_out"));
    }

    #[tokio::test]
    async fn status_path_answers_that_status() {
        let (addr, _task) = start().await.unwrap();
        assert_eq!(
            get(addr, "/status/503", "*/*").await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            get(addr, "/status/nope", "*/*").await.status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[tokio::test]
    async fn delay_path_waits_before_answering() {
        let (addr, _task) = start().await.unwrap();
        let started = Instant::now();
        assert_eq!(
            get(addr, "/delay/150", "*/*").await.status(),
            StatusCode::OK
        );
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn hop_path_sends_hop_by_hop_headers() {
        let (addr, _task) = start().await.unwrap();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /hop HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut head = Vec::new();
        stream.read_to_end(&mut head).await.unwrap();
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        assert!(head.contains("connection: close, x-hop-secret"), "{head}");
        assert!(head.contains("x-hop-secret: 1"));
        assert!(head.contains("keep-alive: timeout=5"));
        assert!(head.contains("x-normal: 1"));
    }

    #[tokio::test]
    async fn stream_path_sends_chunks_over_time() {
        let (addr, _task) = start().await.unwrap();
        let req = Request::get(format!("http://{addr}/stream"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let mut body = client().request(req).await.unwrap().into_body();
        let started = Instant::now();
        let mut chunks = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                chunks.push((started.elapsed(), data));
            }
        }
        assert_eq!(chunks.len(), STREAM_CHUNKS);
        assert_eq!(chunks[4].1, Bytes::from_static(b"chunk 4\n"));
        assert!(
            chunks[4].0 >= STREAM_INTERVAL * 3,
            "chunks arrived at once: {chunks:?}"
        );
    }

    #[tokio::test]
    async fn upgrade_echo_switches_protocols_and_echoes_bytes() {
        let (addr, _task) = start().await.unwrap();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n",
            )
            .await
            .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        stream.write_all(b"ping").await.unwrap();
        let mut echoed = [0u8; 4];
        stream.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"ping");
    }

    #[tokio::test]
    async fn websocket_upgrade_is_refused_with_426() {
        let (addr, _task) = start().await.unwrap();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            )
            .await
            .unwrap();
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 426");
    }
}
