//! Checks made inside the endpoints, on an app built in-process with no
//! sockets (the same over sockets is in tests/it).

use figment::Figment;
use figment::providers::{Format, Toml};
use http::header::COOKIE;
use http::{Request, StatusCode};

use super::callback::callback;
use super::forward_auth;
use crate::headers::PeerIp;
use crate::server::ConnInfo;
use crate::session::Flow;
use crate::{App, RequestContext};

/// Two GitHub providers whose API is a closed port: a code exchange would fail
/// at once, and with another status than a refused flow.
const TWO_PROVIDERS: &str = r#"
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
    base_url = "http://127.0.0.1:9"
    [providers.other]
    kind = "github"
    client_id = "c"
    client_secret = "d"
    base_url = "http://127.0.0.1:9"
"#;

fn app(toml: &str) -> std::sync::Arc<App> {
    App::new(crate::config::from_figment(Figment::from(Toml::string(toml))).unwrap()).unwrap()
}

#[tokio::test]
async fn a_flow_started_for_one_provider_never_completes_on_anothers_path() {
    let app = app(TWO_PROVIDERS);
    let flow = Flow {
        state: "state-1".into(),
        nonce: "nonce-1".into(),
        pkce_verifier: "verifier-1".into(),
        provider: "gh".into(),
        rd: "/".into(),
        created_at: crate::now_unix(),
    };
    let set_cookie = app.sessions.cookies.start_flow(&flow);
    let pair = set_cookie.to_str().unwrap().split(';').next().unwrap();
    let req = Request::get("/oauth2/callback/other?code=c&state=state-1")
        .header(COOKIE, pair)
        .body(())
        .unwrap();
    let peer: std::net::SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let conn = ConnInfo {
        peer,
        peer_ip: PeerIp::new(peer.ip()),
        tls: false,
    };
    let resp = callback(&app, &req, &conn, "other", &mut RequestContext::default()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn forward_auth_believes_the_original_request_only_from_a_trusted_proxy() {
    let toml = TWO_PROVIDERS.replace("[server]", "[server]\ntrusted_proxies = [\"10.0.0.1/32\"]")
        + "[[rules]]\npath = \"/public/\"\npublic = true\n";
    let app = app(&toml);
    // An anonymous request naming a public original request: believed from the
    // proxy, judged as itself (`/oauth2/auth`, signed in only) from anyone else.
    for (peer, status) in [
        ("10.0.0.1:5000", StatusCode::ACCEPTED),
        ("10.0.0.2:5000", StatusCode::UNAUTHORIZED),
    ] {
        let peer: std::net::SocketAddr = peer.parse().unwrap();
        let conn = ConnInfo {
            peer,
            peer_ip: PeerIp::new(peer.ip()),
            tls: false,
        };
        let req = Request::get("/oauth2/auth")
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-uri", "/public/x")
            .body(())
            .unwrap();
        let resp = forward_auth::check(&app, &req, &conn, &mut RequestContext::default()).await;
        assert_eq!(resp.status(), status, "from {peer}");
    }
}
