use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;

use super::*;

async fn body_text(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn accept(values: &[&str]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for v in values {
        headers.append(http::header::ACCEPT, HeaderValue::from_str(v).unwrap());
    }
    headers
}

#[test]
fn browser_navigation_is_get_or_head_accepting_html() {
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let cases: &[(Method, &[&str], bool)] = &[
        (Method::GET, &[browser], true),
        (Method::HEAD, &[browser], true),
        (Method::GET, &["TEXT/HTML; charset=utf-8"], true),
        (Method::GET, &["application/json", "text/html;q=0.5"], true),
        (Method::POST, &[browser], false),
        (Method::GET, &["*/*"], false),
        (Method::GET, &["application/json"], false),
        (Method::GET, &["text/html;q=0"], false),
        (Method::GET, &["text/html; q=0.0, application/json"], false),
        (Method::GET, &["text/htmlx"], false),
        (Method::GET, &[], false),
    ];
    for (method, values, expected) in cases {
        assert_eq!(
            wants_html(method, &accept(values)),
            *expected,
            "{method} {values:?}"
        );
    }
}

#[tokio::test]
async fn problem_as_json_carries_code_and_detail() {
    let response = problem(Problem::forbidden("not in group admins"), false);
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let body: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"error": "access_denied", "error_description": "not in group admins"})
    );
}

#[tokio::test]
async fn problem_as_html_is_an_escaped_page_with_security_headers() {
    let response = problem(Problem::forbidden("<script>alert(1)</script>"), true);
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    assert!(response.headers().contains_key("content-security-policy"));
    let page = body_text(response).await;
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.contains("<script>"));
    assert!(page.contains("Access denied"));
}

#[test]
fn upstream_errors_become_502_and_504() {
    let cases = [
        (
            UpstreamError::Unreachable("connection refused".into()),
            StatusCode::BAD_GATEWAY,
            "upstream_unavailable",
        ),
        (
            UpstreamError::Protocol("bad response".into()),
            StatusCode::BAD_GATEWAY,
            "upstream_unavailable",
        ),
        (
            UpstreamError::Timeout(Duration::from_secs(60)),
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
        ),
        (
            UpstreamError::InvalidTarget("CONNECT is not proxied"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (error, status, code) in cases {
        let p = Problem::from(error);
        assert_eq!((p.status, p.code), (status, code));
    }
    let timeout = Problem::from(UpstreamError::Timeout(Duration::from_secs(60)));
    assert!(timeout.detail.contains("1m"), "{}", timeout.detail);
    assert_eq!(timeout.source, Source::Upstream);
}

#[tokio::test]
async fn unauthenticated_api_client_gets_401_with_a_bearer_challenge() {
    let response = unauthenticated(false, "/oauth2/sign_in?rd=%2F");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer realm="portcullis""#
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"error": "unauthenticated", "error_description": "sign in at /oauth2/sign_in"})
    );
}

#[test]
fn unauthenticated_browser_is_redirected_to_sign_in() {
    let response = unauthenticated(true, "/oauth2/sign_in?rd=%2Fapp");
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["location"], "/oauth2/sign_in?rd=%2Fapp");
    assert!(!response.headers().contains_key("www-authenticate"));
}

#[test]
fn redirect_is_uncached_and_encodes_what_a_header_cannot_hold() {
    let response = redirect("/a b/\u{e9}?x=\r\nSet-Cookie: evil");
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(
        response.headers()["location"],
        "/a%20b/%C3%A9?x=%0D%0ASet-Cookie:%20evil"
    );
    assert!(!response.headers().contains_key("set-cookie"));
}

#[tokio::test]
async fn html_carries_security_headers_and_the_body() {
    let response = html(StatusCode::OK, "<p>hi</p>".to_owned());
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    assert_eq!(body_text(response).await, "<p>hi</p>");
}
