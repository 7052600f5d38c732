//! `GET /oauth2/auth` (DESIGN §3, §8.4): the original method and URI a trusted
//! front proxy names drive rule matching; anyone else gets the default rule.

use http::{Method, StatusCode};

use crate::support::{Browser, Harness, Setup};

/// A public prefix, a public exact path, and POSTs under `/admin/` for admins
/// only (other methods there fall through to "signed in").
const RULES: &str = r#"
[[rules]]
path = "/public/"
public = true
[[rules]]
path = "/status"
public = true
[[rules]]
path = "/admin/**"
methods = ["POST"]
groups = ["admins"]
"#;

/// How the original request is named: `(method header, URI header)`, as
/// Traefik and Caddy send them, then as nginx is told to.
const FAMILIES: [(&str, &str); 2] = [
    ("x-forwarded-method", "x-forwarded-uri"),
    ("x-original-method", "x-original-uri"),
];

async fn behind_trusted_proxy() -> Harness {
    Harness::with(Setup {
        server_toml: "trusted_proxies = [\"127.0.0.0/8\"]".into(),
        extra_toml: RULES.into(),
        ..Setup::default()
    })
    .await
}

/// The forward-auth answer for the original request `method uri`, named with
/// the headers of `family`.
async fn auth(
    h: &Harness,
    b: &mut Browser,
    family: (&str, &str),
    method: &str,
    uri: &str,
) -> StatusCode {
    b.request(
        Method::GET,
        &h.url("/oauth2/auth"),
        &[(family.0, method), (family.1, uri)],
        Default::default(),
    )
    .await
    .status
}

#[tokio::test]
async fn trusted_original_uri_picks_the_rule_in_either_spelling() {
    let h = behind_trusted_proxy().await;
    let mut b = h.browser();
    for family in FAMILIES {
        for (uri, want) in [
            ("/public/x", StatusCode::ACCEPTED),
            ("/public/x?next=/private", StatusCode::ACCEPTED),
            // The query is not part of the path the rules match.
            ("/status?verbose=1", StatusCode::ACCEPTED),
            ("/private", StatusCode::UNAUTHORIZED),
            ("/private?to=/public/x", StatusCode::UNAUTHORIZED),
        ] {
            assert_eq!(
                auth(&h, &mut b, family, "GET", uri).await,
                want,
                "anonymous {family:?} GET {uri}"
            );
        }
    }
    // Nothing said: the default rule.
    let resp = b
        .request(Method::GET, &h.url("/oauth2/auth"), &[], Default::default())
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn trusted_original_method_picks_the_rule_in_either_spelling() {
    let h = behind_trusted_proxy().await;
    let mut grace = h.signed_in("grace").await;
    let mut ada = h.signed_in("ada").await;
    let mut anonymous = h.browser();
    for family in FAMILIES {
        assert_eq!(
            auth(&h, &mut grace, family, "POST", "/admin/users").await,
            StatusCode::FORBIDDEN,
            "grace is not in admins: {family:?}"
        );
        assert_eq!(
            auth(&h, &mut grace, family, "GET", "/admin/users").await,
            StatusCode::ACCEPTED,
            "the POST rule does not apply to a GET: {family:?}"
        );
        assert_eq!(
            auth(&h, &mut ada, family, "POST", "/admin/users").await,
            StatusCode::ACCEPTED,
            "ada is in admins: {family:?}"
        );
        assert_eq!(
            auth(&h, &mut anonymous, family, "POST", "/admin/users").await,
            StatusCode::UNAUTHORIZED,
            "{family:?}"
        );
    }
}

#[tokio::test]
async fn trusted_original_uri_with_dot_segments_is_refused() {
    let h = behind_trusted_proxy().await;
    let mut anonymous = h.browser();
    let mut grace = h.signed_in("grace").await;
    for family in FAMILIES {
        for uri in [
            "/private/../public/x",
            "/private/%2e%2e/public/x",
            "/private/%2E%2E/public/x",
            "/public/./x",
            "/public/%2e/x",
        ] {
            assert_eq!(
                auth(&h, &mut anonymous, family, "GET", uri).await,
                StatusCode::FORBIDDEN,
                "anonymous {family:?} GET {uri}"
            );
        }
        // Resolved, it is public; an upstream may serve it as `/admin/..`, to
        // which grace may not POST.
        // Refused for its dot segments, not by the admins rule a raw match
        // would have picked: both answer 403.
        let resp = grace
            .request(
                Method::GET,
                &h.url("/oauth2/auth"),
                &[(family.0, "POST"), (family.1, "/admin/%2e%2e/public/x")],
                Default::default(),
            )
            .await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "grace {family:?}");
        assert!(
            resp.text().contains("`.` or `..` segments"),
            "grace {family:?}: {}",
            resp.text()
        );
    }
}

