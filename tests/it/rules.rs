//! Issue #13 items 3 and 4 over real sockets: groups read by
//! `[providers.<id>.claims]` paths (userinfo `roles`, Keycloak's
//! `realm_access.roles`, Cognito's `cognito:groups`), and rules with
//! `claims`, `emails`, `domains`, `host` and `skip_preflight`, with the 403
//! page that names the signed-in user.

use bytes::Bytes;
use http::{Method, StatusCode};
use portcullis::demo::idp::{ClaimPlace, ExtraClaim, IdpOptions};
use serde_json::json;

use crate::support::{Browser, Harness, Resp, Setup};

async fn harness(extra_claims: Vec<ExtraClaim>, provider_toml: &str, extra_toml: &str) -> Harness {
    Harness::with(Setup {
        idp: IdpOptions {
            extra_claims,
            ..IdpOptions::default()
        },
        provider_toml: provider_toml.to_owned(),
        extra_toml: extra_toml.to_owned(),
        ..Setup::default()
    })
    .await
}

async fn get(b: &mut Browser, h: &Harness, path: &str) -> Resp {
    b.request(
        Method::GET,
        &h.url(path),
        &[("accept", "text/html")],
        Bytes::new(),
    )
    .await
}

#[tokio::test]
async fn groups_come_from_the_configured_claim_path_for_an_oidc_provider() {
    for (claim, value, path, place) in [
        (
            "roles",
            json!(["reader", "writer"]),
            "roles",
            ClaimPlace::Userinfo,
        ),
        (
            "realm_access",
            json!({"roles": ["reader", "writer"]}),
            "realm_access.roles",
            ClaimPlace::IdToken,
        ),
        (
            "cognito:groups",
            json!(["reader", "writer"]),
            "cognito:groups",
            ClaimPlace::Both,
        ),
    ] {
        let h = harness(
            vec![ExtraClaim::new("ada", claim, value).only_in(place)],
            &format!("fetch_userinfo = true\n[providers.demo.claims]\ngroups = {path:?}\n"),
            "",
        )
        .await;
        let mut b = h.signed_in("ada").await;
        let app = b.get_json(&h.url("/app")).await;
        assert_eq!(app.status, StatusCode::OK, "{}", app.text());
        assert_eq!(
            app.upstream_header("x-forwarded-groups").as_deref(),
            Some("reader,writer"),
            "groups = {path:?}"
        );
        // The provider's own `groups` are not kept beside the configured ones.
        let grace = h.signed_in("grace").await.get_json(&h.url("/app")).await;
        assert_eq!(grace.upstream_header("x-forwarded-groups"), None, "{path}");
    }
}

const KEYCLOAK_ADMIN_RULE: &str = r#"
[[rules]]
path = "/admin/"
claims = { "realm_access.roles" = ["admin"] }
"#;

#[tokio::test]
async fn a_claims_rule_on_a_nested_path_admits_and_denies_naming_the_user() {
    let h = harness(
        vec![
            ExtraClaim::new("ada", "realm_access", json!({"roles": ["admin", "user"]})),
            ExtraClaim::new("grace", "realm_access", json!({"roles": ["user"]})),
        ],
        "",
        KEYCLOAK_ADMIN_RULE,
    )
    .await;
    let mut ada = h.signed_in("ada").await;
    let ok = ada.get_json(&h.url("/admin/panel")).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());

    let mut grace = h.signed_in("grace").await;
    let page = get(&mut grace, &h, "/admin/panel?x=1").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let text = page.text();
    assert!(text.contains("grace@example.com"), "{text}");
    assert!(
        text.contains(r#"action="/oauth2/sign_out?rd=%2Fadmin%2Fpanel%3Fx%3D1""#),
        "a sign-out back to the page, to use another account: {text}"
    );
    assert!(text.contains("Sign in with another account"), "{text}");
    // Outside the rule, grace is in.
    assert_eq!(grace.get_json(&h.url("/app")).await.status, StatusCode::OK);

    let api = grace.get_json(&h.url("/admin/panel")).await;
    assert_eq!(api.status, StatusCode::FORBIDDEN);
    assert_eq!(api.json()["error"], "forbidden");

    // The button signs out (a same-origin POST) and comes back to the page.
    let out = grace
        .request(
            Method::POST,
            &h.url("/oauth2/sign_out?rd=%2Fadmin%2Fpanel%3Fx%3D1"),
            &[("origin", &h.base), ("sec-fetch-site", "same-origin")],
            Bytes::new(),
        )
        .await;
    assert!(out.status.is_redirection(), "{}", out.text());
    assert_eq!(out.location(), "/admin/panel?x=1");
    assert!(grace.session_cookies().is_empty());
}

