//! Several apps behind one portcullis (`[[upstreams]]`): two real upstreams,
//! one chosen by host and one by path prefix, each with its own rules and
//! identity header map, on one sign-in.

use http::{Method, StatusCode};

use crate::support::{Browser, Harness, Resp, Setup};

/// App A on host `a.example.test` (its own header map); app B under `/b/`
/// on any other host (its own header map, and a rule only admins pass).
/// Each upstream URL has a base path, so the echo says which app answered.
async fn two_apps(with_default_upstream: bool) -> Harness {
    let a = portcullis::demo::upstream::start().await.unwrap().0;
    let b = portcullis::demo::upstream::start().await.unwrap().0;
    Harness::with(Setup {
        no_default_upstream: !with_default_upstream,
        server_toml: "trusted_proxies = [\"127.0.0.0/8\"]".into(),
        extra_toml: format!(
            r#"
[[upstreams]]
host = "a.example.test"
url = "http://{a}/app-a"
timeout = "2s"
[upstreams.headers]
"X-A-User" = "sub"

[[upstreams]]
path_prefix = "/b/"
url = "http://{b}/app-b"
timeout = "2s"
[[upstreams.rules]]
path = "/b/secret/"
groups = ["admins"]
[upstreams.headers]
"X-B-Email" = "email"
"#
        ),
        ..Setup::default()
    })
    .await
}

async fn get(h: &Harness, b: &mut Browser, host: &str, path: &str, extra: &[(&str, &str)]) -> Resp {
    let mut headers = vec![("accept", "application/json"), ("host", host)];
    headers.extend_from_slice(extra);
    b.request(Method::GET, &h.url(path), &headers, Default::default())
        .await
}

/// Which app the echo upstream that answered is (by its base path).
fn app(resp: &Resp) -> String {
    let uri = resp.json()["uri"].as_str().unwrap().to_owned();
    uri.split('/').nth(1).unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_signed_in_user_reaches_each_app_with_only_its_own_headers() {
    let h = two_apps(false).await;
    let mut b = h.signed_in("grace").await;

    let resp = get(&h, &mut b, "a.example.test", "/b/page", &[]).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(app(&resp), "app-a", "the host route comes first");
    assert_eq!(resp.upstream_header("x-a-user").as_deref(), Some("grace"));
    for other in ["x-b-email", "x-forwarded-user", "x-forwarded-email"] {
        assert_eq!(resp.upstream_header(other), None, "{other} sent to app A");
    }

    let resp = get(&h, &mut b, "other.example.test", "/b/page", &[]).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(app(&resp), "app-b");
    assert_eq!(
        resp.json()["uri"],
        "/app-b/b/page",
        "the path goes on whole"
    );
    assert_eq!(
        resp.upstream_header("x-b-email").as_deref(),
        Some("grace@example.com")
    );
    for other in ["x-a-user", "x-forwarded-user"] {
        assert_eq!(resp.upstream_header(other), None, "{other} sent to app B");
    }
}

#[tokio::test]
async fn a_routes_rules_judge_only_its_own_requests() {
    let h = two_apps(false).await;
    let mut grace = h.signed_in("grace").await;
    let mut ada = h.signed_in("ada").await;

    let resp = get(&h, &mut grace, "other.example.test", "/b/secret/x", &[]).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.text());
    let resp = get(&h, &mut ada, "other.example.test", "/b/secret/x", &[]).await;
    assert_eq!(
        resp.status,
        StatusCode::OK,
        "an admin passes: {}",
        resp.text()
    );
    // App A has no such rule: the same path on its host is let through.
    let resp = get(&h, &mut grace, "a.example.test", "/b/secret/x", &[]).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(app(&resp), "app-a");
    // A reading of the path that would leave the route is refused, not
    // routed elsewhere.
    let resp = get(&h, &mut grace, "other.example.test", "/b;x/secret/x", &[]).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.text());
}

#[tokio::test]
async fn an_identity_header_of_one_app_cannot_be_forged_on_another() {
    let h = two_apps(false).await;
    let mut b = h.signed_in("grace").await;
    let spoofs = [
        ("X-B-Email", "admin@evil.example"),
        ("x_b_email", "admin@evil.example"),
    ];
    let resp = get(&h, &mut b, "a.example.test", "/", &spoofs).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(app(&resp), "app-a");
    assert!(
        !resp.text().contains("admin@evil.example"),
        "a spoofed X-B-Email reached app A: {}",
        resp.text()
    );
}

