use std::sync::Arc;

use figment::Figment;
use figment::providers::{Format, Toml};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::config::tls::test_pki::TestCa;

fn config(toml: &str) -> Config {
    crate::config::from_figment(Figment::from(Toml::string(toml))).unwrap()
}

const BASE: &str = r#"
    [server]
    listen = "127.0.0.1:4180"
    [upstream]
    url = "http://127.0.0.1:9"
    [session]
    secret = "0123456789abcdef0123456789abcdef"
    [providers.gh]
    kind = "github"
    client_id = "a"
    client_secret = "b"
    [providers.other]
    kind = "github"
    client_id = "c"
    client_secret = "d"
"#;

/// The client of the app taking `/`.
fn upstream(app: &App) -> &Arc<crate::upstream::Upstream> {
    &app.routes.route(None, "/").unwrap().unwrap().upstream
}

#[test]
fn restart_only_settings_keep_their_running_value_and_are_named() {
    let running = config(BASE);
    let mut new = config(
        &(BASE.replace("127.0.0.1:4180", "127.0.0.1:4181").replace(
            "[server]",
            "[server]\nidle_timeout = \"5s\"\nmax_connections = 3",
        ) + "[log]\nformat = \"json\"\naccess = false\n"),
    );
    let kept = keep_restart_only(&running, &mut new);
    assert_eq!(
        kept,
        [
            "server.listen",
            "server.max_connections",
            "server.idle_timeout",
            "log.format",
            "log.access"
        ]
    );
    assert_eq!(new.server.listen, running.server.listen);
    assert_eq!(new.server.idle_timeout, running.server.idle_timeout);
    assert_eq!(new.server.max_connections, running.server.max_connections);
    assert_eq!(new.log.format, running.log.format);

    let mut same = config(BASE);
    assert!(keep_restart_only(&running, &mut same).is_empty());
}

#[tokio::test]
async fn a_reload_keeps_unchanged_providers_the_store_and_the_upstream_and_replaces_what_changed() {
    let first = App::new(config(BASE)).unwrap();
    // Only the second provider's settings change.
    let second = first
        .reloaded(config(
            &BASE.replace("client_secret = \"d\"", "client_secret = \"e\""),
        ))
        .unwrap();
    let same = |id| {
        std::ptr::eq(
            first.providers.get(id).unwrap(),
            second.providers.get(id).unwrap(),
        )
    };
    assert!(same("gh"));
    assert!(!same("other"));
    assert!(Arc::ptr_eq(&first.sessions, &second.sessions));
    assert!(Arc::ptr_eq(upstream(&first), upstream(&second)));
    assert!(Arc::ptr_eq(&first.metrics, &second.metrics));
    assert!(Arc::ptr_eq(&first.refresher, &second.refresher));

    // New session and upstream settings: new ones, which still refuse what
    // was revoked before and track their tunnels where shutdown waits.
    let third = second
        .reloaded(config(
            &BASE
                .replace(
                    "url = \"http://127.0.0.1:9\"",
                    "url = \"http://127.0.0.1:10\"",
                )
                .replace("[session]", "[session]\nlifetime = \"1h\""),
        ))
        .unwrap();
    assert!(!Arc::ptr_eq(&second.sessions, &third.sessions));
    assert!(!Arc::ptr_eq(upstream(&second), upstream(&third)));
    let tunnels = upstream(&second).tunnels();
    tunnels.spawn(std::future::pending::<()>());
    assert_eq!(upstream(&third).tunnels().len(), 1);
    assert_eq!(third.routes.tunnels().len(), 1);
}

/// The certificate a TLS handshake with `addr` presents.
async fn presented(addr: std::net::SocketAddr, ca: &TestCa) -> CertificateDer<'static> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(
        crate::config::tls::CaBundle::read(&ca.ca_file())
            .unwrap()
            .certs,
    );
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let stream = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(ServerName::try_from("localhost").unwrap(), stream)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

#[tokio::test]
async fn a_reload_presents_the_new_certificate_to_new_connections() {
    crate::log::init(&Default::default());
    let ca = TestCa::new("reload");
    let (first, second) = (ca.leaf(&["localhost"]), ca.leaf(&["localhost"]));
    let cert = ca.write("cert.pem", &first.cert_pem);
    let key = ca.write("key.pem", &first.key_pem);
    let toml = format!(
        "{BASE}\n[server]\ntls_cert = {cert:?}\ntls_key = {key:?}\n",
        BASE = BASE.replace("[server]\n    listen = \"127.0.0.1:4180\"", "")
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let live = Live::new(App::new(config(&toml)).unwrap()).unwrap();
    tokio::spawn(live.clone().serve(listener, std::future::pending()));
    let der = |pem: &str| CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    assert_eq!(presented(addr, &ca).await, der(&first.cert_pem));

    let source = ConfigSource {
        path: ca.write("config.toml", &toml),
        named: true,
    };
    // A key that does not belong to the certificate: refused, the old pair stays.
    ca.write("cert.pem", &second.cert_pem);
    assert!(reload(&live, &source, "test").await.is_err());
    assert_eq!(presented(addr, &ca).await, der(&first.cert_pem));

    ca.write("key.pem", &second.key_pem);
    reload(&live, &source, "test").await.unwrap();
    assert_eq!(presented(addr, &ca).await, der(&second.cert_pem));
}
