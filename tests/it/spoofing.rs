//! DESIGN §8.3–8.4: identity headers from the client never reach the upstream.

use http::{Method, StatusCode};

use crate::support::{Harness, Setup};

const SPOOFS: [(&str, &str); 5] = [
    ("X-Forwarded-User", "admin"),
    ("x-forwarded-email", "admin@evil.example"),
    ("X_Forwarded_Groups", "admins"),
    ("X-FORWARDED_PREFERRED-USERNAME", "root"),
    ("x_forwarded_name", "Mallory"),
];

#[tokio::test]
async fn spoofed_identity_headers_are_replaced_for_signed_in_users() {
    let h = Harness::start().await;
    let mut b = h.signed_in("grace").await;
    let mut headers = vec![("accept", "application/json")];
    headers.extend(SPOOFS);
    let resp = b
        .request(Method::GET, &h.url("/"), &headers, Default::default())
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.upstream_header("x-forwarded-user").as_deref(),
        Some("grace")
    );
    assert_eq!(
        resp.upstream_header("x-forwarded-email").as_deref(),
        Some("grace@example.com")
    );
    assert_eq!(
        resp.upstream_header("x-forwarded-groups").as_deref(),
        Some("engineering")
    );
    for (name, _) in SPOOFS {
        if name.contains('_') {
            assert!(
                resp.upstream_header(name).is_none(),
                "{name} reached the upstream"
            );
        }
    }
    let all = resp.text();
    for bad in ["admin@evil.example", "Mallory", "root", "\"admins\""] {
        assert!(!all.contains(bad), "{bad} reached the upstream: {all}");
    }
}

#[tokio::test]
async fn spoofed_identity_headers_are_stripped_on_public_paths_and_options() {
    let h = Harness::with(Setup {
        extra_toml: "[[rules]]\npath = \"/public/\"\npublic = true\n[[rules]]\npath = \"/**\"\nmethods = [\"OPTIONS\"]\npublic = true\n".into(),
        ..Setup::default()
    })
    .await;
    let mut b = h.browser();
    for method in [Method::GET, Method::OPTIONS] {
        let mut headers = vec![("accept", "application/json")];
        headers.extend(SPOOFS);
        let path = if method == Method::GET {
            "/public/page"
        } else {
            "/anything"
        };
        let resp = b
            .request(method.clone(), &h.url(path), &headers, Default::default())
            .await;
        assert_eq!(
            resp.status,
            StatusCode::OK,
            "{method} {path}: {}",
            resp.text()
        );
        for (name, _) in SPOOFS {
            assert!(
                resp.upstream_header(name).is_none(),
                "{method}: {name} reached the upstream"
            );
            assert!(
                resp.upstream_header(&name.replace('_', "-")).is_none(),
                "{method}: {name} reached the upstream"
            );
        }
    }
}

#[tokio::test]
async fn untrusted_x_forwarded_headers_are_replaced() {
    let h = Harness::with(Setup {
        extra_toml: "[[rules]]\npath = \"/open\"\npublic = true\n".into(),
        ..Setup::default()
    })
    .await;
    let mut b = h.browser();
    let resp = b
        .request(
            Method::GET,
            &h.url("/open"),
            &[
                ("accept", "application/json"),
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "evil.example"),
            ],
            Default::default(),
        )
        .await;
    assert_eq!(
        resp.upstream_header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        resp.upstream_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_ne!(
        resp.upstream_header("x-forwarded-host").as_deref(),
        Some("evil.example")
    );
}

#[tokio::test]
async fn trusted_proxy_x_forwarded_for_is_extended() {
    let h = Harness::with(Setup {
        server_toml: "trusted_proxies = [\"127.0.0.0/8\"]".into(),
        extra_toml: "[[rules]]\npath = \"/open\"\npublic = true\n".into(),
        ..Setup::default()
    })
    .await;
    let mut b = h.browser();
    let resp = b
        .request(
            Method::GET,
            &h.url("/open"),
            &[
                ("accept", "application/json"),
                ("x-forwarded-for", "203.0.113.9"),
            ],
            Default::default(),
        )
        .await;
    assert_eq!(
        resp.upstream_header("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.1")
    );
}

#[tokio::test]
async fn forward_auth_ignores_x_forwarded_uri_from_untrusted_peers() {
    let h = Harness::with(Setup {
        extra_toml: "[[rules]]\npath = \"/public/\"\npublic = true\n".into(),
        ..Setup::default()
    })
    .await;
    let mut b = h.browser();
    let resp = b
        .request(
            Method::GET,
            &h.url("/oauth2/auth"),
            &[("x-forwarded-uri", "/public/x")],
            Default::default(),
        )
        .await;
    assert_eq!(
        resp.status,
        StatusCode::UNAUTHORIZED,
        "an untrusted peer cannot pick the public rule"
    );
}

#[tokio::test]
async fn forward_auth_strips_spoofed_headers_from_its_answer() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let resp = b
        .request(
            Method::GET,
            &h.url("/oauth2/auth"),
            &SPOOFS,
            Default::default(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert!(resp.header("x-forwarded-user").is_none());
}

#[tokio::test]
async fn forged_host_header_does_not_change_the_redirect_uri() {
    let h = Harness::start().await;
    let mut b = h.browser();
    let resp = b
        .request(
            Method::GET,
            &h.url("/oauth2/start/demo?rd=/"),
            &[
                ("host", "evil.example"),
                ("x-forwarded-host", "evil.example"),
            ],
            Default::default(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FOUND);
    let redirect_uri = crate::support::param(resp.location(), "redirect_uri").unwrap();
    assert_eq!(redirect_uri, h.url("/oauth2/callback/demo"));
    let resp = b
        .request(
            Method::GET,
            &h.url("/x"),
            &[("host", "evil.example"), ("accept", "text/html")],
            Default::default(),
        )
        .await;
    assert!(
        resp.location().starts_with("/oauth2/sign_in"),
        "{}",
        resp.location()
    );
}
