//! `https` upstreams signed by a private CA: trusted only when configured,
//! checked against `tls_server_name`, and mutual TLS.

use crate::config::tls::test_pki::TestCa;

use super::*;

/// An upstream served over TLS with `server`, and portcullis configured by
/// `configure` in front of it. The app is addressed by IP (`127.0.0.1`).
async fn tls_setup(
    server: Arc<rustls::ServerConfig>,
    configure: impl FnOnce(&mut UpstreamConfig),
) -> (Running, Running) {
    let app = spawn(App::default(), LIMITS, Some(server), TaskTracker::new()).await;
    let mut cfg = config(&format!("https://{}", app.addr), Duration::from_secs(5));
    configure(&mut cfg);
    let upstream = Upstream::new(&cfg, BODY_READ);
    let tunnels = upstream.tunnels();
    let proxy = spawn(Forward(upstream), LIMITS, None, tunnels).await;
    (app, proxy)
}

async fn get(proxy: &Running) -> Response<Incoming> {
    http1()
        .get(proxy.url("/hello").parse().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_private_ca_is_trusted_only_when_configured() {
    let ca = TestCa::new("upstream-ca");
    let server = TestCa::server(&ca.leaf(&["127.0.0.1"]), None);

    let (app, proxy) = tls_setup(server.clone(), |_| {}).await;
    let refused = get(&proxy).await;
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
    app.stop().await;

    let (app, proxy) = tls_setup(server, |cfg| cfg.ca_file = Some(ca.bundle())).await;
    let response = get(&proxy).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(response).await["uri"], "/hello");
    proxy.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn tls_server_name_lets_an_ip_addressed_upstream_match_a_named_certificate() {
    let ca = TestCa::new("server-name");
    let server = TestCa::server(&ca.leaf(&["app.internal"]), None);

    let (app, proxy) = tls_setup(server.clone(), |cfg| cfg.ca_file = Some(ca.bundle())).await;
    let refused = get(&proxy).await;
    assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
    let page = json(refused).await;
    assert!(
        page["error_description"]
            .as_str()
            .unwrap()
            .contains("not valid for name"),
        "{page}"
    );
    proxy.stop().await;
    app.stop().await;

    let (app, proxy) = tls_setup(server, |cfg| {
        cfg.ca_file = Some(ca.bundle());
        cfg.tls_server_name = Some("app.internal".into());
    })
    .await;
    assert_eq!(get(&proxy).await.status(), StatusCode::OK);
    proxy.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn an_upstream_requiring_a_client_certificate_accepts_only_the_configured_one() {
    let ca = TestCa::new("mtls");
    let clients = TestCa::new("mtls-clients");
    let server = TestCa::server(&ca.leaf(&["127.0.0.1"]), Some(&clients));

    let (app, proxy) = tls_setup(server.clone(), |cfg| cfg.ca_file = Some(ca.bundle())).await;
    assert_eq!(get(&proxy).await.status(), StatusCode::BAD_GATEWAY);
    proxy.stop().await;
    app.stop().await;

    let client = clients.leaf(&["portcullis"]);
    let cert = clients.write("client.pem", &client.cert_pem);
    let key = clients.write("client-key.pem", &client.key_pem);
    let (app, proxy) = tls_setup(server, |cfg| {
        cfg.ca_file = Some(ca.bundle());
        cfg.client_cert = Some(crate::config::ClientIdentity::read(&cert, &key).unwrap());
    })
    .await;
    assert_eq!(get(&proxy).await.status(), StatusCode::OK);
    proxy.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn insecure_skip_verify_accepts_an_unknown_certificate() {
    let ca = TestCa::new("insecure");
    let server = TestCa::server(&ca.leaf(&["elsewhere.example"]), None);
    let (app, proxy) = tls_setup(server, |cfg| cfg.insecure_skip_verify = true).await;
    assert_eq!(get(&proxy).await.status(), StatusCode::OK);
    proxy.stop().await;
    app.stop().await;
}