#[tokio::test]
async fn a_user_without_the_nested_claim_is_denied_and_the_name_is_escaped() {
    let h = harness(
        vec![ExtraClaim::new(
            "grace",
            "email",
            json!("<b>grace</b>@example.com"),
        )],
        "",
        KEYCLOAK_ADMIN_RULE,
    )
    .await;
    let mut grace = h.signed_in("grace").await;
    let page = get(&mut grace, &h, "/admin/").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let text = page.text();
    assert!(
        text.contains("&lt;b&gt;grace&lt;/b&gt;@example.com"),
        "{text}"
    );
    assert!(!text.contains("<b>grace"), "{text}");
}

#[tokio::test]
async fn emails_and_domains_rules_say_who_is_admitted() {
    let h = harness(
        vec![],
        "",
        r#"
[[rules]]
path = "/ada/"
emails = ["ADA@example.com"]
[[rules]]
path = "/com/"
domains = ["example.com"]
[[rules]]
path = "/sub/"
domains = [".example.com"]
"#,
    )
    .await;
    let mut users = [h.signed_in("ada").await, h.signed_in("grace").await];
    for (who, path, status) in [
        (0, "/ada/x", StatusCode::OK),
        (1, "/ada/x", StatusCode::FORBIDDEN),
        (0, "/com/x", StatusCode::OK),
        (1, "/com/x", StatusCode::OK),
        // `.example.com` is its subdomains only.
        (0, "/sub/x", StatusCode::FORBIDDEN),
    ] {
        let resp = users[who].get_json(&h.url(path)).await;
        assert_eq!(resp.status, status, "{path}: {}", resp.text());
    }
}

