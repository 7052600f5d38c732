//! `upstream.protocol` h2c and h2: a gRPC-shaped exchange (streamed request
//! and response, `te: trailers`, a `grpc-status` trailer) passes intact.

use http::HeaderMap;
use tokio_rustls::TlsAcceptor;

use crate::config::UpstreamProtocol;
use crate::config::tls::test_pki::TestCa;

use super::*;

/// A gRPC-like app over HTTP/2 only: echoes the request body, says whether
/// it saw `te: trailers`, and ends with a `grpc-status: 0` trailer.
async fn grpc_app(tls: Option<TlsAcceptor>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let saw_te = req
                        .headers()
                        .get("te")
                        .map(|v| v.to_str().unwrap().to_owned());
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", "0".parse().unwrap());
                    let frames = vec![
                        Ok::<_, Infallible>(Frame::data(body)),
                        Ok(Frame::trailers(trailers)),
                    ];
                    let response = Response::builder()
                        .header("content-type", "application/grpc")
                        .header("x-saw-te", saw_te.unwrap_or_default())
                        .body(StreamBody::new(futures_util::stream::iter(frames)))
                        .unwrap();
                    Ok::<_, Infallible>(response)
                });
                let h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                let _ = match tls {
                    Some(tls) => {
                        // A client that refuses the certificate ends here.
                        let Ok(stream) = tls.accept(tcp).await else {
                            return;
                        };
                        h2.serve_connection(TokioIo::new(stream), service).await
                    }
                    None => h2.serve_connection(TokioIo::new(tcp), service).await,
                };
            });
        }
    });
    addr
}

/// Sends a gRPC-shaped call over HTTP/2 to `proxy`; the answer's headers and trailers.
async fn call(proxy: &Running) -> (Response<()>, Option<HeaderMap>, Bytes) {
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = Request::post(proxy.url("/pkg.Service/Method"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\x02hi")))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (
        Response::from_parts(parts, ()),
        trailers,
        collected.to_bytes(),
    )
}

async fn proxy_to(url: String, configure: impl FnOnce(&mut UpstreamConfig)) -> Running {
    let mut cfg = config(&url, Duration::from_secs(5));
    configure(&mut cfg);
    let upstream = Upstream::new(&cfg, BODY_READ);
    let tunnels = upstream.tunnels();
    spawn(Forward(upstream), LIMITS, None, tunnels).await
}

fn assert_grpc_passed((response, trailers, body): (Response<()>, Option<HeaderMap>, Bytes)) {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-saw-te"], "trailers");
    assert_eq!(&body[..], b"\0\0\0\0\x02hi");
    let trailers = trailers.expect("the grpc-status trailer");
    assert_eq!(trailers["grpc-status"], "0");
}

#[tokio::test]
async fn grpc_over_h2c_keeps_te_and_trailers() {
    let app = grpc_app(None).await;
    let proxy = proxy_to(format!("http://{app}"), |cfg| {
        cfg.protocol = UpstreamProtocol::H2c;
    })
    .await;
    assert_grpc_passed(call(&proxy).await);
    proxy.stop().await;
}

#[tokio::test]
async fn grpc_over_h2_with_tls_and_over_auto_checking_tls_server_name() {
    let ca = TestCa::new("grpc");
    let mut server = (*TestCa::server(&ca.leaf(&["grpc.internal"]), None)).clone();
    server.alpn_protocols = vec![b"h2".to_vec()];
    let app = grpc_app(Some(TlsAcceptor::from(Arc::new(server)))).await;
    for protocol in [UpstreamProtocol::H2, UpstreamProtocol::Auto] {
        let proxy = proxy_to(format!("https://{app}"), |cfg| {
            cfg.protocol = protocol;
            cfg.ca_file = Some(ca.bundle());
            cfg.tls_server_name = Some("grpc.internal".into());
        })
        .await;
        assert_grpc_passed(call(&proxy).await);
        proxy.stop().await;
    }

    // Without the CA: a 502 that names the certificate problem.
    let proxy = proxy_to(format!("https://{app}"), |cfg| {
        cfg.protocol = UpstreamProtocol::H2;
    })
    .await;
    let refused = http1().get(proxy.url("/").parse().unwrap()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
    let page = json(refused).await;
    assert!(
        page["error_description"]
            .as_str()
            .unwrap()
            .contains("UnknownIssuer"),
        "{page}"
    );
    proxy.stop().await;
}