#[tokio::test]
async fn trusted_original_uri_is_judged_under_every_reading() {
    let h = behind_trusted_proxy().await;
    let mut anonymous = h.browser();
    let mut grace = h.signed_in("grace").await;
    for family in FAMILIES {
        // nginx passes `$request_uri` on as it came: a `//` run could be read
        // as a host by the upstream, and cannot be collapsed here.
        for uri in [
            "//public/private",
            "/public//x",
            "/public/..\\private",
            "/public/%252e%252e/x",
        ] {
            assert_eq!(
                auth(&h, &mut anonymous, family, "GET", uri).await,
                StatusCode::FORBIDDEN,
                "anonymous {family:?} GET {uri}"
            );
        }
        // Read case-insensitively it is the admins' rule.
        for uri in ["/ADMIN/users", "/admin\\users", "/admin./users"] {
            assert_eq!(
                auth(&h, &mut grace, family, "POST", uri).await,
                StatusCode::FORBIDDEN,
                "grace {family:?} POST {uri}"
            );
        }
    }
}

#[tokio::test]
async fn untrusted_original_uri_and_method_are_ignored() {
    let h = Harness::with(Setup {
        extra_toml: RULES.into(),
        ..Setup::default()
    })
    .await;
    let mut anonymous = h.browser();
    let mut grace = h.signed_in("grace").await;
    for family in FAMILIES {
        assert_eq!(
            auth(&h, &mut anonymous, family, "GET", "/public/x").await,
            StatusCode::UNAUTHORIZED,
            "{family:?} from an untrusted peer picked the public rule"
        );
        // Nor is a dot-segment URI judged at all: the default rule applies.
        assert_eq!(
            auth(&h, &mut anonymous, family, "GET", "/private/../public/x").await,
            StatusCode::UNAUTHORIZED,
            "{family:?}"
        );
        assert_eq!(
            auth(&h, &mut grace, family, "POST", "/admin/users").await,
            StatusCode::ACCEPTED,
            "{family:?} from an untrusted peer picked the admins rule"
        );
    }
}

#[tokio::test]
async fn an_original_request_named_two_ways_or_half_named_is_refused() {
    let h = behind_trusted_proxy().await;
    let mut b = h.browser();
    for headers in [
        // nginx names the request; the client adds the other family to pick
        // a laxer rule.
        &[
            ("x-original-method", "GET"),
            ("x-original-uri", "/private"),
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/public/x"),
        ][..],
        // A URI without its method could match a rule meant for another one.
        &[("x-original-uri", "/public/x")][..],
        &[("x-forwarded-method", "GET")][..],
        // Twice the same header: which one nginx set cannot be told.
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/private"),
            ("x-forwarded-uri", "/public/x"),
        ][..],
    ] {
        let resp = b
            .request(
                Method::GET,
                &h.url("/oauth2/auth"),
                headers,
                Default::default(),
            )
            .await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "{headers:?}");
    }
    // Both families naming the same request are fine.
    let resp = b
        .request(
            Method::GET,
            &h.url("/oauth2/auth"),
            &[
                ("x-original-method", "GET"),
                ("x-original-uri", "/public/x"),
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", "/public/x"),
            ],
            Default::default(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
}

/// Trusted proxies, the rules above, and `app.example.com` as an allowed
/// `rd` host (an app behind Traefik or Caddy).
async fn behind_traefik() -> Harness {
    Harness::with(Setup {
        server_toml: "trusted_proxies = [\"127.0.0.0/8\"]".into(),
        extra_toml: format!(
            "{RULES}\n[access]\nallowed_redirect_domains = [\"app.example.com\"]\n"
        ),
        ..Setup::default()
    })
    .await
}

/// What Traefik's `forwardAuth` and Caddy's `forward_auth` send for a GET of
/// `https://{host}{uri}`, with the client's `Accept`.
fn forwarded<'a>(host: &'a str, uri: &'a str, accept: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("x-forwarded-method", "GET"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", host),
        ("x-forwarded-uri", uri),
        ("x-forwarded-for", "203.0.113.7"),
        ("accept", accept),
    ]
}

async fn check(
    h: &Harness,
    b: &mut Browser,
    path: &str,
    headers: &[(&str, &str)],
) -> crate::support::Resp {
    b.request(Method::GET, &h.url(path), headers, Default::default())
        .await
}

/// The sign-in URL with `rd` sent back to `back`.
fn sign_in_for(h: &Harness, back: &str) -> String {
    let rd: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
    h.url(&format!("/oauth2/sign_in?rd={rd}"))
}

