//! DESIGN §8.3–8.4: identity headers from the client never reach the upstream.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, StatusCode};

use crate::support::{Browser, Harness, Setup};

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

const FORGED_TOKENS: [(&str, &str); 3] = [
    ("X-Forwarded-Access-Token", "forged"),
    ("x_forwarded_access_token", "forged"),
    ("Authorization", "Bearer forged"),
];

#[tokio::test]
async fn passed_tokens_replace_forged_ones() {
    let h = Harness::with(Setup {
        upstream_toml: "pass_access_token = true\npass_id_token = true\n".into(),
        extra_toml: "[[rules]]\npath = \"/public/\"\npublic = true\n".into(),
        ..Setup::default()
    })
    .await;
    let mut b = h.signed_in("ada").await;
    let mut headers = vec![("accept", "application/json")];
    headers.extend(FORGED_TOKENS);
    let resp = b
        .request(Method::GET, &h.url("/"), &headers, Default::default())
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());

    let access = resp.upstream_values("x-forwarded-access-token");
    assert_eq!(access.len(), 1, "one access token: {access:?}");
    assert!(resp.upstream_values("x_forwarded_access_token").is_empty());
    let access = &access[0];
    assert!(!access.is_empty() && access != "forged", "{access:?}");
    // The provider knows it as ada's access token.
    let userinfo = Browser::new()
        .request(
            Method::GET,
            &format!("{}/userinfo", h.idp.issuer().as_str().trim_end_matches('/')),
            &[("authorization", &format!("Bearer {access}"))],
            Default::default(),
        )
        .await;
    assert_eq!(userinfo.status, StatusCode::OK, "{}", userinfo.text());
    assert_eq!(userinfo.json()["sub"], "ada");

    let authorization = resp.upstream_values("authorization");
    assert_eq!(
        authorization.len(),
        1,
        "one Authorization: {authorization:?}"
    );
    let jwt = authorization[0]
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("not a bearer: {authorization:?}"));
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {jwt}");
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("base64url payload"))
            .expect("JSON payload");
    assert_eq!(claims["sub"], "ada");
    assert_eq!(claims["aud"], "portcullis-demo");

    // Nobody signed in, so only the stripping keeps the forgeries out.
    let resp = Browser::new()
        .request(
            Method::GET,
            &h.url("/public/x"),
            &headers,
            Default::default(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    for (name, _) in FORGED_TOKENS {
        assert_eq!(
            resp.upstream_values(name),
            Vec::<String>::new(),
            "{name} reached the upstream"
        );
    }
}

#[tokio::test]
async fn client_access_token_never_reaches_the_upstream_by_default() {
    let h = Harness::with(Setup {
        extra_toml: "[[rules]]\npath = \"/public/\"\npublic = true\n".into(),
        ..Setup::default()
    })
    .await;
    let mut ada = h.signed_in("ada").await;
    let mut anonymous = h.browser();
    let mut headers = vec![("accept", "application/json")];
    headers.extend(FORGED_TOKENS);
    for (who, path) in [
        ("signed in", "/"),
        ("signed in", "/public/x"),
        ("anonymous", "/public/x"),
    ] {
        let b = if who == "anonymous" {
            &mut anonymous
        } else {
            &mut ada
        };
        let resp = b
            .request(Method::GET, &h.url(path), &headers, Default::default())
            .await;
        assert_eq!(resp.status, StatusCode::OK, "{who} {path}: {}", resp.text());
        for name in ["x-forwarded-access-token", "x_forwarded_access_token"] {
            assert_eq!(
                resp.upstream_values(name),
                Vec::<String>::new(),
                "{who} {path}: {name} reached the upstream"
            );
        }
        // Without pass_id_token the client's own Authorization is the app's business.
        assert_eq!(resp.upstream_values("authorization"), ["Bearer forged"]);
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
    // The Host the client connected with, not its claim (an absent header
    // would not do either).
    assert_eq!(
        resp.upstream_header("x-forwarded-host"),
        Some(h.addr.to_string())
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

/// The front proxy copies these answers upstream (nginx `auth_request_set`):
/// they carry the session's identity, one value each, whatever the request
/// forged. The answer is built fresh, so the last loop guards that design
/// rather than the spoof guard (whose tests are above).
#[tokio::test]
async fn forward_auth_answers_the_sessions_identity_never_the_requests() {
    let h = Harness::start().await;
    let mut b = h.signed_in("ada").await;
    let mut headers = vec![("X_Forwarded_User", "root")];
    headers.extend(SPOOFS);
    let resp = b
        .request(
            Method::GET,
            &h.url("/oauth2/auth"),
            &headers,
            Default::default(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED, "{}", resp.text());
    let all = |name: &str| -> Vec<&str> {
        resp.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    };
    assert_eq!(all("x-forwarded-user"), ["ada"]);
    assert_eq!(all("x-forwarded-email"), ["ada@example.com"]);
    assert_eq!(all("x-forwarded-groups"), ["admins,engineering"]);
    assert_eq!(all("x-forwarded-preferred-username"), ["ada"]);
    assert_eq!(all("x-forwarded-name"), ["Ada Lovelace"]);
    // No other spelling of an identity header, and none of the forged values.
    for (name, value) in resp.headers.iter() {
        assert!(
            !name.as_str().contains('_'),
            "{name}: {value:?} in the forward-auth answer"
        );
        let value = value.to_str().unwrap();
        for (_, forged) in &headers {
            assert_ne!(value, *forged, "{name} carries a forged value");
        }
    }
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
