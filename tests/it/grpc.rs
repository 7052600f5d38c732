//! gRPC through portcullis (`upstream.protocol = "h2c"`) on an `api = true`
//! rule: without a session 401, signed in the call streams both ways and its
//! `grpc-status` trailer comes back.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{Harness, Setup};

/// A gRPC-like app, HTTP/2 without TLS: echoes the message, answers
/// `grpc-status: 0` as a trailer, and says whether `te: trailers` arrived.
async fn grpc_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let te = req.headers().get("te").cloned();
                let user = req.headers().get("x-forwarded-user").cloned();
                let message = req.into_body().collect().await.unwrap().to_bytes();
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", "0".parse().unwrap());
                let frames = vec![
                    Ok::<_, Infallible>(Frame::data(message)),
                    Ok(Frame::trailers(trailers)),
                ];
                let mut response =
                    Response::new(StreamBody::new(futures_util::stream::iter(frames)));
                let headers = response.headers_mut();
                headers.insert("content-type", "application/grpc".parse().unwrap());
                if let Some(te) = te {
                    headers.insert("x-saw-te", te);
                }
                if let Some(user) = user {
                    headers.insert("x-saw-user", user);
                }
                Ok::<_, Infallible>(response)
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service),
            );
        }
    });
    addr
}

/// One unary call over HTTP/2 to portcullis: the answer and its trailers.
async fn call(h: &Harness, cookie: &str) -> (Response<Bytes>, Option<HeaderMap>) {
    let tcp = TcpStream::connect(h.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut request = Request::post(h.url("/pkg.Greeter/Hello"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if !cookie.is_empty() {
        request = request.header("cookie", cookie);
    }
    let request = request
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\x02hi")))
        .unwrap();
    let (parts, body) = sender.send_request(request).await.unwrap().into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (Response::from_parts(parts, collected.to_bytes()), trailers)
}

#[tokio::test]
async fn grpc_on_an_api_rule_is_401_without_a_session_and_passes_signed_in() {
    let h = Harness::with(Setup {
        upstream: Some(grpc_app().await),
        upstream_toml: "protocol = \"h2c\"\n".into(),
        extra_toml: "[[rules]]\npath = \"/pkg.Greeter/\"\napi = true\n".into(),
        ..Setup::default()
    })
    .await;

    let (refused, _) = call(&h, "").await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let b = h.signed_in("ada").await;
    let (response, trailers) = call(&h, &b.cookie_header()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-saw-te"], "trailers");
    assert_eq!(response.headers()["x-saw-user"], "ada");
    assert_eq!(&response.body()[..], b"\0\0\0\0\x02hi");
    assert_eq!(trailers.expect("trailers")["grpc-status"], "0");
}