#[tokio::test]
async fn a_host_rule_matches_its_host_on_label_boundaries_ignoring_case_and_port() {
    let h = harness(
        vec![],
        "",
        r#"
[[rules]]
host = "*.example.test"
path = "/**"
public = true
"#,
    )
    .await;
    let mut b = h.browser();
    for (host, public) in [
        ("app.example.test", true),
        ("APP.Example.Test:8080", true),
        ("a.b.example.test", true),
        ("example.test", false),
        ("evil-example.test", false),
        ("example.test.evil", false),
        ("127.0.0.1", false),
    ] {
        let resp = b
            .request(
                Method::GET,
                &h.url("/page"),
                &[("host", host), ("accept", "application/json")],
                Bytes::new(),
            )
            .await;
        let want = if public {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(resp.status, want, "{host}: {}", resp.text());
    }
}

#[tokio::test]
async fn a_prefix_rule_covers_its_directory_and_bare_name_and_no_longer_name() {
    let h = harness(
        vec![],
        "",
        r#"
[[rules]]
path = "/public/"
public = true
"#,
    )
    .await;
    let mut b = h.browser();
    for (path, public) in [
        ("/public/", true),
        ("/public/x", true),
        ("/public", true),
        ("/publicity", false),
        ("/public-data/x", false),
        ("/publi", false),
    ] {
        let resp = b.get_json(&h.url(path)).await;
        let want = if public {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(resp.status, want, "{path}: {}", resp.text());
    }
}

const PREFLIGHT: [(&str, &str); 2] = [
    ("origin", "https://app.example"),
    ("access-control-request-method", "POST"),
];

async fn options(b: &mut Browser, h: &Harness, path: &str, headers: &[(&str, &str)]) -> Resp {
    b.request(Method::OPTIONS, &h.url(path), headers, Bytes::new())
        .await
}

#[tokio::test]
async fn a_preflight_skips_sign_in_only_where_configured_and_only_with_both_headers() {
    let h = harness(
        vec![],
        "",
        r#"
[[rules]]
path = "/api/**"
skip_preflight = true
"#,
    )
    .await;
    let mut b = h.browser();
    let passed = options(&mut b, &h, "/api/items", &PREFLIGHT).await;
    assert_eq!(passed.status, StatusCode::OK, "{}", passed.text());
    assert_eq!(passed.upstream_header("x-forwarded-user"), None);
    // Not a preflight: one header alone, or neither.
    for headers in [&PREFLIGHT[..1], &PREFLIGHT[1..], &[]] {
        let resp = options(&mut b, &h, "/api/items", headers).await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{headers:?}");
    }
    // Not where a rule says so.
    let elsewhere = options(&mut b, &h, "/other", &PREFLIGHT).await;
    assert_eq!(elsewhere.status, StatusCode::UNAUTHORIZED);
    // A signed-in browser's preflight carries no identity either.
    let mut ada = h.signed_in("ada").await;
    let anonymous = options(&mut ada, &h, "/api/items", &PREFLIGHT).await;
    assert_eq!(anonymous.status, StatusCode::OK);
    assert_eq!(anonymous.upstream_header("x-forwarded-user"), None);
}

#[tokio::test]
async fn skip_auth_preflight_lets_every_preflight_through() {
    let h = harness(vec![], "", "[access]\nskip_auth_preflight = true\n").await;
    let mut b = h.browser();
    let passed = options(&mut b, &h, "/anything", &PREFLIGHT).await;
    assert_eq!(passed.status, StatusCode::OK, "{}", passed.text());
    let plain = options(&mut b, &h, "/anything", &PREFLIGHT[..1]).await;
    assert_eq!(plain.status, StatusCode::UNAUTHORIZED);
}

/// Forward-auth judges the original request: its host from the trusted
/// proxy's `X-Forwarded-Host`, and a preflight by the headers it passes on.
#[tokio::test]
async fn forward_auth_applies_host_rules_and_preflights_to_the_original_request() {
    let h = Harness::with(Setup {
        server_toml: "trusted_proxies = [\"127.0.0.0/8\"]".into(),
        extra_toml: r#"
[[rules]]
host = "*.public.test"
path = "/**"
public = true
[[rules]]
path = "/api/**"
skip_preflight = true
"#
        .into(),
        ..Setup::default()
    })
    .await;
    let auth = |headers: Vec<(&'static str, &'static str)>| {
        let url = h.url("/oauth2/auth");
        let mut b = h.browser();
        async move {
            let resp = b.request(Method::GET, &url, &headers, Bytes::new()).await;
            resp.status
        }
    };
    let original = |method, host, uri| {
        vec![
            ("x-forwarded-method", method),
            ("x-forwarded-host", host),
            ("x-forwarded-uri", uri),
        ]
    };
    assert_eq!(
        auth(original("GET", "wiki.public.test", "/x")).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        auth(original("GET", "public.test", "/x")).await,
        StatusCode::UNAUTHORIZED
    );
    let mut preflight = original("OPTIONS", "app.test", "/api/items");
    preflight.extend(PREFLIGHT);
    assert_eq!(auth(preflight).await, StatusCode::ACCEPTED);
    assert_eq!(
        auth(original("OPTIONS", "app.test", "/api/items")).await,
        StatusCode::UNAUTHORIZED
    );
}

/// `[[upstreams.rules]]` take the same keys, and the claims they name are
/// kept in the session as the top-level rules' are.
#[tokio::test]
async fn an_upstreams_own_claims_rule_is_enforced() {
    let (upstream, _) = portcullis::demo::upstream::start().await.unwrap();
    let h = Harness::with(Setup {
        idp: IdpOptions {
            extra_claims: vec![ExtraClaim::new("ada", "cognito:groups", json!(["ops"]))],
            ..IdpOptions::default()
        },
        no_default_upstream: true,
        extra_toml: format!(
            r#"
[[upstreams]]
path_prefix = "/"
url = "http://{upstream}"
[[upstreams.rules]]
path = "/ops/"
claims = {{ "cognito:groups" = ["ops"] }}
"#
        ),
        ..Setup::default()
    })
    .await;
    let mut ada = h.signed_in("ada").await;
    assert_eq!(ada.get_json(&h.url("/ops/x")).await.status, StatusCode::OK);
    let mut grace = h.signed_in("grace").await;
    assert_eq!(
        grace.get_json(&h.url("/ops/x")).await.status,
        StatusCode::FORBIDDEN
    );
}