#[tokio::test]
async fn a_browser_named_by_traefik_or_caddy_is_sent_to_sign_in_with_its_url() {
    let h = behind_traefik().await;
    let mut b = h.browser();
    let html = "text/html,application/xhtml+xml";
    let resp = check(
        &h,
        &mut b,
        "/oauth2/auth",
        &forwarded("app.example.com", "/private?x=1&y=%2F", html),
    )
    .await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    assert_eq!(
        resp.location(),
        sign_in_for(&h, "https://app.example.com/private?x=1&y=%2F")
    );
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    // The same with ?redirect=1.
    let resp = check(
        &h,
        &mut b,
        "/oauth2/auth?redirect=1",
        &forwarded("app.example.com", "/private", html),
    )
    .await;
    assert_eq!(
        resp.location(),
        sign_in_for(&h, "https://app.example.com/private")
    );

    // Not a browser navigation: 401 as before.
    for (accept, method) in [("application/json", "GET"), ("*/*", "GET"), (html, "POST")] {
        let mut headers = forwarded("app.example.com", "/private", accept);
        headers[0].1 = method;
        let resp = check(&h, &mut b, "/oauth2/auth", &headers).await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{accept} {method}");
    }
    // A public path, and a signed-in user: as before.
    let resp = check(
        &h,
        &mut b,
        "/oauth2/auth",
        &forwarded("app.example.com", "/public/x", html),
    )
    .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    let mut grace = h.signed_in("grace").await;
    let resp = check(
        &h,
        &mut grace,
        "/oauth2/auth",
        &forwarded("app.example.com", "/private", html),
    )
    .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    assert_eq!(resp.header("x-forwarded-user"), Some("grace"));
}

#[tokio::test]
async fn the_original_url_is_the_rd_only_on_an_allowed_host() {
    let h = behind_traefik().await;
    let mut b = h.browser();
    for host in [
        "evil.example",
        "app.example.com.evil.example",
        "evil-app.example.com",
        "app.example.com:8443",
        "app.example.com@evil.example",
        "127.0.0.1",
    ] {
        let resp = check(
            &h,
            &mut b,
            "/oauth2/auth",
            &forwarded(host, "/private", "text/html"),
        )
        .await;
        assert_eq!(resp.status, StatusCode::FOUND, "{host}");
        assert_eq!(resp.location(), sign_in_for(&h, "/"), "{host}");
    }
    // An original URI that is no path.
    for uri in ["//evil.example/x", "https://evil.example/"] {
        let resp = check(
            &h,
            &mut b,
            "/oauth2/auth",
            &forwarded("app.example.com", uri, "text/html"),
        )
        .await;
        assert!(
            resp.status == StatusCode::FORBIDDEN || resp.location() == sign_in_for(&h, "/"),
            "{uri}: {} {}",
            resp.status,
            resp.location()
        );
    }
}

#[tokio::test]
async fn untrusted_forwarded_headers_never_make_a_redirect_nor_its_rd() {
    let h = Harness::with(Setup {
        extra_toml: format!(
            "{RULES}\n[access]\nallowed_redirect_domains = [\"app.example.com\"]\n"
        ),
        ..Setup::default()
    })
    .await;
    let mut b = h.browser();
    let headers = forwarded("app.example.com", "/private", "text/html");
    let resp = check(&h, &mut b, "/oauth2/auth", &headers).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    // Asked for, the redirect comes, but to `/`: the headers are not believed.
    let resp = check(&h, &mut b, "/oauth2/auth?redirect=1", &headers).await;
    assert_eq!(resp.status, StatusCode::FOUND);
    assert_eq!(resp.location(), sign_in_for(&h, "/"));
}

#[tokio::test]
async fn nginx_gets_a_401_for_a_browser_unless_it_asks_for_a_redirect() {
    let h = behind_traefik().await;
    let mut b = h.browser();
    let nginx = [
        ("x-original-method", "GET"),
        ("x-original-uri", "/private?x=1"),
        ("x-forwarded-host", "app.example.com"),
        ("x-forwarded-proto", "https"),
        ("accept", "text/html"),
    ];
    let resp = check(&h, &mut b, "/oauth2/auth", &nginx).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    let resp = check(&h, &mut b, "/oauth2/auth?redirect=1", &nginx).await;
    assert_eq!(
        resp.location(),
        sign_in_for(&h, "https://app.example.com/private?x=1")
    );
}

#[tokio::test]
async fn sign_in_and_sign_out_send_the_browser_back_to_an_allowed_host() {
    let h = behind_traefik().await;
    let mut b = h.browser();
    let resp = b
        .sign_in(&h, "grace", "https://app.example.com/wiki?p=1")
        .await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    assert_eq!(resp.location(), "https://app.example.com/wiki?p=1");
    for (rd, expected) in [
        ("https://app.example.com/bye", "https://app.example.com/bye"),
        ("https://app.example.com.evil.example/", "/"),
        ("https://app.example.com@evil.example/", "/"),
        ("https://evil-app.example.com/", "/"),
        ("//app.example.com/", "/"),
        ("/after", "/after"),
    ] {
        let mut b = h.signed_in("grace").await;
        let rd_q: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        let resp = b.get(&h.url(&format!("/oauth2/sign_out?rd={rd_q}"))).await;
        assert_eq!(resp.status, StatusCode::FOUND, "{rd}");
        assert_eq!(resp.location(), expected, "{rd}");
    }
}