#[tokio::test]
async fn a_request_no_route_takes_is_404_without_an_upstream() {
    let h = two_apps(false).await;
    let mut b = h.signed_in("grace").await;
    let resp = get(&h, &mut b, "other.example.test", "/elsewhere", &[]).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND, "{}", resp.text());
    assert_eq!(resp.json()["error"], "not_found");
    let resp = b
        .request(
            Method::GET,
            &h.url("/bee"),
            &[("accept", "text/html"), ("host", "other.example.test")],
            Default::default(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert!(resp.text().contains("Not found"), "{}", resp.text());
}

#[tokio::test]
async fn with_upstream_configured_it_takes_what_no_route_does() {
    let h = two_apps(true).await;
    let mut b = h.signed_in("grace").await;
    let resp = get(&h, &mut b, "other.example.test", "/elsewhere", &[]).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.json()["uri"], "/elsewhere");
    assert_eq!(
        resp.upstream_header("x-forwarded-user").as_deref(),
        Some("grace")
    );
    assert_eq!(resp.upstream_header("x-b-email"), None);
}

/// `GET /oauth2/auth` for the original request `host` + `uri`, as Traefik names it.
async fn auth(h: &Harness, b: &mut Browser, host: &str, uri: &str) -> Resp {
    b.request(
        Method::GET,
        &h.url("/oauth2/auth"),
        &[
            ("x-forwarded-host", host),
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", uri),
        ],
        Default::default(),
    )
    .await
}

#[tokio::test]
async fn forward_auth_judges_the_original_request_by_its_routes_rules_and_headers() {
    let h = two_apps(false).await;
    let mut b = h.signed_in("grace").await;

    let resp = auth(&h, &mut b, "other.example.test", "/b/secret/x").await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "route B's rule");

    let resp = auth(&h, &mut b, "a.example.test", "/b/secret/x").await;
    assert_eq!(
        resp.status,
        StatusCode::ACCEPTED,
        "route A has no such rule"
    );
    assert_eq!(resp.header("x-a-user"), Some("grace"));
    assert_eq!(resp.header("x-b-email"), None);

    let resp = auth(&h, &mut b, "other.example.test", "/b/page?x=1").await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    assert_eq!(resp.header("x-b-email"), Some("grace@example.com"));
    assert_eq!(resp.header("x-a-user"), None);

    let resp = auth(&h, &mut b, "other.example.test", "/nowhere").await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "no route: refused");
}

/// Sign-in always runs on `public_url`'s host (its flow cookie is there and
/// the provider calls back there). A browser on an app's own host is sent
/// there and, once signed in, back. (This client keeps cookies by name and
/// ignores `Domain`; `session.domain` is what makes a real browser send the
/// session cookie to the app's host.)
#[tokio::test]
async fn sign_in_from_an_apps_own_host_runs_on_public_url_and_comes_back() {
    let a = portcullis::demo::upstream::start().await.unwrap().0;
    let h = Harness::with(Setup {
        session_toml: "domain = \"example.test\"".into(),
        extra_toml: format!(
            "[[upstreams]]\nhost = \"wiki.example.test\"\nurl = \"http://{a}/app-a\"\n"
        ),
        ..Setup::default()
    })
    .await;
    let host = format!("wiki.example.test:{}", h.addr.port());
    let back = format!("http://{host}/page?x=1");
    let mut b = Browser::new();
    let resp = b
        .request(
            Method::GET,
            &h.url("/page?x=1"),
            &[("accept", "text/html"), ("host", &host)],
            Default::default(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FOUND);
    let rd: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
    assert_eq!(
        resp.location(),
        format!("{}/oauth2/sign_in?rd={rd}", h.base),
        "to public_url's sign-in, asked to come back"
    );

    let callback = b.sign_in(&h, "grace", &back).await;
    assert_eq!(callback.status, StatusCode::FOUND, "{}", callback.text());
    assert_eq!(callback.location(), back, "back to the app's host");
    let resp = get(&h, &mut b, &host, "/page?x=1", &[]).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(app(&resp), "app-a");

    // A host no route takes by name is never a way back, even under session.domain.
    let mut other = Browser::new();
    let evil = format!("http://evil.example.test:{}/x", h.addr.port());
    let callback = other.sign_in(&h, "grace", &evil).await;
    assert_eq!(callback.location(), "/");

    // On public_url's own host the sign-in location stays a path.
    let mut anonymous = Browser::new();
    let resp = anonymous.get(&h.url("/page")).await;
    assert_eq!(resp.location(), "/oauth2/sign_in?rd=%2Fpage");
}
